//! The raw side of the benchmarks: stored events made as intake makes them,
//! published straight to JetStream (no gridcase in between), and the count
//! of writes that stored a range of the stream.

use bytes::Bytes;
use futures::StreamExt as _;
use gridcase_domain::{ActorRole, CaseId, Command, Event, GridCode};
use gridcase_envelope::schema::{Actor, EventMeta};
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_eventlog::{EventLog, ReadFrom, cloudevents};
use gridcase_tests::fixtures::filing;

/// A stored event ready to publish: subject, bytes, headers, message id.
pub(crate) type Raw = (String, Bytes, async_nats::HeaderMap, String);

/// A new case's filing as intake decides it: its subject and event.
pub(crate) fn filing_event() -> (CaseSubject, CaseId, Event) {
    let request = filing(CaseId::new_v7());
    let case_id = CaseId::parse(&request.case_id).expect("case id");
    let grid = GridCode::parse(&request.grid_code).expect("grid");
    let command = Command::File(gridcase_domain::Filing {
        case_id,
        grid: grid.clone(),
        category: gridcase_domain::CategoryCode::parse(&request.category_code).expect("category"),
        description: gridcase_domain::Text::parse(&request.description, 2000).expect("text"),
        location: gridcase_domain::Location::from_degrees(30.2741, 120.1551, Some("东门路12号")).expect("location"),
        reported_at: jiff::Timestamp::now(),
        severity_hint: None,
        contact: None,
        attachments: vec![],
        outside_grid: None,
        channel: Default::default(),
        request_kind: None,
        reference: None,
    });
    let event: Event = gridcase_domain::decide(None, &command, jiff::Timestamp::now()).expect("decide");
    (CaseSubject::for_grid(&grid, &case_id), case_id, event)
}

/// One filing event as intake would store it, with its subject, headers and id.
pub(crate) fn raw_event() -> Raw {
    let (subject, case_id, event) = filing_event();
    let stored = StoredEvent::chained(
        &event,
        EventMeta {
            event_id: uuid::Uuid::now_v7(),
            case_id,
            case_version: 1,
            occurred_at: jiff::Timestamp::now(),
            actor: Actor { person: "gw-0042".into(), role: ActorRole::GridWorker, organisation: "cc-990101001".into() },
            command_id: None,
        },
        None,
    );
    (
        subject.to_string(),
        Bytes::from(stored.to_json_bytes()),
        cloudevents::headers(&stored),
        stored.event_id.to_string(),
    )
}

/// Append one stored event as a new case (expected subject sequence 0).
pub(crate) async fn publish(
    js: &async_nats::jetstream::Context,
    subject: String,
    payload: bytes::Bytes,
    headers: async_nats::HeaderMap,
    id: String,
) -> anyhow::Result<()> {
    let message = async_nats::jetstream::message::PublishMessage::build()
        .payload(payload)
        .headers(headers)
        .message_id(id)
        .expected_last_subject_sequence(0);
    js.send_publish(subject, message).await?.await?;
    Ok(())
}

/// One raw atomic batch of new cases: every message expecting its subject
/// empty, the last one committing and answered.
pub(crate) async fn publish_batch(js: &async_nats::jetstream::Context, batch: Vec<Raw>) -> anyhow::Result<()> {
    let messages = batch
        .into_iter()
        .map(|(subject, payload, mut headers, _)| {
            headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
            (subject, headers, payload)
        })
        .collect();
    publish_atomic(js, messages).await
}

/// `messages` (subject, headers, payload) as one atomic batch: every one
/// but the last handed to the connection unanswered, the last committing
/// the batch; its acknowledgement must count them all.
pub(crate) async fn publish_atomic(
    js: &async_nats::jetstream::Context,
    messages: Vec<(String, async_nats::HeaderMap, Bytes)>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let client = js.client();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let total = messages.len();
    for (index, (subject, mut headers, payload)) in messages.into_iter().enumerate() {
        headers.insert(async_nats::header::NATS_BATCH_ID, id.as_str());
        headers.insert(async_nats::header::NATS_BATCH_SEQUENCE, (index + 1).to_string().as_str());
        if index + 1 < total {
            client.publish_with_headers(subject, headers, payload).await?;
        } else {
            headers.insert(async_nats::header::NATS_BATCH_COMMIT, "1");
            let message = async_nats::jetstream::message::PublishMessage::build().payload(payload).headers(headers);
            let ack = js.send_publish(subject, message).await?.await.context("a batch refused")?;
            anyhow::ensure!(
                ack.batch_size == Some(total as u64),
                "batch of {total} acknowledged as {:?}",
                ack.batch_size
            );
        }
    }
    Ok(())
}

/// How many writes stored the events between two stream sequences: one per
/// atomic batch (its id) plus one per event stored alone.
pub(crate) async fn writes_between(log: &EventLog, start: u64, end: u64) -> anyhow::Result<(usize, usize)> {
    let mut reader = log.read(CaseSubject::all_filter(), ReadFrom::Sequence(start)).await?;
    let mut batch_ids = std::collections::HashSet::new();
    let (mut alone, mut events) = (0, 0);
    while let Some(record) = reader.next().await {
        let record = record?;
        if record.sequence > end {
            break;
        }
        events += 1;
        match record.headers.as_ref().and_then(|h| h.get("Nats-Batch-Id")) {
            Some(id) => {
                batch_ids.insert(id.to_string());
            }
            None => alone += 1,
        }
        if record.sequence == end {
            break;
        }
    }
    Ok((batch_ids.len() + alone, events))
}
