//! The desk: overdue (or all open) cases with filters, keyset pages from
//! the query service, the export of exactly the filtered rows, and 督办 of
//! several cases at once (each its own command, with its own command id).

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gridcase_auth::Operation;
use gridcase_proto::cases::v1 as cases_api;
use gridcase_proto::common::v1 as common;
use gridcase_proto::query::v1 as query_api;
use http::{StatusCode, header};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Nav, page, refusal_box};
use super::signin::posted;
use super::{Fields, command_id, home_region, may, time};
use crate::AppState;
use crate::i18n::Lang;
use crate::session::{NoSession, Session};
use crate::upstream::{Refusal, as_user};

#[derive(Deserialize, Default, Clone)]
pub struct DeskQuery {
    /// overdue (default), soon (due within a day) or open.
    #[serde(default)]
    view: String,
    /// A clock's name (CLOCK_RESOLVE…): only cases it runs on.
    #[serde(default)]
    clock: String,
    /// A supervision level's name (SUPERVISION_YELLOW_CARD…).
    #[serde(default)]
    card: String,
    /// due (soonest deadline first) or filed (newest first); by default due
    /// for the overdue and due-soon views, filed for all open cases.
    #[serde(default)]
    sort: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    grid: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    page: String,
}

const OPEN_STATES: [common::CaseState; 6] = [
    common::CaseState::Reported,
    common::CaseState::Registered,
    common::CaseState::Dispatched,
    common::CaseState::InProgress,
    common::CaseState::OnHold,
    common::CaseState::Resolved,
];

const TIERS: [common::Tier; 4] =
    [common::Tier::Critical, common::Tier::Urgent, common::Tier::Normal, common::Tier::Complex];

/// How far ahead "due soon" looks.
const DUE_SOON_SECONDS: u32 = 24 * 3600;

const CLOCKS: [common::Clock; 4] =
    [common::Clock::Register, common::Clock::Acknowledge, common::Clock::Resolve, common::Clock::Verify];

const CARDS: [common::Supervision; 3] =
    [common::Supervision::Normal, common::Supervision::YellowCard, common::Supervision::RedCard];

impl DeskQuery {
    fn overdue(&self) -> bool {
        !matches!(self.view.as_str(), "open" | "soon")
    }

    fn soon(&self) -> bool {
        self.view == "soon"
    }

    fn by_due(&self) -> bool {
        match self.sort.as_str() {
            "due" => true,
            "filed" => false,
            _ => self.view != "open",
        }
    }

    fn title(&self) -> &'static str {
        match self.view.as_str() {
            "open" => "all_open",
            "soon" => "due_soon_list",
            _ => "overdue_list",
        }
    }

    fn filter(&self, session: &Session) -> query_api::ListCasesRequest {
        let state = common::CaseState::from_str_name(&self.state).filter(|s| *s != common::CaseState::Unspecified);
        query_api::ListCasesRequest {
            region_prefix: if self.region.is_empty() { home_region(session) } else { self.region.clone() },
            grid_code: self.grid.clone(),
            states: match state {
                Some(state) => vec![state as i32],
                None => OPEN_STATES.iter().map(|s| *s as i32).collect(),
            },
            tier: common::Tier::from_str_name(&self.tier).map_or(0, |t| t as i32),
            unit: self.unit.clone(),
            overdue_only: self.overdue(),
            filed_from: None,
            filed_to: None,
            page_size: 50,
            page_token: self.page.clone(),
            clock: common::Clock::from_str_name(&self.clock).map_or(0, |c| c as i32),
            supervision: common::Supervision::from_str_name(&self.card).map_or(0, |c| c as i32),
            due_within_seconds: if self.soon() { DUE_SOON_SECONDS } else { 0 },
            order: if self.by_due() { query_api::ListOrder::DueSoonest } else { query_api::ListOrder::FiledNewest }
                as i32,
            ..Default::default()
        }
    }

    /// This query with another page token, as a URL query string.
    fn with_page(&self, page: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("view", &self.view),
            ("region", &self.region),
            ("grid", &self.grid),
            ("unit", &self.unit),
            ("tier", &self.tier),
            ("state", &self.state),
            ("clock", &self.clock),
            ("card", &self.card),
            ("sort", &self.sort),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if !page.is_empty() {
            q.append_pair("page", page);
        }
        q.finish()
    }
}

fn filters(lang: Lang, query: &DeskQuery) -> Markup {
    html! {
        form.filters method="get" action="/desk" {
            select name="view" {
                option value="overdue" selected[query.overdue()] { (lang.t("overdue_list")) }
                option value="soon" selected[query.soon()] { (lang.t("due_soon_list")) }
                option value="open" selected[query.view == "open"] { (lang.t("all_open")) }
            }
            label { (lang.t("village")) input name="region" value=(query.region) size="15" inputmode="numeric"; }
            label { (lang.t("grid")) input name="grid" value=(query.grid) size="17" inputmode="numeric"; }
            label { (lang.t("unit")) input name="unit" value=(query.unit) size="16"; }
            label { (lang.t("tier"))
                select name="tier" {
                    option value="" { (lang.t("any")) }
                    @for tier in TIERS {
                        option value=(tier.as_str_name()) selected[query.tier == tier.as_str_name()] { (lang.tier(tier as i32)) }
                    }
                }
            }
            label { (lang.t("state"))
                select name="state" {
                    option value="" { (lang.t("any")) }
                    @for state in OPEN_STATES {
                        option value=(state.as_str_name()) selected[query.state == state.as_str_name()] { (lang.state(state as i32)) }
                    }
                }
            }
            label { (lang.t("clock"))
                select name="clock" {
                    option value="" { (lang.t("any")) }
                    @for clock in CLOCKS {
                        option value=(clock.as_str_name()) selected[query.clock == clock.as_str_name()] { (lang.clock(clock as i32)) }
                    }
                }
            }
            label { (lang.t("supervision"))
                select name="card" {
                    option value="" { (lang.t("any")) }
                    @for card in CARDS {
                        option value=(card.as_str_name()) selected[query.card == card.as_str_name()] { (lang.supervision(card as i32)) }
                    }
                }
            }
            label { (lang.t("sort"))
                select name="sort" {
                    option value="due" selected[query.by_due()] { (lang.t("sort_due")) }
                    option value="filed" selected[!query.by_due()] { (lang.t("sort_filed")) }
                }
            }
            button type="submit" { (lang.t("filter")) }
        }
    }
}

pub async fn show(State(state): State<AppState>, session: Session, Query(query): Query<DeskQuery>) -> Response {
    let lang = session.lang;
    let mut client = state.upstream.query.clone();
    let listed = client.list_cases(as_user(&session.token, query.filter(&session))).await;
    let supervise = may(&session, Operation::Supervise);
    let body = html! {
        section.desk {
            h1 { (lang.t(query.title())) }
            (filters(lang, &query))
            @match &listed {
                Err(status) => { (refusal_box(lang, &Refusal::from_status(status, lang))) }
                Ok(listed) => {
                    @let listed = listed.get_ref();
                    p.exports {
                        a href=(format!("/desk/export?format=csv&{}", query.with_page(""))) download { (lang.t("export_csv")) }
                        " "
                        a href=(format!("/desk/export?format=xlsx&{}", query.with_page(""))) download { (lang.t("export_xlsx")) }
                    }
                    @if listed.cases.is_empty() { p.empty { (lang.t("none_found")) } }
                    @else {
                        form method="post" action="/desk/supervise" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            table.cases {
                                thead { tr {
                                    @if supervise { th {} }
                                    th { (lang.t("case")) } th { (lang.t("state")) } th { (lang.t("tier")) }
                                    th { (lang.t("grid")) } th { (lang.t("category")) } th { (lang.t("unit")) }
                                    th { (lang.t("supervision")) } th { (lang.t("next_due")) } th { (lang.t("filed_at")) }
                                } }
                                tbody {
                                    @for case in &listed.cases {
                                        tr.overdue[case.overdue] data-case=(case.case_id) {
                                            @if supervise {
                                                td {
                                                    input type="checkbox" name="case" value=(case.case_id);
                                                    input type="hidden" name=(format!("cmd-{}", case.case_id)) value=(command_id());
                                                }
                                            }
                                            td { a href=(format!("/cases/{}", case.case_id)) { code { (case.case_id.get(..8).unwrap_or(&case.case_id)) } } }
                                            td { (lang.state(case.state)) @if case.overdue { " " span.badge.red { (lang.t("overdue")) } } }
                                            td { (lang.tier(case.tier)) }
                                            td { code { (case.grid_code) } }
                                            td {
                                                (case.category_code)
                                                @if case.request_kind != 0 {
                                                    " " span.badge.kind { (lang.request_kind(case.request_kind)) }
                                                }
                                            }
                                            td { (case.unit) }
                                            td { (lang.supervision(case.supervision)) }
                                            td.next-due {
                                                @if case.next_due.is_some() {
                                                    (lang.clock(case.next_due_clock)) " " (time(case.next_due.as_ref()))
                                                }
                                            }
                                            td { (time(case.filed_at.as_ref())) }
                                        }
                                    }
                                }
                            }
                            @if supervise {
                                fieldset.bulk {
                                    legend { (lang.t("selected")) }
                                    (supervision_select(lang))
                                    label { (lang.t("reason")) input name="reason" required maxlength="500"; }
                                    button type="submit" { (lang.t("supervise")) }
                                }
                            }
                        }
                    }
                    nav.pages {
                        @if !query.page.is_empty() { a href=(format!("/desk?{}", query.with_page(""))) { (lang.t("first_page")) } " " }
                        @if !listed.next_page_token.is_empty() {
                            a rel="next" href=(format!("/desk?{}", query.with_page(&listed.next_page_token))) { (lang.t("next_page")) }
                        }
                    }
                }
            }
        }
    };
    page(lang, Some(&session), Nav::Desk, lang.t("desk"), body).into_response()
}

pub fn supervision_select(lang: Lang) -> Markup {
    html! {
        label { (lang.t("level"))
            select name="level" {
                @for level in [common::Supervision::Normal, common::Supervision::YellowCard, common::Supervision::RedCard] {
                    option value=(level.as_str_name()) { (lang.supervision(level as i32)) }
                }
            }
        }
    }
}

/// 督办 of the ticked cases: one Supervise command per case, each with the
/// command id its row was shown with; the answer lists each case's result.
pub async fn supervise(
    State(state): State<AppState>,
    headers: http::HeaderMap,
    session: Result<Session, NoSession>,
    body: axum::body::Bytes,
) -> Response {
    let fields = Fields::parse(&body);
    let session = match posted(&state, &headers, session, &fields, "/desk/supervise") {
        Ok(session) => session,
        Err(answer) => return answer,
    };
    let lang = session.lang;
    let level = common::Supervision::from_str_name(fields.get("level")).map_or(0, |l| l as i32);
    let mut results = Vec::new();
    for case_id in fields.all("case") {
        let request = cases_api::SuperviseRequest {
            context: Some(cases_api::CommandContext {
                case_id: case_id.to_owned(),
                command_id: fields.get(&format!("cmd-{case_id}")).to_owned(),
                expected_version: None,
            }),
            level,
            reason: fields.get("reason").to_owned(),
        };
        let mut client = state.upstream.cases.clone();
        let outcome = client.supervise(as_user(&session.token, request)).await;
        results.push((case_id.to_owned(), outcome.map(|r| r.into_inner()).map_err(|s| Refusal::from_status(&s, lang))));
    }
    let failed = results.iter().any(|(_, r)| r.is_err());
    let body = html! {
        section.results {
            h1 { (lang.t("supervise")) }
            ul {
                @for (case_id, outcome) in &results {
                    li data-case=(case_id) {
                        a href=(format!("/cases/{case_id}")) { code { (case_id) } } ": "
                        @match outcome {
                            Ok(result) => { span.ok { (lang.t("done")) (lang.event(&result.event_type)) } }
                            Err(refusal) => { (refusal_box(lang, refusal)) }
                        }
                    }
                }
            }
            a href="/desk" { (lang.t("desk")) }
        }
    };
    let status = if failed { StatusCode::CONFLICT } else { StatusCode::OK };
    (status, page(lang, Some(&session), Nav::Desk, lang.t("supervise"), body)).into_response()
}

#[derive(Deserialize)]
pub struct ExportQuery {
    format: String,
    #[serde(flatten)]
    desk: DeskQuery,
}

/// Exactly the desk's filtered rows, as the query service's export writes
/// them (CSV or XLSX), streamed through.
pub async fn export(State(state): State<AppState>, session: Session, Query(query): Query<ExportQuery>) -> Response {
    let lang = session.lang;
    let (format, content_type, extension) = match query.format.as_str() {
        "xlsx" => {
            (query_api::ExportFormat::Xlsx, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx")
        }
        _ => (query_api::ExportFormat::Csv, "text/csv; charset=utf-8", "csv"),
    };
    let mut filter = query.desk.filter(&session);
    filter.page_token.clear();
    filter.page_size = 0;
    let request = query_api::ExportCasesRequest { filter: Some(filter), format: format as i32 };
    let mut client = state.upstream.query.clone();
    match client.export_cases(as_user(&session.token, request)).await {
        Ok(chunks) => {
            let bytes = chunks.into_inner().map(|chunk| chunk.map(|c| c.data));
            let disposition = format!("attachment; filename=\"cases.{extension}\"");
            (
                [(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)],
                Body::from_stream(bytes),
            )
                .into_response()
        }
        Err(status) => super::layout::refusal_page(lang, &Refusal::from_status(&status, lang)),
    }
}
