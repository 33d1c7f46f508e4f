//! Photos and other attachments, stored content-addressed and write-once on
//! a JetStream stream of their own (`GRIDCASE_ATTACHMENTS`), kept like the
//! case stream: no limits, no deletion, no purge, no roll-ups.
//!
//! An attachment is one subject, `gridcase.attachment.<sha256>`, holding its
//! bytes in chunks of [`CHUNK_BYTES`], written as one atomic batch whose
//! first chunk expects the subject to be empty. So a subject holds either
//! nothing or the whole attachment, written once: an upload retried after a
//! dropped connection, or the same photo sent by two workers, stores
//! nothing twice. (A JetStream object store would need roll-ups, which any
//! client allowed to write to it could use to purge the whole bucket.)

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use gridcase_domain::Sha256Digest;
use sha2::{Digest, Sha256};

/// The attachment stream's default name.
pub const DEFAULT_STREAM: &str = "GRIDCASE_ATTACHMENTS";
/// The object-store bucket attachments were kept in before this stream
/// (`gridctl log migrate-attachments` copies it).
pub const LEGACY_BUCKET: &str = "gridcase-attachments";
/// Subjects of the attachment stream.
pub const SUBJECTS: &str = "gridcase.attachment.>";
/// Bytes per stored message: well under NATS's 1 MB payload limit.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Messages one atomic batch may hold (nats-server's default limit).
pub const MAX_CHUNKS: usize = 1000;
/// The largest attachment the store can hold ([`MAX_CHUNKS`] chunks).
pub const MAX_BYTES: u64 = (CHUNK_BYTES * MAX_CHUNKS) as u64;

const HEADER_SIZE: &str = "Gridcase-Attachment-Size";
const HEADER_CHUNKS: &str = "Gridcase-Attachment-Chunks";

pub const METRIC_ATTACHMENT_BYTES: &str = "gridcase_attachment_bytes_total";

#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error("attachment store unavailable: {0}")]
    Unavailable(String),
    #[error("attachment of {0} bytes is larger than the store takes ({MAX_BYTES})")]
    TooLarge(u64),
    /// What the stream holds under a digest is not the content of that
    /// digest: the store was tampered with or damaged.
    #[error("attachment {sha256} is damaged: {problem}")]
    Damaged { sha256: Sha256Digest, problem: String },
}

fn unavailable(error: impl std::fmt::Display) -> AttachmentError {
    AttachmentError::Unavailable(error.to_string())
}

/// The subject of the attachment with this digest.
pub fn subject(sha256: &Sha256Digest) -> String {
    format!("gridcase.attachment.{}", sha256.as_str())
}

/// The attachment stream's configuration: kept like the case stream.
pub fn stream_config(name: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        description: Some("gridcase attachments: one subject per content (its SHA-256), written once".into()),
        subjects: vec![SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        allow_direct: true,
        allow_atomic_publish: true,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// The attachment stream as [`crate::integrity::watch`] checks it.
pub fn watched(name: &str, replicas: usize) -> (crate::integrity::Watched, stream::Config) {
    let watched = crate::integrity::Watched {
        stream: name.to_owned(),
        keeps: crate::integrity::Keeps::Everything,
        subjects: SUBJECTS.to_owned(),
    };
    (watched, stream_config(name, replicas))
}

#[derive(Clone)]
pub struct AttachmentStore {
    context: jetstream::Context,
    stream: stream::Stream,
}

/// What the store knows of one stored attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    pub sha256: Sha256Digest,
    pub size: u64,
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).and_then(|value| value.as_str().parse().ok())
}

impl AttachmentStore {
    /// Open the stream `name`, creating it with `replicas` copies if it does
    /// not exist.
    pub async fn open(context: &jetstream::Context, name: &str, replicas: usize) -> Result<Self, AttachmentError> {
        let stream = context.get_or_create_stream(stream_config(name, replicas)).await.map_err(unavailable)?;
        Ok(Self { context: context.clone(), stream })
    }

    /// Store `content` and return its digest. Storing the same bytes again is
    /// a no-op.
    pub async fn put(&self, content: &[u8]) -> Result<StoredAttachment, AttachmentError> {
        let size = content.len() as u64;
        if size > MAX_BYTES {
            return Err(AttachmentError::TooLarge(size));
        }
        let sha256 = Sha256Digest::parse(&hex::encode(Sha256::digest(content))).expect("hex digest");
        if let Some(existing) = self.find(&sha256).await? {
            return Ok(existing);
        }
        match self.write(&sha256, content).await {
            Ok(()) => {
                metrics::counter!(METRIC_ATTACHMENT_BYTES).increment(size);
                Ok(StoredAttachment { sha256, size })
            }
            // Another writer may have stored the same content meanwhile (the
            // subject was no longer empty): then it is there.
            Err(error) => match self.find(&sha256).await? {
                Some(existing) => Ok(existing),
                None => Err(error),
            },
        }
    }

    /// The chunks as one atomic batch, the first expecting an empty subject.
    async fn write(&self, sha256: &Sha256Digest, content: &[u8]) -> Result<(), AttachmentError> {
        use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
        let subject = subject(sha256);
        let chunks: Vec<&[u8]> = if content.is_empty() { vec![&[][..]] } else { content.chunks(CHUNK_BYTES).collect() };
        let total = chunks.len();
        let messages = chunks
            .into_iter()
            .enumerate()
            .map(|(index, chunk)| {
                let mut headers = HeaderMap::new();
                headers.insert(HEADER_SIZE, content.len().to_string().as_str());
                headers.insert(HEADER_CHUNKS, total.to_string().as_str());
                if index == 0 {
                    headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
                }
                (subject.clone(), headers, Bytes::copy_from_slice(chunk))
            })
            .collect();
        let ack = crate::group::publish_atomic(&self.context, messages).await.map_err(|error| match error {
            crate::group::AtomicError::Connection(error) => unavailable(error),
            crate::group::AtomicError::Publish(error) => unavailable(error),
        })?;
        ack.await.map_err(unavailable)?;
        Ok(())
    }

    /// The stored attachment with this digest, if any.
    pub async fn find(&self, sha256: &Sha256Digest) -> Result<Option<StoredAttachment>, AttachmentError> {
        match self.stream.get_last_raw_message_by_subject(&subject(sha256)).await {
            Ok(message) => {
                let size = header_number(&message.headers, HEADER_SIZE).ok_or_else(|| AttachmentError::Damaged {
                    sha256: sha256.clone(),
                    problem: "a chunk without its size".into(),
                })?;
                Ok(Some(StoredAttachment { sha256: sha256.clone(), size }))
            }
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Read an attachment's bytes back, checked against its digest; `None`
    /// if nothing is stored under it.
    pub async fn get(&self, sha256: &Sha256Digest) -> Result<Option<Vec<u8>>, AttachmentError> {
        let subject = subject(sha256);
        let damaged = |problem: String| AttachmentError::Damaged { sha256: sha256.clone(), problem };
        let first = match self.stream.get_first_raw_message_by_subject(&subject, 0).await {
            Ok(message) => message,
            Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(error) => return Err(unavailable(error)),
        };
        let size = header_number(&first.headers, HEADER_SIZE).ok_or_else(|| damaged("no size".into()))?;
        let chunks = header_number(&first.headers, HEADER_CHUNKS).ok_or_else(|| damaged("no chunk count".into()))?;
        if size > MAX_BYTES || chunks == 0 || chunks > MAX_CHUNKS as u64 {
            return Err(damaged(format!("{size} bytes in {chunks} chunks")));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        bytes.extend_from_slice(&first.payload);
        let mut sequence = first.sequence;
        for _ in 1..chunks {
            let next = self.stream.get_first_raw_message_by_subject(&subject, sequence + 1).await.map_err(|error| {
                if error.kind() == stream::RawMessageErrorKind::NoMessageFound {
                    damaged(format!("a chunk after stream sequence {sequence} is missing"))
                } else {
                    unavailable(error)
                }
            })?;
            sequence = next.sequence;
            bytes.extend_from_slice(&next.payload);
        }
        if bytes.len() as u64 != size || hex::encode(Sha256::digest(&bytes)) != sha256.as_str() {
            return Err(damaged("the stored bytes do not have the digest they are stored under".into()));
        }
        Ok(Some(bytes))
    }
}
