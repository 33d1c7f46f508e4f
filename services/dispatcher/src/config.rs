use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gridcase_grpc::ServerTlsArgs;
use gridcase_process::parse_duration;
use gridcase_resources::{CommonArgs, KeyArgs, PolicyArgs};

/// gridcase dispatcher: registers and routes reported cases by policy, sets
/// their deadlines on the working calendar, and watches every deadline
/// (warning, overdue, yellow and red card).
///
/// Every flag can also be set by the environment variable shown beside it.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "gridcase-dispatcher", version, about, long_about = None)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub rules: PolicyArgs,

    /// The key store: the dispatcher destroys the data key of every erasure
    /// it reads (it needs no master key for that).
    #[command(flatten)]
    pub keys: KeyArgs,

    /// Address of the gRPC health service.
    #[arg(long, env = "GRIDCASE_DISPATCHER_ADDR", default_value = "127.0.0.1:50053")]
    pub addr: SocketAddr,

    /// TLS on the health service's listener.
    #[command(flatten)]
    pub tls: ServerTlsArgs,

    /// Address of the Prometheus metrics endpoint (/metrics).
    #[arg(long, env = "GRIDCASE_DISPATCHER_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,

    /// Serve no metrics endpoint.
    #[arg(long, env = "GRIDCASE_DISPATCHER_NO_METRICS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_metrics: bool,

    /// Directory holding regions.csv and categories.csv.
    #[arg(long, env = "GRIDCASE_REFERENCE_DIR", default_value = "deploy/reference")]
    pub reference_dir: PathBuf,

    /// Object-store bucket holding the snapshot of open cases (created if
    /// missing, with the stream's replicas).
    #[arg(long, env = "GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET", default_value = crate::snapshot::DEFAULT_BUCKET)]
    pub snapshot_bucket: String,

    /// Save the snapshot of open cases at most this often (and when
    /// stopping), if the stream has moved. A start resumes from it and
    /// reads only the events after it.
    #[arg(long, env = "GRIDCASE_DISPATCHER_SNAPSHOT_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub snapshot_interval: Duration,

    /// Neither read nor save a snapshot: every start replays the whole stream.
    #[arg(long, env = "GRIDCASE_DISPATCHER_NO_SNAPSHOT", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_snapshot: bool,

    /// How often the deadline watch looks at the clock.
    #[arg(long, env = "GRIDCASE_DISPATCHER_TICK", default_value = "1s", value_parser = parse_duration)]
    pub tick: Duration,
}

impl Config {
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["gridcase-dispatcher"])
    }
}
