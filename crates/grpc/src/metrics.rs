//! The gRPC metrics layer in front of every gRPC server: calls by method
//! and status code, latency; every method registered at zero.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub const GRPC_REQUESTS: &str = "gridcase_grpc_requests_total";
pub const GRPC_DURATION: &str = "gridcase_grpc_request_duration_seconds";

/// The methods this process serves: any other path a caller sends is
/// labelled `unknown`, so strangers cannot grow the set of series.
static KNOWN_METHODS: std::sync::OnceLock<std::collections::HashSet<String>> = std::sync::OnceLock::new();

fn method_label(path: &str) -> String {
    match KNOWN_METHODS.get() {
        Some(known) if known.contains(path) => path.to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// Register the gRPC metrics of every method of `services` (full names such
/// as `gridcase.intake.v1.IntakeService`) at zero, with code OK.
pub fn register_grpc(services: &[&str]) {
    let _ = KNOWN_METHODS.set(grpc_methods(services).into_iter().collect());
    metrics::describe_counter!(GRPC_REQUESTS, "gRPC calls answered, by method and status code.");
    metrics::describe_histogram!(
        GRPC_DURATION,
        metrics::Unit::Seconds,
        "gRPC call latency until the response headers, by method."
    );
    for path in grpc_methods(services) {
        metrics::counter!(GRPC_REQUESTS, "method" => path.clone(), "code" => "OK").absolute(0);
        // Registered, a histogram is exported (empty) before its first sample.
        let _ = metrics::histogram!(GRPC_DURATION, "method" => path);
    }
}

/// `/package.Service/Method` of every method of `services`, from the
/// descriptor set the reflection service serves.
fn grpc_methods(services: &[&str]) -> Vec<String> {
    use prost::Message as _;
    let Ok(set) = prost_types::FileDescriptorSet::decode(gridcase_proto::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            if services.contains(&full.as_str()) {
                paths.extend(service.method.iter().map(|m| format!("/{full}/{}", m.name())));
            }
        }
    }
    paths
}

/// The gRPC metrics layer: every call counted by method and status code,
/// its latency to the response headers recorded. The code is the
/// `grpc-status` of a trailers-only response (every refusal and error a
/// handler returns), else OK; a stream that fails after its first message
/// counts as OK here.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            let response = inner.call(request).await;
            let code = match &response {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or("OK", |code| code_name(tonic::Code::from_i32(code))),
                Err(_) => "UNKNOWN",
            };
            metrics::counter!(GRPC_REQUESTS, "method" => method.clone(), "code" => code).increment(1);
            metrics::histogram!(GRPC_DURATION, "method" => method).record(started.elapsed().as_secs_f64());
            response
        })
    }
}

/// The canonical name of a gRPC status code, as in the gRPC specification.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
