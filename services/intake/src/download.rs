//! `CaseService.GetAttachment`'s answer: an attachment of a case, found
//! through the case's own events, read from the store (which checks the
//! bytes against their digest) and streamed in parts.

use gridcase_domain::{CaseId, Sha256Digest};
use gridcase_eventlog::AttachmentStore;
use gridcase_eventlog::attachments::AttachmentError;
use gridcase_eventlog::store::Loaded;
use gridcase_grpc::status;
use gridcase_proto::cases::v1 as api;
use gridcase_proto::common::v1 as common;
use tonic::Status;

/// An attachment's parts, as `GetAttachment` streams them.
pub type AttachmentStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<api::AttachmentPart, Status>> + Send + 'static>>;

/// Bytes per streamed part of an attachment.
const ATTACHMENT_PART_BYTES: usize = 64 * 1024;

/// The attachment `sha256` of the case `loaded` (already checked to be
/// within the caller's reach): its reference first, then its bytes.
pub(crate) async fn attachment(
    store: &AttachmentStore,
    loaded: &Loaded,
    case_id: &CaseId,
    sha256: &Sha256Digest,
) -> Result<AttachmentStream, Status> {
    // Only a digest one of the case's own events names: the same answer
    // as for a case out of reach, so a guessed digest tells nothing.
    let reference = loaded
        .history
        .iter()
        .filter_map(|positioned| positioned.event.decode().ok())
        .find_map(|event| event.attachments().iter().find(|a| a.sha256 == *sha256).cloned())
        .ok_or_else(|| Status::not_found(format!("case {case_id} has no attachment {sha256}")))?;
    let bytes = match store.get(sha256).await {
        Ok(Some(bytes)) => bytes,
        // Named by an event but absent from the store: lost.
        Ok(None) => return Err(Status::data_loss(format!("attachment {sha256} is missing from the store"))),
        Err(AttachmentError::Damaged { problem, .. }) => {
            return Err(Status::data_loss(format!("attachment {sha256} is damaged: {problem}")));
        }
        Err(error) => return Err(status::unavailable("the attachment store", &error)),
    };
    let head = api::AttachmentPart {
        part: Some(api::attachment_part::Part::Reference(common::AttachmentRef {
            sha256: reference.sha256.to_string(),
            size: reference.size,
            content_type: reference.content_type,
        })),
    };
    let chunks: Vec<Result<api::AttachmentPart, Status>> = std::iter::once(head)
        .chain(
            bytes
                .chunks(ATTACHMENT_PART_BYTES)
                .map(|chunk| api::AttachmentPart { part: Some(api::attachment_part::Part::Chunk(chunk.to_vec())) }),
        )
        .map(Ok)
        .collect();
    Ok(Box::pin(futures::stream::iter(chunks)))
}
