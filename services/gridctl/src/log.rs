//! `gridctl log …`: the operator's view of the case
//! stream and the attachment stream on NATS JetStream (not through the
//! services: straight to NATS, as the operator user of
//! deploy/nats/permissions.conf).

use anyhow::Context as _;
use async_nats::jetstream;
use gridcase_eventlog::{AttachmentStore, EventLog, attachments, integrity};
use gridcase_resources::CommonArgs;
use serde_json::json;

use crate::copy::{copy, copy_legacy_bucket, report_copy};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The case stream and the attachment stream on NATS (operators).
    #[command(subcommand)]
    Log(Log),
}

#[derive(Debug, clap::Subcommand)]
pub enum Log {
    /// Messages, replicas, the leader and how far behind each replica is.
    Status {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        keys: KeyBucketArgs,
    },
    /// Apply gridcase's configuration to the case stream, the attachment
    /// stream, the key bucket (and the dispatcher's snapshot bucket, if
    /// any), with --stream-replicas copies, creating those missing. Changing
    /// a stream's configuration is the break-glass user's right alone
    /// (deploy/nats/permissions.conf): run it with that user's credentials.
    /// A stream written on a single nats-server before it joined a cluster
    /// is NOT copied to new replicas this way: use `copy`.
    SetReplicas {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        keys: KeyBucketArgs,
    },
    /// Copy the case stream and the attachment stream from another NATS
    /// (the single node a deployment outgrew) into this one (the cluster,
    /// --stream-replicas copies), message for message: same subjects,
    /// headers, bodies and stream sequences, so every hash chain and the
    /// read models' positions stay valid. Run it with the intake's
    /// credentials before the services start; run it again to resume.
    Copy {
        /// The NATS to copy from, e.g. nats://old-node:4222.
        #[arg(long)]
        from_nats_url: String,
        /// Credentials on the source (NKey seed or .creds file).
        #[arg(long)]
        from_credentials: Option<std::path::PathBuf>,
        /// CA of the source's TLS certificate (TLS is then required).
        #[arg(long)]
        from_tls_ca: Option<std::path::PathBuf>,
        /// The case stream on the source (default: the same name as --stream).
        #[arg(long, value_name = "STREAM")]
        from_stream: Option<String>,
        /// The attachment stream on the source (default: the same name as
        /// --attachment-stream). Attachments of an older deployment, in the
        /// object-store bucket gridcase-attachments, are copied too.
        #[arg(long, value_name = "STREAM")]
        from_attachment_stream: Option<String>,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Copy the attachments of the object-store bucket older versions kept
    /// them in into the attachment stream, each checked against its
    /// SHA-256. Idempotent; the bucket is left as it is.
    MigrateAttachments {
        /// The object-store bucket to copy from.
        #[arg(long, default_value = attachments::LEGACY_BUCKET)]
        bucket: String,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Copy the case stream (--stream) into a new one (--to-stream) with
    /// every resident's contact details sealed and every chain they are in
    /// re-chained, verifying all chains before and after; for history
    /// written before sealing, which must become erasable. Stop the
    /// services first; then point them at the new stream (deploy/reseal.sh
    /// does all of it for the deployment deploy/up.sh runs). The old stream
    /// keeps its messages but gives up its subjects to the new one (it takes
    /// no new event). Run it again to resume an interrupted copy.
    Reseal {
        #[command(flatten)]
        reseal: ResealArgs,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Delete a stream a reseal retired, once the stream that took its
    /// place (--stream) holds its every message; and, if named, the
    /// dispatcher snapshot bucket that belonged to it. Only then is the old
    /// clear text gone (from this NATS; backups keep theirs). Needs a user
    /// allowed to delete streams (the shipped permissions give none).
    DeleteRetired {
        #[command(flatten)]
        delete: DeleteRetiredArgs,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

/// What `log delete-retired` deletes.
#[derive(Debug, clap::Args)]
pub struct DeleteRetiredArgs {
    /// The stream a reseal retired (its subjects gridcase.retired.<name>.>).
    #[arg(long, value_name = "STREAM")]
    pub retired: String,
    /// The dispatcher snapshot bucket that belonged to the retired stream
    /// (its snapshots name the old hashes), deleted too.
    #[arg(long, value_name = "BUCKET")]
    pub old_snapshot_bucket: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ResealArgs {
    /// The new stream to copy into. If it holds the start of a copy (an
    /// interrupted run), that is checked and the copy goes on after it.
    #[arg(long)]
    pub to_stream: String,
    /// Copy at most N messages in this run, then stop without the final
    /// verification (run again to go on): for copying a long stream in steps.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    #[command(flatten)]
    pub keys: gridcase_resources::KeyArgs,
}

/// The data-key bucket, for the commands that look at every stream.
#[derive(Debug, clap::Args)]
pub struct KeyBucketArgs {
    /// The data-key bucket.
    #[arg(long, env = "GRIDCASE_KEY_BUCKET", default_value = gridcase_eventlog::keys::DEFAULT_BUCKET)]
    key_bucket: String,
}

#[derive(Debug, clap::Args)]
pub struct NatsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The attachment stream.
    #[arg(long, env = "GRIDCASE_ATTACHMENT_STREAM", default_value = attachments::DEFAULT_STREAM)]
    attachment_stream: String,
    /// The dispatcher's snapshot bucket (a cache of the log; `set-replicas`
    /// moves it too when it exists).
    #[arg(long, env = "GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET", default_value = "gridcase-dispatcher")]
    snapshot_bucket: String,
}

pub async fn run(command: Command, json_output: bool) -> anyhow::Result<()> {
    let Command::Log(command) = command;
    match command {
        Log::Status { nats, keys } => {
            let client = nats.common.connect("gridctl").await?;
            let js = jetstream::new(client);
            let mut report = Vec::new();
            for (watched, _) in watched(&nats, &keys.key_bucket) {
                let mut stream =
                    js.get_stream(&watched.stream).await.with_context(|| format!("stream {}", watched.stream))?;
                let info = stream.info().await?.clone();
                let mut problems = integrity::config_problems(&watched, &info.config);
                problems.extend(integrity::state_problems(watched.keeps, None, &integrity::Extent::of(&info.state)));
                let mut described = describe(&watched.stream, &info);
                described["problems"] = json!(problems);
                report.push(described);
            }
            if json_output {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for stream in &report {
                    println!(
                        "{:<28} {} messages, {} replica(s), leader {}",
                        stream["stream"].as_str().unwrap_or_default(),
                        stream["messages"],
                        stream["replicas"],
                        stream["leader"].as_str().unwrap_or("-")
                    );
                    for problem in stream["problems"].as_array().into_iter().flatten() {
                        println!("  PROBLEM: {}", problem.as_str().unwrap_or_default());
                    }
                    for peer in stream["followers"].as_array().into_iter().flatten() {
                        println!(
                            "  follower {:<20} current {} lag {} offline {}",
                            peer["name"].as_str().unwrap_or_default(),
                            peer["current"],
                            peer["lag"],
                            peer["offline"]
                        );
                    }
                }
            }
            Ok(())
        }
        Log::Reseal { reseal, nats } => {
            let counts = crate::reseal::reseal(crate::reseal::Reseal {
                common: &nats.common,
                keys: &reseal.keys,
                to_stream: &reseal.to_stream,
                max_messages: reseal.max_messages,
            })
            .await?;
            if json_output {
                println!("{}", serde_json::to_string(&counts)?);
            } else if !counts.complete {
                println!(
                    "{} messages of the stream copied into {} so far ({} by an earlier run); \
                     run this again to go on",
                    counts.messages, reseal.to_stream, counts.resumed
                );
            } else {
                println!(
                    "{} messages copied into {} ({} by an earlier run): {} filings' contact details sealed, \
                     {} events re-chained; the chains of {} cases verified before and after",
                    counts.messages,
                    reseal.to_stream,
                    counts.resumed,
                    counts.contacts_sealed,
                    counts.rechained,
                    counts.cases
                );
            }
            Ok(())
        }
        Log::DeleteRetired { delete, nats } => {
            let deleted =
                crate::reseal::delete_retired(&nats.common, &delete.retired, delete.old_snapshot_bucket.as_deref())
                    .await?;
            if json_output {
                println!("{}", serde_json::to_string(&deleted)?);
            } else {
                println!(
                    "deleted stream {} ({} messages; {} holds them){}",
                    deleted.stream,
                    deleted.messages,
                    nats.common.stream,
                    deleted.snapshot_bucket.map(|b| format!(" and the snapshot bucket {b}")).unwrap_or_default()
                );
            }
            Ok(())
        }
        Log::Copy { from_nats_url, from_credentials, from_tls_ca, from_stream, from_attachment_stream, nats } => {
            let from = CommonArgs {
                nats_url: from_nats_url,
                nats_credentials: from_credentials,
                nats_tls_ca: from_tls_ca,
                nats_tls_cert: None,
                nats_tls_key: None,
                stream: from_stream.unwrap_or_else(|| nats.common.stream.clone()),
                ..nats.common.clone()
            };
            let from_attachments = from_attachment_stream.unwrap_or_else(|| nats.attachment_stream.clone());
            let copied = copy(&from, &from_attachments, &nats.common, &nats.attachment_stream).await?;
            report_copy(&copied, json_output);
            Ok(())
        }
        Log::MigrateAttachments { bucket, nats } => {
            let client = nats.common.connect("gridctl").await?;
            let js = jetstream::new(client.clone());
            let replicas = usize::from(nats.common.stream_replicas);
            let store = AttachmentStore::open(&js, &nats.attachment_stream, replicas).await?;
            let migrated = copy_legacy_bucket(&js, &bucket, &store).await?;
            if json_output {
                println!(
                    "{}",
                    json!({ "bucket": bucket, "copied": migrated.copied, "already_there": migrated.already_there })
                );
            } else {
                println!(
                    "{} attachments copied from {bucket} into {} ({} were there already)",
                    migrated.copied, nats.attachment_stream, migrated.already_there
                );
            }
            client.drain().await.ok();
            Ok(())
        }
        Log::SetReplicas { nats, keys } => {
            let client = nats.common.connect("gridctl").await?;
            let js = jetstream::new(client.clone());
            let replicas = usize::from(nats.common.stream_replicas);
            let mut configured = Vec::new();
            for (watched, config) in watched(&nats, &keys.key_bucket) {
                configure(&js, config).await?;
                configured.push(watched.stream);
            }
            // The dispatcher's snapshot bucket, if a dispatcher made one (it
            // creates it with the stream's replicas on its first start).
            let snapshots = format!("OBJ_{}", nats.snapshot_bucket);
            if keep_replicas(&js, &snapshots, replicas).await? {
                configured.push(snapshots);
            }
            if json_output {
                println!("{}", json!({ "streams": configured, "replicas": replicas }));
            } else {
                println!("{} keep {replicas} replica(s) and gridcase's configuration", configured.join(", "));
            }
            client.drain().await.ok();
            Ok(())
        }
    }
}

/// The streams that keep gridcase's history, with the configuration each should have.
fn watched(nats: &NatsArgs, key_bucket: &str) -> Vec<(integrity::Watched, jetstream::stream::Config)> {
    let replicas = usize::from(nats.common.stream_replicas);
    let settings = nats.common.stream_settings();
    vec![
        (EventLog::watched(&settings), EventLog::stream_config(&settings)),
        attachments::watched(&nats.attachment_stream, replicas),
        gridcase_eventlog::keys::watched(key_bucket, replicas),
    ]
}

/// Create the stream with `config`, or give an existing one that configuration.
async fn configure(js: &jetstream::Context, config: jetstream::stream::Config) -> anyhow::Result<()> {
    let name = config.name.clone();
    match js.get_stream(&name).await {
        Ok(_) => {
            js.update_stream(config).await.with_context(|| format!("updating {name}"))?;
        }
        Err(_) => {
            js.create_stream(config).await.with_context(|| format!("creating {name}"))?;
        }
    }
    Ok(())
}

/// Give the stream `name` `replicas` copies; false if there is no such stream.
async fn keep_replicas(js: &jetstream::Context, name: &str, replicas: usize) -> anyhow::Result<bool> {
    let Ok(mut stream) = js.get_stream(name).await else { return Ok(false) };
    let mut config = stream.info().await?.config.clone();
    if config.num_replicas != replicas {
        config.num_replicas = replicas;
        js.update_stream(config).await.with_context(|| format!("updating {name}"))?;
    }
    Ok(true)
}

fn describe(name: &str, info: &jetstream::stream::Info) -> serde_json::Value {
    let cluster = info.cluster.clone().unwrap_or_default();
    json!({
        "stream": name,
        "messages": info.state.messages,
        "last_sequence": info.state.last_sequence,
        "replicas": info.config.num_replicas,
        "leader": cluster.leader,
        "followers": cluster.replicas.iter().map(|p| json!({
            "name": p.name, "current": p.current, "lag": p.lag.unwrap_or(0), "offline": p.offline,
        })).collect::<Vec<_>>(),
    })
}
