//! The gateway's settings: flags, each with a `GRIDCASE_OPEN311_*`
//! variable and a documented default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gridcase_process::{LogFormat, parse_duration};
use gridcase_proto::client::ClientTls;

/// gridcase open311: the Open311 GeoReport v2 endpoint (XML and JSON, with
/// FixMyStreet's service request updates) for partner systems: the 12345
/// platform, a city's reporting app, FixMyStreet. It keeps no state and no
/// secrets: each partner's API key is passed on to intake and the query
/// service, which decide everything.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "gridcase-open311", version, about, long_about = None)]
pub struct Config {
    /// Where to listen (a listener of its own, so it can face partners while
    /// the console stays on the intranet).
    #[arg(long, env = "GRIDCASE_OPEN311_ADDR", default_value = "127.0.0.1:8311")]
    pub addr: SocketAddr,

    /// The intake service (filings, residents' comments).
    #[arg(long, env = "GRIDCASE_OPEN311_INTAKE_URL", default_value = "http://127.0.0.1:50051")]
    pub intake_url: String,

    /// The query service (requests, updates, public status).
    #[arg(long, env = "GRIDCASE_OPEN311_QUERY_URL", default_value = "http://127.0.0.1:50052")]
    pub query_url: String,

    /// CA certificate of the services' TLS (their URLs then start https://).
    #[arg(long, env = "GRIDCASE_OPEN311_UPSTREAM_TLS_CA", value_name = "FILE")]
    pub upstream_tls_ca: Option<PathBuf>,

    /// The grid registry, categories and grid shapes (the service catalogue;
    /// a request's grid found from its coordinates).
    #[arg(long, env = "GRIDCASE_REFERENCE_DIR", default_value = "deploy/reference")]
    pub reference_dir: PathBuf,

    /// Answer requests by id without an API key, with status, category and
    /// times only (as Open311 clients such as FixMyStreet ask them). Off: a
    /// key is needed for every request read.
    #[arg(
        long,
        env = "GRIDCASE_OPEN311_PUBLIC_STATUS",
        default_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub public_status: bool,

    /// The largest request body (a form with its photos).
    #[arg(long, env = "GRIDCASE_OPEN311_MAX_REQUEST_BYTES", default_value = "67108864")]
    pub max_request_bytes: usize,

    /// Origins whose `media_url` the gateway fetches (comma-separated, each
    /// scheme, host and port exactly, e.g. https://photos.example.org).
    /// Empty (the default): no URL is ever fetched (a media_url is passed
    /// over and counted), so a client cannot make the gateway call an
    /// address of its choosing; partners upload photos in the request
    /// (multipart/form-data) instead.
    #[arg(long, env = "GRIDCASE_OPEN311_MEDIA_URL_ORIGINS", value_delimiter = ',')]
    pub media_url_origins: Vec<String>,

    /// The largest photo fetched from an allowed media_url host.
    #[arg(long, env = "GRIDCASE_OPEN311_MAX_MEDIA_BYTES", default_value = "10485760")]
    pub max_media_bytes: usize,

    /// The most updates one servicerequestupdates answer holds; a window
    /// with more is refused (400), to be asked again narrower.
    #[arg(long, env = "GRIDCASE_OPEN311_MAX_UPDATES", default_value = "10000")]
    pub max_updates: usize,

    /// Where the Prometheus metrics are served.
    #[arg(long, env = "GRIDCASE_OPEN311_METRICS_ADDR", default_value = "127.0.0.1:9468")]
    pub metrics_addr: SocketAddr,

    /// Serve no metrics.
    #[arg(long, env = "GRIDCASE_OPEN311_NO_METRICS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_metrics: bool,

    /// How long requests in progress may finish after SIGTERM.
    #[arg(long, env = "GRIDCASE_OPEN311_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    #[arg(long, env = "GRIDCASE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// The defaults, as tests start from.
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["gridcase-open311"])
    }

    pub fn upstream_tls(&self) -> ClientTls {
        ClientTls { ca: self.upstream_tls_ca.clone(), cert: None, key: None }
    }
}
