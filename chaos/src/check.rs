//! After the load: what the log and the read models say, against what the
//! clients were told. Every acknowledged operation must be in the log
//! exactly once, at the sequence and with the hash its acknowledgement
//! named, nothing doubled, no two events claiming one case version, every
//! case's hash chain intact and in the order the clients were answered,
//! every due dispatcher step taken exactly once, and the live read models
//! equal a rebuild from the log. Then each node's own store, read from its
//! files ([`crate::store`]), must hold every acknowledged event and agree
//! with the log; and every loss must have been reported by gridcase (an
//! error in a service's log naming the case).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use gridcase_envelope::{CaseSubject, Positioned, StoredEvent};
use gridcase_eventlog::{EventLog, ReadFrom, StreamSettings};

use crate::faults::Fault;
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
    /// Acknowledged events not at the sequence, or not with the hash or
    /// version, their acknowledgement named.
    pub moved: usize,
    /// Events claiming a case version another event of the case has.
    pub version_conflicts: usize,
    /// Pairs of one worker's operations on a case stored in another order
    /// than they were answered.
    pub order_violations: usize,
    /// Each node's own copy, read from its store directory.
    pub nodes: Vec<NodeVerdict>,
    /// Acknowledged operations lost with no error in any service's log
    /// naming the case: losses gridcase did not notice.
    pub lost_silently: usize,
    pub problems: Vec<String>,
}

/// What one node's store holds, against the log and the acknowledgements.
#[derive(Debug, Default, Clone)]
pub struct NodeVerdict {
    pub node: String,
    pub messages: usize,
    pub last_sequence: u64,
    /// Acknowledged events this node does not hold (as acknowledged).
    pub missing_acknowledged: usize,
    /// Sequences at which this node and the log (the leader) differ.
    pub differing: usize,
    /// Records that failed nats-server's own checksum or length checks.
    pub damaged: Vec<String>,
}

impl Verdict {
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.doubled == 0
            && self.broken_chains == 0
            && self.missing_steps == 0
            && self.ledger_differences.is_empty()
            && self.unreadable == 0
            && self.moved == 0
            && self.version_conflicts == 0
            && self.order_violations == 0
            && self.nodes.iter().all(|n| n.missing_acknowledged == 0 && n.differing == 0)
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

pub async fn check(
    topology: &Topology,
    log: &EventLog,
    outcomes: &[Outcome],
    faults: &[Fault],
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict::default();
    let (cases, unreadable) = read_all(log).await?;
    verdict.unreadable = unreadable;
    if unreadable > 0 {
        verdict.problems.push(format!("{unreadable} unreadable messages in the stream"));
    }
    verdict.cases = cases.len();

    // What the log holds.
    let mut by_sequence: BTreeMap<u64, (String, String, u64)> = BTreeMap::new();
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
        let mut versions: HashMap<u64, usize> = HashMap::new();
        for positioned in history {
            let event = &positioned.event;
            *versions.entry(event.case_version).or_default() += 1;
            by_sequence.insert(
                positioned.stream_sequence,
                (event.case_id.to_string(), event.hash.clone(), event.case_version),
            );
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
        for (version, count) in versions.into_iter().filter(|(_, count)| *count > 1) {
            verdict.version_conflicts += count - 1;
            verdict.problems.push(format!("{subject}: {count} events claim version {version}"));
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
    let reports = ServiceLogs::read(&topology.run_dir.join("logs"));
    let mut lost_cases = Vec::new();
    for outcome in outcomes.iter().filter(|o| o.acknowledged_after.is_some()) {
        let when = around(outcome, faults);
        let case_id = outcome.operation.case_id();
        match &outcome.operation {
            Operation::File { case_id } => {
                verdict.acknowledged_filings += 1;
                if !filings.contains_key(case_id) {
                    verdict.lost += 1;
                    lost_cases.push(case_id.clone());
                    verdict.problems.push(format!("acknowledged filing {case_id} is not in the log{when}"));
                }
            }
            Operation::Note { case_id, command_id } => {
                verdict.acknowledged_notes += 1;
                if !commands.contains_key(&(case_id.clone(), command_id.clone())) {
                    verdict.lost += 1;
                    lost_cases.push(case_id.clone());
                    verdict
                        .problems
                        .push(format!("acknowledged note {command_id} on {case_id} is not in the log{when}"));
                }
            }
        }
        // Where the acknowledgement said it is, with the hash and version it named.
        if let Some(receipt) = &outcome.receipt {
            let expected = (case_id.to_owned(), receipt.event_hash.clone(), receipt.version);
            match by_sequence.get(&receipt.stream_sequence) {
                Some(found) if *found == expected => {}
                found => {
                    verdict.moved += 1;
                    verdict.problems.push(format!(
                        "acknowledged {} of case {case_id} (version {}, hash {}) at sequence {}: the log holds {}{when}",
                        outcome.operation.kind(),
                        receipt.version,
                        short(&receipt.event_hash),
                        receipt.stream_sequence,
                        found.map_or("nothing there".to_owned(), |(case, hash, version)| format!(
                            "case {case} version {version} hash {}",
                            short(hash)
                        ))
                    ));
                }
            }
        }
    }
    for case_id in lost_cases {
        if !reports.name(&case_id) {
            verdict.lost_silently += 1;
            verdict.problems.push(format!("the loss of case {case_id}'s event was not reported by any service"));
        }
    }

    // Per case, as answered: one worker's operations on a case, the second
    // begun after the first was answered, are stored in that order.
    let mut per_case: HashMap<&str, Vec<&Outcome>> = HashMap::new();
    for outcome in outcomes.iter().filter(|o| o.receipt.is_some()) {
        per_case.entry(outcome.operation.case_id()).or_default().push(outcome);
    }
    for (case_id, mut answered) in per_case {
        answered.sort_by_key(|o| o.acknowledged_at);
        for (i, first) in answered.iter().enumerate() {
            for second in &answered[i + 1..] {
                let (Some(a), Some(b)) = (&first.receipt, &second.receipt) else { continue };
                if second.worker == first.worker
                    && second.started_at >= first.acknowledged_at.unwrap_or_default()
                    && b.stream_sequence <= a.stream_sequence
                {
                    verdict.order_violations += 1;
                    verdict.problems.push(format!(
                        "case {case_id}: answered at sequence {} and then {}, stored in the other order",
                        a.stream_sequence, b.stream_sequence
                    ));
                }
            }
        }
    }

    // Each node's own store.
    for node in 1..=topology.nodes {
        let name = format!("nats-{node}");
        let copy = crate::store::read_node(&topology.run_dir.join(&name), "GRIDCASE", "GRIDCASE_CASES")?;
        let mut node_verdict = NodeVerdict {
            node: name.clone(),
            messages: copy.messages.len(),
            last_sequence: copy.messages.keys().next_back().copied().unwrap_or(0),
            damaged: copy.damaged.clone(),
            ..NodeVerdict::default()
        };
        let hash_at = |sequence: &u64| {
            copy.messages
                .get(sequence)
                .and_then(|m| StoredEvent::from_json_bytes(&m.payload).ok())
                .map(|e| (e.case_id.to_string(), e.hash, e.case_version))
        };
        for outcome in outcomes {
            let Some(receipt) = &outcome.receipt else { continue };
            let expected = (outcome.operation.case_id().to_owned(), receipt.event_hash.clone(), receipt.version);
            if hash_at(&receipt.stream_sequence).as_ref() != Some(&expected) {
                node_verdict.missing_acknowledged += 1;
                if node_verdict.missing_acknowledged <= 5 {
                    verdict.problems.push(format!(
                        "{name} does not hold acknowledged {} of case {} at sequence {}{}",
                        outcome.operation.kind(),
                        expected.0,
                        receipt.stream_sequence,
                        around(outcome, faults)
                    ));
                }
            }
        }
        let sequences: BTreeSet<u64> = by_sequence.keys().chain(copy.messages.keys()).copied().collect();
        for sequence in sequences {
            if by_sequence.get(&sequence) != hash_at(&sequence).as_ref() {
                node_verdict.differing += 1;
                if node_verdict.differing <= 5 {
                    verdict.problems.push(format!(
                        "{name} and the log differ at sequence {sequence}: {:?} against {:?}",
                        hash_at(&sequence).map(|(case, hash, v)| format!("{case} v{v} {}", short(&hash))),
                        by_sequence.get(&sequence).map(|(case, hash, v)| format!("{case} v{v} {}", short(hash)))
                    ));
                }
            }
        }
        verdict.nodes.push(node_verdict);
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

impl Operation {
    pub fn case_id(&self) -> &str {
        match self {
            Operation::File { case_id } | Operation::Note { case_id, .. } => case_id,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Operation::File { .. } => "filing",
            Operation::Note { .. } => "note",
        }
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// When an operation was answered and the faults around then (10 s either side).
fn around(outcome: &Outcome, faults: &[Fault]) -> String {
    let Some(at) = outcome.acknowledged_at else { return String::new() };
    let window = Duration::from_secs(10);
    let near: Vec<String> = faults
        .iter()
        .enumerate()
        .filter(|(_, f)| f.started_at <= at + window && f.healed_at + window >= at)
        .map(|(i, f)| {
            format!("#{} {} {:.1}–{:.1} s", i + 1, f.what, f.started_at.as_secs_f64(), f.healed_at.as_secs_f64())
        })
        .collect();
    if near.is_empty() {
        format!(" (answered at {:.1} s, no fault within 10 s)", at.as_secs_f64())
    } else {
        format!(" (answered at {:.1} s; faults around: {})", at.as_secs_f64(), near.join("; "))
    }
}

/// The errors the services logged (JSON lines, level ERROR), to tell
/// whether gridcase reported a loss.
pub struct ServiceLogs {
    errors: Vec<String>,
}

impl ServiceLogs {
    pub fn read(dir: &Path) -> Self {
        let mut errors = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !["intake-", "dispatcher-", "projection-"].iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            errors.extend(text.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).map(str::to_owned));
        }
        Self { errors }
    }

    /// Whether an error names `case_id`.
    pub fn name(&self, case_id: &str) -> bool {
        self.errors.iter().any(|line| line.contains(case_id))
    }

    pub fn errors(&self) -> &[String] {
        &self.errors
    }
}
