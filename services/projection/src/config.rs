use std::net::SocketAddr;

use gridcase_grpc::{AuthArgs, GrpcWebArgs, ServerTlsArgs};
use gridcase_resources::{CommonArgs, KeyArgs, PolicyArgs};

/// gridcase projection and query service: builds the read models (case
/// ledgers, overdue reports, audited histories) in PostgreSQL from the event
/// log, and serves gridcase.query.v1.QueryService over them.
///
/// Every flag can also be set by the environment variable shown beside it.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "gridcase-projection", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum Mode {
    /// Apply migrations, project the stream continuously and serve queries (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Replay the stream from its first event into fresh tables, then swap them in.
    Rebuild,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Policy and calendar: the overdue report measures working-time clocks in working time.
    #[command(flatten)]
    pub rules: PolicyArgs,

    /// Bearer tokens: trusted keys, issuer, audience (the query service only).
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Residents' personal data: the query service opens sealed contact
    /// details with the case's key to show them masked (serve only; required there).
    #[command(flatten)]
    pub keys: KeyArgs,

    /// Address of the Prometheus metrics endpoint (/metrics).
    #[arg(long, env = "GRIDCASE_PROJECTION_METRICS_ADDR", default_value = "127.0.0.1:9466")]
    pub metrics_addr: SocketAddr,

    /// Serve no metrics endpoint.
    #[arg(long, env = "GRIDCASE_PROJECTION_NO_METRICS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_metrics: bool,

    /// How often the newest projected events are compared with what the log holds now (the history
    /// audit: an event gone or replaced stops projecting and raises GridcaseHistoryAtRisk).
    #[arg(long, env = "GRIDCASE_HISTORY_AUDIT_INTERVAL", default_value = "30s", value_parser = gridcase_process::parse_duration)]
    pub history_audit_interval: std::time::Duration,

    /// How long an audit's finding must last, seen in every look, before it is reported (one look can
    /// be misled by a deposed stream leader that answers with an old end).
    #[arg(long, env = "GRIDCASE_HISTORY_AUDIT_CONFIRM", default_value = "60s", value_parser = gridcase_process::parse_duration)]
    pub history_audit_confirm: std::time::Duration,

    /// How many of the newest projected events each audit compares (0: no audit).
    #[arg(long, env = "GRIDCASE_HISTORY_AUDIT_WINDOW", default_value_t = 2000)]
    pub history_audit_window: u64,

    /// How often open and overdue cases per township are counted for the metrics.
    #[arg(long, env = "GRIDCASE_CASES_METRICS_INTERVAL", default_value = "30s", value_parser = gridcase_process::parse_duration)]
    pub cases_metrics_interval: std::time::Duration,

    /// Address the QueryService listens on.
    #[arg(long, env = "GRIDCASE_QUERY_ADDR", default_value = "127.0.0.1:50052")]
    pub addr: SocketAddr,

    /// TLS on the gRPC listener.
    #[command(flatten)]
    pub tls: ServerTlsArgs,

    /// gRPC-Web (browsers, mini programs) on the gRPC listener.
    #[command(flatten)]
    pub grpc_web: GrpcWebArgs,

    /// PostgreSQL URL (the password is never logged).
    #[arg(
        long,
        env = "GRIDCASE_DATABASE_URL",
        default_value = "postgres://gridcase:gridcase@127.0.0.1:5432/gridcase",
        hide_env_values = true
    )]
    pub database_url: String,

    /// The database schema holding the read models.
    #[arg(long, env = "GRIDCASE_READ_SCHEMA", default_value = "read")]
    pub schema: String,

    /// The most events one projection transaction writes while the
    /// projection keeps up; while it is behind by more than a batch, up to
    /// ten times as many.
    #[arg(long, env = "GRIDCASE_PROJECTION_BATCH", default_value_t = 500)]
    pub batch_size: usize,

    /// How often a standby projection process (another one holds the writer
    /// lock) checks whether it can take over writing the read models.
    #[arg(long, env = "GRIDCASE_WRITER_POLL", default_value = "1s", value_parser = gridcase_process::parse_duration)]
    pub writer_poll: std::time::Duration,

    /// The reference data: the grids' boundaries (grids.geojson) are loaded
    /// into the read models at start, for the map.
    #[arg(long, env = "GRIDCASE_REFERENCE_DIR", default_value = "deploy/reference")]
    pub reference_dir: std::path::PathBuf,

    /// Connections to PostgreSQL (queries; the writer has one of its own).
    #[arg(long, env = "GRIDCASE_DATABASE_CONNECTIONS", default_value_t = 8)]
    pub database_connections: u32,
}

impl Config {
    pub fn defaults() -> Self {
        <Cli as clap::Parser>::parse_from(["gridcase-projection"]).config
    }
}
