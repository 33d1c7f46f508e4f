//! `gridctl log status|set-replicas`: the operator's view of the case
//! stream and the attachment bucket on NATS JetStream (not through the
//! services: straight to NATS, as the operator user of
//! deploy/nats/permissions.conf).

use anyhow::Context as _;
use async_nats::jetstream;
use gridcase_eventlog::{AttachmentStore, EventLog, attachments, integrity};
use gridcase_resources::CommonArgs;
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The case stream and the attachment bucket on NATS (operators).
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
    /// Copy the case stream and the attachment bucket from another NATS
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
    /// re-sealed, verifying all chains before and after; for history
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
            let client = connect(&nats.common).await?;
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
            let client = connect(&nats.common).await?;
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
            let client = connect(&nats.common).await?;
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

/// What a copy did.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    pub(crate) messages: u64,
    pub(crate) already_there: u64,
    pub(crate) last_sequence: u64,
    pub(crate) attachments: u64,
}

pub(crate) fn report_copy(copied: &Copied, json_output: bool) {
    if json_output {
        println!(
            "{}",
            json!({
                "copied": copied.messages, "already_there": copied.already_there,
                "last_sequence": copied.last_sequence, "attachments": copied.attachments,
            })
        );
    } else {
        println!(
            "copied {} messages ({} were there already), up to stream sequence {}; {} attachments",
            copied.messages, copied.already_there, copied.last_sequence, copied.attachments
        );
    }
}

/// Copy the case stream `from.stream` message for message (same sequences)
/// and the attachments of `from_attachments` into `to`'s.
pub(crate) async fn copy(
    from: &CommonArgs,
    from_attachments: &str,
    to: &CommonArgs,
    to_attachments: &str,
) -> anyhow::Result<Copied> {
    use futures::StreamExt as _;
    let source_client = connect(from).await.context("the source")?;
    let source = jetstream::new(source_client);
    let mut source_stream =
        source.get_stream(&from.stream).await.with_context(|| format!("stream {} on the source", from.stream))?;
    let state = source_stream.info().await?.state.clone();
    anyhow::ensure!(
        state.messages == 0 || (state.first_sequence == 1 && state.messages == state.last_sequence),
        "the source stream has gaps (first {}, last {}, {} messages): it is not a gridcase case stream",
        state.first_sequence,
        state.last_sequence,
        state.messages
    );

    let (client, log) = to.open_log("gridctl-copy").await.context("the destination")?;
    let mut copied = Copied { last_sequence: state.last_sequence, ..Copied::default() };
    let there = log.last_sequence().await?;
    let destination = log.context().get_stream(&to.stream).await?.info().await?.state.clone();
    anyhow::ensure!(
        destination.messages == 0
            || (destination.first_sequence == 1 && destination.messages == destination.last_sequence),
        "the destination stream {} has gaps (first {}, last {}, {} messages): it lost history; \
         a copy goes only into an empty stream or the intact start of a copy",
        to.stream,
        destination.first_sequence,
        destination.last_sequence,
        destination.messages
    );
    anyhow::ensure!(
        there <= state.last_sequence,
        "the destination holds {there} messages, the source only {}: not a copy of it",
        state.last_sequence
    );
    if there > 0 {
        // Resuming: the destination must be a prefix of the source.
        let ours = log.context().get_stream(&to.stream).await?.get_raw_message(there).await?;
        let theirs = source_stream.get_raw_message(there).await?;
        anyhow::ensure!(
            ours.subject == theirs.subject && ours.payload == theirs.payload,
            "message {there} differs between the source and the destination: not a copy of it"
        );
    }
    copied.already_there = there;
    if there < state.last_sequence {
        // An ordered consumer of our own on the source: nothing there changes.
        let consumer = source_stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: there + 1 },
                ..Default::default()
            })
            .await
            .context("reading the source stream")?;
        let mut messages = consumer.messages().await?;
        let mut acks = futures::stream::FuturesOrdered::new();
        while let Some(message) = messages.next().await {
            let message = message?;
            let sequence = message
                .info()
                .map_err(|e| anyhow::anyhow!("a source message without its position: {e}"))?
                .stream_sequence;
            let mut publish = jetstream::message::PublishMessage::build().payload(message.payload.clone());
            // The headers as stored first: `headers` replaces the whole map.
            if let Some(headers) = copyable_headers(message.headers.as_ref()) {
                publish = publish.headers(headers);
            }
            // The same position as in the source, or nothing.
            let publish = publish.expected_last_sequence(sequence - 1);
            let ack = log.context().send_publish(message.subject.to_string(), publish).await?;
            acks.push_back(std::future::IntoFuture::into_future(ack));
            if acks.len() >= 256 {
                confirm(acks.next().await, &mut copied)?;
            }
            if sequence >= state.last_sequence {
                break;
            }
        }
        while let Some(ack) = acks.next().await {
            confirm(Some(ack), &mut copied)?;
        }
    }
    let end = log.last_sequence().await?;
    anyhow::ensure!(end == state.last_sequence, "the destination ends at {end}, the source at {}", state.last_sequence);

    // Attachments: by content, those the destination lacks.
    let replicas = usize::from(to.stream_replicas);
    let to_store = AttachmentStore::open(log.context(), to_attachments, replicas).await?;
    copied.attachments = copy_attachment_stream(&source, from_attachments, &to_store).await?;
    copied.attachments += copy_legacy_bucket(&source, attachments::LEGACY_BUCKET, &to_store).await?.copied;
    client.drain().await.ok();
    Ok(copied)
}

/// Copy every attachment of the stream `name` on `source` that `to` lacks;
/// how many were copied. A source without that stream has none.
async fn copy_attachment_stream(source: &jetstream::Context, name: &str, to: &AttachmentStore) -> anyhow::Result<u64> {
    use futures::StreamExt as _;
    let Ok(mut stream) = source.get_stream(name).await else { return Ok(0) };
    let last = stream.info().await?.state.last_sequence;
    if last == 0 {
        return Ok(0);
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("reading the source's attachments")?;
    let mut messages = consumer.messages().await?;
    // An attachment's chunks, by subject, until the last one is read.
    let mut open: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    let mut copied = 0;
    while let Some(message) = messages.next().await {
        let message = message?;
        let sequence =
            message.info().map_err(|e| anyhow::anyhow!("a message without its position: {e}"))?.stream_sequence;
        let subject = message.subject.to_string();
        let header = |name: &str| {
            message.headers.as_ref().and_then(|h| h.get(name)).and_then(|v| v.as_str().parse::<u64>().ok())
        };
        let (Some(size), Some(_)) = (header("Gridcase-Attachment-Size"), header("Gridcase-Attachment-Chunks")) else {
            anyhow::bail!("message {sequence} of {name} is not an attachment's chunk");
        };
        let bytes = open.entry(subject.clone()).or_default();
        bytes.extend_from_slice(&message.payload);
        if bytes.len() as u64 >= size {
            let bytes = open.remove(&subject).unwrap_or_default();
            let digest = subject.rsplit('.').next().unwrap_or_default();
            let digest = gridcase_domain::Sha256Digest::parse(digest)
                .map_err(|e| anyhow::anyhow!("{subject} is not named by a SHA-256: {e}"))?;
            if to.find(&digest).await?.is_none() {
                let stored = to.put(&bytes).await?;
                anyhow::ensure!(stored.sha256 == digest, "attachment {digest} changed in transit");
                copied += 1;
            }
        }
        if sequence >= last {
            break;
        }
    }
    anyhow::ensure!(open.is_empty(), "{} attachments of {name} are incomplete on the source", open.len());
    Ok(copied)
}

/// What copying an object-store bucket did.
#[derive(Debug, Default)]
struct Migrated {
    copied: u64,
    already_there: u64,
}

/// Copy the attachments of an object-store bucket of older versions (each
/// named by its SHA-256) that `to` lacks. A source without it has none.
async fn copy_legacy_bucket(
    source: &jetstream::Context,
    bucket: &str,
    to: &AttachmentStore,
) -> anyhow::Result<Migrated> {
    use futures::StreamExt as _;
    use tokio::io::AsyncReadExt as _;
    let mut migrated = Migrated::default();
    let Ok(from_bucket) = source.get_object_store(bucket).await else { return Ok(migrated) };
    let mut objects = from_bucket.list().await?;
    while let Some(object) = objects.next().await {
        let object = object?;
        if object.deleted {
            continue;
        }
        let digest = gridcase_domain::Sha256Digest::parse(&object.name)
            .map_err(|e| anyhow::anyhow!("attachment {:?} is not named by its SHA-256: {e}", object.name))?;
        if to.find(&digest).await?.is_some() {
            migrated.already_there += 1;
            continue;
        }
        let mut bytes = Vec::new();
        from_bucket.get(&object.name).await?.read_to_end(&mut bytes).await?;
        let stored = to.put(&bytes).await?;
        anyhow::ensure!(stored.sha256 == digest, "attachment {} changed in transit", object.name);
        migrated.copied += 1;
    }
    Ok(migrated)
}

/// A stored message's headers, for publishing a copy of it: gridcase's own
/// (`ce-*`) and any other, but not JetStream's publish controls (`Nats-*`),
/// which the server stores with the message as they were sent. Sent again
/// they would act again: a batch's `Nats-Batch-Id` opens a batch the copy
/// never commits, `Nats-Expected-*` tests the new stream's state rather
/// than the old one's, `Nats-Msg-Id` may drop a message as a duplicate.
pub(crate) fn copyable_headers(stored: Option<&async_nats::HeaderMap>) -> Option<async_nats::HeaderMap> {
    let stored = stored?;
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in stored.iter() {
        if AsRef::<str>::as_ref(name).get(..5).is_some_and(|prefix| prefix.eq_ignore_ascii_case("nats-")) {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    Some(headers)
}

fn confirm(
    ack: Option<Result<jetstream::publish::PublishAck, jetstream::context::PublishError>>,
    copied: &mut Copied,
) -> anyhow::Result<()> {
    match ack {
        Some(Ok(_)) => {
            copied.messages += 1;
            Ok(())
        }
        Some(Err(error)) => Err(anyhow::anyhow!(
            "the destination refused a message ({error}): is something else writing to it? Run the copy again to resume"
        )),
        None => Ok(()),
    }
}

async fn connect(common: &CommonArgs) -> anyhow::Result<async_nats::Client> {
    connect_as(common, "gridctl").await
}

/// Connect to `common`'s NATS with `name` as the connection's name.
pub(crate) async fn connect_as(common: &CommonArgs, name: &str) -> anyhow::Result<async_nats::Client> {
    common
        .nats_options(name)
        .await?
        .connect(common.nats_servers()?.as_slice())
        .await
        .with_context(|| format!("connecting to NATS at {}", common.nats_url))
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
