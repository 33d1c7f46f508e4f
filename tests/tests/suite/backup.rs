//! The backup the daily credentials cannot reach (deploy/backup.sh), once,
//! end to end on the deployment deploy/cluster.sh runs (one node, TLS, the
//! shipped users and permissions): mirrors made in the BACKUP account;
//! grid workers file and add notes; the case stream is shrunk behind the
//! services' back with the break-glass credential, and they stop writing;
//! the restore brings every acknowledged event back, in order, each chain
//! whole, the dispatcher's steps once, the ledgers equal to a rebuild; then
//! gridcase takes new filings again and the mirror follows.
//!
//! It runs the service binaries: `deploy/test.sh` builds them first.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use async_nats::jetstream;
use gridcase_chaos::{Topology, check, load};
use gridcase_tests::{eventually, serving, workspace_root};

async fn connect(topology: &Topology, seed_file: &std::path::Path) -> async_nats::Client {
    let seed = std::fs::read_to_string(seed_file).unwrap();
    async_nats::ConnectOptions::with_nkey(seed.trim().to_owned())
        .require_tls(true)
        .add_root_certificates(topology.nats_tls_ca.clone())
        .connect(topology.nats_urls.as_str())
        .await
        .unwrap()
}

fn script(name: &str, env: &[(String, String)], args: &[&str]) -> String {
    let output = std::process::Command::new(workspace_root().join("deploy").join(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "deploy/{name} {}: {text}", args.join(" "));
    text
}

/// Takes the test's cluster down however the test ends (a failed assertion
/// used to leave its nats-server and services running, and in the way of
/// the next run's ports).
struct TakeDown(Vec<(String, String)>);

impl Drop for TakeDown {
    fn drop(&mut self) {
        let _ = std::process::Command::new(workspace_root().join("deploy/cluster.sh"))
            .arg("down")
            .envs(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
    }
}

async fn mirrored(backup: &jetstream::Context, name: &str) -> u64 {
    match backup.get_stream(name).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.last_sequence).unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_account_restores_a_history_shrunk_behind_the_services_back() {
    let run = tempfile::Builder::new().prefix("gridcase-backup-").tempdir().unwrap();
    std::fs::set_permissions(run.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Ports below the ephemeral range and clear of the chaos test's (which
    // may run at the same time: 10001-22003 and 20001-28052).
    let jitter = u64::from(std::process::id()) % 10;
    let env = vec![
        ("GRIDCASE_CLUSTER_DIR".to_owned(), run.path().display().to_string()),
        ("GRIDCASE_CLUSTER_PORT_BASE".to_owned(), (28_100 + jitter * 10).to_string()),
        ("GRIDCASE_CLUSTER_SERVICE_PORT_BASE".to_owned(), (32_300 + jitter * 40).to_string()),
        ("GRIDCASE_CLUSTER_NODES".to_owned(), "1".to_owned()),
        ("GRIDCASE_BIN_DIR".to_owned(), gridcase_tests::service_binaries().display().to_string()),
        ("GRIDCASE_SKIP_INSTALL".to_owned(), "1".to_owned()),
        // The services check the streams every second here (30 s by default).
        ("GRIDCASE_INTEGRITY_INTERVAL".to_owned(), "1s".to_owned()),
    ];
    let _take_down = TakeDown(env.clone());
    script("cluster.sh", &env, &["up"]);
    let topology = Topology::describe(workspace_root().join("deploy/cluster.sh"), env.clone()).await.unwrap();
    let secrets = run.path().join("secrets");
    let backup = jetstream::new(connect(&topology, &secrets.join("backup.nk")).await);
    let steward = jetstream::new(connect(&topology, &secrets.join("steward.nk")).await);
    let operator = jetstream::new(connect(&topology, &topology.operator_credentials).await);

    // The mirrors, in an account the daily users cannot see.
    let made = script("backup.sh", &env, &["init"]);
    eprintln!("deploy/backup.sh init:\n{made}");
    assert!(made.contains("BACKUP_GRIDCASE_CASES mirrors GRIDCASE_CASES (created)"), "{made}");
    assert!(made.contains("BACKUP_GRIDCASE_ATTACHMENTS mirrors GRIDCASE_ATTACHMENTS (created)"), "{made}");
    assert!(script("backup.sh", &env, &["init"]).contains("(there already)"), "init runs again");
    for daily in [&operator, &steward] {
        assert!(daily.get_stream("BACKUP_GRIDCASE_CASES").await.is_err(), "a GRIDCASE user sees the backup");
    }

    // Grid workers file and add notes; the dispatcher and the projection follow.
    let channels = load::channels(&topology.intake).unwrap();
    let (_, no_faults) = tokio::sync::watch::channel(false);
    let work = load::Load {
        operations: 80,
        concurrency: 4,
        rate: None,
        seed: 7,
        give_up_after: Duration::from_secs(60),
        acknowledged_up_to: Default::default(),
    };
    let done = work.run(channels, Arc::new(AtomicUsize::new(0)), no_faults).await.unwrap();
    let filed: HashSet<String> = done
        .outcomes
        .iter()
        .filter(|o| o.acknowledged_after.is_some())
        .filter_map(|o| match &o.operation {
            load::Operation::File { case_id } => Some(case_id.clone()),
            load::Operation::Note { .. } => None,
        })
        .collect();
    assert!(!filed.is_empty());
    let log = check::open_log(&topology).await.unwrap();
    check::settle(&topology, &log, &filed, Duration::from_secs(60)).await.unwrap();
    let end = log.last_sequence().await.unwrap();
    eventually("the mirror to hold the whole stream", || async {
        mirrored(&backup, "BACKUP_GRIDCASE_CASES").await == end
    })
    .await;

    // Behind the services' back, with the break-glass credential: one
    // event per case is kept, the rest discarded by the server.
    let mut config = steward.get_stream("GRIDCASE_CASES").await.unwrap().info().await.unwrap().config.clone();
    config.max_messages_per_subject = 1;
    steward.update_stream(config).await.unwrap();
    let left = steward.get_stream("GRIDCASE_CASES").await.unwrap().info().await.unwrap().state.messages;
    assert!(left < end, "the server discarded history ({left} of {end} left)");
    eprintln!("the steward set max_messages_per_subject 1: {left} of {end} messages left");
    let intake = format!("http://{}", topology.intake[0]);
    eventually("intake to report NOT_SERVING", || async { !serving(&intake, "").await }).await;
    eprintln!("intake reports NOT_SERVING; deploy/backup.sh status:\n{}", script("backup.sh", &env, &["status"]));
    assert_eq!(mirrored(&backup, "BACKUP_GRIDCASE_CASES").await, end, "the mirror kept everything");

    // The restore: every acknowledged operation there once, chains whole,
    // the dispatcher's steps once, the ledgers equal to a rebuild.
    let restored = script("backup.sh", &env, &["restore"]);
    eprintln!("deploy/backup.sh restore:\n{restored}");
    assert!(restored.contains("deleted GRIDCASE_CASES, which no longer kept its history"), "{restored}");
    let log = check::open_log(&topology).await.unwrap();
    assert_eq!(log.last_sequence().await.unwrap(), end);
    eventually("intake to serve again", || async { serving(&intake, "").await }).await;
    let verdict = check::check(&topology, &log, &done.outcomes, &[]).await.unwrap();
    assert!(verdict.clean(), "{:?}", verdict.problems);
    assert_eq!(verdict.acknowledged_filings, filed.len());
    assert!(verdict.acknowledged_notes > 0);
    eprintln!(
        "restored: stream ends at {end} again, intake serves; the check found {} acknowledged filings and {} notes, \
         each once, chains whole, no problem",
        verdict.acknowledged_filings, verdict.acknowledged_notes
    );

    // gridcase goes on: new filings are taken and the mirror follows them.
    let channels = load::channels(&topology.intake).unwrap();
    let (_, no_faults) = tokio::sync::watch::channel(false);
    let more = load::Load {
        operations: 10,
        concurrency: 2,
        rate: None,
        seed: 8,
        give_up_after: Duration::from_secs(60),
        acknowledged_up_to: Default::default(),
    };
    let after = more.run(channels, Arc::new(AtomicUsize::new(0)), no_faults).await.unwrap();
    assert!(after.outcomes.iter().all(|o| o.acknowledged_after.is_some() || o.refused.is_some()));
    let grown = log.last_sequence().await.unwrap();
    assert!(grown > end);
    // The mirror lost its origin while the stream was replaced: it finds
    // the restored one at its next retry (JetStream backs off up to 2 min).
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    while mirrored(&backup, "BACKUP_GRIDCASE_CASES").await < grown {
        if std::time::Instant::now() > deadline {
            let mut mirror = backup.get_stream("BACKUP_GRIDCASE_CASES").await.unwrap();
            let info = mirror.info().await.unwrap().clone();
            let log = std::fs::read_to_string(run.path().join("logs/nats-1.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "the mirror did not follow ({:?}, {:?}); nats-1's log ends:\n{}",
                info.mirror,
                info.state,
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    script("cluster.sh", &env, &["down"]);
}
