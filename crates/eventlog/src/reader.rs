//! The one way gridcase reads the case stream in order: an ordered consumer
//! (no state on the server, recreated by the client after a gap or a lost
//! connection) from a given stream sequence, over all cases or one
//! township's, yielding exactly what JetStream stored, each with its stream
//! sequence and how many stored messages are still ahead of it (0: caught
//! up). The dispatcher, the projector and the live watch read through it.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use bytes::Bytes;
use futures::Stream;

use crate::log::{EventLog, LogError};

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// At this stream sequence (1: the whole history).
    Sequence(u64),
    /// With what is stored after the read starts.
    New,
}

impl ReadFrom {
    /// Right after `sequence` (0: from the beginning).
    pub fn after(sequence: u64) -> Self {
        ReadFrom::Sequence(sequence + 1)
    }
}

/// One stored message.
#[derive(Debug, Clone)]
pub struct Record {
    pub sequence: u64,
    pub subject: String,
    pub payload: Bytes,
    /// The message's headers as stored (CloudEvents attributes, the trace context).
    pub headers: Option<async_nats::HeaderMap>,
    /// Stored messages (matching the filter) still to come after this one.
    pub pending: u64,
}

impl Record {
    /// Nothing stored is left to read after this record.
    pub fn caught_up(&self) -> bool {
        self.pending == 0
    }
}

/// An ordered read of the case stream. Errors are transient (the ordered
/// consumer is recreated from the last sequence it delivered): a reader may
/// log them and keep reading.
pub struct CaseStreamReader {
    messages: Ordered,
    caught_up_at_start: bool,
    /// The lowest stream sequence this read may yield next: its start, then
    /// one past the last record yielded. Anything below it was read already.
    floor: u64,
    /// Whether a record right at `floor` is due (a read from a sequence, or
    /// once a first record came): reading the whole stream, which keeps
    /// every message, any later one is history lost.
    contiguous: bool,
    whole_stream: bool,
    /// Records below the floor passed over (said once).
    passed_over: u64,
    log: EventLog,
}

impl CaseStreamReader {
    /// Whether nothing matched the filter when the read started (no record
    /// will say so then until something new is stored).
    pub fn caught_up_at_start(&self) -> bool {
        self.caught_up_at_start
    }
}

impl Stream for CaseStreamReader {
    type Item = Result<Record, LogError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let message = match Pin::new(&mut self.messages).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(error))) => {
                    return Poll::Ready(Some(Err(LogError::Unavailable(error.to_string()))));
                }
                Poll::Ready(Some(Ok(message))) => message,
            };
            let (sequence, pending) = match message.info() {
                Ok(info) => (info.stream_sequence, info.pending),
                Err(error) => {
                    return Poll::Ready(Some(Err(LogError::Other(format!(
                        "a delivered message without its stream position: {error}"
                    )))));
                }
            };
            if sequence < self.floor {
                // Read already: the client library's ordered consumer was
                // recreated behind the read (async-nats 0.51 recreates one
                // that has delivered nothing yet with DeliverPolicy::All,
                // from the stream's first message). A lost or rewritten tail
                // never comes back below the read's start, so this is no
                // loss: it is passed over (found by the chaos harness, where
                // it had paused the projector for good as history lost).
                if self.passed_over == 0 {
                    tracing::warn!(stream = %self.log.settings().stream_name, floor = self.floor, found = sequence,
                        "the ordered consumer restarted behind the read; passing over what was read already");
                }
                self.passed_over += 1;
                continue;
            }
            if self.whole_stream && self.contiguous && sequence > self.floor {
                let expected = self.floor;
                let problem = format!("read in order, stream sequence {sequence} came where {expected} was due");
                tracing::error!(stream = %self.log.settings().stream_name, expected, found = sequence,
                    "the case stream lost history: nothing is written on top of it");
                let key = format!("{} as read", self.log.settings().stream_name);
                self.log.integrity().set(&key, vec![problem]);
                self.floor = sequence + 1;
                return Poll::Ready(Some(Err(LogError::HistoryLost { expected, found: sequence })));
            }
            self.floor = sequence + 1;
            self.contiguous = true;
            // The message is taken apart, not copied: the headers alone are
            // a map of a dozen entries.
            let async_nats::Message { subject, payload, headers, .. } = message.message;
            return Poll::Ready(Some(Ok(Record { sequence, subject: subject.to_string(), payload, headers, pending })));
        }
    }
}

impl EventLog {
    /// Read the messages whose subject matches `filter` (e.g.
    /// [`gridcase_envelope::CaseSubject::all_filter`] or one township's), in stream order,
    /// from `from`.
    pub async fn read(&self, filter: String, from: ReadFrom) -> Result<CaseStreamReader, LogError> {
        let deliver_policy = match from {
            ReadFrom::Sequence(0 | 1) => DeliverPolicy::All,
            ReadFrom::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            ReadFrom::New => DeliverPolicy::New,
        };
        let consumer = self
            .stream()
            .create_consumer(OrderedConfig { filter_subject: filter.clone(), deliver_policy, ..Default::default() })
            .await
            .map_err(|e| LogError::Unavailable(format!("creating an ordered consumer: {e}")))?;
        let caught_up_at_start = consumer.cached_info().num_pending == 0;
        // A read of what comes next starts past what the stream held.
        let past_end = consumer.cached_info().delivered.stream_sequence + 1;
        let messages = consumer.messages().await.map_err(|e| LogError::Unavailable(format!("reading: {e}")))?;
        let whole_stream = filter == gridcase_envelope::CaseSubject::all_filter();
        let (floor, contiguous) = match from {
            ReadFrom::Sequence(start) => (start.max(1), true),
            ReadFrom::New => (past_end, false),
        };
        Ok(CaseStreamReader {
            messages,
            caught_up_at_start,
            floor,
            contiguous,
            whole_stream,
            passed_over: 0,
            log: self.clone(),
        })
    }
}
