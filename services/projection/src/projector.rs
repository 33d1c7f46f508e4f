//! Keeps the read models in step with the event log.
//!
//! Exactly-once effect: the projector reads the stream with an ordered
//! consumer starting right after the position stored in PostgreSQL, and each
//! batch commits its rows and the new position in one transaction (the
//! position row is locked for the batch). A crash before the commit loses
//! nothing (the batch is read again); after it, nothing is applied twice (the
//! position says so). JetStream keeps every event, so nothing needs
//! acknowledging there: the committed position is the acknowledgement.
//!
//! Only events that chain to their case's last kept event are kept: an event
//! whose `prev_hash` is not that hash (a case id filed a second time in
//! another township, or a forged append) is skipped and counted, never
//! folded into the case or allowed to stall the projection.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use gridcase_domain::{CaseId, Event};
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_eventlog::{EventLog, ReadFrom};
use gridcase_process::Shutdown;
use sqlx::{Connection as _, PgConnection};
use tracing::{debug, info, warn};

use crate::project::EventRow;
use crate::project::{self, CaseRow};
use crate::store::{self, Batch};

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The position moved to this sequence.
    UpTo(u64),
    /// The stored position is not where this batch starts (another writer,
    /// or a rebuild swapped in): read again from the stored position.
    Resync,
}

/// A message of the stream: its sequence, body and headers (the trace context).
pub struct Message {
    pub sequence: u64,
    pub payload: Vec<u8>,
    pub headers: Option<async_nats::HeaderMap>,
    /// The township code of the message's subject ("" when not a case subject).
    pub township: String,
}

/// A stored message decoded: `None` if it is not a stored event at all
/// (logged; the caller counts it skipped). The event is `None` when its type
/// is one this version does not know: kept in the audit history, not
/// projected (also counted skipped).
pub fn decode(sequence: u64, payload: &[u8]) -> Option<(StoredEvent, Option<Event>)> {
    match StoredEvent::from_json_bytes(payload) {
        Ok(stored) => {
            let event = match stored.decode() {
                Ok(event) => Some(event),
                Err(error) => {
                    warn!(sequence, %error, "event type this version does not know: kept in the audit history, not projected");
                    None
                }
            };
            Some((stored, event))
        }
        Err(error) => {
            warn!(sequence, %error, "unreadable message skipped");
            None
        }
    }
}

/// Fold one decoded event into its case's row, given the hash of the case's
/// last kept event. An event that does not chain to it (a case id reused, or
/// a forged append) is refused: the row comes back unchanged in `Err`, and
/// the caller counts the event skipped and keeps nothing of it.
pub fn fold(
    row: Option<CaseRow>,
    last_hash: Option<&String>,
    stored: &StoredEvent,
    event: Option<&Event>,
    sequence: u64,
) -> Result<(Option<CaseRow>, Vec<project::LedgerChange>), Option<CaseRow>> {
    if stored.prev_hash.as_ref() != last_hash {
        warn!(
            sequence,
            case_id = %stored.case_id,
            case_version = stored.case_version,
            "event does not chain to its case's last event (a case id reused, or a forged append): skipped"
        );
        return Err(row);
    }
    Ok(match event {
        Some(event) => project::apply(row, stored, event, sequence),
        None => {
            // Kept in the history without being projected: the chain moves on.
            let row = row.map(|mut row| {
                row.last_hash.clone_from(&stored.hash);
                row
            });
            (row, Vec::new())
        }
    })
}

/// The audit-history row of a kept event.
pub fn event_row(sequence: u64, stored: &StoredEvent, event: Option<&Event>) -> EventRow {
    EventRow {
        stream_sequence: sequence,
        event_id: stored.event_id,
        case_id: *stored.case_id.as_uuid(),
        case_version: stored.case_version,
        event_type: stored.event_type.clone(),
        occurred_at: stored.occurred_at,
        actor_person: stored.actor.person.clone(),
        actor_role: stored.actor.role.as_str().to_owned(),
        actor_organisation: stored.actor.organisation.clone(),
        reason: event.and_then(Event::reason).map(|r| r.to_string()),
        hash: stored.hash.clone(),
        prev_hash: stored.prev_hash.clone(),
        // Residents' contact details stay in the event log only.
        envelope: stored.redacted_json(),
    }
}

/// Apply one batch of consecutive stream messages in one transaction.
pub async fn apply_batch(connection: &mut PgConnection, messages: &[Message]) -> anyhow::Result<Applied> {
    let Some(first) = messages.first() else { return Ok(Applied::UpTo(store::position(&mut *connection).await?.0)) };
    let mut tx = connection.begin().await?;
    let position = store::lock_position(&mut tx).await?;
    if first.sequence > position + 1 && position != 0 {
        tx.rollback().await?;
        return Ok(Applied::Resync);
    }
    let fresh: Vec<&Message> = messages.iter().filter(|m| m.sequence > position).collect();
    let Some(last) = fresh.last() else {
        tx.rollback().await?;
        return Ok(Applied::UpTo(position));
    };
    let mut batch = Batch { position: last.sequence, ..Batch::default() };
    let mut decoded: Vec<(u64, StoredEvent, Option<Event>)> = Vec::with_capacity(fresh.len());
    // A span per event, in the trace of whoever wrote it, open until the
    // batch holding it is committed.
    let mut spans = Vec::new();
    for message in &fresh {
        let Some((stored, event)) = decode(message.sequence, &message.payload) else {
            batch.skipped += 1;
            continue;
        };
        if message.headers.as_ref().is_some_and(|h| h.get("traceparent").is_some()) {
            let span = tracing::info_span!(
                "projection.apply",
                case_id = %stored.case_id,
                township = %message.township,
                event_type = %stored.event_type,
                sequence = message.sequence,
                batch = fresh.len(),
            );
            gridcase_eventlog::trace::continue_trace(&span, message.headers.as_ref());
            spans.push(span);
        }
        if event.is_none() {
            batch.skipped += 1;
        }
        decoded.push((message.sequence, stored, event));
    }
    let ids: Vec<uuid::Uuid> = decoded.iter().map(|(_, s, _)| *s.case_id.as_uuid()).collect();
    let mut rows: HashMap<CaseId, CaseRow> = store::load_cases(&mut *tx, &ids).await?;
    // Each case's last kept hash: on its row, or (events of a case never
    // filed) in the history.
    let mut last_hashes: HashMap<uuid::Uuid, String> =
        rows.iter().map(|(id, row)| (*id.as_uuid(), row.last_hash.clone())).collect();
    let rowless: Vec<uuid::Uuid> = ids.iter().filter(|id| !last_hashes.contains_key(*id)).copied().collect();
    if !rowless.is_empty() {
        last_hashes.extend(store::last_hashes(&mut *tx, &rowless).await?);
    }
    // The cases the batch changed, in first-touched order.
    let mut changed: Vec<CaseId> = Vec::new();
    let mut touched: std::collections::HashSet<CaseId> = std::collections::HashSet::new();
    for (sequence, stored, event) in decoded {
        let case_key = *stored.case_id.as_uuid();
        let row = rows.remove(&stored.case_id);
        let (row, changes) = match fold(row, last_hashes.get(&case_key), &stored, event.as_ref(), sequence) {
            Ok(folded) => folded,
            Err(row) => {
                if let Some(row) = row {
                    rows.insert(stored.case_id, row);
                }
                batch.skipped += 1;
                continue;
            }
        };
        last_hashes.insert(case_key, stored.hash.clone());
        if let Some(row) = row {
            rows.insert(stored.case_id, row);
            if touched.insert(stored.case_id) {
                changed.push(stored.case_id);
            }
        }
        for (key, measure, amount) in changes {
            batch.count(key, measure, amount);
        }
        batch.events.push(event_row(sequence, &stored, event.as_ref()));
    }
    batch.cases = changed.iter().filter_map(|id| rows.remove(id)).collect();
    store::write(&mut tx, &batch).await?;
    tx.commit().await.context("committing a projection batch")?;
    drop(spans);
    debug!(events = fresh.len(), position = batch.position, "projection batch committed");
    Ok(Applied::UpTo(batch.position))
}

/// How much larger a batch may grow while the projector is behind by more
/// than a batch.
pub const BEHIND_FACTOR: usize = 10;

/// Project the stream through `connection` until `shutdown` (or, with
/// `until_caught_up`, until the stream's end as it was at the start). The
/// live service passes the connection that holds the writer lock
/// ([`store::Writer`]): if that session ends, its writes end with it.
///
/// While the log does not keep its history ([`gridcase_eventlog::integrity`])
/// nothing is applied.
pub async fn run(
    connection: &mut PgConnection,
    log: &EventLog,
    batch_size: usize,
    shutdown: Shutdown,
    until_caught_up: bool,
) -> anyhow::Result<u64> {
    loop {
        // Nothing is projected from a log that no longer keeps its history:
        // the read models stay as they were (they may hold what the log lost).
        if !wait_while_broken(log, &shutdown).await {
            return store::position(&mut *connection).await.map(|(p, _)| p);
        }
        let (position, _) = store::position(&mut *connection).await?;
        let last = log.last_sequence().await.context("reading the stream's end")?;
        if until_caught_up && position >= last {
            return Ok(position);
        }
        let mut records =
            log.read(CaseSubject::all_filter(), ReadFrom::after(position)).await.context("reading the case stream")?;
        // A rebuild (until caught up) reports how far it has got.
        let mut progress = until_caught_up.then(|| crate::metrics::RebuildProgress::new(last));
        info!(from = position + 1, "projecting the case stream");
        'batches: loop {
            let mut batch: Vec<Message> = Vec::new();
            let mut caught_up;
            // Wait for the first record (or shutdown), then take what is ready.
            let first = tokio::select! {
                _ = shutdown.clone().requested() => return store::position(&mut *connection).await.map(|(p, _)| p),
                record = records.next() => record,
            };
            // Behind by more than a batch (a burst, a restart after a
            // pause): larger transactions, fewer round trips per event.
            let limit = match &first {
                Some(Ok(record)) if record.pending as usize >= batch_size => batch_size * BEHIND_FACTOR,
                _ => batch_size,
            };
            let mut next = first;
            loop {
                match next {
                    None => anyhow::bail!("the case stream ended"),
                    Some(Err(error)) => {
                        warn!(%error, "reading the case stream failed; resuming from the stored position");
                        break 'batches;
                    }
                    Some(Ok(record)) => {
                        caught_up = record.caught_up();
                        batch.push(Message {
                            sequence: record.sequence,
                            payload: record.payload.to_vec(),
                            headers: record.headers,
                            township: CaseSubject::parse(&record.subject).map(|(t, _)| t).unwrap_or_default(),
                        });
                    }
                }
                if caught_up || batch.len() >= limit {
                    break;
                }
                next = match tokio::time::timeout(Duration::from_millis(20), records.next()).await {
                    Ok(record) => record,
                    Err(_) => break,
                };
            }
            if log.integrity().writable().is_err() {
                break 'batches;
            }
            match apply_batch(&mut *connection, &batch).await? {
                Applied::UpTo(position) => {
                    crate::metrics::progress(position, batch.len());
                    if let Some(progress) = progress.as_mut() {
                        progress.at(position);
                    }
                    if until_caught_up && caught_up && position >= last {
                        return Ok(position);
                    }
                }
                Applied::Resync => {
                    info!("stored position moved (rebuild swapped in?); resuming from it");
                    break 'batches;
                }
            }
        }
    }
}

/// Wait while the log does not keep its history; false if shutdown came first.
async fn wait_while_broken(log: &EventLog, shutdown: &Shutdown) -> bool {
    let mut broken = log.integrity().subscribe();
    let mut said = false;
    while *broken.borrow_and_update() {
        if !said {
            warn!("the case log does not keep its history: projecting is paused until it does");
            said = true;
        }
        tokio::select! {
            _ = shutdown.clone().requested() => return false,
            changed = broken.changed() => if changed.is_err() { return false },
        }
    }
    true
}
