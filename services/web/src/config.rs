use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gridcase_process::{LogFormat, parse_duration};
use gridcase_proto::client::ClientTls;

use crate::i18n::Lang;

/// gridcase web: the command centre's console. A live board, the overdue
/// desk, case pages and ledgers, served over HTTP. It keeps no state of its
/// own: every page and action calls the intake and query services as the
/// signed-in user, whose token rides in the session cookie, so every
/// refusal, mask and scope comes from those services.
///
/// Every flag can also be set by the environment variable shown beside it.
/// Defaults suit a single machine running `deploy/up.sh`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "gridcase-web", version, about, long_about = None)]
pub struct Config {
    /// Address the console listens on (HTTP).
    #[arg(long, env = "GRIDCASE_WEB_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// The intake service (CaseService, AuthService).
    #[arg(long, env = "GRIDCASE_WEB_INTAKE_URL", default_value = "http://127.0.0.1:50051")]
    pub intake_url: String,

    /// The query service (read models, the live watch).
    #[arg(long, env = "GRIDCASE_WEB_QUERY_URL", default_value = "http://127.0.0.1:50052")]
    pub query_url: String,

    /// CA certificate (PEM) the services' TLS certificates are checked
    /// against; set, the console speaks TLS to them (give https:// URLs).
    #[arg(long, env = "GRIDCASE_WEB_UPSTREAM_TLS_CA", value_name = "FILE")]
    pub upstream_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for services that require one.
    #[arg(long, env = "GRIDCASE_WEB_UPSTREAM_TLS_CERT", requires = "upstream_tls_key", value_name = "FILE")]
    pub upstream_tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = "GRIDCASE_WEB_UPSTREAM_TLS_KEY", requires = "upstream_tls_cert", value_name = "FILE")]
    pub upstream_tls_key: Option<PathBuf>,

    /// Certificate chain (PEM) the console presents. Set (with --tls-key),
    /// the console speaks only HTTPS, marks its session cookie Secure and
    /// tells browsers to keep to HTTPS (Strict-Transport-Security).
    #[arg(long, env = "GRIDCASE_WEB_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM).
    #[arg(long, env = "GRIDCASE_WEB_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Mark the session cookie Secure (sent over HTTPS only). Set it
    /// whenever browsers reach the console over TLS through a
    /// TLS-terminating proxy in front of it (with --tls-cert it is on).
    #[arg(long, env = "GRIDCASE_WEB_SECURE_COOKIES", value_parser = clap::builder::BoolishValueParser::new())]
    pub secure_cookies: bool,

    /// The identity provider (OpenID Connect issuer URL) that issues
    /// gridcase's tokens. Set, the sign-in page offers signing in there
    /// (authorization code with PKCE); the services must trust its signing
    /// key (GRIDCASE_AUTH_KEYS) and issuer (GRIDCASE_AUTH_ISSUER).
    #[arg(long, env = "GRIDCASE_WEB_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,

    /// The console's client id at the identity provider.
    #[arg(long, env = "GRIDCASE_WEB_OIDC_CLIENT_ID", default_value = "gridcase-console")]
    pub oidc_client_id: String,

    /// A file holding the client secret, for a provider that treats the
    /// console as a confidential client (PKCE is used either way).
    #[arg(long, env = "GRIDCASE_WEB_OIDC_CLIENT_SECRET_FILE", value_name = "FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// Scopes asked of the provider (openid is needed for the ID token).
    #[arg(long, env = "GRIDCASE_WEB_OIDC_SCOPES", value_delimiter = ',', default_value = "openid,gridcase")]
    pub oidc_scopes: Vec<String>,

    /// The address browsers reach the console at, for the provider to send
    /// them back to (`<URL>/signin/oidc/callback`, registered at the
    /// provider). Default: http(s)://<--addr>.
    #[arg(long, env = "GRIDCASE_WEB_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// The interface language until a user picks one (zh or en).
    #[arg(long, env = "GRIDCASE_WEB_LANGUAGE", default_value = "zh", value_parser = Lang::parse_flag)]
    pub language: Lang,

    /// Address of the Prometheus metrics endpoint (/metrics).
    #[arg(long, env = "GRIDCASE_WEB_METRICS_ADDR", default_value = "127.0.0.1:9467")]
    pub metrics_addr: SocketAddr,

    /// Serve no metrics endpoint.
    #[arg(long, env = "GRIDCASE_WEB_NO_METRICS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_metrics: bool,

    /// How long a graceful stop waits for requests in progress; live
    /// streams end at once (browsers reconnect and resume).
    #[arg(long, env = "GRIDCASE_WEB_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Log format: text for people, json for collectors.
    #[arg(long, env = "GRIDCASE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// The configuration with every default, for tests and embedding.
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["gridcase-web"])
    }

    /// Whether the console serves HTTPS itself.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// The base URL browsers reach the console at: --public-url, else the
    /// address it listens on (`listening`, the port a listener on port 0 got).
    pub fn public_base(&self, listening: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{}://{listening}", if self.tls() { "https" } else { "http" }),
        }
    }

    /// The OpenID Connect settings, when a provider is configured.
    pub fn oidc(&self, listening: SocketAddr) -> anyhow::Result<Option<crate::oidc::OidcSettings>> {
        let Some(issuer) = &self.oidc_issuer else { return Ok(None) };
        let client_secret = match &self.oidc_client_secret_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading the OIDC client secret {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        Ok(Some(crate::oidc::OidcSettings {
            issuer: issuer.clone(),
            client_id: self.oidc_client_id.clone(),
            client_secret,
            redirect_uri: format!("{}/signin/oidc/callback", self.public_base(listening)),
            scopes: self.oidc_scopes.clone(),
        }))
    }

    /// Whether the session cookie is marked Secure.
    pub fn cookies_secure(&self) -> bool {
        self.secure_cookies || self.tls()
    }

    pub fn upstream_tls(&self) -> ClientTls {
        ClientTls {
            ca: self.upstream_tls_ca.clone(),
            cert: self.upstream_tls_cert.clone(),
            key: self.upstream_tls_key.clone(),
        }
    }
}
