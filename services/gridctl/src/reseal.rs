//! `gridctl log reseal`: copy the case stream into a new one with every
//! resident's contact details sealed, for deployments that must be able to
//! erase history written before sealing (the log is immutable: the old
//! stream keeps its clear text until an administrator deletes it).
//!
//! Three passes over the streams, with the services stopped:
//! 1. every chain of the old stream is verified (hashes over the stored
//!    values, versions 1, 2, 3…, each event chained to the one before);
//!    then the old stream gives up its subjects (`gridcase.case.>` becomes
//!    `gridcase.retired.<stream>.>`): it takes no new event, and the new
//!    stream can take the case subjects (two streams cannot share them);
//! 2. message by message, at the same stream sequence: a filing with clear
//!    contact details gets them sealed under its case's data key (payload
//!    version 2), and every later event of such a case is chained anew to
//!    the event before it (new `prev_hash` and `hash`, the `ce-hash` and
//!    `ce-type` headers to match); every other message is copied byte for
//!    byte. A case whose data were erased already (its key store entry says
//!    so) gets its details sealed under a key that is thrown away.
//! 3. every chain of the new stream is verified, and no filing in it holds
//!    contact details in clear.
//!
//! A run that stops part way (a crash, `--max-messages`) leaves the new
//! stream part-filled: the next run checks what it holds against the old
//! stream (same sequences and subjects; a copy that differs is a resealed
//! event, and its case is re-chained from there on) and goes on after it.
//! A data key made for a filing whose copy was never stored is found again
//! in the key store, so the case keeps one key.

use std::collections::HashMap;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt as _;
use gridcase_domain::{CaseId, ResidentContact};
use gridcase_envelope::hash_as_stored;
use gridcase_envelope::sealing::{DataKey, SealedJson, seal_contact};
use gridcase_eventlog::{EventLog, KeyStore, KeyStoreError};
use gridcase_resources::{CommonArgs, KeyArgs};
use serde_json::Value;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Resealed {
    /// Messages the new stream holds (copied by this run or an earlier one).
    pub messages: u64,
    /// Of those, messages an earlier, interrupted run had copied.
    pub resumed: u64,
    /// Whether the whole stream is copied and verified (false after
    /// `--max-messages` stopped the copy: run again to go on).
    pub complete: bool,
    /// Filings whose clear contact details were sealed.
    pub contacts_sealed: u64,
    /// Events re-chained (the sealed filings included).
    pub rechained: u64,
    /// Cases whose chains were verified, before and after.
    pub cases: u64,
}

/// One stored message.
pub(crate) struct Stored {
    sequence: u64,
    subject: String,
    payload: bytes::Bytes,
    headers: Option<async_nats::HeaderMap>,
}

/// Every message of `stream` in order, whatever its subjects are now (an
/// ordered consumer without a filter).
async fn messages(
    stream: &jetstream::stream::Stream,
) -> anyhow::Result<impl futures::Stream<Item = anyhow::Result<Stored>> + use<>> {
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("reading a stream")?;
    let messages = consumer.messages().await?;
    Ok(messages.map(|message| {
        let message = message.map_err(|e| anyhow::anyhow!("reading a stream: {e}"))?;
        let sequence =
            message.info().map_err(|e| anyhow::anyhow!("a message without its position: {e}"))?.stream_sequence;
        Ok(Stored {
            sequence,
            subject: message.subject.to_string(),
            payload: message.payload.clone(),
            headers: message.headers.clone(),
        })
    }))
}

/// Check every chain of `stream` (messages 1 to `last`); the chains' count.
pub(crate) async fn verify(
    stream: &jetstream::stream::Stream,
    last: u64,
    mut also: impl FnMut(&Stored),
) -> anyhow::Result<u64> {
    let mut chains = Chains::default();
    if last > 0 {
        let mut all = std::pin::pin!(messages(stream).await?);
        while let Some(stored) = all.next().await {
            let stored = stored?;
            chains.check(stored.sequence, &stored.payload)?;
            also(&stored);
            if stored.sequence >= last {
                break;
            }
        }
    }
    Ok(chains.0.len() as u64)
}

/// Per case: the hash and version of its last event, checking each event
/// as it comes (the stored bytes' hash, its version, its link).
#[derive(Default)]
struct Chains(HashMap<CaseId, (String, u64)>);

impl Chains {
    fn check(&mut self, sequence: u64, bytes: &[u8]) -> anyhow::Result<()> {
        let value: Value = serde_json::from_slice(bytes).with_context(|| format!("message {sequence} is not JSON"))?;
        let field = |name: &str| value.get(name).cloned().unwrap_or(Value::Null);
        let case_id: CaseId =
            serde_json::from_value(field("case_id")).with_context(|| format!("message {sequence} names no case"))?;
        let hash = field("hash").as_str().unwrap_or_default().to_owned();
        let recomputed = hash_as_stored(bytes).map_err(|e| anyhow::anyhow!("message {sequence}: {e}"))?;
        anyhow::ensure!(recomputed == hash, "message {sequence} (case {case_id}) does not match its hash: altered");
        let version = field("case_version").as_u64().unwrap_or_default();
        let previous = self.0.get(&case_id);
        let expected_version = previous.map_or(1, |(_, v)| v + 1);
        anyhow::ensure!(
            version == expected_version,
            "message {sequence} is event {version} of case {case_id}, {expected_version} was expected"
        );
        let prev = field("prev_hash");
        anyhow::ensure!(
            prev.as_str() == previous.map(|(h, _)| h.as_str()),
            "message {sequence} (case {case_id}) does not chain to the event before it"
        );
        self.0.insert(case_id, (hash, version));
        Ok(())
    }
}

fn stream_end(info: &jetstream::stream::Info) -> anyhow::Result<u64> {
    let state = &info.state;
    anyhow::ensure!(
        state.messages == 0 || (state.first_sequence == 1 && state.messages == state.last_sequence),
        "stream {} has gaps (first {}, last {}, {} messages): not a gridcase case stream",
        info.config.name,
        state.first_sequence,
        state.last_sequence,
        state.messages
    );
    Ok(state.last_sequence)
}

/// Whether a filing's JSON holds contact details that are not sealed.
fn holds_unsealed_contact(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("filed")
        && value
            .get("payload")
            .and_then(|p| p.get("resident_contact"))
            .is_some_and(|contact| !contact.is_null() && contact.get("sealed").is_none())
}

/// Clear contact details in a filing's JSON, if it holds any; an error if it
/// holds some that do not parse (they would otherwise be copied as they are).
fn clear_contact(sequence: u64, value: &Value) -> anyhow::Result<Option<ResidentContact>> {
    if !holds_unsealed_contact(value) {
        return Ok(None);
    }
    let contact = value["payload"]["resident_contact"].clone();
    serde_json::from_value(contact)
        .map(Some)
        .with_context(|| format!("message {sequence}: contact details that do not parse; nothing was sealed for them"))
}

/// The subjects a retired stream keeps: nobody publishes there, so it takes
/// no new event and leaves `gridcase.case.>` to the new stream.
fn retired_subjects(stream: &str) -> Vec<String> {
    vec![format!("gridcase.retired.{stream}.>")]
}

/// What to reseal, and how much of it in this run.
pub struct Reseal<'a> {
    pub common: &'a CommonArgs,
    pub keys: &'a KeyArgs,
    pub to_stream: &'a str,
    /// Copy at most this many messages in this run (then stop, without the
    /// final verification: run again to go on).
    pub max_messages: Option<u64>,
}

pub async fn reseal(job: Reseal<'_>) -> anyhow::Result<Resealed> {
    let Reseal { common, keys, to_stream, max_messages } = job;
    anyhow::ensure!(to_stream != common.stream, "--to-stream must name a new stream, not {}", common.stream);
    let client = common.connect("gridctl-reseal").await?;
    let js = jetstream::new(client.clone());
    let mut source = js.get_stream(&common.stream).await.with_context(|| format!("stream {}", common.stream))?;
    let info = source.info().await?.clone();
    let last = stream_end(&info)?;

    // 1. The old chains, and which cases were erased (their details get a
    // key nobody keeps, whatever the key store says).
    let mut erased: std::collections::HashSet<CaseId> = std::collections::HashSet::new();
    let cases = verify(&source, last, |stored| {
        let value: Value = serde_json::from_slice(&stored.payload).unwrap_or(Value::Null);
        if value.get("type").and_then(Value::as_str) == Some("resident_data_erased")
            && let Ok(case_id) = serde_json::from_value::<CaseId>(value["case_id"].clone())
        {
            erased.insert(case_id);
        }
    })
    .await?;
    let mut counts = Resealed { cases, ..Resealed::default() };

    // The old stream gives up its subjects (and so takes no new event); its
    // messages stay as they are.
    if info.config.subjects != retired_subjects(&common.stream) {
        let mut config = info.config.clone();
        config.subjects = retired_subjects(&common.stream);
        js.update_stream(config).await.context("retiring the old stream's subjects")?;
    }
    let target_args = CommonArgs { stream: to_stream.to_owned(), ..common.clone() };
    let target = EventLog::open(client.clone(), target_args.stream_settings()).await.context("the new stream")?;
    let there = target.last_sequence().await?;
    anyhow::ensure!(
        there <= last,
        "the new stream {to_stream} holds {there} messages, more than the {last} of {}: not a copy of it",
        common.stream
    );
    let store = keys.open(&target, true).await?;

    // 2. The copy, message by message, at the same sequences. What the new
    // stream holds already (an interrupted run) is checked against the old
    // stream and kept: the copy goes on after it.
    let mut rechained: HashMap<CaseId, String> = HashMap::new();
    if last > 0 {
        let mut all = std::pin::pin!(messages(&source).await?);
        let new_stream = js.get_stream(to_stream).await?;
        let mut copied = match there {
            0 => None,
            _ => Some(Box::pin(messages(&new_stream).await?)),
        };
        while let Some(stored) = all.next().await {
            let stored = stored?;
            let sequence = stored.sequence;
            if sequence <= there
                && let Some(copied) = copied.as_mut()
            {
                let copy = copied.next().await.context("the new stream ended early")??;
                resume(&mut rechained, &mut counts, &stored, &copy)?;
                if sequence >= last {
                    break;
                }
                continue;
            }
            if max_messages.is_some_and(|most| counts.messages - counts.resumed >= most) {
                client.drain().await.ok();
                return Ok(counts);
            }
            let (payload, headers) = transform(&store, &erased, &mut rechained, &mut counts, &stored).await?;
            let mut publish = jetstream::message::PublishMessage::build().payload(payload);
            if let Some(headers) = crate::copy::copyable_headers(headers.as_ref()) {
                publish = publish.headers(headers);
            }
            let ack = target
                .context()
                .send_publish(stored.subject.clone(), publish.expected_last_sequence(sequence - 1))
                .await
                .with_context(|| format!("copying message {sequence}"))?;
            ack.await.with_context(|| format!("the new stream refused message {sequence}"))?;
            counts.messages += 1;
            if sequence >= last {
                break;
            }
        }
    }
    anyhow::ensure!(counts.messages == last, "copied {} messages of {last}", counts.messages);

    // 3. The new chains, and no clear text left.
    let new_stream = js.get_stream(to_stream).await?;
    let mut clear = 0u64;
    let after = verify(&new_stream, last, |stored| {
        let value: Value = serde_json::from_slice(&stored.payload).unwrap_or(Value::Null);
        clear += u64::from(holds_unsealed_contact(&value));
    })
    .await?;
    anyhow::ensure!(clear == 0, "{clear} filings of the new stream still hold contact details in clear");
    anyhow::ensure!(after == cases, "the new stream holds {after} cases, the old {cases}");
    counts.complete = true;
    client.drain().await.ok();
    Ok(counts)
}

/// A message an interrupted run copied already (`copy`, at the same
/// sequence as `record`): it must be the old one, resealed or not; a case
/// whose copy differs is re-chained from there on.
fn resume(
    rechained: &mut HashMap<CaseId, String>,
    counts: &mut Resealed,
    record: &Stored,
    copy: &Stored,
) -> anyhow::Result<()> {
    let sequence = record.sequence;
    anyhow::ensure!(
        copy.sequence == sequence && copy.subject == record.subject,
        "message {} of the new stream ({}) is not message {sequence} of the old ({}): not a copy of it",
        copy.sequence,
        copy.subject,
        record.subject
    );
    let value: Value = serde_json::from_slice(&record.payload)?;
    let case_id: CaseId = serde_json::from_value(value["case_id"].clone())?;
    counts.resumed += 1;
    let sealed_here = holds_unsealed_contact(&value);
    if !sealed_here && !rechained.contains_key(&case_id) {
        // What the copy leaves alone is there byte for byte.
        anyhow::ensure!(
            copy.payload == record.payload,
            "message {sequence} of the new stream differs from the old one, which a reseal copies as it is: \
             something else wrote to the new stream"
        );
        counts.messages += 1;
        return Ok(());
    }
    // A resealed event: the old one but for the sealed details and the
    // chain, linked to the copy of the event before it.
    let copied: Value = serde_json::from_slice(&copy.payload)?;
    let previous = rechained.get(&case_id).map(|hash| Value::String(hash.clone())).unwrap_or(Value::Null);
    anyhow::ensure!(
        without_sealing(&copied) == without_sealing(&value)
            && copied["prev_hash"] == previous
            && (!sealed_here || copied["payload"]["resident_contact"].get("sealed").is_some()),
        "message {sequence} of the new stream is not the old one resealed: something else wrote to the new stream"
    );
    counts.contacts_sealed += u64::from(sealed_here);
    counts.rechained += 1;
    counts.messages += 1;
    rechained.insert(case_id, copied["hash"].as_str().unwrap_or_default().to_owned());
    Ok(())
}

/// An event's JSON without what a reseal changes: the contact details, the
/// payload version, the chain's hashes.
fn without_sealing(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        for field in ["hash", "prev_hash", "schema_version"] {
            object.remove(field);
        }
    }
    if let Some(payload) = value.get_mut("payload").and_then(Value::as_object_mut) {
        payload.remove("resident_contact");
    }
    value
}

/// What `delete_retired` removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deleted {
    pub stream: String,
    pub messages: u64,
    pub snapshot_bucket: Option<String>,
}

/// Delete `retired`, a stream a reseal retired, once the stream in use
/// (`--stream`) is checked to be its successor: a copy of each of its
/// messages at the same sequence (same subject and event, the sealing and
/// the chain aside), every chain verified, no clear text; and
/// `snapshot_bucket`, the dispatcher's snapshots that name its hashes, if
/// given. Only then is the old clear text gone from NATS.
pub async fn delete_retired(
    common: &CommonArgs,
    retired: &str,
    snapshot_bucket: Option<&str>,
) -> anyhow::Result<Deleted> {
    let successor = &common.stream;
    anyhow::ensure!(retired != successor, "--retired names the stream in use ({successor})");
    let client = common.connect("gridctl-delete-retired").await?;
    let js = jetstream::new(client.clone());
    let mut old = js.get_stream(retired).await.with_context(|| format!("stream {retired}"))?;
    let info = old.info().await?.clone();
    anyhow::ensure!(
        info.config.subjects == retired_subjects(retired),
        "stream {retired} is not retired (its subjects are {:?}): it may still be in use; reseal it first",
        info.config.subjects
    );
    let last = info.state.last_sequence;
    let mut new = js.get_stream(successor).await.with_context(|| format!("the successor stream {successor}"))?;
    let there = new.info().await?.state.last_sequence;
    anyhow::ensure!(
        there >= last,
        "{successor} holds {there} messages, fewer than the {last} of {retired}: finish the reseal first"
    );
    // Message by message, the successor holds a copy of each (same
    // sequence, subject and event, the sealing and the chain aside); every
    // chain of it verifies and none of its filings holds clear text.
    if last > 0 {
        let mut before = std::pin::pin!(messages(&old).await?);
        let mut after = std::pin::pin!(messages(&new).await?);
        for _ in 0..last {
            let ended = || anyhow::anyhow!("a stream ended early");
            let (a, b) = (before.next().await.ok_or_else(ended)??, after.next().await.ok_or_else(ended)??);
            let parse = |stored: &Stored| serde_json::from_slice::<Value>(&stored.payload).unwrap_or(Value::Null);
            anyhow::ensure!(
                a.sequence == b.sequence
                    && a.subject == b.subject
                    && without_sealing(&parse(&a)) == without_sealing(&parse(&b)),
                "message {} of {successor} is not a copy of {retired}'s: is it its successor? Nothing was deleted",
                a.sequence
            );
        }
    }
    let mut clear = 0u64;
    verify(&new, there, |stored| {
        let value: Value = serde_json::from_slice(&stored.payload).unwrap_or(Value::Null);
        clear += u64::from(holds_unsealed_contact(&value));
    })
    .await
    .with_context(|| format!("{successor} does not verify; nothing was deleted"))?;
    anyhow::ensure!(clear == 0, "{clear} filings of {successor} hold contact details in clear; nothing was deleted");
    js.delete_stream(retired).await.with_context(|| format!("deleting {retired}"))?;
    if let Some(bucket) = snapshot_bucket {
        use jetstream::context::DeleteStreamErrorKind;
        match js.delete_stream(format!("OBJ_{bucket}")).await {
            Ok(_) => {}
            Err(error)
                if matches!(error.kind(), DeleteStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) => {}
            Err(error) => return Err(anyhow::anyhow!("deleting the snapshot bucket {bucket}: {error}")),
        }
    }
    client.drain().await.ok();
    Ok(Deleted {
        stream: retired.to_owned(),
        messages: info.state.messages,
        snapshot_bucket: snapshot_bucket.map(str::to_owned),
    })
}

/// One message as the new stream stores it.
async fn transform(
    store: &KeyStore,
    erased: &std::collections::HashSet<CaseId>,
    rechained: &mut HashMap<CaseId, String>,
    counts: &mut Resealed,
    record: &Stored,
) -> anyhow::Result<(bytes::Bytes, Option<async_nats::HeaderMap>)> {
    let mut value: Value = serde_json::from_slice(&record.payload)?;
    let case_id: CaseId = serde_json::from_value(value["case_id"].clone())?;
    let contact = clear_contact(record.sequence, &value)?;
    if contact.is_none() && !rechained.contains_key(&case_id) {
        return Ok((record.payload.clone(), record.headers.clone()));
    }
    if let Some(contact) = contact {
        let key = if erased.contains(&case_id) {
            // Erased before this copy: sealed under a key nobody keeps, and
            // the key store says erased (a marker, if it lacked one).
            store.erase(&case_id).await?;
            DataKey::generate()?
        } else {
            match store.key_for_new_case(&case_id).await {
                Ok(key) => key,
                Err(KeyStoreError::Erased) => DataKey::generate()?,
                Err(error) => return Err(error.into()),
            }
        };
        let sealed = seal_contact(&key, &case_id, &contact)?;
        value["payload"]["resident_contact"] = serde_json::json!({ "sealed": SealedJson::from(sealed) });
        value["schema_version"] = Value::from(2);
        counts.contacts_sealed += 1;
    }
    if let Some(previous) = rechained.get(&case_id) {
        value["prev_hash"] = Value::String(previous.clone());
    }
    value["hash"] = Value::String(String::new());
    let hash = hash_as_stored(&serde_json::to_vec(&value)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    value["hash"] = Value::String(hash.clone());
    rechained.insert(case_id, hash.clone());
    counts.rechained += 1;
    let mut headers = record.headers.clone().unwrap_or_default();
    headers.insert("ce-hash", hash.as_str());
    let kind = value["type"].as_str().unwrap_or_default();
    let version = value["schema_version"].as_u64().unwrap_or(1);
    headers.insert("ce-type", format!("cn.gridcase.case.{kind}.v{version}").as_str());
    Ok((serde_json::to_vec(&value)?.into(), Some(headers)))
}
