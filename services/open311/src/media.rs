//! Photos of a request: uploaded in the request itself (multipart/form-data,
//! any file part), or fetched from a `media_url` whose host the operator
//! allowed. Either way they go to intake's `UploadAttachment` as the
//! partner, which checks their type against their bytes and their size, as
//! for every upload; the filing then names them.

use axum::extract::{FromRequest, Multipart, Request};
use bytes::Bytes;
use gridcase_proto::intake::v1 as intake;
use http::header;

use crate::params::Params;

/// A photo (or video) as it arrived.
#[derive(Debug, Clone)]
pub struct Media {
    pub content_type: String,
    pub file_name: String,
    pub bytes: Bytes,
}

/// The parameters (query and body) and the files of a POST, or why it
/// cannot be read.
pub async fn read(request: Request, limit: usize) -> Result<(Params, Vec<Media>), String> {
    let query = request.uri().query().map(str::to_owned);
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let body = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| format!("the request body is larger than {limit} bytes"))?;
        return Ok((Params::parse(query.as_deref(), &body), vec![]));
    }
    let mut params = Params::parse(query.as_deref(), b"");
    let mut files = Vec::new();
    let mut form = Multipart::from_request(request, &()).await.map_err(|e| format!("multipart body: {e}"))?;
    while let Some(field) = form.next_field().await.map_err(|e| format!("multipart body: {e}"))? {
        let name = field.name().unwrap_or_default().to_owned();
        match field.file_name().map(str::to_owned) {
            Some(file_name) => {
                let content_type = field.content_type().unwrap_or("application/octet-stream").to_owned();
                let bytes = field.bytes().await.map_err(|e| format!("{name}: {e}"))?;
                files.push(Media { content_type, file_name, bytes });
            }
            None => {
                let value = field.text().await.map_err(|e| format!("{name}: {e}"))?;
                params.push(name, value);
            }
        }
    }
    Ok((params, files))
}

/// Fetch a `media_url` from an allowed origin (scheme, host and port, as
/// `https://photos.example.org`), no redirects, at most `max` bytes;
/// anything else is refused with why.
pub async fn fetch(url: &str, origins: &[String], max: usize) -> Result<Media, String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| format!("media_url: {url:?} is not a URL"))?;
    let origin = parsed.origin().ascii_serialization();
    let allowed = origins.iter().any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(&origin));
    if !allowed {
        return Err(format!("media_url: only URLs of {} are fetched", origins.join(", ")));
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| format!("media_url: {e}"))?;
    let mut response = client.get(parsed).send().await.map_err(|e| format!("media_url: fetching failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("media_url: the host answered {}", response.status()));
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
        .unwrap_or_default();
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("media_url: {e}"))? {
        if bytes.len() + chunk.len() > max {
            return Err(format!("media_url: larger than {max} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    let file_name = url.rsplit('/').next().unwrap_or_default().to_owned();
    Ok(Media { content_type, file_name, bytes: bytes.into() })
}

/// The upload of one photo, as intake's stream of parts.
pub fn parts(media: &Media) -> Vec<intake::UploadAttachmentRequest> {
    use intake::upload_attachment_request::Part;
    let mut parts = vec![intake::UploadAttachmentRequest {
        part: Some(Part::Metadata(intake::AttachmentMetadata {
            content_type: media.content_type.clone(),
            file_name: media.file_name.clone(),
        })),
    }];
    parts.extend(
        media.bytes.chunks(256 * 1024).map(|c| intake::UploadAttachmentRequest { part: Some(Part::Chunk(c.to_vec())) }),
    );
    parts
}
