//! Group commit in the case store, against a real nats-server: appends
//! gathered into JetStream atomic batches keep every guarantee a single
//! append has. A refused batch tells each caller its own answer; a batch
//! whose answer was lost is recognised when sent again, not doubled; a crash
//! mid-batch stores all of a batch or none of it; batched and single appends
//! racing on the same case serialise on the per-case sequence.

use std::time::Duration;

use futures::future::join_all;
use gridcase_domain::{ActorRole, CaseId, Event, Text};
use gridcase_envelope::Head;
use gridcase_envelope::schema::Actor;
use gridcase_envelope::{CaseSubject, verify_history};
use gridcase_eventlog::store::{CaseStore, CommitError, Committed};
use gridcase_eventlog::{EventLog, GroupCommit, StreamSettings};
use gridcase_tests::NatsServer;
use gridcase_tests::gate::Gate;
use gridcase_tests::scenario::filing;
use jiff::Timestamp;
use uuid::Uuid;

const GRID: &str = "990101101001001";

fn settings(group_commit: GroupCommit) -> StreamSettings {
    StreamSettings { group_commit, ..StreamSettings::default() }
}

/// Batches of exactly `events`: the first append waits (up to a minute)
/// until that many have queued, so a batch is known to have formed.
fn gather(events: usize) -> GroupCommit {
    GroupCommit { max_events: events, max_wait: Duration::from_secs(60), max_in_flight: 1 }
}

async fn store_on(client: async_nats::Client, group_commit: GroupCommit) -> CaseStore {
    CaseStore::new(EventLog::open(client, settings(group_commit)).await.expect("open the log"))
}

fn provenance() -> gridcase_eventlog::store::Provenance {
    gridcase_eventlog::store::Provenance {
        event_id: Uuid::now_v7(),
        occurred_at: Timestamp::now(),
        actor: Actor { person: "cc-op-1".into(), role: ActorRole::CommandCentre, organisation: "cc-990101101".into() },
        command_id: None,
    }
}

fn filed(case_id: CaseId) -> Event {
    gridcase_domain::decide(None, &filing(case_id, GRID, "0101", Timestamp::now()), Timestamp::now()).expect("filing")
}

fn note(text: &str) -> Event {
    Event::ProgressAdded { note: Text::reason(text).expect("note"), attachments: vec![] }
}

fn subject(case_id: &CaseId) -> CaseSubject {
    gridcase_tests::act::subject(GRID, *case_id)
}

fn stored(committed: &Committed) -> &gridcase_envelope::Positioned {
    match committed {
        Committed::Stored(positioned) => positioned,
        other => panic!("expected the event stored by this call, got {other:?}"),
    }
}

/// The batch id a stored message carries (atomic batches keep it).
async fn batch_id(log: &EventLog, sequence: u64) -> Option<String> {
    let stream = log.context().get_stream(&log.settings().stream_name).await.expect("stream");
    let message = stream.get_raw_message(sequence).await.expect("message");
    message.headers.get("Nats-Batch-Id").map(|value| value.to_string())
}

/// A case's history: read, verified (hashes, versions, chain), its event ids.
async fn history_ids(log: &EventLog, case_id: &CaseId) -> Vec<Uuid> {
    let history = log.history(&subject(case_id)).await.expect("history");
    verify_history(&history).expect("the chain verifies");
    history.iter().map(|p| p.event.event_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_conflicting_append_in_a_batch_gets_its_conflict_and_every_other_append_is_stored() {
    let nats = NatsServer::start();
    let store = store_on(nats.client().await, gather(6)).await;
    let cases: Vec<CaseId> = (0..6).map(|_| CaseId::new_v7()).collect();

    // Six filings gathered into one batch (the first waits for the others).
    let filings = cases.iter().map(|case_id| {
        let head = Head::new_case(*case_id, subject(case_id));
        let event = filed(*case_id);
        let store = &store;
        async move { (head.clone(), store.commit(&head, &event, provenance()).await) }
    });
    let heads: Vec<Head> =
        join_all(filings).await.into_iter().map(|(head, result)| head.after(stored(&result.expect("filed")))).collect();
    let first_batch = batch_id(store.log(), heads[0].last_sequence).await.expect("the filings went as a batch");
    for head in &heads {
        assert_eq!(batch_id(store.log(), head.last_sequence).await.as_deref(), Some(first_batch.as_str()));
    }
    // One batch: consecutive stream sequences.
    let mut sequences: Vec<u64> = heads.iter().map(|h| h.last_sequence).collect();
    sequences.sort();
    assert_eq!(sequences, (sequences[0]..sequences[0] + 6).collect::<Vec<_>>());

    // Someone else moves case 3 on; our next batch still expects its filing.
    let rival = store_on(nats.client().await, GroupCommit::default()).await;
    let rival_stored = rival.commit(&heads[3], &note("a rival's note"), provenance()).await.expect("rival");
    let rival_sequence = stored(&rival_stored).stream_sequence;

    let notes = heads.iter().map(|head| {
        let store = &store;
        let provenance = provenance();
        let event_id = provenance.event_id;
        async move { (event_id, store.commit(head, &note("our note"), provenance).await) }
    });
    let answers = join_all(notes).await;
    for (index, (event_id, answer)) in answers.iter().enumerate() {
        let ids = history_ids(store.log(), &cases[index]).await;
        if index == 3 {
            assert!(matches!(answer, Err(CommitError::Conflict)), "the stale append gets its conflict: {answer:?}");
            assert_eq!(ids.len(), 2, "case 3 holds its filing and the rival's note only");
            assert_ne!(ids[1], *event_id);
        } else {
            let positioned = stored(answer.as_ref().expect("an innocent append is stored"));
            assert_eq!(positioned.event.event_id, *event_id);
            assert_eq!(ids, vec![ids[0], *event_id], "stored once, right after the filing");
            assert!(positioned.stream_sequence > rival_sequence);
        }
    }
    // The five innocent notes were sent again together, as one batch.
    let second: Vec<Option<String>> = join_all(
        answers.iter().filter_map(|(_, a)| a.as_ref().ok()).map(|c| batch_id(store.log(), stored(c).stream_sequence)),
    )
    .await;
    assert_eq!(second.len(), 5);
    assert!(second.iter().all(|id| id.is_some() && *id == second[0]), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_answer_was_lost_is_recognised_when_sent_again_and_stored_once() {
    let nats = NatsServer::start();
    let upstream = nats.url().trim_start_matches("nats://").parse().expect("server address");
    let gate = Gate::start(upstream).await;
    let client = async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .connect(gate.url())
        .await
        .expect("connect through the gate");
    let settings = StreamSettings { publish_timeout: Duration::from_millis(500), ..settings(GroupCommit::default()) };
    let store = CaseStore::new(EventLog::open(client, settings).await.expect("open"));
    let observer = EventLog::open(nats.client().await, StreamSettings::default()).await.expect("observer");

    let case_id = CaseId::new_v7();
    let head = Head::new_case(case_id, subject(&case_id));
    let filing = stored(&store.commit(&head, &filed(case_id), provenance()).await.expect("filed")).clone();
    let head = head.after(&filing);

    // A chain of two events goes as one atomic batch; its answer is held
    // back, then lost with the connection once the batch is in the stream.
    gate.hold_replies();
    let (first, second) = (note("first of two"), note("second of two"));
    let steps = vec![(&first, provenance()), (&second, provenance())];
    let ids: Vec<Uuid> = steps.iter().map(|(_, p)| p.event_id).collect();
    let replayed_steps = steps.clone();
    let commit = store.commit_chain(&head, steps);
    let lose_the_answer = async {
        gridcase_tests::eventually("the batch to reach the stream", || async {
            observer.last_sequence().await.expect("stream end") >= filing.stream_sequence + 2
        })
        .await;
        gate.cut().await;
    };
    let (answer, ()) = tokio::join!(commit, lose_the_answer);

    let committed = answer.expect("the batch is recognised as this call's");
    assert_eq!(committed.len(), 2);
    let positions: Vec<u64> = committed.iter().map(|c| stored(c).stream_sequence).collect();
    assert_eq!(positions, vec![filing.stream_sequence + 1, filing.stream_sequence + 2]);
    assert_eq!(history_ids(&observer, &case_id).await, vec![filing.event.event_id, ids[0], ids[1]]);

    // Neither batch message carries a message id: the expected sequence
    // and the event ids recognised the retry. Committing the same chain
    // again is answered "already stored", at the same places.
    let stream = observer.context().get_stream("GRIDCASE_CASES").await.expect("stream");
    for sequence in &positions {
        let message = stream.get_raw_message(*sequence).await.expect("message");
        assert!(message.headers.get("Nats-Msg-Id").is_none(), "no message id in a batch");
        assert!(message.headers.get("Nats-Batch-Id").is_some(), "stored as a batch");
    }
    let again = store.commit_chain(&head, replayed_steps).await.expect("a retry of a stored chain");
    assert_eq!(again, positions.iter().map(|s| Committed::AlreadyStored(*s)).collect::<Vec<_>>());
    assert_eq!(history_ids(&observer, &case_id).await.len(), 3, "nothing doubled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_batch_stores_all_of_each_batch_or_none_of_it() {
    let mut nats = NatsServer::start();
    let _log = EventLog::open(nats.client().await, settings(GroupCommit::default())).await.expect("open");

    // A batch cut off before its commit: the server stages it, stores nothing.
    let client = nats.client().await;
    let partial_case = CaseId::new_v7();
    let partial_subject = subject(&partial_case).to_string();
    for sequence in 1..=3 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Batch-Id", "cut-off-batch");
        headers.insert("Nats-Batch-Sequence", sequence.to_string().as_str());
        client.publish_with_headers(partial_subject.clone(), headers, "{}".into()).await.expect("publish");
    }
    client.flush().await.expect("flush");
    drop(client);

    // Chains of three events on fresh cases, many batches in flight, and
    // the server killed among them.
    let writer_client = nats.client().await;
    let short = StreamSettings {
        publish_timeout: Duration::from_millis(500),
        append_deadline: Duration::from_secs(2),
        ..settings(GroupCommit::default())
    };
    let store = std::sync::Arc::new(CaseStore::new(EventLog::open(writer_client.clone(), short).await.expect("open")));
    let (first, second) = (note("first"), note("second"));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let (first, second) = (first.clone(), second.clone());
        writers.push(tokio::spawn(async move {
            let mut cases = Vec::new();
            for _ in 0..400 {
                let case_id = CaseId::new_v7();
                let head = Head::new_case(case_id, subject(&case_id));
                let filing = filed(case_id);
                let steps = vec![(&filing, provenance()), (&first, provenance()), (&second, provenance())];
                let acknowledged = store.commit_chain(&head, steps).await.is_ok();
                cases.push((case_id, acknowledged));
                if !acknowledged {
                    break;
                }
            }
            cases
        }));
    }
    let observer = EventLog::open(nats.client().await, StreamSettings::default()).await.expect("observer");
    gridcase_tests::eventually("600 events stored", || async {
        observer.last_sequence().await.expect("stream end") >= 600
    })
    .await;
    nats.kill();
    let mut cases = Vec::new();
    for writer in writers {
        cases.extend(writer.await.expect("writer"));
    }
    // Every append has its answer; the writer's connection goes before the
    // server comes back, so nothing it buffered arrives late.
    drop(store);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer_client.drain()).await;
    drop(writer_client);
    nats.restart();

    let log = EventLog::open(nats.client().await, StreamSettings::default()).await.expect("reopen");
    let mut complete = 0;
    for (case_id, acknowledged) in &cases {
        let history = log.history(&subject(case_id)).await.expect("history");
        assert!(history.is_empty() || history.len() == 3, "case {case_id}: {} of a batch's 3 events", history.len());
        assert!(!acknowledged || history.len() == 3, "an acknowledged batch survives the crash");
        if !history.is_empty() {
            verify_history(&history).expect("chain");
            complete += 1;
        }
    }
    assert!(complete >= 200, "the batches before the crash survive it ({complete} cases complete)");
    assert_eq!(log.case_count().await.expect("count"), complete, "no case outside the chains, none cut off");
    assert!(
        log.history(&subject(&partial_case)).await.expect("history").is_empty(),
        "an uncommitted batch is not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_and_single_appends_racing_on_the_same_cases_serialise_and_nothing_is_lost_or_doubled() {
    let nats = NatsServer::start();
    // One write in flight at a time: the batched store's writers queue up and go together.
    let gathering = GroupCommit { max_in_flight: 1, ..GroupCommit::default() };
    let batched = std::sync::Arc::new(store_on(nats.client().await, gathering).await);
    let single = std::sync::Arc::new(
        store_on(nats.client().await, GroupCommit { max_events: 1, ..GroupCommit::default() }).await,
    );
    let cases: Vec<CaseId> = (0..4).map(|_| CaseId::new_v7()).collect();
    for case_id in &cases {
        batched
            .commit(&Head::new_case(*case_id, subject(case_id)), &filed(*case_id), provenance())
            .await
            .expect("filed");
    }

    // Sixteen writers, half on each store, each adding ten notes to the
    // four cases: load, append after the head, load again on a conflict.
    let mut writers = Vec::new();
    for writer in 0..16 {
        let store = if writer % 2 == 0 { batched.clone() } else { single.clone() };
        let cases = cases.clone();
        writers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut conflicts = 0;
            for n in 0..10 {
                let case_id = cases[(writer + n) % cases.len()];
                loop {
                    let loaded = store.load(&case_id).await.expect("load").expect("filed");
                    let provenance = provenance();
                    let event_id = provenance.event_id;
                    match store.commit(&loaded.head, &note(&format!("writer {writer} note {n}")), provenance).await {
                        Ok(Committed::Stored(_)) => {
                            mine.push((case_id, event_id));
                            break;
                        }
                        Err(CommitError::Conflict) => conflicts += 1,
                        other => panic!("writer {writer}: {other:?}"),
                    }
                }
            }
            (mine, conflicts)
        }));
    }
    let mut acknowledged = Vec::new();
    let mut conflicts = 0;
    for writer in writers {
        let (mine, lost_races) = writer.await.expect("writer");
        acknowledged.extend(mine);
        conflicts += lost_races;
    }
    assert_eq!(acknowledged.len(), 160);
    assert!(conflicts > 0, "the writers did race");
    let log = batched.log();
    let mut stored = 0;
    for case_id in &cases {
        let ids = history_ids(log, case_id).await;
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "no event twice");
        let expected: Vec<Uuid> = acknowledged.iter().filter(|(c, _)| c == case_id).map(|(_, id)| *id).collect();
        for id in &expected {
            assert!(ids.contains(id), "an acknowledged note is in its case");
        }
        assert_eq!(ids.len(), expected.len() + 1, "the filing and every acknowledged note, nothing else");
        stored += ids.len();
    }
    assert_eq!(stored, 164);
    let mut in_batches = 0;
    for sequence in 1..=log.last_sequence().await.expect("end") {
        in_batches += usize::from(batch_id(log, sequence).await.is_some());
    }
    assert!(in_batches > 0, "some notes went in batches, beside the single appends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filing_in_a_batch_whose_case_id_exists_in_another_township_is_the_only_one_refused() {
    let nats = NatsServer::start();
    let store = store_on(nats.client().await, gather(3)).await;
    let elsewhere = CaseId::new_v7();
    let other_township = gridcase_tests::act::subject("990102101001001", elsewhere);
    let single = store_on(nats.client().await, GroupCommit::default()).await;
    // Filed alone (the single path) under another township: its id is taken there.
    single
        .commit(&Head::new_case(elsewhere, other_township.clone()), &filed(elsewhere), provenance())
        .await
        .expect("filed");
    let taken_again =
        single.commit(&Head::new_case(elsewhere, subject(&elsewhere)), &filed(elsewhere), provenance()).await;
    assert!(matches!(taken_again, Err(CommitError::Conflict)), "alone: {taken_again:?}");

    let cases = [CaseId::new_v7(), elsewhere, CaseId::new_v7()];
    let filings = cases.iter().map(|case_id| {
        let store = &store;
        async move { store.commit(&Head::new_case(*case_id, subject(case_id)), &filed(*case_id), provenance()).await }
    });
    let answers = join_all(filings).await;
    assert!(matches!(answers[1], Err(CommitError::Conflict)), "in a batch: {:?}", answers[1]);
    for index in [0, 2] {
        let positioned = stored(answers[index].as_ref().expect("the other filings are stored"));
        assert_eq!(history_ids(store.log(), &cases[index]).await, vec![positioned.event.event_id]);
    }
    assert!(store.log().history(&subject(&elsewhere)).await.expect("history").is_empty());
    assert_eq!(store.log().history(&other_township).await.expect("history").len(), 1);
}
