//! `gridctl sync FILE`: a day's filings and notes, one JSON object per
//! line, sent in one `SyncCases` call (photos uploaded first, resumably);
//! each item's outcome printed. Sending the same file again stores nothing
//! new: every filing carries its case id, every note its command id.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use gridcase_proto::cases::v1 as cases;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as intake;

use crate::client::Connection;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Sync {
    /// JSON lines: {"type":"file","case_id","grid","category","description",
    /// "latitude","longitude","address","reported_at","severity",
    /// "request_kind","photos":[…]} or {"type":"note","case_id",
    /// "command_id","note","photos":[…]}. Photo paths are relative to the file.
    file: PathBuf,
}

#[derive(Debug, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    File {
        case_id: String,
        grid: String,
        category: String,
        description: String,
        latitude: f64,
        longitude: f64,
        #[serde(default)]
        address: String,
        /// RFC 3339: when the worker saw it.
        reported_at: jiff::Timestamp,
        #[serde(default)]
        severity: Option<String>,
        #[serde(default)]
        request_kind: Option<String>,
        #[serde(default)]
        photos: Vec<PathBuf>,
    },
    Note {
        case_id: String,
        command_id: String,
        note: String,
        #[serde(default)]
        photos: Vec<PathBuf>,
    },
}

fn tier(text: &str) -> anyhow::Result<common::Tier> {
    Ok(match text {
        "critical" => common::Tier::Critical,
        "urgent" => common::Tier::Urgent,
        "normal" => common::Tier::Normal,
        "complex" => common::Tier::Complex,
        other => anyhow::bail!("severity {other:?}: one of critical, urgent, normal, complex"),
    })
}

async fn item(connection: &Connection, base: &Path, line: Line) -> anyhow::Result<intake::SyncItem> {
    let photos = |paths: &[PathBuf]| paths.iter().map(|p| base.join(p)).collect::<Vec<_>>();
    Ok(match line {
        Line::File {
            case_id,
            grid,
            category,
            description,
            latitude,
            longitude,
            address,
            reported_at,
            severity,
            request_kind,
            photos: paths,
        } => {
            let attachments = crate::upload::photos(connection, &photos(&paths)).await?;
            let request_kind = match request_kind {
                Some(text) => Some(
                    gridcase_domain::RequestKind::parse(&text)
                        .with_context(|| format!("request_kind {text:?} is not a kind of request"))?,
                ),
                None => None,
            };
            intake::SyncItem {
                item: Some(intake::sync_item::Item::File(intake::FileCaseRequest {
                    case_id,
                    grid_code: grid,
                    category_code: category,
                    description,
                    location: Some(common::Location { latitude, longitude, address }),
                    reported_at: Some(gridcase_proto::convert::timestamp_to_proto(reported_at)),
                    severity_hint: severity.as_deref().map(tier).transpose()?.map(|t| t as i32),
                    attachments,
                    request_kind: gridcase_proto::convert::request_kind_to_proto(request_kind) as i32,
                    ..Default::default()
                })),
            }
        }
        Line::Note { case_id, command_id, note, photos: paths } => {
            let attachments = crate::upload::photos(connection, &photos(&paths)).await?;
            intake::SyncItem {
                item: Some(intake::sync_item::Item::Note(cases::AddProgressRequest {
                    context: Some(cases::CommandContext { case_id, command_id, expected_version: None }),
                    note,
                    attachments,
                })),
            }
        }
    })
}

pub async fn run(args: Sync, connection: &Connection, json: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let base = args.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut items = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not an item", args.file.display(), number + 1))?;
        items.push(item(connection, &base, parsed).await?);
    }
    let mut client = connection.intake().await?;
    let answer = client
        .sync_cases(connection.request(intake::SyncCasesRequest { items })?)
        .await
        .map_err(output::refusal)?
        .into_inner();
    let mut refused = 0;
    for result in &answer.results {
        let outcome = intake::SyncOutcome::try_from(result.outcome).unwrap_or(intake::SyncOutcome::Unspecified);
        if outcome == intake::SyncOutcome::Refused {
            refused += 1;
        }
        if json {
            let refusal = result.refusal.as_ref().map(|r| {
                serde_json::json!({
                    "code": format!("{:?}", tonic::Code::from_i32(r.code)),
                    "message": r.message,
                    "fields": r.field_violations.iter().map(|v| serde_json::json!({
                        "field": v.field, "reason": v.reason, "description": v.description,
                    })).collect::<Vec<_>>(),
                })
            });
            let line = serde_json::json!({
                "item": result.index,
                "outcome": outcome.as_str_name().trim_start_matches("SYNC_OUTCOME_").to_lowercase(),
                "case_id": result.case_id,
                "stream_sequence": result.stream_sequence,
                "refusal": refusal,
            });
            println!("{line}");
        } else {
            match (outcome, &result.refusal) {
                (intake::SyncOutcome::Refused, Some(r)) => {
                    println!(
                        "#{} refused {}: {:?} {}",
                        result.index,
                        result.case_id,
                        tonic::Code::from_i32(r.code),
                        r.message
                    );
                    for v in &r.field_violations {
                        println!("    {} [{}]: {}", v.field, v.reason, v.description);
                    }
                }
                (outcome, _) => println!(
                    "#{} {} {} (sequence {})",
                    result.index,
                    outcome.as_str_name().trim_start_matches("SYNC_OUTCOME_").to_lowercase(),
                    result.case_id,
                    result.stream_sequence
                ),
            }
        }
    }
    if !json {
        println!("{} items: {} refused", answer.results.len(), refused);
    }
    if refused > 0 {
        anyhow::bail!("{refused} of {} items were refused", answer.results.len());
    }
    Ok(())
}
