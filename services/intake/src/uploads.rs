//! Resumable uploads (`StartUpload`, `PutUploadPart`, `GetUpload`,
//! `CancelUpload`): the checks, quotas and answers around
//! `gridcase_eventlog::uploads`, which keeps the parts on JetStream (so a
//! restart of intake loses nothing acknowledged) and decides where a part
//! falls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gridcase_domain::Sha256Digest;
use gridcase_eventlog::AttachmentStore;
use gridcase_eventlog::uploads::{self, Declared, Placement, Upload, UploadError, UploadStore};
use gridcase_grpc::{Violations, status};
use gridcase_process::TimeSource;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as api;
use jiff::SignedDuration;
use sha2::{Digest, Sha256};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, QuotaViolation, StatusExt};
use tracing::info;
use uuid::Uuid;

use crate::validate::{self, CONTENT_TYPES};

pub const METRIC_UPLOAD_REFUSALS: &str = "gridcase_upload_refusals_total";

/// What one person, and everyone together, may keep in open uploads.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// The largest file (the one-shot upload's limit too).
    pub max_bytes: u64,
    /// The largest part.
    pub max_part_bytes: usize,
    /// How long an upload may take from its start.
    pub ttl: SignedDuration,
    /// Open uploads per person.
    pub open_per_person: usize,
    /// Bytes declared in one person's open uploads together.
    pub bytes_per_person: u64,
    /// Bytes the upload store holds, everyone's together.
    pub total_bytes: u64,
    /// Parts of one person being received at once.
    pub parts_in_flight: usize,
}

pub struct Uploads {
    pub(crate) store: UploadStore,
    pub(crate) attachments: AttachmentStore,
    pub(crate) limits: UploadLimits,
    pub(crate) clock: Arc<dyn TimeSource>,
    /// Parts being received now, per person.
    in_flight: Mutex<HashMap<String, usize>>,
}

/// A part being received: counted against its owner until dropped.
struct InFlight<'a> {
    uploads: &'a Uploads,
    owner: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut counts = self.uploads.in_flight.lock().expect("in-flight counts");
        if let Some(count) = counts.get_mut(&self.owner) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.owner);
            }
        }
    }
}

fn refused(quota: &str, description: String) -> Status {
    metrics::counter!(METRIC_UPLOAD_REFUSALS, "quota" => quota.to_owned()).increment(1);
    info!(quota, %description, "upload refused by a quota");
    Status::with_error_details(
        Code::ResourceExhausted,
        description.clone(),
        ErrorDetails::with_quota_failure(vec![QuotaViolation::new(quota, description)]),
    )
}

fn store_failed(error: UploadError) -> Status {
    match error {
        UploadError::Full => refused("total_bytes", "the upload store is full; try again later".into()),
        UploadError::Damaged(upload, problem) => {
            Status::data_loss(format!("upload {upload} is damaged ({problem}); cancel it and start again"))
        }
        UploadError::Moved => Status::aborted("the upload moved on meanwhile; ask where it stands and go on"),
        UploadError::Unavailable(_) => status::unavailable("the upload store", &error),
    }
}

/// A part that does not fit, with the offset the server has.
fn misfit(code: Code, upload: &Upload, what: &str) -> Status {
    let received = upload.received;
    let description =
        format!("{what}; the server has {received} bytes of {}: send from offset {received}", upload.declared.size);
    let mut details = ErrorDetails::with_error_info(
        "PART_DOES_NOT_FIT",
        "gridcase.intake.v1",
        [("received".to_owned(), received.to_string()), ("size".to_owned(), upload.declared.size.to_string())],
    );
    details.set_bad_request(vec![{
        let mut violation = tonic_types::FieldViolation::new("offset", description.clone());
        violation.reason = if code == Code::OutOfRange { "BEYOND_SIZE" } else { "GAP" }.to_owned();
        violation
    }]);
    Status::with_error_details(code, description, details)
}

fn upload_id(text: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(text).map_err(|_| Violations::one("upload_id", "MALFORMED", "is not an upload id (a UUID)"))
}

impl Uploads {
    pub fn new(
        store: UploadStore,
        attachments: AttachmentStore,
        limits: UploadLimits,
        clock: Arc<dyn TimeSource>,
    ) -> Self {
        Self { store, attachments, limits, clock, in_flight: Mutex::new(HashMap::new()) }
    }

    fn status(&self, upload: &Upload, attachment: Option<common::AttachmentRef>) -> api::UploadStatus {
        let declared = &upload.declared;
        let attachment = attachment.or_else(|| {
            declared.complete.then(|| common::AttachmentRef {
                sha256: declared.sha256.to_string(),
                size: declared.size,
                content_type: declared.content_type.clone(),
            })
        });
        api::UploadStatus {
            upload_id: declared.upload_id.to_string(),
            size: declared.size,
            received: upload.received,
            max_part_bytes: self.limits.max_part_bytes as u32,
            expires_at: Some(validate::timestamp_to_proto(declared.expires_at)),
            attachment,
        }
    }

    pub async fn start(&self, owner: &str, request: &api::StartUploadRequest) -> Result<api::UploadStatus, Status> {
        let mut v = Violations::new();
        if !CONTENT_TYPES.contains(&request.content_type.as_str()) {
            v.add("content_type", "UNSUPPORTED", format!("must be one of {}", CONTENT_TYPES.join(", ")));
        }
        if request.size == 0 {
            v.add("size", "REQUIRED", "is required: the whole file's size in bytes");
        } else if request.size > self.limits.max_bytes {
            v.add("size", "TOO_LARGE", format!("exceeds the limit of {} bytes", self.limits.max_bytes));
        }
        let sha256 = match Sha256Digest::parse(&request.sha256) {
            Ok(digest) => Some(digest),
            Err(why) => {
                v.add("sha256", if request.sha256.is_empty() { "REQUIRED" } else { "MALFORMED" }, why);
                None
            }
        };
        if request.file_name.chars().count() > 255 || request.file_name.chars().any(char::is_control) {
            v.add("file_name", "MALFORMED", "must be at most 255 characters, none of them control characters");
        }
        v.into_result()?;
        let sha256 = sha256.expect("checked");
        let id = uploads::upload_id(owner, &sha256, request.size, &request.content_type);
        let now = self.clock.now();

        // Content stored already: nothing to send.
        let stored =
            self.attachments.find(&sha256).await.map_err(|e| status::unavailable("the attachment store", &e))?;
        if let Some(stored) = stored.filter(|stored| stored.size == request.size) {
            let upload = Upload::complete_at_once(Declared {
                upload_id: id,
                owner: owner.to_owned(),
                content_type: request.content_type.clone(),
                file_name: request.file_name.clone(),
                size: stored.size,
                sha256,
                started_at: now,
                expires_at: now,
                complete: true,
            });
            return Ok(self.status(&upload, None));
        }
        if let Some(existing) = self.store.get(owner, id).await.map_err(store_failed)? {
            if existing.declared.expires_at > now {
                return Ok(self.status(&existing, None));
            }
            // Expired but not yet swept: start it afresh.
            self.store.discard(owner, id).await.map_err(store_failed)?;
        }

        let open: Vec<Declared> = self
            .store
            .of_owner(owner)
            .await
            .map_err(store_failed)?
            .into_iter()
            .filter(|d| !d.complete && d.expires_at > now)
            .collect();
        if open.len() >= self.limits.open_per_person {
            return Err(refused(
                "open_per_person",
                format!("you have {} uploads open, the most one person may; finish or cancel one first", open.len()),
            ));
        }
        let declared_bytes: u64 = open.iter().map(|d| d.size).sum();
        if declared_bytes + request.size > self.limits.bytes_per_person {
            return Err(refused(
                "bytes_per_person",
                format!(
                    "your open uploads would hold {} bytes, more than the {} one person may; finish or cancel one first",
                    declared_bytes + request.size,
                    self.limits.bytes_per_person
                ),
            ));
        }
        let held = self.store.bytes().await.map_err(store_failed)?;
        if held + request.size > self.limits.total_bytes {
            return Err(refused("total_bytes", "the upload store is full; try again later".into()));
        }
        let declared = Declared {
            upload_id: id,
            owner: owner.to_owned(),
            content_type: request.content_type.clone(),
            file_name: request.file_name.clone(),
            size: request.size,
            sha256,
            started_at: now,
            expires_at: now + self.limits.ttl,
            complete: false,
        };
        let upload = self.store.open_upload(declared).await.map_err(store_failed)?;
        info!(upload_id = %id, size = request.size, "upload opened");
        Ok(self.status(&upload, None))
    }

    async fn find(&self, owner: &str, id: Uuid) -> Result<Upload, Status> {
        let now = self.clock.now();
        match self.store.get(owner, id).await.map_err(store_failed)? {
            Some(upload) if upload.declared.complete || upload.declared.expires_at > now => Ok(upload),
            _ => Err(Status::not_found(format!("upload {id} does not exist (or has expired): start it again"))),
        }
    }

    pub async fn get(&self, owner: &str, request: &api::GetUploadRequest) -> Result<api::UploadStatus, Status> {
        let upload = self.find(owner, upload_id(&request.upload_id)?).await?;
        Ok(self.status(&upload, None))
    }

    pub async fn cancel(&self, owner: &str, request: &api::GetUploadRequest) -> Result<api::UploadStatus, Status> {
        let id = upload_id(&request.upload_id)?;
        let upload = self.find(owner, id).await?;
        self.store.discard(owner, id).await.map_err(store_failed)?;
        info!(upload_id = %id, "upload cancelled");
        Ok(api::UploadStatus { received: 0, ..self.status(&upload, None) })
    }

    fn enter(&self, owner: &str) -> Result<InFlight<'_>, Status> {
        let mut counts = self.in_flight.lock().expect("in-flight counts");
        let count = counts.entry(owner.to_owned()).or_default();
        if *count >= self.limits.parts_in_flight {
            drop(counts);
            return Err(refused(
                "parts_in_flight",
                format!(
                    "{} parts of yours are being received already; wait for their answers",
                    self.limits.parts_in_flight
                ),
            ));
        }
        *count += 1;
        Ok(InFlight { uploads: self, owner: owner.to_owned() })
    }

    pub async fn put(&self, owner: &str, request: api::PutUploadPartRequest) -> Result<api::UploadStatus, Status> {
        let id = upload_id(&request.upload_id)?;
        if request.content.len() > self.limits.max_part_bytes {
            return Err(Violations::one(
                "content",
                "TOO_LARGE",
                format!("a part may hold at most {} bytes", self.limits.max_part_bytes),
            ));
        }
        let _in_flight = self.enter(owner)?;
        let mut upload = self.find(owner, id).await?;
        if upload.declared.complete {
            return Ok(self.status(&upload, None));
        }
        let content = Bytes::from(request.content);
        match uploads::place(upload.received, upload.declared.size, request.offset, content.len() as u64) {
            Placement::Already => {}
            Placement::Gap => {
                return Err(misfit(Code::FailedPrecondition, &upload, "the part starts beyond what has arrived"));
            }
            Placement::Beyond => {
                return Err(misfit(Code::OutOfRange, &upload, "the part ends beyond the declared size"));
            }
            Placement::Fits { skip } => {
                let new = content.slice(skip..);
                if upload.received == 0 {
                    // The type is known from the first bytes: refuse a lying
                    // file now, not after it has all been sent.
                    self.check_type(&upload, &new)?;
                }
                upload = match self.store.append(&upload, new).await {
                    Ok(upload) => upload,
                    // Another call moved it on (a duplicate sent in parallel):
                    // answer with where it stands now.
                    Err(UploadError::Moved) => {
                        return self.get(owner, &api::GetUploadRequest { upload_id: id.to_string() }).await;
                    }
                    Err(error) => return Err(store_failed(error)),
                };
            }
        }
        if upload.received == upload.declared.size {
            return self.finish(owner, upload).await;
        }
        Ok(self.status(&upload, None))
    }

    fn check_type(&self, upload: &Upload, head: &[u8]) -> Result<(), Status> {
        let declared = &upload.declared.content_type;
        validate::content_matches(declared, head).map_err(|found| {
            Violations::one(
                "content",
                "CONTENT_MISMATCH",
                format!("the file is not {declared}: its leading bytes say {found}"),
            )
        })
    }

    /// The whole has arrived: check it, store it as an attachment, record
    /// the upload complete.
    async fn finish(&self, owner: &str, upload: Upload) -> Result<api::UploadStatus, Status> {
        let declared = &upload.declared;
        let content = self.store.assemble(&upload).await.map_err(store_failed)?;
        let digest = hex::encode(Sha256::digest(&content));
        let mismatch = if digest != declared.sha256.as_str() {
            Some(Violations::one(
                "sha256",
                "DIGEST_MISMATCH",
                format!(
                    "the bytes received have SHA-256 {digest}, not the declared one; the upload is discarded: start it again"
                ),
            ))
        } else {
            self.check_type(&upload, &content).err()
        };
        if let Some(refusal) = mismatch {
            self.store.discard(owner, declared.upload_id).await.map_err(store_failed)?;
            info!(upload_id = %declared.upload_id, "upload discarded: the whole does not match its declaration");
            return Err(refusal);
        }
        let stored =
            self.attachments.put(&content).await.map_err(|e| status::unavailable("the attachment store", &e))?;
        let complete = self.store.complete(&upload).await.map_err(store_failed)?;
        info!(upload_id = %declared.upload_id, sha256 = %stored.sha256, size = stored.size, "upload complete: attachment stored");
        Ok(self.status(&Upload::complete_at_once(complete), None))
    }

    /// Purge expired uploads every `every` until `stop`.
    pub async fn sweep(self: Arc<Self>, every: std::time::Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            match self.store.sweep(self.clock.now()).await {
                Ok(0) => {}
                Ok(swept) => info!(swept, "expired uploads purged"),
                Err(error) => tracing::warn!(%error, "sweeping expired uploads failed; trying again later"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = &mut stop => return,
            }
        }
    }
}
