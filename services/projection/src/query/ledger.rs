//! Ledgers (考核台账): the measures of `ledger_daily` summed per organisation
//! and period, the rates computed at the edge, and the open overdue cases.

use std::collections::BTreeMap;

use gridcase_auth::policy::ListScope;
use gridcase_grpc::Violations;
use gridcase_proto::query::v1 as api;
use sqlx::{QueryBuilder, Row};
use tonic::Status;

use super::export::f64_text;
use super::sql::{overdue_condition, push_scope};
use super::{QueryApi, db_error};
use crate::columns::micros;
use crate::project::{Measure, OrgKind};

/// Ledger rows summed over a period.
struct LedgerSums {
    period: String,
    counts: BTreeMap<Measure, i64>,
}

fn rate(numerator: i64, denominator: i64) -> f64 {
    if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 }
}

fn ledger_row(kind: &str, org: &str, sums: &LedgerSums, overdue_open: u64) -> api::LedgerRow {
    let c = |measure: Measure| *sums.counts.get(&measure).unwrap_or(&0);
    api::LedgerRow {
        org_kind: kind.to_owned(),
        org: org.to_owned(),
        period: sums.period.clone(),
        filed: c(Measure::Filed) as u64,
        registered: c(Measure::Registered) as u64,
        due: c(Measure::Due).max(0) as u64,
        closed: c(Measure::Closed) as u64,
        closed_on_time: c(Measure::ClosedOnTime) as u64,
        dispatched: c(Measure::Dispatched) as u64,
        returned: c(Measure::Returned) as u64,
        reworked: c(Measure::Reworked) as u64,
        extended: c(Measure::Extended) as u64,
        resolved: c(Measure::Resolved) as u64,
        closure_rate: rate(c(Measure::Closed), c(Measure::Due)),
        on_time_closure_rate: rate(c(Measure::ClosedOnTime), c(Measure::Due)),
        rework_rate: rate(c(Measure::Reworked), c(Measure::Resolved)),
        extension_rate: rate(c(Measure::Extended), c(Measure::Dispatched)),
        accurate_dispatch_rate: if c(Measure::Dispatched) == 0 {
            0.0
        } else {
            1.0 - rate(c(Measure::Returned), c(Measure::Dispatched))
        },
        average_acknowledge_seconds: rate(c(Measure::AcknowledgeSeconds), c(Measure::Acknowledged)),
        average_resolve_seconds: rate(c(Measure::ResolveSeconds), c(Measure::Resolved)),
        satisfied: c(Measure::Satisfied) as u64,
        basically_satisfied: c(Measure::BasicallySatisfied) as u64,
        unsatisfied: c(Measure::Unsatisfied) as u64,
        overdue_open,
        turned_overdue: c(Measure::TurnedOverdue) as u64,
        reply_due: c(Measure::ReplyDue) as u64,
        replied: c(Measure::Replied) as u64,
        replied_on_time: c(Measure::RepliedOnTime) as u64,
        reply_on_time_rate: rate(c(Measure::RepliedOnTime), c(Measure::ReplyDue)),
        callback_due: c(Measure::CallbackDue) as u64,
        called_back: c(Measure::CalledBack) as u64,
        merged: c(Measure::Merged) as u64,
        callback_rate: rate(c(Measure::CalledBack), c(Measure::CallbackDue)),
        satisfaction_rate: rate(
            c(Measure::Satisfied) + c(Measure::BasicallySatisfied),
            c(Measure::Satisfied) + c(Measure::BasicallySatisfied) + c(Measure::Unsatisfied),
        ),
    }
}

/// A ledger request's fields, checked.
pub(super) struct LedgerParams {
    pub kind: OrgKind,
    pub from: jiff::civil::Date,
    pub to: jiff::civil::Date,
    pub period: api::Period,
}

/// Check a ledger request's fields (pure; every violation at once).
pub(super) fn ledger_params(request: &api::LedgerRequest) -> Result<LedgerParams, Status> {
    let mut v = Violations::new();
    let kind = OrgKind::parse(&request.org_kind);
    if kind.is_none() {
        v.add("org_kind", "UNKNOWN_VALUE", "must be township, village, grid, unit or worker");
    }
    let day = |field: &str, text: &str, v: &mut Violations| match text.parse::<jiff::civil::Date>() {
        Ok(day) => Some(day),
        Err(_) => {
            v.add(field, "MALFORMED", "must be a date like 2026-03-09");
            None
        }
    };
    let from = day("from_day", &request.from_day, &mut v);
    let to = day("to_day", &request.to_day, &mut v);
    let period = api::Period::try_from(request.period).unwrap_or(api::Period::Unspecified);
    if period == api::Period::Unspecified {
        v.add("period", "REQUIRED", "must be PERIOD_DAY, PERIOD_MONTH or PERIOD_TOTAL");
    }
    v.into_result()?;
    match (kind, from, to) {
        (Some(kind), Some(from), Some(to)) => Ok(LedgerParams { kind, from, to, period }),
        _ => Err(gridcase_grpc::status::internal(&"a ledger request passed its checks with a field unparsed")),
    }
}

impl QueryApi {
    pub(super) async fn ledger_rows(
        &self,
        scope: &ListScope,
        request: &api::LedgerRequest,
    ) -> Result<Vec<api::LedgerRow>, Status> {
        let LedgerParams { kind, from, to, period } = ledger_params(request)?;
        let period_sql = match period {
            api::Period::Day => "day::text",
            api::Period::Month => "to_char(day, 'YYYY-MM')",
            _ => "'total'",
        };
        let sums: Vec<String> = Measure::ALL.iter().map(|m| format!("SUM({})::bigint", m.column())).collect();
        let mut builder = QueryBuilder::new(format!(
            "SELECT org, {period_sql} AS period, {} FROM ledger_daily WHERE org_kind = ",
            sums.join(", ")
        ));
        builder.push_bind(kind.as_str());
        builder
            .push(" AND day BETWEEN ")
            .push_bind(from.to_string())
            .push("::date AND ")
            .push_bind(to.to_string())
            .push("::date");
        if !request.org.is_empty() {
            builder.push(" AND org = ").push_bind(&request.org);
        }
        match scope.region_prefix.as_deref() {
            // A township's rows through its index (a LIKE cannot use it).
            Some(township) if township.len() == 9 => builder.push(" AND township = ").push_bind(township.to_owned()),
            Some(prefix) => builder.push(" AND township LIKE ").push_bind(format!("{prefix}%")),
            None => &mut builder,
        };
        builder.push(" GROUP BY org, period ORDER BY org, period");
        let rows = builder.build().fetch_all(&self.pool).await.map_err(db_error)?;
        let overdue =
            if period == api::Period::Total { self.overdue_by_org(scope, kind).await? } else { BTreeMap::new() };
        Ok(rows
            .iter()
            .map(|row| {
                let org: String = row.get(0);
                let sums = LedgerSums {
                    period: row.get(1),
                    counts: Measure::ALL.iter().enumerate().map(|(i, m)| (*m, row.get::<i64, _>(i + 2))).collect(),
                };
                let overdue_open = overdue.get(&org).copied().unwrap_or(0);
                ledger_row(kind.as_str(), &org, &sums, overdue_open)
            })
            .collect())
    }

    async fn overdue_by_org(&self, scope: &ListScope, kind: OrgKind) -> Result<BTreeMap<String, u64>, Status> {
        let column = match kind {
            OrgKind::Township => "township",
            OrgKind::Village => "village",
            OrgKind::Grid => "grid",
            OrgKind::Unit => "unit",
            OrgKind::Worker => "reported_by",
            OrgKind::Kind => "request_kind",
            OrgKind::Channel => "channel",
        };
        let mut builder =
            QueryBuilder::new(format!("SELECT {column}, COUNT(*) FROM cases WHERE {column} IS NOT NULL AND "));
        overdue_condition(&mut builder, micros(self.clock.now()));
        push_scope(&mut builder, scope);
        builder.push(format!(" GROUP BY {column}"));
        let rows = builder.build().fetch_all(&self.pool).await.map_err(db_error)?;
        Ok(rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) as u64)).collect())
    }
}

/// The regions a ledger request names: the organisation, when it is a region.
pub(super) fn ledger_regions(request: &api::LedgerRequest) -> Vec<&str> {
    match OrgKind::parse(&request.org_kind) {
        Some(OrgKind::Township | OrgKind::Village | OrgKind::Grid) => vec![request.org.as_str()],
        _ => vec![],
    }
}

/// The columns of a ledger export.
pub(super) const LEDGER_HEADER: [&str; 33] = [
    "org_kind",
    "org",
    "period",
    "filed",
    "registered",
    "due",
    "closed",
    "closed_on_time",
    "closure_rate",
    "on_time_closure_rate",
    "dispatched",
    "returned",
    "accurate_dispatch_rate",
    "reworked",
    "rework_rate",
    "extended",
    "extension_rate",
    "average_acknowledge_seconds",
    "average_resolve_seconds",
    "satisfied",
    "basically_satisfied",
    "unsatisfied",
    "overdue_open",
    "turned_overdue",
    "reply_due",
    "replied",
    "replied_on_time",
    "reply_on_time_rate",
    "callback_due",
    "called_back",
    "callback_rate",
    "satisfaction_rate",
    "merged",
];

/// One ledger row as export fields (rates with four decimals).
pub(super) fn ledger_record(r: api::LedgerRow) -> Vec<String> {
    vec![
        r.org_kind,
        r.org,
        r.period,
        r.filed.to_string(),
        r.registered.to_string(),
        r.due.to_string(),
        r.closed.to_string(),
        r.closed_on_time.to_string(),
        f64_text(r.closure_rate),
        f64_text(r.on_time_closure_rate),
        r.dispatched.to_string(),
        r.returned.to_string(),
        f64_text(r.accurate_dispatch_rate),
        r.reworked.to_string(),
        f64_text(r.rework_rate),
        r.extended.to_string(),
        f64_text(r.extension_rate),
        f64_text(r.average_acknowledge_seconds),
        f64_text(r.average_resolve_seconds),
        r.satisfied.to_string(),
        r.basically_satisfied.to_string(),
        r.unsatisfied.to_string(),
        r.overdue_open.to_string(),
        r.turned_overdue.to_string(),
        r.reply_due.to_string(),
        r.replied.to_string(),
        r.replied_on_time.to_string(),
        f64_text(r.reply_on_time_rate),
        r.callback_due.to_string(),
        r.called_back.to_string(),
        f64_text(r.callback_rate),
        f64_text(r.satisfaction_rate),
        r.merged.to_string(),
    ]
}
