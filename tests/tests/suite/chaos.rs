//! A short run of the chaos harness (gridcase-chaos) as part of the suite:
//! the cluster topology of deploy/cluster.sh (three nats-servers, two of
//! each service, a PostgreSQL of its own), each part in a network namespace
//! of its own, under a few hundred operations while every kind of fault
//! happens once (kills, partitions, a bridge, flapping and slow links,
//! pauses, a node's store tail truncated and corrupted); nothing
//! acknowledged may be lost, doubled or moved on any node, and the ledgers
//! must equal a rebuild. The long schedule is the harness's own
//! (README: What gridcase promises under faults).
//!
//! It runs the service binaries: `deploy/test.sh` builds them first
//! (`cargo build --bins`); GRIDCASE_BIN_DIR points elsewhere.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use gridcase_chaos::{FaultKind, Settings};
use gridcase_tests::workspace_root;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_loses_and_doubles_nothing_under_kills_partitions_pauses_and_damaged_stores() {
    let run = tempfile::Builder::new().prefix("gridcase-chaos-").tempdir().unwrap();
    // The PostgreSQL of the topology runs as the postgres user when the
    // tests run as root: it must reach its data directory in here.
    std::fs::set_permissions(run.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Ports below the ephemeral range, so no other test's listener takes them.
    let offset = u64::from(std::process::id()) % 400 * 20;
    let env = vec![
        ("GRIDCASE_CLUSTER_DIR".to_owned(), run.path().display().to_string()),
        ("GRIDCASE_CLUSTER_PORT_BASE".to_owned(), (10_000 + offset).to_string()),
        ("GRIDCASE_CLUSTER_SERVICE_PORT_BASE".to_owned(), (20_000 + offset).to_string()),
        ("GRIDCASE_CLUSTER_NODES".to_owned(), "3".to_owned()),
        ("GRIDCASE_BIN_DIR".to_owned(), gridcase_tests::service_binaries().display().to_string()),
        ("GRIDCASE_SKIP_INSTALL".to_owned(), "1".to_owned()),
        // Its own subnet and namespaces (10.213.N.0/24), beside a harness run by hand.
        ("GRIDCASE_CLUSTER_NETNS".to_owned(), (100 + std::process::id() % 100).to_string()),
    ];
    // deploy/test.sh pins the seed (as it pins the fuzzer's); run alone, a new one each time.
    let seed = match std::env::var("GRIDCASE_CHAOS_SEED") {
        Ok(seed) => seed.parse().expect("GRIDCASE_CHAOS_SEED is a number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    println!("chaos seed {seed}");
    let report = gridcase_chaos::run(Settings {
        script: workspace_root().join("deploy/cluster.sh"),
        env,
        up: true,
        down: true,
        operations: 300,
        concurrency: 6,
        rate: Some(30.0),
        seed,
        faults: FaultKind::ALL.to_vec(),
        fault_length: Duration::from_secs(8),
        give_up_after: Duration::from_secs(60),
        settle_timeout: Duration::from_secs(120),
    })
    .await
    .unwrap_or_else(|e| panic!("the chaos run (seed {seed}) failed: {e:#}"));
    report.print();

    let mut kinds: Vec<FaultKind> = report.faults.iter().map(|f| f.kind).collect();
    kinds.sort();
    assert_eq!(kinds, FaultKind::ALL.to_vec(), "one fault of each kind (seed {seed})");
    let verdict = &report.verdict;
    assert!(verdict.acknowledged_filings > 0 && verdict.acknowledged_notes > 0, "the load ran (seed {seed})");
    assert_eq!(report.not_acknowledged, 0, "every operation got through within its minute (seed {seed})");
    assert_eq!(verdict.lost, 0, "{:?} (seed {seed})", verdict.problems);
    assert_eq!(verdict.doubled, 0, "{:?} (seed {seed})", verdict.problems);
    assert_eq!(verdict.broken_chains, 0, "{:?} (seed {seed})", verdict.problems);
    assert_eq!(verdict.missing_steps, 0, "{:?} (seed {seed})", verdict.problems);
    assert_eq!(verdict.moved, 0, "{:?} (seed {seed})", verdict.problems);
    assert_eq!(verdict.version_conflicts, 0, "{:?} (seed {seed})", verdict.problems);
    assert_eq!(verdict.order_violations, 0, "{:?} (seed {seed})", verdict.problems);
    assert_eq!(verdict.lost_silently, 0, "{:?} (seed {seed})", verdict.problems);
    assert_eq!(verdict.nodes.len(), 3, "each node's store was read");
    assert!(report.reads.answered > 0, "the query services were read throughout");
    assert!(report.reads.behind.is_empty(), "{:?} (seed {seed})", report.reads.behind);
    for node in &verdict.nodes {
        // The independent reader found the stream in each store, whole.
        assert!(node.messages >= verdict.events, "{node:?} (seed {seed})");
        assert_eq!(node.missing_acknowledged, 0, "{node:?} {:?} (seed {seed})", verdict.problems);
        assert_eq!(node.differing, 0, "{node:?} {:?} (seed {seed})", verdict.problems);
    }
    assert!(verdict.ledger_differences.is_empty(), "{:?} (seed {seed})", verdict.problems);
    assert_eq!(verdict.cases, verdict.acknowledged_filings, "only the load's cases are in this fresh log");
}
