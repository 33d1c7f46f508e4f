//! `gridcase.query.v1.QueryService` over the read models: the handlers,
//! with the SQL ([`sql`]), ledgers ([`ledger`]), exports ([`export`]) and the
//! live watch ([`watch`]) beside them.

mod export;
mod ledger;
mod map;
pub mod mine;
pub mod nearby;
pub mod requests;
pub mod sql;
pub mod updates;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use gridcase_auth::policy::CaseScope;
use gridcase_calendar::Calendar;
use gridcase_domain::{CaseId, Clock, ClockMark, ContactState};
use gridcase_envelope::sealing::{SealedJson, open_contact};
use gridcase_envelope::{CaseSubject, Positioned, StoredEvent, verify_history};
use gridcase_eventlog::{EventLog, KeyState, KeyStore};
use gridcase_grpc::auth::case_not_found;
use gridcase_grpc::{Access, Violations, status};
use gridcase_policy::{Planner, Policy};
use gridcase_process::TimeSource;
use gridcase_proto::common::v1 as common;
use gridcase_proto::convert;
use gridcase_proto::query::v1::{self as api, query_service_server::QueryService};
use jiff::Timestamp;
use sqlx::{PgPool, QueryBuilder, Row};
use tonic::{Request, Response, Status};

use crate::columns::{from_micros, micros};
use crate::project::CaseRow;
use crate::store;
use export::{ExportStream, export, export_format};
use ledger::{LEDGER_HEADER, ledger_record, ledger_regions};
pub use sql::list_query;
use sql::{SUMMARY_COLUMNS, counts_query, overdue_condition, push_scope, report_scope, scope_for, summary};
use watch::WatchStream;

pub struct QueryApi {
    pub pool: PgPool,
    /// The event log: histories are verified against it, and `WatchCases`
    /// reads it.
    pub log: EventLog,
    /// Opens sealed contact details to mask them (GetCase).
    pub keys: KeyStore,
    pub policy: Arc<Policy>,
    pub calendar: Arc<Calendar>,
    pub clock: Arc<dyn TimeSource>,
    /// The service's shutdown: open watches end with it, so they never
    /// hold a graceful stop for the whole grace period.
    pub shutdown: Option<gridcase_process::Shutdown>,
}

pub(super) const CLOCKS: [Clock; 6] = Clock::ALL;

pub(super) fn db_error(error: impl std::fmt::Display) -> Status {
    status::unavailable("the read-model database", &error)
}

/// A failure reading case rows: the database away (UNAVAILABLE) or a row
/// that does not decode (INTERNAL: a bug or a hand-edited table).
fn load_error(error: anyhow::Error) -> Status {
    if error.downcast_ref::<sqlx::Error>().is_some() {
        db_error(format!("{error:#}"))
    } else {
        status::internal(&format!("{error:#}"))
    }
}

fn running_overdue(row: &CaseRow, now: Timestamp) -> Vec<(Clock, Timestamp)> {
    CLOCKS
        .into_iter()
        .filter(|clock| clock.runs_in(row.case.state))
        .filter_map(|clock| row.case.deadlines.get(&clock).filter(|due| **due < now).map(|due| (clock, *due)))
        .collect()
}

/// What a case export says of the resident's contact details: never the
/// details themselves (GetCase shows them to those allowed), only whether
/// they are on file or were erased.
fn export_contact(contact_state: &str) -> &'static str {
    match contact_state {
        "given" => "on file",
        "erased" => "erased",
        _ => "",
    }
}

/// An overdue report's region prefix: digits (empty: the caller's whole territory).
fn report_prefix(prefix: &str) -> Result<(), Status> {
    if prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Err(Violations::one("region_prefix", "MALFORMED", "must be a region-code prefix (digits)"))
}

fn parse_case_id(text: &str) -> Result<CaseId, Status> {
    CaseId::parse(text.trim()).map_err(|e| {
        let mut v = Violations::new();
        v.add("case_id", if text.trim().is_empty() { "REQUIRED" } else { "MALFORMED" }, e.to_string());
        v.into_status()
    })
}

impl QueryApi {
    /// A case row the caller may see: one outside their territory is
    /// NOT_FOUND, word for word as a missing one.
    async fn case_row(&self, access: &Access, case_id: &CaseId) -> Result<CaseRow, Status> {
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

    /// Time left until `due` at `now` in the clock's own kind of time
    /// (negative once past), and whether that is working time.
    fn remaining(&self, row: &CaseRow, clock: Clock, due: Timestamp, now: Timestamp) -> (i64, bool) {
        let terms = self.policy.clock_terms(clock, &row.case);
        let planner = Planner::new(&self.policy, &self.calendar);
        let seconds = if due >= now {
            planner.running(terms.working, terms.hours_of.as_ref(), now, due).as_secs()
        } else {
            -planner.running(terms.working, terms.hours_of.as_ref(), due, now).as_secs()
        };
        (seconds, terms.working)
    }

    /// How long a clock has been overdue, in its own kind of time (as
    /// recorded with its deadline: [`Policy::clock_terms`]).
    fn overdue_by(&self, row: &CaseRow, clock: Clock, due: Timestamp, now: Timestamp) -> (i64, &'static str) {
        let terms = self.policy.clock_terms(clock, &row.case);
        let planner = Planner::new(&self.policy, &self.calendar);
        let elapsed = planner.running(terms.working, terms.hours_of.as_ref(), due, now);
        (elapsed.as_secs(), if terms.working { "working time" } else { "calendar time" })
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

/// The resident's phone number masked (138****5678), and whether the
/// contact details were erased. Sealed details are opened with the case's
/// key here, at read time; the read model holds only their ciphertext.
/// Details recorded in clear (before sealing) are masked in the filing's
/// redacted envelope, which the audit history keeps.
async fn masked_phone(pool: &PgPool, keys: &KeyStore, row: &CaseRow) -> Result<(String, bool), Status> {
    let case_id = &row.case.id;
    match (row.case.contact, &row.contact_sealed) {
        (ContactState::Erased, _) => Ok((String::new(), true)),
        (ContactState::None, _) => Ok((String::new(), false)),
        (ContactState::Given, Some(sealed)) => {
            let sealed = SealedJson::from_json(sealed).map_err(|e| status::internal(&e))?;
            match keys.key(case_id).await {
                Ok(KeyState::Present(key)) => {
                    let contact = open_contact(&key, case_id, &sealed).map_err(|e| status::internal(&e))?;
                    Ok((contact.phone.map(|p| p.masked()).unwrap_or_default(), false))
                }
                // The key is gone: erased, the erasure event not projected yet.
                Ok(KeyState::Absent | KeyState::Erased) => Ok((String::new(), true)),
                Err(error) => Err(status::unavailable("the key store", &error)),
            }
        }
        (ContactState::Given, None) => {
            let phone: Option<String> = sqlx::query_scalar(
                "SELECT envelope::jsonb #>> '{payload,resident_contact,phone}' FROM case_events \
                 WHERE case_id = $1 AND case_version = 1",
            )
            .bind(case_id.as_uuid())
            .fetch_optional(pool)
            .await
            .map_err(|e| status::unavailable("the read models", &e))?
            .flatten();
            Ok((phone.unwrap_or_default(), false))
        }
    }
}

fn row_scope(row: &CaseRow) -> CaseScope {
    CaseScope {
        grid: row.case.grid.to_string(),
        unit: row.case.unit.as_ref().map(|u| u.to_string()),
        reporter: row.reported_by.clone(),
    }
}

#[tonic::async_trait]
impl QueryService for QueryApi {
    async fn get_case(&self, request: Request<api::GetCaseRequest>) -> Result<Response<api::CaseRecord>, Status> {
        let access = Access::of(&request)?;
        let case_id = parse_case_id(&request.get_ref().case_id)?;
        let row = self.case_row(access, &case_id).await?;
        let (contact_phone_masked, contact_erased) = masked_phone(&self.pool, &self.keys, &row).await?;
        let now = self.clock.now();
        let case = &row.case;
        let deadlines = CLOCKS
            .into_iter()
            .filter_map(|clock| {
                let due = *case.deadlines.get(&clock)?;
                let running = clock.runs_in(case.state);
                let (remaining_seconds, working_time) = self.remaining(&row, clock, due, now);
                Some(api::DeadlineStatus {
                    clock: convert::clock_to_proto(clock) as i32,
                    due: Some(convert::timestamp_to_proto(due)),
                    running,
                    overdue: running && due < now,
                    warned: case.marks.contains(&(clock, ClockMark::Warning)),
                    marked_overdue: case.marks.contains(&(clock, ClockMark::Overdue)),
                    remaining_seconds,
                    working_time,
                })
            })
            .collect();
        Ok(Response::new(api::CaseRecord {
            case_id: case.id.to_string(),
            version: case.version,
            state: convert::state_to_proto(case.state) as i32,
            township: case.grid.township().to_string(),
            village: case.grid.village().to_owned(),
            grid_code: case.grid.to_string(),
            category_code: case.category.to_string(),
            description: row.description.clone(),
            reported_by: row.reported_by.clone(),
            contact_phone_masked,
            contact_erased,
            tier: convert::tier_to_proto(case.tier) as i32,
            unit: case.unit.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            supervision: convert::supervision_to_proto(case.supervision) as i32,
            urgent: case.urgent,
            filed_at: Some(convert::timestamp_to_proto(row.filed_at)),
            reported_at: row.reported_at.map(convert::timestamp_to_proto),
            reports: 1 + case.added_reports,
            merged_into: case.merged_into.map(|id| id.to_string()).unwrap_or_default(),
            deadlines,
            returns: case.returns,
            reworks: case.reworks,
            reopenings: case.reopenings,
            approved_extension_days: case.approved_extension_days,
            feedback: convert::feedback_to_proto(case.feedback) as i32,
            location: row.location_e6.map(|(lat, lon)| sql::location(lat, lon)),
            outside_grid_m: row.outside_grid_m.unwrap_or(0),
            channel: convert::channel_to_proto(row.channel) as i32,
            request_kind: convert::request_kind_to_proto(row.request_kind) as i32,
            reference: row.reference.clone().unwrap_or_default(),
            updated_at: Some(convert::timestamp_to_proto(row.updated_at)),
        }))
    }

    async fn get_case_history(
        &self,
        request: Request<api::GetCaseHistoryRequest>,
    ) -> Result<Response<api::CaseHistory>, Status> {
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
            let event = StoredEvent::from_json_bytes(envelope.as_bytes()).map_err(|e| status::internal(&e))?;
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
    ) -> Result<Response<api::ListCasesResponse>, Status> {
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
        let clock = sql::list_clock(&filter);
        let cases: Vec<api::CaseSummary> = rows.iter().map(|r| summary(r, now, clock)).collect();
        let next_page_token = match (more, rows.last(), cases.last()) {
            (true, Some(last), Some(shown)) => {
                let id = last.get::<uuid::Uuid, _>(0);
                let key = if sql::due_soonest(&filter) {
                    let due = shown.next_due.as_ref().and_then(convert::timestamp_from_proto).map(micros);
                    sql::PageKey::Due(due, id)
                } else {
                    sql::PageKey::Filed(last.get::<i64, _>(8), id)
                };
                key.token()
            }
            _ => String::new(),
        };
        Ok(Response::new(api::ListCasesResponse { cases, next_page_token }))
    }

    async fn overdue_report(
        &self,
        request: Request<api::OverdueReportRequest>,
    ) -> Result<Response<api::OverdueReportResponse>, Status> {
        let prefix = request.get_ref().region_prefix.clone();
        report_prefix(&prefix)?;
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

    async fn count_cases(&self, request: Request<api::CountCasesRequest>) -> Result<Response<api::CaseCounts>, Status> {
        let prefix = request.get_ref().region_prefix.clone();
        report_prefix(&prefix)?;
        let scope = scope_for(Access::of(&request)?, &[&prefix])?;
        let now = self.clock.now();
        let end_of_today = self.calendar.end_of_day(now);
        let (as_of_sequence, _) = store::position(&self.pool).await.map_err(load_error)?;
        let row = counts_query(&scope, &prefix, micros(now), micros(end_of_today))
            .build()
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        let count = |i: usize| row.get::<i64, _>(i) as u64;
        Ok(Response::new(api::CaseCounts {
            as_of: Some(convert::timestamp_to_proto(now)),
            open: count(0),
            due_today: count(1),
            overdue: count(2),
            on_hold: count(3),
            yellow_card: count(4),
            red_card: count(5),
            as_of_sequence,
        }))
    }

    async fn list_case_updates(
        &self,
        request: Request<api::ListCaseUpdatesRequest>,
    ) -> Result<Response<api::ListCaseUpdatesResponse>, Status> {
        let scope = scope_for(Access::of(&request)?, &[])?;
        Ok(Response::new(updates::list_case_updates(&self.pool, &scope, request.get_ref()).await?))
    }

    async fn find_similar_cases(
        &self,
        request: Request<api::FindSimilarCasesRequest>,
    ) -> Result<Response<api::FindSimilarCasesResponse>, Status> {
        let access = Access::of(&request)?;
        let nearby = nearby::check(request.get_ref())?;
        let region = nearby::region_of(access)?;
        Ok(Response::new(nearby::find(&self.pool, &region, &nearby, self.clock.now()).await?))
    }

    async fn list_my_cases(
        &self,
        request: Request<api::ListMyCasesRequest>,
    ) -> Result<Response<api::ListMyCasesResponse>, Status> {
        let access = Access::of(&request)?;
        let (cursor, page) = mine::check(request.get_ref())?;
        let region = nearby::region_of(access)?;
        Ok(Response::new(mine::list(&self.pool, &access.principal.subject, &region, cursor, page).await?))
    }

    async fn get_public_status(
        &self,
        request: Request<api::GetPublicStatusRequest>,
    ) -> Result<Response<api::GetPublicStatusResponse>, Status> {
        Ok(Response::new(updates::public_status(&self.pool, request.get_ref()).await?))
    }

    async fn get_grid_map(&self, request: Request<api::GetGridMapRequest>) -> Result<Response<api::GridMap>, Status> {
        let prefix = request.get_ref().region_prefix.clone();
        report_prefix(&prefix)?;
        let scope = scope_for(Access::of(&request)?, &[&prefix])?;
        let max_cases = match request.get_ref().max_cases {
            0 => map::MAX_CASES,
            n => n.min(map::MAX_CASES),
        };
        let now = self.clock.now();
        let with_grids = !request.get_ref().without_grids;
        Ok(Response::new(map::grid_map(&self.pool, &scope, &prefix, micros(now), max_cases, with_grids).await?))
    }

    async fn ledger(&self, request: Request<api::LedgerRequest>) -> Result<Response<api::LedgerResponse>, Status> {
        let scope = report_scope(Access::of(&request)?, &ledger_regions(request.get_ref()))?;
        Ok(Response::new(api::LedgerResponse { rows: self.ledger_rows(&scope, request.get_ref()).await? }))
    }

    type ExportCasesStream = ExportStream;

    async fn export_cases(&self, request: Request<api::ExportCasesRequest>) -> Result<Response<ExportStream>, Status> {
        let access = Access::of(&request)?.clone();
        let request = request.into_inner();
        let format = export_format(request.format)?;
        let filter = request.filter.unwrap_or_default();
        let scope = scope_for(&access, &[&filter.region_prefix, &filter.grid_code])?;
        let now = self.clock.now();
        let total: i64 = sql::filtered_query(&filter, &scope, now, "count(*)")?
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        let total = total as u64;
        let mut builder = list_query(&filter, &scope, now, SUMMARY_COLUMNS)?;
        let pool = self.pool.clone();
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = done.clone();
        // Rows flow from the database cursor through a small channel: bounded memory.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<String>, Status>>(256);
        tokio::spawn(async move {
            let mut progress = export::Progress::new("cases", total);
            let mut rows = builder.build().fetch(&pool);
            while let Some(row) = rows.next().await {
                progress.row(&counted);
                let record = row.map_err(db_error).map(|row| {
                    let s = summary(&row, now, sql::list_clock(&filter));
                    vec![
                        s.case_id,
                        row.get::<String, _>(1),
                        s.township,
                        s.grid_code,
                        s.category_code,
                        row.get::<Option<String>, _>(15).unwrap_or_default(),
                        row.get::<String, _>(14),
                        row.get::<Option<String>, _>(5).unwrap_or_default(),
                        s.unit,
                        row.get::<String, _>(7),
                        from_micros(row.get(8)).to_string(),
                        row.get::<Option<i64>, _>(21).map(|at| from_micros(at).to_string()).unwrap_or_default(),
                        s.overdue.to_string(),
                        export_contact(&row.get::<String, _>(13)).to_owned(),
                    ]
                });
                if tx.send(record).await.is_err() {
                    return;
                }
            }
        });
        let header = [
            "case_id",
            "state",
            "township",
            "grid",
            "category",
            "request_kind",
            "channel",
            "tier",
            "unit",
            "supervision",
            "filed_at",
            "reported_at",
            "overdue",
            "resident_contact",
        ]
        .map(String::from)
        .to_vec();
        let numeric = vec![false; header.len()];
        let chunks = export(format, header, numeric, tokio_stream::wrappers::ReceiverStream::new(rx));
        // Each chunk says how far the export has got, for a client's progress bar.
        let chunks = chunks.map(move |chunk| {
            chunk.map(|chunk| api::ExportChunk {
                rows_total: total,
                rows_done: done.load(std::sync::atomic::Ordering::Relaxed),
                ..chunk
            })
        });
        Ok(Response::new(Box::pin(chunks) as ExportStream))
    }

    type WatchCasesStream = WatchStream;

    async fn watch_cases(&self, request: Request<api::WatchCasesRequest>) -> Result<Response<WatchStream>, Status> {
        let access = Access::of(&request)?.clone();
        let stopping = self.shutdown.clone();
        Ok(Response::new(watch::watch(&self.log, access, request.into_inner(), stopping).await?))
    }

    type ExportLedgerStream = ExportStream;

    async fn export_ledger(
        &self,
        request: Request<api::ExportLedgerRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let access = Access::of(&request)?.clone();
        let request = request.into_inner();
        let format = export_format(request.format)?;
        let ledger = request.ledger.unwrap_or_default();
        let scope = report_scope(&access, &ledger_regions(&ledger))?;
        let rows = self.ledger_rows(&scope, &ledger).await?;
        let header = LEDGER_HEADER.map(String::from).to_vec();
        let records = rows.into_iter().map(|row| Ok(ledger_record(row)));
        let numeric: Vec<bool> = (0..header.len()).map(|column| column >= 3).collect();
        Ok(Response::new(export(format, header, numeric, futures::stream::iter(records.collect::<Vec<_>>()))))
    }
}
