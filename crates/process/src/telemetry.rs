//! Logs and traces. Logs go to stderr (text or JSON, `RUST_LOG`). Traces are
//! exported over OTLP/gRPC only when an endpoint is configured with the
//! standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, and the others the exporter reads:
//! `OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, …; `OTEL_SERVICE_NAME`
//! overrides the service's name). The W3C trace context travels in the NATS
//! headers of every appended event (`gridcase_eventlog::trace`), so one
//! filing is one trace through intake, the dispatcher and the projection.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How logs are written: `json` (one object per line, for collectors) or
/// `text` (for people at a terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What [`init`] set up; [`Telemetry::shutdown`] flushes spans not yet exported.
#[must_use = "call shutdown() before the process exits, or spans still buffered are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Export what is buffered and stop exporting.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("exporting the last spans failed: {error}");
        }
    }
}

/// Whether the standard variables name an OTLP endpoint for traces.
pub fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()))
}

/// Install the global subscriber: logs, and traces to OTLP when an endpoint
/// is configured. Call it inside the tokio runtime (the exporter's gRPC
/// channel lives there). `RUST_LOG` overrides `default_filter`.
pub fn init(format: LogFormat, default_filter: &str, service: &str) -> Telemetry {
    let provider = if otlp_configured() {
        match otlp_provider(service) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("{service}: traces will not be exported: {error}");
                None
            }
        }
    } else {
        None
    };
    install(format, default_filter, provider)
}

fn otlp_provider(service: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
    // The batch processor on the tokio runtime: the tonic exporter needs its reactor.
    let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build();
    Ok(SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource(service)).build())
}

/// The resource every span of this process carries: the service's name
/// (`OTEL_SERVICE_NAME` first) and version.
pub fn resource(service: &str) -> opentelemetry_sdk::Resource {
    let name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| service.to_owned());
    opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Install the global subscriber with `provider`'s tracer (none: logs
/// only), and the W3C trace-context propagator. Tests pass a provider with
/// an in-memory exporter.
pub fn install(format: LogFormat, default_filter: &str, provider: Option<SdkTracerProvider>) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Spans reach the exporter at info and above whatever RUST_LOG says of the logs.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("gridcase"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let registry = tracing_subscriber::registry().with(traces);
    let result = match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true).with_filter(filter))
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer().with_target(false).with_filter(filter)).try_init(),
    };
    // A second init (tests spawning several services) keeps the first.
    let _ = result;
    Telemetry { provider }
}
