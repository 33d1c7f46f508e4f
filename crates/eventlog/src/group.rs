//! Group commit, the one mechanism for every stream gridcase appends to in
//! bulk (the case stream's events, the key bucket's new keys): submissions
//! that arrive while a write is in flight go out together as one JetStream
//! atomic batch ([`publish_atomic`]), so they share one fsync (nats-server
//! 2.15 and later), and each caller still gets its own answer.
//!
//! One task per store owns the queue ([`run`]). It sends a submission at
//! once when nothing holds it back (low load costs a channel hop, not a
//! wait), and gathers whatever queued while earlier writes were in flight
//! into the next batch, up to [`GroupCommit::max_events`] messages. Two
//! submissions to one subject never share a batch or fly at once (the
//! server could not check the second's expectation). What a write does and
//! what its answer means is the [`Writer`]'s: the case stream's resolves a
//! refused batch append by append (`batch`); the key bucket's sends each key
//! of a refused batch alone (`keys`).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How submissions are gathered into atomic batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// Most messages in one batch (nats-server takes at most 1,000). 1: every
    /// single message goes alone (no group commit; a case's chain of events
    /// still goes as one batch).
    pub max_events: usize,
    /// How long the first submission of a batch may wait for others to
    /// join it before the batch goes unfilled (0: a batch goes as soon as a
    /// write slot is free, holding whatever queued while the others were in
    /// flight).
    pub max_wait: Duration,
    /// Writes (batches or lone messages) in flight at once.
    pub max_in_flight: usize,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self { max_events: 500, max_wait: Duration::ZERO, max_in_flight: 1 }
    }
}

/// What the gathering needs to know of a queued submission.
pub(crate) trait Queued: Send + 'static {
    /// The subject it appends to: one submission per subject in flight.
    fn subject(&self) -> &str;
    /// Messages it holds.
    fn size(&self) -> usize;
    /// It goes in a batch of its own (its refusal in a batch was not explained).
    fn alone(&self) -> bool;
    /// Sent before (refused or unanswered): it waits for nobody.
    fn sent_before(&self) -> bool;
    fn queued_at(&self) -> Instant;
}

/// What became of a submission's write.
pub(crate) enum Settled<S> {
    /// Answered: nothing more to do.
    Done,
    /// Send it again at once (it was innocent of its batch's refusal).
    Again(S),
    /// Send it again once this resolves (a pause, the log busy or away).
    Later(Pin<Box<dyn Future<Output = S> + Send>>),
}

/// How one store writes a gathered batch and answers its callers.
pub(crate) trait Writer: Clone + Send + Sync + 'static {
    type Submission: Queued;
    /// Write `batch` (one submission: its own path; several: one atomic
    /// batch) and settle each submission.
    fn write(&self, batch: Vec<Self::Submission>) -> impl Future<Output = Vec<Settled<Self::Submission>>> + Send;
}

type Written<S> = Pin<Box<dyn Future<Output = (Vec<String>, Vec<Settled<S>>)> + Send>>;
type Paused<S> = Pin<Box<dyn Future<Output = S> + Send>>;

/// The group-commit task: take submissions from `inbox` and write them in
/// batches with `writer`, until the inbox closes and every submission is
/// settled.
pub(crate) async fn run<W: Writer>(
    writer: W,
    settings: GroupCommit,
    mut inbox: mpsc::UnboundedReceiver<W::Submission>,
) {
    let max_in_flight = settings.max_in_flight.max(1);
    let mut queue: VecDeque<W::Submission> = VecDeque::new();
    // Subjects with a write in flight: nothing else is sent to them meanwhile.
    let mut busy: HashSet<String> = HashSet::new();
    let mut in_flight: FuturesUnordered<Written<W::Submission>> = FuturesUnordered::new();
    let mut paused: FuturesUnordered<Paused<W::Submission>> = FuturesUnordered::new();
    let mut open = true;
    loop {
        loop {
            match inbox.try_recv() {
                Ok(submission) => queue.push_back(submission),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Launch what can go: a free write slot, subjects not busy, and
        // (with a wait configured) a full batch or submissions that have
        // waited long enough. Submissions sent before wait no more.
        let mut linger_until = None;
        while in_flight.len() < max_in_flight && !queue.is_empty() {
            if !settings.max_wait.is_zero() && queue.iter().all(|s| !s.sent_before()) {
                let queued: usize = queue.iter().map(Queued::size).sum();
                let oldest = queue.iter().map(Queued::queued_at).min().expect("queue not empty");
                if queued < settings.max_events && oldest.elapsed() < settings.max_wait {
                    linger_until = Some(oldest + settings.max_wait);
                    break;
                }
            }
            let batch = take(&mut queue, &mut busy, settings.max_events.max(1));
            if batch.is_empty() {
                break;
            }
            let subjects: Vec<String> = batch.iter().map(|s| s.subject().to_owned()).collect();
            let writer = writer.clone();
            in_flight.push(Box::pin(async move { (subjects, writer.write(batch).await) }));
        }
        if !open && queue.is_empty() && in_flight.is_empty() && paused.is_empty() {
            return;
        }
        let linger = async {
            match linger_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((subjects, settled)) = in_flight.next(), if !in_flight.is_empty() => {
                for subject in subjects {
                    busy.remove(&subject);
                }
                for settled in settled {
                    match settled {
                        Settled::Done => {}
                        Settled::Again(submission) => queue.push_front(submission),
                        Settled::Later(later) => paused.push(later),
                    }
                }
            }
            Some(submission) = paused.next(), if !paused.is_empty() => queue.push_front(submission),
            received = inbox.recv(), if open => match received {
                Some(submission) => queue.push_back(submission),
                None => open = false,
            },
            () = linger => {}
        }
    }
}

/// The next batch from the queue, in arrival order: submissions whose
/// subject is neither busy nor already in the batch, up to `max_events`
/// messages (a longer one goes alone), an `alone` one by itself.
fn take<S: Queued>(queue: &mut VecDeque<S>, busy: &mut HashSet<String>, max_events: usize) -> Vec<S> {
    let mut batch: Vec<S> = Vec::new();
    let mut events = 0;
    let mut index = 0;
    while index < queue.len() && events < max_events {
        let candidate = &queue[index];
        let fits = events == 0 || (events + candidate.size() <= max_events && !candidate.alone());
        if !fits || busy.contains(candidate.subject()) {
            index += 1;
            continue;
        }
        let submission = queue.remove(index).expect("index in range");
        events += submission.size();
        busy.insert(submission.subject().to_owned());
        let alone = submission.alone();
        batch.push(submission);
        if alone {
            break;
        }
    }
    batch
}

/// Why an atomic batch could not be handed to the connection, or what the
/// server answered its commit.
pub(crate) enum AtomicError {
    /// A message before the commit could not be handed to the connection.
    Connection(String),
    /// The commit's publish failed to go out, or the server refused it.
    Publish(jetstream::context::PublishError),
}

/// Publish `messages` (subject, headers, payload; the caller's expectation
/// headers in them) as one JetStream atomic batch: every message but the
/// last handed to the connection unanswered, in order, the last committing
/// the batch. The commit's acknowledgement, to await.
pub(crate) async fn publish_atomic(
    context: &jetstream::Context,
    messages: Vec<(String, HeaderMap, Bytes)>,
) -> Result<PublishAckFuture, AtomicError> {
    use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE};
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let client = context.client();
    let total = messages.len();
    for (index, (subject, mut headers, payload)) in messages.into_iter().enumerate() {
        headers.insert(NATS_BATCH_ID, batch_id.as_str());
        headers.insert(NATS_BATCH_SEQUENCE, (index + 1).to_string().as_str());
        if index + 1 < total {
            client
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| AtomicError::Connection(e.to_string()))?;
            continue;
        }
        headers.insert(NATS_BATCH_COMMIT, "1");
        let publish = PublishMessage::build().payload(payload).headers(headers);
        return context.send_publish(subject, publish).await.map_err(AtomicError::Publish);
    }
    unreachable!("an atomic batch has at least one message")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item {
        subject: &'static str,
        size: usize,
        alone: bool,
    }

    impl Queued for Item {
        fn subject(&self) -> &str {
            self.subject
        }
        fn size(&self) -> usize {
            self.size
        }
        fn alone(&self) -> bool {
            self.alone
        }
        fn sent_before(&self) -> bool {
            false
        }
        fn queued_at(&self) -> Instant {
            Instant::now()
        }
    }

    fn item(subject: &'static str, size: usize) -> Item {
        Item { subject, size, alone: false }
    }

    #[test]
    fn a_batch_takes_each_subject_once_up_to_its_size_and_leaves_busy_ones() {
        let mut queue: VecDeque<Item> = [item("a", 2), item("b", 1), item("a", 1), item("c", 3), item("d", 1)].into();
        let mut busy = HashSet::from(["d".to_owned()]);
        let batch = take(&mut queue, &mut busy, 5);
        let subjects: Vec<&str> = batch.iter().map(|i| i.subject).collect();
        // a (2) and b (1) fit; the second a waits for the first; c (3) would
        // pass the 5; d is in flight.
        assert_eq!(subjects, ["a", "b"]);
        assert_eq!(queue.iter().map(|i| i.subject).collect::<Vec<_>>(), ["a", "c", "d"]);
        assert!(busy.contains("a") && busy.contains("b"));
    }

    #[test]
    fn an_alone_submission_and_an_oversized_one_go_by_themselves() {
        let mut queue: VecDeque<Item> =
            [Item { subject: "a", size: 1, alone: true }, item("b", 1), item("c", 9), item("d", 1)].into();
        let mut busy = HashSet::new();
        assert_eq!(take(&mut queue, &mut busy, 5).iter().map(|i| i.subject).collect::<Vec<_>>(), ["a"]);
        assert_eq!(take(&mut queue, &mut busy, 5).iter().map(|i| i.subject).collect::<Vec<_>>(), ["b", "d"]);
        assert_eq!(take(&mut queue, &mut busy, 5).iter().map(|i| i.subject).collect::<Vec<_>>(), ["c"]);
    }
}
