//! The read models in PostgreSQL: loading case rows, and writing a batch of
//! projected events (case rows, audit events, ledger counters and the stream
//! position) in one transaction with a handful of bulk statements.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use gridcase_domain::{
    Case, CaseId, CategoryCode, Clock, ClockMark, ContactState, Feedback, GridCode, OrgCode, Status, Supervision, Tier,
};
use jiff::Timestamp;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::project::{CaseRow, LedgerKey, Measure};

/// The name of this projection's position row.
pub const PROJECTION: &str = "cases";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

pub fn micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

pub fn from_micros(micros: i64) -> Timestamp {
    Timestamp::from_microsecond(micros).expect("instants in the database are in range")
}

/// The column of `cases` holding a clock's current deadline.
pub fn due_column(clock: gridcase_domain::Clock) -> &'static str {
    match clock {
        gridcase_domain::Clock::Register => "register_due",
        gridcase_domain::Clock::Acknowledge => "acknowledge_due",
        gridcase_domain::Clock::Resolve => "resolve_due",
        gridcase_domain::Clock::Verify => "verify_due",
    }
}

/// How long a query waits for a connection before it is answered
/// UNAVAILABLE (the database is down or every connection is busy).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

fn options(url: &str, schema: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .with_context(|| "GRIDCASE_DATABASE_URL is not a PostgreSQL URL")?
        .options([("search_path", schema)]))
}

/// A pool whose connections work in `schema`. Connections lost when the
/// database restarts are replaced on the next use.
pub async fn connect(url: &str, schema: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options(url, schema)?)
        .await
        .context("connecting to PostgreSQL")
}

/// The right to write a schema's read models: a PostgreSQL advisory lock
/// held by the session of one connection, the connection every write of
/// the projector goes through. Several projection processes may run; one
/// holds the lock and writes, the others wait and take over within a poll
/// interval when its session ends (the process died, or the database ended
/// the session). The writes are fenced by the lock: they run in the very
/// session that holds it, so a writer whose session is gone cannot write.
pub struct Writer {
    connection: PgConnection,
}

/// The advisory-lock class of gridcase's projection writers (the second
/// key is the schema's hash, so a rebuild's schema has its own).
const WRITER_LOCK_CLASS: i32 = 0x6772_6964; // "grid"

impl Writer {
    /// Wait until this process holds the writer lock of `schema`, trying
    /// every `poll`; `None` if `stop` resolves first.
    pub async fn acquire(
        url: &str,
        schema: &str,
        poll: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<Option<Writer>> {
        tokio::pin!(stop);
        let mut connection =
            PgConnection::connect_with(&options(url, schema)?).await.context("connecting to PostgreSQL")?;
        // A writer whose machine vanished (no FIN) is noticed within about
        // 15 s rather than the kernel's two hours, and its lock released.
        sqlx::raw_sql("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 5")
            .execute(&mut connection)
            .await?;
        let mut waiting_logged = false;
        loop {
            let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
                .bind(WRITER_LOCK_CLASS)
                .bind(schema)
                .fetch_one(&mut connection)
                .await?;
            if held {
                return Ok(Some(Writer { connection }));
            }
            if !waiting_logged {
                tracing::info!(
                    schema,
                    "standby: another projection process writes the read models; waiting to take over"
                );
                waiting_logged = true;
            }
            tokio::select! {
                _ = &mut stop => {
                    connection.close().await.ok();
                    return Ok(None);
                }
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// The connection holding the lock: the writes go through it.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.connection
    }

    /// Give the lock up (closing the session releases it).
    pub async fn release(self) {
        self.connection.close().await.ok();
    }
}

/// Create `schema` if needed and apply the migrations in it.
pub async fn migrate(pool: &PgPool, schema: &str) -> anyhow::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)))).execute(pool).await?;
    MIGRATOR.run(pool).await.context("applying migrations")?;
    Ok(())
}

/// Quote an identifier for SQL.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The stream position the read models reflect, and how many events were skipped.
pub async fn position(executor: impl sqlx::PgExecutor<'_>) -> anyhow::Result<(u64, u64)> {
    let row = sqlx::query("SELECT stream_sequence, skipped_events FROM projection_position WHERE projection = $1")
        .bind(PROJECTION)
        .fetch_optional(executor)
        .await?;
    Ok(row.map_or((0, 0), |r| (r.get::<i64, _>(0) as u64, r.get::<i64, _>(1) as u64)))
}

/// The position, locked for the batch that will move it.
pub async fn lock_position(tx: &mut Transaction<'_, Postgres>) -> anyhow::Result<u64> {
    sqlx::query(
        "INSERT INTO projection_position (projection, stream_sequence) VALUES ($1, 0) ON CONFLICT (projection) DO NOTHING",
    )
    .bind(PROJECTION)
    .execute(&mut **tx)
    .await?;
    let row = sqlx::query("SELECT stream_sequence FROM projection_position WHERE projection = $1 FOR UPDATE")
        .bind(PROJECTION)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.get::<i64, _>(0) as u64)
}

/// The columns of `cases` that [`case_row`] reads, in its order.
pub const CASE_COLUMNS: &str = "case_id, version, last_sequence, state, county, township, village, grid, category, \
    description, reported_by, contact_phone_masked, severity_hint, tier, unit, supervision, urgent, \
    micros(filed_at), micros(registered_at), micros(dispatched_at), micros(acknowledged_at), micros(resolved_at), \
    micros(closed_at), micros(register_due), micros(acknowledge_due), micros(resolve_due), micros(verify_due), \
    marks, pending_extension_days, approved_extension_days, hold_requested, feedback, returns, reworks, reopenings, \
    last_hash, contact_state, contact_sealed";

fn corrupt(what: &str) -> anyhow::Error {
    anyhow::anyhow!("read model holds an invalid {what}")
}

/// A case row from a `SELECT {CASE_COLUMNS}`.
pub fn case_row(row: &sqlx::postgres::PgRow) -> anyhow::Result<CaseRow> {
    let ts = |i: usize| row.get::<Option<i64>, _>(i).map(from_micros);
    let mut deadlines = BTreeMap::new();
    for (index, clock) in [(23, Clock::Register), (24, Clock::Acknowledge), (25, Clock::Resolve), (26, Clock::Verify)] {
        if let Some(due) = ts(index) {
            deadlines.insert(clock, due);
        }
    }
    let mut marks = BTreeSet::new();
    for mark in row.get::<Vec<String>, _>(27) {
        let (clock, kind) = mark.split_once(':').ok_or_else(|| corrupt("mark"))?;
        marks.insert((
            Clock::from_name(clock).ok_or_else(|| corrupt("mark clock"))?,
            ClockMark::from_name(kind).ok_or_else(|| corrupt("mark kind"))?,
        ));
    }
    let case = Case {
        id: CaseId::from_uuid(row.get::<Uuid, _>(0)).map_err(|_| corrupt("case id"))?,
        grid: GridCode::parse(row.get::<&str, _>(7)).map_err(|_| corrupt("grid"))?,
        category: CategoryCode::parse(row.get::<&str, _>(8)).map_err(|_| corrupt("category"))?,
        status: Status::from_name(row.get::<&str, _>(3)).ok_or_else(|| corrupt("state"))?,
        version: row.get::<i64, _>(1) as u64,
        severity_hint: row
            .get::<Option<&str>, _>(12)
            .map(|t| Tier::parse(t).ok_or_else(|| corrupt("hint")))
            .transpose()?,
        tier: row.get::<Option<&str>, _>(13).map(|t| Tier::parse(t).ok_or_else(|| corrupt("tier"))).transpose()?,
        unit: row.get::<Option<&str>, _>(14).map(|u| OrgCode::parse(u).map_err(|_| corrupt("unit"))).transpose()?,
        supervision: Supervision::from_name(row.get::<&str, _>(15)).ok_or_else(|| corrupt("supervision"))?,
        urgent: row.get(16),
        deadlines,
        marks,
        pending_extension: row.get::<Option<i32>, _>(28).map(|d| d as u32),
        approved_extension_days: row.get::<i32, _>(29) as u32,
        hold_requested: row.get(30),
        feedback: row
            .get::<Option<&str>, _>(31)
            .map(|f| Feedback::from_name(f).ok_or_else(|| corrupt("feedback")))
            .transpose()?,
        returns: row.get::<i32, _>(32) as u32,
        reworks: row.get::<i32, _>(33) as u32,
        reopenings: row.get::<i32, _>(34) as u32,
        contact: contact_state(row.get::<&str, _>(36)).ok_or_else(|| corrupt("contact state"))?,
    };
    Ok(CaseRow {
        case,
        last_sequence: row.get::<i64, _>(2) as u64,
        description: row.get(9),
        reported_by: row.get(10),
        contact_phone_masked: row.get(11),
        filed_at: ts(17).ok_or_else(|| corrupt("filing time"))?,
        registered_at: ts(18),
        dispatched_at: ts(19),
        acknowledged_at: ts(20),
        resolved_at: ts(21),
        closed_at: ts(22),
        last_hash: row.get(35),
        contact_sealed: row.get(37),
    })
}

/// The name `cases.contact_state` stores.
pub fn contact_state_name(state: ContactState) -> &'static str {
    match state {
        ContactState::None => "none",
        ContactState::Given => "given",
        ContactState::Erased => "erased",
    }
}

fn contact_state(name: &str) -> Option<ContactState> {
    [ContactState::None, ContactState::Given, ContactState::Erased].into_iter().find(|s| contact_state_name(*s) == name)
}

/// The hash of the last kept event of each of these cases that has one.
pub async fn last_hashes(executor: impl sqlx::PgExecutor<'_>, ids: &[Uuid]) -> anyhow::Result<HashMap<Uuid, String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (case_id) case_id, hash FROM case_events WHERE case_id = ANY($1) \
         ORDER BY case_id, case_version DESC",
    )
    .bind(ids)
    .fetch_all(executor)
    .await
    .context("reading the last hash of each case")?;
    Ok(rows.iter().map(|r| (r.get::<Uuid, _>(0), r.get::<String, _>(1))).collect())
}

/// The rows of these cases, if they exist.
pub async fn load_cases(executor: impl sqlx::PgExecutor<'_>, ids: &[Uuid]) -> anyhow::Result<HashMap<CaseId, CaseRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CASE_COLUMNS} FROM cases WHERE case_id = ANY($1)")))
        .bind(ids)
        .fetch_all(executor)
        .await?;
    rows.iter().map(|row| case_row(row).map(|r| (r.case.id, r))).collect()
}

/// One audit-history row.
pub struct EventRow {
    pub stream_sequence: u64,
    pub event_id: Uuid,
    pub case_id: Uuid,
    pub case_version: u64,
    pub event_type: String,
    pub occurred_at: Timestamp,
    pub actor_person: String,
    pub actor_role: String,
    pub actor_organisation: String,
    pub reason: Option<String>,
    pub hash: String,
    pub prev_hash: Option<String>,
    pub envelope: String,
}

/// Everything one batch changes.
#[derive(Default)]
pub struct Batch {
    pub cases: Vec<CaseRow>,
    pub events: Vec<EventRow>,
    pub ledger: BTreeMap<LedgerKey, [i64; Measure::ALL.len()]>,
    pub position: u64,
    pub skipped: u64,
}

impl Batch {
    pub fn count(&mut self, key: LedgerKey, measure: Measure, amount: i64) {
        let index = Measure::ALL.iter().position(|m| *m == measure).expect("known measure");
        self.ledger.entry(key).or_insert([0; Measure::ALL.len()])[index] += amount;
    }
}

/// Write a batch: bulk statements, in the caller's transaction.
pub async fn write(tx: &mut Transaction<'_, Postgres>, batch: &Batch) -> anyhow::Result<()> {
    if !batch.events.is_empty() {
        let e = &batch.events;
        sqlx::query(
            "INSERT INTO case_events (stream_sequence, event_id, case_id, case_version, event_type, occurred_at, \
             actor_person, actor_role, actor_organisation, reason, hash, prev_hash, envelope) \
             SELECT s, i, c, v, t, ts_from_micros(o), p, r, g, re, h, ph, en FROM UNNEST($1::bigint[], $2::uuid[], \
             $3::uuid[], $4::bigint[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], \
             $11::text[], $12::text[], $13::text[]) AS x(s, i, c, v, t, o, p, r, g, re, h, ph, en) \
             ON CONFLICT (case_id, case_version) DO NOTHING",
        )
        .bind(e.iter().map(|r| r.stream_sequence as i64).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.event_id).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.case_id).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.case_version as i64).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.event_type.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| micros(r.occurred_at)).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.actor_person.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.actor_role.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.actor_organisation.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.reason.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.hash.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.prev_hash.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.envelope.clone()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .context("writing case events")?;
    }
    if !batch.cases.is_empty() {
        write_cases(tx, &batch.cases).await?;
    }
    if !batch.ledger.is_empty() {
        write_ledger(tx, &batch.ledger).await?;
    }
    sqlx::query(
        "UPDATE projection_position SET stream_sequence = $2, skipped_events = skipped_events + $3, updated_at = now() \
         WHERE projection = $1",
    )
    .bind(PROJECTION)
    .bind(batch.position as i64)
    .bind(batch.skipped as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_cases(tx: &mut Transaction<'_, Postgres>, rows: &[CaseRow]) -> anyhow::Result<()> {
    let due = |clock: Clock| rows.iter().map(|r| r.case.deadlines.get(&clock).map(|t| micros(*t))).collect::<Vec<_>>();
    let ts = |f: fn(&CaseRow) -> Option<Timestamp>| rows.iter().map(|r| f(r).map(micros)).collect::<Vec<_>>();
    let text = |f: fn(&CaseRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let int = |f: fn(&CaseRow) -> u32| rows.iter().map(|r| f(r) as i32).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO cases (case_id, version, last_sequence, state, county, township, village, grid, category, \
         description, reported_by, contact_phone_masked, severity_hint, tier, unit, supervision, urgent, filed_at, \
         registered_at, dispatched_at, acknowledged_at, resolved_at, closed_at, register_due, acknowledge_due, \
         resolve_due, verify_due, marks, pending_extension_days, approved_extension_days, hold_requested, feedback, \
         returns, reworks, reopenings, last_hash, contact_state, contact_sealed) \
         SELECT id, v, ls, st, co, tw, vi, gr, ca, de, rb, cp, sh, ti, un, su, ur, ts_from_micros(f), \
         ts_from_micros(rg), ts_from_micros(dp), ts_from_micros(ak), ts_from_micros(rs), ts_from_micros(cl), \
         ts_from_micros(d1), ts_from_micros(d2), ts_from_micros(d3), ts_from_micros(d4), \
         CASE WHEN mk = '' THEN ARRAY[]::text[] ELSE string_to_array(mk, ',') END, pe, ae, hr, fb, re, rw, ro, lh, \
         cs, cx \
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], \
         $16::text[], $17::bool[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[], \
         $23::bigint[], $24::bigint[], $25::bigint[], $26::bigint[], $27::bigint[], $28::text[], $29::int[], \
         $30::int[], $31::bool[], $32::text[], $33::int[], $34::int[], $35::int[], $36::text[], $37::text[], \
         $38::text[]) \
         AS x(id, v, ls, st, co, tw, vi, gr, ca, de, rb, cp, sh, ti, un, su, ur, f, rg, dp, ak, rs, cl, d1, d2, d3, d4, \
         mk, pe, ae, hr, fb, re, rw, ro, lh, cs, cx) \
         ON CONFLICT (case_id) DO UPDATE SET version = EXCLUDED.version, last_sequence = EXCLUDED.last_sequence, \
         state = EXCLUDED.state, tier = EXCLUDED.tier, unit = EXCLUDED.unit, supervision = EXCLUDED.supervision, \
         urgent = EXCLUDED.urgent, registered_at = EXCLUDED.registered_at, dispatched_at = EXCLUDED.dispatched_at, \
         acknowledged_at = EXCLUDED.acknowledged_at, resolved_at = EXCLUDED.resolved_at, closed_at = EXCLUDED.closed_at, \
         register_due = EXCLUDED.register_due, acknowledge_due = EXCLUDED.acknowledge_due, \
         resolve_due = EXCLUDED.resolve_due, verify_due = EXCLUDED.verify_due, marks = EXCLUDED.marks, \
         pending_extension_days = EXCLUDED.pending_extension_days, \
         approved_extension_days = EXCLUDED.approved_extension_days, hold_requested = EXCLUDED.hold_requested, \
         feedback = EXCLUDED.feedback, returns = EXCLUDED.returns, reworks = EXCLUDED.reworks, \
         reopenings = EXCLUDED.reopenings, last_hash = EXCLUDED.last_hash, \
         contact_phone_masked = EXCLUDED.contact_phone_masked, contact_state = EXCLUDED.contact_state, \
         contact_sealed = EXCLUDED.contact_sealed",
    )
    .bind(rows.iter().map(|r| *r.case.id.as_uuid()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.case.version as i64).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.last_sequence as i64).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.case.status.name().to_owned()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.case.grid.county().to_owned()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.case.grid.township().to_string()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.case.grid.village().to_owned()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.case.grid.as_str().to_owned()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.case.category.as_str().to_owned()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.description.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.reported_by.clone()).collect::<Vec<_>>())
    .bind(text(|r| r.contact_phone_masked.clone()))
    .bind(text(|r| r.case.severity_hint.map(|t| t.as_str().to_owned())))
    .bind(text(|r| r.case.tier.map(|t| t.as_str().to_owned())))
    .bind(text(|r| r.case.unit.as_ref().map(|u| u.to_string())))
    .bind(rows.iter().map(|r| r.case.supervision.name().to_owned()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.case.urgent).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| micros(r.filed_at)).collect::<Vec<_>>())
    .bind(ts(|r| r.registered_at))
    .bind(ts(|r| r.dispatched_at))
    .bind(ts(|r| r.acknowledged_at))
    .bind(ts(|r| r.resolved_at))
    .bind(ts(|r| r.closed_at))
    .bind(due(Clock::Register))
    .bind(due(Clock::Acknowledge))
    .bind(due(Clock::Resolve))
    .bind(due(Clock::Verify))
    .bind(
        rows.iter()
            .map(|r| r.case.marks.iter().map(|(c, m)| format!("{}:{}", c.name(), m.name())).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.case.pending_extension.map(|d| d as i32)).collect::<Vec<_>>())
    .bind(int(|r| r.case.approved_extension_days))
    .bind(rows.iter().map(|r| r.case.hold_requested).collect::<Vec<_>>())
    .bind(text(|r| r.case.feedback.map(|f| f.name().to_owned())))
    .bind(int(|r| r.case.returns))
    .bind(int(|r| r.case.reworks))
    .bind(int(|r| r.case.reopenings))
    .bind(rows.iter().map(|r| r.last_hash.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| contact_state_name(r.case.contact).to_owned()).collect::<Vec<_>>())
    .bind(text(|r| r.contact_sealed.clone()))
    .execute(&mut **tx)
    .await
    .context("writing case rows")?;
    Ok(())
}

async fn write_ledger(
    tx: &mut Transaction<'_, Postgres>,
    ledger: &BTreeMap<LedgerKey, [i64; Measure::ALL.len()]>,
) -> anyhow::Result<()> {
    let columns: Vec<&str> = Measure::ALL.iter().map(|m| m.column()).collect();
    let params: Vec<String> = (0..columns.len()).map(|i| format!("${}::bigint[]", i + 5)).collect();
    let updates: Vec<String> = columns.iter().map(|c| format!("{c} = ledger_daily.{c} + EXCLUDED.{c}")).collect();
    let sql = format!(
        "INSERT INTO ledger_daily (org_kind, org, township, day, {cols}) \
         SELECT k, o, t, d::date, {cols} \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], {params}) AS x(k, o, t, d, {cols}) \
         ON CONFLICT (org_kind, org, township, day) DO UPDATE SET {updates}",
        cols = columns.join(", "),
        params = params.join(", "),
        updates = updates.join(", "),
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ledger.keys().map(|k| k.kind.as_str().to_owned()).collect::<Vec<_>>())
        .bind(ledger.keys().map(|k| k.org.clone()).collect::<Vec<_>>())
        .bind(ledger.keys().map(|k| k.township.clone()).collect::<Vec<_>>())
        .bind(ledger.keys().map(|k| k.day.to_string()).collect::<Vec<_>>());
    for index in 0..Measure::ALL.len() {
        query = query.bind(ledger.values().map(|v| v[index]).collect::<Vec<_>>());
    }
    query.execute(&mut **tx).await.context("writing ledger counters")?;
    Ok(())
}
