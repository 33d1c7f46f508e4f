//! The one gRPC server skeleton every gridcase service uses: the gRPC
//! metrics and authentication layers in front of everything, a span per call, health,
//! reflection (v1 and v1alpha, so older tools such as grpcurl builds before
//! v1 support work too), `AuthService`, TCP_NODELAY on every connection, and a
//! drain of in-flight calls within the grace period on shutdown.

use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;
use tower_layer::{Identity, Stack};

use crate::auth::{AuthApi, AuthLayer, Authenticator};
use crate::metrics::GrpcMetricsLayer;
use crate::shutdown::{Shutdown, drain_with_grace};

/// The router a service adds its own services to.
pub type ServiceRouter = Router<Stack<AuthLayer, Stack<GrpcMetricsLayer, Identity>>>;

/// A server with the shared services in place.
pub struct GrpcServer {
    router: ServiceRouter,
    health: HealthReporter,
}

impl GrpcServer {
    /// Health, reflection and `AuthService` behind the authentication layer.
    pub fn new(auth: Authenticator) -> anyhow::Result<Self> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(gridcase_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1().context("building the reflection service (v1)")?;
        let reflection_v1alpha = reflection().build_v1alpha().context("building the reflection service (v1alpha)")?;
        let router = Server::builder()
            .trace_fn(|request| {
                let span = tracing::info_span!("grpc", path = %request.uri().path());
                crate::telemetry::continue_from_http(&span, request.headers());
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
            self.router.serve_with_incoming_shutdown(crate::grpc::incoming(listener), shutdown.clone().requested());
        match drain_with_grace(server, shutdown, grace).await {
            Some(served) => served.context("serving gRPC"),
            None => {
                tracing::warn!(grace = ?grace, "stopped before every call finished");
                Ok(())
            }
        }
    }
}
