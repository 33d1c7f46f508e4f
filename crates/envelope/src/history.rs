//! Case histories as read from the log, free of IO: each stored event
//! with its stream sequence and its bytes as stored ([`Positioned`]), where
//! a case stands ([`Head`]), the fold of a history into the case ([`fold`]),
//! and the checks of a history: hashes and chain ([`verify_history`]), and
//! whether it still runs from the case's first event ([`check_links`]).

use bytes::Bytes;
use gridcase_domain::{Case, CaseId};

use crate::schema::{DecodeError, StoredEvent};
use crate::subject::CaseSubject;

/// A stored event, where it sits in the stream, and the bytes it is stored
/// as (its hash is verified over those: [`verify_history`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Positioned {
    pub stream_sequence: u64,
    pub event: StoredEvent,
    pub stored: Bytes,
}

/// Verify a case's history as read from the log: the hash of every event
/// over its values as stored, the versions and the chain.
pub fn verify_history(history: &[Positioned]) -> Result<(), crate::schema::ChainBreak> {
    crate::schema::verify_chain_as_stored(history.iter().map(|p| (&p.event, p.stored.as_ref())))
}

/// Where a case stands in the log: what the next event chains to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub case_id: CaseId,
    pub subject: CaseSubject,
    /// The stream sequence of the case's last event (0: no event yet).
    pub last_sequence: u64,
    /// The hash of the case's last event (none: no event yet).
    pub last_hash: Option<String>,
    /// The case version of its last event (0: no event yet).
    pub version: u64,
}

impl Head {
    /// A case not filed yet: its filing must find the subject empty.
    pub fn new_case(case_id: CaseId, subject: CaseSubject) -> Self {
        Self { case_id, subject, last_sequence: 0, last_hash: None, version: 0 }
    }

    /// The head after `positioned`, the case's newest event.
    pub fn after(&self, positioned: &Positioned) -> Self {
        Self {
            case_id: self.case_id,
            subject: self.subject.clone(),
            last_sequence: positioned.stream_sequence,
            last_hash: Some(positioned.event.hash.clone()),
            version: positioned.event.case_version,
        }
    }
}

/// Fold a history into the case. Events of a type this version does not
/// know (written by a newer one) are passed over, as every consumer of the
/// log passes them over.
pub fn fold(history: &[Positioned]) -> Result<Option<Case>, DecodeError> {
    let mut state = None;
    for positioned in history {
        match positioned.event.decode() {
            Ok(event) => state = gridcase_domain::evolve(state, &event),
            Err(DecodeError::UnknownType(_) | DecodeError::UnsupportedVersion { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(state)
}

/// Whether `history` runs from the case's first event with nothing missing:
/// versions 1, 2, 3… each chained to the hash of the one before. Hashes are
/// not recomputed here (`verify_history` does that); this only sees what
/// the log lost.
pub fn check_links(history: &[Positioned]) -> Result<(), String> {
    let mut previous: Option<&Positioned> = None;
    for (index, positioned) in history.iter().enumerate() {
        let event = &positioned.event;
        let expected = index as u64 + 1;
        if event.case_version != expected {
            return Err(match previous {
                None => format!(
                    "the first event the log holds (stream sequence {}) is version {}: the case's first {} event(s) are gone",
                    positioned.stream_sequence,
                    event.case_version,
                    event.case_version.saturating_sub(1)
                ),
                Some(before) => format!(
                    "version {} (stream sequence {}) follows version {} (stream sequence {}): events are missing",
                    event.case_version, positioned.stream_sequence, before.event.case_version, before.stream_sequence
                ),
            });
        }
        let chained = match previous {
            None => event.prev_hash.is_none(),
            Some(before) => event.prev_hash.as_deref() == Some(before.event.hash.as_str()),
        };
        if !chained {
            return Err(format!(
                "version {} (stream sequence {}) does not chain to the event before it",
                event.case_version, positioned.stream_sequence
            ));
        }
        previous = Some(positioned);
    }
    Ok(())
}
