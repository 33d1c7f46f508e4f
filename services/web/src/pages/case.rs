//! The case page: the case as the event log holds it now (`GetCase` of the
//! intake service: its state, version and the resident's contact, masked or
//! not by the service), what the read models add (description, village,
//! remaining time on each clock, in the clock's own kind of time), the full
//! history with the hash chain's verdict in words, and the buttons of the
//! signed-in role. Each button sends one command with the command id the
//! page was shown with and the version the user saw.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use gridcase_auth::Operation;
use gridcase_proto::cases::v1 as cases_api;
use gridcase_proto::common::v1 as common;
use gridcase_proto::query::v1 as query_api;
use http::{HeaderMap, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;

use super::desk::supervision_select;
use super::layout::{Nav, page, refusal_box};
use super::signin::posted;
use super::{Fields, command_id, may, span, time};
use crate::AppState;
use crate::i18n::Lang;
use crate::session::{NoSession, Session};
use crate::upstream::{Refusal, as_user};

use common::CaseState as S;

mod commands;
use commands::{command, send};

/// A button of the case page: its action name (the phrase key too), the
/// operation it sends, and the fields it asks for.
struct Action {
    name: &'static str,
    operation: Operation,
    fields: &'static [Input],
}

#[derive(Clone, Copy)]
enum Input {
    Reason,
    OptionalNote,
    Unit,
    Days,
    Level,
    /// How the resident was answered.
    Method,
    /// Whether a callback reached the resident, and how satisfied they are.
    Satisfaction,
}

const ACTIONS: &[Action] = &[
    Action { name: "register", operation: Operation::Register, fields: &[Input::OptionalNote] },
    Action { name: "void", operation: Operation::Void, fields: &[Input::Reason] },
    Action { name: "dispatch", operation: Operation::Dispatch, fields: &[Input::Unit] },
    Action { name: "reassign", operation: Operation::Reassign, fields: &[Input::Unit, Input::Reason] },
    Action { name: "acknowledge", operation: Operation::Acknowledge, fields: &[] },
    Action { name: "return", operation: Operation::Return, fields: &[Input::Reason] },
    Action { name: "resolve", operation: Operation::Resolve, fields: &[Input::Reason] },
    Action { name: "request_extension", operation: Operation::RequestExtension, fields: &[Input::Days, Input::Reason] },
    Action { name: "request_hold", operation: Operation::RequestHold, fields: &[Input::Reason] },
    Action { name: "approve_extension", operation: Operation::DecideExtension, fields: &[Input::Days] },
    Action { name: "reject_extension", operation: Operation::DecideExtension, fields: &[Input::Reason] },
    Action { name: "approve_hold", operation: Operation::DecideHold, fields: &[] },
    Action { name: "reject_hold", operation: Operation::DecideHold, fields: &[Input::Reason] },
    Action { name: "verify_pass", operation: Operation::Verify, fields: &[] },
    Action { name: "verify_rework", operation: Operation::Verify, fields: &[Input::Reason] },
    Action { name: "supervise", operation: Operation::Supervise, fields: &[Input::Level, Input::Reason] },
    Action { name: "set_urgent", operation: Operation::SetUrgent, fields: &[Input::Reason] },
    Action { name: "cancel", operation: Operation::Cancel, fields: &[Input::Reason] },
    Action { name: "erase", operation: Operation::EraseResidentData, fields: &[Input::Reason] },
    Action { name: "reply", operation: Operation::Reply, fields: &[Input::Method, Input::Reason] },
    Action {
        name: "callback",
        operation: Operation::RecordCallback,
        fields: &[Input::Satisfaction, Input::OptionalNote],
    },
];

/// Whether a button fits the case as it stands (which states a command
/// applies in, for offering it; the state machine in the intake service
/// decides, and its refusal is shown if the case moved meanwhile).
fn fits(action: &str, view: &cases_api::CaseView) -> bool {
    let state = S::try_from(view.state).unwrap_or(S::Unspecified);
    let open = !matches!(state, S::Closed | S::Voided | S::Cancelled | S::Unspecified);
    match action {
        "register" | "void" => state == S::Reported,
        "dispatch" => state == S::Registered,
        "reassign" | "acknowledge" => state == S::Dispatched,
        "return" => matches!(state, S::Dispatched | S::InProgress),
        "resolve" | "request_extension" => state == S::InProgress && view.pending_extension_days == 0,
        "request_hold" => state == S::InProgress && !view.hold_requested,
        "approve_extension" | "reject_extension" => view.pending_extension_days > 0,
        "approve_hold" | "reject_hold" => view.hold_requested,
        "verify_pass" | "verify_rework" => state == S::Resolved,
        "supervise" => open && view.supervision != common::Supervision::RedCard as i32,
        "set_urgent" => open && !view.urgent,
        "cancel" => open,
        // A resident's request is answered in any state; called back once closed.
        "reply" => view.request_kind != common::RequestKind::Unspecified as i32,
        "callback" => {
            state == S::Closed && view.request_kind != common::RequestKind::Unspecified as i32 && !view.called_back
        }
        "erase" => {
            view.resident_contact.as_ref().is_some_and(|c| !c.erased && (!c.name.is_empty() || !c.phone.is_empty()))
        }
        _ => false,
    }
}

/// A form's failure to show beside it: which action, why, what was typed.
struct Failed<'a> {
    action: &'a str,
    refusal: &'a Refusal,
    typed: &'a Fields,
}

#[derive(Deserialize)]
pub struct CaseQuery {
    #[serde(default)]
    done: String,
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(case_id): Path<String>,
    Query(query): Query<CaseQuery>,
) -> Response {
    let lang = session.lang;
    let notice = (!query.done.is_empty()).then(|| {
        html! {
            div.notice.ok role="status" { (lang.t("done")) (lang.event(&query.done)) }
        }
    });
    render(&state, &session, &case_id, notice, None).await
}

async fn render(
    state: &AppState,
    session: &Session,
    case_id: &str,
    notice: Option<Markup>,
    failed: Option<Failed<'_>>,
) -> Response {
    let lang = session.lang;
    let (mut cases, mut record_client, mut history_client) =
        (state.upstream.cases.clone(), state.upstream.query.clone(), state.upstream.query.clone());
    let (view, record, history) = futures::join!(
        cases.get_case(as_user(&session.token, cases_api::GetCaseRequest { case_id: case_id.to_owned() })),
        record_client.get_case(as_user(&session.token, query_api::GetCaseRequest { case_id: case_id.to_owned() })),
        history_client.get_case_history(as_user(
            &session.token,
            query_api::GetCaseHistoryRequest { case_id: case_id.to_owned() }
        )),
    );
    let view = match view {
        Ok(view) => view.into_inner(),
        Err(status) => return super::layout::refusal_page(lang, &Refusal::from_status(&status, lang)),
    };
    // The read models may be a moment behind the log: what they add is
    // shown when they have caught up with the version the log holds.
    let record = record.ok().map(|r| r.into_inner());
    let current = record.as_ref().filter(|r| r.version == view.version);
    let status = failed.as_ref().map_or(StatusCode::OK, |f| f.refusal.http_status());
    let map = case_map(state, session, &view, record.as_ref()).await;
    let body = html! {
        article.case data-version=(view.version) data-state=(S::try_from(view.state).map_or("", |s| s.as_str_name())) {
            h1 { (lang.t("case")) " " code { (view.case_id) } }
            @if let Some(notice) = notice { (notice) }
            @if let Some(failed) = &failed { (refusal_box(lang, failed.refusal)) }
            div.case-top {
                (summary(lang, &view, record.as_ref()))
                @if let Some(map) = map { (map) }
            }
            @if let Ok(history) = &history { (photos(lang, history.get_ref())) }
            (deadlines(lang, &view, current))
            (actions(session, &view, failed.as_ref()))
            @match &history {
                Ok(history) => { (history_table(lang, history.get_ref())) }
                Err(status) => { (refusal_box(lang, &Refusal::from_status(status, lang))) }
            }
        }
    };
    (status, page(lang, Some(session), Nav::Case, lang.t("case"), body)).into_response()
}

fn summary(lang: Lang, view: &cases_api::CaseView, record: Option<&query_api::CaseRecord>) -> Markup {
    html! {
        dl.summary {
            dt { (lang.t("state")) } dd.state { (lang.state(view.state)) }
            dt { (lang.t("tier")) } dd { (lang.tier(view.tier)) @if view.urgent { " " span.badge.red { (lang.t("urgent")) } } }
            dt { (lang.t("grid")) } dd { code { (view.grid_code) } }
            dt { (lang.t("category")) } dd { (view.category_code) }
            @if let Some(record) = record.filter(|r| r.request_kind != 0) {
                dt { (lang.t("request_kind")) } dd.request-kind { (lang.request_kind(record.request_kind)) }
            }
            @if let Some(record) = record {
                dt { (lang.t("channel")) } dd.channel { (lang.channel(record.channel)) }
            }
            dt { (lang.t("unit")) } dd.unit { (view.unit) }
            dt { (lang.t("supervision")) } dd { (lang.supervision(view.supervision)) }
            @if let Some(record) = record {
                dt { (lang.t("village")) } dd { code { (record.village) } }
                dt { (lang.t("filed_at")) } dd { (time(record.filed_at.as_ref())) }
                @if record.reported_at.is_some() && record.reported_at != record.filed_at {
                    dt { (lang.t("reported_at")) } dd.reported-at { (time(record.reported_at.as_ref())) }
                }
                dt { (lang.t("reported_by")) } dd { (record.reported_by) }
                dt { (lang.t("description")) } dd.description { (record.description) }
                @if let Some(location) = &record.location {
                    dt { (lang.t("location")) }
                    dd.location {
                        (format!("{:.6}, {:.6}", location.latitude, location.longitude))
                        @if record.outside_grid_m > 0 {
                            " " span.badge.red.outside-grid { (lang.t("outside_grid")) " " (record.outside_grid_m) " m" }
                            div.hint { (lang.t("outside_grid_note")) }
                        }
                    }
                }
            }
            dt { (lang.t("contact")) }
            dd.contact {
                @match &view.resident_contact {
                    Some(contact) if contact.erased => { (lang.t("contact_erased")) }
                    Some(contact) if !contact.name.is_empty() || !contact.phone.is_empty() => {
                        (contact.name) " " (contact.phone)
                    }
                    _ => { (lang.t("contact_none")) }
                }
            }
        }
    }
}

/// The case on the map of its village's grids (its grid's, for a caller
/// whose territory is the grid), with the village's other open cases.
async fn case_map(
    state: &AppState,
    session: &Session,
    view: &cases_api::CaseView,
    record: Option<&query_api::CaseRecord>,
) -> Option<Markup> {
    let location = record?.location.as_ref()?;
    let focus = query_api::MapCase {
        case_id: view.case_id.clone(),
        state: view.state,
        tier: view.tier,
        grid_code: view.grid_code.clone(),
        overdue: record.is_some_and(|r| r.deadlines.iter().any(|d| d.overdue)),
        latitude: location.latitude,
        longitude: location.longitude,
        outside_grid_m: record.map_or(0, |r| r.outside_grid_m),
    };
    let mut client = state.upstream.query.clone();
    let mut map = None;
    for region in [view.grid_code.get(..12).unwrap_or_default(), view.grid_code.as_str()] {
        let request = query_api::GetGridMapRequest { region_prefix: region.to_owned(), ..Default::default() };
        match client.get_grid_map(as_user(&session.token, request)).await {
            Ok(answer) => {
                map = Some(answer.into_inner());
                break;
            }
            Err(status) if status.code() == tonic::Code::PermissionDenied => continue,
            Err(_) => return None,
        }
    }
    let (lang, map) = (session.lang, map?);
    Some(html! {
        section.case-map {
            h2 { (lang.t("map")) }
            (super::map::render(lang, &map, Some(&focus)))
        }
    })
}

fn deadlines(lang: Lang, view: &cases_api::CaseView, record: Option<&query_api::CaseRecord>) -> Markup {
    html! {
        section.deadlines {
            h2 { (lang.t("deadlines")) }
            @if view.deadlines.is_empty() { p.empty { "—" } }
            @else {
                table {
                    thead { tr { th { (lang.t("clock")) } th { (lang.t("due")) } th { (lang.t("remaining")) } } }
                    tbody {
                        @for deadline in &view.deadlines {
                            @let status = record.and_then(|r| r.deadlines.iter().find(|d| d.clock == deadline.clock));
                            tr.overdue[status.is_some_and(|s| s.overdue)] data-clock=(deadline.clock) {
                                td { (lang.clock(deadline.clock)) }
                                td.due { (time(deadline.due.as_ref())) }
                                td.remaining {
                                    @match status {
                                        Some(s) if !s.running => { (lang.t("paused")) }
                                        Some(s) if s.remaining_seconds < 0 => {
                                            span.badge.red { (lang.t("overdue_by")) " " (span(lang, s.remaining_seconds, s.working_time)) }
                                        }
                                        Some(s) => { (span(lang, s.remaining_seconds, s.working_time)) }
                                        None => { "…" }
                                    }
                                    @if let Some(s) = status {
                                        " (" (lang.t(if s.working_time { "working_time" } else { "calendar_time" })) ")"
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn input(lang: Lang, field: Input, failed: Option<&Failed<'_>>) -> Markup {
    let (name, label) = match field {
        Input::Reason => ("reason", "reason"),
        Input::OptionalNote => ("note", "note"),
        Input::Unit => ("unit", "unit"),
        Input::Days => ("days", "days"),
        Input::Level => return supervision_select(lang),
        Input::Method => {
            return choice(
                lang,
                "method",
                &["REPLY_METHOD_PHONE", "REPLY_METHOD_SMS", "REPLY_METHOD_IN_PERSON", "REPLY_METHOD_PARTNER"],
            );
        }
        Input::Satisfaction => {
            return choice(
                lang,
                "outcome",
                &["NOT_REACHED", "FEEDBACK_SATISFIED", "FEEDBACK_BASICALLY_SATISFIED", "FEEDBACK_UNSATISFIED"],
            );
        }
    };
    let typed = failed.map_or("", |f| f.typed.get(name));
    let problem = failed
        .and_then(|f| f.refusal.fields.iter().find(|(field, _)| field == name || field.ends_with(&format!(".{name}"))));
    html! {
        label.invalid[problem.is_some()] {
            (lang.t(label))
            @match field {
                Input::Days => { input name=(name) type="number" min="1" max="250" value=(typed) required; }
                Input::OptionalNote => { input name=(name) value=(typed) maxlength="500"; }
                Input::Unit => { input name=(name) value=(typed) required maxlength="64" list="offered-units"; }
                _ => { input name=(name) value=(typed) required maxlength="500"; }
            }
            @if let Some((_, problem)) = problem { span.field-error { (problem) } }
        }
    }
}

/// A choice among values, each in words (`lang.t(value)`).
fn choice(lang: Lang, name: &'static str, values: &[&'static str]) -> Markup {
    html! {
        label { (lang.t(name))
            select name=(name) {
                @for value in values { option value=(value) { (lang.t(value)) } }
            }
        }
    }
}

fn actions(session: &Session, view: &cases_api::CaseView, failed: Option<&Failed<'_>>) -> Markup {
    let lang = session.lang;
    // The county's console is read-only: auditors act on nothing here (a
    // resident's request to erase their data, which the county may also
    // carry out, goes through the command centre or gridctl).
    let read_only = session.role() == "county_auditor";
    let offered: Vec<&Action> =
        ACTIONS.iter().filter(|a| !read_only && may(session, a.operation) && fits(a.name, view)).collect();
    html! {
        section.actions {
            h2 { (lang.t("actions")) }
            // The units the dispatch policy offers, as suggestions for the unit fields.
            datalist #offered-units { @for unit in &view.offered_units { option value=(unit) {} } }
            @if offered.is_empty() { p.empty.no-actions { (lang.t("no_actions")) } }
            @for action in offered {
                @let failed_here = failed.filter(|f| f.action == action.name);
                form.action method="post" action=(format!("/cases/{}/act", view.case_id)) data-action=(action.name) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="action" value=(action.name);
                    input type="hidden" name="command_id" value=(failed_here.map_or_else(command_id, |f| f.typed.get("command_id").to_owned()));
                    input type="hidden" name="expected_version" value=(view.version);
                    @for field in action.fields { (input(lang, *field, failed_here)) }
                    button type="submit" name="do" value=(action.name) { (lang.t(action.name)) }
                }
            }
        }
    }
}

/// Every photo and file the case's events carry, as thumbnails (photos of
/// the types a thumbnail can be made of) or labelled links, each with the
/// event that brought it.
fn photos(lang: Lang, history: &query_api::CaseHistory) -> Markup {
    let all: Vec<(&query_api::HistoryEntry, &gridcase_proto::common::v1::AttachmentRef)> =
        history.events.iter().flat_map(|e| e.attachments.iter().map(move |a| (e, a))).collect();
    html! {
        @if !all.is_empty() {
            section.photos {
                h2 { (lang.t("photos")) }
                div.gallery {
                    @for (entry, a) in all {
                        @let href = format!("/cases/{}/attachments/{}", history.case_id, a.sha256);
                        figure.photo data-sha256=(a.sha256) {
                            a href=(href) {
                                @if super::photos::has_thumbnail(&a.content_type) {
                                    img src=(format!("{href}/thumbnail")) alt=(lang.event(&entry.r#type)) loading="lazy"
                                        width=(super::photos::THUMBNAIL_PX);
                                } @else {
                                    span.file { (a.content_type) }
                                }
                            }
                            figcaption { (lang.event(&entry.r#type)) " · " (time(entry.occurred_at.as_ref())) " · " (a.size / 1024) " KiB" }
                        }
                    }
                }
            }
        }
    }
}

fn history_table(lang: Lang, history: &query_api::CaseHistory) -> Markup {
    html! {
        section.history {
            h2 { (lang.t("history")) }
            @if history.chain_verified {
                p.chain.ok { (lang.t("chain_ok")) }
            } @else {
                p.chain.broken role="alert" { (lang.t("chain_broken")) (history.chain_problem) }
            }
            table {
                thead { tr { th { "#" } th { (lang.t("time")) } th { (lang.t("event")) } th { (lang.t("actor")) } th { (lang.t("reason")) } } }
                tbody {
                    @for entry in &history.events {
                        tr data-type=(entry.r#type) {
                            td.num { (entry.case_version) }
                            td { (time(entry.occurred_at.as_ref())) }
                            td { (lang.event(&entry.r#type)) }
                            td { (lang.role(&entry.actor_role)) " " (entry.actor_organisation) }
                            td.reason {
                                (entry.reason)
                                @for a in &entry.attachments {
                                    br; a.attachment href=(format!("/cases/{}/attachments/{}", history.case_id, a.sha256)) title=(a.sha256) {
                                        (a.content_type) ", " (a.size) " B, sha256 " code { (a.sha256.get(..12).unwrap_or("")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A button pressed: one command; then the page as the case stands, with
/// what was done, or why it was refused beside the form (what was typed kept).
pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    session: Result<Session, NoSession>,
    body: axum::body::Bytes,
) -> Response {
    let fields = Fields::parse(&body);
    let session = match posted(&state, &headers, session, &fields, &format!("/cases/{case_id}/act")) {
        Ok(session) => session,
        Err(answer) => return answer,
    };
    let lang = session.lang;
    let (action, command) = match command(&fields, &case_id) {
        Ok(command) => command,
        Err(problem) => return (StatusCode::BAD_REQUEST, problem).into_response(),
    };
    match send(&state, &session.token, command).await {
        Ok(result) => Redirect::to(&format!("/cases/{case_id}?done={}", result.event_type)).into_response(),
        Err(status) => {
            let refusal = Refusal::from_status(&status, lang);
            let failed = Failed { action, refusal: &refusal, typed: &fields };
            render(&state, &session, &case_id, None, Some(failed)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_button_has_words_in_both_languages() {
        for action in ACTIONS {
            for lang in [Lang::Zh, Lang::En] {
                assert_ne!(lang.t(action.name), action.name, "{} has no phrase", action.name);
            }
        }
    }
}
