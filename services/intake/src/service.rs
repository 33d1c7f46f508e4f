//! The IntakeService handlers: thin shells around validation, the domain's
//! `decide`, and the event log.

use std::sync::Arc;

use futures::StreamExt;
use gridcase_auth::TokenRole;
use gridcase_auth::policy::Target;
use gridcase_domain::{Channel, Command, Contact, Event};
use gridcase_envelope::Head;
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_eventlog::store::{CaseStore, CommitError, Committed, Provenance};
use gridcase_eventlog::{AttachmentStore, KeyStore};
use gridcase_grpc::{Access, Violations, status};
use gridcase_process::TimeSource;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1::{self as api, intake_service_server::IntakeService};
use gridcase_reference::Reference;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, instrument};
use uuid::Uuid;

use crate::personal;
use crate::validate::{self, Limits};

pub struct IntakeApi {
    pub(crate) store: Arc<CaseStore>,
    pub(crate) attachments: AttachmentStore,
    pub(crate) keys: KeyStore,
    pub(crate) reference: Arc<Reference>,
    pub(crate) limits: Limits,
    pub(crate) clock: Arc<dyn TimeSource>,
    /// The lifecycle commands, for SyncCases' notes.
    pub(crate) cases: Arc<crate::CaseApi>,
    pub(crate) uploads: Arc<crate::uploads::Uploads>,
    pub(crate) sync_max_items: usize,
}

impl IntakeApi {
    fn receipt(stored: &StoredEvent, stream_sequence: u64, replayed: bool) -> api::FileCaseResponse {
        api::FileCaseResponse {
            case_id: stored.case_id.to_string(),
            stream_sequence,
            replayed,
            recorded_at: Some(validate::timestamp_to_proto(stored.occurred_at)),
            event_hash: stored.hash.clone(),
        }
    }
}

#[tonic::async_trait]
impl IntakeService for IntakeApi {
    #[instrument(skip_all, fields(case_id = %request.get_ref().case_id, grid = %request.get_ref().grid_code))]
    async fn file_case(
        &self,
        request: Request<api::FileCaseRequest>,
    ) -> Result<Response<api::FileCaseResponse>, Status> {
        let access = Access::of(&request)?;
        let now = self.clock.now();
        let channel = match access.principal.role {
            TokenRole::Partner => Channel::Partner,
            _ => Channel::GridWorker,
        };
        let filer = validate::Filer { subject: &access.principal.subject, channel };
        let file = validate::file_case(request.get_ref(), filer, &self.reference, &self.limits, now)
            .map_err(Violations::into_status)?;
        access.check(Target::Filing { grid: file.grid.as_str() })?;
        let actor = access.actor()?;
        check_uploaded(&self.attachments, "attachments", &file.attachments).await?;
        // Before a key is made for the contact details.
        self.store.log().integrity().writable().map_err(|problems| status::writes_stopped(&problems))?;

        let subject = CaseSubject::for_grid(&file.grid, &file.case_id);
        let case_id = file.case_id;
        // The filing as asked, in clear, to recognise a retry by; the event
        // records the contact details sealed under the case's key.
        let asked = Event::Filed(file.clone());
        let mut file = file;
        if let Some(contact) = file.contact.take() {
            let sealed = personal::seal(&self.keys, &case_id, contact).await;
            file.contact = Some(sealed.map_err(|error| error.unwrap_or_else(|| taken(&case_id)))?);
        }
        // A case id names one case in the whole log: the filing's append
        // expects no event of this id in any township (the case store's
        // expectation for a new case), so one filed elsewhere is a conflict.
        let filed = gridcase_domain::decide(None, &Command::File(file), now).map_err(|e| status::internal(&e))?;
        let provenance =
            Provenance { event_id: Uuid::now_v7(), occurred_at: now, actor: actor.clone(), command_id: None };
        match self.store.commit(&Head::new_case(case_id, subject.clone()), &filed, provenance).await {
            Ok(Committed::Stored(positioned)) => {
                info!(sequence = positioned.stream_sequence, "case filed");
                Ok(Response::new(Self::receipt(&positioned.event, positioned.stream_sequence, false)))
            }
            // The filing's event id is new on every attempt: the log cannot
            // already hold it, and a conflict says the case exists.
            Ok(Committed::AlreadyStored(_)) | Err(CommitError::Conflict) => {
                // The case exists: the filer's retry of the same filing gets
                // the original receipt; anything else is refused alike, so
                // nobody learns what someone else filed.
                let original =
                    self.store.log().first(&subject).await.map_err(|e| status::unavailable("the event log", &e))?;
                // Nothing under this township: the id was filed in another one.
                let Some(original) = original else { return Err(taken(&case_id)) };
                let original_event = original.event.decode().map_err(|e| status::internal(&e))?;
                if original.event.actor == actor && same_filing(&self.keys, original_event, &asked).await? {
                    info!(sequence = original.stream_sequence, "retried filing answered with the original receipt");
                    Ok(Response::new(Self::receipt(&original.event, original.stream_sequence, true)))
                } else {
                    Err(taken(&case_id))
                }
            }
            Err(CommitError::Unavailable(error)) => Err(status::unavailable("the event log", &error)),
            Err(CommitError::Refused(error)) => Err(status::internal(&error)),
            Err(CommitError::Stopped(problems)) => Err(status::writes_stopped(&problems)),
        }
    }

    #[instrument(skip_all)]
    async fn upload_attachment(
        &self,
        request: Request<Streaming<api::UploadAttachmentRequest>>,
    ) -> Result<Response<api::UploadAttachmentResponse>, Status> {
        Access::of(&request)?;
        let mut parts = request.into_inner();
        let mut upload = validate::Upload::new(self.limits.max_attachment_bytes);
        while let Some(part) = parts.next().await.transpose()? {
            upload.part(part)?;
        }
        let (content_type, content) = upload.finish()?;
        self.store.log().integrity().writable().map_err(|problems| status::writes_stopped(&problems))?;
        let stored =
            self.attachments.put(&content).await.map_err(|e| status::unavailable("the attachment store", &e))?;
        info!(sha256 = %stored.sha256, size = stored.size, "attachment stored");
        Ok(Response::new(api::UploadAttachmentResponse {
            attachment: Some(common::AttachmentRef {
                sha256: stored.sha256.to_string(),
                size: stored.size,
                content_type,
            }),
        }))
    }

    #[instrument(skip_all, fields(size = request.get_ref().size))]
    async fn start_upload(
        &self,
        request: Request<api::StartUploadRequest>,
    ) -> Result<Response<api::UploadStatus>, Status> {
        let access = Access::of(&request)?;
        self.store.log().integrity().writable().map_err(|problems| status::writes_stopped(&problems))?;
        Ok(Response::new(self.uploads.start(&access.principal.subject, request.get_ref()).await?))
    }

    #[instrument(skip_all, fields(upload_id = %request.get_ref().upload_id, offset = request.get_ref().offset))]
    async fn put_upload_part(
        &self,
        request: Request<api::PutUploadPartRequest>,
    ) -> Result<Response<api::UploadStatus>, Status> {
        let owner = Access::of(&request)?.principal.subject.clone();
        self.store.log().integrity().writable().map_err(|problems| status::writes_stopped(&problems))?;
        Ok(Response::new(self.uploads.put(&owner, request.into_inner()).await?))
    }

    #[instrument(skip_all, fields(upload_id = %request.get_ref().upload_id))]
    async fn get_upload(&self, request: Request<api::GetUploadRequest>) -> Result<Response<api::UploadStatus>, Status> {
        let access = Access::of(&request)?;
        Ok(Response::new(self.uploads.get(&access.principal.subject, request.get_ref()).await?))
    }

    #[instrument(skip_all, fields(upload_id = %request.get_ref().upload_id))]
    async fn cancel_upload(
        &self,
        request: Request<api::GetUploadRequest>,
    ) -> Result<Response<api::UploadStatus>, Status> {
        let access = Access::of(&request)?;
        Ok(Response::new(self.uploads.cancel(&access.principal.subject, request.get_ref()).await?))
    }

    #[instrument(skip_all, fields(items = request.get_ref().items.len()))]
    async fn sync_cases(
        &self,
        request: Request<api::SyncCasesRequest>,
    ) -> Result<Response<api::SyncCasesResponse>, Status> {
        let access = Access::of(&request)?.clone();
        let answer = self.sync(&access, request.into_inner()).await?;
        let refused = answer.results.iter().filter(|r| r.outcome == api::SyncOutcome::Refused as i32).count();
        info!(items = answer.results.len(), refused, "synced");
        Ok(Response::new(answer))
    }
}

/// Every referenced attachment must have been uploaded, with that size.
pub(crate) async fn check_uploaded(
    store: &AttachmentStore,
    field: &str,
    attachments: &[gridcase_domain::AttachmentRef],
) -> Result<(), Status> {
    let mut v = Violations::new();
    for (index, attachment) in attachments.iter().enumerate() {
        let stored =
            store.find(&attachment.sha256).await.map_err(|e| status::unavailable("the attachment store", &e))?;
        match stored {
            None => v.add(
                format!("{field}[{index}].sha256"),
                "NOT_UPLOADED",
                "was not uploaded: upload it with UploadAttachment first",
            ),
            Some(stored) if stored.size != attachment.size => v.add(
                format!("{field}[{index}].size"),
                "SIZE_MISMATCH",
                "does not match the size of the uploaded attachment",
            ),
            Some(_) => {}
        }
    }
    v.into_result()
}

/// ALREADY_EXISTS for a case id in use, whoever filed it and whatever it says.
fn taken(case_id: &gridcase_domain::CaseId) -> Status {
    Status::already_exists(format!("case_id {case_id} is already taken; a new case needs a new case_id"))
}

/// Whether the stored filing says what `asked` (in clear) says. The
/// server-side envelope (time of recording, event id) and the sealing's
/// nonce differ between attempts, so the stored contact details are
/// compared opened; erased ones match nothing.
async fn same_filing(keys: &KeyStore, stored: Event, asked: &Event) -> Result<bool, Status> {
    let Event::Filed(mut stored) = stored else { return Ok(false) };
    let Event::Filed(asked) = asked else { return Ok(false) };
    // The flag is intake's finding, not the filer's: a retry after the
    // tolerance or the boundaries changed is still the same filing.
    stored.outside_grid = asked.outside_grid;
    // A partner's request is timed by the gateway when it arrives (Open311
    // sends no time of its own): a retry arrives later and is the same request.
    if asked.channel == Channel::Partner {
        stored.reported_at = asked.reported_at;
    }
    if let Some(contact) = &stored.contact {
        stored.contact = personal::open(keys, &stored.case_id, contact).await?.map(Contact::Clear);
        if stored.contact.is_none() {
            return Ok(false);
        }
    }
    Ok(&stored == asked)
}
