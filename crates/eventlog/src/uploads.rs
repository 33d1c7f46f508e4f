//! Resumable uploads: an attachment sent in parts over a connection that
//! keeps breaking, kept on a JetStream stream of its own
//! (`GRIDCASE_UPLOADS`) until the whole has arrived and become an
//! attachment, or the upload has expired.
//!
//! One upload is two subjects under its owner, both named by tokens that
//! hold nothing personal (the owner's is a digest of their subject):
//!
//! * `gridcase.upload.<owner>.<upload>.meta`: what was declared (type,
//!   size, SHA-256, when it expires), written when the upload is opened
//!   (expecting the subject empty, so two opens make one upload) and again
//!   when it is complete;
//! * `gridcase.upload.<owner>.<upload>.part`: the parts in order, each
//!   with its offset in a header, each appended expecting the last part's
//!   sequence: two writers cannot interleave, and where the server stands
//!   is the last part's offset plus its length (one read, after any restart).
//!
//! Unlike the attachment and case streams, this one forgets: finished and
//! expired uploads are purged, and a stream-wide age limit backs the sweep.
//! Its size is not a stream limit (nats-server reserves a stream's
//! `max_bytes` when it is created, and refuses the stream where the store
//! has less room than that): intake refuses to open an upload that would
//! take the stream past the total quota, and the server's own storage
//! limit refuses parts beyond it ([`UploadError::Full`]).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;
use futures::TryStreamExt;
use gridcase_domain::Sha256Digest;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The upload stream's default name.
pub const DEFAULT_STREAM: &str = "GRIDCASE_UPLOADS";
/// Subjects of the upload stream.
pub const SUBJECTS: &str = "gridcase.upload.>";
/// The largest part one message may carry (NATS's default payload limit is 1 MiB).
pub const MAX_PART_BYTES: usize = 512 * 1024;

const HEADER_OFFSET: &str = "Gridcase-Upload-Offset";

/// The namespace of upload ids: UUID v5 of the owner and what they declared,
/// so opening the same file again (an app that lost its state) finds the
/// same upload.
const UPLOAD_NAMESPACE: Uuid = Uuid::from_u128(0x7c1e_52a0_4b9d_4e61_8f03_d2a6_19b4_e5c8);

pub const METRIC_UPLOAD_PART_BYTES: &str = "gridcase_upload_part_bytes_total";
pub const METRIC_UPLOADS_EXPIRED: &str = "gridcase_uploads_expired_total";

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload store unavailable: {0}")]
    Unavailable(String),
    /// The stream's byte limit (the total quota) is reached.
    #[error("the upload store is full")]
    Full,
    /// Another writer moved the upload on meanwhile: read where it stands again.
    #[error("the upload moved on meanwhile")]
    Moved,
    #[error("upload {0} is damaged: {1}")]
    Damaged(Uuid, String),
}

fn unavailable(error: impl std::fmt::Display) -> UploadError {
    UploadError::Unavailable(error.to_string())
}

/// The subject token of an owner: a digest of their subject, which may hold
/// characters a subject may not and which the stream need not show.
pub fn owner_token(owner: &str) -> String {
    hex::encode(&Sha256::digest(owner.as_bytes())[..16])
}

/// The id of `owner`'s upload of this content.
pub fn upload_id(owner: &str, sha256: &Sha256Digest, size: u64, content_type: &str) -> Uuid {
    Uuid::new_v5(&UPLOAD_NAMESPACE, format!("{owner}\n{sha256}\n{size}\n{content_type}").as_bytes())
}

fn meta_subject(owner: &str, upload: Uuid) -> String {
    format!("gridcase.upload.{}.{}.meta", owner_token(owner), upload.simple())
}

fn part_subject(owner: &str, upload: Uuid) -> String {
    format!("gridcase.upload.{}.{}.part", owner_token(owner), upload.simple())
}

/// What an upload was opened with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declared {
    pub upload_id: Uuid,
    /// The subject of the person (or system) uploading.
    pub owner: String,
    pub content_type: String,
    pub file_name: String,
    pub size: u64,
    pub sha256: Sha256Digest,
    pub started_at: Timestamp,
    pub expires_at: Timestamp,
    /// The whole arrived, matched its digest and is an attachment now.
    #[serde(default)]
    pub complete: bool,
}

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub declared: Declared,
    /// Bytes received and kept, from the start: the next part's offset.
    pub received: u64,
    /// The stream sequence of the last part (0: none yet).
    last_part: u64,
}

impl Upload {
    /// A complete upload, as its declaration says (its parts are gone).
    pub fn complete_at_once(declared: Declared) -> Self {
        Self { received: declared.size, declared, last_part: 0 }
    }
}

/// Where a part sent at `offset` with `len` bytes falls, against an upload
/// of `size` bytes of which `received` have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// It starts where the upload stands or overlaps its end: keep it from
    /// byte `skip` of the part on.
    Fits { skip: usize },
    /// Everything in it has arrived already (a part sent twice).
    Already,
    /// It starts beyond what has arrived: something in between is missing.
    Gap,
    /// It would end beyond the declared size.
    Beyond,
}

/// Pure: where a part falls (see [`Placement`]).
pub fn place(received: u64, size: u64, offset: u64, len: u64) -> Placement {
    let Some(end) = offset.checked_add(len) else { return Placement::Beyond };
    if end > size {
        Placement::Beyond
    } else if offset > received {
        Placement::Gap
    } else if end <= received {
        Placement::Already
    } else {
        Placement::Fits { skip: (received - offset) as usize }
    }
}

/// The upload stream's configuration: `max_age` is the stream-wide limit
/// behind the sweep.
pub fn stream_config(name: &str, replicas: usize, max_age: Duration) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        description: Some("gridcase resumable uploads: parts kept until the whole is an attachment or expires".into()),
        subjects: vec![SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        max_bytes: -1,
        max_age,
        max_messages_per_subject: -1,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        num_replicas: replicas,
        ..Default::default()
    }
}

#[derive(Clone)]
pub struct UploadStore {
    context: jetstream::Context,
    stream: stream::Stream,
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).and_then(|value| value.as_str().parse().ok())
}

fn is_full(error: &async_nats::jetstream::context::PublishError) -> bool {
    // nats-server answers a stream at its byte limit (discard new) with
    // "maximum bytes exceeded" or, with the store itself out of space, 10047.
    let text = error.to_string();
    text.contains("maximum bytes") || text.contains("10047") || text.contains("insufficient resources")
}

impl UploadStore {
    /// Open the stream `name`, creating it if it does not exist.
    pub async fn open(
        context: &jetstream::Context,
        name: &str,
        replicas: usize,
        max_age: Duration,
    ) -> Result<Self, UploadError> {
        let stream = context.get_or_create_stream(stream_config(name, replicas, max_age)).await.map_err(unavailable)?;
        Ok(Self { context: context.clone(), stream })
    }

    /// Bytes the stream holds now, of every upload.
    pub async fn bytes(&self) -> Result<u64, UploadError> {
        let mut stream = self.stream.clone();
        Ok(stream.info().await.map_err(unavailable)?.state.bytes)
    }

    async fn last(&self, subject: &str) -> Result<Option<async_nats::jetstream::message::StreamMessage>, UploadError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(message)),
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn declared(&self, owner: &str, upload: Uuid) -> Result<Option<(Declared, u64)>, UploadError> {
        let Some(message) = self.last(&meta_subject(owner, upload)).await? else { return Ok(None) };
        let declared: Declared = serde_json::from_slice(&message.payload)
            .map_err(|error| UploadError::Damaged(upload, format!("its declaration does not read: {error}")))?;
        Ok(Some((declared, message.sequence)))
    }

    /// Where `owner`'s upload stands, if it exists (another owner's upload
    /// of the same id does not: the subjects are theirs).
    pub async fn get(&self, owner: &str, upload: Uuid) -> Result<Option<Upload>, UploadError> {
        let Some((declared, _)) = self.declared(owner, upload).await? else { return Ok(None) };
        let (received, last_part) = match self.last(&part_subject(owner, upload)).await? {
            None => (0, 0),
            Some(part) => {
                let offset = header_number(&part.headers, HEADER_OFFSET)
                    .ok_or_else(|| UploadError::Damaged(upload, "a part without its offset".into()))?;
                (offset + part.payload.len() as u64, part.sequence)
            }
        };
        let received = if declared.complete { declared.size } else { received };
        Ok(Some(Upload { declared, received, last_part }))
    }

    /// Open an upload, or find the one already open under its id.
    pub async fn open_upload(&self, declared: Declared) -> Result<Upload, UploadError> {
        let subject = meta_subject(&declared.owner, declared.upload_id);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
        let payload = Bytes::from(serde_json::to_vec(&declared).expect("a declaration serialises"));
        let sent = self.context.publish_with_headers(subject, headers, payload).await.map_err(unavailable)?.await;
        match sent {
            Ok(_) => Ok(Upload { declared, received: 0, last_part: 0 }),
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                // Opened before: where it stands.
                self.get(&declared.owner, declared.upload_id)
                    .await?
                    .ok_or_else(|| unavailable("the upload vanished while it was opened"))
            }
            Err(error) if is_full(&error) => Err(UploadError::Full),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Append `bytes` at `upload.received`, expecting the upload where
    /// `upload` says it stands; where it stands then.
    pub async fn append(&self, upload: &Upload, bytes: Bytes) -> Result<Upload, UploadError> {
        let declared = &upload.declared;
        let mut headers = HeaderMap::new();
        headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, upload.last_part.to_string().as_str());
        headers.insert(HEADER_OFFSET, upload.received.to_string().as_str());
        let len = bytes.len() as u64;
        let subject = part_subject(&declared.owner, declared.upload_id);
        let sent = self.context.publish_with_headers(subject, headers, bytes).await.map_err(unavailable)?.await;
        match sent {
            Ok(ack) => {
                metrics::counter!(METRIC_UPLOAD_PART_BYTES).increment(len);
                Ok(Upload { declared: declared.clone(), received: upload.received + len, last_part: ack.sequence })
            }
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => Err(UploadError::Moved),
            Err(error) if is_full(&error) => Err(UploadError::Full),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// The parts put together, in order; `Damaged` if they do not fit end to end.
    pub async fn assemble(&self, upload: &Upload) -> Result<Vec<u8>, UploadError> {
        let declared = &upload.declared;
        let subject = part_subject(&declared.owner, declared.upload_id);
        let damaged = |problem: String| UploadError::Damaged(declared.upload_id, problem);
        let mut bytes = Vec::with_capacity(declared.size as usize);
        let mut sequence = 0;
        while (bytes.len() as u64) < upload.received {
            let part = match self.stream.get_first_raw_message_by_subject(&subject, sequence + 1).await {
                Ok(part) => part,
                Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                    return Err(damaged(format!("the parts end at byte {}", bytes.len())));
                }
                Err(error) => return Err(unavailable(error)),
            };
            let offset = header_number(&part.headers, HEADER_OFFSET).ok_or_else(|| damaged("no offset".into()))?;
            if offset != bytes.len() as u64 {
                return Err(damaged(format!("a part at {offset} where {} was expected", bytes.len())));
            }
            bytes.extend_from_slice(&part.payload);
            sequence = part.sequence;
        }
        Ok(bytes)
    }

    /// Record the upload complete (its content is an attachment now) and
    /// let its parts go.
    pub async fn complete(&self, upload: &Upload) -> Result<Declared, UploadError> {
        let mut declared = upload.declared.clone();
        declared.complete = true;
        let subject = meta_subject(&declared.owner, declared.upload_id);
        let payload = Bytes::from(serde_json::to_vec(&declared).expect("a declaration serialises"));
        self.context.publish(subject, payload).await.map_err(unavailable)?.await.map_err(unavailable)?;
        self.purge(&part_subject(&declared.owner, declared.upload_id)).await?;
        Ok(declared)
    }

    /// Forget an upload: its declaration and its parts.
    pub async fn discard(&self, owner: &str, upload: Uuid) -> Result<(), UploadError> {
        self.purge(&format!("gridcase.upload.{}.{}.>", owner_token(owner), upload.simple())).await
    }

    async fn purge(&self, filter: &str) -> Result<(), UploadError> {
        self.stream.purge().filter(filter).await.map_err(unavailable)?;
        Ok(())
    }

    /// The declarations of every upload under `owner` (open or complete).
    pub async fn of_owner(&self, owner: &str) -> Result<Vec<Declared>, UploadError> {
        self.declarations(&format!("gridcase.upload.{}.*.meta", owner_token(owner))).await
    }

    async fn declarations(&self, filter: &str) -> Result<Vec<Declared>, UploadError> {
        let stream = self.stream.clone();
        let mut subjects = stream.info_with_subjects(filter).await.map_err(unavailable)?;
        let mut found = Vec::new();
        while let Some((subject, _)) = subjects.try_next().await.map_err(unavailable)? {
            let Some(message) = self.last(&subject).await? else { continue };
            match serde_json::from_slice::<Declared>(&message.payload) {
                Ok(declared) => found.push(declared),
                Err(error) => tracing::warn!(%subject, %error, "an upload declaration that does not read"),
            }
        }
        Ok(found)
    }

    /// Purge every upload expired at `now`; how many.
    pub async fn sweep(&self, now: Timestamp) -> Result<usize, UploadError> {
        let mut swept = 0;
        for declared in self.declarations("gridcase.upload.*.*.meta").await? {
            if declared.expires_at <= now {
                self.discard(&declared.owner, declared.upload_id).await?;
                swept += 1;
            }
        }
        if swept > 0 {
            metrics::counter!(METRIC_UPLOADS_EXPIRED).increment(swept as u64);
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_falls_where_its_offset_says() {
        // 100 bytes declared, 40 arrived.
        assert_eq!(place(40, 100, 40, 20), Placement::Fits { skip: 0 });
        assert_eq!(place(40, 100, 30, 20), Placement::Fits { skip: 10 }, "overlapping the end: the tail is new");
        assert_eq!(place(40, 100, 20, 20), Placement::Already, "ending where the upload stands");
        assert_eq!(place(40, 100, 0, 10), Placement::Already);
        assert_eq!(place(40, 100, 41, 10), Placement::Gap);
        assert_eq!(place(40, 100, 90, 11), Placement::Beyond);
        assert_eq!(place(40, 100, 40, 60), Placement::Fits { skip: 0 }, "the last part ends on the size");
        assert_eq!(place(40, 100, u64::MAX, 2), Placement::Beyond, "no overflow");
        assert_eq!(place(100, 100, 100, 0), Placement::Already, "nothing left to send");
    }

    #[test]
    fn upload_ids_and_owner_tokens_are_stable_and_separate_owners() {
        let digest = Sha256Digest::parse(&"a".repeat(64)).unwrap();
        let a = upload_id("worker-1", &digest, 10, "image/jpeg");
        assert_eq!(a, upload_id("worker-1", &digest, 10, "image/jpeg"));
        assert_ne!(a, upload_id("worker-2", &digest, 10, "image/jpeg"));
        assert_ne!(a, upload_id("worker-1", &digest, 11, "image/jpeg"));
        assert_eq!(owner_token("worker-1").len(), 32);
        assert!(owner_token("someone.with>odd*chars").chars().all(|c| c.is_ascii_hexdigit()));
    }
}
