//! After the load: what the log and the read models say, against what the
//! clients were told. Every acknowledged operation must be in the log
//! exactly once, nothing doubled, every case's hash chain intact, every due
//! dispatcher step taken exactly once, and the live read models equal a
//! rebuild from the log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use gridcase_envelope::{CaseSubject, Positioned, StoredEvent};
use gridcase_eventlog::{EventLog, ReadFrom, StreamSettings};

use crate::load::{Operation, Outcome};
use crate::topology::Topology;

/// The checks' findings. Every count but `events` and `cases` must be 0.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub events: usize,
    pub cases: usize,
    pub acknowledged_filings: usize,
    pub acknowledged_notes: usize,
    /// Acknowledged operations not in the log.
    pub lost: usize,
    /// Events stored more than once (same event id, the same filing or
    /// command twice, a dispatcher step taken twice).
    pub doubled: usize,
    /// Cases whose hash chain does not verify over the stored bytes.
    pub broken_chains: usize,
    /// Acknowledged filings not registered and dispatched (exactly once).
    pub missing_steps: usize,
    /// Read-model tables that differ from a rebuild of the log.
    pub ledger_differences: Vec<String>,
    /// Messages in the stream that are not readable events.
    pub unreadable: usize,
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.doubled == 0
            && self.broken_chains == 0
            && self.missing_steps == 0
            && self.ledger_differences.is_empty()
            && self.unreadable == 0
    }
}

/// Open the case log as the operator.
pub async fn open_log(topology: &Topology) -> anyhow::Result<EventLog> {
    let seed = std::fs::read_to_string(&topology.operator_credentials).context("the operator's NKey seed")?;
    let servers: Vec<async_nats::ServerAddr> =
        topology.nats_urls.split(',').map(str::parse).collect::<Result<_, _>>().context("NATS URLs")?;
    let client = async_nats::ConnectOptions::with_nkey(seed.trim().to_owned())
        .require_tls(true)
        .add_root_certificates(topology.nats_tls_ca.clone())
        .max_reconnects(None)
        .connect(servers.as_slice())
        .await
        .context("connecting to NATS as the operator")?;
    let settings = StreamSettings { replicas: topology.nodes, ..StreamSettings::default() };
    Ok(EventLog::open(client, settings).await?)
}

/// Wait until the system has settled: the stream has stopped growing, the
/// projection has caught up with it, and every acknowledged filing has been
/// registered and dispatched (or `timeout` passed: the checks then say what
/// is missing).
pub async fn settle(
    topology: &Topology,
    log: &EventLog,
    filed: &HashSet<String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_lazy(&topology.database_url)?;
    let mut stable_since: Option<(u64, Instant)> = None;
    while Instant::now() < deadline {
        let Ok(end) = log.last_sequence().await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let position: i64 =
            sqlx::query_scalar("SELECT stream_sequence FROM read.projection_position WHERE projection = 'cases'")
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten()
                .unwrap_or(-1);
        let steps_done: bool = sqlx::query_scalar(
            "SELECT count(*) = $1 FROM read.cases WHERE case_id = ANY($2) AND state NOT IN ('REPORTED', 'REGISTERED')",
        )
        .bind(filed.len() as i64)
        .bind(filed.iter().filter_map(|id| uuid::Uuid::parse_str(id).ok()).collect::<Vec<_>>())
        .fetch_one(&pool)
        .await
        .unwrap_or(false);
        match stable_since {
            Some((seen, since)) if seen == end => {
                if position == end as i64 && steps_done && since.elapsed() > Duration::from_secs(2) {
                    return Ok(());
                }
            }
            _ => stable_since = Some((end, Instant::now())),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tracing::warn!("the system did not settle within {timeout:?}; checking anyway");
    Ok(())
}

/// Every stored message, in order, grouped by case subject.
async fn read_all(log: &EventLog) -> anyhow::Result<(BTreeMap<String, Vec<Positioned>>, usize)> {
    let end = log.last_sequence().await?;
    let mut cases: BTreeMap<String, Vec<Positioned>> = BTreeMap::new();
    let mut unreadable = 0;
    if end == 0 {
        return Ok((cases, 0));
    }
    let mut records = log.read(CaseSubject::all_filter(), ReadFrom::Sequence(1)).await?;
    while let Some(record) = records.next().await {
        let Ok(record) = record else { continue }; // the ordered reader resumes by itself
        match StoredEvent::from_json_bytes(&record.payload) {
            Ok(event) => cases.entry(record.subject.clone()).or_default().push(Positioned {
                stream_sequence: record.sequence,
                event,
                stored: record.payload.clone(),
            }),
            Err(_) => unreadable += 1,
        }
        if record.sequence >= end {
            break;
        }
    }
    Ok((cases, unreadable))
}

pub async fn check(topology: &Topology, log: &EventLog, outcomes: &[Outcome]) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict::default();
    let (cases, unreadable) = read_all(log).await?;
    verdict.unreadable = unreadable;
    if unreadable > 0 {
        verdict.problems.push(format!("{unreadable} unreadable messages in the stream"));
    }
    verdict.cases = cases.len();

    // What the log holds.
    let mut event_ids = HashSet::new();
    let mut filings: HashMap<String, usize> = HashMap::new();
    let mut commands: HashMap<(String, String), usize> = HashMap::new();
    for (subject, history) in &cases {
        verdict.events += history.len();
        if let Err(broken) = gridcase_envelope::verify_history(history) {
            verdict.broken_chains += 1;
            verdict.problems.push(format!("{subject}: {broken}"));
        }
        let mut steps: HashMap<(String, String), usize> = HashMap::new();
        for positioned in history {
            let event = &positioned.event;
            if !event_ids.insert(event.event_id) {
                verdict.doubled += 1;
                verdict.problems.push(format!("event {} stored twice", event.event_id));
            }
            let case_id = event.case_id.to_string();
            if event.event_type == "filed" {
                *filings.entry(case_id.clone()).or_default() += 1;
            }
            if let Some(command_id) = &event.command_id {
                *commands.entry((case_id.clone(), command_id.clone())).or_default() += 1;
            }
            if event.actor.person == "gridcase-dispatcher" {
                // A step is its type and what it says: the same twice is doubled.
                *steps.entry((event.event_type.clone(), event.payload.to_string())).or_default() += 1;
            }
        }
        let registered = steps.iter().filter(|((kind, _), _)| kind == "registered").map(|(_, n)| n).sum::<usize>();
        let dispatched = steps.iter().filter(|((kind, _), _)| kind == "dispatched").map(|(_, n)| n).sum::<usize>();
        for ((kind, _), count) in &steps {
            if *count > 1 {
                verdict.doubled += count - 1;
                verdict.problems.push(format!("{subject}: dispatcher step {kind} taken {count} times"));
            }
        }
        if registered > 1 || dispatched > 1 {
            verdict.doubled += registered.saturating_sub(1) + dispatched.saturating_sub(1);
            verdict.problems.push(format!("{subject}: registered {registered}×, dispatched {dispatched}×"));
        }
        if registered != 1 || dispatched != 1 {
            verdict.missing_steps += 1;
            verdict
                .problems
                .push(format!("{subject}: registered {registered}×, dispatched {dispatched}× (1 each due)"));
        }
    }
    for (case_id, count) in &filings {
        if *count > 1 {
            verdict.doubled += count - 1;
            verdict.problems.push(format!("case {case_id} filed {count} times"));
        }
    }
    for ((case_id, command_id), count) in &commands {
        if *count > 1 {
            verdict.doubled += count - 1;
            verdict.problems.push(format!("command {command_id} on case {case_id} stored {count} times"));
        }
    }

    // What the clients were told.
    for outcome in outcomes.iter().filter(|o| o.acknowledged_after.is_some()) {
        match &outcome.operation {
            Operation::File { case_id } => {
                verdict.acknowledged_filings += 1;
                if !filings.contains_key(case_id) {
                    verdict.lost += 1;
                    verdict.problems.push(format!("acknowledged filing {case_id} is not in the log"));
                }
            }
            Operation::Note { case_id, command_id } => {
                verdict.acknowledged_notes += 1;
                if !commands.contains_key(&(case_id.clone(), command_id.clone())) {
                    verdict.lost += 1;
                    verdict.problems.push(format!("acknowledged note {command_id} on {case_id} is not in the log"));
                }
            }
        }
    }

    verdict.ledger_differences = compare_with_rebuild(topology, log).await?;
    for table in &verdict.ledger_differences {
        verdict.problems.push(format!("read model table {table} differs from a rebuild of the log"));
    }
    Ok(verdict)
}

/// Rebuild the read models from the log into a schema of their own and
/// compare them, table by table, with the live ones; the tables that differ.
async fn compare_with_rebuild(topology: &Topology, log: &EventLog) -> anyhow::Result<Vec<String>> {
    const REBUILT: &str = "chaos_rebuild";
    let options = gridcase_projection::rebuild::Options::default();
    let built = gridcase_projection::rebuild::build(&topology.database_url, REBUILT, log, &options).await?;
    built.pool.close().await;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&topology.database_url).await?;
    // grid_shapes holds reference data (the grids' boundaries, loaded when
    // the projection starts), not a projection of the log.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'read' \
         AND table_name NOT IN ('_sqlx_migrations', 'grid_shapes') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    anyhow::ensure!(!tables.is_empty(), "no read-model tables in schema read: nothing to compare with a rebuild");
    let mut differ = Vec::new();
    for table in tables {
        let fingerprint = |schema: &str| {
            // Row by row as JSON, but for when the row was written.
            format!(
                "SELECT md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) FROM \
                 (SELECT (to_jsonb(t) - 'updated_at')::text AS r FROM \"{schema}\".\"{table}\" t) rows"
            )
        };
        let live: String = sqlx::query_scalar(sqlx::AssertSqlSafe(fingerprint("read"))).fetch_one(&pool).await?;
        let again: String = sqlx::query_scalar(sqlx::AssertSqlSafe(fingerprint(REBUILT))).fetch_one(&pool).await?;
        if live != again {
            differ.push(table);
        }
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {REBUILT} CASCADE"))).execute(&pool).await?;
    pool.close().await;
    Ok(differ)
}
