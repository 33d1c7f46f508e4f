//! Copying history between streams, message for message (same sequences):
//! `gridctl log copy` (into gridcase's account), `log migrate-attachments`
//! and `backup restore`.

use anyhow::Context as _;
use async_nats::jetstream;
use gridcase_eventlog::{AttachmentStore, attachments};
use gridcase_resources::CommonArgs;
use serde_json::json;

/// What a copy did.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    pub(crate) messages: u64,
    pub(crate) already_there: u64,
    pub(crate) last_sequence: u64,
    pub(crate) attachments: u64,
}

pub(crate) fn report_copy(copied: &Copied, json_output: bool) {
    if json_output {
        println!(
            "{}",
            json!({
                "copied": copied.messages, "already_there": copied.already_there,
                "last_sequence": copied.last_sequence, "attachments": copied.attachments,
            })
        );
    } else {
        println!(
            "copied {} messages ({} were there already), up to stream sequence {}; {} attachments",
            copied.messages, copied.already_there, copied.last_sequence, copied.attachments
        );
    }
}

/// Copy the case stream `from.stream` message for message (same sequences)
/// and the attachments of `from_attachments` into `to`'s.
pub(crate) async fn copy(
    from: &CommonArgs,
    from_attachments: &str,
    to: &CommonArgs,
    to_attachments: &str,
) -> anyhow::Result<Copied> {
    use futures::StreamExt as _;
    let source_client = from.connect("gridctl").await.context("the source")?;
    let source = jetstream::new(source_client);
    let mut source_stream =
        source.get_stream(&from.stream).await.with_context(|| format!("stream {} on the source", from.stream))?;
    let state = source_stream.info().await?.state.clone();
    anyhow::ensure!(
        state.messages == 0 || (state.first_sequence == 1 && state.messages == state.last_sequence),
        "the source stream has gaps (first {}, last {}, {} messages): it is not a gridcase case stream",
        state.first_sequence,
        state.last_sequence,
        state.messages
    );

    let (client, log) = to.open_log("gridctl-copy").await.context("the destination")?;
    let mut copied = Copied { last_sequence: state.last_sequence, ..Copied::default() };
    let there = log.last_sequence().await?;
    let destination = log.context().get_stream(&to.stream).await?.info().await?.state.clone();
    anyhow::ensure!(
        destination.messages == 0
            || (destination.first_sequence == 1 && destination.messages == destination.last_sequence),
        "the destination stream {} has gaps (first {}, last {}, {} messages): it lost history; \
         a copy goes only into an empty stream or the intact start of a copy",
        to.stream,
        destination.first_sequence,
        destination.last_sequence,
        destination.messages
    );
    anyhow::ensure!(
        there <= state.last_sequence,
        "the destination holds {there} messages, the source only {}: not a copy of it",
        state.last_sequence
    );
    if there > 0 {
        // Resuming: the destination must be a prefix of the source.
        let ours = log.context().get_stream(&to.stream).await?.get_raw_message(there).await?;
        let theirs = source_stream.get_raw_message(there).await?;
        anyhow::ensure!(
            ours.subject == theirs.subject && ours.payload == theirs.payload,
            "message {there} differs between the source and the destination: not a copy of it"
        );
    }
    copied.already_there = there;
    if there < state.last_sequence {
        // An ordered consumer of our own on the source: nothing there changes.
        let consumer = source_stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: there + 1 },
                ..Default::default()
            })
            .await
            .context("reading the source stream")?;
        let mut messages = consumer.messages().await?;
        let mut acks = futures::stream::FuturesOrdered::new();
        while let Some(message) = messages.next().await {
            let message = message?;
            let sequence = message
                .info()
                .map_err(|e| anyhow::anyhow!("a source message without its position: {e}"))?
                .stream_sequence;
            let mut publish = jetstream::message::PublishMessage::build().payload(message.payload.clone());
            // The headers as stored first: `headers` replaces the whole map.
            if let Some(headers) = copyable_headers(message.headers.as_ref()) {
                publish = publish.headers(headers);
            }
            // The same position as in the source, or nothing.
            let publish = publish.expected_last_sequence(sequence - 1);
            let ack = log.context().send_publish(message.subject.to_string(), publish).await?;
            acks.push_back(std::future::IntoFuture::into_future(ack));
            if acks.len() >= 256 {
                confirm(acks.next().await, &mut copied)?;
            }
            if sequence >= state.last_sequence {
                break;
            }
        }
        while let Some(ack) = acks.next().await {
            confirm(Some(ack), &mut copied)?;
        }
    }
    let end = log.last_sequence().await?;
    anyhow::ensure!(end == state.last_sequence, "the destination ends at {end}, the source at {}", state.last_sequence);

    // Attachments: by content, those the destination lacks.
    let replicas = usize::from(to.stream_replicas);
    let to_store = AttachmentStore::open(log.context(), to_attachments, replicas).await?;
    copied.attachments = copy_attachment_stream(&source, from_attachments, &to_store).await?;
    copied.attachments += copy_legacy_bucket(&source, attachments::LEGACY_BUCKET, &to_store).await?.copied;
    client.drain().await.ok();
    Ok(copied)
}

/// Copy every attachment of the stream `name` on `source` that `to` lacks;
/// how many were copied. A source without that stream has none.
async fn copy_attachment_stream(source: &jetstream::Context, name: &str, to: &AttachmentStore) -> anyhow::Result<u64> {
    use futures::StreamExt as _;
    let Ok(mut stream) = source.get_stream(name).await else { return Ok(0) };
    let last = stream.info().await?.state.last_sequence;
    if last == 0 {
        return Ok(0);
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("reading the source's attachments")?;
    let mut messages = consumer.messages().await?;
    // An attachment's chunks, by subject, until the last one is read.
    let mut open: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    let mut copied = 0;
    while let Some(message) = messages.next().await {
        let message = message?;
        let sequence =
            message.info().map_err(|e| anyhow::anyhow!("a message without its position: {e}"))?.stream_sequence;
        let subject = message.subject.to_string();
        let header = |name: &str| {
            message.headers.as_ref().and_then(|h| h.get(name)).and_then(|v| v.as_str().parse::<u64>().ok())
        };
        let (Some(size), Some(_)) = (header("Gridcase-Attachment-Size"), header("Gridcase-Attachment-Chunks")) else {
            anyhow::bail!("message {sequence} of {name} is not an attachment's chunk");
        };
        let bytes = open.entry(subject.clone()).or_default();
        bytes.extend_from_slice(&message.payload);
        if bytes.len() as u64 >= size {
            let bytes = open.remove(&subject).unwrap_or_default();
            let digest = subject.rsplit('.').next().unwrap_or_default();
            let digest = gridcase_domain::Sha256Digest::parse(digest)
                .map_err(|e| anyhow::anyhow!("{subject} is not named by a SHA-256: {e}"))?;
            if to.find(&digest).await?.is_none() {
                let stored = to.put(&bytes).await?;
                anyhow::ensure!(stored.sha256 == digest, "attachment {digest} changed in transit");
                copied += 1;
            }
        }
        if sequence >= last {
            break;
        }
    }
    anyhow::ensure!(open.is_empty(), "{} attachments of {name} are incomplete on the source", open.len());
    Ok(copied)
}

/// What copying an object-store bucket did.
#[derive(Debug, Default)]
pub(crate) struct Migrated {
    pub(crate) copied: u64,
    pub(crate) already_there: u64,
}

/// Copy the attachments of an object-store bucket of older versions (each
/// named by its SHA-256) that `to` lacks. A source without it has none.
pub(crate) async fn copy_legacy_bucket(
    source: &jetstream::Context,
    bucket: &str,
    to: &AttachmentStore,
) -> anyhow::Result<Migrated> {
    use futures::StreamExt as _;
    use tokio::io::AsyncReadExt as _;
    let mut migrated = Migrated::default();
    let Ok(from_bucket) = source.get_object_store(bucket).await else { return Ok(migrated) };
    let mut objects = from_bucket.list().await?;
    while let Some(object) = objects.next().await {
        let object = object?;
        if object.deleted {
            continue;
        }
        let digest = gridcase_domain::Sha256Digest::parse(&object.name)
            .map_err(|e| anyhow::anyhow!("attachment {:?} is not named by its SHA-256: {e}", object.name))?;
        if to.find(&digest).await?.is_some() {
            migrated.already_there += 1;
            continue;
        }
        let mut bytes = Vec::new();
        from_bucket.get(&object.name).await?.read_to_end(&mut bytes).await?;
        let stored = to.put(&bytes).await?;
        anyhow::ensure!(stored.sha256 == digest, "attachment {} changed in transit", object.name);
        migrated.copied += 1;
    }
    Ok(migrated)
}

/// A stored message's headers, for publishing a copy of it: gridcase's own
/// (`ce-*`) and any other, but not JetStream's publish controls (`Nats-*`),
/// which the server stores with the message as they were sent. Sent again
/// they would act again: a batch's `Nats-Batch-Id` opens a batch the copy
/// never commits, `Nats-Expected-*` tests the new stream's state rather
/// than the old one's, `Nats-Msg-Id` may drop a message as a duplicate.
pub(crate) fn copyable_headers(stored: Option<&async_nats::HeaderMap>) -> Option<async_nats::HeaderMap> {
    let stored = stored?;
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in stored.iter() {
        if AsRef::<str>::as_ref(name).get(..5).is_some_and(|prefix| prefix.eq_ignore_ascii_case("nats-")) {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    Some(headers)
}

fn confirm(
    ack: Option<Result<jetstream::publish::PublishAck, jetstream::context::PublishError>>,
    copied: &mut Copied,
) -> anyhow::Result<()> {
    match ack {
        Some(Ok(_)) => {
            copied.messages += 1;
            Ok(())
        }
        Some(Err(error)) => Err(anyhow::anyhow!(
            "the destination refused a message ({error}): is something else writing to it? Run the copy again to resume"
        )),
        None => Ok(()),
    }
}
