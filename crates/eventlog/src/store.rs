//! The case store: the one write path of gridcase's events. Intake
//! (filing), the lifecycle API, the dispatcher and the test helpers all go
//! through it; nothing else decides an event (the operator's copies,
//! `gridctl log copy|reseal` and `backup restore`, move stored messages).
//!
//! * [`CaseStore::load`] reads a case's history and folds it: the case, its
//!   subject, where it stands in the stream ([`Head`]).
//! * [`CaseStore::commit`] chains one decided event after the head (version,
//!   hash chain), appends it with the expected per-subject sequence
//!   (gathered with concurrent commits into one atomic batch: [`crate::group`],
//!   the case stream's writer in [`crate::batch`]), and
//!   interprets the log's answer once: [`Committed::Stored`] (by this call),
//!   [`Committed::AlreadyStored`] (this very event, same id, was in the log
//!   before this call: a retry of something that had landed, or another
//!   instance taking the same step), [`CommitError::Conflict`] (the case
//!   moved on), [`CommitError::Unavailable`] (nothing is known to be
//!   stored; the same commit may be tried again), [`CommitError::Refused`]
//!   (the log will never take it) or [`CommitError::Stopped`] (the log no
//!   longer keeps its history: nothing was sent).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use gridcase_domain::{Case, CaseId, Event};
use jiff::Timestamp;
use uuid::Uuid;

use gridcase_envelope::schema::{Actor, DecodeError, EventMeta, StoredEvent};
use gridcase_envelope::{CaseSubject, Head, Positioned, check_links, fold, verify_history};

use crate::batch::{Batcher, Encoded};
use crate::log::{AppendError, EventLog, LogError, Retry};

pub const METRIC_APPENDS: &str = "gridcase_appends_total";
pub const METRIC_APPEND_DURATION: &str = "gridcase_append_duration_seconds";
/// The outcomes of a commit, as the metrics label them.
pub const OUTCOMES: [&str; 6] = ["stored", "replayed", "conflict", "unavailable", "refused", "stopped"];

/// Register the case store's metrics at zero (the process's exporter calls it).
pub fn register_metrics() {
    crate::keys::register_metrics();
    metrics::describe_counter!(
        METRIC_APPENDS,
        "Appends to the case log by outcome: stored (by this call), replayed (the same event was already \
         stored), conflict, unavailable (not durable within the append deadline), refused, stopped (not sent: \
         the log no longer keeps its history)."
    );
    metrics::describe_histogram!(
        METRIC_APPEND_DURATION,
        metrics::Unit::Seconds,
        "Append latency, retries included, by outcome."
    );
    for outcome in OUTCOMES {
        metrics::counter!(METRIC_APPENDS, "outcome" => outcome).absolute(0);
        // Registered, a histogram is exported (empty) before its first sample.
        let _ = metrics::histogram!(METRIC_APPEND_DURATION, "outcome" => outcome);
    }
    metrics::describe_counter!(
        METRIC_CHAIN_BREAKS,
        "Case histories found broken when loaded: the log no longer holds a case's first events, or a gap."
    );
    metrics::counter!(METRIC_CHAIN_BREAKS).absolute(0);
    crate::integrity::register_metrics();
    metrics::describe_histogram!(
        crate::batch::METRIC_WRITE_EVENTS,
        "Events per write to the case log: an atomic batch of a group commit, or 1 for an append sent alone."
    );
    let _ = metrics::histogram!(crate::batch::METRIC_WRITE_EVENTS);
    use crate::attachments::METRIC_ATTACHMENT_BYTES;
    metrics::describe_counter!(
        METRIC_ATTACHMENT_BYTES,
        metrics::Unit::Bytes,
        "Attachment bytes this process stored (new content only)."
    );
    metrics::counter!(METRIC_ATTACHMENT_BYTES).absolute(0);
}

/// A commit's outcome as metrics and spans name it (one of [`OUTCOMES`]).
pub fn outcome(result: &Result<Committed, CommitError>) -> &'static str {
    match result {
        Ok(committed) => committed.outcome(),
        Err(error) => error_outcome(error),
    }
}

/// A failed commit's outcome as metrics and spans name it.
pub fn error_outcome(error: &CommitError) -> &'static str {
    match error {
        CommitError::Conflict => "conflict",
        CommitError::Unavailable(_) => "unavailable",
        CommitError::Refused(_) => "refused",
        CommitError::Stopped(_) => "stopped",
    }
}

/// The case-id → subject cache is cleared when it grows past this (a
/// case's subject never changes, so a miss only costs one lookup).
const SUBJECT_CACHE_LIMIT: usize = 100_000;

/// A case as its history folds.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub head: Head,
    pub history: Vec<Positioned>,
    pub case: Case,
}

impl Loaded {
    /// The position in the history of the event a client command id
    /// produced, if any.
    pub fn command(&self, command_id: &str) -> Option<usize> {
        self.history.iter().position(|p| p.event.command_id.as_deref() == Some(command_id))
    }
}

/// Who, when and under which id: what the envelope records beside the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub event_id: Uuid,
    pub occurred_at: Timestamp,
    pub actor: Actor,
    pub command_id: Option<String>,
}

/// A successful commit.
// Returned once per commit and consumed at once: boxing would only add an allocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Committed {
    /// This call stored the event.
    Stored(Positioned),
    /// The event (same id) was in the log before this call: nothing new was
    /// written. Its stream sequence.
    AlreadyStored(u64),
}

impl Committed {
    /// The outcome as metrics and spans name it.
    pub fn outcome(&self) -> &'static str {
        match self {
            Committed::Stored(_) => "stored",
            Committed::AlreadyStored(_) => "replayed",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The case is no longer where the head says: someone else appended first.
    #[error("the case changed concurrently")]
    Conflict,
    /// No definite answer: the event may or may not be stored; committing the
    /// same event (same id) again is safe.
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
    /// The log refused the event for good (the stream misconfigured, the
    /// message too large, …): sending it again changes nothing.
    #[error("the event log refused the event: {0}")]
    Refused(String),
    /// Nothing was sent: a stream this process writes to no longer keeps
    /// its history ([`crate::integrity`]), and nothing is written on top of
    /// it until an operator restores it.
    #[error("writes to the event log are stopped: {0}")]
    Stopped(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Log(#[from] LogError),
    /// A stored event of a known type that does not decode: a broken invariant.
    #[error("case {case_id}: {source}")]
    Undecodable { case_id: CaseId, source: DecodeError },
    /// The case's history as the log holds it does not start at its filing
    /// or skips events: the log lost part of it. Nothing may be appended on
    /// top of it.
    #[error("case {case_id}: its history is broken: {detail}")]
    ChainBroken { case_id: CaseId, detail: String },
}

/// Histories found broken on loading (a case's chain without its head or with a gap).
pub const METRIC_CHAIN_BREAKS: &str = "gridcase_chain_breaks_total";

pub struct CaseStore {
    log: EventLog,
    subjects: Mutex<HashMap<CaseId, CaseSubject>>,
    /// The group-commit task, started by the first commit (inside the runtime).
    batcher: OnceLock<Batcher>,
}

impl CaseStore {
    pub fn new(log: EventLog) -> Self {
        Self { log, subjects: Mutex::new(HashMap::new()), batcher: OnceLock::new() }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Run a read of the write path, trying again while the log is
    /// unavailable (no stream leader for a moment) until the append deadline.
    async fn read<T, F>(&self, what: impl Fn() -> F) -> Result<T, LogError>
    where
        F: std::future::Future<Output = Result<T, LogError>>,
    {
        let settings = self.log.settings();
        let mut retry = Retry::new(settings.append_deadline);
        loop {
            // Each request has its own time-out (the JetStream context's);
            // an attempt (a whole history, many requests) ends by the deadline.
            let Some(wait) = retry.attempt_time(settings.append_deadline) else {
                return Err(LogError::Unavailable(retry.last_failure));
            };
            let answer = tokio::time::timeout(wait, what())
                .await
                .unwrap_or_else(|_| Err(LogError::Unavailable("no answer in time".into())));
            match answer {
                Err(LogError::Unavailable(failure)) => {
                    retry.failed(failure);
                    retry.pause().await;
                }
                answer => return answer,
            }
        }
    }

    /// A case's subject from its id alone (cached: it never changes).
    pub async fn locate(&self, case_id: &CaseId) -> Result<Option<CaseSubject>, LogError> {
        if let Some(subject) = self.subjects.lock().expect("subject cache").get(case_id) {
            return Ok(Some(subject.clone()));
        }
        let Some(subject) = self.read(|| self.log.locate(case_id)).await? else { return Ok(None) };
        let mut cache = self.subjects.lock().expect("subject cache");
        if cache.len() >= SUBJECT_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(*case_id, subject.clone());
        Ok(Some(subject))
    }

    /// The case with this id, folded from its history; `None` if it was
    /// never filed.
    pub async fn load(&self, case_id: &CaseId) -> Result<Option<Loaded>, LoadError> {
        let Some(subject) = self.locate(case_id).await? else { return Ok(None) };
        self.load_subject(*case_id, subject).await
    }

    /// The case on `subject`, folded from its history.
    pub async fn load_subject(&self, case_id: CaseId, subject: CaseSubject) -> Result<Option<Loaded>, LoadError> {
        let history = self.read(|| self.log.history(&subject)).await?;
        // Whole from the first event, and every event's hash over its bytes
        // as stored: a history the log lost or altered gets nothing appended.
        if let Err(detail) = check_links(&history).and_then(|()| verify_history(&history).map_err(|b| b.to_string())) {
            metrics::counter!(METRIC_CHAIN_BREAKS).increment(1);
            tracing::error!(%case_id, %subject, %detail, "a case's history in the log is broken: nothing is appended to it");
            return Err(LoadError::ChainBroken { case_id, detail });
        }
        let Some(case) = fold(&history).map_err(|source| LoadError::Undecodable { case_id, source })? else {
            return Ok(None);
        };
        let head = match history.last() {
            Some(last) => Head::new_case(case_id, subject).after(last),
            None => Head::new_case(case_id, subject),
        };
        Ok(Some(Loaded { head, history, case }))
    }

    /// Chain `event` as the case's next event after `head` and append it.
    pub async fn commit(&self, head: &Head, event: &Event, provenance: Provenance) -> Result<Committed, CommitError> {
        let mut committed = self.commit_chain(head, vec![(event, provenance)]).await?;
        Ok(committed.pop().expect("one outcome per event"))
    }

    /// Chain `steps` as the case's next events after `head`, each chained to
    /// the one before, and append them together (one atomic batch): all of
    /// them are stored or none. One outcome per event, in order. If only the
    /// start of the chain is found in the log (another writer took the first
    /// step alone), the answer is [`CommitError::Conflict`]: load and decide again.
    pub async fn commit_chain(
        &self,
        head: &Head,
        steps: Vec<(&Event, Provenance)>,
    ) -> Result<Vec<Committed>, CommitError> {
        assert!(!steps.is_empty(), "a commit has at least one event");
        let started = std::time::Instant::now();
        if let Err(problems) = self.log.integrity().writable() {
            for _ in &steps {
                metrics::counter!(METRIC_APPENDS, "outcome" => "stopped").increment(1);
            }
            return Err(CommitError::Stopped(problems));
        }
        let mut encoded = Vec::with_capacity(steps.len());
        let mut spans = Vec::with_capacity(steps.len());
        let (mut version, mut previous) = (head.version, head.last_hash.clone());
        for (event, provenance) in steps {
            version += 1;
            let stored = StoredEvent::chained(
                event,
                EventMeta {
                    event_id: provenance.event_id,
                    case_id: head.case_id,
                    case_version: version,
                    occurred_at: provenance.occurred_at,
                    actor: provenance.actor,
                    command_id: provenance.command_id,
                },
                previous.take(),
            );
            previous = Some(stored.hash.clone());
            let span = tracing::info_span!(
                "eventlog.append",
                case_id = %head.case_id,
                township = head.subject.township(),
                event_type = %stored.event_type,
                case_version = stored.case_version,
                outcome = tracing::field::Empty,
                sequence = tracing::field::Empty,
            );
            // Each event carries its own append span's context.
            let mut headers = crate::cloudevents::headers(&stored);
            span.in_scope(|| crate::trace::inject(&mut headers));
            // Serialised once: the bytes sent are the event's stored form.
            let payload = bytes::Bytes::from(stored.to_json_bytes());
            encoded.push(Encoded { stored, payload, headers });
            spans.push(span);
        }
        let batcher = self.batcher.get_or_init(|| Batcher::start(self.log.clone()));
        let appended = batcher.append(head.subject.clone(), head.last_sequence, encoded);
        let (encoded, answer) = tracing::Instrument::instrument(appended, spans[0].clone()).await;
        let answer = match answer {
            Ok(outcomes) => Ok(outcomes
                .into_iter()
                .zip(encoded)
                .map(|(outcome, event)| {
                    if outcome.stored_before_this_call {
                        Committed::AlreadyStored(outcome.stream_sequence)
                    } else {
                        Committed::Stored(Positioned {
                            stream_sequence: outcome.stream_sequence,
                            event: event.stored,
                            stored: event.payload,
                        })
                    }
                })
                .collect::<Vec<_>>()),
            Err(AppendError::Conflict { .. }) => Err(CommitError::Conflict),
            Err(AppendError::Unavailable(error)) => Err(CommitError::Unavailable(error)),
            Err(AppendError::Log(error @ LogError::Unavailable(_))) => Err(CommitError::Unavailable(error.to_string())),
            Err(AppendError::Log(error)) => Err(CommitError::Refused(error.to_string())),
        };
        let elapsed = started.elapsed().as_secs_f64();
        for (index, span) in spans.iter().enumerate() {
            let outcome = match &answer {
                Ok(committed) => committed[index].outcome(),
                Err(error) => error_outcome(error),
            };
            span.record("outcome", outcome);
            match answer.as_ref().map(|committed| &committed[index]) {
                Ok(Committed::Stored(positioned)) => span.record("sequence", positioned.stream_sequence),
                Ok(Committed::AlreadyStored(sequence)) => span.record("sequence", sequence),
                Err(_) => span,
            };
            metrics::counter!(METRIC_APPENDS, "outcome" => outcome).increment(1);
            metrics::histogram!(METRIC_APPEND_DURATION, "outcome" => outcome).record(elapsed);
        }
        answer
    }
}
