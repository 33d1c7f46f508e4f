//! A disk that acknowledged and then lost the tail of the log (issue 30):
//! the store file of a real nats-server is cut short while the server is
//! down, as a machine that lost its page cache would leave it. The server
//! recovers without the last event and the next append takes its sequence:
//! the stream looks whole. gridcase must say so, naming the case, and must
//! not fold the rewritten history into the read models as if nothing
//! happened.

use std::sync::Arc;
use std::time::Duration;

use gridcase_process::ManualTimeSource;
use gridcase_projection::{audit, store};
use gridcase_tests::{Backends, TestProjection, eventually, given, serving, stream_end};
use jiff::Timestamp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_disk_lost_is_reported_by_case_and_nothing_is_projected_on_the_rewritten_history() {
    let Backends { mut nats, db, log } = Backends::start().await;
    let now: Timestamp = "2026-05-06T01:00:00Z".parse().unwrap();
    let kept = given(&log, "990101001001001").filed("0101").await.registered().await;
    let lost = given(&log, "990101001002001").filed("0201").await;
    let lost_sequence = stream_end(&nats).await;

    let mut config = TestProjection::config(&nats.url(), &db.url);
    config.history_audit_interval = Duration::from_millis(200);
    config.history_audit_confirm = Duration::from_millis(500);
    let projection = TestProjection::spawn_with(config, Arc::new(ManualTimeSource::new(now))).await;
    projection.caught_up_to(lost_sequence).await;
    assert_eq!(
        audit::audit_once(&projection.pool, &log, 100).await.unwrap(),
        Some(vec![]),
        "a whole log: nothing found"
    );
    assert!(serving(&projection.endpoint(), "").await);

    // The disk loses the tail of the newest block: the last record, torn.
    nats.kill();
    let blocks = gridcase_chaos::store::blocks(&nats.store_dir(), "$G", "GRIDCASE_CASES").unwrap();
    let (_, newest) = blocks.last().expect("a message block");
    let size = std::fs::metadata(newest).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(newest).unwrap().set_len(size - 10).unwrap();
    nats.restart();
    eventually("the server back without the torn event", || async {
        log.last_sequence().await.is_ok_and(|end| end == lost_sequence - 1)
    })
    .await;

    // Another case is filed: it takes the lost event's sequence.
    let newcomer = given(&log, "990101101001001").filed("0301").await;
    assert_eq!(stream_end(&nats).await, lost_sequence, "the stream looks whole again");

    // The audit names the lost case, the sequence and what is there now.
    let findings = audit::audit_once(&projection.pool, &log, 100).await.unwrap().expect("a single node leads");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].event.case_id, *lost.id.as_uuid());
    assert_eq!(findings[0].event.sequence, lost_sequence);
    assert_eq!(findings[0].now.as_ref().map(|(case, version, _)| (*case, *version)), Some((*newcomer.id.as_uuid(), 1)));
    assert!(findings[0].to_string().contains(&lost.id.to_string()), "{}", findings[0]);

    // The running service found it too: it says NOT_SERVING and projects
    // nothing on top (the newcomer never reaches the read models).
    eventually("the projection to report NOT_SERVING", || async { !serving(&projection.endpoint(), "").await }).await;
    let (position, _) = store::position(&projection.pool).await.unwrap();
    assert_eq!(position, lost_sequence, "the position stays where the read models were built");
    assert_eq!(case_rows(&projection.pool, &newcomer.id).await, 0, "nothing of the rewritten history is projected");
    assert_eq!(case_rows(&projection.pool, &kept.id).await, 1, "queries still answer from what was projected");
    projection.stop().await.unwrap();
}

async fn case_rows(pool: &sqlx::PgPool, case_id: &gridcase_domain::CaseId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM cases WHERE case_id = $1")
        .bind(case_id.as_uuid())
        .fetch_one(pool)
        .await
        .unwrap()
}
