//! The topology under test, as `deploy/cluster.sh` runs it: where each part
//! listens (from `deploy/cluster.sh topology`), and killing and restarting
//! parts through the same script.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

/// How to reach and drive one deployment of the cluster topology.
#[derive(Debug, Clone)]
pub struct Topology {
    script: PathBuf,
    /// Environment for `deploy/cluster.sh` (run directory, ports, binaries).
    env: Vec<(String, String)>,
    pub nodes: usize,
    /// Each part in a network namespace of its own (links can be cut and slowed).
    pub netns: bool,
    /// The run directory: node `i`'s store is `<run>/nats-<i>`, logs in `<run>/logs`.
    pub run_dir: PathBuf,
    pub nats_urls: String,
    pub nats_monitor: Vec<String>,
    pub nats_tls_ca: PathBuf,
    pub operator_credentials: PathBuf,
    pub dev_token_secret: PathBuf,
    pub database_url: String,
    pub intake: Vec<String>,
    /// The query services (gRPC).
    pub query: Vec<String>,
}

/// A kind of fault the harness injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// kill -9 the nats-server leading the case stream, restart it.
    NatsLeader,
    /// kill -9 an intake, a dispatcher, a projection, PostgreSQL.
    Intake,
    Dispatcher,
    Projection,
    Postgres,
    /// Cut the case stream's leader off from the other nodes.
    IsolateLeader,
    /// One node | two nodes, an intake, a dispatcher and a projection on each side.
    Split,
    /// A–B and B–C connected, A–C cut.
    Bridge,
    /// One node's links cut and healed every one to three seconds.
    Flap,
    /// Delay, loss and reordering on one node's link.
    Slow,
    /// SIGSTOP a nats-server (the leader, mostly) past the election timeout.
    PauseNode,
    /// SIGSTOP an intake, a dispatcher or a projection.
    PauseService,
    /// kill -9 a node and cut off the tail of its newest message block.
    TruncateTail,
    /// kill -9 a node and flip a byte near the end of its newest message block.
    CorruptTail,
}

impl FaultKind {
    pub const ALL: [FaultKind; 14] = [
        FaultKind::NatsLeader,
        FaultKind::Intake,
        FaultKind::Dispatcher,
        FaultKind::Projection,
        FaultKind::Postgres,
        FaultKind::IsolateLeader,
        FaultKind::Split,
        FaultKind::Bridge,
        FaultKind::Flap,
        FaultKind::Slow,
        FaultKind::PauseNode,
        FaultKind::PauseService,
        FaultKind::TruncateTail,
        FaultKind::CorruptTail,
    ];
    /// The kills alone (what the harness did before it had namespaces).
    pub const KILLS: [FaultKind; 5] =
        [FaultKind::NatsLeader, FaultKind::Intake, FaultKind::Dispatcher, FaultKind::Projection, FaultKind::Postgres];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::NatsLeader => "nats-leader",
            FaultKind::Intake => "intake",
            FaultKind::Dispatcher => "dispatcher",
            FaultKind::Projection => "projection",
            FaultKind::Postgres => "postgres",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Split => "split",
            FaultKind::Bridge => "bridge",
            FaultKind::Flap => "flap",
            FaultKind::Slow => "slow",
            FaultKind::PauseNode => "pause-node",
            FaultKind::PauseService => "pause-service",
            FaultKind::TruncateTail => "truncate-tail",
            FaultKind::CorruptTail => "corrupt-tail",
        }
    }

    /// Whether the fault works on links (it needs each part in a namespace).
    pub fn needs_netns(self) -> bool {
        matches!(
            self,
            FaultKind::IsolateLeader | FaultKind::Split | FaultKind::Bridge | FaultKind::Flap | FaultKind::Slow
        )
    }

    /// Whether it needs a cluster (a partition of one node is no partition).
    pub fn needs_cluster(self) -> bool {
        self.needs_netns() || matches!(self, FaultKind::TruncateTail | FaultKind::CorruptTail)
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == text)
    }
}

impl Topology {
    /// The topology `script` (deploy/cluster.sh) runs with `env`.
    pub async fn describe(script: PathBuf, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let output = Self::run_script(&script, &env, &["topology"]).await?;
        let values: BTreeMap<&str, &str> = output.lines().filter_map(|line| line.split_once('=')).collect();
        let get = |key: &str| {
            values.get(key).map(|v| v.to_string()).with_context(|| format!("cluster.sh topology does not say {key}"))
        };
        let list = |key: &str| get(key).map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>());
        Ok(Self {
            nodes: get("NODES")?.parse().context("NODES")?,
            netns: values.get("NETNS").is_some_and(|v| !v.is_empty()),
            run_dir: get("RUN")?.into(),
            nats_urls: get("NATS_URLS")?,
            nats_monitor: list("NATS_MONITOR")?,
            nats_tls_ca: get("NATS_TLS_CA")?.into(),
            operator_credentials: get("NATS_OPERATOR_CREDENTIALS")?.into(),
            dev_token_secret: get("DEV_TOKEN_SECRET")?.into(),
            database_url: get("DATABASE_URL")?,
            intake: list("INTAKE")?,
            query: list("QUERY")?,
            script,
            env,
        })
    }

    async fn run_script(script: &PathBuf, env: &[(String, String)], args: &[&str]) -> anyhow::Result<String> {
        let output = tokio::process::Command::new(script)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .await
            .with_context(|| format!("running {}", script.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "{} {} failed: {}",
            script.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Run `deploy/cluster.sh ARGS…`.
    pub async fn script(&self, args: &[&str]) -> anyhow::Result<String> {
        Self::run_script(&self.script, &self.env, args).await
    }

    /// Whether every node says it is healthy (JetStream current: `/healthz`).
    pub async fn nodes_healthy(&self) -> bool {
        for monitor in &self.nats_monitor {
            match http_get(monitor, "/healthz").await {
                Ok(body) if body.contains("\"ok\"") => {}
                _ => return false,
            }
        }
        true
    }

    /// The name (`nats-2`) of the node leading the case stream now.
    pub async fn stream_leader(&self, stream: &str) -> anyhow::Result<String> {
        for monitor in &self.nats_monitor {
            let Ok(body) = http_get(monitor, "/jsz?streams=true").await else { continue };
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else { continue };
            let streams = json["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|account| account["stream_detail"].as_array().cloned().unwrap_or_default());
            for detail in streams {
                if detail["name"] == stream {
                    // A single node has no cluster section: it leads.
                    let leader = detail["cluster"]["leader"].as_str().unwrap_or("gridcase-nats-1");
                    if let Some(number) = leader.strip_prefix("gridcase-nats-") {
                        return Ok(format!("nats-{number}"));
                    }
                }
            }
        }
        anyhow::bail!("no node names a leader of {stream}")
    }
}

/// A plain HTTP/1.0 GET (the monitoring endpoint of nats-server).
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(2), work).await??;
    let (_, body) = response.split_once("\r\n\r\n").context("an HTTP response")?;
    Ok(body.to_owned())
}
