//! The shipped NATS users and permissions (deploy/nats/permissions.conf) on
//! a real nats-server: every service does its whole job with its own
//! credentials; a connection without credentials is refused; the
//! projection cannot publish a case event; nobody can delete or purge (the
//! dispatcher only its own snapshot bucket, when it replaces its snapshot).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use gridcase_domain::CaseId;
use gridcase_process::ManualTimeSource;
use gridcase_proto::intake::v1 as api;
use gridcase_proto::intake::v1::upload_attachment_request::Part;
use gridcase_tests::fixtures::{as_worker, filing_at, intake_client};
use gridcase_tests::{NatsServer, TestDatabase, TestDispatcher, TestIntake, TestProjection, stream_end};
use jiff::Timestamp;
use tokio::sync::mpsc;

/// A client of `user` that reports what the server says it did wrong.
async fn connect_watching(nats: &NatsServer, user: &str) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (sender, errors) = mpsc::unbounded_channel();
    let seed = std::fs::read_to_string(nats.credentials(user)).unwrap();
    let client = async_nats::ConnectOptions::with_nkey(seed.trim().to_owned())
        .event_callback(move |event| {
            let sender = sender.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = sender.send(error.to_string());
                }
            }
        })
        .connect(nats.url())
        .await
        .expect("the user's credentials are accepted");
    (client, errors)
}

/// Wait (bounded) for the server to report a permissions violation.
async fn violation(errors: &mut mpsc::UnboundedReceiver<String>) -> String {
    loop {
        let error = tokio::time::timeout(Duration::from_secs(10), errors.recv())
            .await
            .expect("the server reports the violation")
            .expect("client open");
        if error.to_lowercase().contains("permissions violation") {
            return error;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_works_with_its_own_credentials_and_nothing_more() {
    let nats = NatsServer::start_secured();
    let db = TestDatabase::create().await;
    let now: Timestamp = "2026-03-02T01:00:00Z".parse().unwrap();
    let clock = ManualTimeSource::new(now);

    // A connection without credentials is refused.
    let anonymous = async_nats::ConnectOptions::new().connect(nats.url()).await;
    let error = anonymous.expect_err("an anonymous connection is refused").to_string();
    assert!(error.to_lowercase().contains("authorization"), "{error}");

    // Each service with its own user: intake files (and stores a photo),
    // the dispatcher registers and dispatches, the projection projects.
    let mut intake_config = TestIntake::config(&nats.url());
    intake_config.common.nats_credentials = Some(nats.credentials("intake"));
    let intake = TestIntake::spawn_with(intake_config, Arc::new(clock.clone())).await;
    let mut dispatcher_config = TestDispatcher::config(&nats.url());
    dispatcher_config.common.nats_credentials = Some(nats.credentials("dispatcher"));
    let mut dispatcher = TestDispatcher::spawn_with(dispatcher_config, Arc::new(clock.clone())).await;
    let mut projection_config = TestProjection::config(&nats.url(), &db.url);
    projection_config.common.nats_credentials = Some(nats.credentials("projection"));
    let projection = TestProjection::spawn_with(projection_config, Arc::new(clock.clone())).await;

    let mut client = intake_client(intake.endpoint()).await;
    let photo = gridcase_tests::fixtures::jpeg(20_000);
    let parts = vec![
        api::UploadAttachmentRequest {
            part: Some(Part::Metadata(api::AttachmentMetadata {
                content_type: "image/jpeg".into(),
                file_name: "p.jpg".into(),
            })),
        },
        api::UploadAttachmentRequest { part: Some(Part::Chunk(photo)) },
    ];
    client.upload_attachment(as_worker(tokio_stream::iter(parts))).await.expect("intake may use the object store");
    let case_id = CaseId::new_v7();
    client.file_case(as_worker(filing_at(case_id, "0201", now))).await.expect("intake may append");
    dispatcher.settled_at(now, &nats).await;
    let end = stream_end(&nats).await;
    assert_eq!(end, 3, "filed, then registered and dispatched by the dispatcher's own user");
    projection.caught_up_to(end).await;

    // The projection may read, never publish: its case event is refused
    // by the server and nothing is stored.
    let (reader, mut errors) = connect_watching(&nats, "projection").await;
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_millis(500)).build(reader);
    let subject = format!("gridcase.case.990101001.{case_id}");
    let publish = js.publish(subject.clone(), "forged".into()).await;
    let refused = match publish {
        Ok(ack) => ack.await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "the projection's publish was not acknowledged");
    assert!(violation(&mut errors).await.contains("gridcase.case"), "the server names the refused subject");
    assert_eq!(stream_end(&nats).await, end, "nothing was stored");

    // Nobody deletes or purges, not even the operator; no service may
    // change the stream's configuration.
    for user in ["intake", "dispatcher", "projection", "operator"] {
        let (client, mut errors) = connect_watching(&nats, user).await;
        let js = jetstream::ContextBuilder::new().timeout(Duration::from_millis(500)).build(client);
        assert!(js.delete_stream("GRIDCASE_CASES").await.is_err(), "{user} deleted the stream");
        violation(&mut errors).await;
        let stream = js.get_stream_no_info("GRIDCASE_CASES").await.unwrap();
        assert!(stream.purge().await.is_err(), "{user} purged the stream");
        violation(&mut errors).await;
        assert!(js.delete_stream("GRIDCASE_ATTACHMENTS").await.is_err(), "{user} deleted the attachments");
        violation(&mut errors).await;
    }
    for user in ["intake", "dispatcher", "projection"] {
        let (client, mut errors) = connect_watching(&nats, user).await;
        let js = jetstream::ContextBuilder::new().timeout(Duration::from_millis(500)).build(client);
        let mut config = gridcase_eventlog::EventLog::stream_config(&gridcase_eventlog::StreamSettings::default());
        config.deny_delete = false;
        assert!(js.update_stream(config).await.is_err(), "{user} changed the stream's configuration");
        violation(&mut errors).await;
    }
    assert_eq!(stream_end(&nats).await, end, "the log is whole");
    let mut stream = jetstream::new(nats.client().await).get_stream("GRIDCASE_CASES").await.unwrap();
    assert!(stream.info().await.unwrap().config.deny_delete);

    // The dispatcher saves its snapshot of open cases on stopping and
    // resumes from it, with its own user.
    dispatcher.stop().await.unwrap();
    let mut dispatcher_config = TestDispatcher::config(&nats.url());
    dispatcher_config.common.nats_credentials = Some(nats.credentials("dispatcher"));
    let mut dispatcher = TestDispatcher::spawn_with(dispatcher_config, Arc::new(clock.clone())).await;
    dispatcher.settled_at(now, &nats).await;
    assert_eq!(dispatcher.snapshots().resumed_from, Some(end), "resumed from its own snapshot");

    projection.stop().await.unwrap();
    dispatcher.stop().await.unwrap();
    intake.stop().await.unwrap();
}

/// Publish `payload` to `subject` with `headers` as `user`; whether the
/// stream stored it.
async fn stored_as(nats: &NatsServer, user: &str, subject: &str, headers: &[(&str, &str)]) -> bool {
    let client = nats.connect_as(user).await.unwrap();
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_millis(1_000)).build(client);
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    let publish = jetstream::message::PublishMessage::build().payload("x".into()).headers(map);
    match js.send_publish(subject.to_owned(), publish).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

/// Messages each stream holds.
async fn holdings(nats: &NatsServer) -> Vec<(String, u64, u64)> {
    let js = jetstream::new(nats.connect_as("operator").await.unwrap());
    let mut all = Vec::new();
    for name in ["GRIDCASE_CASES", "GRIDCASE_ATTACHMENTS", "KV_gridcase-keys"] {
        let info = js.get_stream(name).await.unwrap().info().await.unwrap().clone();
        all.push((name.to_owned(), info.state.messages, info.state.first_sequence));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_daily_credential_can_shrink_history_and_the_services_stop_writing_when_it_shrinks() {
    use gridcase_proto::cases::v1 as cases_api;
    use gridcase_tests::{eventually, lifecycle, serving};

    let nats = NatsServer::start_secured();
    let db = TestDatabase::create().await;
    let now: Timestamp = "2026-03-02T01:00:00Z".parse().unwrap();
    let clock = ManualTimeSource::new(now);
    let check_often = Duration::from_millis(100);

    let mut intake_config = TestIntake::config(&nats.url());
    intake_config.common.nats_credentials = Some(nats.credentials("intake"));
    intake_config.common.integrity_interval = check_often;
    let intake = TestIntake::spawn_with(intake_config, Arc::new(clock.clone())).await;
    let mut dispatcher_config = TestDispatcher::config(&nats.url());
    dispatcher_config.common.nats_credentials = Some(nats.credentials("dispatcher"));
    dispatcher_config.common.integrity_interval = check_often;
    let mut dispatcher = TestDispatcher::spawn_with(dispatcher_config, Arc::new(clock.clone())).await;
    let mut projection_config = TestProjection::config(&nats.url(), &db.url);
    projection_config.common.nats_credentials = Some(nats.credentials("projection"));
    projection_config.common.integrity_interval = check_often;
    let projection = TestProjection::spawn_with(projection_config, Arc::new(clock.clone())).await;

    // A case with a resident's contact details (a key) and a photo, filed,
    // registered and dispatched.
    let mut client = intake_client(intake.endpoint()).await;
    let parts = vec![
        api::UploadAttachmentRequest {
            part: Some(Part::Metadata(api::AttachmentMetadata {
                content_type: "image/jpeg".into(),
                file_name: "p.jpg".into(),
            })),
        },
        api::UploadAttachmentRequest { part: Some(Part::Chunk(gridcase_tests::fixtures::jpeg(400_000))) },
    ];
    client.upload_attachment(as_worker(tokio_stream::iter(parts))).await.unwrap();
    let case_id = CaseId::new_v7();
    let mut filing = filing_at(case_id, "0201", now);
    filing.resident_contact =
        Some(api::ResidentContact { name: "王秀英".into(), phone: "13812345678".into(), ..Default::default() });
    client.file_case(as_worker(filing)).await.unwrap();
    dispatcher.settled_at(now, &nats).await;
    let end = stream_end(&nats).await;
    assert_eq!(end, 3);
    projection.caught_up_to(end).await;
    let before = holdings(&nats).await;
    assert!(before.iter().all(|(_, messages, _)| *messages > 0), "{before:?}");

    // 1. No shipped credential in daily use (nor the backup account's) may
    // change a stream's limits, purge it, or send what a stream would
    // discard history for: a roll-up or a message TTL.
    let steward = jetstream::new(nats.connect_as("steward").await.unwrap());
    for user in ["intake", "dispatcher", "projection", "operator", "backup"] {
        let (client, mut errors) = connect_watching(&nats, user).await;
        let js = jetstream::ContextBuilder::new().timeout(Duration::from_millis(500)).build(client);
        for name in ["GRIDCASE_CASES", "GRIDCASE_ATTACHMENTS", "KV_gridcase-keys"] {
            let mut config = steward.get_stream(name).await.unwrap().info().await.unwrap().config.clone();
            config.max_messages_per_subject = 1;
            config.max_messages = 1;
            assert!(js.update_stream(config).await.is_err(), "{user} shrank {name}");
            violation(&mut errors).await;
            let stream = js.get_stream_no_info(name).await.unwrap();
            assert!(stream.purge().await.is_err(), "{user} purged {name}");
            violation(&mut errors).await;
        }
    }
    let case_subject = format!("gridcase.case.990101001.{case_id}");
    let key_subject = format!("$KV.gridcase-keys.{case_id}");
    let attachment_subject = format!("gridcase.attachment.{}", "0".repeat(64));
    for (user, subject) in [
        ("intake", &case_subject),
        ("dispatcher", &case_subject),
        ("intake", &attachment_subject),
        ("intake", &key_subject),
        ("dispatcher", &key_subject),
    ] {
        for rollup in ["all", "sub"] {
            assert!(!stored_as(&nats, user, subject, &[("Nats-Rollup", rollup)]).await, "{user} rolled up {subject}");
        }
        assert!(!stored_as(&nats, user, subject, &[("Nats-TTL", "1s")]).await, "{user} stored a message that expires");
    }
    assert_eq!(holdings(&nats).await, before, "every stream holds what it held");
    assert_eq!(stream_end(&nats).await, end);

    // 2. The break-glass user can (that is what it is for): one step
    // behind the services' back, and each of them notices and stops.
    let mut config = steward.get_stream("GRIDCASE_CASES").await.unwrap().info().await.unwrap().config.clone();
    config.max_messages_per_subject = 1;
    steward.update_stream(config).await.expect("the break-glass user may change the stream");
    let after = holdings(&nats).await;
    assert_eq!(after[0].1, 1, "the server kept one event of the case: {after:?}");

    let query = format!("http://{}", projection.addr);
    let dispatcher_health = format!("http://{}", dispatcher.health_addr);
    eventually("intake to report NOT_SERVING", || async { !serving(&intake.endpoint(), "").await }).await;
    eventually("the dispatcher to report NOT_SERVING", || async { !serving(&dispatcher_health, "").await }).await;
    eventually("the query service to report NOT_SERVING", || async { !serving(&query, "").await }).await;

    // Intake refuses to write (the client keeps its report for later), and
    // the damaged case reads as data lost, not as a case of one event.
    let refused = client.file_case(as_worker(filing_at(CaseId::new_v7(), "0201", now))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("not accepting changes"), "{refused:?}");
    let mut cases = lifecycle::client(intake.endpoint()).await;
    let damaged = cases
        .get_case(lifecycle::request(&lifecycle::centre(), cases_api::GetCaseRequest { case_id: case_id.to_string() }))
        .await
        .unwrap_err();
    assert_eq!(damaged.code(), tonic::Code::DataLoss, "{damaged:?}");
    assert_eq!(stream_end(&nats).await, end, "nothing was written on top of the damaged log");

    projection.stop().await.unwrap();
    dispatcher.stop().await.unwrap();
    intake.stop().await.unwrap();
}
