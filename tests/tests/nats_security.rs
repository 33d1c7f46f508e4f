//! The shipped NATS users and permissions (deploy/nats/permissions.conf) on
//! a real nats-server: every service does its whole job with its own
//! credentials; a connection without credentials is refused; the
//! projection cannot publish a case event; nobody can delete or purge (the
//! dispatcher only its own snapshot bucket, when it replaces its snapshot).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use gridcase_domain::CaseId;
use gridcase_proto::intake::v1 as api;
use gridcase_proto::intake::v1::upload_attachment_request::Part;
use gridcase_runtime::FixedClock;
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
    let clock = FixedClock::new(now);

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
