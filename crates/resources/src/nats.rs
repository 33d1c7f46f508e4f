//! The NATS connection every service opens, the case log on it, and the
//! watches that go with them (the connection gauge, the log's integrity).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use gridcase_eventlog::{EventLog, StreamSettings};

use gridcase_process::{LogFormat, parse_duration};

/// Flags every gridcase service takes (flattened into each service's `Config`).
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// NATS server with JetStream (nats-server 2.12 or newer, 2.15+ advised): one URL, or a
    /// cluster's nodes as a comma-separated list (the client fails over among them).
    #[arg(long, env = "GRIDCASE_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Copies JetStream keeps of the case stream and the attachment stream:
    /// 1 on a single server, 3 on a three-node cluster (at most 5).
    #[arg(long, env = "GRIDCASE_STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,

    /// JetStream stream holding the case events.
    #[arg(long, env = "GRIDCASE_STREAM", default_value = "GRIDCASE_CASES")]
    pub stream: String,

    /// JetStream duplicate window (how long message ids are remembered). All services must agree.
    #[arg(long, env = "GRIDCASE_DUPLICATE_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub duplicate_window: Duration,

    /// How long one append waits for JetStream's acknowledgement before it
    /// is sent again (same id).
    #[arg(long, env = "GRIDCASE_PUBLISH_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub publish_timeout: Duration,

    /// How long an append keeps trying while the log has no answer or no
    /// stream leader (a lost node: JetStream elects a new one within about
    /// 4 to 9 seconds), with backoff; then the caller gets UNAVAILABLE.
    #[arg(long, env = "GRIDCASE_APPEND_DEADLINE", default_value = "15s", value_parser = parse_duration)]
    pub append_deadline: Duration,

    /// Group commit: most events appended together in one atomic batch
    /// (one fsync). 1 sends every single append alone.
    #[arg(long, env = "GRIDCASE_GROUP_COMMIT_EVENTS", default_value_t = 500,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub group_commit_events: u16,

    /// Group commit: how long the first append of a batch may wait for
    /// others to join it (0: never wait; a batch holds what queued while
    /// earlier writes were in flight).
    #[arg(long, env = "GRIDCASE_GROUP_COMMIT_WAIT", default_value = "0s", value_parser = parse_duration)]
    pub group_commit_wait: Duration,

    /// Group commit: writes (batches or lone appends) in flight at once.
    #[arg(long, env = "GRIDCASE_GROUP_COMMIT_IN_FLIGHT", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub group_commit_in_flight: u16,

    /// How long work in flight may take to finish after SIGTERM.
    #[arg(long, env = "GRIDCASE_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// The NATS user's credentials, from a file (never from the command
    /// line): an NKey seed (`gridctl nats-key new FILE` makes one) or a
    /// `.creds` file of a JWT-based deployment. Unset: connect without credentials.
    #[arg(long, env = "GRIDCASE_NATS_CREDENTIALS")]
    pub nats_credentials: Option<PathBuf>,

    /// CA certificate (PEM) the NATS servers' certificates are checked
    /// against; set, the connection must use TLS.
    #[arg(long, env = "GRIDCASE_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for NATS servers that verify clients
    /// (with --nats-tls-key).
    #[arg(long, env = "GRIDCASE_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = "GRIDCASE_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,

    /// How often the case stream (and the other streams the service uses) is
    /// checked to still keep its history: no retention limit, roll-up, TTL
    /// or deletion allowed, nothing gone. Writes stop while it does not.
    #[arg(long, env = "GRIDCASE_INTEGRITY_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub integrity_interval: Duration,

    /// Log format: text for terminals, json for log collectors. Filter with RUST_LOG.
    #[arg(long, env = "GRIDCASE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl CommonArgs {
    /// The NATS servers of `--nats-url`: one URL or a comma-separated list.
    pub fn nats_servers(&self) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
        let servers: Vec<async_nats::ServerAddr> = self
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| url.parse().with_context(|| format!("--nats-url: {url:?} is not a NATS URL")))
            .collect::<anyhow::Result<_>>()?;
        anyhow::ensure!(!servers.is_empty(), "--nats-url names no server");
        Ok(servers)
    }

    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            stream_name: self.stream.clone(),
            duplicate_window: self.duplicate_window,
            publish_timeout: self.publish_timeout,
            append_deadline: self.append_deadline,
            replicas: usize::from(self.stream_replicas),
            group_commit: gridcase_eventlog::GroupCommit {
                max_events: usize::from(self.group_commit_events),
                max_wait: self.group_commit_wait,
                max_in_flight: usize::from(self.group_commit_in_flight),
            },
        }
    }

    /// How to connect to NATS as `name`: reconnecting forever, quickly, with
    /// the configured credentials and TLS.
    pub async fn nats_options(&self, name: &str) -> anyhow::Result<async_nats::ConnectOptions> {
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 200).min(2_000)));
        if let Some(path) = &self.nats_credentials {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the NATS credentials {}", path.display()))?;
            options = if text.contains("-----BEGIN NATS USER JWT-----") {
                options.credentials_file(path).await.with_context(|| format!("NATS credentials {}", path.display()))?
            } else {
                let seed = text.trim();
                anyhow::ensure!(
                    seed.starts_with("SU") && nkeys::KeyPair::from_seed(seed).is_ok(),
                    "{} holds neither a NATS user NKey seed (SU…) nor a .creds file",
                    path.display()
                );
                options.nkey(seed.to_owned())
            };
        }
        if let Some(ca) = &self.nats_tls_ca {
            options = options.require_tls(true).add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.nats_tls_cert, &self.nats_tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options)
    }

    /// Connect to NATS as `name` (reconnecting forever, quickly); fails fast
    /// when NATS is unreachable.
    pub async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        self.nats_options(name)
            .await?
            .connect(self.nats_servers()?.as_slice())
            .await
            .with_context(|| format!("connecting to NATS at {}", self.nats_url))
    }

    /// Connect to NATS as `name` and open the case event log; fails fast
    /// when NATS is unreachable or too old.
    pub async fn open_log(&self, name: &str) -> anyhow::Result<(async_nats::Client, EventLog)> {
        let client = self.connect(name).await?;
        let log = tokio::time::timeout(Duration::from_secs(30), EventLog::open(client.clone(), self.stream_settings()))
            .await
            .with_context(|| format!("NATS at {} did not answer within 30s", self.nats_url))?
            .context("opening the case event log")?;
        Ok((client, log))
    }
}

/// Check, at once and every `--integrity-interval` until `stop`, that the
/// case stream and the streams in `also` keep their history; the verdict
/// goes to the log's [`gridcase_eventlog::integrity::Integrity`] (writes
/// stop, health and the metric follow it).
pub fn watch_history(
    log: &EventLog,
    also: Vec<(gridcase_eventlog::integrity::Watched, async_nats::jetstream::stream::Config)>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut streams = vec![(EventLog::watched(log.settings()), EventLog::stream_config(log.settings()))];
    streams.extend(also);
    tokio::spawn(gridcase_eventlog::integrity::watch(
        log.context().clone(),
        streams,
        log.integrity().clone(),
        interval,
        stop,
    ))
}

/// 1 while the NATS connection is up, 0 while it is down.
pub const NATS_CONNECTED: &str = "gridcase_nats_connected";

/// Keep [`NATS_CONNECTED`] in step with `client`'s connection until `stop`.
pub fn watch_nats(client: async_nats::Client, stop: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            let connected = client.connection_state() == async_nats::connection::State::Connected;
            metrics::gauge!(NATS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}
