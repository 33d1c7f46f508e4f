//! The case stream's writer of the group commit ([`crate::group`]): an
//! append is one case's events, the first expecting the subject's last
//! sequence; a lone single event goes the single path
//! ([`EventLog::append_single`]), anything else as one atomic batch.
//!
//! What an atomic batch cannot tell, the writer finds out:
//!
//! * **A refused batch names no culprit.** Each append in it is looked up:
//!   the event right after its expected position is its own (an earlier
//!   send landed: stored), another one (a conflict), or none (innocent: sent
//!   again in the next batch). A refusal that no sequence explains (a
//!   message too large, …) sends each append alone, so each gets its own
//!   answer.
//! * **No message ids.** Batches carry no `Nats-Msg-Id`; a batch sent again
//!   after its answer was lost is refused on the expected sequences and
//!   resolved as above, by event id and hash.
//! * **One subject, one batch.** A chain of events of one case
//!   ([`crate::store::CaseStore::commit_chain`]) is one append whose first
//!   event carries the expectation.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::group::{AtomicError, GroupCommit, Queued, Settled, Writer, publish_atomic};
use crate::log::{
    AppendError, AppendOutcome, ERR_DUPLICATE_IN_PROCESS, ERR_SUBJECT_SEQUENCE_NOT_READY, ERR_WRONG_LAST_SEQUENCE,
    EventLog, LogError, Sending,
};
use gridcase_envelope::schema::StoredEvent;
use gridcase_envelope::subject::CaseSubject;

/// The batch arrived incomplete (a message lost on the way): send it again.
const ERR_INCOMPLETE_BATCH: u64 = 10176;

/// One event ready to send: its stored form, bytes and headers (CloudEvents,
/// trace context).
pub(crate) struct Encoded {
    pub(crate) stored: StoredEvent,
    pub(crate) payload: Bytes,
    pub(crate) headers: HeaderMap,
}

/// One caller's append: events of one case, the first expecting the
/// subject's last sequence, the rest following it.
struct Submission {
    subject: CaseSubject,
    expected_last: u64,
    events: Vec<Encoded>,
    sending: Sending,
    /// Send in a batch of its own (a refusal no sequence explained).
    alone: bool,
    queued_at: Instant,
    answer: oneshot::Sender<Answer>,
}

impl Queued for Submission {
    fn subject(&self) -> &str {
        self.subject.as_str()
    }
    fn size(&self) -> usize {
        self.events.len()
    }
    fn alone(&self) -> bool {
        self.alone
    }
    fn sent_before(&self) -> bool {
        self.sending.sent > 0
    }
    fn queued_at(&self) -> Instant {
        self.queued_at
    }
}

/// A submission's events back, with one outcome per event or the error.
pub(crate) type Answer = (Vec<Encoded>, Result<Vec<AppendOutcome>, AppendError>);

/// What became of a submission's send.
enum Verdict {
    Answer(Result<Vec<AppendOutcome>, AppendError>),
    /// Send it again: after a pause (the log is busy or unreachable) or at once (it was innocent).
    Again {
        pause: bool,
    },
}

/// The handle of the group-commit task of one case store.
pub(crate) struct Batcher {
    inbox: mpsc::UnboundedSender<Submission>,
    append_deadline: Duration,
}

impl Batcher {
    /// Start the task (it ends when the handle is dropped and its work is done).
    pub(crate) fn start(log: EventLog) -> Self {
        let (inbox, queue) = mpsc::unbounded_channel();
        let append_deadline = log.settings().append_deadline;
        let settings: GroupCommit = log.settings().group_commit;
        tokio::spawn(crate::group::run(CaseWriter { log }, settings, queue));
        Self { inbox, append_deadline }
    }

    /// Append `events` to `subject`, the first expecting `expected_last`.
    /// The answer has one outcome per event, in order, and the events back.
    pub(crate) async fn append(&self, subject: CaseSubject, expected_last: u64, events: Vec<Encoded>) -> Answer {
        let (answer, answered) = oneshot::channel();
        let submission = Submission {
            subject,
            expected_last,
            events,
            sending: Sending::new(self.append_deadline),
            alone: false,
            queued_at: Instant::now(),
            answer,
        };
        let stopped = || AppendError::Unavailable("the case store's writer has stopped".into());
        if let Err(mpsc::error::SendError(submission)) = self.inbox.send(submission) {
            return (submission.events, Err(stopped()));
        }
        // The task answers every submission it takes; it ends only when the
        // store is dropped, which this borrow prevents.
        answered.await.unwrap_or_else(|_| (Vec::new(), Err(stopped())))
    }
}

/// The case stream's side of the group commit.
#[derive(Clone)]
struct CaseWriter {
    log: EventLog,
}

impl Writer for CaseWriter {
    type Submission = Submission;

    async fn write(&self, batch: Vec<Submission>) -> Vec<Settled<Submission>> {
        send(self.log.clone(), batch)
            .await
            .into_iter()
            .map(|(submission, verdict)| settle(&self.log, submission, verdict))
            .collect()
    }
}

/// Answer a submission, or send it again (within its deadline).
fn settle(log: &EventLog, mut submission: Submission, verdict: Verdict) -> Settled<Submission> {
    match verdict {
        Verdict::Answer(answer) => {
            // The caller may have gone (a cancelled request): the outcome stands.
            let _ = submission.answer.send((submission.events, answer));
            Settled::Done
        }
        Verdict::Again { .. } if submission.sending.retry.attempt_time(log.settings().publish_timeout).is_none() => {
            let failure = submission.sending.retry.last_failure.clone();
            let _ = submission.answer.send((submission.events, Err(AppendError::Unavailable(failure))));
            Settled::Done
        }
        Verdict::Again { pause: false } => Settled::Again(submission),
        Verdict::Again { pause: true } => Settled::Later(Box::pin(async move {
            submission.sending.retry.pause().await;
            submission
        })),
    }
}

/// Events per write (a lone append counts one), the group commit's measure.
pub const METRIC_WRITE_EVENTS: &str = "gridcase_append_write_events";

/// Send one write: a lone single event the single path (with its own
/// retries), anything else as one atomic batch (one attempt).
async fn send(log: EventLog, mut batch: Vec<Submission>) -> Vec<(Submission, Verdict)> {
    let events: usize = batch.iter().map(|s| s.events.len()).sum();
    metrics::histogram!(METRIC_WRITE_EVENTS).record(events as f64);
    if batch.len() == 1 && batch[0].events.len() == 1 {
        let mut submission = batch.pop().expect("one submission");
        let event = &submission.events[0];
        let answer = log
            .append_single(
                &submission.subject,
                submission.expected_last,
                &event.stored,
                event.payload.clone(),
                event.headers.clone(),
                &mut submission.sending,
            )
            .await
            .map(|outcome| vec![outcome]);
        return vec![(submission, Verdict::Answer(answer))];
    }
    for submission in &mut batch {
        submission.sending.sent += 1;
    }
    let wait = batch
        .iter()
        .filter_map(|s| s.sending.retry.attempt_time(log.settings().publish_timeout))
        .min()
        .unwrap_or(Duration::ZERO);
    let started = Instant::now();
    let answer = match tokio::time::timeout(wait, publish_batch(&log, &batch)).await {
        Ok(answer) => answer,
        Err(_) => Err(BatchFailure::NoAnswer("no answer in time".into())),
    };
    debug!(events, appends = batch.len(), elapsed = ?started.elapsed(), ok = answer.is_ok(), "batch written");
    match answer {
        Ok(first_sequence) => {
            let mut sequence = first_sequence;
            batch
                .into_iter()
                .map(|submission| {
                    let outcomes = submission
                        .events
                        .iter()
                        .map(|_| {
                            let outcome = AppendOutcome {
                                stream_sequence: sequence,
                                already_stored: false,
                                stored_before_this_call: false,
                            };
                            sequence += 1;
                            outcome
                        })
                        .collect();
                    (submission, Verdict::Answer(Ok(outcomes)))
                })
                .collect()
        }
        Err(BatchFailure::NoAnswer(failure)) => {
            warn!(appends = batch.len(), %failure, "a batch got no answer; its appends go again");
            for submission in &mut batch {
                submission.sending.unanswered = true;
            }
            again(batch, &failure, true)
        }
        Err(BatchFailure::Busy(failure)) => {
            debug!(appends = batch.len(), %failure, "the log cannot take the batch now; trying again");
            again(batch, &failure, true)
        }
        Err(BatchFailure::Refused { code, description }) => refused(&log, batch, code, description).await,
    }
}

fn again(batch: Vec<Submission>, failure: &str, pause: bool) -> Vec<(Submission, Verdict)> {
    batch
        .into_iter()
        .map(|mut submission| {
            submission.sending.retry.failed(failure.to_owned());
            (submission, Verdict::Again { pause })
        })
        .collect()
}

/// A batch the log refused: who caused it?
async fn refused(
    log: &EventLog,
    batch: Vec<Submission>,
    code: Option<u64>,
    description: String,
) -> Vec<(Submission, Verdict)> {
    let findings = futures::future::join_all(batch.iter().map(|submission| resolve(log, submission))).await;
    let explained = findings.iter().any(|f| matches!(f, Finding::Stored(_) | Finding::Conflict { .. }));
    let by_sequence = matches!(code, Some(ERR_WRONG_LAST_SEQUENCE | ERR_SUBJECT_SEQUENCE_NOT_READY));
    let several = batch.len() > 1;
    debug!(appends = batch.len(), ?code, %description, explained, "a batch was refused");
    batch
        .into_iter()
        .zip(findings)
        .map(|(mut submission, finding)| {
            let verdict = match finding {
                Finding::Stored(outcomes) => Verdict::Answer(Ok(outcomes)),
                Finding::Conflict { found } => {
                    Verdict::Answer(Err(AppendError::Conflict { expected: submission.expected_last, found }))
                }
                Finding::Unreadable(failure) => {
                    submission.sending.retry.failed(failure);
                    Verdict::Again { pause: true }
                }
                // Another append in the batch was the cause: at once, without it.
                Finding::Innocent if explained => Verdict::Again { pause: false },
                // A sequence error nobody in the batch explains: an append to
                // one of these cases from elsewhere is still being stored.
                Finding::Innocent if by_sequence => {
                    submission.sending.retry.failed(description.clone());
                    Verdict::Again { pause: true }
                }
                // Refused for a reason of one message: each goes alone, to its own answer.
                Finding::Innocent if several => {
                    submission.alone = true;
                    Verdict::Again { pause: false }
                }
                Finding::Innocent => Verdict::Answer(Err(LogError::Other(description.clone()).into())),
            };
            (submission, verdict)
        })
        .collect()
}

enum Finding {
    /// The submission's events are in the log (an earlier send landed, or
    /// another writer stored these very events).
    Stored(Vec<AppendOutcome>),
    /// Another event follows the expected position.
    Conflict { found: Option<u64> },
    /// Nothing follows the expected position: the submission did not cause the refusal.
    Innocent,
    /// The log could not be read.
    Unreadable(String),
}

/// Look at what follows a submission's expected position.
async fn resolve(log: &EventLog, submission: &Submission) -> Finding {
    let mut after = submission.expected_last;
    let mut outcomes = Vec::with_capacity(submission.events.len());
    for (index, event) in submission.events.iter().enumerate() {
        let next = match log.next_after(&submission.subject, after).await {
            Ok(next) => next,
            Err(error) => return Finding::Unreadable(error.to_string()),
        };
        let ours = event.stored.event_id.to_string();
        match next {
            None if index == 0 && submission.expected_last == 0 => {
                // A new case: its id may be taken in another township.
                return match log.locate(&submission.subject.case_id()).await {
                    Ok(None) => Finding::Innocent,
                    Ok(Some(_)) => Finding::Conflict { found: None },
                    Err(error) => Finding::Unreadable(error.to_string()),
                };
            }
            None if index == 0 => return Finding::Innocent,
            Some((sequence, Some(id))) if id == ours => {
                // Stored by this call only if an earlier send that got no
                // answer stored this very event (another writer may have
                // stored one byte for byte the same: a second dispatcher).
                let before_this_call = !submission.sending.unanswered
                    || match log.holds_event(sequence, &event.stored.hash).await {
                        Ok(holds) => !holds,
                        Err(error) => return Finding::Unreadable(error.to_string()),
                    };
                outcomes.push(AppendOutcome {
                    stream_sequence: sequence,
                    already_stored: true,
                    stored_before_this_call: before_this_call,
                });
                after = sequence;
            }
            // Another event there, or only the start of the chain stored
            // (another writer took its first step alone): the case moved on.
            other => return Finding::Conflict { found: other.map(|(sequence, _)| sequence) },
        }
    }
    Finding::Stored(outcomes)
}

enum BatchFailure {
    /// No answer: the batch may or may not be stored.
    NoAnswer(String),
    /// Not stored; the log is busy or has no leader: try again later.
    Busy(String),
    /// Not stored, for a reason the log named.
    Refused { code: Option<u64>, description: String },
}

/// Publish the submissions as one atomic batch; the stream sequence of its first event.
async fn publish_batch(log: &EventLog, batch: &[Submission]) -> Result<u64, BatchFailure> {
    let total: usize = batch.iter().map(|s| s.events.len()).sum();
    // Handing hundreds of messages to the connection would spend the task's
    // cooperative budget and queue it behind every other task (under load,
    // milliseconds per yield): the hand-over runs unconstrained, it never blocks.
    let ack = tokio::task::unconstrained(hand_over(log, batch)).await?;
    match ack.await {
        Ok(ack) if ack.batch_size == Some(total as u64) && ack.sequence >= total as u64 => {
            Ok(ack.sequence + 1 - total as u64)
        }
        Ok(ack) => Err(BatchFailure::Refused {
            code: None,
            description: format!("unexpected batch acknowledgement: {} of {total} events", ack.batch_size.unwrap_or(0)),
        }),
        Err(error) => Err(classify(error)),
    }
}

/// Send the batch's messages, the last one committing it; its acknowledgement to come.
async fn hand_over(log: &EventLog, batch: &[Submission]) -> Result<jetstream::context::PublishAckFuture, BatchFailure> {
    let mut messages = Vec::with_capacity(batch.iter().map(|s| s.events.len()).sum());
    for submission in batch {
        for (index, event) in submission.events.iter().enumerate() {
            let mut headers = event.headers.clone();
            if index == 0 {
                headers.insert(
                    async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    submission.expected_last.to_string().as_str(),
                );
                if submission.expected_last == 0 {
                    // A new case: no event of this case id in any township.
                    let locator = CaseSubject::locator(&submission.subject.case_id());
                    headers.insert(crate::log::EXPECTED_SUBJECT_FOR_SEQUENCE, locator.as_str());
                }
            }
            messages.push((submission.subject.to_string(), headers, event.payload.clone()));
        }
    }
    publish_atomic(log.context(), messages).await.map_err(|error| match error {
        AtomicError::Connection(failure) => BatchFailure::NoAnswer(failure),
        AtomicError::Publish(error) => classify(error),
    })
}

fn classify(error: jetstream::context::PublishError) -> BatchFailure {
    let code = crate::log::jetstream_error(&error).map(|e| (e.error_code().0, e.code()));
    match error.kind() {
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => BatchFailure::NoAnswer(error.to_string()),
        PublishErrorKind::StreamNotFound | PublishErrorKind::MaxAckPending => BatchFailure::Busy(error.to_string()),
        PublishErrorKind::WrongLastSequence => {
            BatchFailure::Refused { code: Some(ERR_WRONG_LAST_SEQUENCE), description: error.to_string() }
        }
        _ => match code {
            Some((_, 503 | 429)) | Some((ERR_INCOMPLETE_BATCH | ERR_DUPLICATE_IN_PROCESS, _)) => {
                BatchFailure::Busy(error.to_string())
            }
            Some((code, _)) => BatchFailure::Refused { code: Some(code), description: error.to_string() },
            None => BatchFailure::Refused { code: None, description: error.to_string() },
        },
    }
}
