//! gridcase-chaos: a filing-and-lifecycle load against the cluster topology
//! of `deploy/cluster.sh` under a seeded schedule of faults (kill -9 of any
//! part; with each part in a network namespace of its own, partitions,
//! bridges, flapping and slow links; SIGSTOP pauses; a node's store tail
//! truncated or corrupted while it is down), then a check, independent of
//! the code under test, of the log, each node's own store and the read
//! models against what the clients were told. A failing run is repeated
//! with the same `--seed`.
//!
//! * [`topology`]: where the parts listen; the stream leader, node health.
//! * [`load`]: grid workers filing and adding notes, retrying against
//!   either intake with the same ids, keeping every acknowledgement's
//!   sequence, version and hash.
//! * [`faults`]: the seeded schedule, one step at a time.
//! * [`check`]: lost, doubled, moved, chains, versions, order, dispatcher
//!   steps, each node's copy, ledgers = rebuild, and whether gridcase
//!   reported what it lost.
//! * [`store`]: a node's copy of a stream, read from its files.

pub mod check;
pub mod faults;
pub mod load;
pub mod reads;
pub mod store;
pub mod topology;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub use check::Verdict;
pub use faults::Fault;
pub use topology::{FaultKind, Topology};

/// What a run does.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `deploy/cluster.sh`.
    pub script: PathBuf,
    /// Its environment (run directory, ports, node count, binaries).
    pub env: Vec<(String, String)>,
    /// Start the topology first (`cluster.sh up`).
    pub up: bool,
    /// Stop it at the end (`cluster.sh down`).
    pub down: bool,
    pub operations: usize,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub seed: u64,
    pub faults: Vec<FaultKind>,
    /// The longest a partition, pause or slow link lasts.
    pub fault_length: Duration,
    pub give_up_after: Duration,
    pub settle_timeout: Duration,
}

/// What a run measured and found.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub operations: usize,
    pub acknowledged: usize,
    /// Refused for good by the rules, or given up after `give_up_after`.
    pub not_acknowledged: usize,
    pub elapsed: Duration,
    /// Acknowledged operations per second over the whole load.
    pub throughput: f64,
    /// Acknowledged operations per second while a fault lasted.
    pub throughput_during_faults: f64,
    /// Latency of acknowledged operations (every retry included).
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// p99 of the operations answered while a fault lasted.
    pub p99_during_faults: Duration,
    /// Errors the services logged (the first ones are printed).
    pub service_errors: Vec<String>,
    /// What the query services answered all through the run.
    pub reads: reads::ReadVerdict,
    pub faults: Vec<Fault>,
    /// The longest time in which every filing attempt failed.
    pub longest_filing_outage: Duration,
    /// The longest time in which no filing was acknowledged (calls waiting
    /// inside the services count here, not as failures).
    pub longest_filing_stall: Duration,
    pub verdict: Verdict,
}

pub async fn run(settings: Settings) -> anyhow::Result<Report> {
    if settings.up {
        let topology = Topology::describe(settings.script.clone(), settings.env.clone()).await?;
        topology.script(&["up"]).await.context("starting the topology (deploy/cluster.sh up)")?;
    }
    let topology = Topology::describe(settings.script.clone(), settings.env.clone()).await?;
    let result = exercise(&settings, &topology).await;
    if settings.down {
        topology.script(&["down"]).await.ok();
    }
    result
}

async fn exercise(settings: &Settings, topology: &Topology) -> anyhow::Result<Report> {
    let channels = load::channels(&topology.intake)?;
    let done = Arc::new(AtomicUsize::new(0));
    let (pending_sender, faults_pending) = tokio::sync::watch::channel(!settings.faults.is_empty());
    let load = load::Load {
        operations: settings.operations,
        concurrency: settings.concurrency,
        rate: settings.rate,
        seed: settings.seed,
        give_up_after: settings.give_up_after,
        acknowledged_up_to: Default::default(),
    };
    if let Some(kind) = settings.faults.iter().find(|kind| kind.needs_netns() && !topology.netns) {
        anyhow::bail!("the fault {} cuts links: run the topology with GRIDCASE_CLUSTER_NETNS", kind.name());
    }
    if let Some(kind) = settings.faults.iter().find(|kind| kind.needs_cluster() && topology.nodes < 3) {
        anyhow::bail!("the fault {} needs three nodes", kind.name());
    }
    let injector = faults::Injector {
        plan: settings.faults.clone(),
        seed: settings.seed,
        operations: settings.operations,
        fault_length: settings.fault_length,
    };
    // A county auditor reads the counts from every query service throughout.
    let auditor = load::dev_token(&channels, "chaos-auditor", "county_auditor", "county-990101", "990101").await?;
    let query_services = load::channels(&topology.query)?;
    let (stop_reading, reading) = tokio::sync::watch::channel(false);
    let probe = tokio::spawn(reads::probe(
        topology.query.iter().cloned().zip(query_services).collect(),
        auditor,
        load.acknowledged_up_to.clone(),
        Duration::from_millis(500),
        reading,
    ));
    let started = Instant::now();
    let (load_result, faults) = tokio::join!(load.run(channels, done.clone(), faults_pending), async {
        let faults = injector.run(topology, done.clone(), started).await;
        pending_sender.send_replace(false);
        faults
    });
    stop_reading.send_replace(true);
    let read_log = probe.await?;
    let (load_result, faults) = (load_result?, faults?);
    let acknowledged: Vec<(std::time::SystemTime, u64)> = load_result
        .outcomes
        .iter()
        .filter_map(|o| Some((load_result.began + o.acknowledged_at?, o.receipt.as_ref()?.stream_sequence)))
        .collect();
    let reads = reads::judge(&read_log, &acknowledged);

    let log = check::open_log(topology).await?;
    let filed: HashSet<String> = load_result
        .outcomes
        .iter()
        .filter(|o| o.acknowledged_after.is_some())
        .filter_map(|o| match &o.operation {
            load::Operation::File { case_id } => Some(case_id.clone()),
            load::Operation::Note { .. } => None,
        })
        .collect();
    check::settle(topology, &log, &filed, settings.settle_timeout).await?;
    let verdict = check::check(topology, &log, &load_result.outcomes, &faults).await?;
    let service_errors = check::ServiceLogs::read(&topology.run_dir.join("logs")).errors().to_vec();

    let mut latencies: Vec<Duration> = load_result.outcomes.iter().filter_map(|o| o.acknowledged_after).collect();
    latencies.sort();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let acknowledged = latencies.len();
    let down: Duration = faults.iter().map(|f| f.healed_at.saturating_sub(f.started_at)).sum();
    let mut during: Vec<Duration> = load_result
        .outcomes
        .iter()
        .filter(|o| o.acknowledged_at.is_some_and(|at| faults.iter().any(|f| at >= f.started_at && at <= f.healed_at)))
        .filter_map(|o| o.acknowledged_after)
        .collect();
    during.sort();
    let p99_during_faults = during
        .get(((during.len() as f64 * 0.99) as usize).min(during.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Ok(Report {
        seed: settings.seed,
        nodes: topology.nodes,
        operations: load_result.outcomes.len(),
        acknowledged,
        not_acknowledged: load_result.outcomes.len() - acknowledged,
        elapsed: load_result.elapsed,
        throughput: acknowledged as f64 / load_result.elapsed.as_secs_f64(),
        throughput_during_faults: if down.is_zero() { 0.0 } else { during.len() as f64 / down.as_secs_f64() },
        p99_during_faults,
        service_errors,
        reads,
        p50: quantile(0.50),
        p99: quantile(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        longest_filing_outage: longest_outage(&load_result.attempts.filings),
        longest_filing_stall: longest_gap(
            load_result
                .outcomes
                .iter()
                .filter(|o| matches!(o.operation, load::Operation::File { .. }))
                .filter_map(|o| o.acknowledged_at),
        ),
        faults,
        verdict,
    })
}

/// The longest stretch, from a failed filing attempt to the next
/// successful one (by anyone, or the last attempt), in which no filing
/// succeeded.
pub fn longest_outage(attempts: &[(Duration, bool)]) -> Duration {
    let mut attempts = attempts.to_vec();
    attempts.sort_by_key(|(at, _)| *at);
    let (mut longest, mut failing_since) = (Duration::ZERO, None);
    let last = attempts.last().map(|(at, _)| *at).unwrap_or_default();
    for (at, succeeded) in attempts {
        match (succeeded, failing_since) {
            (false, None) => failing_since = Some(at),
            (true, Some(since)) => {
                longest = longest.max(at - since);
                failing_since = None;
            }
            _ => {}
        }
    }
    // Still failing when the load ended: the outage lasted at least until then.
    if let Some(since) = failing_since {
        longest = longest.max(last - since);
    }
    longest
}

/// The longest time between two consecutive acknowledgements.
pub fn longest_gap(acknowledged_at: impl Iterator<Item = Duration>) -> Duration {
    let mut times: Vec<Duration> = acknowledged_at.collect();
    times.sort();
    times.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or_default()
}

impl Report {
    /// Nothing lost, doubled or out of place, and no read older than what its reader had been told.
    pub fn clean(&self) -> bool {
        self.verdict.clean() && self.reads.behind.is_empty()
    }

    /// The figures, one per line, as people read them.
    pub fn print(&self) {
        println!("seed                      {}", self.seed);
        println!("nats nodes                {}", self.nodes);
        println!(
            "operations                {} ({} acknowledged, {} not)",
            self.operations, self.acknowledged, self.not_acknowledged
        );
        println!(
            "load                      {:.1} acknowledged/s over {:.1} s",
            self.throughput,
            self.elapsed.as_secs_f64()
        );
        println!(
            "load during faults        {:.1} acknowledged/s, p99 {:.1} ms",
            self.throughput_during_faults,
            ms(self.p99_during_faults)
        );
        println!(
            "latency (with retries)    p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        );
        println!(
            "longest filing outage     {:.2} s (every filing attempt failing)",
            self.longest_filing_outage.as_secs_f64()
        );
        println!("longest filing stall      {:.2} s (no filing acknowledged)", self.longest_filing_stall.as_secs_f64());
        println!("faults injected           {}", self.faults.len());
        for (index, fault) in self.faults.iter().enumerate() {
            println!(
                "  #{:<3} {:>8.2}–{:>8.2} s  {:<14} {}{}",
                index + 1,
                fault.started_at.as_secs_f64(),
                fault.healed_at.as_secs_f64(),
                fault.kind.name(),
                fault.what,
                if fault.recovered { "" } else { " (cluster not current within 60 s after)" }
            );
        }
        let v = &self.verdict;
        println!("log                       {} events, {} cases", v.events, v.cases);
        println!("acknowledged              {} filings, {} notes", v.acknowledged_filings, v.acknowledged_notes);
        println!("lost                      {}", v.lost);
        println!("doubled                   {}", v.doubled);
        println!("broken hash chains        {}", v.broken_chains);
        println!("not where acknowledged    {}", v.moved);
        println!("versions claimed twice    {}", v.version_conflicts);
        println!("stored out of order       {}", v.order_violations);
        println!("lost and not reported     {}", v.lost_silently);
        for node in &v.nodes {
            println!(
                "  {} store: {} messages to sequence {}, {} acknowledged missing, {} differing from the log, {} damaged record(s)",
                node.node,
                node.messages,
                node.last_sequence,
                node.missing_acknowledged,
                node.differing,
                node.damaged.len()
            );
            for damage in &node.damaged {
                println!("    damaged: {damage}");
            }
        }
        println!("unreadable messages       {}", v.unreadable);
        println!("due steps missing         {}", v.missing_steps);
        println!("ledgers = rebuild         {}", if v.ledger_differences.is_empty() { "yes" } else { "NO" });
        for problem in v.problems.iter().take(40) {
            println!("  problem: {problem}");
        }
        println!(
            "reads                     {} answered, {} refused as behind, {} as stale (> {} s), {} failed",
            self.reads.answered,
            self.reads.refused_behind,
            self.reads.refused_stale,
            reads::MAX_STALENESS,
            self.reads.failed,
        );
        println!(
            "  behind what was asked    {} (answers older than an acknowledgement the reader had)",
            self.reads.behind.len()
        );
        for read in self.reads.behind.iter().take(10) {
            println!("    {read}");
        }
        println!(
            "  currency claims disproved {} (advisory: a deposed leader vouching for an old end)",
            self.reads.lies.len()
        );
        for lie in self.reads.lies.iter().take(5) {
            println!("    {lie}");
        }
        println!("service errors logged     {}", self.service_errors.len());
        for line in self.service_errors.iter().take(10) {
            println!("  {}", line.chars().take(400).collect::<String>());
        }
        println!("verdict                   {}", if self.clean() { "CLEAN" } else { "FAILED" });
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    #[test]
    fn an_outage_runs_from_the_first_failure_to_the_next_success_by_anyone() {
        let attempts =
            [(s(1.0), true), (s(2.0), false), (s(2.5), false), (s(4.0), true), (s(5.0), false), (s(5.5), true)];
        assert_eq!(longest_outage(&attempts), s(2.0));
        // Out of order as the workers recorded them: the same answer.
        let mut shuffled = attempts.to_vec();
        shuffled.reverse();
        assert_eq!(longest_outage(&shuffled), s(2.0));
        assert_eq!(longest_outage(&[(s(1.0), false), (s(9.0), false)]), s(8.0), "never recovered: until the end");
    }

    #[test]
    fn a_stall_is_the_longest_gap_between_acknowledgements() {
        assert_eq!(longest_gap([s(3.0), s(1.0), s(1.5), s(7.0)].into_iter()), s(4.0));
        assert_eq!(longest_gap(std::iter::empty()), Duration::ZERO);
    }
}
