//! Grid boundaries: `grids.geojson` beside the registry, a GeoJSON
//! FeatureCollection of Polygon or MultiPolygon features in WGS 84
//! (longitude, latitude), each with `properties.code` naming a grid or
//! micro-grid of the registry. A grid may have no shape (the file is
//! optional, and so is each grid's entry in it).
//!
//! The read models keep the shapes in PostGIS, where the map's queries run.
//! Here is only what the write side needs, pure and cheap: how far a
//! filing's coordinates lie outside the grid it names. At the scale of a grid
//! (a few kilometres) a local equirectangular projection around the point is
//! accurate to well under 0.1 %, so no geodesy crate is needed; the
//! projection service's tests compare the figure with PostGIS's own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gridcase_domain::GridCode;

use crate::{Level, ReferenceError, Registry};

/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A ring of (longitude, latitude) positions, closed (last equals first).
type Ring = Vec<(f64, f64)>;

/// The shape of one grid or micro-grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub code: String,
    /// Polygons, each an outer ring and its holes.
    pub polygons: Vec<Vec<Ring>>,
    /// The feature's geometry as GeoJSON text, for PostGIS
    /// (`ST_GeomFromGeoJSON`).
    pub geometry_json: String,
}

/// Every shape of `grids.geojson`, by code.
#[derive(Debug, Clone, Default)]
pub struct Boundaries {
    shapes: BTreeMap<String, Shape>,
}

#[derive(serde::Deserialize)]
struct Collection {
    #[serde(rename = "type")]
    kind: String,
    features: Vec<Feature>,
}

#[derive(serde::Deserialize)]
struct Feature {
    #[serde(default)]
    properties: serde_json::Map<String, serde_json::Value>,
    geometry: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
#[serde(tag = "type", content = "coordinates")]
enum Geometry {
    Polygon(Vec<Vec<Vec<f64>>>),
    MultiPolygon(Vec<Vec<Vec<Vec<f64>>>>),
}

impl Boundaries {
    pub fn parse(file: &Path, text: &str, registry: &Registry) -> Result<Self, ReferenceError> {
        let invalid =
            |feature: Option<usize>, problem: String| ReferenceError::Shape { file: file.to_owned(), feature, problem };
        let collection: Collection = serde_json::from_str(text).map_err(|e| invalid(None, e.to_string()))?;
        if collection.kind != "FeatureCollection" {
            return Err(invalid(None, format!("type must be FeatureCollection, not {:?}", collection.kind)));
        }
        let mut shapes = BTreeMap::new();
        for (index, feature) in collection.features.into_iter().enumerate() {
            let invalid = |problem: String| invalid(Some(index), problem);
            let code = feature
                .properties
                .get("code")
                .and_then(|c| c.as_str())
                .ok_or_else(|| invalid("properties.code (a grid code) is missing".into()))?
                .to_owned();
            match registry.region(&code).map(|r| r.level) {
                Some(Level::Grid | Level::MicroGrid) => {}
                Some(level) => return Err(invalid(format!("{code} is a {level:?}; only grids have shapes here"))),
                None => return Err(invalid(format!("{code} is not in the registry"))),
            }
            let geometry_value = feature.geometry.ok_or_else(|| invalid(format!("{code} has no geometry")))?;
            let geometry: Geometry = serde_json::from_value(geometry_value.clone())
                .map_err(|e| invalid(format!("{code}: geometry must be a Polygon or MultiPolygon: {e}")))?;
            let polygons = match geometry {
                Geometry::Polygon(rings) => vec![rings],
                Geometry::MultiPolygon(polygons) => polygons,
            };
            let polygons = polygons
                .into_iter()
                .map(|rings| {
                    if rings.is_empty() {
                        return Err("a polygon needs an outer ring".to_owned());
                    }
                    rings.into_iter().map(ring).collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|problem| invalid(format!("{code}: {problem}")))?;
            if polygons.is_empty() {
                return Err(invalid(format!("{code}: an empty MultiPolygon")));
            }
            let shape = Shape { code: code.clone(), polygons, geometry_json: geometry_value.to_string() };
            if shapes.insert(code.clone(), shape).is_some() {
                return Err(invalid(format!("{code} has a second shape")));
            }
        }
        Ok(Self { shapes })
    }

    pub fn shape(&self, code: &str) -> Option<&Shape> {
        self.shapes.get(code)
    }

    /// Every shape, in code order.
    pub fn shapes(&self) -> impl Iterator<Item = &Shape> {
        self.shapes.values()
    }

    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// The grid a point lies in: the micro-grid if one of them holds it,
    /// else the grid; `None` outside every shape (or on no map at all).
    /// Where shapes overlap (they should not), the lowest code wins.
    pub fn locate(&self, latitude: f64, longitude: f64) -> Option<&str> {
        self.shapes
            .values()
            .filter(|shape| shape.distance_outside(latitude, longitude) == 0.0)
            .max_by_key(|shape| (shape.code.len(), std::cmp::Reverse(shape.code.as_str())))
            .map(|shape| shape.code.as_str())
    }

    /// A point inside the shape of `grid` (or its grid's, for a micro-grid
    /// without one), as (latitude, longitude): where a request known only by
    /// its grid and an address is put on the map.
    pub fn inside_point(&self, grid: &str) -> Option<(f64, f64)> {
        let shape = self.shapes.get(grid).or_else(|| grid.get(..15).and_then(|parent| self.shapes.get(parent)))?;
        shape.inside_point()
    }

    /// How far (metres) the point lies outside the shape of `grid`: 0 inside
    /// or on its edge. A micro-grid without a shape of its own is measured
    /// against its grid's. `None` when there is no shape to measure against.
    pub fn distance_outside(&self, grid: &GridCode, latitude: f64, longitude: f64) -> Option<f64> {
        let code = grid.as_str();
        let shape = self.shapes.get(code).or_else(|| code.get(..15).and_then(|parent| self.shapes.get(parent)))?;
        Some(shape.distance_outside(latitude, longitude))
    }
}

impl Shape {
    /// The mean of the outer ring's corners when that lies inside (a convex
    /// or nearly convex grid), else the first corner.
    pub fn inside_point(&self) -> Option<(f64, f64)> {
        let ring = self.polygons.first()?.first()?;
        let corners = &ring[..ring.len().saturating_sub(1).max(1)];
        let n = corners.len() as f64;
        let (lon, lat) = corners.iter().fold((0.0, 0.0), |(x, y), (lon, lat)| (x + lon / n, y + lat / n));
        if self.distance_outside(lat, lon) == 0.0 {
            Some((lat, lon))
        } else {
            ring.first().map(|&(lon, lat)| (lat, lon))
        }
    }

    /// How far (metres) the point lies outside this shape; 0 inside.
    pub fn distance_outside(&self, latitude: f64, longitude: f64) -> f64 {
        // Project every vertex to metres on a plane touching the Earth at the
        // point: the point is the origin.
        let metres_per_degree = EARTH_RADIUS_M.to_radians();
        let cos = latitude.to_radians().cos();
        let project = |&(lon, lat): &(f64, f64)| {
            ((lon - longitude) * metres_per_degree * cos, (lat - latitude) * metres_per_degree)
        };
        let mut inside = false;
        let mut nearest = f64::INFINITY;
        for rings in &self.polygons {
            for ring in rings {
                let points: Vec<(f64, f64)> = ring.iter().map(project).collect();
                for pair in points.windows(2) {
                    let ((x1, y1), (x2, y2)) = (pair[0], pair[1]);
                    // Even-odd rule: a ray from the origin towards +x.
                    if (y1 > 0.0) != (y2 > 0.0) && x1 + (0.0 - y1) * (x2 - x1) / (y2 - y1) > 0.0 {
                        inside = !inside;
                    }
                    nearest = nearest.min(distance_to_segment((x1, y1), (x2, y2)));
                }
            }
        }
        if inside { 0.0 } else { nearest }
    }
}

/// Distance from the origin to the segment a–b.
fn distance_to_segment((x1, y1): (f64, f64), (x2, y2): (f64, f64)) -> f64 {
    let (dx, dy) = (x2 - x1, y2 - y1);
    let length2 = dx * dx + dy * dy;
    let t = if length2 == 0.0 { 0.0 } else { (-(x1 * dx + y1 * dy) / length2).clamp(0.0, 1.0) };
    (x1 + t * dx).hypot(y1 + t * dy)
}

fn ring(positions: Vec<Vec<f64>>) -> Result<Ring, String> {
    if positions.len() < 4 {
        return Err(format!("a ring needs at least 4 positions, not {}", positions.len()));
    }
    let ring = positions
        .into_iter()
        .map(|position| match position[..] {
            [lon, lat, ..] if (73.4..=135.1).contains(&lon) && (3.8..=53.6).contains(&lat) => Ok((lon, lat)),
            [lon, lat, ..] => Err(format!("position [{lon}, {lat}] is not in China (longitude first)")),
            _ => Err("a position needs a longitude and a latitude".to_owned()),
        })
        .collect::<Result<Ring, _>>()?;
    if ring.first() != ring.last() {
        return Err("a ring must end where it starts".to_owned());
    }
    Ok(ring)
}

/// The boundaries file of a directory, if there is one.
pub(crate) fn load(dir: &Path, registry: &Registry) -> Result<(Boundaries, Option<String>), ReferenceError> {
    let path: PathBuf = dir.join(crate::Reference::BOUNDARIES_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((Boundaries::parse(&path, &text, registry)?, Some(crate::sha256_hex(text.as_bytes())))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Boundaries::default(), None)),
        Err(source) => Err(ReferenceError::Read { file: path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::parse(
            Path::new("regions.csv"),
            "code,level,name,parent,command_centre\n\
             990101,county,县,,\n\
             990101001,township,镇,990101,cc-990101001\n\
             990101001001,village,村,990101001,\n\
             990101001001001,grid,网格,990101001001,\n\
             99010100100100101,micro_grid,微网格,990101001001001,\n",
        )
        .unwrap()
    }

    /// A square of 0.01° (about 1.11 km north-south, 0.96 km east-west at
    /// 30° N) with its south-west corner at 120.0 E 30.0 N.
    const SQUARE: &str = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"code":"990101001001001"},
        "geometry":{"type":"Polygon","coordinates":[[[120.0,30.0],[120.01,30.0],[120.01,30.01],[120.0,30.01],[120.0,30.0]]]}}]}"#;

    fn grid(code: &str) -> GridCode {
        GridCode::parse(code).unwrap()
    }

    #[test]
    fn inside_is_zero_and_outside_is_the_distance_to_the_nearest_edge() {
        let shapes = Boundaries::parse(Path::new("grids.geojson"), SQUARE, &registry()).unwrap();
        let g = grid("990101001001001");
        assert_eq!(shapes.distance_outside(&g, 30.005, 120.005), Some(0.0));
        // 0.001° north of the north edge: 111.2 m.
        let north = shapes.distance_outside(&g, 30.011, 120.005).unwrap();
        assert!((north - 111.2).abs() < 0.5, "{north}");
        // 0.001° east of the east edge, at 30° N: 111.2 × cos 30° = 96.3 m.
        let east = shapes.distance_outside(&g, 30.005, 120.011).unwrap();
        assert!((east - 96.3).abs() < 0.5, "{east}");
        // Beyond a corner: the distance to the corner itself.
        let corner = shapes.distance_outside(&g, 30.011, 120.011).unwrap();
        assert!((corner - north.hypot(east)).abs() < 0.5, "{corner}");
        // A micro-grid without a shape of its own is measured against its grid.
        assert_eq!(shapes.distance_outside(&grid("99010100100100101"), 30.005, 120.005), Some(0.0));
        // A grid without a shape cannot be measured.
        let empty = Boundaries::default();
        assert_eq!(empty.distance_outside(&g, 30.005, 120.005), None);
    }

    #[test]
    fn holes_are_outside() {
        let text = r#"{"type":"FeatureCollection","features":[{"properties":{"code":"990101001001001"},
            "geometry":{"type":"MultiPolygon","coordinates":[[
              [[120.0,30.0],[120.01,30.0],[120.01,30.01],[120.0,30.01],[120.0,30.0]],
              [[120.004,30.004],[120.006,30.004],[120.006,30.006],[120.004,30.006],[120.004,30.004]]]]}}]}"#;
        let shapes = Boundaries::parse(Path::new("grids.geojson"), text, &registry()).unwrap();
        let in_hole = shapes.distance_outside(&grid("990101001001001"), 30.005, 120.005).unwrap();
        assert!((in_hole - 96.3).abs() < 1.0, "{in_hole}");
    }

    #[test]
    fn problems_name_the_feature_and_the_rule() {
        let problem =
            |text: &str| Boundaries::parse(Path::new("grids.geojson"), text, &registry()).unwrap_err().to_string();
        let feature = |code: &str, geometry: &str| {
            format!(
                r#"{{"type":"FeatureCollection","features":[{{"properties":{{"code":"{code}"}},"geometry":{geometry}}}]}}"#
            )
        };
        let square = r#"{"type":"Polygon","coordinates":[[[120.0,30.0],[120.01,30.0],[120.01,30.01],[120.0,30.0]]]}"#;
        assert!(problem("[]").contains("grids.geojson"));
        assert!(problem(&feature("990101001001009", square)).contains("990101001001009 is not in the registry"));
        assert!(problem(&feature("990101001", square)).contains("only grids have shapes"));
        assert!(
            problem(&feature("990101001001001", r#"{"type":"Point","coordinates":[120.0,30.0]}"#))
                .contains("Polygon or MultiPolygon")
        );
        let open = r#"{"type":"Polygon","coordinates":[[[120.0,30.0],[120.01,30.0],[120.01,30.01],[120.0,30.02]]]}"#;
        assert!(problem(&feature("990101001001001", open)).contains("end where it starts"));
        let swapped = r#"{"type":"Polygon","coordinates":[[[30.0,120.0],[30.0,120.01],[30.01,120.01],[30.0,120.0]]]}"#;
        let text = problem(&feature("990101001001001", swapped));
        assert!(text.contains("feature 0") && text.contains("longitude first"), "{text}");
    }

    #[test]
    fn the_demo_county_has_a_shape_for_every_grid_and_its_filings_fall_inside() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/reference");
        let reference = crate::Reference::load(&dir).unwrap();
        for region in reference.registry.grids() {
            assert!(reference.boundaries.shape(&region.code).is_some(), "{} has no shape", region.code);
        }
        // The walkthrough's and the tests' filings.
        let at = |code: &str, lat, lon| reference.boundaries.distance_outside(&grid(code), lat, lon);
        assert_eq!(at("99010100100100101", 30.2741, 120.1551), Some(0.0));
        assert_eq!(at("990101001001001", 30.2741, 120.1551), Some(0.0));
        assert_eq!(at("990101101001001", 30.2, 120.1), Some(0.0));
        // The same point named with a grid of another township is kilometres out.
        assert!(at("990101201002001", 30.2741, 120.1551).unwrap() > 1000.0);
        // Found from the point alone: the micro-grid that holds it.
        assert_eq!(reference.boundaries.locate(30.2741, 120.1551), Some("99010100100100101"));
        assert_eq!(reference.boundaries.locate(30.2, 120.1), Some("990101101001001"));
        assert_eq!(reference.boundaries.locate(39.9, 116.4), None);
        // Every grid has a point inside it, found again by locate.
        for region in reference.registry.grids() {
            let (lat, lon) = reference.boundaries.inside_point(&region.code).unwrap();
            assert_eq!(
                reference.boundaries.distance_outside(&grid(&region.code), lat, lon),
                Some(0.0),
                "{}",
                region.code
            );
        }
    }
}
