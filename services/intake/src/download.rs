//! `CaseService.GetAttachment`'s answer: an attachment of a case, found
//! through the case's own events, read from the store (which checks the
//! bytes against their digest) and streamed in parts: whole, a range of it
//! (a download resumed), or a thumbnail made here (a list of cases on a
//! phone costs kilobytes, not megabytes).

use gridcase_domain::{CaseId, Sha256Digest};
use gridcase_eventlog::AttachmentStore;
use gridcase_eventlog::attachments::AttachmentError;
use gridcase_eventlog::store::Loaded;
use gridcase_grpc::status;
use gridcase_proto::cases::v1 as api;
use gridcase_proto::common::v1 as common;
use tonic::Status;

use crate::requests::Portion;

/// An attachment's parts, as `GetAttachment` streams them.
pub type AttachmentStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<api::AttachmentPart, Status>> + Send + 'static>>;

/// Types a thumbnail can be made of.
const THUMBNAIL_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

/// A photo shrunk so that its longer side is at most `max_dimension`
/// pixels, as a JPEG.
pub fn thumbnail(bytes: &[u8], max_dimension: u32) -> Result<Vec<u8>, image::ImageError> {
    let photo = image::load_from_memory(bytes)?;
    let small = photo.thumbnail(max_dimension, max_dimension).to_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&small)?;
    Ok(out.into_inner())
}

/// Bytes per streamed part of an attachment.
const ATTACHMENT_PART_BYTES: usize = 64 * 1024;

/// The attachment `sha256` of the case `loaded` (already checked to be
/// within the caller's reach): its reference first, then its bytes.
pub(crate) async fn attachment(
    store: &AttachmentStore,
    loaded: &Loaded,
    case_id: &CaseId,
    sha256: &Sha256Digest,
    portion: Portion,
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
            content_type: reference.content_type.clone(),
        })),
    };
    let bytes = match portion {
        Portion::Range { offset, length } => {
            let size = bytes.len() as u64;
            if offset > size {
                return Err(Status::out_of_range(format!("offset {offset} lies beyond the attachment's {size} bytes")));
            }
            let end = if length == 0 { size } else { offset.saturating_add(length).min(size) };
            if offset == 0 && end == size { bytes } else { bytes[offset as usize..end as usize].to_vec() }
        }
        Portion::Thumbnail { max_dimension } => {
            if !THUMBNAIL_TYPES.contains(&reference.content_type.as_str()) {
                return Err(Status::failed_precondition(format!(
                    "no thumbnail of a {}: ask for the original (max_dimension 0)",
                    reference.content_type
                )));
            }
            tokio::task::spawn_blocking(move || thumbnail(&bytes, max_dimension))
                .await
                .map_err(|e| status::internal(&e))?
                .map_err(|error| Status::failed_precondition(format!("the photo does not decode: {error}")))?
        }
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
