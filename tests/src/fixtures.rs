//! Requests and callers the tests share: a grid worker, valid filings,
//! photos, uploads.

use gridcase_domain::CaseId;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as api;
use gridcase_proto::intake::v1::intake_service_client::IntakeServiceClient;
use tonic::transport::Channel;

use crate::Identity;

/// A grid worker of 东门社区第一网格 (城关街道) in the demo county.
pub fn worker() -> Identity {
    Identity::new("gw-0042", "grid_worker", "cc-990101001", "990101001001001")
}

/// Wrap a message in a request carrying the worker's token.
pub fn as_worker<T>(message: T) -> tonic::Request<T> {
    worker().request(message)
}

/// A valid filing in grid 990101001001001 (东门社区第一网格).
pub fn filing(case_id: CaseId) -> api::FileCaseRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    api::FileCaseRequest {
        case_id: case_id.to_string(),
        grid_code: "990101001001001".into(),
        category_code: "0201".into(),
        description: "东门路12号路灯不亮".into(),
        location: Some(common::Location { latitude: 30.2741, longitude: 120.1551, address: "东门路12号".into() }),
        reported_at: Some(prost_types_timestamp(now.as_secs() as i64 - 60)),
        severity_hint: None,
        resident_contact: None,
        attachments: vec![],
        ..Default::default()
    }
}

/// `size` bytes that start as a JPEG file does (SOI and a JFIF APP0
/// marker), so the intake's content check takes them for a photo.
pub fn jpeg(size: usize) -> Vec<u8> {
    let header = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00];
    header.iter().copied().chain((0..).map(|i: u32| (i % 251) as u8)).take(size.max(header.len())).collect()
}

/// A real photo: a `width`×`height` PNG of a gradient (it decodes, so
/// the console can make a thumbnail of it).
pub fn photo_png(width: u32, height: u32) -> Vec<u8> {
    let photo = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    photo.write_to(&mut png, image::ImageFormat::Png).expect("a PNG encodes");
    png.into_inner()
}

/// An upload as the client sends it: metadata, then `content` in chunks.
pub fn upload_parts(content_type: &str, content: &[u8], chunk: usize) -> Vec<api::UploadAttachmentRequest> {
    use api::upload_attachment_request::Part;
    let mut parts = vec![api::UploadAttachmentRequest {
        part: Some(Part::Metadata(api::AttachmentMetadata {
            content_type: content_type.into(),
            file_name: "p.jpg".into(),
        })),
    }];
    parts.extend(content.chunks(chunk).map(|c| api::UploadAttachmentRequest { part: Some(Part::Chunk(c.to_vec())) }));
    parts
}

/// Upload `content` as the grid worker; its reference.
pub async fn upload(endpoint: String, content_type: &str, content: &[u8]) -> common::AttachmentRef {
    intake_client(endpoint)
        .await
        .upload_attachment(as_worker(tokio_stream::iter(upload_parts(content_type, content, 64 * 1024))))
        .await
        .expect("uploaded")
        .into_inner()
        .attachment
        .expect("a reference")
}

/// A valid filing reported at `reported_at` (for tests on a fixed clock).
pub fn filing_at(case_id: CaseId, category: &str, reported_at: jiff::Timestamp) -> api::FileCaseRequest {
    api::FileCaseRequest {
        category_code: category.into(),
        reported_at: Some(prost_types_timestamp(reported_at.as_second())),
        ..filing(case_id)
    }
}

fn prost_types_timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

pub async fn intake_client(endpoint: String) -> IntakeServiceClient<Channel> {
    IntakeServiceClient::connect(endpoint).await.expect("connect to intake")
}
