//! The Prometheus exporter, the same way in every service: one recorder per
//! process, OpenMetrics/Prometheus text on `/metrics`. Every metric a
//! service documents is registered at start-up, at zero, so the first
//! scrape already shows it.

use std::net::SocketAddr;

use anyhow::Context as _;

/// Latency buckets (seconds): 1 ms to 30 s.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Buckets of the histograms that count events (names ending in `_events`:
/// events per write, per projection transaction): 1 to 1,000.
const COUNT_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// Serve `/metrics` on `addr` (this process's one recorder): register the
/// caller's metrics (`register`), then answer scrapes, so the first scrape
/// already shows every metric. Call it within the Tokio runtime.
pub fn install(addr: SocketAddr, register: impl FnOnce()) -> anyhow::Result<()> {
    let (recorder, exporter) = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&LATENCY_BUCKETS)
        .context("latency buckets")?
        .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("_events".into()), &COUNT_BUCKETS)
        .context("count buckets")?
        .build()
        .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
    metrics::set_global_recorder(recorder).context("a metrics recorder is already installed")?;
    register();
    tokio::spawn(async move {
        if let Err(error) = exporter.await {
            tracing::error!(?error, "the metrics endpoint stopped");
        }
    });
    tracing::info!(%addr, "metrics endpoint listening");
    Ok(())
}
