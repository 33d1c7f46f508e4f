//! The cost of observability: the intake and dispatch benchmarks run twice,
//! each in a process of its own, with traces off and with every span
//! exported over OTLP/gRPC to a collector in this process (which counts
//! what it receives), in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};

/// A collector that accepts spans and counts them.
#[derive(Default, Clone)]
struct Counting {
    spans: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Counting {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

pub async fn run(cases: usize, concurrency: usize, dispatch_cases: usize, rate: f64) -> anyhow::Result<()> {
    let collector = Counting::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let server = tokio::spawn(server);
    println!("OTLP collector (counts spans) on {endpoint}");

    let me = std::env::current_exe().context("the benchmark's own path")?;
    let benches: [(&str, Vec<String>); 2] = [
        (
            "intake",
            vec!["intake".into(), "--cases".into(), cases.to_string(), "--concurrency".into(), concurrency.to_string()],
        ),
        (
            "dispatch",
            vec!["dispatch".into(), "--cases".into(), dispatch_cases.to_string(), "--rate".into(), rate.to_string()],
        ),
    ];
    for (name, args) in benches {
        for traced in [false, true] {
            let before = collector.spans.load(Ordering::Relaxed);
            let mut command = tokio::process::Command::new(&me);
            command
                .args(&args)
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
            if traced {
                command.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
            }
            let output = command.output().await.with_context(|| format!("running the {name} benchmark"))?;
            println!("\n=== {name}, traces {} ===", if traced { "exported to the collector" } else { "off" });
            print!("{}", String::from_utf8_lossy(&output.stdout));
            if !output.status.success() {
                eprint!("{}", String::from_utf8_lossy(&output.stderr));
                anyhow::bail!("the {name} benchmark failed");
            }
            let spans = collector.spans.load(Ordering::Relaxed) - before;
            println!("spans received by the collector: {spans}");
        }
    }
    server.abort();
    Ok(())
}
