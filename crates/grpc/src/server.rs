//! The one gRPC server skeleton every gridcase service uses: the gRPC
//! metrics and authentication layers in front of everything, a span per call, health,
//! reflection (v1 and v1alpha, so older tools such as grpcurl builds before
//! v1 support work too), `AuthService`, TCP_NODELAY on every connection, and a
//! drain of in-flight calls within the grace period on shutdown.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic::transport::server::Router;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;
use tower_layer::{Identity, Stack};

use crate::auth::{AuthApi, AuthLayer, Authenticator};
use crate::metrics::GrpcMetricsLayer;
use gridcase_process::shutdown::{Shutdown, drain_with_grace};

/// The router a service adds its own services to.
pub type ServiceRouter = Router<Stack<AuthLayer, Stack<GrpcMetricsLayer, Identity>>>;

/// A server with the shared services in place.
pub struct GrpcServer {
    router: ServiceRouter,
    health: HealthReporter,
}

impl GrpcServer {
    /// Health, reflection and `AuthService` behind the authentication
    /// layer; over TLS when `tls` is given.
    pub fn new(auth: Authenticator, tls: Option<ServerTlsConfig>) -> anyhow::Result<Self> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(gridcase_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1().context("building the reflection service (v1)")?;
        let reflection_v1alpha = reflection().build_v1alpha().context("building the reflection service (v1alpha)")?;
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).context("the gRPC listener's TLS configuration")?;
        }
        let router = builder
            .trace_fn(|request| {
                let span = tracing::info_span!("grpc", path = %request.uri().path());
                crate::trace::continue_from_http(&span, request.headers());
                span
            })
            // Outermost, so refusals by the authentication layer are counted too.
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
