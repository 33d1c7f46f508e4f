//! The one gRPC server skeleton every gridcase service uses: the gRPC
//! metrics and authentication layers in front of everything, a span per call, health,
//! reflection (v1 and v1alpha, so older tools such as grpcurl builds before
//! v1 support work too), `AuthService`, TCP_NODELAY on every connection, and a
//! drain of in-flight calls within the grace period on shutdown. gRPC-Web
//! (browsers, WeChat mini programs) on the same listener, over HTTP/1.1 or
//! HTTP/2, translated by `tonic-web` in front of everything; cross-origin
//! callers only from the origins configured (none by default).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic::transport::server::Router;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::{Identity, Stack};

use crate::auth::{AuthApi, AuthLayer, Authenticator};
use crate::metrics::GrpcMetricsLayer;
use gridcase_process::shutdown::{Shutdown, drain_with_grace};

/// The router a service adds its own services to.
pub type ServiceRouter =
    Router<Stack<AuthLayer, Stack<GrpcMetricsLayer, Stack<tonic_web::GrpcWebLayer, Stack<CorsLayer, Identity>>>>>;

/// gRPC-Web on a service's gRPC listener: which web origins may call it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GrpcWebArgs {
    /// Web origins (scheme://host[:port], comma-separated) whose pages may
    /// call this listener with gRPC-Web from a browser or a WeChat mini
    /// program (CORS). Empty (the default): gRPC-Web is served to callers
    /// that need no CORS (same origin, native clients), and browsers refuse
    /// cross-origin calls.
    #[arg(long, env = "GRIDCASE_GRPC_WEB_ORIGINS", value_delimiter = ',', value_name = "ORIGIN")]
    pub grpc_web_origins: Vec<String>,
}

impl GrpcWebArgs {
    /// The CORS layer for the configured origins.
    pub fn cors(&self) -> anyhow::Result<CorsLayer> {
        use http::{HeaderName, HeaderValue, Method};
        let origins = self
            .grpc_web_origins
            .iter()
            .map(|origin| origin.trim())
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                let url = origin.trim_end_matches('/');
                anyhow::ensure!(
                    (url.starts_with("https://") || url.starts_with("http://"))
                        && !url["https://".len()..].contains('/'),
                    "--grpc-web-origins: {origin:?} is not an origin (scheme://host[:port])"
                );
                HeaderValue::from_str(url).with_context(|| format!("--grpc-web-origins: {origin:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !origins.is_empty() {
            tracing::info!(origins = ?self.grpc_web_origins, "gRPC-Web open to these web origins");
        }
        let headers = ["authorization", "content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "traceparent"];
        let exposed = ["grpc-status", "grpc-message", "grpc-status-details-bin"];
        Ok(CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::POST])
            .allow_headers(headers.map(HeaderName::from_static))
            .expose_headers(exposed.map(HeaderName::from_static))
            .max_age(Duration::from_secs(24 * 3600)))
    }
}

/// A server with the shared services in place.
pub struct GrpcServer {
    router: ServiceRouter,
    health: HealthReporter,
}

impl GrpcServer {
    /// Health, reflection and `AuthService` behind the authentication
    /// layer; over TLS when `tls` is given; gRPC-Web for `web`'s origins.
    pub fn new(auth: Authenticator, tls: Option<ServerTlsConfig>, web: &GrpcWebArgs) -> anyhow::Result<Self> {
        let cors = web.cors()?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(gridcase_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1().context("building the reflection service (v1)")?;
        let reflection_v1alpha = reflection().build_v1alpha().context("building the reflection service (v1alpha)")?;
        // HTTP/1.1 too: browsers speak gRPC-Web over it.
        let mut builder = Server::builder().accept_http1(true);
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).context("the gRPC listener's TLS configuration")?;
        }
        let router = builder
            .trace_fn(|request| {
                let span = tracing::info_span!("grpc", path = %request.uri().path());
                crate::trace::continue_from_http(&span, request.headers());
                span
            })
            // Outermost: a preflight is answered before anything else, and a
            // gRPC-Web call is plain gRPC from here on.
            .layer(cors)
            .layer(tonic_web::GrpcWebLayer::new())
            // Before authentication, so its refusals are counted too.
            .layer(GrpcMetricsLayer)
            .layer(AuthLayer::new(auth.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(AuthApi::new(auth).into_server());
        Ok(Self { router, health })
    }

    /// The health reporter: set each service's status through it.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Add the service's own gRPC services.
    pub fn with(mut self, add: impl FnOnce(ServiceRouter) -> ServiceRouter) -> Self {
        self.router = add(self.router);
        self
    }

    /// Serve on `listener` until `shutdown` trips, then let calls in flight
    /// finish for at most `grace`.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown, grace: Duration) -> anyhow::Result<()> {
        let server =
            self.router.serve_with_incoming_shutdown(crate::status::incoming(listener), shutdown.clone().requested());
        match drain_with_grace(server, shutdown, grace).await {
            Some(served) => served.context("serving gRPC"),
            None => {
                tracing::warn!(grace = ?grace, "stopped before every call finished");
                Ok(())
            }
        }
    }
}

/// TLS on a service's gRPC listener (rustls). Without a certificate the
/// listener speaks plain text, which suits loopback only (`deploy/up.sh`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// Certificate chain (PEM) the gRPC listener presents. Set (with
    /// --tls-key), the listener speaks only TLS: plain-text connections are refused.
    #[arg(long, env = "GRIDCASE_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM).
    #[arg(long, env = "GRIDCASE_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// CA certificate (PEM) of client certificates. Set, every caller must
    /// present a certificate it signed (mutual TLS, for service-to-service
    /// calls); bearer tokens are checked as before.
    #[arg(long, env = "GRIDCASE_TLS_CLIENT_CA", requires = "tls_cert", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// The listener's TLS configuration, if a certificate is set.
    pub fn config(&self) -> anyhow::Result<Option<ServerTlsConfig>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).with_context(|| format!("reading the TLS {what} {}", path.display()))
        };
        let mut config =
            ServerTlsConfig::new().identity(TlsIdentity::from_pem(read(cert, "certificate")?, read(key, "key")?));
        if let Some(ca) = &self.tls_client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
        }
        tracing::info!(cert = %cert.display(), client_certificates = self.tls_client_ca.is_some(), "gRPC over TLS");
        Ok(Some(config))
    }
}
