use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gridcase_grpc::{AuthArgs, GrpcWebArgs, ServerTlsArgs};
use gridcase_process::parse_duration;
use gridcase_resources::{CommonArgs, KeyArgs, PolicyArgs};

/// gridcase intake: the gRPC services grid workers file cases through
/// (IntakeService) and command centres and handling units move them along
/// (CaseService).
///
/// Every flag can also be set by the environment variable shown beside it.
/// Defaults suit a single machine running `deploy/up.sh`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "gridcase-intake", version, about, long_about = None)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Policy and calendar: manual dispatch, reassignment and extensions get
    /// their deadlines the same way the dispatcher computes them.
    #[command(flatten)]
    pub rules: PolicyArgs,

    /// Bearer tokens: trusted keys, issuer, audience.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Residents' personal data: the master key file (required) and the key store.
    #[command(flatten)]
    pub keys: KeyArgs,

    /// Address of the Prometheus metrics endpoint (/metrics).
    #[arg(long, env = "GRIDCASE_INTAKE_METRICS_ADDR", default_value = "127.0.0.1:9465")]
    pub metrics_addr: std::net::SocketAddr,

    /// Serve no metrics endpoint.
    #[arg(long, env = "GRIDCASE_INTAKE_NO_METRICS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_metrics: bool,

    /// Address the gRPC server listens on.
    #[arg(long, env = "GRIDCASE_INTAKE_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: SocketAddr,

    /// TLS on the gRPC listener.
    #[command(flatten)]
    pub tls: ServerTlsArgs,

    /// gRPC-Web (browsers, mini programs) on the gRPC listener.
    #[command(flatten)]
    pub grpc_web: GrpcWebArgs,

    /// Directory holding regions.csv (grid registry) and categories.csv (taxonomy).
    #[arg(long, env = "GRIDCASE_REFERENCE_DIR", default_value = "deploy/reference")]
    pub reference_dir: PathBuf,

    /// JetStream stream holding attachments (photos), each under its SHA-256, written once.
    #[arg(long, env = "GRIDCASE_ATTACHMENT_STREAM", default_value = gridcase_eventlog::attachments::DEFAULT_STREAM)]
    pub attachment_stream: String,

    /// Largest attachment accepted by UploadAttachment, in bytes (at most 250 MiB).
    #[arg(long, env = "GRIDCASE_MAX_ATTACHMENT_BYTES", default_value_t = 10 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=gridcase_eventlog::attachments::MAX_BYTES))]
    pub max_attachment_bytes: u64,

    /// JetStream stream keeping the parts of resumable uploads until they are
    /// complete (then they become attachments) or expire.
    #[arg(long, env = "GRIDCASE_UPLOAD_STREAM", default_value = gridcase_eventlog::uploads::DEFAULT_STREAM)]
    pub upload_stream: String,

    /// How long a resumable upload may take from its start; after that its
    /// parts are purged and it must start again.
    #[arg(long, env = "GRIDCASE_UPLOAD_TTL", default_value = "24h", value_parser = parse_duration)]
    pub upload_ttl: Duration,

    /// How often expired uploads are purged.
    #[arg(long, env = "GRIDCASE_UPLOAD_SWEEP_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub upload_sweep_interval: Duration,

    /// The largest part of a resumable upload, in bytes (at most 512 KiB:
    /// one NATS message).
    #[arg(long, env = "GRIDCASE_UPLOAD_MAX_PART_BYTES", default_value_t = 512 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..=gridcase_eventlog::uploads::MAX_PART_BYTES as i64))]
    pub upload_max_part_bytes: u32,

    /// Resumable uploads one person may have open at once.
    #[arg(long, env = "GRIDCASE_UPLOAD_OPEN_PER_PERSON", default_value_t = 20)]
    pub upload_open_per_person: usize,

    /// Bytes one person's open uploads may declare together.
    #[arg(long, env = "GRIDCASE_UPLOAD_BYTES_PER_PERSON", default_value_t = 500 * 1024 * 1024)]
    pub upload_bytes_per_person: u64,

    /// Bytes the upload stream may hold, everyone's together: an upload that
    /// would take it past this is refused when it opens (nats-server's own
    /// storage limit refuses parts beyond what its disk can take).
    #[arg(long, env = "GRIDCASE_UPLOAD_TOTAL_BYTES", default_value_t = 10 * 1024 * 1024 * 1024)]
    pub upload_total_bytes: u64,

    /// Parts of one person's uploads received at once (more are refused with
    /// RESOURCE_EXHAUSTED).
    #[arg(long, env = "GRIDCASE_UPLOAD_PARTS_IN_FLIGHT", default_value_t = 4)]
    pub upload_parts_in_flight: usize,

    /// Items one SyncCases call may carry.
    #[arg(long, env = "GRIDCASE_SYNC_MAX_ITEMS", default_value_t = 500)]
    pub sync_max_items: usize,

    /// How far ahead of the server clock a device's reported_at may be.
    #[arg(long, env = "GRIDCASE_MAX_CLOCK_SKEW", default_value = "10m", value_parser = parse_duration)]
    pub max_clock_skew: Duration,

    /// How old a report may be when it finally reaches the server (offline devices queue reports).
    #[arg(long, env = "GRIDCASE_MAX_REPORT_AGE", default_value = "720h", value_parser = parse_duration)]
    pub max_report_age: Duration,

    /// How far (metres) outside its grid's boundary (reference grids.geojson)
    /// a filing's coordinates may lie before the filing is flagged for the
    /// command centre. It is kept either way. GPS error under tall buildings
    /// and hand-drawn boundaries both run to tens of metres.
    #[arg(long, env = "GRIDCASE_GRID_TOLERANCE_M", default_value_t = 200)]
    pub grid_tolerance_m: u32,
}

impl Config {
    /// The configuration with every default, for tests and embedding.
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["gridcase-intake"])
    }
}
