//! The shell: connect, migrate, project continuously, serve queries, drain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gridcase_eventlog::EventLog;
use gridcase_grpc::{Authenticator, GrpcServer};
use gridcase_process::{Shutdown, SystemTimeSource, TimeSource};
use gridcase_proto::query::v1::query_service_server::QueryServiceServer;
use gridcase_reference::Reference;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::config::{Cli, Config, Mode};
use crate::query::QueryApi;
use crate::{projector, rebuild, store};

pub struct Application {
    config: Config,
    listener: TcpListener,
    client: async_nats::Client,
    log: EventLog,
    pool: PgPool,
    query: QueryApi,
    auth: Authenticator,
}

impl Application {
    /// Tokens are checked against the system clock; `clock` is the
    /// business clock (what "overdue now" means).
    pub async fn build(config: Config, listener: TcpListener, clock: Arc<dyn TimeSource>) -> anyhow::Result<Self> {
        let auth = config.auth.load(Arc::new(SystemTimeSource))?;
        let (policy, calendar) = config.rules.load()?;
        let reference = Reference::load(&config.reference_dir).context("loading the reference data")?;
        let pool = store::connect(&config.database_url, &config.schema, config.database_connections).await?;
        store::migrate(&pool, &config.schema).await?;
        let shapes = store::load_shapes(&pool, &reference).await?;
        info!(shapes, sha256 = reference.boundaries_sha256.as_deref().unwrap_or("none"), "grid boundaries loaded");
        let (client, log) = config.common.open_log("gridcase-projection").await?;
        let keys = config.keys.open(&log, true).await?;
        let query = QueryApi {
            pool: pool.clone(),
            log: log.clone(),
            keys,
            policy: Arc::new(policy),
            calendar: Arc::new(calendar),
            clock,
            shutdown: None,
        };
        Ok(Self { config, listener, client, log, pool, query, auth })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        if !self.config.no_metrics {
            gridcase_process::exporter::install(self.config.metrics_addr, || {
                gridcase_resources::register_metrics();
                gridcase_grpc::metrics::register_grpc(&[
                    "gridcase.query.v1.QueryService",
                    "gridcase.auth.v1.AuthService",
                ]);
                crate::metrics::register();
                crate::audit::register_metrics();
            })?;
            gridcase_resources::nats::watch_nats(self.client.clone(), shutdown.clone().requested());
            // Open and overdue cases per township, every --cases-metrics-interval.
            let (pool, clock, stop) = (self.pool.clone(), self.query.clock.clone(), shutdown.clone());
            let every = self.config.cases_metrics_interval;
            tokio::spawn(async move {
                let mut seen = std::collections::BTreeSet::new();
                loop {
                    if let Err(error) = crate::metrics::refresh_cases(&pool, clock.now(), &mut seen).await {
                        warn!(error = format!("{error:#}"), "counting open and overdue cases for the metrics failed");
                    }
                    tokio::select! {
                        _ = stop.clone().requested() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            });
        }
        // Where the read models stand against the log's end, every second:
        // the lag metrics and the metadata of every answer (crate::freshness).
        let freshness = crate::freshness::Freshness::default();
        tokio::spawn(crate::freshness::watch(
            self.pool.clone(),
            self.log.clone(),
            self.query.clock.clone(),
            freshness.clone(),
            shutdown.clone(),
        ));
        let server = GrpcServer::new(self.auth, self.config.tls.config()?, &self.config.grpc_web)?;
        server.health().set_serving::<QueryServiceServer<QueryApi>>().await;
        // The case stream's integrity: checked on an interval; while it does
        // not keep its history nothing is projected and health says NOT_SERVING
        // (queries are still answered, from what was projected).
        let history = gridcase_resources::nats::watch_history(
            &self.log,
            Vec::new(),
            self.config.common.integrity_interval,
            shutdown.clone().requested(),
        );
        // Whether the log still holds what the read models were built from.
        let audit = (self.config.history_audit_window > 0).then(|| {
            tokio::spawn(crate::audit::run(
                self.pool.clone(),
                self.log.clone(),
                self.config.history_audit_interval,
                self.config.history_audit_window,
                self.config.history_audit_confirm,
                shutdown.clone(),
            ))
        });
        let (health, mut broken, stop) = (server.health(), self.log.integrity().subscribe(), shutdown.clone());
        let health_task = tokio::spawn(async move {
            loop {
                let status = if *broken.borrow_and_update() {
                    tonic_health::ServingStatus::NotServing
                } else {
                    tonic_health::ServingStatus::Serving
                };
                health.set_service_status("", status).await;
                health.set_service_status("gridcase.query.v1.QueryService", status).await;
                tokio::select! {
                    _ = stop.clone().requested() => return,
                    changed = broken.changed() => if changed.is_err() { return },
                }
            }
        });

        // The projector runs until shutdown, in one process at a time: this
        // one writes while it holds the writer lock, otherwise it stands by
        // (serving queries all the same). A failure (database or NATS away)
        // gives the lock up and starts again from the stored position.
        let log = self.log.clone();
        let (url, schema) = (self.config.database_url.clone(), self.config.schema.clone());
        let (batch, poll) = (self.config.batch_size, self.config.writer_poll);
        let projector_shutdown = shutdown.clone();
        let projector = tokio::spawn(async move {
            loop {
                let stop = projector_shutdown.clone().requested();
                let failure = match store::Writer::acquire(&url, &schema, poll, stop).await {
                    Ok(None) => return,
                    Ok(Some(mut writer)) => {
                        info!(schema, "this process now writes the read models");
                        crate::metrics::writer(true);
                        let result =
                            projector::run(writer.connection(), &log, batch, projector_shutdown.clone(), false).await;
                        crate::metrics::writer(false);
                        writer.release().await;
                        match result {
                            Ok(position) => {
                                info!(position, "projector stopped");
                                return;
                            }
                            Err(error) => error,
                        }
                    }
                    Err(error) => error,
                };
                error!(error = format!("{failure:#}"), "projector failed; retrying from the stored position");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = projector_shutdown.clone().requested() => return,
                }
            }
        });

        let addr = self.listener.local_addr()?;
        info!(%addr, schema = %self.config.schema, "query service listening");
        let result = server
            .with(|router| {
                let query = QueryApi { shutdown: Some(shutdown.clone()), ..self.query };
                let clock = query.clock.clone();
                let pool = query.pool.clone();
                router.add_service(crate::freshness::Fresh::new(QueryServiceServer::new(query), freshness, clock, pool))
            })
            .serve(self.listener, shutdown, self.config.common.shutdown_grace)
            .await;
        let _ = projector.await;
        history.abort();
        if let Some(audit) = audit {
            audit.abort();
        }
        health_task.abort();
        if let Err(error) = self.client.drain().await {
            warn!(%error, "draining the NATS connection failed");
        }
        self.pool.close().await;
        result
    }
}

/// Run the mode the command line asked for, with the system clock.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.mode.unwrap_or(Mode::Serve) {
        Mode::Serve => {
            let listener = TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
            let app = Application::build(config, listener, Arc::new(SystemTimeSource)).await?;
            app.run(Shutdown::on_signals()).await
        }
        Mode::Migrate => {
            let pool = store::connect(&config.database_url, &config.schema, 1).await?;
            store::migrate(&pool, &config.schema).await?;
            info!(schema = %config.schema, "migrations applied");
            Ok(())
        }
        Mode::Rebuild => {
            // Progress in the metrics too, when the serving process does not hold the address.
            if !config.no_metrics {
                match gridcase_process::exporter::install(config.metrics_addr, || {
                    gridcase_resources::register_metrics();
                    crate::metrics::register();
                }) {
                    Ok(()) => {}
                    Err(error) => {
                        warn!(error = format!("{error:#}"), "the rebuild reports its progress in the log only")
                    }
                }
            }
            let (client, log) = config.common.open_log("gridcase-projection-rebuild").await?;
            let target = format!("{}_rebuild", config.schema);
            let reference = Reference::load(&config.reference_dir).context("loading the reference data")?;
            let built = rebuild::build(&config.database_url, &target, &log, &rebuild::Options::default()).await?;
            store::load_shapes(&built.pool, &reference).await?;
            let position = built.position;
            built.pool.close().await;
            rebuild::swap(&config.database_url, &target, &config.schema).await?;
            println!("rebuilt the read models up to stream sequence {position} and swapped them in");
            client.drain().await.ok();
            Ok(())
        }
    }
}
