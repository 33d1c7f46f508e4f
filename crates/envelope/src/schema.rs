//! The stored-event schema, version 1.
//!
//! A stored event is a JSON envelope (who, when, which case, which position in
//! the case's history) around a payload whose shape is named by `type`. The
//! payload types below mirror the domain's events but are a separate, frozen
//! wire contract: the domain may rename freely, history keeps its names. The
//! snapshot tests in `schema/tests.rs` fail on any accidental change.
//!
//! Each envelope carries `prev_hash`, the hash of the previous event of the
//! same case, and `hash`, the SHA-256 of the envelope's canonical bytes (every
//! field but `hash`, serialised as JSON with object keys sorted by their UTF-8
//! bytes, no insignificant whitespace). An auditor holding the history can
//! recompute every hash: a rewritten event changes its own hash, a removed one
//! breaks the chain and the `case_version` sequence.

use gridcase_domain::{ActorRole, CaseId, Contact, Event, Filing};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

mod payload;

use payload::{KNOWN_TYPES, PayloadV1};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Version of the envelope's own shape.
pub const ENVELOPE_VERSION: u32 = 1;
/// The newest version of the payload shapes defined in this module. Version
/// 2 differs from 1 in one place: a `filed` payload's `resident_contact` is
/// sealed (`{"sealed": {"alg", "nonce", "ciphertext"}}`) rather than in
/// clear. Version 3 adds one field: the `basis` of a `dispatched`,
/// `reassigned` or `deadline_set` payload records each clock's `terms`
/// (`{"RESOLVE": {"working": true, "hours_of": "unit.…"}}`). Events are
/// stamped with the lowest version that reads them, so an older reader
/// skips (and counts) exactly the events it could not read right, and
/// every other event stays as version 1 wrote it. Reading an event of an
/// older version is upcasting it: version 1 and 2 deadline events have no
/// terms, and readers derive them from the policy at hand
/// (`gridcase_policy::Policy::clock_terms`). A field an older reader may pass
/// over and still read the rest right does not raise the version: a filing's
/// `outside_grid` flag (an older reader shows the case without the flag; the
/// hash is over the stored bytes, so its chain still verifies).
pub const PAYLOAD_VERSION: u32 = 3;

/// Who acted: a person, in a role, for an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub person: String,
    pub role: ActorRole,
    pub organisation: String,
}

/// One event as it is stored in the log and carried to every consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub envelope_version: u32,
    pub event_id: Uuid,
    pub case_id: CaseId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    /// Position in the case's history, 1 for the filing.
    pub case_version: u64,
    pub occurred_at: Timestamp,
    pub actor: Actor,
    /// The client's command id, when the event answers a lifecycle command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    pub payload: Value,
    pub prev_hash: Option<String>,
    pub hash: String,
}

/// The facts an envelope records about an event besides its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMeta {
    pub event_id: Uuid,
    pub case_id: CaseId,
    pub case_version: u64,
    pub occurred_at: Timestamp,
    pub actor: Actor,
    pub command_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?} (written by a newer version?)")]
    UnknownType(String),
    #[error("event type {event_type:?} has schema version {version}, this build reads up to {PAYLOAD_VERSION}")]
    UnsupportedVersion { event_type: String, version: u32 },
    #[error("malformed {event_type:?} payload: {source}")]
    Malformed { event_type: String, source: serde_json::Error },
    #[error("not a stored event: {0}")]
    Envelope(serde_json::Error),
}

impl StoredEvent {
    /// Wrap a domain event in an envelope chained to `prev_hash`.
    pub fn chained(event: &Event, meta: EventMeta, prev_hash: Option<String>) -> Self {
        let tagged = serde_json::to_value(PayloadV1::from_event(event)).expect("payloads serialise");
        let Value::Object(mut tagged) = tagged else { unreachable!("adjacently tagged enum is an object") };
        let event_type = match tagged.remove("type") {
            Some(Value::String(name)) => name,
            _ => unreachable!("tag is a string"),
        };
        let payload = tagged.remove("payload").unwrap_or(Value::Object(Default::default()));
        let mut stored = StoredEvent {
            envelope_version: ENVELOPE_VERSION,
            event_id: meta.event_id,
            case_id: meta.case_id,
            event_type,
            schema_version: schema_version(event),
            case_version: meta.case_version,
            occurred_at: meta.occurred_at,
            actor: meta.actor,
            command_id: meta.command_id,
            payload,
            prev_hash,
            hash: String::new(),
        };
        stored.hash = stored.compute_hash();
        stored
    }

    /// The domain event this envelope holds.
    pub fn decode(&self) -> Result<Event, DecodeError> {
        if !KNOWN_TYPES.contains(&self.event_type.as_str()) {
            return Err(DecodeError::UnknownType(self.event_type.clone()));
        }
        if self.schema_version > PAYLOAD_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                event_type: self.event_type.clone(),
                version: self.schema_version,
            });
        }
        let mut tagged = serde_json::Map::with_capacity(2);
        tagged.insert("type".to_owned(), Value::String(self.event_type.clone()));
        tagged.insert("payload".to_owned(), self.payload.clone());
        let payload: PayloadV1 = serde_json::from_value(Value::Object(tagged))
            .map_err(|source| DecodeError::Malformed { event_type: self.event_type.clone(), source })?;
        Ok(payload.into_event(self.case_id))
    }

    /// A copy fit to keep or show outside the event log: residents' contact
    /// details masked (138****5678). Its hash no longer recomputes; compare
    /// it with the redacted copy of the logged event instead.
    pub fn redacted(&self) -> StoredEvent {
        let mut copy = self.clone();
        if let Some(Value::Object(contact)) = copy.payload.get_mut("resident_contact") {
            if let Some(Value::String(phone)) = contact.get_mut("phone") {
                *phone = match gridcase_domain::PhoneNumber::parse(phone) {
                    Ok(parsed) => parsed.masked(),
                    Err(_) => "*".repeat(phone.chars().count()),
                };
            }
            if let Some(Value::String(name)) = contact.get_mut("name") {
                *name = match gridcase_domain::PersonName::parse(name) {
                    Ok(parsed) => parsed.masked(),
                    Err(_) => "*".repeat(name.chars().count()),
                };
            }
        }
        copy
    }

    /// The JSON of [`StoredEvent::redacted`], without copying an envelope
    /// that holds nothing to mask.
    pub fn redacted_json(&self) -> String {
        let bytes = if self.payload.get("resident_contact").is_some() {
            self.redacted().to_json_bytes()
        } else {
            self.to_json_bytes()
        };
        String::from_utf8(bytes).expect("JSON is UTF-8")
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("stored events serialise")
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(DecodeError::Envelope)
    }

    /// SHA-256 (lowercase hex) of the canonical bytes of every field but
    /// `hash`, as this build renders the envelope (what [`StoredEvent::chained`]
    /// stores). To verify an event someone else wrote, use [`hash_as_stored`]
    /// on the bytes read from the log.
    pub fn compute_hash(&self) -> String {
        canonical_hash(serde_json::to_value(self).expect("stored events serialise"))
    }
}

/// The hash of a stored envelope over its values exactly as stored: the JSON
/// read back as values (strings as written, so `…:22.910Z` stays
/// `…:22.910Z`), every field but `hash`, keys sorted by their UTF-8 bytes,
/// no whitespace. Never a re-rendering of parsed types.
pub fn hash_as_stored(bytes: &[u8]) -> Result<String, DecodeError> {
    let value: Value = serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
    Ok(canonical_hash(value))
}

fn canonical_hash(mut value: Value) -> String {
    if let Value::Object(map) = &mut value {
        map.remove("hash");
    }
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// JSON with object keys sorted by their UTF-8 bytes and no whitespace,
/// independent of how the map type orders its keys.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (index, (key, value)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Where a case's history fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("event {case_version} ({event_id}) does not match its hash: it was altered")]
    Altered { case_version: u64, event_id: Uuid },
    #[error("expected event {expected} next, found {found}: events are missing or out of order")]
    Gap { expected: u64, found: u64 },
    #[error("event {case_version} ({event_id}) does not chain to the event before it")]
    Unchained { case_version: u64, event_id: Uuid },
    #[error("event {case_version} ({event_id}) belongs to case {other}, not this one")]
    ForeignEvent { case_version: u64, event_id: Uuid, other: CaseId },
}

/// The lowest payload version that reads `event` right: 2 for a filing
/// whose contact details are sealed, 3 for a deadline event that records
/// how its clocks count time (an older reader would pass over the terms
/// and count them by its own policy), 1 for everything else.
fn schema_version(event: &Event) -> u32 {
    let records_terms =
        |basis: &Option<gridcase_domain::DeadlineBasis>| basis.as_ref().is_some_and(|b| !b.terms.is_empty());
    match event {
        Event::Filed(Filing { contact: Some(Contact::Sealed(_)), .. }) => 2,
        Event::Dispatched { basis, .. } | Event::Reassigned { basis, .. } | Event::DeadlineSet { basis, .. }
            if records_terms(basis) =>
        {
            3
        }
        _ => 1,
    }
}

/// Verify one case's whole history, in order: every hash recomputes, versions
/// run 1, 2, 3… and each event names the hash of the one before it. The
/// hashes are recomputed from the values as this build renders them: for
/// events read from the log use [`verify_chain_as_stored`].
pub fn verify_chain(history: &[StoredEvent]) -> Result<(), ChainBreak> {
    verify_chain_with(history.iter().map(|event| (event, event.compute_hash())))
}

/// Verify a history read from the log, each event with the bytes it was
/// stored as: hashes are recomputed over the stored values ([`hash_as_stored`]).
pub fn verify_chain_as_stored<'a>(
    history: impl IntoIterator<Item = (&'a StoredEvent, &'a [u8])>,
) -> Result<(), ChainBreak> {
    verify_chain_with(history.into_iter().map(|(event, bytes)| {
        // Bytes that decoded into `event` parse as JSON again.
        (event, hash_as_stored(bytes).unwrap_or_default())
    }))
}

fn verify_chain_with<'a>(history: impl Iterator<Item = (&'a StoredEvent, String)>) -> Result<(), ChainBreak> {
    let mut previous: Option<&StoredEvent> = None;
    let mut first_case = None;
    for (index, (event, recomputed)) in history.enumerate() {
        let expected = index as u64 + 1;
        let case_id = *first_case.get_or_insert(event.case_id);
        if event.case_id != case_id {
            return Err(ChainBreak::ForeignEvent {
                case_version: event.case_version,
                event_id: event.event_id,
                other: event.case_id,
            });
        }
        if recomputed != event.hash {
            return Err(ChainBreak::Altered { case_version: event.case_version, event_id: event.event_id });
        }
        if event.case_version != expected {
            return Err(ChainBreak::Gap { expected, found: event.case_version });
        }
        if event.prev_hash.as_deref() != previous.map(|p| p.hash.as_str()) {
            return Err(ChainBreak::Unchained { case_version: event.case_version, event_id: event.event_id });
        }
        previous = Some(event);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
