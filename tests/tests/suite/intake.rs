//! The intake service end to end: a real nats-server per test, the service
//! in-process on a real socket, a generated gRPC client.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gridcase_domain::{CaseId, Event};
use gridcase_envelope::{CaseSubject, verify_chain};
use gridcase_eventlog::{EventLog, StreamSettings};
use gridcase_process::SystemTimeSource;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as api;
use gridcase_proto::intake::v1::upload_attachment_request::Part;
use gridcase_tests::fixtures::{as_worker, filing, intake_client, upload_parts, worker};
use gridcase_tests::identity;
use gridcase_tests::{Identity, NatsServer, TestIntake};
use tonic::Code;
use tonic_types::StatusExt;

async fn open_log(nats: &NatsServer) -> EventLog {
    EventLog::open(nats.client().await, StreamSettings::default()).await.expect("open log")
}

fn subject_of(request: &api::FileCaseRequest) -> CaseSubject {
    let grid = gridcase_domain::GridCode::parse(&request.grid_code).unwrap();
    CaseSubject::for_grid(&grid, &CaseId::parse(&request.case_id).unwrap())
}

#[tokio::test]
async fn a_filed_case_is_one_event_with_a_verified_chain_and_cloudevents_headers() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = intake_client(intake.endpoint()).await;

    let case_id = CaseId::new_v7();
    let mut request = filing(case_id);
    request.severity_hint = Some(common::Tier::Urgent as i32);
    request.resident_contact =
        Some(api::ResidentContact { name: "李四".into(), phone: "13912345678".into(), ..Default::default() });
    let receipt = client.file_case(as_worker(request.clone())).await.expect("filed").into_inner();
    assert_eq!(receipt.case_id, case_id.to_string());
    assert!(receipt.stream_sequence > 0);
    assert!(!receipt.replayed);

    let log = open_log(&nats).await;
    let history = log.history(&subject_of(&request)).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].stream_sequence, receipt.stream_sequence);
    let stored = &history[0].event;
    verify_chain(std::slice::from_ref(stored)).expect("chain verifies");
    assert_eq!((stored.event_type.as_str(), stored.case_version, stored.prev_hash.as_deref()), ("filed", 1, None));
    assert_eq!(stored.actor.person, worker().subject());
    assert_eq!(stored.actor.organisation, "cc-990101001");
    let Event::Filed(filed) = stored.decode().unwrap() else { panic!("not a filing") };
    assert_eq!(filed.case_id, case_id);
    assert_eq!(filed.grid.as_str(), "990101001001001");
    assert_eq!(filed.description.as_str(), "东门路12号路灯不亮");
    assert_eq!(filed.severity_hint, Some(gridcase_domain::Tier::Urgent));
    // The contact details are stored sealed under the case's key.
    let Some(gridcase_domain::Contact::Sealed(sealed)) = filed.contact else { panic!("contact details not sealed") };
    let keys = gridcase_eventlog::KeyStore::open(log.context(), "gridcase-keys", 1, Some(identity::master_keys()))
        .await
        .unwrap();
    let gridcase_eventlog::KeyState::Present(key) = keys.key(&case_id).await.unwrap() else { panic!("no key") };
    let opened = gridcase_envelope::sealing::open_contact(&key, &case_id, &sealed).unwrap();
    assert_eq!(opened.phone.unwrap().expose(), "13912345678");
    assert_eq!(opened.name.unwrap().expose(), "李四");
    assert_eq!((filed.location.latitude_e6, filed.location.longitude_e6), (30_274_100, 120_155_100));

    // A plain NATS client sees a CloudEvent in binary mode.
    let js = async_nats::jetstream::new(nats.client().await);
    let stream = js.get_stream("GRIDCASE_CASES").await.unwrap();
    let raw = stream.get_raw_message(receipt.stream_sequence).await.unwrap();
    let header = |name: &str| raw.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(header("ce-id"), Some(stored.event_id.to_string()));
    // Payload version 2: the filing's contact details are sealed.
    assert_eq!(header("ce-type").as_deref(), Some("cn.gridcase.case.filed.v2"));
    assert_eq!(header("ce-subject"), Some(case_id.to_string()));
    assert_eq!(header("ce-source").as_deref(), Some("urn:gridcase:cases"));
    assert_eq!(header("ce-time"), Some(stored.occurred_at.to_string()));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(raw.subject.as_str(), format!("gridcase.case.990101001.{case_id}"));
    let body: serde_json::Value = serde_json::from_slice(&raw.payload).unwrap();
    assert_eq!(body["hash"], stored.hash);
    let raw_text = String::from_utf8_lossy(&raw.payload);
    assert!(!raw_text.contains("13912345678") && !raw_text.contains("李四"), "clear text in the stream: {raw_text}");
}

#[tokio::test]
async fn a_retry_gets_the_original_receipt_also_after_a_restart_and_different_content_is_refused() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = intake_client(intake.endpoint()).await;
    let request = filing(CaseId::new_v7());
    let first = client.file_case(as_worker(request.clone())).await.unwrap().into_inner();

    let again = client.file_case(as_worker(request.clone())).await.unwrap().into_inner();
    assert_eq!((again.stream_sequence, again.replayed), (first.stream_sequence, true));
    assert_eq!(again.recorded_at, first.recorded_at);

    intake.stop().await.expect("clean stop");
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = intake_client(intake.endpoint()).await;
    let after_restart = client.file_case(as_worker(request.clone())).await.unwrap().into_inner();
    assert_eq!((after_restart.stream_sequence, after_restart.replayed), (first.stream_sequence, true));

    let mut changed = request.clone();
    changed.description = "其实是井盖丢了".into();
    let refused = client.file_case(as_worker(changed)).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert!(refused.message().contains(&request.case_id));

    let history = open_log(&nats).await.history(&subject_of(&request)).await.unwrap();
    assert_eq!(history.len(), 1, "retries wrote nothing");
}

type Mutation = fn(&mut api::FileCaseRequest);

/// Bad inputs, the field each must be reported on, and the rule.
fn bad_inputs() -> Vec<(&'static str, Mutation, &'static str, &'static str)> {
    vec![
        ("no case id", |r| r.case_id.clear(), "case_id", "REQUIRED"),
        ("case id not a uuid", |r| r.case_id = "case-1".into(), "case_id", "MALFORMED"),
        ("case id uuid v4", |r| r.case_id = "2f1c7a1e-7d6b-4c55-9a0e-3c1b2f1a9d10".into(), "case_id", "MALFORMED"),
        ("no grid", |r| r.grid_code.clear(), "grid_code", "REQUIRED"),
        ("grid with letters", |r| r.grid_code = "99010100100100X".into(), "grid_code", "MALFORMED"),
        ("village code, not a grid", |r| r.grid_code = "990101001001".into(), "grid_code", "MALFORMED"),
        ("grid not registered", |r| r.grid_code = "990101001001009".into(), "grid_code", "UNKNOWN_GRID"),
        ("no category", |r| r.category_code.clear(), "category_code", "REQUIRED"),
        ("category malformed", |r| r.category_code = "12".into(), "category_code", "MALFORMED"),
        ("category unknown", |r| r.category_code = "9999".into(), "category_code", "UNKNOWN_CATEGORY"),
        ("blank description", |r| r.description = "   ".into(), "description", "REQUIRED"),
        ("description too long", |r| r.description = "长".repeat(2001), "description", "TOO_LONG"),
        ("description with control bytes", |r| r.description = "a\u{0}b".into(), "description", "MALFORMED"),
        ("no location", |r| r.location = None, "location", "REQUIRED"),
        (
            "latitude out of range",
            |r| r.location.as_mut().unwrap().latitude = 91.0,
            "location.latitude",
            "OUT_OF_RANGE",
        ),
        (
            "longitude not a number",
            |r| r.location.as_mut().unwrap().longitude = f64::NAN,
            "location.longitude",
            "OUT_OF_RANGE",
        ),
        (
            "location in Paris",
            |r| {
                *r.location.as_mut().unwrap() =
                    common::Location { latitude: 48.85, longitude: 2.35, address: String::new() }
            },
            "location",
            "OUTSIDE_SERVICE_AREA",
        ),
        (
            "address too long",
            |r| r.location.as_mut().unwrap().address = "路".repeat(201),
            "location.address",
            "TOO_LONG",
        ),
        ("no reported_at", |r| r.reported_at = None, "reported_at", "REQUIRED"),
        ("reported_at invalid", |r| r.reported_at.as_mut().unwrap().nanos = -5, "reported_at", "MALFORMED"),
        ("reported_at tomorrow", |r| r.reported_at.as_mut().unwrap().seconds += 86_400, "reported_at", "IN_THE_FUTURE"),
        (
            "reported_at last year",
            |r| r.reported_at.as_mut().unwrap().seconds -= 366 * 86_400,
            "reported_at",
            "TOO_OLD",
        ),
        ("severity hint unspecified", |r| r.severity_hint = Some(0), "severity_hint", "UNKNOWN_VALUE"),
        ("severity hint unknown number", |r| r.severity_hint = Some(42), "severity_hint", "UNKNOWN_VALUE"),
        (
            "empty resident contact",
            |r| r.resident_contact = Some(api::ResidentContact::default()),
            "resident_contact",
            "EMPTY",
        ),
        (
            "bad resident phone",
            |r| {
                r.resident_contact =
                    Some(api::ResidentContact { name: String::new(), phone: "12345".into(), ..Default::default() })
            },
            "resident_contact.phone",
            "MALFORMED",
        ),
        (
            "resident name too long",
            |r| {
                r.resident_contact =
                    Some(api::ResidentContact { name: "名".repeat(51), phone: String::new(), ..Default::default() })
            },
            "resident_contact.name",
            "MALFORMED",
        ),
        (
            "attachment digest malformed",
            |r| r.attachments = vec![attachment("xyz", 10, "image/jpeg")],
            "attachments[0].sha256",
            "MALFORMED",
        ),
        (
            "attachment of size 0",
            |r| r.attachments = vec![attachment(&"a".repeat(64), 0, "image/jpeg")],
            "attachments[0].size",
            "OUT_OF_RANGE",
        ),
        (
            "attachment type not allowed",
            |r| r.attachments = vec![attachment(&"a".repeat(64), 10, "application/x-msdownload")],
            "attachments[0].content_type",
            "UNSUPPORTED",
        ),
        (
            "attachment listed twice",
            |r| {
                r.attachments =
                    vec![attachment(&"a".repeat(64), 10, "image/png"), attachment(&"a".repeat(64), 10, "image/png")]
            },
            "attachments[1].sha256",
            "DUPLICATE",
        ),
        (
            "too many attachments",
            |r| r.attachments = (0..10).map(|i| attachment(&format!("{i:064x}"), 10, "image/png")).collect(),
            "attachments",
            "TOO_MANY",
        ),
        (
            "attachment never uploaded",
            |r| r.attachments = vec![attachment(&"b".repeat(64), 10, "image/png")],
            "attachments[0].sha256",
            "NOT_UPLOADED",
        ),
    ]
}

fn attachment(sha256: &str, size: u64, content_type: &str) -> common::AttachmentRef {
    common::AttachmentRef { sha256: sha256.into(), size, content_type: content_type.into() }
}

#[tokio::test]
async fn every_bad_input_is_invalid_argument_naming_the_field_and_rule_and_writes_nothing() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = intake_client(intake.endpoint()).await;
    let cases = bad_inputs();
    assert!(cases.len() >= 20);
    for (name, mutate, field, rule) in cases {
        let mut request = filing(CaseId::new_v7());
        mutate(&mut request);
        let status = client.file_case(as_worker(request)).await.expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        let details = status.get_error_details();
        let violations =
            &details.bad_request().unwrap_or_else(|| panic!("{name}: no BadRequest detail")).field_violations;
        assert!(
            violations.iter().any(|v| v.field == field && v.reason == rule && !v.description.is_empty()),
            "{name}: expected {field} / {rule}, got {violations:?}"
        );
    }
    // Several problems at once are all reported.
    let mut request = filing(CaseId::new_v7());
    request.grid_code.clear();
    request.description.clear();
    let status = client.file_case(as_worker(request)).await.unwrap_err();
    let details = status.get_error_details();
    let fields: Vec<&str> = details.bad_request().unwrap().field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["grid_code", "description"]);

    assert_eq!(open_log(&nats).await.case_count().await.unwrap(), 0, "no rejected filing reached the log");
}

#[tokio::test]
async fn a_call_without_identity_is_unauthenticated() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = intake_client(intake.endpoint()).await;
    let status = client.file_case(tonic::Request::new(filing(CaseId::new_v7()))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("bearer token"), "{status:?}");
}

#[tokio::test]
async fn photos_upload_in_chunks_are_referenced_by_digest_and_oversize_ones_are_refused() {
    let nats = NatsServer::start();
    let mut config = TestIntake::config(&nats.url());
    config.max_attachment_bytes = 64 * 1024;
    let intake = TestIntake::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let mut client = intake_client(intake.endpoint()).await;

    let photo = gridcase_tests::fixtures::jpeg(40_000);
    let uploaded = client
        .upload_attachment(as_worker(tokio_stream::iter(upload_parts("image/jpeg", &photo, 16 * 1024))))
        .await
        .expect("upload")
        .into_inner()
        .attachment
        .unwrap();
    let expected_digest = {
        use sha2_free_digest::sha256_hex;
        sha256_hex(&photo)
    };
    assert_eq!(uploaded.sha256, expected_digest);
    assert_eq!(uploaded.size, photo.len() as u64);

    // Uploading the same bytes again is harmless.
    let again = client
        .upload_attachment(as_worker(tokio_stream::iter(upload_parts("image/jpeg", &photo, 7_000))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.attachment.unwrap().sha256, uploaded.sha256);

    let mut request = filing(CaseId::new_v7());
    request.attachments = vec![uploaded.clone()];
    client.file_case(as_worker(request.clone())).await.expect("filed with photo");
    let history = open_log(&nats).await.history(&subject_of(&request)).await.unwrap();
    let Event::Filed(filed) = history[0].event.decode().unwrap() else { panic!() };
    assert_eq!(filed.attachments[0].sha256.as_str(), uploaded.sha256);

    let mut wrong_size = filing(CaseId::new_v7());
    wrong_size.attachments = vec![common::AttachmentRef { size: 12, ..uploaded.clone() }];
    let status = client.file_case(as_worker(wrong_size)).await.unwrap_err();
    let details = status.get_error_details();
    assert_eq!(details.bad_request().unwrap().field_violations[0].reason, "SIZE_MISMATCH");

    let oversize = vec![7u8; 64 * 1024 + 1];
    let status = client
        .upload_attachment(as_worker(tokio_stream::iter(upload_parts("image/png", &oversize, 16 * 1024))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let violation = &details.bad_request().unwrap().field_violations[0];
    assert_eq!((violation.field.as_str(), violation.reason.as_str()), ("chunk", "TOO_LARGE"));

    let no_metadata = vec![api::UploadAttachmentRequest { part: Some(Part::Chunk(vec![1, 2, 3])) }];
    let status = client.upload_attachment(as_worker(tokio_stream::iter(no_metadata))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad_type = upload_parts("text/html", b"<html>", 10);
    let status = client.upload_attachment(as_worker(tokio_stream::iter(bad_type))).await.unwrap_err();
    assert_eq!(status.get_error_details().bad_request().unwrap().field_violations[0].field, "metadata.content_type");

    // The declared type must be what the bytes are: a JPEG declared PNG,
    // and bytes that are no image at all, are refused and nothing is stored.
    for (declared, content, found) in [
        ("image/png", photo.clone(), "image/jpeg"),
        ("image/png", vec![7u8; 5000], "an unknown type"),
        ("image/jpeg", b"\x89PNG\r\n\x1a\n0000IHDR".repeat(10), "image/png"),
    ] {
        let status = client
            .upload_attachment(as_worker(tokio_stream::iter(upload_parts(declared, &content, 1000))))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{declared}");
        let details = status.get_error_details();
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(
            (violation.field.as_str(), violation.reason.as_str()),
            ("metadata.content_type", "CONTENT_MISMATCH")
        );
        assert!(violation.description.contains(found), "{}", violation.description);
    }
}

/// SHA-256 for the test's own expectation, computed independently of the
/// service (through the `sha256sum` tool every Debian machine has).
mod sha2_free_digest {
    pub fn sha256_hex(bytes: &[u8]) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sha256sum");
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let output = child.wait_with_output().unwrap();
        String::from_utf8(output.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
    }
}

#[tokio::test]
async fn nats_going_down_gives_unavailable_loses_nothing_acknowledged_and_recovers() {
    let mut nats = NatsServer::start();
    let mut config = TestIntake::config(&nats.url());
    config.common.publish_timeout = Duration::from_millis(500);
    config.common.append_deadline = Duration::from_secs(1);
    let intake = TestIntake::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let mut client = intake_client(intake.endpoint()).await;

    let before = filing(CaseId::new_v7());
    let acknowledged = client.file_case(as_worker(before.clone())).await.unwrap().into_inner();

    nats.kill(); // a crash, not a clean shutdown
    let during = filing(CaseId::new_v7());
    let status = client.file_case(as_worker(during.clone())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!status.message().contains("nats"), "internal detail leaked: {}", status.message());

    nats.restart();
    // The device retries the same filing until the log is back.
    let mut receipt = None;
    for _ in 0..60 {
        match client.file_case(as_worker(during.clone())).await {
            Ok(response) => {
                receipt = Some(response.into_inner());
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "only UNAVAILABLE while recovering: {status:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let receipt = receipt.expect("filing succeeds once NATS is back");
    assert_eq!(receipt.case_id, during.case_id);

    let log = open_log(&nats).await;
    let kept = log.history(&subject_of(&before)).await.unwrap();
    assert_eq!(kept.len(), 1, "the acknowledged filing survived the crash");
    assert_eq!(kept[0].stream_sequence, acknowledged.stream_sequence);
    assert_eq!(log.history(&subject_of(&during)).await.unwrap().len(), 1, "the retried filing is stored once");
}

#[tokio::test]
async fn five_hundred_cases_filed_concurrently_twice_each_make_exactly_five_hundred_creation_events() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let client = intake_client(intake.endpoint()).await;
    let requests: Vec<api::FileCaseRequest> = (0..500).map(|_| filing(CaseId::new_v7())).collect();
    // Every case is sent twice at once, as a device retrying on a weak
    // connection would.
    let calls = requests.iter().chain(requests.iter()).cloned().map(|request| {
        let mut client = client.clone();
        async move { client.file_case(as_worker(request)).await.map(|r| r.into_inner()) }
    });
    let receipts: Vec<_> = futures::stream::iter(calls).buffer_unordered(100).collect().await;
    let mut per_case = std::collections::BTreeMap::<String, Vec<u64>>::new();
    for receipt in receipts {
        let receipt = receipt.expect("every call succeeds");
        per_case.entry(receipt.case_id).or_default().push(receipt.stream_sequence);
    }
    assert_eq!(per_case.len(), 500);
    assert!(per_case.values().all(|seqs| seqs.len() == 2 && seqs[0] == seqs[1]), "both calls got the same receipt");

    let log = open_log(&nats).await;
    assert_eq!(log.case_count().await.unwrap(), 500);
    let js = async_nats::jetstream::new(nats.client().await);
    let mut stream = js.get_stream("GRIDCASE_CASES").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 500, "one creation event per case");
    for request in requests.iter().step_by(50) {
        assert_eq!(log.history(&subject_of(request)).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn health_reports_serving_and_reflection_lists_the_service() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let channel = tonic::transport::Endpoint::from_shared(intake.endpoint()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    let serving = health
        .check(HealthCheckRequest { service: "gridcase.intake.v1.IntakeService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serving.status(), ServingStatus::Serving);

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"gridcase.intake.v1.IntakeService".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");

    // Older tools speak only v1alpha: it answers too, without a token.
    use tonic_reflection::pb::v1alpha;
    let mut old_reflection = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        old_reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list over v1alpha")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"gridcase.cases.v1.CaseService".to_owned()), "{names:?}");
}

#[tokio::test]
async fn shutdown_drains_a_call_in_flight_and_then_stops_accepting() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = intake_client(intake.endpoint()).await;
    let endpoint = intake.endpoint();

    // An upload is in flight: metadata and a first chunk sent, more to come.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let parts = upload_parts("image/jpeg", &gridcase_tests::fixtures::jpeg(3000), 1000);
    let mut parts = parts.into_iter();
    sender.send(parts.next().unwrap()).await.unwrap();
    sender.send(parts.next().unwrap()).await.unwrap();
    let call = tokio::spawn(async move {
        client.upload_attachment(as_worker(tokio_stream::wrappers::ReceiverStream::new(receiver))).await
    });
    // The call is on the wire: its stream has taken both parts.
    gridcase_tests::eventually("the call to take its first parts", || async { sender.capacity() == 4 }).await;

    let stopping = tokio::spawn(intake.stop());
    // Stopping has begun once the server takes no new connection.
    gridcase_tests::eventually("the server to stop accepting", || intake_client_fails(endpoint.clone())).await;
    assert!(!stopping.is_finished(), "the server waits for the call in flight");
    for part in parts {
        sender.send(part).await.unwrap();
    }
    drop(sender);
    let uploaded = call.await.unwrap().expect("the in-flight call completes");
    assert_eq!(uploaded.into_inner().attachment.unwrap().size, 3000);
    stopping.await.unwrap().expect("clean stop");
    assert!(intake_client_fails(endpoint).await, "no new connections after shutdown");
}

async fn intake_client_fails(endpoint: String) -> bool {
    gridcase_proto::intake::v1::intake_service_client::IntakeServiceClient::connect(endpoint).await.is_err()
}

#[tokio::test]
async fn a_case_id_is_taken_in_every_township_and_only_its_filer_gets_the_receipt_again() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = intake_client(intake.endpoint()).await;
    let request = filing(CaseId::new_v7());
    client.file_case(as_worker(request.clone())).await.unwrap();
    // A colleague of the same grid sends the very same report: refused, not handed the receipt.
    let colleague = Identity::new("gw-0043", "grid_worker", "cc-990101001", "990101001001001");
    let same = client.file_case(colleague.request(request.clone())).await.unwrap_err();
    assert_eq!(same.code(), Code::AlreadyExists, "{same:?}");
    // A worker of another township files under the same id: refused alike.
    let elsewhere = Identity::new("gw-0101", "grid_worker", "cc-990101101", "990101101001001");
    let moved = api::FileCaseRequest { grid_code: "990101101001001".into(), ..request.clone() };
    let other = client.file_case(elsewhere.request(moved)).await.unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
    assert_eq!(same.message(), other.message(), "the refusal says nothing of the case");
    assert_eq!(open_log(&nats).await.case_count().await.unwrap(), 1);
    // The filer's own retry still gets the receipt.
    assert!(client.file_case(as_worker(request)).await.unwrap().into_inner().replayed);
}

#[tokio::test]
async fn an_admin_sees_which_reference_data_runs_and_validates_new_files_without_changing_them() {
    use gridcase_proto::admin::v1 as admin;
    use gridcase_proto::admin::v1::reference_service_client::ReferenceServiceClient;
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let who = Identity::new("admin-1", "admin", "co-990101", "990101");
    let mut client = ReferenceServiceClient::connect(intake.endpoint()).await.unwrap();
    let running = client.get_reference(who.request(admin::GetReferenceRequest {})).await.unwrap().into_inner();
    let shipped = std::fs::read(gridcase_tests::workspace_root().join("deploy/reference/regions.csv")).unwrap();
    assert_eq!(running.regions_sha256, gridcase_reference::sha256_hex(&shipped));
    assert!(running.grids > 0 && running.categories > 0, "{running:?}");

    // One grid more: valid, and the change is named.
    let mut more = String::from_utf8(shipped.clone()).unwrap();
    more.push_str("990101001001009,grid,东门九网格,990101001001,\n");
    let changes = client
        .validate_reference(
            who.request(admin::ValidateReferenceRequest { regions_csv: more.into_bytes(), categories_csv: vec![] }),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changes.regions_added, ["990101001001009"]);
    assert!(changes.regions_removed.is_empty() && changes.categories_added.is_empty());
    assert_eq!(changes.after.unwrap().grids, running.grids + 1);

    // A grid whose parent does not exist: refused with the line.
    let mut broken = String::from_utf8(shipped).unwrap();
    broken.push_str("990101001099001,grid,孤儿网格,990101001099,\n");
    let lines = broken.lines().count();
    let status = client
        .validate_reference(
            who.request(admin::ValidateReferenceRequest { regions_csv: broken.into_bytes(), categories_csv: vec![] }),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let violation = &details.bad_request().unwrap().field_violations[0];
    assert_eq!(violation.field, "regions_csv");
    assert!(violation.description.contains(&format!("line {lines}")), "{violation:?}");

    // Nothing changed on the server.
    let after = client.get_reference(who.request(admin::GetReferenceRequest {})).await.unwrap().into_inner();
    assert_eq!(after, running);
}

#[tokio::test]
async fn a_list_of_nats_urls_is_used_as_a_cluster_and_a_dead_one_is_passed_over() {
    let nats = NatsServer::start();
    let mut config = TestIntake::config(&nats.url());
    // Port 1 answers nobody: the client moves on to the live server.
    config.common.nats_url = format!("nats://127.0.0.1:1, {}", nats.url());
    let intake = TestIntake::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let mut client = intake_client(intake.endpoint()).await;
    let receipt = client.file_case(as_worker(filing(CaseId::new_v7()))).await.expect("filed").into_inner();
    assert!(receipt.stream_sequence > 0);
    let mut bad = TestIntake::config(&nats.url());
    bad.common.nats_url = " , ".into();
    let error = bad.common.nats_servers().expect_err("no server named");
    assert!(error.to_string().contains("names no server"), "{error}");
    intake.stop().await.unwrap();
}

/// The demo county's boundaries, as intake loads them.
fn reference() -> gridcase_reference::Reference {
    gridcase_reference::Reference::load(&gridcase_tests::workspace_root().join("deploy/reference")).unwrap()
}

/// A point due north of the default filing's that lies between `min` and
/// `max` metres outside grid 990101001001001 (its boundary is generated, so
/// the test finds such a point rather than hard-coding one).
fn north_of_the_grid(min: f64, max: f64) -> (f64, f64) {
    let reference = reference();
    let grid = gridcase_domain::GridCode::parse("990101001001001").unwrap();
    (0..20_000)
        .map(|step| (30.2741 + f64::from(step) * 0.000_01, 120.1551))
        .find(|(lat, lon)| {
            let outside = reference.boundaries.distance_outside(&grid, *lat, *lon).unwrap();
            (min..max).contains(&outside)
        })
        .expect("a point that far out")
}

#[tokio::test]
async fn a_filing_outside_its_grid_is_kept_and_flagged_and_within_the_tolerance_it_is_not() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = intake_client(intake.endpoint()).await;
    let log = open_log(&nats).await;
    let flag_of = async |request: &api::FileCaseRequest| {
        let history = log.history(&subject_of(request)).await.unwrap();
        let Event::Filed(filed) = history[0].event.decode().unwrap() else { panic!("not a filing") };
        filed.outside_grid
    };
    let at = |case_id: CaseId, (latitude, longitude): (f64, f64)| {
        let mut request = filing(case_id);
        request.location = Some(common::Location { latitude, longitude, address: String::new() });
        request
    };

    // Inside the grid (the default filing's point): no flag.
    let inside = filing(CaseId::new_v7());
    client.file_case(as_worker(inside.clone())).await.expect("filed");
    assert_eq!(flag_of(&inside).await, None);

    // 60-150 m out: within the default tolerance of 200 m, not flagged.
    let near = at(CaseId::new_v7(), north_of_the_grid(60.0, 150.0));
    client.file_case(as_worker(near.clone())).await.expect("filed");
    assert_eq!(flag_of(&near).await, None);

    // 300-600 m out: kept, and flagged with the distance and the tolerance.
    let point = north_of_the_grid(300.0, 600.0);
    let far = at(CaseId::new_v7(), point);
    let receipt = client.file_case(as_worker(far.clone())).await.expect("kept").into_inner();
    let flag = flag_of(&far).await.expect("flagged");
    let grid = gridcase_domain::GridCode::parse("990101001001001").unwrap();
    let expected = reference().boundaries.distance_outside(&grid, point.0, point.1).unwrap();
    assert_eq!(flag.tolerance_m, 200);
    assert_eq!(f64::from(flag.distance_m), expected.round(), "{flag:?}");

    // The filer's retry of the flagged filing is the same filing.
    let retry = client.file_case(as_worker(far.clone())).await.expect("retried").into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.stream_sequence, receipt.stream_sequence);

    // A point in another township, kilometres from the grid it names.
    let elsewhere = at(CaseId::new_v7(), (30.2, 120.1));
    client.file_case(as_worker(elsewhere.clone())).await.expect("kept");
    assert!(flag_of(&elsewhere).await.expect("flagged").distance_m > 3000);
    intake.stop().await.unwrap();

    // After the tolerance changed (1 km now), the retry is still the same
    // filing: the flag is intake's finding, not part of what was filed.
    let mut config = TestIntake::config(&nats.url());
    config.grid_tolerance_m = 1000;
    let intake = TestIntake::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let mut client = intake_client(intake.endpoint()).await;
    let retry = client.file_case(as_worker(far)).await.expect("retried").into_inner();
    assert!(retry.replayed && retry.stream_sequence == receipt.stream_sequence, "{retry:?}");
    let now_near = at(CaseId::new_v7(), point);
    client.file_case(as_worker(now_near.clone())).await.expect("filed");
    assert_eq!(flag_of(&now_near).await, None, "within 1 km");
    intake.stop().await.unwrap();
}

/// What GetAttachment streams: the reference, then the bytes.
async fn fetch_attachment(
    endpoint: String,
    who: &Identity,
    case_id: &str,
    sha256: &str,
) -> Result<(common::AttachmentRef, Vec<u8>), tonic::Status> {
    use gridcase_proto::cases::v1 as cases_api;
    use gridcase_proto::cases::v1::attachment_part::Part as Piece;
    let request =
        cases_api::GetAttachmentRequest { case_id: case_id.into(), sha256: sha256.into(), ..Default::default() };
    let mut parts =
        gridcase_tests::lifecycle::client(endpoint).await.get_attachment(who.request(request)).await?.into_inner();
    let (mut reference, mut bytes) = (None, Vec::new());
    while let Some(part) = parts.next().await {
        match part?.part {
            Some(Piece::Reference(r)) => reference = Some(r),
            Some(Piece::Chunk(chunk)) => bytes.extend_from_slice(&chunk),
            None => {}
        }
    }
    Ok((reference.expect("the reference comes first"), bytes))
}

#[tokio::test]
async fn a_case_s_photo_is_reached_through_the_case_only_and_arrives_whole() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let photo = gridcase_tests::fixtures::photo_png(900, 600);
    let uploaded = gridcase_tests::fixtures::upload(intake.endpoint(), "image/png", &photo).await;
    let mut client = intake_client(intake.endpoint()).await;
    let mut request = filing(CaseId::new_v7());
    request.attachments = vec![uploaded.clone()];
    client.file_case(as_worker(request.clone())).await.expect("filed with a photo");
    let plain = filing(CaseId::new_v7());
    client.file_case(as_worker(plain.clone())).await.expect("filed without");

    // The filer and the township's command centre get it whole, in 64 KiB parts.
    for who in [worker(), gridcase_tests::lifecycle::centre()] {
        let (reference, bytes) =
            fetch_attachment(intake.endpoint(), &who, &request.case_id, &uploaded.sha256).await.expect("fetched");
        assert_eq!(reference, uploaded);
        assert_eq!(bytes, photo);
    }
    // Named through a case whose events do not carry it: not found, like a
    // case out of reach; so is the right case for another township's centre.
    let status = fetch_attachment(intake.endpoint(), &worker(), &plain.case_id, &uploaded.sha256).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let elsewhere = Identity::new("cc-02", "command_centre", "cc-990101201", "990101201");
    let status = fetch_attachment(intake.endpoint(), &elsewhere, &request.case_id, &uploaded.sha256).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // Both fields wrong: both named.
    let status = fetch_attachment(intake.endpoint(), &worker(), "nope", "ABC").await.unwrap_err();
    let fields: Vec<String> =
        status.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!((status.code(), fields), (Code::InvalidArgument, vec!["case_id".to_owned(), "sha256".to_owned()]));
    intake.stop().await.unwrap();
}
