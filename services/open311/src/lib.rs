//! gridcase open311, as a library: `main` parses the configuration and
//! calls [`run`]; tests build the same [`Application`] on their own
//! listener.
//!
//! The gateway holds no state and no secret. A partner's request carries
//! its API key; the gateway calls intake (`FileCase`, `AddProgress`) and the
//! query service (`ListCases`, `GetCase`, `ListCaseUpdates`) with that key as
//! the bearer, so the same validation, sealing, idempotency and
//! authorisation as every other caller apply: there is no second write
//! path. What it adds is translation: GeoReport v2's parameters in
//! ([`params`]), its documents out ([`document`], [`catalogue`]), and the
//! meaning of gridcase's states in Open311's words ([`status`]).

pub mod catalogue;
pub mod config;
pub mod document;
mod items;
pub mod media;
pub mod metrics;
pub mod params;
pub mod routes;
pub mod status;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gridcase_process::Shutdown;
use gridcase_proto::cases::v1::case_service_client::CaseServiceClient;
use gridcase_proto::intake::v1::intake_service_client::IntakeServiceClient;
use gridcase_proto::query::v1::query_service_client::QueryServiceClient;
use gridcase_reference::Reference;
use http::StatusCode;
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub use config::Config;

/// The services the gateway calls; channels connect on first use.
#[derive(Clone)]
pub struct Upstream {
    pub intake: IntakeServiceClient<Channel>,
    pub cases: CaseServiceClient<Channel>,
    pub query: QueryServiceClient<Channel>,
    intake_channel: Channel,
    query_channel: Channel,
}

impl Upstream {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let tls = config.upstream_tls();
        let intake = gridcase_proto::client::endpoint(&config.intake_url, "--intake-url", &tls)?.connect_lazy();
        let query = gridcase_proto::client::endpoint(&config.query_url, "--query-url", &tls)?.connect_lazy();
        Ok(Self {
            intake: IntakeServiceClient::new(intake.clone()),
            cases: CaseServiceClient::new(intake.clone()),
            query: QueryServiceClient::new(query.clone()),
            intake_channel: intake,
            query_channel: query,
        })
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub upstream: Upstream,
    pub reference: Arc<Reference>,
    pub config: Arc<Config>,
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the services the gateway calls answer their health checks.
async fn readyz(State(state): State<AppState>) -> Response {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let check = |channel: Channel| async move {
        let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
        matches!(answer.map(|a| a.into_inner().status()), Ok(ServingStatus::Serving))
    };
    let (intake, query) =
        futures::join!(check(state.upstream.intake_channel.clone()), check(state.upstream.query_channel.clone()));
    let word = |up: bool| if up { "ok" } else { "unavailable" };
    let status = if intake && query { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, format!("intake {}\nquery {}\n", word(intake), word(query))).into_response()
}

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_request_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/{file}", get(routes::get_top).post(routes::post_top))
        .route("/services/{file}", get(routes::get_service))
        .route("/requests/{file}", get(routes::get_request))
        .route("/tokens/{file}", get(routes::get_token))
        .fallback(|| async { routes::not_found() })
        .route_layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The gateway, built and ready to serve.
pub struct Application {
    config: Config,
    listener: TcpListener,
    reference: Arc<Reference>,
}

impl Application {
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let reference = Reference::load(&config.reference_dir)
            .with_context(|| format!("loading the reference data from {}", config.reference_dir.display()))?;
        if reference.boundaries.is_empty() {
            tracing::warn!("the reference data has no grid shapes: every request must name attribute[grid_code]");
        }
        Ok(Self { config, listener, reference: Arc::new(reference) })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown`, then give requests in progress the grace period.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let upstream = Upstream::new(&self.config)?;
        let grace = self.config.shutdown_grace;
        let state = AppState { upstream, reference: self.reference, config: Arc::new(self.config) };
        let stopping = shutdown.clone();
        let server =
            axum::serve(self.listener, router(state)).with_graceful_shutdown(async move { stopping.requested().await });
        match gridcase_process::shutdown::drain_with_grace(server.into_future(), shutdown, grace).await {
            Some(result) => result.context("serving Open311"),
            None => Ok(()),
        }
    }
}

/// Run the gateway as the binary does: metrics, the listener, until SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    if !config.no_metrics {
        gridcase_process::exporter::install(config.metrics_addr, metrics::register)?;
    }
    let listener = TcpListener::bind(config.addr).await.with_context(|| format!("listening on {}", config.addr))?;
    tracing::info!(addr = %config.addr, intake = %config.intake_url, query = %config.query_url, "Open311 gateway listening: http://{}/services.xml", config.addr);
    Application::build(config, listener).await?.run(Shutdown::on_signals()).await
}
