//! Photos and other attachments, stored content-addressed in a JetStream
//! object-store bucket: the object's name is the SHA-256 of its bytes, so an
//! upload retried after a dropped connection stores nothing twice.

use async_nats::jetstream::{self, object_store};
use gridcase_domain::Sha256Digest;
use sha2::{Digest, Sha256};

pub const DEFAULT_BUCKET: &str = "gridcase-attachments";

pub const METRIC_ATTACHMENT_BYTES: &str = "gridcase_attachment_bytes_total";

#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error("attachment store unavailable: {0}")]
    Unavailable(String),
}

/// An object-store bucket, created (file storage, `replicas` copies) if it
/// does not exist.
pub async fn open_bucket(
    context: &jetstream::Context,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<object_store::ObjectStore, jetstream::context::CreateObjectStoreError> {
    match context.get_object_store(bucket).await {
        Ok(store) => Ok(store),
        Err(_) => {
            context
                .create_object_store(object_store::Config {
                    bucket: bucket.to_owned(),
                    description: Some(description.to_owned()),
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
        }
    }
}

#[derive(Clone)]
pub struct AttachmentStore {
    bucket: object_store::ObjectStore,
}

/// What the store knows of one stored attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    pub sha256: Sha256Digest,
    pub size: u64,
}

impl AttachmentStore {
    /// Open the bucket, creating it with `replicas` copies if it does not exist.
    pub async fn open(context: &jetstream::Context, bucket: &str, replicas: usize) -> Result<Self, AttachmentError> {
        let bucket = open_bucket(context, bucket, "gridcase attachments, named by SHA-256", replicas)
            .await
            .map_err(|e| AttachmentError::Unavailable(e.to_string()))?;
        Ok(Self { bucket })
    }

    /// Store `content` and return its digest. Storing the same bytes again is
    /// a no-op.
    pub async fn put(&self, content: &[u8]) -> Result<StoredAttachment, AttachmentError> {
        let sha256 = Sha256Digest::parse(&hex::encode(Sha256::digest(content))).expect("hex digest");
        if let Some(existing) = self.find(&sha256).await? {
            return Ok(existing);
        }
        let mut reader = content;
        self.bucket.put(sha256.as_str(), &mut reader).await.map_err(|e| AttachmentError::Unavailable(e.to_string()))?;
        metrics::counter!(METRIC_ATTACHMENT_BYTES).increment(content.len() as u64);
        Ok(StoredAttachment { sha256, size: content.len() as u64 })
    }

    /// The stored attachment with this digest, if any.
    pub async fn find(&self, sha256: &Sha256Digest) -> Result<Option<StoredAttachment>, AttachmentError> {
        match self.bucket.info(sha256.as_str()).await {
            Ok(info) if !info.deleted => Ok(Some(StoredAttachment { sha256: sha256.clone(), size: info.size as u64 })),
            Ok(_) => Ok(None),
            Err(error) if error.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(error) => Err(AttachmentError::Unavailable(error.to_string())),
        }
    }

    /// Read an attachment's bytes back.
    pub async fn get(&self, sha256: &Sha256Digest) -> Result<Vec<u8>, AttachmentError> {
        use tokio::io::AsyncReadExt;
        let mut object =
            self.bucket.get(sha256.as_str()).await.map_err(|e| AttachmentError::Unavailable(e.to_string()))?;
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.map_err(|e| AttachmentError::Unavailable(e.to_string()))?;
        Ok(bytes)
    }
}
