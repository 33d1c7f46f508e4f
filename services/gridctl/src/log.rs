//! `gridctl log status|set-replicas`: the operator's view of the case
//! stream and the attachment bucket on NATS JetStream (not through the
//! services: straight to NATS, as the operator user of
//! deploy/nats/permissions.conf).

use anyhow::Context as _;
use async_nats::jetstream;
use gridcase_runtime::CommonArgs;
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
    },
    /// Keep --stream-replicas copies of the stream and the bucket (creating
    /// them if missing). A stream written on a single nats-server before it
    /// joined a cluster is NOT copied to new replicas this way: use `copy`.
    SetReplicas {
        #[command(flatten)]
        nats: NatsArgs,
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
    pub keys: gridcase_runtime::KeyArgs,
}

#[derive(Debug, clap::Args)]
pub struct NatsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The attachment bucket.
    #[arg(long, env = "GRIDCASE_ATTACHMENT_BUCKET", default_value = "gridcase-attachments")]
    attachment_bucket: String,
    /// The dispatcher's snapshot bucket (a cache of the log; `set-replicas`
    /// moves it too when it exists).
    #[arg(long, env = "GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET", default_value = "gridcase-dispatcher")]
    snapshot_bucket: String,
}

pub async fn run(command: Command, json_output: bool) -> anyhow::Result<()> {
    let Command::Log(command) = command;
    match command {
        Log::Status { nats } => {
            let client = connect(&nats.common).await?;
            let js = jetstream::new(client);
            let mut report = Vec::new();
            for name in [nats.common.stream.clone(), format!("OBJ_{}", nats.attachment_bucket)] {
                let mut stream = js.get_stream(&name).await.with_context(|| format!("stream {name}"))?;
                let info = stream.info().await?.clone();
                report.push(describe(&name, &info));
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
        Log::Copy { from_nats_url, from_credentials, from_tls_ca, nats } => {
            let from = CommonArgs {
                nats_url: from_nats_url,
                nats_credentials: from_credentials,
                nats_tls_ca: from_tls_ca,
                nats_tls_cert: None,
                nats_tls_key: None,
                ..nats.common.clone()
            };
            let copied = copy(from, &nats.common, &nats.attachment_bucket).await?;
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
            Ok(())
        }
        Log::SetReplicas { nats } => {
            let (client, log) = nats.common.open_log("gridctl").await?;
            let replicas = usize::from(nats.common.stream_replicas);
            // The bucket: created by the log's owner on first use, or moved here.
            let js = log.context();
            let bucket = format!("OBJ_{}", nats.attachment_bucket);
            if !keep_replicas(js, &bucket, replicas).await? {
                gridcase_eventlog::AttachmentStore::open(js, &nats.attachment_bucket, replicas)
                    .await
                    .with_context(|| format!("creating {bucket}"))?;
            }
            // The dispatcher's snapshot bucket, if a dispatcher made one (it
            // creates it with the stream's replicas on its first start).
            let snapshots = format!("OBJ_{}", nats.snapshot_bucket);
            let snapshots = keep_replicas(js, &snapshots, replicas).await?.then_some(snapshots);
            let mut message = format!("{} and {bucket} keep {replicas} replica(s)", nats.common.stream);
            if let Some(snapshots) = &snapshots {
                message = format!("{}, {bucket} and {snapshots} keep {replicas} replica(s)", nats.common.stream);
            }
            if json_output {
                println!(
                    "{}",
                    json!({ "stream": nats.common.stream, "bucket": bucket, "snapshots": snapshots, "replicas": replicas })
                );
            } else {
                println!("{message}");
            }
            client.drain().await.ok();
            Ok(())
        }
    }
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
struct Copied {
    messages: u64,
    already_there: u64,
    last_sequence: u64,
    attachments: u64,
}

async fn copy(from: CommonArgs, to: &CommonArgs, bucket: &str) -> anyhow::Result<Copied> {
    use futures::StreamExt as _;
    let source_client = connect(&from).await.context("the source")?;
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

    // Attachments: by name (their SHA-256), those the destination lacks.
    let replicas = usize::from(to.stream_replicas);
    let from_bucket = source.get_object_store(bucket).await;
    if let Ok(from_bucket) = from_bucket {
        let to_store = gridcase_eventlog::AttachmentStore::open(log.context(), bucket, replicas).await?;
        let mut objects = from_bucket.list().await?;
        while let Some(object) = objects.next().await {
            let object = object?;
            if object.deleted {
                continue;
            }
            let digest = gridcase_domain::Sha256Digest::parse(&object.name)
                .map_err(|e| anyhow::anyhow!("attachment {:?} is not named by its SHA-256: {e}", object.name))?;
            if to_store.find(&digest).await?.is_some() {
                continue;
            }
            let mut bytes = Vec::new();
            use tokio::io::AsyncReadExt as _;
            from_bucket.get(&object.name).await?.read_to_end(&mut bytes).await?;
            let stored = to_store.put(&bytes).await?;
            anyhow::ensure!(stored.sha256 == digest, "attachment {} changed in transit", object.name);
            copied.attachments += 1;
        }
    }
    client.drain().await.ok();
    Ok(copied)
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
