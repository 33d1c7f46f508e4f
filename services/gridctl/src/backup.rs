//! `gridctl backup init|status|restore`: the copy of the case stream and the
//! attachment stream that the daily credentials cannot reach.
//!
//! The copy lives in the NATS account BACKUP (deploy/nats/permissions.conf):
//! two JetStream mirrors, kept in step by the servers themselves as events
//! are appended, that no user of the GRIDCASE account can see, change or
//! delete. `init` and `status` run as the backup account's user; `restore`
//! reads the mirrors as that user and writes the GRIDCASE streams as the
//! break-glass user (--nats-credentials).

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use gridcase_eventlog::{EventLog, attachments, integrity};
use gridcase_resources::CommonArgs;
use serde_json::json;

// The names the mirrors take in the backup account.
pub const CASES: &str = "BACKUP_GRIDCASE_CASES";
pub const ATTACHMENTS: &str = "BACKUP_GRIDCASE_ATTACHMENTS";
// Where the backup account finds the GRIDCASE account's JetStream API
// (its imports), and where the mirrors' messages are delivered.
const API_PREFIX: &str = "gridcase-backup.api";
const DELIVER_PREFIX: &str = "gridcase-backup.deliver";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The backup of the history (operators with the backup account's
    /// credentials; `restore` also the break-glass user's).
    #[command(subcommand)]
    Backup(Backup),
}

#[derive(Debug, clap::Subcommand)]
pub enum Backup {
    /// Create the mirrors of the case stream and the attachment stream in the
    /// backup account (idempotent). Run with the backup account's user's
    /// credentials (--nats-credentials).
    Init {
        #[command(flatten)]
        args: BackupArgs,
    },
    /// How far each mirror has got, and when it last heard from its origin.
    Status {
        #[command(flatten)]
        args: BackupArgs,
    },
    /// Copy the history back from the mirrors into the GRIDCASE account's
    /// case and attachment streams, message for message at the same stream
    /// sequences, verifying every hash chain. With the services stopped;
    /// then rebuild the read models and start them. --nats-credentials:
    /// the break-glass user; --backup-credentials: the backup account's.
    Restore {
        /// The backup account user's credentials (NKey seed or .creds file).
        #[arg(long, env = "GRIDCASE_BACKUP_CREDENTIALS")]
        backup_credentials: std::path::PathBuf,
        /// Delete a case or attachment stream that no longer keeps its
        /// history (a limit, roll-ups, messages gone) before copying into a
        /// new one. Only after checking that the mirror holds every message
        /// it still holds, the same at the same sequence.
        #[arg(long)]
        replace_damaged: bool,
        #[command(flatten)]
        args: BackupArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The attachment stream.
    #[arg(long, env = "GRIDCASE_ATTACHMENT_STREAM", default_value = attachments::DEFAULT_STREAM)]
    attachment_stream: String,
}

/// A mirror of `origin` in the backup account: it keeps everything, as its
/// origin must, and can be changed only by a user the server's
/// configuration adds for that.
fn mirror_config(name: &str, origin: &str, deliver: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        description: Some(format!("gridcase backup: a mirror of {origin} in the GRIDCASE account")),
        storage: stream::StorageType::File,
        num_replicas: replicas,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        allow_direct: true,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        mirror: Some(stream::Source {
            name: origin.to_owned(),
            external: Some(stream::External {
                api_prefix: API_PREFIX.to_owned(),
                delivery_prefix: Some(format!("{DELIVER_PREFIX}.{deliver}")),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mirrors(args: &BackupArgs) -> [(String, stream::Config); 2] {
    let replicas = usize::from(args.common.stream_replicas);
    [
        (args.common.stream.clone(), mirror_config(CASES, &args.common.stream, "cases", replicas)),
        (args.attachment_stream.clone(), mirror_config(ATTACHMENTS, &args.attachment_stream, "attachments", replicas)),
    ]
}

pub async fn run(command: Command, json_output: bool) -> anyhow::Result<()> {
    let Command::Backup(command) = command;
    match command {
        Backup::Init { args } => {
            let client = args.common.connect("gridctl-backup").await?;
            let js = jetstream::new(client.clone());
            let mut made = Vec::new();
            for (origin, config) in mirrors(&args) {
                let name = config.name.clone();
                let created = match js.get_stream(&name).await {
                    Ok(_) => false,
                    Err(_) => {
                        js.create_stream(config)
                            .await
                            .with_context(|| format!("creating {name} in the backup account (as its user?)"))?;
                        true
                    }
                };
                made.push(json!({ "mirror": name, "origin": origin, "created": created }));
            }
            if json_output {
                println!("{}", serde_json::to_string(&made)?);
            } else {
                for mirror in &made {
                    println!(
                        "{} mirrors {}{}",
                        mirror["mirror"].as_str().unwrap_or_default(),
                        mirror["origin"].as_str().unwrap_or_default(),
                        if mirror["created"] == true { " (created)" } else { " (there already)" }
                    );
                }
            }
            client.drain().await.ok();
            Ok(())
        }
        Backup::Status { args } => {
            let client = args.common.connect("gridctl-backup").await?;
            let js = jetstream::new(client.clone());
            let mut report = Vec::new();
            for (origin, config) in mirrors(&args) {
                let mut stream = js
                    .get_stream(&config.name)
                    .await
                    .with_context(|| format!("{} (gridctl backup init?)", config.name))?;
                let info = stream.info().await?.clone();
                let mirror = info.mirror.clone();
                report.push(json!({
                    "mirror": config.name,
                    "origin": origin,
                    "messages": info.state.messages,
                    "last_sequence": info.state.last_sequence,
                    "lag": mirror.as_ref().map(|m| m.lag),
                    "last_contact_seconds": mirror.as_ref().and_then(|m| m.active).map(|d| d.as_secs_f64()),
                }));
            }
            if json_output {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for mirror in &report {
                    println!(
                        "{:<30} {} messages up to sequence {}, {} behind {}, last heard from it {}s ago",
                        mirror["mirror"].as_str().unwrap_or_default(),
                        mirror["messages"],
                        mirror["last_sequence"],
                        mirror["lag"],
                        mirror["origin"].as_str().unwrap_or_default(),
                        mirror["last_contact_seconds"]
                    );
                }
            }
            client.drain().await.ok();
            Ok(())
        }
        Backup::Restore { backup_credentials, replace_damaged, args } => {
            let from = CommonArgs {
                nats_credentials: Some(backup_credentials),
                stream: CASES.to_owned(),
                ..args.common.clone()
            };
            let source = jetstream::new(from.connect("gridctl-backup").await?);
            let target = jetstream::new(args.common.connect("gridctl-restore").await?);
            let settings = args.common.stream_settings();
            let cases = (EventLog::watched(&settings), CASES);
            let replicas = usize::from(args.common.stream_replicas);
            let files = (attachments::watched(&args.attachment_stream, replicas).0, ATTACHMENTS);
            let mut replaced = Vec::new();
            for (watched, mirror) in [cases, files] {
                if clear_damaged(&source, mirror, &target, &watched, replace_damaged).await? {
                    replaced.push(watched.stream.clone());
                }
            }
            let copied = crate::copy::copy(&from, ATTACHMENTS, &args.common, &args.attachment_stream).await?;
            let mut stream = target.get_stream(&args.common.stream).await?;
            let last = stream.info().await?.state.last_sequence;
            let cases = crate::reseal::verify(&stream, last, |_| {}).await.context("verifying the restored stream")?;
            if json_output {
                println!(
                    "{}",
                    json!({
                        "replaced": replaced, "copied": copied.messages, "already_there": copied.already_there,
                        "last_sequence": copied.last_sequence, "attachments": copied.attachments, "cases_verified": cases,
                    })
                );
            } else {
                if !replaced.is_empty() {
                    println!("deleted the damaged {} (the backup holds all they held)", replaced.join(" and "));
                }
                crate::copy::report_copy(&copied, false);
                println!(
                    "the chains of {cases} cases verified; start the services (read models that were built from \
                     another history are rebuilt with gridcase-projection rebuild)"
                );
            }
            Ok(())
        }
    }
}

/// If `watched` exists in the GRIDCASE account and no longer keeps its
/// history: with `replace`, delete it once the mirror is known to hold
/// everything it holds (true); without, refuse.
async fn clear_damaged(
    source: &jetstream::Context,
    mirror: &str,
    target: &jetstream::Context,
    watched: &integrity::Watched,
    replace: bool,
) -> anyhow::Result<bool> {
    use futures::StreamExt as _;
    let Ok(mut damaged) = target.get_stream(&watched.stream).await else { return Ok(false) };
    let info = damaged.info().await?.clone();
    let mut problems = integrity::config_problems(watched, &info.config);
    problems.extend(integrity::state_problems(watched.keeps, None, &integrity::Extent::of(&info.state)));
    if problems.is_empty() {
        return Ok(false);
    }
    anyhow::ensure!(
        replace,
        "{} no longer keeps its history ({}): --replace-damaged deletes it (after checking the backup holds all it \
         holds) and restores it from the backup",
        watched.stream,
        problems.join("; ")
    );
    // Every message still there must be in the mirror, the same, at the
    // same sequence: nothing of it is lost by deleting it.
    let backup = source.get_stream(mirror).await.with_context(|| format!("{mirror} in the backup account"))?;
    if info.state.messages > 0 {
        let consumer = damaged
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut checked = 0;
        while let Some(message) = messages.next().await {
            let message = message?;
            let sequence =
                message.info().map_err(|e| anyhow::anyhow!("a message without its position: {e}"))?.stream_sequence;
            let kept = backup.get_raw_message(sequence).await.with_context(|| {
                format!("message {sequence} of {} is not in the backup: not deleting it", watched.stream)
            })?;
            anyhow::ensure!(
                kept.subject == message.subject && kept.payload == message.payload,
                "message {sequence} of {} differs from the backup's: not deleting it",
                watched.stream
            );
            checked += 1;
            if checked >= info.state.messages {
                break;
            }
        }
    }
    target.delete_stream(&watched.stream).await.with_context(|| format!("deleting the damaged {}", watched.stream))?;
    eprintln!(
        "deleted {}, which no longer kept its history ({}); restoring it from the backup",
        watched.stream,
        problems.join("; ")
    );
    Ok(true)
}
