//! The case event log on NATS JetStream.
//!
//! One stream holds every case; each case has its own subject (see
//! [`gridcase_envelope::subject`]). Every append states the last sequence of
//! that subject it expects (`Nats-Expected-Last-Subject-Sequence`, 0 for a
//! new case), so two writers never interleave histories and a case is created
//! once, forever, not only inside the duplicate window. Every append carries
//! its event id as `Nats-Msg-Id`, so a retry inside the window is a
//! duplicate, not a second event; outside the window (or when the server
//! answers a stale expectation first) the event found at the expected
//! position is compared with ours.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    context::PublishErrorKind,
    message::PublishMessage,
    stream::{self, DirectGetErrorKind, LastRawMessageErrorKind, StorageType},
};
use bytes::Bytes;
use tracing::{debug, warn};

use gridcase_envelope::schema::{DecodeError, StoredEvent};
use gridcase_envelope::{CaseSubject, Positioned};

use crate::cloudevents;
pub(crate) use crate::retry::{Retry, Sending};

/// The subject (a wildcard may stand in it) the expected last subject
/// sequence is checked on, instead of the message's own: a filing expects
/// nothing on `gridcase.case.*.<case id>`, so a case id names one case in
/// the whole log, checked by the append itself.
pub(crate) const EXPECTED_SUBJECT_FOR_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence-Subject";

/// JetStream error: wrong last sequence (the expectation is stale).
pub(crate) const ERR_WRONG_LAST_SEQUENCE: u64 = 10071;
/// A message with the same id is being stored right now (an earlier attempt
/// of the same append, through another intake, still in flight): ask again.
pub(crate) const ERR_DUPLICATE_IN_PROCESS: u64 = 10158;
/// JetStream error: another append to the same subject is still in flight,
/// so the expectation cannot be checked yet.
pub(crate) const ERR_SUBJECT_SEQUENCE_NOT_READY: u64 = 10164;

/// How the case stream is set up and how hard appends try.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub stream_name: String,
    /// How long JetStream remembers message ids to drop duplicates.
    pub duplicate_window: Duration,
    /// How long one publish waits for its acknowledgement.
    pub publish_timeout: Duration,
    /// How long an append (and a read on the write path) keeps trying when
    /// the log does not answer or has no stream leader (a node lost, a
    /// leader election): re-sent with the same id and expected sequence,
    /// with backoff, until this much time has passed. Then the caller is
    /// told the log is unavailable.
    pub append_deadline: Duration,
    /// Copies JetStream keeps of the stream (and the attachment stream): 1
    /// on a single server, 3 on a three-node cluster.
    pub replicas: usize,
    /// How the case store gathers appends into atomic batches.
    pub group_commit: crate::group::GroupCommit,
}

/// One message of the stream, as [`EventLog::mark_at`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamMark {
    pub sequence: u64,
    pub subject: String,
    /// The event's hash (none if the message is not an event this version reads).
    pub hash: Option<String>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            stream_name: "GRIDCASE_CASES".into(),
            duplicate_window: Duration::from_secs(10 * 60),
            publish_timeout: Duration::from_secs(2),
            append_deadline: Duration::from_secs(15),
            replicas: 1,
            group_commit: crate::group::GroupCommit::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "nats-server {found} is too old: gridcase needs 2.12 or newer (atomic batch publish), 2.15 or newer to share an fsync across a batch"
    )]
    ServerTooOld { found: String },
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
    #[error("stream {stream} is configured differently than gridcase needs: {problem}")]
    StreamMisconfigured { stream: String, problem: String },
    #[error("a stored event could not be read at stream sequence {sequence}: {source}")]
    Corrupt { sequence: u64, source: DecodeError },
    /// Reading the whole stream in order, the next message was not the next
    /// sequence: the messages between are gone from the log.
    #[error("the case stream lost history: stream sequence {found} came where {expected} was due")]
    HistoryLost { expected: u64, found: u64 },
    #[error("event log error: {0}")]
    Other(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Someone else appended first: the subject's last event is not the one
    /// this append expected.
    #[error("case changed concurrently: expected last sequence {expected}, found {found:?}")]
    Conflict { expected: u64, found: Option<u64> },
    /// No answer from JetStream. The event may or may not be stored; retrying
    /// the same event (same id) is safe.
    #[error("the event log did not answer: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream sequence of the stored event.
    pub stream_sequence: u64,
    /// True when this very event (same id) had already been stored by an
    /// earlier attempt; nothing new was written.
    pub already_stored: bool,
    /// True when the event was in the log before this call first sent it
    /// (another writer with the same event id got there first, e.g. a second
    /// dispatcher taking the same step): this call stored nothing at all.
    /// False when this call stored it, even if only a retried send of it
    /// got the answer.
    pub stored_before_this_call: bool,
}

#[derive(Clone)]
pub struct EventLog {
    context: jetstream::Context,
    stream: stream::Stream,
    settings: StreamSettings,
    integrity: crate::integrity::Integrity,
}

/// The oldest nats-server gridcase runs on: 2.12 brought atomic batch
/// publish, which the case store's group commit uses.
pub const MINIMUM_SERVER: (u64, u64) = (2, 12);
/// From 2.15 the events of an atomic batch share one fsync; older servers
/// take batches but sync each message, so group commit gains little.
pub const SHARED_FSYNC_SERVER: (u64, u64) = (2, 15);

fn server_version(version: &str) -> (u64, u64) {
    let mut parts = version.trim_start_matches('v').split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Whether a nats-server version string is [`MINIMUM_SERVER`] or newer.
pub fn server_supported(version: &str) -> bool {
    server_version(version) >= MINIMUM_SERVER
}

impl EventLog {
    /// The stream configuration gridcase relies on.
    pub fn stream_config(settings: &StreamSettings) -> stream::Config {
        stream::Config {
            name: settings.stream_name.clone(),
            description: Some("gridcase case events: one subject per case, never deleted".into()),
            subjects: vec![CaseSubject::all_filter()],
            storage: StorageType::File,
            duplicate_window: settings.duplicate_window,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            allow_rollup: false,
            // Group commit: many appends in one atomic batch (one fsync).
            allow_atomic_publish: true,
            max_messages: -1,
            max_bytes: -1,
            max_messages_per_subject: -1,
            num_replicas: settings.replicas,
            ..Default::default()
        }
    }

    /// Connect the log to JetStream, creating the stream if it does not
    /// exist. An existing stream is never changed here (the services'
    /// credentials cannot change it: that is the break-glass user's,
    /// `gridctl log set-replicas`); one that no longer keeps every event is
    /// opened all the same, for reading, with [`EventLog::integrity`] broken
    /// so that nothing is written on top of it.
    pub async fn open(client: async_nats::Client, settings: StreamSettings) -> Result<Self, LogError> {
        let version = client.server_info().version;
        if !server_supported(&version) {
            return Err(LogError::ServerTooOld { found: version });
        }
        if server_version(&version) < SHARED_FSYNC_SERVER {
            warn!(%version, "nats-server before 2.15 syncs each message of a batch: group commit will gain little");
        }
        let context = jetstream::ContextBuilder::new().timeout(settings.publish_timeout).build(client);
        let wanted = Self::stream_config(&settings);
        let mut stream = context
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| LogError::Unavailable(format!("cannot open stream {}: {e}", settings.stream_name)))?;
        let info = stream.info().await.map_err(|e| LogError::Unavailable(e.to_string()))?.clone();
        let have = &info.config;
        if !have.allow_atomic_publish {
            return Err(LogError::StreamMisconfigured {
                stream: settings.stream_name.clone(),
                problem: "it does not allow atomic batches (allow_atomic), which group commit needs: \
                          `gridctl log set-replicas` with the break-glass user's credentials applies gridcase's \
                          configuration (nats-server 2.12 or newer)"
                    .into(),
            });
        }
        for (setting, have, want) in [
            ("replicas", have.num_replicas.to_string(), wanted.num_replicas.to_string()),
            ("duplicate window", format!("{:?}", have.duplicate_window), format!("{:?}", wanted.duplicate_window)),
            ("direct gets", have.allow_direct.to_string(), wanted.allow_direct.to_string()),
        ] {
            if have != want {
                warn!(stream = %settings.stream_name, setting, %have, %want,
                    "the stream's setting differs from this service's: `gridctl log set-replicas` (break-glass user) applies it");
            }
        }
        let integrity = crate::integrity::Integrity::default();
        let watched = Self::watched(&settings);
        let mut problems = crate::integrity::config_problems(&watched, have);
        problems.extend(crate::integrity::state_problems(
            watched.keeps,
            None,
            &crate::integrity::Extent::of(&info.state),
        ));
        if !problems.is_empty() {
            tracing::error!(
                stream = %settings.stream_name,
                problems = ?problems,
                changed = ?crate::integrity::config_changes(&wanted, have),
                "the case stream no longer keeps every event: this service will not write to it"
            );
        }
        integrity.set(&settings.stream_name, problems);
        Ok(Self { context, stream, settings, integrity })
    }

    /// The case stream as [`crate::integrity::watch`] checks it.
    pub fn watched(settings: &StreamSettings) -> crate::integrity::Watched {
        crate::integrity::Watched {
            stream: settings.stream_name.clone(),
            keeps: crate::integrity::Keeps::Everything,
            subjects: CaseSubject::all_filter(),
        }
    }

    /// Whether the streams this process writes to still keep their
    /// history; shared by every clone of the log.
    pub fn integrity(&self) -> &crate::integrity::Integrity {
        &self.integrity
    }

    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    pub(crate) fn stream(&self) -> &stream::Stream {
        &self.stream
    }

    /// Append `event` to `subject`, expecting the subject's last stream
    /// sequence to be `expected_last` (0: the subject must be empty).
    pub async fn append(
        &self,
        subject: &CaseSubject,
        expected_last: u64,
        event: &StoredEvent,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_encoded(subject, expected_last, event, Bytes::from(event.to_json_bytes())).await
    }

    /// [`EventLog::append`] of `event` already serialised as `payload`.
    pub(crate) async fn append_encoded(
        &self,
        subject: &CaseSubject,
        expected_last: u64,
        event: &StoredEvent,
        payload: Bytes,
    ) -> Result<AppendOutcome, AppendError> {
        let mut headers = cloudevents::headers(event);
        crate::trace::inject(&mut headers);
        let mut sending = Sending::new(self.settings.append_deadline);
        self.append_single(subject, expected_last, event, payload, headers, &mut sending).await
    }

    /// Append one event on its own (not in a batch), sending it again while
    /// the log does not answer, until `sending`'s deadline. `sending` counts
    /// the sends of this append, earlier ones (in batches) included.
    pub(crate) async fn append_single(
        &self,
        subject: &CaseSubject,
        expected_last: u64,
        event: &StoredEvent,
        payload: Bytes,
        headers: async_nats::HeaderMap,
        sending: &mut Sending,
    ) -> Result<AppendOutcome, AppendError> {
        let event_id = event.event_id.to_string();
        let retry = &mut sending.retry;
        loop {
            let Some(wait) = retry.attempt_time(self.settings.publish_timeout) else {
                return Err(AppendError::Unavailable(retry.last_failure.clone()));
            };
            sending.sent += 1;
            let sent = sending.sent;
            // Whether an earlier send of this append may have stored it
            // (it got no answer). If none did, an event found with our id
            // was stored by another writer, even one byte for byte the same.
            let maybe_ours = sending.unanswered;
            let mut publish = PublishMessage::build()
                .payload(payload.clone())
                .headers(headers.clone())
                .message_id(&event_id)
                .expected_last_subject_sequence(expected_last);
            if expected_last == 0 {
                // A new case: no event of this case id in any township.
                publish =
                    publish.header(EXPECTED_SUBJECT_FOR_SEQUENCE, CaseSubject::locator(&subject.case_id()).as_str());
            }
            let result = match tokio::time::timeout(wait, async {
                match self.context.send_publish(subject.to_string(), publish).await {
                    Ok(ack) => ack.await,
                    Err(error) => Err(error),
                }
            })
            .await
            {
                Ok(result) => result,
                Err(_) => Err(jetstream::context::PublishError::new(PublishErrorKind::TimedOut)),
            };
            let error = match result {
                Ok(ack) => {
                    debug!(%subject, sequence = ack.sequence, duplicate = ack.duplicate, "appended");
                    // A duplicate answering a re-sent message is ours only if
                    // the stored message is this very event: another writer
                    // may have stored the same id while our first send was lost.
                    let stored_before_this_call = ack.duplicate
                        && (!maybe_ours || !self.holds_event_within(ack.sequence, &event.hash, retry).await?);
                    return Ok(AppendOutcome {
                        stream_sequence: ack.sequence,
                        already_stored: ack.duplicate,
                        stored_before_this_call,
                    });
                }
                Err(error) => error,
            };
            let code = jetstream_error(&error).map(|e| (e.error_code().0, e.code()));
            if error.kind() == PublishErrorKind::WrongLastSequence || code.map(|c| c.0) == Some(ERR_WRONG_LAST_SEQUENCE)
            {
                match self.resolve_stale_expectation(subject, expected_last, event, !maybe_ours).await {
                    Err(AppendError::Log(LogError::Unavailable(failure))) => {
                        // The answer is known to be stale but who wrote next
                        // cannot be read yet: ask again after a pause.
                        retry.failed(format!("reading the case after a stale expectation: {failure}"));
                        retry.pause().await;
                        continue;
                    }
                    answer => return answer,
                }
            }
            if matches!(code.map(|c| c.0), Some(ERR_SUBJECT_SEQUENCE_NOT_READY | ERR_DUPLICATE_IN_PROCESS)) {
                // Another append to this subject (or this very message, sent
                // by an earlier attempt) is in flight: let it land, then look
                // again (found by the chaos harness: it was INTERNAL).
                retry.failed(error.to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            match error.kind() {
                // No answer: the event may be stored; the same message
                // (same id, same expectation) is sent again.
                PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                    sending.unanswered = true;
                    warn!(%subject, attempt = sent, %error, "append got no answer; sending it again with the same id");
                }
                // No responders: the stream has no leader right now (a node
                // lost, an election); MaxAckPending: the client is saturated.
                PublishErrorKind::StreamNotFound | PublishErrorKind::MaxAckPending => {
                    warn!(%subject, attempt = sent, %error, "the log cannot take the append now; trying again");
                }
                // JetStream answered "temporarily unavailable" (HTTP-like 503).
                _ if code.is_some_and(|(_, status)| status == 503) => {
                    warn!(%subject, attempt = sent, %error, "JetStream temporarily unavailable; trying again");
                }
                _ => return Err(LogError::Other(error.to_string()).into()),
            }
            retry.failed(error.to_string());
            retry.pause().await;
        }
    }

    /// The server says the subject has moved past `expected_last`. If the
    /// event right after it is our own (an earlier attempt that landed), the
    /// append succeeded; otherwise someone else won.
    async fn resolve_stale_expectation(
        &self,
        subject: &CaseSubject,
        expected_last: u64,
        event: &StoredEvent,
        none_unanswered: bool,
    ) -> Result<AppendOutcome, AppendError> {
        let next = self.next_after(subject, expected_last).await?;
        let event_id = event.event_id.to_string();
        match next {
            Some((sequence, headers_id)) if headers_id.as_deref() == Some(event_id.as_str()) => Ok(AppendOutcome {
                stream_sequence: sequence,
                already_stored: true,
                // Ours only if an earlier, unanswered send of this call stored this very event.
                stored_before_this_call: none_unanswered || !self.holds_event(sequence, &event.hash).await?,
            }),
            Some((sequence, _)) => Err(AppendError::Conflict { expected: expected_last, found: Some(sequence) }),
            None => Err(AppendError::Conflict { expected: expected_last, found: None }),
        }
    }

    /// [`EventLog::holds_event`], tried again while the log is unavailable
    /// until `retry`'s deadline (the event is stored: only the reading failed).
    async fn holds_event_within(&self, sequence: u64, hash: &str, retry: &mut Retry) -> Result<bool, LogError> {
        loop {
            match self.holds_event(sequence, hash).await {
                Err(LogError::Unavailable(failure)) if retry.attempt_time(self.settings.publish_timeout).is_some() => {
                    retry.failed(failure);
                    retry.pause().await;
                }
                answer => return answer,
            }
        }
    }

    /// Whether the message at `sequence` is the event with this hash.
    pub(crate) async fn holds_event(&self, sequence: u64, hash: &str) -> Result<bool, LogError> {
        // The leader's copy: a follower answering a direct get may lag behind.
        let message = self.stream.get_raw_message(sequence).await.map_err(|e| LogError::Unavailable(e.to_string()))?;
        Ok(StoredEvent::from_json_bytes(&message.payload).is_ok_and(|stored| stored.hash == hash))
    }

    /// What the stream holds at `sequence`, if anything: the message's
    /// subject and, for a readable event, its hash. A position saved by a
    /// reader (the dispatcher's snapshot) is checked against it, so a
    /// position is never taken to a different stream with as many messages.
    pub async fn mark_at(&self, sequence: u64) -> Result<Option<StreamMark>, LogError> {
        match self.stream.get_raw_message(sequence).await {
            Ok(message) => Ok(Some(StreamMark {
                sequence,
                subject: message.subject.to_string(),
                hash: StoredEvent::from_json_bytes(&message.payload).ok().map(|stored| stored.hash),
            })),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(LogError::Unavailable(error.to_string())),
        }
    }

    /// The first message on `subject` after stream sequence `after`: its
    /// sequence and event id.
    pub(crate) async fn next_after(
        &self,
        subject: &CaseSubject,
        after: u64,
    ) -> Result<Option<(u64, Option<String>)>, LogError> {
        match self.stream.get_first_raw_message_by_subject(subject.as_str(), after + 1).await {
            Ok(message) => Ok(Some((message.sequence, cloudevents::event_id(Some(&message.headers))))),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(LogError::Unavailable(error.to_string())),
        }
    }

    /// Find a case's subject from its id alone (the township is part of the
    /// subject, and a caller of the lifecycle API knows only the case id).
    pub async fn locate(&self, case_id: &gridcase_domain::CaseId) -> Result<Option<CaseSubject>, LogError> {
        match self.stream.get_first_raw_message_by_subject(CaseSubject::locator(case_id), 1).await {
            Ok(message) => Ok(CaseSubject::from_subject(message.subject.as_str())),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(LogError::Unavailable(error.to_string())),
        }
    }

    /// The first event of a case, if it exists.
    pub async fn first(&self, subject: &CaseSubject) -> Result<Option<Positioned>, LogError> {
        self.read_from(subject, 1).await
    }

    /// The last event of a case, if it exists.
    pub async fn last(&self, subject: &CaseSubject) -> Result<Option<Positioned>, LogError> {
        match self.stream.get_last_raw_message_by_subject(subject.as_str()).await {
            Ok(message) => Ok(Some(decode(message.sequence, message.payload)?)),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(LogError::Unavailable(error.to_string())),
        }
    }

    async fn read_from(&self, subject: &CaseSubject, from: u64) -> Result<Option<Positioned>, LogError> {
        match self.stream.get_first_raw_message_by_subject(subject.as_str(), from).await {
            Ok(message) => Ok(Some(decode(message.sequence, message.payload)?)),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(LogError::Unavailable(error.to_string())),
        }
    }

    /// A case's whole history, in order. Reads go to the stream leader, so a
    /// history read right after an append includes it.
    pub async fn history(&self, subject: &CaseSubject) -> Result<Vec<Positioned>, LogError> {
        let mut history = Vec::new();
        let mut from = 1;
        while let Some(positioned) = self.read_from(subject, from).await? {
            from = positioned.stream_sequence + 1;
            history.push(positioned);
        }
        Ok(history)
    }

    /// The stream sequence of the newest message in the stream (0: empty).
    pub async fn last_sequence(&self) -> Result<u64, LogError> {
        let mut stream = self.stream.clone();
        let info = stream.info().await.map_err(|e| LogError::Unavailable(e.to_string()))?;
        Ok(info.state.last_sequence)
    }

    /// The stream's end as its leader says it, and how old that may be:
    /// the leader's word is complete only up to its last contact with a
    /// quorum (a leader cut off or paused, not yet aware that another was
    /// elected, answers with an old end). `None` for the age: no quorum
    /// contact known, the end cannot be trusted as current at all.
    pub async fn end_as_of(&self) -> Result<(u64, Option<Duration>), LogError> {
        let mut stream = self.stream.clone();
        let info = stream.info().await.map_err(|e| LogError::Unavailable(e.to_string()))?;
        Ok((info.state.last_sequence, crate::integrity::leader_contact(info)))
    }

    /// How many distinct case subjects the stream holds (for tests and ops).
    pub async fn case_count(&self) -> Result<usize, LogError> {
        let mut stream = self.stream.clone();
        let info = stream.info().await.map_err(|e| LogError::Unavailable(e.to_string()))?;
        Ok(info.state.subjects_count as usize)
    }

    /// Whether direct gets are served (used by health checks: it needs the stream).
    pub async fn ping(&self) -> Result<(), LogError> {
        match self.stream.direct_get(1).await {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == DirectGetErrorKind::NotFound => Ok(()),
            Err(error) => Err(LogError::Unavailable(error.to_string())),
        }
    }
}

fn decode(sequence: u64, payload: Bytes) -> Result<Positioned, LogError> {
    let event = StoredEvent::from_json_bytes(&payload).map_err(|source| LogError::Corrupt { sequence, source })?;
    Ok(Positioned { stream_sequence: sequence, event, stored: payload })
}

/// The JetStream API error behind a publish error, if any.
pub(crate) fn jetstream_error(error: &jetstream::context::PublishError) -> Option<&jetstream::Error> {
    std::error::Error::source(error)?.downcast_ref::<jetstream::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert!(!server_supported("2.9.25"));
        assert!(!server_supported("2.11.9"));
        assert!(server_supported("2.12.0"));
        assert!(server_supported("v2.14.6"));
        assert!(server_supported("3.0.0"));
        assert!(!server_supported("garbage"));
    }
}
