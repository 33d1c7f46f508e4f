//! The key store: each case's data key, wrapped under the master key, in a
//! JetStream key-value bucket (`gridcase-keys`, one value per case id).
//!
//! Why a bucket and not PostgreSQL: every service that needs a key (intake
//! seals and opens, the query service opens to mask, the dispatcher erases)
//! already speaks NATS, and not all of them speak PostgreSQL; the bucket
//! replicates like the log, and NATS permissions say who may read it.
//!
//! The bucket's stream is created here rather than by the key-value API so
//! that it allows deleting a message: erasure first deletes the key's message
//! with the server's secure erase (the stored bytes are overwritten), then
//! leaves a delete marker, so a later read can tell "erased" from "never
//! had one". What erasure cannot reach by itself: copies of the wrapped key in
//! backups of the bucket and in replicas' write-ahead logs. Those are sealed
//! under the master key; rotating the master key ([`KeyStore::rewrap`]) and
//! then destroying the old one makes them unreadable too.
//!
//! New keys are group-committed: the keys of filings that arrive while the
//! previous batch is being stored go to the bucket as one atomic batch (one
//! append, one fsync), each expecting its subject to be empty as a lone
//! create does. A batch the server refuses (a retried filing whose key is
//! there already makes the whole batch fail) or leaves unanswered is done
//! again one key at a time, which tells a retry from a conflict.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use gridcase_domain::CaseId;

use gridcase_envelope::sealing::{DataKey, MasterKeys, SealError, WrappedKey};

pub const DEFAULT_BUCKET: &str = "gridcase-keys";

/// Histogram: how long making and storing a new case's data key took, by
/// how it was stored (`batch`: through the group commit, in a batch or as
/// the lone key of its turn; `alone`: by the caller, after a refused batch
/// or with group commit off).
pub const METRIC_KEY_CREATE_DURATION: &str = "gridcase_key_create_duration_seconds";

/// Register the key store's metrics (the process's exporter calls it).
pub fn register_metrics() {
    metrics::describe_histogram!(
        METRIC_KEY_CREATE_DURATION,
        metrics::Unit::Seconds,
        "Making and storing a new case's data key, by how it was stored: through the group commit (batch), or by its caller alone."
    );
    for stored in ["batch", "alone"] {
        let _ = metrics::histogram!(METRIC_KEY_CREATE_DURATION, "stored" => stored);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("the key store (NATS) failed: {0}")]
    Nats(String),
    #[error("the case's resident data was erased: its key is gone")]
    Erased,
    #[error("no master key file is configured (--master-key-file): personal fields cannot be sealed or opened")]
    NoMasterKey,
    #[error("the stored key of case {case_id} is unreadable: {source}")]
    Key { case_id: CaseId, source: SealError },
    #[error(
        "the key store's stream {0} refuses message deletion, so erasure could not overwrite keys; \
         it was not created by gridcase"
    )]
    DenyDelete(String),
}

fn nats(error: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::Nats(error.to_string())
}

/// What the key store holds for a case.
#[derive(Debug)]
pub enum KeyState {
    /// Never had a key: no personal data was sealed for it.
    Absent,
    /// The key, unwrapped.
    Present(DataKey),
    /// Destroyed by erasure.
    Erased,
}

/// Counts of a master-key rotation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    /// Keys wrapped anew under the current master key.
    pub rewrapped: u64,
    /// Keys already under it.
    pub current: u64,
    /// Keys that changed (were erased) while the rotation ran; left alone.
    pub skipped: u64,
}

#[derive(Clone)]
pub struct KeyStore {
    kv: kv::Store,
    stream: stream::Stream,
    master: Option<Arc<MasterKeys>>,
    /// The group commit of new keys (none when the bucket's stream does not
    /// allow atomic batches, or there is no master key to make keys with).
    creator: Option<tokio::sync::mpsc::UnboundedSender<Creation>>,
}

/// One new key for the group commit: stored in a batch (`true`), or to be
/// created alone (`false`).
struct Creation {
    subject: String,
    value: Bytes,
    queued_at: tokio::time::Instant,
    done: tokio::sync::oneshot::Sender<bool>,
}

impl crate::group::Queued for Creation {
    fn subject(&self) -> &str {
        &self.subject
    }
    fn size(&self) -> usize {
        1
    }
    fn alone(&self) -> bool {
        false
    }
    fn sent_before(&self) -> bool {
        false
    }
    fn queued_at(&self) -> tokio::time::Instant {
        self.queued_at
    }
}

/// Most keys in one batch, unless configured (nats-server takes at most 1,000).
pub const DEFAULT_BATCH_MAX: u16 = 256;

/// The key bucket's side of the group commit: whatever queued while the
/// last batch was being stored goes as the next one, each key expecting an
/// empty subject (a lone key as a lone create). A batch refused or not
/// answered is not resolved here: each of its keys is created again by its
/// own caller, alone, where a conflict is read and told from a retry.
#[derive(Clone)]
struct KeyWriter {
    context: jetstream::Context,
}

impl crate::group::Writer for KeyWriter {
    type Submission = Creation;

    async fn write(&self, batch: Vec<Creation>) -> Vec<crate::group::Settled<Creation>> {
        let stored = commit_batch(&self.context, &batch).await;
        for creation in batch {
            let _ = creation.done.send(stored);
        }
        Vec::new()
    }
}

/// Store `batch` as one atomic batch (one key: a lone create); whether the
/// server confirmed it.
async fn commit_batch(context: &jetstream::Context, batch: &[Creation]) -> bool {
    use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
    let expect_empty = || {
        let mut headers = async_nats::HeaderMap::new();
        // As a lone create: only if the subject has never held anything.
        headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
        headers
    };
    if let [creation] = batch {
        let publish =
            jetstream::message::PublishMessage::build().payload(creation.value.clone()).headers(expect_empty());
        return match context.send_publish(creation.subject.clone(), publish).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
    }
    let messages = batch.iter().map(|c| (c.subject.clone(), expect_empty(), c.value.clone())).collect();
    match crate::group::publish_atomic(context, messages).await {
        Ok(ack) => match ack.await {
            Ok(_) => true,
            Err(error) => {
                tracing::debug!(%error, keys = batch.len(), "a batch of new keys was refused; creating them one by one");
                false
            }
        },
        Err(_) => false,
    }
}

/// The key bucket's stream: one value per case, kept until erased one by
/// one (secure erase); no limits, no purge, no roll-ups, no TTLs, so no
/// client can drop keys in bulk.
pub fn stream_config(bucket: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("gridcase: each case's data key, wrapped under the master key".into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_messages: -1,
        max_bytes: -1,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: false,
        deny_delete: false,
        deny_purge: true,
        allow_direct: true,
        allow_atomic_publish: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// The key bucket as [`crate::integrity::watch`] checks it.
pub fn watched(bucket: &str, replicas: usize) -> (crate::integrity::Watched, stream::Config) {
    let watched = crate::integrity::Watched {
        stream: format!("KV_{bucket}"),
        keeps: crate::integrity::Keeps::OneKeyPerCase,
        subjects: format!("$KV.{bucket}.>"),
    };
    (watched, stream_config(bucket, replicas))
}

impl KeyStore {
    /// Open the bucket, creating its stream (file storage, `replicas`
    /// copies, one value per key) if it does not exist. Without master keys
    /// the store can only erase. New keys go in batches of up to
    /// [`DEFAULT_BATCH_MAX`].
    pub async fn open(
        context: &jetstream::Context,
        bucket: &str,
        replicas: usize,
        master: Option<Arc<MasterKeys>>,
    ) -> Result<Self, KeyStoreError> {
        Self::open_batching(context, bucket, replicas, master, usize::from(DEFAULT_BATCH_MAX)).await
    }

    /// [`KeyStore::open`], with new keys in batches of up to `batch_max`
    /// (1: each alone).
    pub async fn open_batching(
        context: &jetstream::Context,
        bucket: &str,
        replicas: usize,
        master: Option<Arc<MasterKeys>>,
        batch_max: usize,
    ) -> Result<Self, KeyStoreError> {
        let name = format!("KV_{bucket}");
        let stream = match context.get_stream(&name).await {
            Ok(stream) => stream,
            Err(_) => context.get_or_create_stream(stream_config(bucket, replicas)).await.map_err(nats)?,
        };
        if stream.cached_info().config.deny_delete {
            return Err(KeyStoreError::DenyDelete(name));
        }
        let kv = context.get_key_value(bucket).await.map_err(nats)?;
        // A bucket made before keys were group-committed takes them one by
        // one until an operator applies gridcase's configuration
        // (`gridctl log set-replicas`, which needs the break-glass user).
        let batches = stream.cached_info().config.allow_atomic_publish;
        if !batches && master.is_some() {
            tracing::warn!(
                stream = %name,
                "the key bucket does not allow atomic batches: new keys are stored one by one \
                 (gridctl log set-replicas applies gridcase's configuration)"
            );
        }
        let batch_max = batch_max.clamp(1, 1000);
        let creator = (batches && master.is_some() && batch_max > 1).then(|| {
            let (sender, queue) = tokio::sync::mpsc::unbounded_channel();
            // One write in flight at a time (two measured no better): what
            // arrives meanwhile is the next batch.
            let settings =
                crate::group::GroupCommit { max_events: batch_max, max_wait: Duration::ZERO, max_in_flight: 1 };
            tokio::spawn(crate::group::run(KeyWriter { context: context.clone() }, settings, queue));
            sender
        });
        Ok(Self { kv, stream, master, creator })
    }

    fn master(&self) -> Result<&MasterKeys, KeyStoreError> {
        self.master.as_deref().ok_or(KeyStoreError::NoMasterKey)
    }

    fn unwrap(&self, case_id: &CaseId, value: &[u8]) -> Result<DataKey, KeyStoreError> {
        let wrapped: WrappedKey = serde_json::from_slice(value)
            .map_err(|e| KeyStoreError::Key { case_id: *case_id, source: SealError::Malformed(e.to_string()) })?;
        self.master()?.unwrap(case_id, &wrapped).map_err(|source| KeyStoreError::Key { case_id: *case_id, source })
    }

    async fn entry(&self, case_id: &CaseId) -> Result<Option<kv::Entry>, KeyStoreError> {
        self.kv.entry(case_id.to_string()).await.map_err(nats)
    }

    /// The case's key.
    pub async fn key(&self, case_id: &CaseId) -> Result<KeyState, KeyStoreError> {
        match self.entry(case_id).await? {
            None => Ok(KeyState::Absent),
            Some(entry) if entry.operation == kv::Operation::Put => {
                Ok(KeyState::Present(self.unwrap(case_id, &entry.value)?))
            }
            Some(_) => Ok(KeyState::Erased),
        }
    }

    /// The key to seal a new case's personal data with: made and stored on
    /// the first call, the same key on a retry of the filing. A case whose
    /// data were erased never gets a key again. A new case (the usual one)
    /// costs one append; only when the subject holds something is it read.
    pub async fn key_for_new_case(&self, case_id: &CaseId) -> Result<DataKey, KeyStoreError> {
        let started = std::time::Instant::now();
        let master = self.master()?;
        let key = DataKey::generate().map_err(|source| KeyStoreError::Key { case_id: *case_id, source })?;
        let wrapped = master.wrap(case_id, &key).map_err(|source| KeyStoreError::Key { case_id: *case_id, source })?;
        let value = Bytes::from(serde_json::to_vec(&wrapped).expect("wrapped keys serialise"));
        if let Some(creator) = &self.creator {
            let (done, stored) = tokio::sync::oneshot::channel();
            let subject = format!("{}{case_id}", self.kv.put_prefix.as_deref().unwrap_or(&self.kv.prefix));
            let creation = Creation { subject, value: value.clone(), queued_at: tokio::time::Instant::now(), done };
            if creator.send(creation).is_ok() && stored.await == Ok(true) {
                metrics::histogram!(METRIC_KEY_CREATE_DURATION, "stored" => "batch").record(started.elapsed());
                return Ok(key);
            }
        }
        // Alone. Revision 0: only if the subject has never held anything,
        // not even an erasure's marker.
        match self.kv.update(case_id.to_string(), value, 0).await {
            Ok(_) => {
                metrics::histogram!(METRIC_KEY_CREATE_DURATION, "stored" => "alone").record(started.elapsed());
                Ok(key)
            }
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => match self.key(case_id).await? {
                KeyState::Present(key) => Ok(key),
                KeyState::Erased => Err(KeyStoreError::Erased),
                // Something was there and is gone again: only an erasure
                // interrupted between its two steps does that.
                KeyState::Absent => Err(KeyStoreError::Erased),
            },
            Err(error) => Err(nats(error)),
        }
    }

    /// Destroy the case's key. Idempotent: erasing again, or a case that
    /// never had a key, leaves the erasure marker and succeeds. Every value
    /// the key had is deleted with the server's secure erase (a rewrap may
    /// have written a newer one meanwhile); the marker goes in only on an
    /// empty subject, so no value is ever dropped without being overwritten.
    pub async fn erase(&self, case_id: &CaseId) -> Result<(), KeyStoreError> {
        let mut failed = None;
        for _ in 0..16 {
            match self.entry(case_id).await? {
                Some(entry) if entry.operation != kv::Operation::Put => return Ok(()),
                Some(entry) => {
                    // A concurrent erasure or rewrap may have removed it
                    // first: the next look tells. A refusal that lasts is
                    // reported as it is.
                    if let Err(error) = self.stream.delete_message(entry.revision).await {
                        failed = Some(error.to_string());
                    }
                    continue;
                }
                None => {}
            }
            // The marker is a delete, not a purge: the bucket allows no
            // roll-ups (a purge is one), so no client can drop keys in bulk.
            match self.kv.delete_expect_revision(case_id.to_string(), Some(0)).await {
                Ok(()) => return Ok(()),
                // Something was written meanwhile: look again.
                Err(error) if error.kind() == kv::DeleteErrorKind::WrongLastRevision => continue,
                Err(error) => return Err(nats(error)),
            }
        }
        Err(KeyStoreError::Nats(match failed {
            Some(error) => format!("the key of case {case_id} could not be deleted: {error}"),
            None => format!("the key of case {case_id} kept changing while it was being erased"),
        }))
    }

    /// Wrap every key that is not under the current master key anew (after
    /// a new key was put first in the key file). When it reports nothing
    /// left to rewrap, the old master key can be removed from the file and
    /// destroyed.
    pub async fn rewrap(&self) -> Result<Rewrapped, KeyStoreError> {
        use futures::TryStreamExt;
        let master = self.master()?;
        let mut counts = Rewrapped::default();
        let keys: Vec<String> = self.kv.keys().await.map_err(nats)?.try_collect().await.map_err(nats)?;
        for name in keys {
            let Ok(case_id) = CaseId::parse(&name) else { continue };
            let Some(entry) = self.entry(&case_id).await? else { continue };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let wrapped: WrappedKey = serde_json::from_slice(&entry.value)
                .map_err(|e| KeyStoreError::Key { case_id, source: SealError::Malformed(e.to_string()) })?;
            if wrapped.master == master.current_id() {
                counts.current += 1;
                continue;
            }
            let key = master.unwrap(&case_id, &wrapped).map_err(|source| KeyStoreError::Key { case_id, source })?;
            let again = master.wrap(&case_id, &key).map_err(|source| KeyStoreError::Key { case_id, source })?;
            let value = Bytes::from(serde_json::to_vec(&again).expect("wrapped keys serialise"));
            match self.kv.update(&name, value, entry.revision).await {
                Ok(_) => counts.rewrapped += 1,
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => counts.skipped += 1,
                Err(error) => return Err(nats(error)),
            }
        }
        Ok(counts)
    }
}
