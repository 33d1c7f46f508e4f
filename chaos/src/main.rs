//! `gridcase-chaos`: see the crate documentation (`chaos/src/lib.rs`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gridcase_chaos::{FaultKind, Settings};

/// Fault injection on the cluster topology (deploy/cluster.sh): a load of
/// filings and notes under a seeded schedule of faults: kills (SIGKILL) of
/// the stream leader's nats-server, services and PostgreSQL; with --netns,
/// partitions (the leader isolated, 1 | 2 with services on both sides, a
/// bridge, flapping links) and slow links; SIGSTOP pauses of nodes and
/// services; a node's store tail truncated or corrupted while it is down.
/// Then every acknowledged operation must be in the log exactly once where
/// its acknowledgement said, on every node's own store, nothing doubled,
/// every hash chain whole and in order, every due dispatcher step taken
/// once, the ledgers equal to a rebuild; a loss gridcase did not report is
/// named as such. Exits 1 when a check fails.
#[derive(Debug, Parser)]
#[command(name = "gridcase-chaos", version)]
struct Cli {
    /// Operations to run (filings and notes); the load goes on until every fault is injected.
    #[arg(long, default_value_t = 2000)]
    operations: usize,
    /// Concurrent grid workers.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Operations started per second (0: as fast as the system takes them).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seed of every random choice (printed; pass it again to repeat a run). Default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Faults to inject, each once per --rounds: nats-leader, intake, dispatcher, projection, postgres
    /// (kills); isolate-leader, split, bridge, flap, slow (need --netns); pause-node, pause-service,
    /// truncate-tail, corrupt-tail. Default: every kind the topology allows.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Run each part in a network namespace of its own, on 10.213.N.0/24 (GRIDCASE_CLUSTER_NETNS=N;
    /// needs root, iproute2 and nftables: deploy/install-deps.sh --chaos).
    #[arg(long, value_name = "N")]
    netns: Option<u8>,
    /// The longest a partition, pause or slow link lasts.
    #[arg(long, default_value = "12s", value_parser = gridcase_process::parse_duration)]
    fault_length: Duration,
    /// How many times each fault is injected.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Nats-server nodes: 3 (a cluster) or 1 (the same topology on one node, for comparison).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Start the topology first (deploy/cluster.sh up) and stop it at the end.
    #[arg(long)]
    manage: bool,
    /// The cluster script.
    #[arg(long, default_value = "deploy/cluster.sh")]
    script: PathBuf,
    /// How long a client retries one operation before giving up on it.
    #[arg(long, default_value = "60s", value_parser = gridcase_process::parse_duration)]
    give_up_after: Duration,
    /// How long to wait for the system to settle before checking.
    #[arg(long, default_value = "120s", value_parser = gridcase_process::parse_duration)]
    settle_timeout: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    // The harness exports no traces of its own.
    let _logs = gridcase_process::telemetry::install(
        gridcase_process::LogFormat::Text,
        "warn,sqlx=error,gridcase_chaos=info",
        None,
    );
    let cli = Cli::parse();
    let netns = cli.netns.map(|n| n.to_string()).or_else(|| std::env::var("GRIDCASE_CLUSTER_NETNS").ok());
    let names: Vec<String> = if cli.faults.is_empty() {
        FaultKind::ALL
            .into_iter()
            .filter(|kind| netns.is_some() || !kind.needs_netns())
            .filter(|kind| cli.nodes == 3 || !kind.needs_cluster())
            .map(|kind| kind.name().to_owned())
            .collect()
    } else {
        cli.faults.clone()
    };
    let mut plan = Vec::new();
    for name in &names {
        let Some(kind) = FaultKind::parse(name) else {
            eprintln!("gridcase-chaos: unknown fault {name:?}");
            return ExitCode::from(2);
        };
        plan.extend(std::iter::repeat_n(kind, cli.rounds));
    }
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    println!("gridcase-chaos: seed {seed} (repeat with --seed {seed})");
    let mut env: Vec<(String, String)> = vec![("GRIDCASE_CLUSTER_NODES".into(), cli.nodes.to_string())];
    if let Some(netns) = &netns {
        env.push(("GRIDCASE_CLUSTER_NETNS".into(), netns.clone()));
    }
    if cli.nodes == 1 && std::env::var_os("GRIDCASE_CLUSTER_DIR").is_none() {
        // Its own run directory and ports, beside a three-node one.
        env.push(("GRIDCASE_CLUSTER_DIR".into(), ".run/cluster-single".into()));
        env.push(("GRIDCASE_CLUSTER_PORT_BASE".into(), "4330".into()));
        env.push(("GRIDCASE_CLUSTER_SERVICE_PORT_BASE".into(), "50160".into()));
    }
    let settings = Settings {
        script: cli.script,
        env,
        up: cli.manage,
        down: cli.manage,
        operations: cli.operations,
        concurrency: cli.concurrency,
        rate: (cli.rate > 0.0).then_some(cli.rate),
        seed,
        faults: plan,
        fault_length: cli.fault_length,
        give_up_after: cli.give_up_after,
        settle_timeout: cli.settle_timeout,
    };
    match gridcase_chaos::run(settings).await {
        Ok(report) => {
            report.print();
            if report.clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(error) => {
            eprintln!("gridcase-chaos: {error:#}");
            ExitCode::FAILURE
        }
    }
}
