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
    /// Reading the whole stream: the sequence due next (none before the
    /// first record of a read from now). The stream keeps every message, so
    /// any other is history lost.
    due: Option<u64>,
    whole_stream: bool,
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
        let message = match Pin::new(&mut self.messages).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(LogError::Unavailable(error.to_string())))),
            Poll::Ready(Some(Ok(message))) => message,
        };
        let record = message.info().map(|info| (info.stream_sequence, info.pending));
        // The message is taken apart, not copied: the headers alone are a
        // map of a dozen entries.
        let async_nats::Message { subject, payload, headers, .. } = message.message;
        if let Ok((sequence, _)) = record
            && self.whole_stream
        {
            let due = self.due.replace(sequence + 1);
            if let Some(expected) = due
                && sequence != expected
            {
                let problem = format!("read in order, stream sequence {sequence} came where {expected} was due");
                tracing::error!(stream = %self.log.settings().stream_name, expected, found = sequence,
                    "the case stream lost history: nothing is written on top of it");
                let key = format!("{} as read", self.log.settings().stream_name);
                self.log.integrity().set(&key, vec![problem]);
                return Poll::Ready(Some(Err(LogError::HistoryLost { expected, found: sequence })));
            }
        }
        Poll::Ready(Some(match record {
            Ok((sequence, pending)) => Ok(Record { sequence, subject: subject.to_string(), payload, headers, pending }),
            Err(error) => Err(LogError::Other(format!("a delivered message without its stream position: {error}"))),
        }))
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
        let messages = consumer.messages().await.map_err(|e| LogError::Unavailable(format!("reading: {e}")))?;
        let whole_stream = filter == gridcase_envelope::CaseSubject::all_filter();
        let due = match from {
            ReadFrom::Sequence(start) => Some(start.max(1)),
            ReadFrom::New => None,
        };
        Ok(CaseStreamReader { messages, caught_up_at_start, due, whole_stream, log: self.clone() })
    }
}
