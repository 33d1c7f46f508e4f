//! The live board (大屏): the territory's counts, a feed of case changes as
//! the log stores them (relayed by [`crate::live`]), and the ranking of its
//! villages (for a township) or townships (for the county) from the ledgers.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use gridcase_auth::Operation;
use gridcase_proto::query::v1 as query_api;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Nav, page, refusal_box};
use super::map;
use super::{home_region, may, time};
use crate::AppState;
use crate::i18n::Lang;
use crate::session::Session;
use crate::upstream::{Refusal, as_user};

#[derive(Deserialize, Default)]
pub struct BoardQuery {
    #[serde(default)]
    region: Option<String>,
}

/// The cards of the board, by the ids the script updates them with.
const CARDS: [(&str, &str); 6] = [
    ("open", "open"),
    ("due_today", "due-today"),
    ("overdue", "overdue"),
    ("on_hold", "on-hold"),
    ("yellow_card", "yellow-card"),
    ("red_card", "red-card"),
];

fn card_values(counts: &query_api::CaseCounts) -> [u64; 6] {
    [counts.open, counts.due_today, counts.overdue, counts.on_hold, counts.yellow_card, counts.red_card]
}

pub async fn show(State(state): State<AppState>, session: Session, Query(query): Query<BoardQuery>) -> Response {
    let lang = session.lang;
    let region = query.region.filter(|r| !r.is_empty()).unwrap_or_else(|| home_region(&session));
    let township = (region.len() >= 9).then(|| region[..9].to_owned());
    let mut client = state.upstream.query.clone();
    let counts = client
        .count_cases(as_user(&session.token, query_api::CountCasesRequest { region_prefix: region.clone() }))
        .await
        .map(|r| r.into_inner())
        .map_err(|s| Refusal::from_status(&s, lang));
    let (mut list_client, mut map_client) = (client.clone(), client.clone());
    let (latest, map) = futures::join!(
        list_client.list_cases(as_user(
            &session.token,
            query_api::ListCasesRequest { region_prefix: region.clone(), page_size: 10, ..Default::default() },
        )),
        map_client.get_grid_map(as_user(
            &session.token,
            query_api::GetGridMapRequest { region_prefix: region.clone(), ..Default::default() }
        )),
    );
    let latest = latest.map(|r| r.into_inner().cases).unwrap_or_default();
    let map = map.map(|r| r.into_inner()).map_err(|s| Refusal::from_status(&s, lang));
    // "Today" as the services count it (their clock says when the counts
    // were taken), so the ranking's day and month match the cards.
    let now = counts
        .as_ref()
        .ok()
        .and_then(|c| c.as_of.as_ref())
        .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let ranking = if may(&session, Operation::Ledger) && region.len() <= 9 && !region.is_empty() {
        Some(ranking(&state, &session, &region, now).await)
    } else {
        None
    };
    let body = html! {
        section.board data-region=(region) {
            @match &counts {
                Ok(counts) => {
                    div.cards {
                        @for ((key, id), value) in CARDS.iter().zip(card_values(counts)) {
                            div class=(format!("card {id}")) {
                                span.label { (lang.t(key)) }
                                span.count id=(format!("count-{id}")) { (value) }
                            }
                        }
                    }
                    p.as-of { (lang.t("as_of")) " " span #as-of { (time(counts.as_of.as_ref())) } }
                }
                Err(refusal) => { (refusal_box(lang, refusal)) }
            }
            div.columns {
                section.map {
                    h2 { (lang.t("map")) }
                    @match &map {
                        Ok(map) => { (map::render(lang, map, None)) }
                        Err(refusal) => { (refusal_box(lang, refusal)) }
                    }
                }
                section.feed {
                    h2 { (lang.t("live_feed")) " " span #live-state data-on=(lang.t("live_on")) data-off=(lang.t("live_off")) { (lang.t("live_connecting")) } }
                    @if let Some(township) = &township {
                        // The feed starts where the counts were taken: nothing
                        // between this page and its live connection is lost.
                        @let after = counts.as_ref().map_or(0, |c| c.as_of_sequence);
                        ol #feed data-township=(township) data-region=(region) data-after=(after) {}
                    }
                }
                section.latest {
                    h2 { (lang.t("latest")) }
                    ol.latest {
                        @for case in &latest {
                            li data-case=(case.case_id) {
                                time { (time(case.filed_at.as_ref())) } " "
                                a href=(format!("/cases/{}", case.case_id)) { (case.case_id.get(..8).unwrap_or(&case.case_id)) } " "
                                (lang.state(case.state)) " " code { (case.grid_code) }
                                @if case.overdue { " " span.badge.red { (lang.t("overdue")) } }
                            }
                        }
                    }
                    @if let Some(ranking) = ranking { (ranking) }
                }
            }
        }
    };
    page(lang, Some(&session), Nav::Board, lang.t("board"), body).into_response()
}

/// Today's and this month's ranking of the region's villages (a township)
/// or townships (a county): on-time closure rate, closures, satisfaction;
/// with what is overdue and open now.
async fn ranking(state: &AppState, session: &Session, region: &str, now: jiff::Timestamp) -> Markup {
    let lang = session.lang;
    let kind = if region.len() >= 9 { "village" } else { "township" };
    let (today, month_start) = super::day_and_month_of(now);
    let ledger = |from: &str, period: query_api::Period| query_api::LedgerRequest {
        org_kind: kind.into(),
        org: String::new(),
        from_day: from.to_owned(),
        to_day: today.clone(),
        period: period as i32,
    };
    let (mut a, mut b, mut c) =
        (state.upstream.query.clone(), state.upstream.query.clone(), state.upstream.query.clone());
    let (day, month, total) = futures::join!(
        a.ledger(as_user(&session.token, ledger(&today, query_api::Period::Day))),
        b.ledger(as_user(&session.token, ledger(&month_start, query_api::Period::Month))),
        c.ledger(as_user(&session.token, ledger(&month_start, query_api::Period::Total))),
    );
    let (day, month, total) = match (day, month, total) {
        (Ok(day), Ok(month), Ok(total)) => (day.into_inner().rows, month.into_inner().rows, total.into_inner().rows),
        (Err(status), _, _) | (_, Err(status), _) | (_, _, Err(status)) => {
            return refusal_box(lang, &Refusal::from_status(&status, lang));
        }
    };
    let overdue_of = |org: &str| total.iter().find(|t| t.org == org).map_or(0, |t| t.overdue_open);
    let ranked = |rows: Vec<query_api::LedgerRow>| {
        let mut rows: Vec<_> = rows.into_iter().filter(|r| r.org.starts_with(region)).collect();
        rows.sort_by(|x, y| y.on_time_closure_rate.total_cmp(&x.on_time_closure_rate).then(x.org.cmp(&y.org)));
        rows
    };
    let table = |id: &str, title: String, rows: Vec<query_api::LedgerRow>| {
        html! {
            section.ranking id=(id) {
                h2 { (lang.t(if kind == "village" { "village" } else { "township" })) " · " (title) }
                table {
                    thead { tr {
                        th { (lang.t(kind)) } th { (lang.t("filed")) } th { (lang.t("closed")) }
                        th { (lang.t("on_time_closure_rate")) } th { (lang.t("satisfaction")) } th { (lang.t("overdue_open")) }
                    } }
                    tbody {
                        @for row in &rows {
                            tr {
                                td { (row.org) } td.num { (row.filed) } td.num { (row.closed) }
                                td.num { (percent(row.on_time_closure_rate)) }
                                td.num { (row.satisfied + row.basically_satisfied) }
                                td.num.overdue[overdue_of(&row.org) > 0] { (overdue_of(&row.org)) }
                            }
                        }
                    }
                }
                @if rows.is_empty() { p.empty { (lang.t("none_found")) } }
            }
        }
    };
    html! {
        (table("ranking-today", format!("{} {}", lang.t("today"), today), ranked(day)))
        (table("ranking-month", month_start.get(..7).unwrap_or("").to_owned(), ranked(month)))
    }
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// The board's counts as JSON, for the script to refresh the cards when a
/// change arrives.
pub async fn counts(State(state): State<AppState>, session: Session, Query(query): Query<BoardQuery>) -> Response {
    let region = query.region.filter(|r| !r.is_empty()).unwrap_or_else(|| home_region(&session));
    let mut client = state.upstream.query.clone();
    match client.count_cases(as_user(&session.token, query_api::CountCasesRequest { region_prefix: region })).await {
        Ok(counts) => {
            let counts = counts.into_inner();
            let mut body = serde_json::Map::new();
            for ((_, id), value) in CARDS.iter().zip(card_values(&counts)) {
                body.insert((*id).to_owned(), value.into());
            }
            body.insert("as_of".into(), time(counts.as_of.as_ref()).into());
            Json(serde_json::Value::Object(body)).into_response()
        }
        Err(status) => {
            let refusal = Refusal::from_status(&status, Lang::En);
            (refusal.http_status(), Json(serde_json::json!({ "error": refusal.message }))).into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct MapQuery {
    #[serde(default)]
    region: Option<String>,
    west: f64,
    north: f64,
    xs: f64,
    ys: f64,
    h: f64,
}

/// The board map's open cases as JSON points, placed in the frame the page
/// drew its grids in (sent back by the script), for the script to redraw
/// them when a change arrives. The grids are not sent again.
pub async fn map_points(State(state): State<AppState>, session: Session, Query(query): Query<MapQuery>) -> Response {
    let Some(frame) = map::Frame::from_parts(query.west, query.north, query.xs, query.ys, query.h) else {
        return (http::StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": "the map's frame is not valid" })))
            .into_response();
    };
    let region = query.region.filter(|r| !r.is_empty()).unwrap_or_else(|| home_region(&session));
    let request = query_api::GetGridMapRequest { region_prefix: region, without_grids: true, ..Default::default() };
    let mut client = state.upstream.query.clone();
    match client.get_grid_map(as_user(&session.token, request)).await {
        Ok(map) => Json(map::points(session.lang, &frame, &map.into_inner(), None)).into_response(),
        Err(status) => {
            let refusal = Refusal::from_status(&status, Lang::En);
            (refusal.http_status(), Json(serde_json::json!({ "error": refusal.message }))).into_response()
        }
    }
}
