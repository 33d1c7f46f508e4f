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
    pub nats_urls: String,
    pub nats_monitor: Vec<String>,
    pub nats_tls_ca: PathBuf,
    pub operator_credentials: PathBuf,
    pub dev_token_secret: PathBuf,
    pub database_url: String,
    pub intake: Vec<String>,
}

/// A part of the topology that can be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// The nats-server leading the case stream.
    NatsLeader,
    Intake,
    Dispatcher,
    Projection,
    Postgres,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] =
        [FaultKind::NatsLeader, FaultKind::Intake, FaultKind::Dispatcher, FaultKind::Projection, FaultKind::Postgres];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::NatsLeader => "nats-leader",
            FaultKind::Intake => "intake",
            FaultKind::Dispatcher => "dispatcher",
            FaultKind::Projection => "projection",
            FaultKind::Postgres => "postgres",
        }
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
            nats_urls: get("NATS_URLS")?,
            nats_monitor: list("NATS_MONITOR")?,
            nats_tls_ca: get("NATS_TLS_CA")?.into(),
            operator_credentials: get("NATS_OPERATOR_CREDENTIALS")?.into(),
            dev_token_secret: get("DEV_TOKEN_SECRET")?.into(),
            database_url: get("DATABASE_URL")?,
            intake: list("INTAKE")?,
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
