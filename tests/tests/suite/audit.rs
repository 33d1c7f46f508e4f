//! Audited histories and the live watch, as independent clients check them:
//! hashes verified over the values as stored (also for events another
//! writer appended), read-model rows missing or altered told apart, events
//! of unknown types shown rather than failing, a rebuild on an empty
//! database, and a watch that shows exactly what the log stores.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage as Publish;
use gridcase_domain::CaseId;
use gridcase_envelope::StoredEvent;
use gridcase_process::ManualTimeSource;
use gridcase_projection::{rebuild, store};
use gridcase_proto::cases::v1 as cases_api;
use gridcase_proto::query::v1 as api;
use gridcase_tests::fixtures::{as_worker, filing, intake_client};
use gridcase_tests::lifecycle::{self, centre, request};
use gridcase_tests::{
    Backends, Identity, QueryClient, TestIntake, TestProjection, act, append_foreign, given, given_case, query_client,
    stream_end,
};
use jiff::Timestamp;
use serde_json::json;
use sha2::{Digest, Sha256};

const GRID: &str = "990101001001001";

async fn county_query(projection: &TestProjection) -> QueryClient {
    query_client(projection.endpoint(), &Identity::new("audit-01", "county_auditor", "county-990101", "990101")).await
}

/// The documented recipe, written independently of gridcase's code: every
/// field but `hash`, keys sorted (serde_json's map is ordered by key), no
/// whitespace, SHA-256 in lowercase hex.
fn recipe_hash(envelope: &serde_json::Value) -> String {
    let mut without = envelope.clone();
    without.as_object_mut().unwrap().remove("hash");
    hex::encode(Sha256::digest(serde_json::to_string(&without).unwrap().as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_are_verified_over_the_stored_values_and_a_missing_row_is_told_from_an_altered_one() {
    let Backends { nats, db, log } = Backends::start().await;
    let intake = TestIntake::spawn(&nats.url()).await;
    let case_id = CaseId::new_v7();
    intake_client(intake.endpoint()).await.file_case(as_worker(filing(case_id))).await.unwrap();
    let subject = act::subject(GRID, case_id);
    let filed = log.last(&subject).await.unwrap().unwrap();

    // Another writer adds a note at 22.910 seconds past the minute.
    let mut note = json!({
        "envelope_version": 1,
        "event_id": uuid::Uuid::now_v7(),
        "case_id": case_id.to_string(),
        "type": "progress_added",
        "schema_version": 1,
        "case_version": 2,
        "occurred_at": "2026-12-01T01:02:22.910Z",
        "actor": { "person": "cc-op-7", "role": "COMMAND_CENTRE", "organisation": "cc-990101001" },
        "payload": { "note": "已电话联系", "attachments": [] },
        "prev_hash": filed.event.hash,
    });
    note["hash"] = json!(recipe_hash(&note));
    let note_sequence =
        append_foreign(&nats, &subject, &serde_json::to_vec(&note).unwrap(), filed.stream_sequence).await;
    // Gridcase's own re-rendering of that time differs ("22.91Z"): a hash
    // over it would not match.
    let parsed = StoredEvent::from_json_bytes(&serde_json::to_vec(&note).unwrap()).unwrap();
    assert_ne!(parsed.compute_hash(), parsed.hash, "the test must exercise a re-rendering that differs");

    // And an event of a type this version does not know.
    let mut future = note.clone();
    future["event_id"] = json!(uuid::Uuid::now_v7());
    future["type"] = json!("escalated_to_city");
    future["case_version"] = json!(3);
    future["payload"] = json!({ "city": "330100" });
    future["prev_hash"] = note["hash"].clone();
    future["hash"] = json!(recipe_hash(&future));
    append_foreign(&nats, &subject, &serde_json::to_vec(&future).unwrap(), note_sequence).await;
    // A third, gridcase's own, on top.
    given_case(&log, &subject).registered().await;

    // The intake's history: verified, the unknown event shown as it is.
    let mut cases = lifecycle::client(intake.endpoint()).await;
    let history = cases
        .get_history(request(&centre(), cases_api::GetHistoryRequest { case_id: case_id.to_string() }))
        .await
        .expect("a history with an unknown event type is shown, not INTERNAL")
        .into_inner();
    assert!(history.chain_verified, "{}", history.chain_problem);
    let kinds: Vec<&str> = history.events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(kinds, ["filed", "progress_added", "escalated_to_city", "registered"]);
    assert_eq!(history.events[1].reason, "已电话联系");
    assert!(history.events[2].payload_json.contains("330100"));
    let view = cases
        .get_case(request(&centre(), cases_api::GetCaseRequest { case_id: case_id.to_string() }))
        .await
        .unwrap()
        .into_inner();
    // The unknown event is passed over when folding (the case is REGISTERED),
    // but counts in the version: clients echo it as expected_version.
    assert_eq!(view.version, 4, "every stored event counts");
    assert_eq!(view.state, gridcase_proto::common::v1::CaseState::Registered as i32);

    // The query service's history: verified against the log too.
    let projection = TestProjection::spawn_with(
        TestProjection::config(&nats.url(), &db.url),
        Arc::new(ManualTimeSource::new(Timestamp::now())),
    )
    .await;
    projection.caught_up_to(stream_end(&nats).await).await;
    let mut query = county_query(&projection).await;
    let get = |query: &mut QueryClient| {
        let mut query = query.clone();
        async move {
            query
                .get_case_history(api::GetCaseHistoryRequest { case_id: case_id.to_string() })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let audited = get(&mut query).await;
    assert!(audited.chain_verified, "{}", audited.chain_problem);
    assert_eq!(audited.events.len(), 4);

    // A deleted audit row is missing, not altered; an edited one is altered.
    sqlx::query("DELETE FROM case_events WHERE case_id = $1 AND case_version = 2")
        .bind(case_id.as_uuid())
        .execute(&projection.pool)
        .await
        .unwrap();
    let audited = get(&mut query).await;
    assert!(!audited.chain_verified);
    assert!(
        audited.chain_problem.contains("event 2") && audited.chain_problem.contains("missing"),
        "{}",
        audited.chain_problem
    );
    sqlx::query("UPDATE case_events SET envelope = replace(envelope, 'escalated_to_city', 'nothing_happened') WHERE case_id = $1")
        .bind(case_id.as_uuid())
        .execute(&projection.pool)
        .await
        .unwrap();
    let audited = get(&mut query).await;
    assert!(audited.chain_problem.contains("missing"), "the first problem is still the missing row");
    projection.stop().await.unwrap();
    intake.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_works_on_a_database_without_read_models() {
    let Backends { nats, db, log } = Backends::start().await;
    let case_id = given(&log, GRID).filed("0201").await.id;
    // No projection ever ran: there is no "read" schema at all.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let schemas: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'read'").fetch_one(&pool).await.unwrap();
    assert_eq!(schemas, 0);

    let built = rebuild::build(&db.url, "read_rebuild", &log, &rebuild::Options::default()).await.unwrap();
    let position = built.position;
    built.pool.close().await;
    rebuild::swap(&db.url, "read_rebuild", "read").await.expect("a rebuild swaps in with no live schema");
    assert_eq!(position, stream_end(&nats).await);
    let live = store::connect(&db.url, "read", 1).await.unwrap();
    let rows = store::load_cases(&live, &[*case_id.as_uuid()]).await.unwrap();
    assert!(rows.contains_key(&case_id));
    assert_eq!(store::position(&live).await.unwrap().0, position);
}

async fn next_change(watch: &mut tonic::Streaming<api::CaseChange>) -> api::CaseChange {
    tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a change within 10 s")
        .expect("the watch goes on")
        .expect("a change")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_shows_exactly_what_the_log_stores_once_each_and_resumes_after_a_sequence() {
    let Backends { nats, db, log } = Backends::start().await;
    let intake = TestIntake::spawn(&nats.url()).await;
    let projection = TestProjection::spawn_with(
        TestProjection::config(&nats.url(), &db.url),
        Arc::new(ManualTimeSource::new(Timestamp::now())),
    )
    .await;
    let mut query = county_query(&projection).await;
    let watch_from = |after_sequence: u64| api::WatchCasesRequest { township: "990101001".into(), after_sequence };
    let mut watch = query.watch_cases(watch_from(0)).await.unwrap().into_inner();

    let case_id = CaseId::new_v7();
    intake_client(intake.endpoint()).await.file_case(as_worker(filing(case_id))).await.unwrap();
    let subject = act::subject(GRID, case_id);
    let filed = next_change(&mut watch).await;
    assert_eq!(
        (filed.case_id.as_str(), filed.event_type.as_str(), filed.case_version),
        (&*case_id.to_string(), "filed", 1)
    );
    assert_eq!(filed.stream_sequence, log.last(&subject).await.unwrap().unwrap().stream_sequence);

    // A write JetStream refuses (a stale expected sequence: a lost race)
    // reaches the subject's plain subscribers, but is no event of the log:
    // a well-formed "resolved" at version 2 that never happened.
    let mut phantom: serde_json::Value =
        serde_json::from_slice(&log.last(&subject).await.unwrap().unwrap().stored).unwrap();
    phantom["type"] = json!("resolved");
    phantom["case_version"] = json!(2);
    phantom["payload"] = json!({ "summary": "没有发生", "evidence": [] });
    let js = async_nats::jetstream::new(nats.client().await);
    let refused = js
        .send_publish(
            subject.to_string(),
            Publish::build().payload(serde_json::to_vec(&phantom).unwrap().into()).expected_last_subject_sequence(0),
        )
        .await
        .unwrap()
        .await;
    assert!(refused.is_err(), "JetStream refuses the stale expectation");

    // Five people add a note at once: each stored note appears once, in
    // version order; the losers' attempts never show.
    let mut cases = lifecycle::client(intake.endpoint()).await;
    let notes = (0..5).map(|i| {
        let mut cases = cases.clone();
        async move {
            let message = cases_api::AddProgressRequest {
                context: lifecycle::context(case_id),
                note: format!("第{i}条记录"),
                attachments: vec![],
            };
            cases.add_progress(request(&centre(), message)).await
        }
    });
    let stored = futures::future::join_all(notes).await.into_iter().filter(|r| r.is_ok()).count();
    let history = cases
        .get_history(request(&centre(), cases_api::GetHistoryRequest { case_id: case_id.to_string() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.events.len(), 1 + stored);
    let mut seen = Vec::new();
    for _ in 0..stored {
        let change = next_change(&mut watch).await;
        seen.push((change.case_version, change.event_type, change.stream_sequence));
    }
    let logged: Vec<_> =
        history.events[1..].iter().map(|e| (e.case_version, e.r#type.clone(), e.stream_sequence)).collect();
    assert_eq!(seen, logged, "exactly the stored events, once each, in order");
    let last_seen = seen.last().unwrap().2;

    // The screen disconnects; meanwhile the case is registered and a note added.
    drop(watch);
    given_case(&log, &subject).registered().await;
    let missed = log.last(&subject).await.unwrap().unwrap();
    // It reconnects after the last sequence it saw and misses nothing.
    let mut watch = query.watch_cases(watch_from(last_seen)).await.unwrap().into_inner();
    let change = next_change(&mut watch).await;
    assert_eq!(
        (change.event_type.as_str(), change.case_version, change.stream_sequence),
        ("registered", missed.event.case_version, missed.stream_sequence)
    );
    // A stopping service ends the open watch at once, telling the screen
    // to come back, rather than holding its stop for the grace period.
    let stopping = tokio::spawn(projection.stop());
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.expect("the watch ends");
    let status = ended.expect_err("the watch ends with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("watch again after the last stream_sequence"), "{status:?}");
    stopping.await.unwrap().unwrap();
    intake.stop().await.unwrap();
}
