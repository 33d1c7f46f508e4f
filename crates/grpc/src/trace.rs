//! A caller's trace context (`traceparent` in the request headers) continued
//! by the span of its call.

struct HttpHeaders<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Make `span` a child of the trace a caller sent in its request headers
/// (`traceparent`), if any.
pub fn continue_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    use opentelemetry::trace::TraceContextExt as _;
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&HttpHeaders(headers)));
    if parent.has_active_span() {
        let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(span, parent);
    }
}
