//! The read models in PostgreSQL: loading case rows, and writing a batch of
//! projected events (case rows, audit events, ledger counters and the stream
//! position) in one transaction with a handful of bulk statements.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use gridcase_domain::CaseId;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::case_table;
use crate::columns::micros;
use crate::project::{CaseRow, EventRow, LedgerKey, Measure};

/// The name of this projection's position row.
pub const PROJECTION: &str = "cases";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How long a query waits for a connection before it is answered
/// UNAVAILABLE (the database is down or every connection is busy).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

fn options(url: &str, schema: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .with_context(|| "GRIDCASE_DATABASE_URL is not a PostgreSQL URL")?
        // PostGIS's types and functions live in public (migration 0008).
        .options([("search_path", format!("{schema}, public"))]))
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

/// Create `schema` if needed and apply the migrations in it. Two
/// projections starting at once (a cluster's pair) take turns: `CREATE
/// SCHEMA IF NOT EXISTS` alone is not safe against a concurrent creation
/// (the loser fails on the catalog's unique key), so it runs under a
/// transaction-scoped advisory lock.
pub async fn migrate(pool: &PgPool, schema: &str) -> anyhow::Result<()> {
    let mut transaction = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('gridcase-projection: create schema'))")
        .execute(&mut *transaction)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema))))
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await.context("creating the schema")?;
    check_postgis(pool).await?;
    MIGRATOR.run(pool).await.context("applying migrations")?;
    Ok(())
}

/// Fail early, in words, when PostgreSQL has no PostGIS (migration 0008
/// needs it).
async fn check_postgis(pool: &PgPool) -> anyhow::Result<()> {
    let (created, available): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'postgis'), \
                EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'postgis')",
    )
    .fetch_one(pool)
    .await
    .context("asking PostgreSQL for its extensions")?;
    if !created && !available {
        anyhow::bail!(
            "PostgreSQL has no PostGIS: install it on the database server (Debian: postgresql-<version>-postgis-3; \
             deploy/install-deps.sh does) and run CREATE EXTENSION postgis in the database as a superuser"
        );
    }
    Ok(())
}

/// Replace the grids' boundaries with the reference data's (upserted, so
/// two projections starting at once do not collide; grids no longer in the
/// file removed). Returns how many shapes there are; shapes PostGIS finds
/// invalid (self-crossing rings) are logged, and still drawn.
pub async fn load_shapes(pool: &PgPool, reference: &gridcase_reference::Reference) -> anyhow::Result<usize> {
    let shapes: Vec<_> = reference.boundaries.shapes().collect();
    let mut columns: [Vec<String>; 5] = Default::default();
    for shape in &shapes {
        let region = reference.registry.region(&shape.code).context("a shape's grid is in the registry")?;
        let level = match region.level {
            gridcase_reference::Level::MicroGrid => "micro_grid",
            _ => "grid",
        };
        columns[0].push(shape.code.clone());
        columns[1].push(shape.code[..9].to_owned());
        columns[2].push(region.name.clone());
        columns[3].push(level.to_owned());
        columns[4].push(shape.geometry_json.clone());
    }
    let [codes, townships, names, levels, geometries] = columns;
    let mut transaction = pool.begin().await?;
    sqlx::query(
        "INSERT INTO grid_shapes (code, township, name, level, boundary) \
         SELECT c, t, n, l, ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(g), 4326)) \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS x(c, t, n, l, g) \
         ON CONFLICT (code) DO UPDATE SET township = EXCLUDED.township, name = EXCLUDED.name, \
         level = EXCLUDED.level, boundary = EXCLUDED.boundary",
    )
    .bind(&codes)
    .bind(&townships)
    .bind(&names)
    .bind(&levels)
    .bind(&geometries)
    .execute(&mut *transaction)
    .await
    .context("storing the grids' boundaries")?;
    sqlx::query("DELETE FROM grid_shapes WHERE code <> ALL($1)").bind(&codes).execute(&mut *transaction).await?;
    let invalid: Vec<(String, String)> =
        sqlx::query_as("SELECT code, ST_IsValidReason(boundary) FROM grid_shapes WHERE NOT ST_IsValid(boundary)")
            .fetch_all(&mut *transaction)
            .await?;
    transaction.commit().await.context("storing the grids' boundaries")?;
    for (code, reason) in invalid {
        tracing::warn!(grid = %code, reason = %reason, "a grid's boundary is not a valid polygon");
    }
    Ok(codes.len())
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
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {} FROM cases WHERE case_id = ANY($1)", *case_table::SELECT)))
            .bind(ids)
            .fetch_all(executor)
            .await?;
    rows.iter().map(|row| case_table::read(row).map(|r| (r.case.id, r))).collect()
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
    static UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(case_table::upsert_sql);
    case_table::bind(sqlx::query(sqlx::AssertSqlSafe(UPSERT.as_str())), rows)
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
