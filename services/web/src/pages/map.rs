//! The one map (一张图): the grids of a territory drawn as SVG from the
//! boundaries the query service serves (`GetGridMap`, out of PostGIS), and
//! the open cases as points coloured by state, sized by tier, ringed red when
//! overdue. No tile server and no script library: the page draws the
//! polygons itself, on a plane fitted to the region (longitude scaled by the
//! cosine of the latitude, so shapes keep their proportions at the scale of
//! a township).

use gridcase_proto::common::v1 as common;
use gridcase_proto::query::v1 as query_api;
use maud::{Markup, html};

use crate::i18n::Lang;

/// Width of the drawing in SVG units (the page scales it).
const WIDTH: f64 = 1000.0;

/// One polygon: its outer ring then its holes, each (longitude, latitude).
type Polygon = Vec<Vec<(f64, f64)>>;

/// The rings of a GeoJSON Polygon or MultiPolygon geometry (nothing for
/// anything else: the service sends MultiPolygons).
fn polygons(geojson: &str) -> Vec<Polygon> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(geojson) else { return Vec::new() };
    let ring = |ring: &serde_json::Value| -> Vec<(f64, f64)> {
        ring.as_array().into_iter().flatten().filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?))).collect()
    };
    let polygon = |rings: &serde_json::Value| -> Polygon { rings.as_array().into_iter().flatten().map(ring).collect() };
    match value["type"].as_str() {
        Some("MultiPolygon") => value["coordinates"].as_array().into_iter().flatten().map(polygon).collect(),
        Some("Polygon") => vec![polygon(&value["coordinates"])],
        _ => Vec::new(),
    }
}

/// The plane the map is drawn on: a bounding box and its scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    west: f64,
    north: f64,
    /// SVG units per degree of longitude and of latitude.
    x_scale: f64,
    y_scale: f64,
    height: f64,
}

impl Frame {
    /// The frame around `points` (longitude, latitude), with a margin; None
    /// when there are none.
    fn around(points: impl Iterator<Item = (f64, f64)>) -> Option<Frame> {
        let (mut west, mut east, mut south, mut north) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (lon, lat) in points {
            west = west.min(lon);
            east = east.max(lon);
            south = south.min(lat);
            north = north.max(lat);
        }
        if west > east {
            return None;
        }
        // At least ~200 m across, and a 4 % margin each way.
        let (span_lon, span_lat) = ((east - west).max(0.002), (north - south).max(0.002));
        let (west, east) = (west - span_lon * 0.04, east + span_lon * 0.04);
        let (south, north) = (south - span_lat * 0.04, north + span_lat * 0.04);
        let cos = ((south + north) / 2.0).to_radians().cos();
        let x_scale = WIDTH / (east - west);
        let y_scale = x_scale / cos;
        Some(Frame { west, north, x_scale, y_scale, height: (north - south) * y_scale })
    }

    /// The frame a page drew with (its script sends it back to have new
    /// points placed the same way); None unless every figure is a finite
    /// number and the scales and height are positive.
    pub fn from_parts(west: f64, north: f64, x_scale: f64, y_scale: f64, height: f64) -> Option<Frame> {
        let finite = [west, north, x_scale, y_scale, height].iter().all(|v| v.is_finite());
        (finite && x_scale > 0.0 && y_scale > 0.0 && height > 0.0).then_some(Frame {
            west,
            north,
            x_scale,
            y_scale,
            height,
        })
    }

    fn xy(&self, (lon, lat): (f64, f64)) -> (f64, f64) {
        ((lon - self.west) * self.x_scale, (self.north - lat) * self.y_scale)
    }

    /// Whether a projected point lies on the drawing.
    fn holds(&self, (x, y): (f64, f64)) -> bool {
        (0.0..=WIDTH).contains(&x) && (0.0..=self.height).contains(&y)
    }

    /// How much larger than on a square drawing marks and words must be to
    /// look the same size (a tall region is drawn smaller to fit its box).
    fn mark_scale(&self) -> f64 {
        (self.height / WIDTH).max(1.0)
    }

    /// A point off the drawing, moved onto its edge.
    fn clamp(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let margin = 20.0 * self.mark_scale();
        (x.clamp(margin, WIDTH - margin), y.clamp(margin, self.height - margin))
    }
}

/// SVG path data of polygons (each ring closed; holes cut by the even-odd rule).
fn path(frame: &Frame, polygons: &[Polygon]) -> String {
    let mut d = String::new();
    for ring in polygons.iter().flatten() {
        for (i, point) in ring.iter().enumerate() {
            let (x, y) = frame.xy(*point);
            d.push_str(&format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" }));
        }
        d.push('Z');
    }
    d
}

/// Where to write a grid's name: the mean of its outer ring's corners.
fn label_at(frame: &Frame, polygons: &[Polygon]) -> Option<(f64, f64)> {
    let outer = polygons.first()?.first()?;
    let corners = &outer[..outer.len().saturating_sub(1).max(1)];
    let n = corners.len() as f64;
    let (lon, lat) = corners.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    Some(frame.xy((lon / n, lat / n)))
}

/// The state's colour class: waiting for the centre, with a unit, paused,
/// done.
fn state_class(state: i32) -> &'static str {
    use common::CaseState as S;
    match S::try_from(state).unwrap_or(S::Unspecified) {
        S::Reported | S::Registered => "pending",
        S::Dispatched | S::InProgress => "handling",
        S::OnHold => "held",
        S::Resolved => "resolved",
        _ => "closed",
    }
}

fn radius(tier: i32) -> f64 {
    use common::Tier as T;
    match T::try_from(tier).unwrap_or(T::Unspecified) {
        T::Critical => 20.0,
        T::Urgent => 16.0,
        _ => 13.0,
    }
}

/// A point of the map: where, and how it is drawn.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    pub case_id: String,
    pub x: f64,
    pub y: f64,
    pub r: f64,
    /// CSS classes: state group, `overdue`, `outside` (flagged by intake),
    /// `off-map` (beyond the drawn region, shown on its edge), `focus`.
    pub class: String,
    /// Hover text.
    pub title: String,
}

fn point(lang: Lang, frame: &Frame, case: &query_api::MapCase, focus: Option<&str>) -> Point {
    let at = frame.xy((case.longitude, case.latitude));
    let on_map = frame.holds(at);
    let (x, y) = if on_map { at } else { frame.clamp(at) };
    let mut class = vec!["case", state_class(case.state)];
    if case.overdue {
        class.push("overdue");
    }
    if case.outside_grid_m > 0 {
        class.push("outside");
    }
    if !on_map {
        class.push("off-map");
    }
    if focus == Some(case.case_id.as_str()) {
        class.push("focus");
    }
    let mut title = format!(
        "{} · {} · {} · {}",
        case.case_id.get(..8).unwrap_or(&case.case_id),
        lang.state(case.state),
        lang.tier(case.tier),
        case.grid_code
    );
    if case.overdue {
        title.push_str(&format!(" · {}", lang.t("overdue")));
    }
    if case.outside_grid_m > 0 {
        title.push_str(&format!(" · {} {} m", lang.t("outside_grid"), case.outside_grid_m));
    }
    let r = radius(case.tier) * frame.mark_scale();
    Point { case_id: case.case_id.clone(), x, y, r, class: class.join(" "), title }
}

/// The frame a map is drawn in: around its grids, and around `extra`
/// points too (the case page's own case, wherever it was filed).
pub fn frame(map: &query_api::GridMap, extra: &[(f64, f64)]) -> Option<Frame> {
    let grids: Vec<Vec<Polygon>> = map.grids.iter().map(|g| polygons(&g.geometry_geojson)).collect();
    let corners = grids.iter().flatten().flatten().flatten().copied();
    Frame::around(corners.chain(extra.iter().copied()))
}

/// The points of a map's open cases in `frame`.
pub fn points(lang: Lang, frame: &Frame, map: &query_api::GridMap, focus: Option<&str>) -> Vec<Point> {
    // Overdue ones last, so they are drawn on top.
    let mut points: Vec<Point> = map.cases.iter().rev().map(|c| point(lang, frame, c, focus)).collect();
    points.sort_by_key(|p| p.class.contains("overdue") || p.class.contains("focus"));
    points
}

/// The map as inline SVG, with its legend. `focus` rings one case (the case
/// page's), drawn even when it is closed (then it is not among the open
/// cases the map carries).
pub fn render(lang: Lang, map: &query_api::GridMap, focus: Option<&query_api::MapCase>) -> Markup {
    let extra: Vec<(f64, f64)> = focus.map(|c| (c.longitude, c.latitude)).into_iter().collect();
    let Some(frame) = frame(map, &extra) else {
        return html! { p.hint #grid-map-empty { (lang.t("map_no_shapes")) } };
    };
    let focus_id = focus.map(|c| c.case_id.as_str());
    let mut points = points(lang, &frame, map, focus_id);
    if let Some(focus) = focus
        && !points.iter().any(|p| p.case_id == focus.case_id)
    {
        points.push(point(lang, &frame, focus, focus_id));
    }
    let view_box = format!("0 0 {WIDTH} {:.0}", frame.height);
    let mut grids: Vec<&query_api::MapGrid> = map.grids.iter().collect();
    // Grids first, micro-grids drawn over them.
    grids.sort_by_key(|g| (g.level == "micro_grid", g.code.clone()));
    html! {
        figure.grid-map {
            svg #grid-map viewBox=(view_box) role="img" aria-label=(lang.t("map")) xmlns="http://www.w3.org/2000/svg"
                data-west=(frame.west) data-north=(frame.north) data-xs=(frame.x_scale) data-ys=(frame.y_scale)
                data-h=(frame.height) {
                g.grids {
                    @for grid in &grids {
                        @let shape = polygons(&grid.geometry_geojson);
                        path class=(format!("grid {}", grid.level.replace('_', "-"))) data-code=(grid.code)
                            d=(path(&frame, &shape)) fill-rule="evenodd" {
                            title { (grid.name) " " (grid.code) }
                        }
                    }
                }
                g.labels font-size=(format!("{:.0}", 30.0 * frame.mark_scale())) {
                    @for grid in grids.iter().filter(|g| g.level == "grid") {
                        @if let Some((x, y)) = label_at(&frame, &polygons(&grid.geometry_geojson)) {
                            text x=(format!("{x:.0}")) y=(format!("{y:.0}")) text-anchor="middle" { (grid.name) }
                        }
                    }
                }
                g #map-cases {
                    @for p in &points {
                        a href=(format!("/cases/{}", p.case_id)) data-case=(p.case_id) {
                            circle class=(p.class) cx=(format!("{:.1}", p.x)) cy=(format!("{:.1}", p.y)) r=(format!("{:.1}", p.r)) {
                                title { (p.title) }
                            }
                        }
                    }
                }
            }
            figcaption.legend {
                @for (class, key) in [("pending", "map_pending"), ("handling", "map_handling"), ("held", "map_held"), ("resolved", "map_resolved")] {
                    span { (swatch(class)) " " (lang.t(key)) }
                }
                span { (swatch("handling overdue")) " " (lang.t("overdue")) }
                span { (swatch("handling outside")) " " (lang.t("outside_grid")) }
                @if map.open_cases > map.cases.len() as u64 {
                    span.hint { (lang.t("map_cut")) " " (map.cases.len()) " / " (map.open_cases) }
                }
            }
        }
    }
}

fn swatch(class: &str) -> Markup {
    html! {
        svg.swatch viewBox="0 0 20 20" width="14" height="14" aria-hidden="true" {
            circle class=(format!("case {class}")) cx="10" cy="10" r="6" {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(west: f64, south: f64, side: f64) -> String {
        let (e, n) = (west + side, south + side);
        format!(
            r#"{{"type":"MultiPolygon","coordinates":[[[[{west},{south}],[{e},{south}],[{e},{n}],[{west},{n}],[{west},{south}]]]]}}"#
        )
    }

    fn map() -> query_api::GridMap {
        query_api::GridMap {
            grids: vec![query_api::MapGrid {
                code: "990101001001001".into(),
                name: "东门<网格>".into(),
                level: "grid".into(),
                geometry_geojson: square(120.0, 30.0, 0.01),
            }],
            cases: vec![
                query_api::MapCase {
                    case_id: "inside".into(),
                    latitude: 30.005,
                    longitude: 120.005,
                    overdue: true,
                    ..Default::default()
                },
                query_api::MapCase {
                    case_id: "astray".into(),
                    latitude: 30.2,
                    longitude: 120.1,
                    outside_grid_m: 5000,
                    ..Default::default()
                },
            ],
            open_cases: 2,
        }
    }

    #[test]
    fn shapes_keep_their_proportions_and_points_fall_where_they_are() {
        let map = map();
        let frame = frame(&map, &[]).unwrap();
        // 0.01° square at 30° N is 0.866 times as wide as it is tall.
        let ratio = WIDTH / frame.height;
        assert!((ratio - 30.005_f64.to_radians().cos()).abs() < 0.01, "{ratio}");
        let points = points(Lang::Zh, &frame, &map, None);
        let inside = points.iter().find(|p| p.case_id == "inside").unwrap();
        assert!((inside.x - WIDTH / 2.0).abs() < 1.0 && (inside.y - frame.height / 2.0).abs() < 1.0, "{inside:?}");
        assert!(inside.class.contains("overdue") && !inside.class.contains("off-map"));
        // A point kilometres away is kept on the edge, marked as such.
        let astray = points.iter().find(|p| p.case_id == "astray").unwrap();
        assert!(astray.class.contains("off-map") && astray.class.contains("outside"), "{astray:?}");
        assert!(frame.holds((astray.x, astray.y)));
        // The overdue point is drawn last (on top).
        assert_eq!(points.last().unwrap().case_id, "inside");
    }

    #[test]
    fn the_svg_escapes_names_and_draws_every_grid_and_case() {
        let svg = render(Lang::Zh, &map(), None).into_string();
        assert!(svg.contains("东门&lt;网格&gt;") && !svg.contains("东门<网格>"), "{svg}");
        assert_eq!(svg.matches("<path class=\"grid grid\"").count(), 1);
        assert_eq!(svg.matches("<circle class=\"case ").count(), 2 + 6, "two cases and six legend swatches");
        // A case page's own case is drawn even when the map does not carry it.
        let closed =
            query_api::MapCase { case_id: "closed".into(), latitude: 30.001, longitude: 120.001, ..Default::default() };
        let svg = render(Lang::Zh, &map(), Some(&closed)).into_string();
        assert!(svg.contains("data-case=\"closed\"") && svg.contains("focus"), "{svg}");
        // No shapes: words, not an empty drawing.
        let empty = render(Lang::En, &query_api::GridMap::default(), None).into_string();
        assert!(empty.contains("grid-map-empty"));
    }
}
