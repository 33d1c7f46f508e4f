//! `gridcase.query.v1.QueryService` over the read models.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use gridcase_auth::policy::{CaseScope, ListScope, Target, list_scope};
use gridcase_auth::principal::Territory;
use gridcase_calendar::Calendar;
use gridcase_domain::{CaseId, Clock, ClockMark, OrgCode, Status, TownshipCode};
use gridcase_eventlog::{CaseSubject, EventLog, Positioned, ReadFrom, StoredEvent, verify_history};
use gridcase_policy::{Limit, Planner, Policy};
use gridcase_proto::common::v1 as common;
use gridcase_proto::convert;
use gridcase_proto::query::v1::{self as api, query_service_server::QueryService};
use gridcase_runtime::auth::case_not_found;
use gridcase_runtime::{Access, Clock as TimeSource, Violations, grpc};
use jiff::Timestamp;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use tonic::{Request, Response, Status as GrpcStatus};

use crate::project::{CaseRow, OrgKind};
use crate::store::{self, from_micros, micros};

pub struct QueryApi {
    pub pool: PgPool,
    /// The event log: histories are verified against it, and `WatchCases`
    /// reads it.
    pub log: EventLog,
    pub policy: Arc<Policy>,
    pub calendar: Arc<Calendar>,
    pub clock: Arc<dyn TimeSource>,
}

const CLOCKS: [Clock; 4] = [Clock::Register, Clock::Acknowledge, Clock::Resolve, Clock::Verify];

fn db_error(error: impl std::fmt::Display) -> GrpcStatus {
    grpc::unavailable("the read-model database", &error)
}

/// A failure reading case rows: the database away (UNAVAILABLE) or a row
/// that does not decode (INTERNAL: a bug or a hand-edited table).
fn load_error(error: anyhow::Error) -> GrpcStatus {
    if error.downcast_ref::<sqlx::Error>().is_some() {
        db_error(format!("{error:#}"))
    } else {
        grpc::internal(&format!("{error:#}"))
    }
}

/// The SQL condition "some clock that runs in the case's state is past due
/// at `now`" (an integer we computed, so it is written into the SQL as is).
fn overdue_condition(builder: &mut QueryBuilder<Postgres>, now: i64) {
    builder.push(format!(
        "((state = 'REPORTED' AND register_due < ts_from_micros({now})) \
         OR (state = 'DISPATCHED' AND acknowledge_due < ts_from_micros({now})) \
         OR (state IN ('DISPATCHED', 'IN_PROGRESS') AND resolve_due < ts_from_micros({now})) \
         OR (state = 'RESOLVED' AND verify_due < ts_from_micros({now})))"
    ));
}

fn running_overdue(row: &CaseRow, now: Timestamp) -> Vec<(Clock, Timestamp)> {
    CLOCKS
        .into_iter()
        .filter(|clock| clock.runs_in(row.case.status))
        .filter_map(|clock| row.case.deadlines.get(&clock).filter(|due| **due < now).map(|due| (clock, *due)))
        .collect()
}

fn parse_case_id(text: &str) -> Result<CaseId, GrpcStatus> {
    CaseId::parse(text.trim()).map_err(|e| {
        let mut v = Violations::new();
        v.add("case_id", if text.trim().is_empty() { "REQUIRED" } else { "MALFORMED" }, e.to_string());
        v.into_status()
    })
}

impl QueryApi {
    /// A case row the caller may see: one outside their territory is
    /// NOT_FOUND, word for word as a missing one.
    async fn case_row(&self, access: &Access, case_id: &CaseId) -> Result<CaseRow, GrpcStatus> {
        let row = store::load_cases(&self.pool, &[*case_id.as_uuid()])
            .await
            .map_err(load_error)?
            .remove(case_id)
            .ok_or_else(|| case_not_found(case_id))?;
        access.case(case_id, &row_scope(&row))?;
        Ok(row)
    }

    /// Verify a case's history: the event log's hash chain, and every event
    /// the read model keeps (redacted) equal to the redacted logged event.
    /// The read model keeps no resident's contact details, so the chain is
    /// recomputed on the log's copy.
    async fn verify_against_log(&self, case: &CaseRow, kept: &[StoredEvent]) -> Result<(), String> {
        let subject = CaseSubject::for_grid(&case.case.grid, &case.case.id);
        let logged = self.log.history(&subject).await.map_err(|error| {
            tracing::warn!(%error, "the event log is unavailable: a history goes out unverified");
            "the event log is unavailable, so the chain could not be verified now".to_owned()
        })?;
        verify_history(&logged).map_err(|e| e.to_string())?;
        compare_kept(kept, &logged)
    }

    /// Whether a clock of this case runs in working time.
    fn working(&self, row: &CaseRow, clock: Clock) -> bool {
        let limit = match clock {
            Clock::Register => self.policy.register.clone(),
            _ => {
                let tier = row.case.tier.unwrap_or(gridcase_domain::Tier::Normal);
                let route = self.policy.route(&row.case.category, &row.case.grid);
                self.policy.limits(tier, route).for_clock(clock).cloned().expect("limit")
            }
        };
        !matches!(limit, Limit::Calendar(_))
    }

    /// How long a clock has been overdue, in its own kind of time.
    fn overdue_by(&self, row: &CaseRow, clock: Clock, due: Timestamp, now: Timestamp) -> (i64, &'static str) {
        let working = self.working(row, clock);
        let unit: Option<&OrgCode> =
            if matches!(clock, Clock::Acknowledge | Clock::Resolve) { row.case.unit.as_ref() } else { None };
        let elapsed = Planner::new(&self.policy, &self.calendar).running(working, unit, due, now);
        (elapsed.as_secs(), if working { "working time" } else { "calendar time" })
    }
}

/// Every event the read model keeps (redacted) must equal the redacted
/// logged event of the same version; a version the log has and the read
/// model skipped, below the last one it keeps, is missing from it.
fn compare_kept(kept: &[StoredEvent], logged: &[Positioned]) -> Result<(), String> {
    let kept_last = kept.last().map_or(0, |k| k.case_version);
    let mut kept_events = kept.iter().peekable();
    for original in logged.iter().map(|p| &p.event).take_while(|e| e.case_version <= kept_last) {
        match kept_events.peek() {
            Some(kept) if kept.case_version == original.case_version => {
                if original.redacted() != **kept {
                    return Err(format!(
                        "event {} ({}) of the read model was altered: it differs from the event log",
                        kept.case_version, kept.event_id
                    ));
                }
                kept_events.next();
            }
            _ => {
                return Err(format!(
                    "event {} ({}) is missing from the read model: the event log has it",
                    original.case_version, original.event_id
                ));
            }
        }
    }
    match kept_events.next() {
        Some(extra) => {
            Err(format!("event {} ({}) of the read model is not in the event log", extra.case_version, extra.event_id))
        }
        None => Ok(()),
    }
}

fn row_scope(row: &CaseRow) -> CaseScope {
    CaseScope {
        grid: row.case.grid.to_string(),
        unit: row.case.unit.as_ref().map(|u| u.to_string()),
        reporter: row.reported_by.clone(),
    }
}

/// What the caller may list, report on or export: their scope, with the
/// regions they asked for checked against their territory.
#[allow(clippy::result_large_err)]
fn scope_for(access: &Access, regions: &[&str]) -> Result<ListScope, GrpcStatus> {
    let scope = list_scope(&access.principal).ok_or_else(|| {
        GrpcStatus::permission_denied(format!("{} reads no cases", access.principal.role.with_article()))
    })?;
    // Everyone with a region territory (a grid worker's is their grid) may
    // name only regions inside it; a unit's lists are cut by the unit.
    if matches!(access.principal.territory, Territory::Region(_)) {
        for region in regions.iter().filter(|r| !r.is_empty()) {
            access.check(Target::Region(region))?;
        }
    }
    Ok(scope)
}

/// The scope of a report (overdue, ledger): always a region, so unit and
/// worker rows are cut to the caller's townships.
#[allow(clippy::result_large_err)]
fn report_scope(access: &Access, regions: &[&str]) -> Result<ListScope, GrpcStatus> {
    let scope = scope_for(access, regions)?;
    if scope.region_prefix.is_none() {
        return Err(GrpcStatus::permission_denied(format!(
            "{} reads no reports",
            access.principal.role.with_article()
        )));
    }
    Ok(scope)
}

/// AND the caller's scope into a query over `cases`.
fn push_scope(builder: &mut QueryBuilder<Postgres>, scope: &ListScope) {
    if let Some(prefix) = &scope.region_prefix {
        push_region(builder, prefix);
    }
    if let Some(unit) = &scope.unit {
        builder.push(" AND unit = ").push_bind(unit.clone());
    }
    if let Some(reporter) = &scope.reporter {
        builder.push(" AND reported_by = ").push_bind(reporter.clone());
    }
}

/// AND "the case lies in this region" (a digits-only prefix): a whole
/// township or county by its indexed column, anything else by grid prefix.
fn push_region(builder: &mut QueryBuilder<Postgres>, prefix: &str) {
    match prefix.len() {
        9 => builder.push(" AND township = ").push_bind(prefix.to_owned()),
        6 => builder.push(" AND county = ").push_bind(prefix.to_owned()),
        _ => builder.push(" AND grid LIKE ").push_bind(format!("{prefix}%")),
    };
}

/// The SQL of a case list: its filters within the caller's scope, newest
/// first, after the page token.
#[allow(clippy::result_large_err)]
pub fn list_query(
    filter: &api::ListCasesRequest,
    scope: &ListScope,
    now: Timestamp,
    columns: &str,
) -> Result<QueryBuilder<Postgres>, GrpcStatus> {
    let mut v = Violations::new();
    if !filter.region_prefix.bytes().all(|b| b.is_ascii_digit()) || filter.region_prefix.len() > 17 {
        v.add("region_prefix", "MALFORMED", "must be a region-code prefix (digits)");
    }
    let states: Vec<String> = filter
        .states
        .iter()
        .map(|s| convert::state_from_proto(*s).map(|s| s.name().to_owned()))
        .collect::<Option<_>>()
        .unwrap_or_else(|| {
            v.add("states", "UNKNOWN_VALUE", "every state must be a CaseState other than UNSPECIFIED");
            vec![]
        });
    let after = if filter.page_token.is_empty() {
        None
    } else {
        match filter
            .page_token
            .split_once(':')
            .and_then(|(t, id)| Some((t.parse::<i64>().ok()?, uuid::Uuid::parse_str(id).ok()?)))
        {
            Some(key) => Some(key),
            None => {
                v.add("page_token", "MALFORMED", "is not a token this service returned");
                None
            }
        }
    };
    v.into_result()?;
    let mut builder = QueryBuilder::new(format!("SELECT {columns} FROM cases WHERE TRUE"));
    push_scope(&mut builder, scope);
    if !filter.region_prefix.is_empty() {
        push_region(&mut builder, &filter.region_prefix);
    }
    if !filter.grid_code.is_empty() {
        builder.push(" AND grid = ").push_bind(filter.grid_code.clone());
    }
    if !states.is_empty() {
        builder.push(" AND state = ANY(").push_bind(states).push(")");
    }
    if let Some(tier) =
        gridcase_domain::Tier::ALL.into_iter().find(|t| convert::tier_to_proto(Some(*t)) as i32 == filter.tier)
    {
        builder.push(" AND tier = ").push_bind(tier.as_str());
    }
    if !filter.unit.is_empty() {
        builder.push(" AND unit = ").push_bind(filter.unit.clone());
    }
    if filter.overdue_only {
        builder.push(" AND ");
        overdue_condition(&mut builder, micros(now));
    }
    if let Some(from) = &filter.filed_from {
        builder.push(" AND filed_at >= ts_from_micros(").push_bind(filter_micros(from)).push(")");
    }
    if let Some(to) = &filter.filed_to {
        builder.push(" AND filed_at < ts_from_micros(").push_bind(filter_micros(to)).push(")");
    }
    if let Some((at, id)) = after {
        builder.push(" AND (filed_at, case_id) < (ts_from_micros(").push_bind(at).push("), ").push_bind(id).push(")");
    }
    builder.push(" ORDER BY filed_at DESC, case_id DESC");
    Ok(builder)
}

fn filter_micros(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000
}

const SUMMARY_COLUMNS: &str = "case_id, state, township, grid, category, tier, unit, supervision, micros(filed_at), \
    micros(register_due), micros(acknowledge_due), micros(resolve_due), micros(verify_due)";

fn summary(row: &sqlx::postgres::PgRow, now: Timestamp) -> api::CaseSummary {
    let status = Status::from_name(row.get::<&str, _>(1)).unwrap_or(Status::Reported);
    let overdue = [(9, Clock::Register), (10, Clock::Acknowledge), (11, Clock::Resolve), (12, Clock::Verify)]
        .into_iter()
        .any(|(i, clock)| {
            clock.runs_in(status) && row.get::<Option<i64>, _>(i).is_some_and(|due| from_micros(due) < now)
        });
    api::CaseSummary {
        case_id: row.get::<uuid::Uuid, _>(0).to_string(),
        state: convert::state_to_proto(status) as i32,
        township: row.get(2),
        grid_code: row.get(3),
        category_code: row.get(4),
        tier: convert::tier_to_proto(row.get::<Option<&str>, _>(5).and_then(gridcase_domain::Tier::parse)) as i32,
        unit: row.get::<Option<String>, _>(6).unwrap_or_default(),
        supervision: convert::supervision_to_proto(
            gridcase_domain::Supervision::from_name(row.get(7)).unwrap_or_default(),
        ) as i32,
        filed_at: Some(convert::timestamp_to_proto(from_micros(row.get(8)))),
        overdue,
    }
}

/// Ledger rows summed over a period.
struct LedgerSums {
    period: String,
    counts: BTreeMap<&'static str, i64>,
}

fn rate(numerator: i64, denominator: i64) -> f64 {
    if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 }
}

fn ledger_row(kind: &str, org: &str, sums: &LedgerSums, overdue_open: u64) -> api::LedgerRow {
    let c = |name: &str| *sums.counts.get(name).unwrap_or(&0);
    api::LedgerRow {
        org_kind: kind.to_owned(),
        org: org.to_owned(),
        period: sums.period.clone(),
        filed: c("filed") as u64,
        registered: c("registered") as u64,
        due: c("due").max(0) as u64,
        closed: c("closed") as u64,
        closed_on_time: c("closed_on_time") as u64,
        dispatched: c("dispatched") as u64,
        returned: c("returned") as u64,
        reworked: c("reworked") as u64,
        extended: c("extended") as u64,
        resolved: c("resolved") as u64,
        closure_rate: rate(c("closed"), c("due")),
        on_time_closure_rate: rate(c("closed_on_time"), c("due")),
        rework_rate: rate(c("reworked"), c("resolved")),
        extension_rate: rate(c("extended"), c("dispatched")),
        accurate_dispatch_rate: if c("dispatched") == 0 { 0.0 } else { 1.0 - rate(c("returned"), c("dispatched")) },
        average_acknowledge_seconds: rate(c("acknowledge_seconds"), c("acknowledged")),
        average_resolve_seconds: rate(c("resolve_seconds"), c("resolved")),
        satisfied: c("satisfied") as u64,
        basically_satisfied: c("basically_satisfied") as u64,
        unsatisfied: c("unsatisfied") as u64,
        overdue_open,
    }
}

const LEDGER_MEASURES: [&str; 16] = [
    "filed",
    "registered",
    "due",
    "closed",
    "closed_on_time",
    "dispatched",
    "returned",
    "reworked",
    "extended",
    "acknowledged",
    "acknowledge_seconds",
    "resolved",
    "resolve_seconds",
    "satisfied",
    "basically_satisfied",
    "unsatisfied",
];

impl QueryApi {
    pub async fn ledger_rows(
        &self,
        scope: &ListScope,
        request: &api::LedgerRequest,
    ) -> Result<Vec<api::LedgerRow>, GrpcStatus> {
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
        let (kind, from, to) = (kind.expect("validated"), from.expect("validated"), to.expect("validated"));
        let period_sql = match period {
            api::Period::Day => "day::text",
            api::Period::Month => "to_char(day, 'YYYY-MM')",
            _ => "'total'",
        };
        let sums: Vec<String> = LEDGER_MEASURES.iter().map(|m| format!("SUM({m})::bigint")).collect();
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
        if let Some(prefix) = &scope.region_prefix {
            builder.push(" AND township LIKE ").push_bind(format!("{prefix}%"));
        }
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
                    counts: LEDGER_MEASURES.iter().enumerate().map(|(i, m)| (*m, row.get::<i64, _>(i + 2))).collect(),
                };
                let overdue_open = overdue.get(&org).copied().unwrap_or(0);
                ledger_row(kind.as_str(), &org, &sums, overdue_open)
            })
            .collect())
    }

    async fn overdue_by_org(&self, scope: &ListScope, kind: OrgKind) -> Result<BTreeMap<String, u64>, GrpcStatus> {
        let column = match kind {
            OrgKind::Township => "township",
            OrgKind::Village => "village",
            OrgKind::Grid => "grid",
            OrgKind::Unit => "unit",
            OrgKind::Worker => "reported_by",
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

type ExportStream = Pin<Box<dyn Stream<Item = Result<api::ExportChunk, GrpcStatus>> + Send>>;

/// Buffer CSV rows and hand them out in chunks of about 64 KiB.
fn csv_chunks<S>(header: Vec<String>, rows: S) -> ExportStream
where
    S: Stream<Item = Result<Vec<String>, GrpcStatus>> + Send + 'static,
{
    const CHUNK: usize = 64 * 1024;
    let stream = async_stream_chunks(header, rows, CHUNK);
    Box::pin(stream)
}

fn async_stream_chunks<S>(
    header: Vec<String>,
    rows: S,
    chunk: usize,
) -> impl Stream<Item = Result<api::ExportChunk, GrpcStatus>> + Send
where
    S: Stream<Item = Result<Vec<String>, GrpcStatus>> + Send + 'static,
{
    let mut buffer = Vec::with_capacity(chunk + 1024);
    append_record(&mut buffer, &header);
    futures::stream::unfold((Box::pin(rows), buffer, false), move |(mut rows, mut buffer, done)| async move {
        if done {
            return None;
        }
        loop {
            match rows.next().await {
                Some(Ok(record)) => {
                    append_record(&mut buffer, &record);
                    if buffer.len() >= chunk {
                        let data = std::mem::take(&mut buffer);
                        return Some((Ok(api::ExportChunk { data }), (rows, buffer, false)));
                    }
                }
                Some(Err(status)) => return Some((Err(status), (rows, buffer, true))),
                None => {
                    let data = std::mem::take(&mut buffer);
                    return Some((Ok(api::ExportChunk { data }), (rows, buffer, true)));
                }
            }
        }
    })
}

/// One CSV record (quoted as needed by the csv crate) appended to `buffer`.
fn append_record(buffer: &mut Vec<u8>, record: &[String]) {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    writer.write_record(record).expect("writing to memory");
    buffer.extend(writer.into_inner().expect("flushing to memory"));
}

fn f64_text(value: f64) -> String {
    format!("{value:.4}")
}

#[tonic::async_trait]
impl QueryService for QueryApi {
    async fn get_case(&self, request: Request<api::GetCaseRequest>) -> Result<Response<api::CaseRecord>, GrpcStatus> {
        let access = Access::of(&request)?;
        let case_id = parse_case_id(&request.get_ref().case_id)?;
        let row = self.case_row(access, &case_id).await?;
        let now = self.clock.now();
        let case = &row.case;
        let deadlines = CLOCKS
            .into_iter()
            .filter_map(|clock| {
                let due = *case.deadlines.get(&clock)?;
                let running = clock.runs_in(case.status);
                Some(api::DeadlineStatus {
                    clock: convert::clock_to_proto(clock) as i32,
                    due: Some(convert::timestamp_to_proto(due)),
                    running,
                    overdue: running && due < now,
                    warned: case.marks.contains(&(clock, ClockMark::Warning)),
                    marked_overdue: case.marks.contains(&(clock, ClockMark::Overdue)),
                })
            })
            .collect();
        Ok(Response::new(api::CaseRecord {
            case_id: case.id.to_string(),
            version: case.version,
            state: convert::state_to_proto(case.status) as i32,
            township: case.grid.township().to_string(),
            village: case.grid.village().to_owned(),
            grid_code: case.grid.to_string(),
            category_code: case.category.to_string(),
            description: row.description.clone(),
            reported_by: row.reported_by.clone(),
            contact_phone_masked: row.contact_phone_masked.clone().unwrap_or_default(),
            tier: convert::tier_to_proto(case.tier) as i32,
            unit: case.unit.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            supervision: convert::supervision_to_proto(case.supervision) as i32,
            urgent: case.urgent,
            filed_at: Some(convert::timestamp_to_proto(row.filed_at)),
            deadlines,
            returns: case.returns,
            reworks: case.reworks,
            reopenings: case.reopenings,
            approved_extension_days: case.approved_extension_days,
            feedback: convert::feedback_to_proto(case.feedback) as i32,
        }))
    }

    async fn get_case_history(
        &self,
        request: Request<api::GetCaseHistoryRequest>,
    ) -> Result<Response<api::CaseHistory>, GrpcStatus> {
        let access = Access::of(&request)?;
        let case_id = parse_case_id(&request.get_ref().case_id)?;
        let case = self.case_row(access, &case_id).await?;
        let rows = sqlx::query(
            "SELECT stream_sequence, envelope, reason FROM case_events WHERE case_id = $1 ORDER BY case_version",
        )
        .bind(case_id.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        if rows.is_empty() {
            return Err(case_not_found(&case_id));
        }
        let mut stored = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let envelope: &str = row.get(1);
            let event = StoredEvent::from_json_bytes(envelope.as_bytes()).map_err(|e| grpc::internal(&e))?;
            let attachments = event
                .payload
                .get("attachments")
                .or_else(|| event.payload.get("evidence"))
                .and_then(|a| a.as_array())
                .map(|list| {
                    list.iter()
                        .map(|a| common::AttachmentRef {
                            sha256: a["sha256"].as_str().unwrap_or_default().to_owned(),
                            size: a["size"].as_u64().unwrap_or_default(),
                            content_type: a["content_type"].as_str().unwrap_or_default().to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            events.push(api::HistoryEntry {
                case_version: event.case_version,
                stream_sequence: row.get::<i64, _>(0) as u64,
                event_id: event.event_id.to_string(),
                r#type: event.event_type.clone(),
                occurred_at: Some(convert::timestamp_to_proto(event.occurred_at)),
                actor_person: event.actor.person.clone(),
                actor_role: event.actor.role.as_str().to_owned(),
                actor_organisation: event.actor.organisation.clone(),
                reason: row.get::<Option<String>, _>(2).unwrap_or_default(),
                attachments,
                hash: event.hash.clone(),
                prev_hash: event.prev_hash.clone().unwrap_or_default(),
            });
            stored.push(event);
        }
        let chain = self.verify_against_log(&case, &stored).await;
        Ok(Response::new(api::CaseHistory {
            case_id: case_id.to_string(),
            events,
            chain_verified: chain.is_ok(),
            chain_problem: chain.err().unwrap_or_default(),
        }))
    }

    async fn list_cases(
        &self,
        request: Request<api::ListCasesRequest>,
    ) -> Result<Response<api::ListCasesResponse>, GrpcStatus> {
        let scope =
            scope_for(Access::of(&request)?, &[&request.get_ref().region_prefix, &request.get_ref().grid_code])?;
        let filter = request.into_inner();
        let now = self.clock.now();
        let page_size = if filter.page_size == 0 { 100 } else { filter.page_size.min(1000) } as i64;
        let mut builder = list_query(&filter, &scope, now, SUMMARY_COLUMNS)?;
        builder.push(" LIMIT ").push_bind(page_size + 1);
        let rows = builder.build().fetch_all(&self.pool).await.map_err(db_error)?;
        let more = rows.len() as i64 > page_size;
        let rows = &rows[..rows.len().min(page_size as usize)];
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => format!("{}:{}", last.get::<i64, _>(8), last.get::<uuid::Uuid, _>(0)),
            _ => String::new(),
        };
        Ok(Response::new(api::ListCasesResponse {
            cases: rows.iter().map(|r| summary(r, now)).collect(),
            next_page_token,
        }))
    }

    async fn overdue_report(
        &self,
        request: Request<api::OverdueReportRequest>,
    ) -> Result<Response<api::OverdueReportResponse>, GrpcStatus> {
        let prefix = request.get_ref().region_prefix.clone();
        if !prefix.bytes().all(|b| b.is_ascii_digit()) {
            let mut v = Violations::new();
            v.add("region_prefix", "MALFORMED", "must be a region-code prefix (digits)");
            return Err(v.into_status());
        }
        let scope = report_scope(Access::of(&request)?, &[&prefix])?;
        let now = self.clock.now();
        let mut builder = QueryBuilder::new("SELECT case_id FROM cases WHERE grid LIKE ");
        builder.push_bind(format!("{prefix}%"));
        push_scope(&mut builder, &scope);
        builder.push(" AND ");
        overdue_condition(&mut builder, micros(now));
        let ids: Vec<uuid::Uuid> =
            builder.build().fetch_all(&self.pool).await.map_err(db_error)?.iter().map(|r| r.get(0)).collect();
        let rows = store::load_cases(&self.pool, &ids).await.map_err(load_error)?;
        let mut groups: BTreeMap<(String, String), Vec<api::OverdueItem>> = BTreeMap::new();
        let mut total = 0;
        for row in rows.values() {
            for (clock, due) in running_overdue(row, now) {
                let (overdue_seconds, unit_of_time) = self.overdue_by(row, clock, due, now);
                let key = (
                    row.case.grid.township().to_string(),
                    row.case.unit.as_ref().map(|u| u.to_string()).unwrap_or_default(),
                );
                groups.entry(key).or_default().push(api::OverdueItem {
                    case_id: row.case.id.to_string(),
                    clock: convert::clock_to_proto(clock) as i32,
                    due: Some(convert::timestamp_to_proto(due)),
                    overdue_seconds,
                    unit_of_time: unit_of_time.into(),
                    supervision: convert::supervision_to_proto(row.case.supervision) as i32,
                    tier: convert::tier_to_proto(row.case.tier) as i32,
                    grid_code: row.case.grid.to_string(),
                });
                total += 1;
            }
        }
        let groups = groups
            .into_iter()
            .map(|((township, unit), mut items)| {
                items.sort_by(|a, b| b.overdue_seconds.cmp(&a.overdue_seconds).then(a.case_id.cmp(&b.case_id)));
                api::OverdueGroup { township, unit, items }
            })
            .collect();
        Ok(Response::new(api::OverdueReportResponse { as_of: Some(convert::timestamp_to_proto(now)), groups, total }))
    }

    async fn ledger(&self, request: Request<api::LedgerRequest>) -> Result<Response<api::LedgerResponse>, GrpcStatus> {
        let scope = report_scope(Access::of(&request)?, &ledger_regions(request.get_ref()))?;
        Ok(Response::new(api::LedgerResponse { rows: self.ledger_rows(&scope, request.get_ref()).await? }))
    }

    type ExportCasesStream = ExportStream;

    async fn export_cases(
        &self,
        request: Request<api::ExportCasesRequest>,
    ) -> Result<Response<ExportStream>, GrpcStatus> {
        let access = Access::of(&request)?.clone();
        let request = request.into_inner();
        let format = export_format(request.format)?;
        let filter = request.filter.unwrap_or_default();
        let scope = scope_for(&access, &[&filter.region_prefix, &filter.grid_code])?;
        let now = self.clock.now();
        let mut builder = list_query(&filter, &scope, now, SUMMARY_COLUMNS)?;
        let pool = self.pool.clone();
        // Rows flow from the database cursor through a small channel: bounded memory.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<String>, GrpcStatus>>(256);
        tokio::spawn(async move {
            let mut rows = builder.build().fetch(&pool);
            while let Some(row) = rows.next().await {
                let record = row.map_err(db_error).map(|row| {
                    let s = summary(&row, now);
                    vec![
                        s.case_id,
                        row.get::<String, _>(1),
                        s.township,
                        s.grid_code,
                        s.category_code,
                        row.get::<Option<String>, _>(5).unwrap_or_default(),
                        s.unit,
                        row.get::<String, _>(7),
                        from_micros(row.get(8)).to_string(),
                        s.overdue.to_string(),
                    ]
                });
                if tx.send(record).await.is_err() {
                    return;
                }
            }
        });
        let header =
            ["case_id", "state", "township", "grid", "category", "tier", "unit", "supervision", "filed_at", "overdue"]
                .map(String::from)
                .to_vec();
        let numeric = vec![false; header.len()];
        Ok(Response::new(export(format, header, numeric, tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    type WatchCasesStream = WatchStream;

    async fn watch_cases(&self, request: Request<api::WatchCasesRequest>) -> Result<Response<WatchStream>, GrpcStatus> {
        let access = Access::of(&request)?.clone();
        let api::WatchCasesRequest { township, after_sequence: request_after } = request.into_inner();
        let Ok(township_code) = TownshipCode::parse(&township) else {
            let mut v = Violations::new();
            v.add("township", "MALFORMED", "must be a 9-digit township code");
            return Err(v.into_status());
        };
        access.check(Target::Region(&township))?;
        let from = match request_after {
            0 => ReadFrom::New,
            after => ReadFrom::after(after),
        };
        let reader = self
            .log
            .read(CaseSubject::township_filter(&township_code), from)
            .await
            .map_err(|e| grpc::unavailable("the event log", &e))?;
        let changes = reader.filter_map(move |record| {
            let township = township.clone();
            async move {
                let record = match record {
                    Ok(record) => record,
                    Err(error) => {
                        // The ordered consumer resumes after the last event it delivered.
                        tracing::warn!(%error, "reading the case stream for a watch; resuming");
                        return None;
                    }
                };
                let stored = match StoredEvent::from_json_bytes(&record.payload) {
                    Ok(stored) => stored,
                    Err(error) => {
                        tracing::warn!(sequence = record.sequence, %error, "unreadable message not sent to a watch");
                        return None;
                    }
                };
                Some(Ok(api::CaseChange {
                    case_id: stored.case_id.to_string(),
                    township,
                    event_type: stored.event_type,
                    case_version: stored.case_version,
                    occurred_at: Some(convert::timestamp_to_proto(stored.occurred_at)),
                    actor_role: stored.actor.role.as_str().to_owned(),
                    actor_organisation: stored.actor.organisation,
                    stream_sequence: record.sequence,
                }))
            }
        });
        // The stream lasts as long as the token: then it ends with
        // UNAUTHENTICATED and the screen reconnects with a fresh one.
        let valid_until = access.valid_until;
        let remaining = std::time::Duration::try_from(valid_until.duration_since(Timestamp::now())).unwrap_or_default();
        let expired = futures::stream::once(async move {
            (Timestamp::now() >= valid_until)
                .then(|| Err(GrpcStatus::unauthenticated("the token has expired: watch again with a fresh one")))
        })
        .filter_map(std::future::ready);
        Ok(Response::new(Box::pin(changes.take_until(tokio::time::sleep(remaining)).chain(expired))))
    }

    type ExportLedgerStream = ExportStream;

    async fn export_ledger(
        &self,
        request: Request<api::ExportLedgerRequest>,
    ) -> Result<Response<ExportStream>, GrpcStatus> {
        let access = Access::of(&request)?.clone();
        let request = request.into_inner();
        let format = export_format(request.format)?;
        let ledger = request.ledger.unwrap_or_default();
        let scope = report_scope(&access, &ledger_regions(&ledger))?;
        let rows = self.ledger_rows(&scope, &ledger).await?;
        let header = [
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
        ]
        .map(String::from)
        .to_vec();
        let records = rows.into_iter().map(|r| {
            Ok(vec![
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
            ])
        });
        let numeric: Vec<bool> = (0..header.len()).map(|column| column >= 3).collect();
        Ok(Response::new(export(format, header, numeric, futures::stream::iter(records.collect::<Vec<_>>()))))
    }
}

/// The regions a ledger request names: the organisation, when it is a region.
fn ledger_regions(request: &api::LedgerRequest) -> Vec<&str> {
    match OrgKind::parse(&request.org_kind) {
        Some(OrgKind::Township | OrgKind::Village | OrgKind::Grid) => vec![request.org.as_str()],
        _ => vec![],
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<api::CaseChange, GrpcStatus>> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Xlsx,
}

#[allow(clippy::result_large_err)]
fn export_format(format: i32) -> Result<Format, GrpcStatus> {
    match api::ExportFormat::try_from(format) {
        Ok(api::ExportFormat::Csv) => Ok(Format::Csv),
        Ok(api::ExportFormat::Xlsx) => Ok(Format::Xlsx),
        _ => {
            let mut v = Violations::new();
            v.add("format", "UNSUPPORTED", "must be EXPORT_FORMAT_CSV or EXPORT_FORMAT_XLSX");
            Err(v.into_status())
        }
    }
}

/// Export rows in the asked format: CSV chunks as rows arrive, or an XLSX
/// workbook written in constant memory (rows spill to a temporary file) and
/// then streamed from disk. Either way memory stays bounded.
fn export<S>(format: Format, header: Vec<String>, numeric: Vec<bool>, rows: S) -> ExportStream
where
    S: Stream<Item = Result<Vec<String>, GrpcStatus>> + Send + 'static,
{
    match format {
        Format::Csv => csv_chunks(header, rows),
        Format::Xlsx => xlsx_chunks(header, numeric, rows),
    }
}

fn xlsx_chunks<S>(header: Vec<String>, numeric: Vec<bool>, rows: S) -> ExportStream
where
    S: Stream<Item = Result<Vec<String>, GrpcStatus>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<api::ExportChunk, GrpcStatus>>(4);
    tokio::spawn(async move {
        let (row_tx, row_rx) = std::sync::mpsc::sync_channel::<Vec<String>>(256);
        let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<tempfile::NamedTempFile> {
            let mut workbook = rust_xlsxwriter::Workbook::new();
            let sheet = workbook.add_worksheet_with_constant_memory()?;
            for (column, name) in header.iter().enumerate() {
                sheet.write_string(0, column as u16, name)?;
            }
            for (index, row) in row_rx.iter().enumerate() {
                let line = index as u32 + 1;
                for (column, value) in row.iter().enumerate() {
                    let number =
                        numeric.get(column).copied().unwrap_or(false).then(|| value.parse::<f64>().ok()).flatten();
                    match number {
                        Some(number) => sheet.write_number(line, column as u16, number)?,
                        None => sheet.write_string(line, column as u16, value)?,
                    };
                }
            }
            let file = tempfile::NamedTempFile::new()?;
            workbook.save(file.path())?;
            Ok(file)
        });
        let mut rows = Box::pin(rows);
        while let Some(row) = rows.next().await {
            match row {
                Ok(row) => {
                    if row_tx.send(row).is_err() {
                        break;
                    }
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
        drop(row_tx);
        let file = match writer.await {
            Ok(Ok(file)) => file,
            Ok(Err(error)) => return drop(tx.send(Err(grpc::internal(&error))).await),
            Err(error) => return drop(tx.send(Err(grpc::internal(&error))).await),
        };
        let mut source = match tokio::fs::File::open(file.path()).await {
            Ok(source) => source,
            Err(error) => return drop(tx.send(Err(grpc::internal(&error))).await),
        };
        loop {
            let mut data = vec![0u8; 64 * 1024];
            match tokio::io::AsyncReadExt::read(&mut source, &mut data).await {
                Ok(0) => return,
                Ok(read) => {
                    data.truncate(read);
                    if tx.send(Ok(api::ExportChunk { data })).await.is_err() {
                        return;
                    }
                }
                Err(error) => return drop(tx.send(Err(grpc::internal(&error))).await),
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
