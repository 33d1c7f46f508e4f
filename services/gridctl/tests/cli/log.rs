//! `gridctl log copy`: a deployment's history moved from one NATS to
//! another (a single node to a cluster), message for message, resumable,
//! refusing a destination that is not a copy of the source.

use std::process::Command;

use gridcase_envelope::CaseSubject;
use gridcase_eventlog::{AttachmentStore, EventLog, StreamSettings, attachments::DEFAULT_STREAM};
use gridcase_tests::{NatsServer, given};

const GRID: &str = "990101001001001";

fn copy(from: &NatsServer, to: &NatsServer) -> Result<serde_json::Value, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_gridctl"))
        .args(["--json", "log", "copy", "--from-nats-url", &from.url(), "--nats-url", &to.url()])
        .arg("--nats-credentials")
        .arg(to.credentials("intake"))
        .output()
        .expect("run gridctl");
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("json"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

async fn file_cases(log: &EventLog, count: usize) {
    for _ in 0..count {
        given(log, GRID)
            .filed("0204")
            .await
            .by_centre(gridcase_domain::Command::Register {
                tier: gridcase_domain::Tier::Normal,
                note: None,
                policy: None,
            })
            .await;
    }
}

/// Two messages of a new case as one atomic batch, as the case store sends
/// a chain (JetStream keeps the batch headers with each message).
async fn file_as_a_batch(nats: &NatsServer) {
    use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE};
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let grid = gridcase_domain::GridCode::parse(GRID).unwrap();
    let subject = CaseSubject::for_grid(&grid, &gridcase_domain::CaseId::new_v7()).to_string();
    let batch = uuid::Uuid::new_v4().simple().to_string();
    let headers = |number: &str| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(NATS_BATCH_ID, batch.as_str());
        headers.insert(NATS_BATCH_SEQUENCE, number);
        headers.insert("ce-type", "cn.gridcase.case.test.v1");
        headers
    };
    client.publish_with_headers(subject.clone(), headers("1"), "{\"n\":1}".into()).await.unwrap();
    let mut last = headers("2");
    last.insert(NATS_BATCH_COMMIT, "1");
    let publish = async_nats::jetstream::message::PublishMessage::build().payload("{\"n\":2}".into()).headers(last);
    js.send_publish(subject, publish).await.unwrap().await.expect("the batch is stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_copy_moves_the_history_message_for_message_and_resumes() {
    let old = NatsServer::start();
    let old_log = EventLog::open(old.client().await, StreamSettings::default()).await.unwrap();
    file_cases(&old_log, 5).await;
    file_as_a_batch(&old).await;
    // A photo of this version (in the attachment stream, in chunks), and
    // one an older version kept in its object-store bucket.
    let photo = gridcase_tests::fixtures::jpeg(700_000);
    AttachmentStore::open(old_log.context(), DEFAULT_STREAM, 1).await.unwrap().put(&photo).await.unwrap();
    let old_photo = gridcase_tests::fixtures::jpeg(30_000);
    let legacy = old_log
        .context()
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: "gridcase-attachments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    legacy.put(sha256_hex(&old_photo).as_str(), &mut old_photo.as_slice()).await.unwrap();

    // The destination has the shipped users; the copy runs as intake.
    let new = NatsServer::start_secured();
    let copied = copy(&old, &new).expect("copied");
    assert_eq!(copied["copied"], 12);
    assert_eq!(copied["already_there"], 0);
    assert_eq!(copied["attachments"], 2);

    let new_log = EventLog::open(new.client().await, StreamSettings::default()).await.unwrap();
    let (old_stream, new_stream) = (
        old_log.context().get_stream("GRIDCASE_CASES").await.unwrap(),
        new_log.context().get_stream("GRIDCASE_CASES").await.unwrap(),
    );
    for sequence in 1..=12 {
        let (a, b) =
            (old_stream.get_raw_message(sequence).await.unwrap(), new_stream.get_raw_message(sequence).await.unwrap());
        assert_eq!((&a.subject, &a.payload), (&b.subject, &b.payload), "message {sequence}");
        // The same headers, JetStream's publish controls aside (a batch's,
        // the writer's expectations), and the copy's own guard: the
        // position it had to land at.
        let guard = b.headers.get("Nats-Expected-Last-Sequence").map(|v| v.as_str().to_owned());
        assert_eq!(guard, Some((sequence - 1).to_string()), "message {sequence} was appended at a checked position");
        let ours_batch = b.headers.get(async_nats::header::NATS_BATCH_ID);
        assert!(ours_batch.is_none(), "message {sequence}: the copy opened no batch");
        let not_controls = |headers: &async_nats::HeaderMap| {
            let mut kept: Vec<(String, Vec<String>)> = headers
                .iter()
                .filter(|(name, _)| !name.to_string().starts_with("Nats-"))
                .map(|(name, values)| (name.to_string(), values.iter().map(|v| v.to_string()).collect()))
                .collect();
            kept.sort();
            kept
        };
        let (theirs, ours) = (not_controls(&a.headers), not_controls(&b.headers));
        assert!(!theirs.is_empty(), "message {sequence} has headers of its own");
        assert_eq!(theirs, ours, "message {sequence}: headers");
    }
    let subject = CaseSubject::from_subject(old_stream.get_raw_message(1).await.unwrap().subject.as_str()).unwrap();
    let history = new_log.history(&subject).await.unwrap();
    assert_eq!(history.len(), 2);
    gridcase_envelope::verify_history(&history).expect("the chain verifies on the copy");
    let attachments = AttachmentStore::open(new_log.context(), DEFAULT_STREAM, 1).await.unwrap();
    for (photo, which) in [(&photo, "the photo"), (&old_photo, "the photo of the older version")] {
        let digest = gridcase_domain::Sha256Digest::parse(&sha256_hex(photo)).unwrap();
        assert_eq!(attachments.get(&digest).await.unwrap().as_ref(), Some(photo), "{which} came along");
    }

    // More history on the old node (the services were still running): the
    // copy resumes where it stopped, and a second run changes nothing.
    file_cases(&old_log, 2).await;
    let resumed = copy(&old, &new).expect("resumed");
    assert_eq!((resumed["copied"].as_u64(), resumed["already_there"].as_u64()), (Some(4), Some(12)));
    let again = copy(&old, &new).expect("nothing to do");
    assert_eq!((again["copied"].as_u64(), again["attachments"].as_u64()), (Some(0), Some(0)));

    // A destination that is not a copy of this source is refused.
    let other = NatsServer::start();
    let other_log = EventLog::open(other.client().await, StreamSettings::default()).await.unwrap();
    file_cases(&other_log, 8).await;
    let refused = copy(&other, &new).expect_err("a different history");
    assert!(refused.contains("not a copy"), "{refused}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()[..64].to_owned()
}
