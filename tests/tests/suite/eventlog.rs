//! The event log's guarantees, against a real nats-server: per-case
//! optimistic concurrency, idempotent retries, history that cannot be erased,
//! and acknowledged events that survive a crash.

use gridcase_domain::{ActorRole, CaseId, Event, Text, Tier};
use gridcase_envelope::schema::{Actor, EventMeta};
use gridcase_envelope::{CaseSubject, StoredEvent, verify_chain};
use gridcase_eventlog::{AppendError, EventLog, StreamSettings};
use gridcase_tests::NatsServer;
use std::time::Duration;

use jiff::Timestamp;
use uuid::Uuid;

fn subject(case_id: &CaseId) -> CaseSubject {
    CaseSubject::for_grid(&gridcase_domain::GridCode::parse("990101101001001").unwrap(), case_id)
}

fn event(case_id: CaseId, case_version: u64, prev_hash: Option<String>, note: &str) -> StoredEvent {
    let event = if case_version == 1 {
        Event::Registered { tier: Tier::Normal, note: Some(Text::reason(note).unwrap()), policy: None }
    } else {
        Event::ProgressAdded { note: Text::reason(note).unwrap(), attachments: vec![] }
    };
    StoredEvent::chained(
        &event,
        EventMeta {
            event_id: Uuid::now_v7(),
            case_id,
            case_version,
            occurred_at: Timestamp::now(),
            actor: Actor {
                person: "cc-op-1".into(),
                role: ActorRole::CommandCentre,
                organisation: "cc-990101101".into(),
            },
            command_id: None,
        },
        prev_hash,
    )
}

async fn open(nats: &NatsServer) -> EventLog {
    EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap()
}

#[tokio::test]
async fn appends_state_the_sequence_they_expect_and_retries_are_recognised() {
    let nats = NatsServer::start();
    let log = open(&nats).await;
    let case_id = CaseId::new_v7();
    let subject = subject(&case_id);

    let first = event(case_id, 1, None, "one");
    let one = log.append(&subject, 0, &first).await.unwrap();
    assert!(!one.already_stored);

    // A second creation is refused: the subject is no longer empty.
    let rival = event(case_id, 1, None, "rival");
    assert!(matches!(
        log.append(&subject, 0, &rival).await,
        Err(AppendError::Conflict { expected: 0, found: Some(seq) }) if seq == one.stream_sequence
    ));

    // The same event sent again (a retry after a lost acknowledgement) is
    // recognised as already stored, not written twice.
    let retried = log.append(&subject, 0, &first).await.unwrap();
    assert_eq!(
        retried,
        gridcase_eventlog::AppendOutcome {
            stream_sequence: one.stream_sequence,
            already_stored: true,
            stored_before_this_call: true
        }
    );

    let second = event(case_id, 2, Some(first.hash.clone()), "two");
    let two = log.append(&subject, one.stream_sequence, &second).await.unwrap();
    // Stale expectation (someone appended since): conflict.
    let stale = event(case_id, 2, Some(first.hash.clone()), "stale");
    assert!(matches!(log.append(&subject, one.stream_sequence, &stale).await, Err(AppendError::Conflict { .. })));

    let history = log.history(&subject).await.unwrap();
    let events: Vec<StoredEvent> = history.iter().map(|p| p.event.clone()).collect();
    assert_eq!(events, vec![first, second]);
    assert_eq!(history[1].stream_sequence, two.stream_sequence);
    verify_chain(&events).unwrap();
}

#[tokio::test]
async fn of_many_writers_racing_on_one_case_exactly_one_wins() {
    let nats = NatsServer::start();
    let log = open(&nats).await;
    let case_id = CaseId::new_v7();
    let subject = subject(&case_id);
    let first = event(case_id, 1, None, "first");
    let base = log.append(&subject, 0, &first).await.unwrap().stream_sequence;

    let racers = (0..16).map(|i| {
        let log = log.clone();
        let subject = subject.clone();
        let candidate = event(case_id, 2, Some(first.hash.clone()), &format!("racer {i}"));
        tokio::spawn(async move { log.append(&subject, base, &candidate).await })
    });
    let results = futures::future::join_all(racers).await;
    let wins = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let conflicts = results.iter().filter(|r| matches!(r, Ok(Err(AppendError::Conflict { .. })))).count();
    assert_eq!((wins, conflicts), (1, 15), "{results:?}");
    assert_eq!(log.history(&subject).await.unwrap().len(), 2);
}

#[tokio::test]
async fn history_cannot_be_deleted_or_purged_through_the_api() {
    let nats = NatsServer::start();
    let log = open(&nats).await;
    let case_id = CaseId::new_v7();
    let stored = log.append(&subject(&case_id), 0, &event(case_id, 1, None, "keep me")).await.unwrap();

    let js = async_nats::jetstream::new(nats.client().await);
    let mut stream = js.get_stream("GRIDCASE_CASES").await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert!(config.deny_delete && config.deny_purge);
    assert_eq!(config.storage, async_nats::jetstream::stream::StorageType::File);
    assert!(stream.delete_message(stored.stream_sequence).await.is_err(), "delete must be refused");
    assert!(stream.purge().await.is_err(), "purge must be refused");
    assert_eq!(log.history(&subject(&case_id)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn every_acknowledged_event_survives_a_server_crash() {
    let mut nats = NatsServer::start();
    let log = open(&nats).await;
    let mut cases = Vec::new();
    for _ in 0..40 {
        let case_id = CaseId::new_v7();
        let stored = event(case_id, 1, None, "before the crash");
        log.append(&subject(&case_id), 0, &stored).await.unwrap();
        cases.push((case_id, stored));
    }
    nats.kill(); // SIGKILL: no flush on shutdown
    nats.restart();
    let log = open(&nats).await;
    for (case_id, stored) in cases {
        let history = log.history(&subject(&case_id)).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].event, stored);
    }
}

#[tokio::test]
async fn an_append_sent_while_the_server_is_down_lands_once_when_it_returns_within_the_deadline() {
    let mut nats = NatsServer::start();
    let client = async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(nats.url())
        .await
        .unwrap();
    let settings = StreamSettings {
        publish_timeout: Duration::from_millis(500),
        append_deadline: Duration::from_secs(30),
        ..StreamSettings::default()
    };
    let log = EventLog::open(client, settings).await.unwrap();
    let case_id = CaseId::new_v7();
    let first = event(case_id, 1, None, "before the crash");
    log.append(&subject(&case_id), 0, &first).await.unwrap();

    nats.kill();
    let second = event(case_id, 2, Some(first.hash.clone()), "sent while the server is down");
    let sending = tokio::spawn({
        let (log, second) = (log.clone(), second.clone());
        async move { log.append(&subject(&case_id), 1, &second).await }
    });
    // Several publish time-outs pass: the append keeps trying, it does not give up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!sending.is_finished(), "the append gave up before its deadline: {:?}", sending.await);

    nats.restart();
    let outcome = sending.await.unwrap().expect("stored once the server is back");
    assert!(!outcome.stored_before_this_call);
    let history = log.history(&subject(&case_id)).await.unwrap();
    assert_eq!(history.len(), 2, "stored exactly once");
    assert_eq!(history[1].event, second);
    assert_eq!(history[1].stream_sequence, outcome.stream_sequence);
}

#[tokio::test]
async fn an_append_that_cannot_be_stored_within_its_deadline_is_unavailable() {
    let mut nats = NatsServer::start();
    let settings = StreamSettings {
        publish_timeout: Duration::from_millis(300),
        append_deadline: Duration::from_secs(1),
        ..StreamSettings::default()
    };
    let log = EventLog::open(nats.client().await, settings).await.unwrap();
    nats.kill();
    let case_id = CaseId::new_v7();
    let started = std::time::Instant::now();
    let answer = log.append(&subject(&case_id), 0, &event(case_id, 1, None, "nobody hears this")).await;
    assert!(matches!(answer, Err(AppendError::Unavailable(_))), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "the deadline bounds the call: {:?}", started.elapsed());
}

#[tokio::test]
async fn the_log_writes_nothing_to_a_stream_without_file_storage() {
    let nats = NatsServer::start();
    let js = async_nats::jetstream::new(nats.client().await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "GRIDCASE_CASES".into(),
        subjects: vec!["gridcase.case.>".into()],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await
    .unwrap();
    // Opened for reading, never written to: a stream kept in memory loses
    // everything when the server stops.
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();
    let problems = log.integrity().writable().expect_err("writes are stopped");
    assert!(problems.contains("storage is not file"), "{problems}");
    let store = gridcase_eventlog::store::CaseStore::new(log);
    let case_id = CaseId::new_v7();
    let head = gridcase_envelope::Head::new_case(case_id, subject(&case_id));
    let first = event(case_id, 1, None, "kept in memory");
    let filing = first.decode().unwrap();
    let provenance = gridcase_eventlog::store::Provenance {
        event_id: first.event_id,
        occurred_at: first.occurred_at,
        actor: first.actor.clone(),
        command_id: None,
    };
    let answer = store.commit(&head, &filing, provenance).await;
    assert!(matches!(answer, Err(gridcase_eventlog::store::CommitError::Stopped(_))), "{answer:?}");
    assert_eq!(store.log().last_sequence().await.unwrap(), 0, "nothing was appended");
}

#[tokio::test]
async fn a_retry_after_the_duplicate_window_is_still_recognised_as_our_own() {
    let nats = NatsServer::start();
    let settings =
        StreamSettings { duplicate_window: std::time::Duration::from_millis(500), ..StreamSettings::default() };
    let log = EventLog::open(nats.client().await, settings).await.unwrap();
    let case_id = CaseId::new_v7();
    let first = event(case_id, 1, None, "slow network");
    let stored = log.append(&subject(&case_id), 0, &first).await.unwrap();
    // Waiting out the server's duplicate window (not a timing assertion):
    // afterwards only the per-subject sequence check protects the case.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let retried = log.append(&subject(&case_id), 0, &first).await.unwrap();
    assert_eq!(retried.stream_sequence, stored.stream_sequence);
    assert!(retried.already_stored);
    assert_eq!(log.history(&subject(&case_id)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_shipped_nats_configuration_fsyncs_before_acknowledging_and_starts() {
    let path = gridcase_tests::workspace_root().join("deploy/nats/nats-server.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let settings: Vec<&str> =
        text.lines().map(|l| l.split('#').next().unwrap().trim()).filter(|l| !l.is_empty()).collect();
    assert!(
        settings.contains(&"sync_interval: always"),
        "deploy/nats/nats-server.conf must fsync before acknowledging"
    );

    // Start a server with exactly that file, as deploy/up.sh does, and use it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let store = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(gridcase_tests::nats::nats_server_binary())
        .args([
            "-c",
            path.to_str().unwrap(),
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-sd",
            store.path().to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    gridcase_tests::eventually("the shipped configuration to start a server", || async {
        async_nats::connect(&url).await.is_ok()
    })
    .await;
    let client = async_nats::connect(&url).await.expect("the shipped configuration starts a server");
    let log = EventLog::open(client, StreamSettings::default()).await.expect("JetStream is enabled");
    let case_id = CaseId::new_v7();
    log.append(&subject(&case_id), 0, &event(case_id, 1, None, "shipped config")).await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_single_server_refuses_more_replicas_than_it_can_keep_and_keeps_one() {
    let nats = NatsServer::start();
    let three = StreamSettings { replicas: 3, ..StreamSettings::default() };
    let refused = EventLog::open(nats.client().await, three).await.err().expect("three copies need three servers");
    assert!(refused.to_string().contains("cannot open stream"), "{refused}");
    let log = open(&nats).await;
    let js = log.context().clone();
    let info = js.get_stream("GRIDCASE_CASES").await.unwrap().info().await.unwrap().clone();
    assert_eq!(info.config.num_replicas, 1);
}
