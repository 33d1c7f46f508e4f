//! Resumable uploads against a real nats-server and intake: through a
//! connection cut every megabyte (with `gridctl upload`, as a worker's
//! client would), across a restart of intake, with parts that do not fit,
//! files that lie, quotas, and expiry.

use std::sync::Arc;

use gridcase_domain::CaseId;
use gridcase_process::{ManualTimeSource, SystemTimeSource};
use gridcase_proto::cases::v1 as cases;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as api;
use gridcase_tests::fixtures::{as_worker, filing, intake_client, jpeg, worker};
use gridcase_tests::gate::Gate;
use gridcase_tests::{Identity, NatsServer, TestIntake, eventually};
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic_types::StatusExt;

fn start_request(content: &[u8], content_type: &str) -> api::StartUploadRequest {
    api::StartUploadRequest {
        content_type: content_type.into(),
        size: content.len() as u64,
        sha256: hex::encode(Sha256::digest(content)),
        file_name: "photo.jpg".into(),
    }
}

fn part(upload_id: &str, offset: u64, content: &[u8]) -> api::PutUploadPartRequest {
    api::PutUploadPartRequest { upload_id: upload_id.into(), offset, content: content.to_vec() }
}

/// The bytes of an attachment as a case's reader gets them (CaseService.GetAttachment).
async fn attachment_of_case(endpoint: String, case_id: CaseId, sha256: &str) -> Vec<u8> {
    use futures::StreamExt;
    let mut client = gridcase_tests::lifecycle::client(endpoint).await;
    let mut parts = client
        .get_attachment(as_worker(cases::GetAttachmentRequest {
            case_id: case_id.to_string(),
            sha256: sha256.into(),
            ..Default::default()
        }))
        .await
        .expect("the attachment of the case")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(part) = parts.next().await {
        if let Some(cases::attachment_part::Part::Chunk(chunk)) = part.expect("a part").part {
            bytes.extend_from_slice(&chunk);
        }
    }
    bytes
}

/// File a case naming `attachment`; its id.
async fn file_with(endpoint: String, attachment: common::AttachmentRef) -> CaseId {
    let case_id = CaseId::new_v7();
    let request = api::FileCaseRequest { attachments: vec![attachment], ..filing(case_id) };
    intake_client(endpoint).await.file_case(as_worker(request)).await.expect("filed with the upload");
    case_id
}

#[tokio::test]
async fn a_ten_megabyte_photo_goes_up_through_a_connection_cut_every_megabyte_and_arrives_whole() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let gate = Gate::start(intake.addr).await;
    gate.cut_every(1_000_000);

    let size = 10_000_000;
    let photo = jpeg(size);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lamp.jpg");
    std::fs::write(&path, &photo).unwrap();

    let output = tokio::process::Command::new(gridcase_tests::service_binaries().join("gridctl"))
        .args(["--json", "--addr", &gate.http_url(), "upload"])
        .arg(&path)
        .env("GRIDCTL_TOKEN", worker().token())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "gridctl upload: {}", String::from_utf8_lossy(&output.stderr));
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(line["sha256"], hex::encode(Sha256::digest(&photo)));
    assert_eq!(line["size"], size as u64);

    let sent = gate.client_bytes();
    let cuts = gate.budget_cuts();
    println!(
        "10 MB through a gate cutting every 1 MB: {cuts} cuts, {} reconnects, {sent} bytes sent ({:.3} × the file), {} bytes of parts",
        line["reconnects"],
        sent as f64 / size as f64,
        line["part_bytes_sent"]
    );
    assert!(cuts >= 9, "the gate cut only {cuts} connections: the upload did not go through breaks");
    assert!(line["reconnects"].as_u64().unwrap() >= 9, "{line}");
    assert!(sent as f64 <= 1.3 * size as f64, "{sent} bytes went through the gate for a file of {size}");

    // Named by a filing, the case's readers get the original, byte for byte.
    let attachment = common::AttachmentRef {
        sha256: line["sha256"].as_str().unwrap().into(),
        size: size as u64,
        content_type: "image/jpeg".into(),
    };
    let case_id = file_with(intake.endpoint(), attachment).await;
    let stored = attachment_of_case(intake.endpoint(), case_id, line["sha256"].as_str().unwrap()).await;
    assert!(stored == photo, "the stored object differs from the original ({} vs {} bytes)", stored.len(), size);
}

#[tokio::test]
async fn parts_acknowledged_before_intake_restarts_are_kept_and_the_upload_goes_on() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let photo = jpeg(2 * 1024 * 1024 + 12_345);
    let piece = 256 * 1024;
    let mut client = intake_client(intake.endpoint()).await;
    let status = client.start_upload(as_worker(start_request(&photo, "image/jpeg"))).await.unwrap().into_inner();
    assert_eq!((status.received, status.size), (0, photo.len() as u64));
    for offset in [0, piece, 2 * piece] {
        let after = client
            .put_upload_part(as_worker(part(&status.upload_id, offset as u64, &photo[offset..offset + piece])))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(after.received, (offset + piece) as u64);
    }

    intake.stop().await.expect("clean stop");
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = intake_client(intake.endpoint()).await;
    let resumed = client
        .get_upload(as_worker(api::GetUploadRequest { upload_id: status.upload_id.clone() }))
        .await
        .expect("the upload survived the restart")
        .into_inner();
    assert_eq!(resumed.received, 3 * piece as u64, "the acknowledged parts are kept");
    // Opening the same file again (an app that lost its state) finds the same upload.
    let again = client.start_upload(as_worker(start_request(&photo, "image/jpeg"))).await.unwrap().into_inner();
    assert_eq!((again.upload_id.as_str(), again.received), (status.upload_id.as_str(), 3 * piece as u64));

    let mut offset = resumed.received as usize;
    let mut last = resumed;
    while offset < photo.len() {
        let end = (offset + piece).min(photo.len());
        last = client
            .put_upload_part(as_worker(part(&status.upload_id, offset as u64, &photo[offset..end])))
            .await
            .unwrap()
            .into_inner();
        offset = end;
    }
    let attachment = last.attachment.expect("complete: an attachment");
    assert_eq!(attachment.sha256, hex::encode(Sha256::digest(&photo)));
    let case_id = file_with(intake.endpoint(), attachment.clone()).await;
    assert!(attachment_of_case(intake.endpoint(), case_id, &attachment.sha256).await == photo);

    // The parts are gone once complete; the upload answers complete.
    let js = async_nats::jetstream::new(nats.client().await);
    let mut stream = js.get_stream("GRIDCASE_UPLOADS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 2, "two declarations (open, complete) and no parts: {:?}", info.state);
    let done = client.get_upload(as_worker(api::GetUploadRequest { upload_id: status.upload_id })).await.unwrap();
    assert_eq!(done.into_inner().attachment.map(|a| a.sha256), Some(attachment.sha256));
}

fn received_in(status: &tonic::Status) -> Option<u64> {
    status.get_details_error_info()?.metadata.get("received")?.parse().ok()
}

#[tokio::test]
async fn parts_that_do_not_fit_files_that_lie_and_strangers_are_refused_precisely() {
    let nats = NatsServer::start();
    let mut config = TestIntake::config(&nats.url());
    config.upload_open_per_person = 2;
    let intake = TestIntake::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let mut client = intake_client(intake.endpoint()).await;
    let photo = jpeg(100_000);
    let status = client.start_upload(as_worker(start_request(&photo, "image/jpeg"))).await.unwrap().into_inner();
    let id = status.upload_id.clone();
    client.put_upload_part(as_worker(part(&id, 0, &photo[..40_000]))).await.unwrap();

    // A gap: refused with the offset the server has.
    let gap = client.put_upload_part(as_worker(part(&id, 50_000, &photo[50_000..60_000]))).await.unwrap_err();
    assert_eq!(gap.code(), Code::FailedPrecondition, "{gap:?}");
    assert_eq!(received_in(&gap), Some(40_000), "{gap:?}");
    assert_eq!(gap.get_details_bad_request().unwrap().field_violations[0].field, "offset");
    // Beyond the declared size.
    let beyond = client.put_upload_part(as_worker(part(&id, 40_000, &vec![0; 60_001]))).await.unwrap_err();
    assert_eq!((beyond.code(), received_in(&beyond)), (Code::OutOfRange, Some(40_000)), "{beyond:?}");
    // A part sent twice is harmless; one overlapping the end keeps its tail.
    let twice = client.put_upload_part(as_worker(part(&id, 0, &photo[..40_000]))).await.unwrap().into_inner();
    assert_eq!(twice.received, 40_000);
    let overlap = client.put_upload_part(as_worker(part(&id, 30_000, &photo[30_000..70_000]))).await.unwrap();
    assert_eq!(overlap.into_inner().received, 70_000);
    // Another worker does not see it.
    let stranger = Identity::new("gw-0077", "grid_worker", "cc-990101001", "990101001001001");
    let hidden =
        client.get_upload(stranger.request(api::GetUploadRequest { upload_id: id.clone() })).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let finished = client.put_upload_part(as_worker(part(&id, 70_000, &photo[70_000..]))).await.unwrap().into_inner();
    assert_eq!(finished.attachment.map(|a| a.size), Some(100_000));

    // Content already stored: complete at once, nothing to send.
    let known = client.start_upload(stranger.request(start_request(&photo, "image/jpeg"))).await.unwrap().into_inner();
    assert_eq!((known.received, known.attachment.is_some()), (100_000, true));

    // Bad declarations: every field named at once.
    let bad = client
        .start_upload(as_worker(api::StartUploadRequest {
            content_type: "application/pdf".into(),
            size: 0,
            sha256: "xyz".into(),
            file_name: "a\u{7}b".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields: Vec<String> =
        bad.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
    assert_eq!(fields, ["content_type", "size", "sha256", "file_name"]);
    let too_large = client
        .start_upload(as_worker(api::StartUploadRequest {
            size: 11 * 1024 * 1024,
            ..start_request(&photo, "image/jpeg")
        }))
        .await
        .unwrap_err();
    assert_eq!(too_large.get_details_bad_request().unwrap().field_violations[0].reason, "TOO_LARGE");

    // A file that is not what it says: refused at its first bytes.
    let png_bytes = gridcase_tests::fixtures::photo_png(40, 30);
    let liar = client.start_upload(as_worker(start_request(&png_bytes, "image/jpeg"))).await.unwrap().into_inner();
    let lie = client.put_upload_part(as_worker(part(&liar.upload_id, 0, &png_bytes))).await.unwrap_err();
    assert_eq!(lie.code(), Code::InvalidArgument);
    assert_eq!(lie.get_details_bad_request().unwrap().field_violations[0].reason, "CONTENT_MISMATCH");

    // Bytes that are not the declared digest: refused at the end and discarded.
    let other = jpeg(30_000);
    let mut declared = start_request(&other, "image/jpeg");
    declared.sha256 = hex::encode(Sha256::digest(b"something else"));
    let wrong = client.start_upload(as_worker(declared)).await.unwrap().into_inner();
    let mismatch = client.put_upload_part(as_worker(part(&wrong.upload_id, 0, &other))).await.unwrap_err();
    assert_eq!(mismatch.get_details_bad_request().unwrap().field_violations[0].field, "sha256", "{mismatch:?}");
    let gone = client.get_upload(as_worker(api::GetUploadRequest { upload_id: wrong.upload_id })).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // Open uploads per person: the liar's upload is open; one more fits, then no more.
    client.start_upload(as_worker(start_request(&jpeg(5_000), "image/jpeg"))).await.unwrap();
    let quota = client.start_upload(as_worker(start_request(&jpeg(6_000), "image/jpeg"))).await.unwrap_err();
    assert_eq!(quota.code(), Code::ResourceExhausted, "{quota:?}");
    let failure = quota.get_details_quota_failure().expect("a QuotaFailure");
    assert_eq!(failure.violations[0].subject, "open_per_person");
    // Cancelling one makes room.
    client.cancel_upload(as_worker(api::GetUploadRequest { upload_id: liar.upload_id })).await.unwrap();
    client.start_upload(as_worker(start_request(&jpeg(6_000), "image/jpeg"))).await.expect("room again");
}

#[tokio::test]
async fn expired_uploads_are_purged_on_schedule_and_open_ones_kept() {
    let nats = NatsServer::start();
    let t0: jiff::Timestamp = "2026-12-07T01:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualTimeSource::new(t0));
    let mut config = TestIntake::config(&nats.url());
    config.upload_ttl = std::time::Duration::from_secs(3600);
    config.upload_sweep_interval = std::time::Duration::from_millis(100);
    let intake = TestIntake::spawn_with(config, clock.clone()).await;
    let mut client = intake_client(intake.endpoint()).await;

    let early = jpeg(50_000);
    let a = client.start_upload(as_worker(start_request(&early, "image/jpeg"))).await.unwrap().into_inner();
    client.put_upload_part(as_worker(part(&a.upload_id, 0, &early[..10_000]))).await.unwrap();
    clock.advance(jiff::SignedDuration::from_mins(50));
    let late = jpeg(60_000);
    let b = client.start_upload(as_worker(start_request(&late, "image/jpeg"))).await.unwrap().into_inner();
    client.put_upload_part(as_worker(part(&b.upload_id, 0, &late[..10_000]))).await.unwrap();

    let js = async_nats::jetstream::new(nats.client().await);
    let stream = js.get_stream("GRIDCASE_UPLOADS").await.unwrap();
    let messages = |stream: async_nats::jetstream::stream::Stream| async move {
        let mut stream = stream;
        stream.info().await.unwrap().state.messages
    };
    assert_eq!(messages(stream.clone()).await, 4, "two declarations, two parts");
    clock.advance(jiff::SignedDuration::from_mins(20));
    eventually("the expired upload is purged", || {
        let stream = stream.clone();
        async move { messages(stream).await == 2 }
    })
    .await;
    let expired = client.get_upload(as_worker(api::GetUploadRequest { upload_id: a.upload_id })).await.unwrap_err();
    assert_eq!(expired.code(), Code::NotFound);
    let kept = client.get_upload(as_worker(api::GetUploadRequest { upload_id: b.upload_id })).await.unwrap();
    assert_eq!(kept.into_inner().received, 10_000);
}

#[tokio::test]
async fn an_upload_that_would_take_the_store_past_its_total_is_refused_when_it_opens() {
    let nats = NatsServer::start();
    let mut config = TestIntake::config(&nats.url());
    config.upload_total_bytes = 200_000;
    let intake = TestIntake::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let mut client = intake_client(intake.endpoint()).await;
    let first = jpeg(160_000);
    let status = client.start_upload(as_worker(start_request(&first, "image/jpeg"))).await.unwrap().into_inner();
    client.put_upload_part(as_worker(part(&status.upload_id, 0, &first[..150_000]))).await.unwrap();
    let other = Identity::new("gw-0077", "grid_worker", "cc-990101001", "990101001001001");
    let refused = client.start_upload(other.request(start_request(&jpeg(100_000), "image/jpeg"))).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(refused.get_details_quota_failure().unwrap().violations[0].subject, "total_bytes");
    // What fits is let in.
    client.start_upload(other.request(start_request(&jpeg(20_000), "image/jpeg"))).await.expect("it fits");
}
