//! The W3C trace context (`traceparent`, `tracestate`) in the NATS headers
//! of every appended event, beside the CloudEvents attributes: whoever reads
//! the event continues the trace of whoever wrote it. Without a tracer
//! (no OTLP endpoint configured) nothing is written and nothing read.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct Writer<'a>(&'a mut HeaderMap);

impl Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct Reader<'a>(&'a HeaderMap);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// Write the current span's trace context into `headers`.
pub fn inject(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Writer(headers))
    });
}

/// The trace context a stored message carries (empty when none).
pub fn extract(headers: Option<&HeaderMap>) -> opentelemetry::Context {
    match headers {
        Some(headers) => {
            opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&Reader(headers)))
        }
        None => opentelemetry::Context::new(),
    }
}

/// Make `span` a child of the trace `headers` carry.
pub fn continue_trace(span: &tracing::Span, headers: Option<&HeaderMap>) {
    let parent = extract(headers);
    if opentelemetry::trace::TraceContextExt::has_active_span(&parent) {
        let _ = span.set_parent(parent);
    }
}
