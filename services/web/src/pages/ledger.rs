//! Ledgers (台账): the query service's measures per township, village,
//! grid, unit or worker, by day, month or in total, with the export of the
//! same rows.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use gridcase_proto::query::v1 as query_api;
use maud::html;
use serde::Deserialize;

use super::layout::{Nav, page, refusal_box};
use super::{chart, today};
use crate::AppState;
use crate::session::Session;
use crate::upstream::{Refusal, as_user};

const KINDS: [&str; 7] = ["township", "village", "grid", "unit", "worker", "kind", "channel"];

#[derive(Deserialize, Default)]
pub struct LedgerQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// An organisation as people read it: a kind of request or a channel in
/// words, any other by its code.
fn org_label(lang: crate::i18n::Lang, kind: &str, org: &str) -> maud::Markup {
    let words = match kind {
        "kind" => gridcase_domain::RequestKind::parse(org)
            .map(|k| lang.request_kind(gridcase_proto::convert::request_kind_to_proto(Some(k)) as i32)),
        "channel" => gridcase_domain::Channel::parse(org)
            .map(|c| lang.channel(gridcase_proto::convert::channel_to_proto(c) as i32)),
        _ => None,
    };
    match words {
        Some(words) => maud::html! { span title=(org) { (words) } },
        None => maud::html! { code { (org) } },
    }
}

/// A rate as a percentage, with what it is of; "—" when there was nothing to measure.
fn rate(numerator: u64, denominator: u64, rate: f64) -> String {
    if denominator == 0 { "—".to_owned() } else { format!("{:.1}% ({numerator}/{denominator})", rate * 100.0) }
}

pub async fn show(State(state): State<AppState>, session: Session, Query(query): Query<LedgerQuery>) -> Response {
    let lang = session.lang;
    let (today, month_start) = today();
    let kind = if KINDS.contains(&query.kind.as_str()) { query.kind.clone() } else { "village".into() };
    let period = match query.period.as_str() {
        "day" => query_api::Period::Day,
        "total" => query_api::Period::Total,
        _ => query_api::Period::Month,
    };
    let from = if query.from.is_empty() { month_start } else { query.from.clone() };
    let to = if query.to.is_empty() { today } else { query.to.clone() };
    let request = query_api::LedgerRequest {
        org_kind: kind.clone(),
        org: String::new(),
        from_day: from.clone(),
        to_day: to.clone(),
        period: period as i32,
    };
    let mut client = state.upstream.query.clone();
    let rows = client.ledger(as_user(&session.token, request)).await;
    let trend = trend(&state, &session, &to).await;
    let body = html! {
        section.ledger {
            h1 { (lang.t("ledger")) }
            form.filters method="get" action="/ledger" {
                label { (lang.t("org_kind"))
                    select name="kind" { @for k in KINDS { option value=(k) selected[k == kind] { (lang.t(k)) } } }
                }
                label { (lang.t("period"))
                    select name="period" {
                        option value="day" selected[period == query_api::Period::Day] { (lang.t("day")) }
                        option value="month" selected[period == query_api::Period::Month] { (lang.t("month")) }
                        option value="total" selected[period == query_api::Period::Total] { (lang.t("total")) }
                    }
                }
                label { (lang.t("from")) input type="date" name="from" value=(from); }
                label { (lang.t("to")) input type="date" name="to" value=(to); }
                button type="submit" { (lang.t("filter")) }
            }
            @if let Some(days) = &trend {
                h2 { (lang.t("trend")) }
                (chart::trend(lang, days))
            }
            @match &rows {
                Err(status) => { (refusal_box(lang, &Refusal::from_status(status, lang))) }
                Ok(rows) => {
                    table.ledger-rows {
                        thead { tr {
                            th { (lang.t(KINDS.iter().find(|k| **k == kind).copied().unwrap_or("village"))) } th { (lang.t("period")) }
                            th { (lang.t("filed")) } th { (lang.t("registered")) } th { (lang.t("closed")) }
                            th { (lang.t("closed_on_time")) } th { (lang.t("closure_rate")) } th { (lang.t("on_time_closure_rate")) }
                            th { (lang.t("satisfaction")) } th { (lang.t("turned_overdue")) } th { (lang.t("overdue_open")) }
                            th { (lang.t("reply_on_time_rate")) } th { (lang.t("callback_rate")) } th { (lang.t("satisfaction_rate")) }
                        } }
                        tbody {
                            @for row in &rows.get_ref().rows {
                                tr {
                                    td { (org_label(lang, &kind, &row.org)) } td { (row.period) }
                                    td.num { (row.filed) } td.num { (row.registered) } td.num { (row.closed) }
                                    td.num { (row.closed_on_time) }
                                    td.num { (format!("{:.1}%", row.closure_rate * 100.0)) }
                                    td.num { (format!("{:.1}%", row.on_time_closure_rate * 100.0)) }
                                    td.num { (row.satisfied + row.basically_satisfied) }
                                    td.num.turned-overdue { (row.turned_overdue) }
                                    td.num { (row.overdue_open) }
                                    td.num.reply-rate { (rate(row.replied_on_time, row.reply_due, row.reply_on_time_rate)) }
                                    td.num.callback-rate { (rate(row.called_back, row.callback_due, row.callback_rate)) }
                                    td.num.satisfaction-rate {
                                        (rate(row.satisfied + row.basically_satisfied, row.satisfied + row.basically_satisfied + row.unsatisfied, row.satisfaction_rate))
                                    }
                                }
                            }
                        }
                    }
                    @if rows.get_ref().rows.is_empty() { p.empty { (lang.t("none_found")) } }
                }
            }
        }
    };
    page(lang, Some(&session), Nav::Ledger, lang.t("ledger"), body).into_response()
}

/// The 30 days up to the last day of the chosen period (today unless one
/// was chosen), of the caller's townships, summed per day (none for a
/// caller who reads no reports, such as a handling unit).
async fn trend(state: &AppState, session: &Session, last_day: &str) -> Option<Vec<chart::Day>> {
    let today = last_day.parse::<jiff::civil::Date>().ok()?;
    let from = today.checked_sub(jiff::Span::new().days(29)).ok()?;
    let request = query_api::LedgerRequest {
        org_kind: "township".into(),
        org: String::new(),
        from_day: from.to_string(),
        to_day: today.to_string(),
        period: query_api::Period::Day as i32,
    };
    let rows = state.upstream.query.clone().ledger(as_user(&session.token, request)).await.ok()?.into_inner().rows;
    let mut days = Vec::new();
    let mut day = from;
    while day <= today {
        let key = day.to_string();
        let of_day: Vec<_> = rows.iter().filter(|r| r.period == key).collect();
        let sum = |f: fn(&query_api::LedgerRow) -> u64| of_day.iter().map(|r| f(r)).sum::<u64>();
        let (due, closed, on_time) = (sum(|r| r.due), sum(|r| r.closed), sum(|r| r.closed_on_time));
        let rate = |n: u64| if due == 0 { 0.0 } else { n as f64 / due as f64 };
        days.push(chart::Day {
            day: key,
            closure_rate: rate(closed),
            on_time_closure_rate: rate(on_time),
            filed: sum(|r| r.filed),
            turned_overdue: sum(|r| r.turned_overdue),
        });
        day = day.tomorrow().ok()?;
    }
    Some(days)
}
