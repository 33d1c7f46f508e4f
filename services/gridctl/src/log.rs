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
    /// them if missing): going from one node to three is `--stream-replicas 3`.
    SetReplicas {
        #[command(flatten)]
        nats: NatsArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct NatsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The attachment bucket.
    #[arg(long, env = "GRIDCASE_ATTACHMENT_BUCKET", default_value = "gridcase-attachments")]
    attachment_bucket: String,
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
        Log::SetReplicas { nats } => {
            let (client, log) = nats.common.open_log("gridctl").await?;
            let replicas = usize::from(nats.common.stream_replicas);
            // The bucket: created by the log's owner on first use, or moved here.
            let js = log.context();
            let bucket = format!("OBJ_{}", nats.attachment_bucket);
            match js.get_stream(&bucket).await {
                Ok(mut stream) => {
                    let mut config = stream.info().await?.config.clone();
                    if config.num_replicas != replicas {
                        config.num_replicas = replicas;
                        js.update_stream(config).await.with_context(|| format!("updating {bucket}"))?;
                    }
                }
                Err(_) => {
                    gridcase_eventlog::AttachmentStore::open(js, &nats.attachment_bucket, replicas)
                        .await
                        .with_context(|| format!("creating {bucket}"))?;
                }
            }
            let message = format!("{} and {bucket} keep {replicas} replica(s)", nats.common.stream);
            if json_output {
                println!("{}", json!({ "stream": nats.common.stream, "bucket": bucket, "replicas": replicas }));
            } else {
                println!("{message}");
            }
            client.drain().await.ok();
            Ok(())
        }
    }
}

async fn connect(common: &CommonArgs) -> anyhow::Result<async_nats::Client> {
    common
        .nats_options("gridctl")
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
