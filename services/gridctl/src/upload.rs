//! `gridctl upload` (and every photo `gridctl` sends): resumable uploads
//! that survive a broken connection. The file goes up in parts; after a
//! break gridctl connects again, asks where the server stands and sends
//! from there, so a break costs at most the part in flight.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as intake;
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::client::Connection;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Upload {
    /// The files to upload: .jpg, .png, .webp, .heic or .mp4.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Bytes per part: what a break can cost (the server's limit caps it).
    #[arg(long, default_value_t = 128 * 1024, value_parser = clap::value_parser!(u32).range(1024..))]
    part_bytes: u32,
    /// Give up after this many connection failures in a row with no progress.
    #[arg(long, default_value_t = 20)]
    attempts: u32,
}

/// What uploading one file took.
#[derive(Debug, Default, serde::Serialize)]
pub struct Sent {
    /// Content bytes sent in parts (a part lost in a break counts too).
    pub part_bytes: u64,
    /// Connections after the first.
    pub reconnects: u32,
}

pub fn content_type(path: &Path) -> anyhow::Result<&'static str> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    Ok(match extension.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "mp4" => "video/mp4",
        other => anyhow::bail!("{}: unsupported file type {other:?} (jpg, png, webp, heic, mp4)", path.display()),
    })
}

/// Whether a failed call is the connection's fault (try again) rather than
/// a refusal.
fn broken(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded | Code::Aborted
    ) || (status.code() == Code::Internal && status.message().contains("h2 protocol error"))
}

/// The offset a misfit part's refusal says to send from.
fn received_of(status: &tonic::Status) -> Option<u64> {
    status.get_details_error_info()?.metadata.get("received")?.parse().ok()
}

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Upload one file, resuming after every break; its reference.
pub async fn upload_file(
    connection: &Connection,
    path: &Path,
    part_bytes: u32,
    attempts: u32,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<(common::AttachmentRef, Sent)> {
    let content = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let start = intake::StartUploadRequest {
        content_type: content_type(path)?.into(),
        size: content.len() as u64,
        sha256: hex::encode(Sha256::digest(&content)),
        file_name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    bar.set_length(content.len() as u64);
    bar.set_position(0);
    bar.set_message(path.display().to_string());
    let mut sent = Sent::default();
    let mut failures = 0;
    let mut connected_once = false;
    loop {
        if failures > attempts {
            anyhow::bail!("{}: gave up after {attempts} connection failures in a row", path.display());
        }
        if failures > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))).await;
        }
        let mut client = match connection.intake().await {
            Ok(client) => client,
            Err(_) => {
                failures += 1;
                continue;
            }
        };
        if connected_once {
            sent.reconnects += 1;
        }
        connected_once = true;
        let mut request = connection.request(start.clone())?;
        request.set_timeout(CALL_TIMEOUT);
        let mut status = match client.start_upload(request).await {
            Ok(status) => status.into_inner(),
            Err(status) if broken(&status) => {
                failures += 1;
                continue;
            }
            Err(status) => return Err(output::refusal(status)).context(path.display().to_string()),
        };
        let part = part_bytes.min(status.max_part_bytes.max(1024)) as u64;
        loop {
            bar.set_position(status.received);
            if let Some(attachment) = status.attachment.take() {
                bar.set_position(content.len() as u64);
                return Ok((attachment, sent));
            }
            let offset = status.received;
            let end = (offset + part).min(content.len() as u64);
            let bytes = content[offset as usize..end as usize].to_vec();
            sent.part_bytes += bytes.len() as u64;
            let mut request = connection.request(intake::PutUploadPartRequest {
                upload_id: status.upload_id.clone(),
                offset,
                content: bytes,
            })?;
            request.set_timeout(CALL_TIMEOUT);
            match client.put_upload_part(request).await {
                Ok(next) => {
                    status = next.into_inner();
                    failures = 0;
                }
                Err(refusal) if refusal.code() == Code::FailedPrecondition || refusal.code() == Code::OutOfRange => {
                    let Some(received) = received_of(&refusal) else {
                        return Err(output::refusal(refusal)).context(path.display().to_string());
                    };
                    status.received = received;
                }
                Err(refusal) if broken(&refusal) => {
                    failures += 1;
                    break;
                }
                Err(refusal) => return Err(output::refusal(refusal)).context(path.display().to_string()),
            }
        }
    }
}

/// A progress bar on stderr, drawn only on a terminal.
pub fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            .expect("a valid template"),
    );
    bar
}

/// Upload photos, returning their references.
pub async fn photos(connection: &Connection, photos: &[PathBuf]) -> anyhow::Result<Vec<common::AttachmentRef>> {
    let bar = progress_bar();
    let mut refs = Vec::new();
    for path in photos {
        refs.push(upload_file(connection, path, 128 * 1024, 20, &bar).await?.0);
    }
    bar.finish_and_clear();
    Ok(refs)
}

pub async fn run(args: Upload, connection: &Connection, json: bool) -> anyhow::Result<()> {
    let bar = progress_bar();
    for path in &args.files {
        let (attachment, sent) = upload_file(connection, path, args.part_bytes, args.attempts, &bar).await?;
        bar.suspend(|| {
            if json {
                let line = serde_json::json!({
                    "file": path.display().to_string(),
                    "sha256": attachment.sha256,
                    "size": attachment.size,
                    "content_type": attachment.content_type,
                    "part_bytes_sent": sent.part_bytes,
                    "reconnects": sent.reconnects,
                });
                println!("{line}");
            } else {
                println!(
                    "{}: {} ({} bytes, {}); sent {} bytes in parts, {} reconnects",
                    path.display(),
                    attachment.sha256,
                    attachment.size,
                    attachment.content_type,
                    sent.part_bytes,
                    sent.reconnects
                );
            }
        });
    }
    bar.finish_and_clear();
    Ok(())
}
