//! gridcase intake, as a library: `main` only parses the configuration and
//! calls [`run`]; tests build the same [`Application`] with their own
//! listener, NATS server, clock and shutdown signal.

mod cases;
pub mod config;
mod download;
mod history;
mod merge;
mod personal;
mod reference;
pub mod requests;
mod service;
mod sync;
mod uploads;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gridcase_eventlog::AttachmentStore;
use gridcase_eventlog::store::CaseStore;
use gridcase_grpc::{Authenticator, GrpcServer};
use gridcase_process::{Shutdown, SystemTimeSource, TimeSource};
use gridcase_proto::admin::v1::reference_service_server::ReferenceServiceServer;
use gridcase_proto::cases::v1::case_service_server::CaseServiceServer;
use gridcase_proto::intake::v1::intake_service_server::IntakeServiceServer;
use gridcase_reference::Reference;
use jiff::SignedDuration;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tracing::{info, warn};

pub use cases::{CaseApi, command_event_id};
pub use config::Config;
pub use service::IntakeApi;
use validate::Limits;

/// The intake service, built and ready to serve.
pub struct Application {
    config: Config,
    listener: TcpListener,
    api: IntakeApi,
    cases: Arc<CaseApi>,
    admin: reference::ReferenceApi,
    auth: Authenticator,
    client: async_nats::Client,
}

impl Application {
    /// Load the reference data, connect to NATS and open the event log.
    /// Tokens are checked against the system clock; `clock` is the
    /// business clock (deadlines, reported_at).
    pub async fn build(config: Config, listener: TcpListener, clock: Arc<dyn TimeSource>) -> anyhow::Result<Self> {
        let auth = config.auth.load(Arc::new(SystemTimeSource))?;
        let reference = Reference::load(&config.reference_dir).context("loading the reference data")?;
        info!(
            regions = reference.registry.len(),
            categories = reference.taxonomy.len(),
            regions_sha256 = %reference.regions_sha256,
            categories_sha256 = %reference.categories_sha256,
            dir = %config.reference_dir.display(),
            "reference data loaded"
        );
        let (client, log) = config.common.open_log("gridcase-intake").await?;
        let attachments = AttachmentStore::open(log.context(), &config.attachment_stream, log.settings().replicas)
            .await
            .context("opening the attachment stream")?;
        let keys = config.keys.open(&log, true).await?;
        let limits = Limits {
            max_attachment_bytes: config.max_attachment_bytes,
            max_clock_skew: SignedDuration::try_from(config.max_clock_skew).context("max clock skew")?,
            max_report_age: SignedDuration::try_from(config.max_report_age).context("max report age")?,
            grid_tolerance_m: config.grid_tolerance_m,
        };
        let (policy, calendar) = config.rules.load()?;
        let store = Arc::new(CaseStore::new(log));
        let reference = Arc::new(reference);
        let cases = CaseApi {
            store: store.clone(),
            attachments: attachments.clone(),
            keys: keys.clone(),
            policy: Arc::new(policy),
            reference: reference.clone(),
            calendar: Arc::new(calendar),
            limits: limits.clone(),
            clock: clock.clone(),
        };
        let admin = reference::ReferenceApi { reference: reference.clone() };
        let uploads = gridcase_eventlog::UploadStore::open(
            store.log().context(),
            &config.upload_stream,
            store.log().settings().replicas,
            // Behind the sweep: nothing outlives twice an upload's time.
            config.upload_ttl * 2,
        )
        .await
        .context("opening the upload stream")?;
        let uploads = Arc::new(uploads::Uploads::new(
            uploads,
            attachments.clone(),
            uploads::UploadLimits {
                max_bytes: config.max_attachment_bytes,
                max_part_bytes: config.upload_max_part_bytes as usize,
                ttl: SignedDuration::try_from(config.upload_ttl).context("upload ttl")?,
                open_per_person: config.upload_open_per_person,
                bytes_per_person: config.upload_bytes_per_person,
                total_bytes: config.upload_total_bytes,
                parts_in_flight: config.upload_parts_in_flight,
            },
            clock.clone(),
        ));
        let cases = Arc::new(cases);
        let api = IntakeApi {
            store,
            attachments,
            keys,
            reference,
            limits,
            clock,
            cases: cases.clone(),
            uploads,
            sync_max_items: config.sync_max_items,
        };
        Ok(Self { config, listener, api, cases, admin, auth, client })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` trips, then drain in-flight calls for at most
    /// the configured grace period.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        if !self.config.no_metrics {
            gridcase_process::exporter::install(self.config.metrics_addr, || {
                gridcase_resources::register_metrics();
                gridcase_grpc::metrics::register_grpc(&SERVED)
            })?;
            gridcase_resources::nats::watch_nats(self.client.clone(), shutdown.clone().requested());
        }
        let server = GrpcServer::new(self.auth, self.config.tls.config()?, &self.config.grpc_web)?;
        let health = server.health();
        health.set_serving::<IntakeServiceServer<IntakeApi>>().await;

        // Health follows the NATS connection: NOT_SERVING while it is down.
        // And the log's integrity: NOT_SERVING while writes are stopped.
        let replicas = usize::from(self.config.common.stream_replicas);
        let history = gridcase_resources::nats::watch_history(
            self.api.store.log(),
            vec![
                gridcase_eventlog::attachments::watched(&self.config.attachment_stream, replicas),
                gridcase_eventlog::keys::watched(&self.config.keys.key_bucket, replicas),
            ],
            self.config.common.integrity_interval,
            shutdown.clone().requested(),
        );
        let integrity = self.api.store.log().integrity().clone();
        let watch_client = self.client.clone();
        let watch_shutdown = shutdown.clone();
        let watcher = tokio::spawn(async move {
            let mut last = None;
            loop {
                let connected = watch_client.connection_state() == async_nats::connection::State::Connected;
                let serving = connected && integrity.writable().is_ok();
                if last != Some(serving) {
                    let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
                    health.set_service_status("", status).await;
                    health.set_service_status("gridcase.intake.v1.IntakeService", status).await;
                    health.set_service_status("gridcase.cases.v1.CaseService", status).await;
                    if !connected {
                        warn!("NATS connection lost: reporting NOT_SERVING");
                    }
                    last = Some(serving);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = watch_shutdown.clone().requested() => break,
                }
            }
        });

        let sweeper = tokio::spawn(
            self.api.uploads.clone().sweep(self.config.upload_sweep_interval, shutdown.clone().requested()),
        );

        let addr = self.listener.local_addr()?;
        info!(%addr, nats = %self.config.common.nats_url, "intake listening");
        let result = server
            .with(|router| {
                router
                    .add_service(IntakeServiceServer::new(self.api))
                    .add_service(CaseServiceServer::from_arc(self.cases))
                    .add_service(ReferenceServiceServer::new(self.admin))
            })
            .serve(self.listener, shutdown, self.config.common.shutdown_grace)
            .await;
        watcher.abort();
        sweeper.abort();
        history.abort();
        if let Err(error) = self.client.drain().await {
            warn!(%error, "draining the NATS connection failed");
        }
        info!("intake stopped");
        result
    }
}

/// The gRPC services intake serves (their methods' metrics start at zero).
const SERVED: [&str; 4] = [
    "gridcase.intake.v1.IntakeService",
    "gridcase.cases.v1.CaseService",
    "gridcase.auth.v1.AuthService",
    "gridcase.admin.v1.ReferenceService",
];

/// Build and run with the system clock, stopping on SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
    let app = Application::build(config, listener, Arc::new(SystemTimeSource)).await?;
    app.run(Shutdown::on_signals()).await
}
