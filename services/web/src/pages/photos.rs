//! A case's photos, through the console: fetched from the intake service as
//! the signed-in user (`GetAttachment`: only an attachment one of the case's
//! own events names, of a case the user may read; "not found" otherwise),
//! checked once more against the SHA-256 they are named by, and served
//! whole, or as a thumbnail made by the intake service (`max_dimension`). Content-addressed, so a browser may
//! keep them a day; private, so no shared cache does; and varying by the
//! session cookie, so a browser shows a kept copy only to the session that
//! fetched it (another user signing in on the same machine is asked for
//! again, and refused if it is not theirs).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use gridcase_proto::cases::v1 as cases_api;
use gridcase_proto::cases::v1::attachment_part::Part;
use http::{StatusCode, header};
use sha2::Digest as _;

use super::layout::refusal_page;
use crate::AppState;
use crate::session::Session;
use crate::upstream::{Refusal, as_user};

/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_PX: u32 = 320;

/// Types a browser shows inline; anything else is offered as a download.
const INLINE: [&str; 4] = ["image/jpeg", "image/png", "image/webp", "video/mp4"];

/// Types the intake service makes thumbnails of.
pub fn has_thumbnail(content_type: &str) -> bool {
    matches!(content_type, "image/jpeg" | "image/png" | "image/webp")
}

/// An attachment as it arrived: its type and its bytes, checked.
struct Fetched {
    content_type: String,
    bytes: Vec<u8>,
}

/// The attachment whole (`max_dimension` 0), or its thumbnail.
async fn fetch(
    state: &AppState,
    session: &Session,
    case_id: &str,
    sha256: &str,
    max_dimension: u32,
) -> Result<Fetched, Response> {
    let lang = session.lang;
    let refused = |status: &tonic::Status| refusal_page(lang, &Refusal::from_status(status, lang));
    let request = cases_api::GetAttachmentRequest {
        case_id: case_id.to_owned(),
        sha256: sha256.to_owned(),
        max_dimension,
        ..Default::default()
    };
    let mut client = state.upstream.cases.clone();
    let mut parts =
        client.get_attachment(as_user(&session.token, request)).await.map_err(|s| refused(&s))?.into_inner();
    let mut reference = None;
    let mut bytes = Vec::new();
    while let Some(part) = parts.next().await {
        match part.map_err(|s| refused(&s))?.part {
            Some(Part::Reference(r)) => reference = Some(r),
            Some(Part::Chunk(chunk)) => bytes.extend_from_slice(&chunk),
            None => {}
        }
    }
    let reference = reference.ok_or_else(|| damaged("no reference came first"))?;
    if max_dimension > 0 {
        return Ok(Fetched { content_type: "image/jpeg".into(), bytes });
    }
    // The service checked the bytes against the store; check what arrived
    // here too (end to end: nothing between the store and this page altered them).
    if hex::encode(sha2::Sha256::digest(&bytes)) != sha256 || bytes.len() as u64 != reference.size {
        return Err(damaged("the bytes that arrived do not have the digest they are named by"));
    }
    Ok(Fetched { content_type: reference.content_type, bytes })
}

fn damaged(problem: &str) -> Response {
    tracing::error!(problem, "an attachment arrived damaged");
    (StatusCode::BAD_GATEWAY, format!("the photo arrived damaged: {problem}")).into_response()
}

fn cached(response: http::response::Builder) -> http::response::Builder {
    response
        .header(header::CACHE_CONTROL, "private, max-age=86400")
        .header(header::VARY, "Cookie")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
}

/// `/cases/{case_id}/attachments/{sha256}`: the attachment itself.
pub async fn full(
    State(state): State<AppState>,
    session: Session,
    Path((case_id, sha256)): Path<(String, String)>,
) -> Response {
    let fetched = match fetch(&state, &session, &case_id, &sha256, 0).await {
        Ok(fetched) => fetched,
        Err(response) => return response,
    };
    let inline = INLINE.contains(&fetched.content_type.as_str());
    let (content_type, disposition) = if inline {
        (fetched.content_type.as_str(), "inline".to_owned())
    } else {
        ("application/octet-stream", format!("attachment; filename=\"{}\"", &sha256[..16.min(sha256.len())]))
    };
    cached(Response::builder())
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_DISPOSITION, disposition)
        .body(Body::from(fetched.bytes))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `/cases/{case_id}/attachments/{sha256}/thumbnail`: a JPEG at most
/// [`THUMBNAIL_PX`] on its longest side, made by the intake service.
pub async fn thumbnail(
    State(state): State<AppState>,
    session: Session,
    Path((case_id, sha256)): Path<(String, String)>,
) -> Response {
    match fetch(&state, &session, &case_id, &sha256, THUMBNAIL_PX).await {
        Ok(fetched) => cached(Response::builder())
            .header(header::CONTENT_TYPE, fetched.content_type)
            .body(Body::from(fetched.bytes))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(response) => response,
    }
}
