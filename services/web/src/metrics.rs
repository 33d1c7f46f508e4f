//! The console's metrics, on the exporter every service uses: requests by
//! route and status, their duration, live feeds open, events relayed.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub const REQUESTS: &str = "gridcase_web_requests_total";
pub const REQUEST_DURATION: &str = "gridcase_web_request_duration_seconds";
pub const LIVE_CONNECTIONS: &str = "gridcase_web_live_connections";
pub const EVENTS_RELAYED: &str = "gridcase_web_events_relayed_total";

/// Register every metric at zero, so the first scrape shows them all.
pub fn register() {
    metrics::describe_counter!(REQUESTS, "HTTP requests answered, by route and status");
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to answer a request (a live feed: until its headers)"
    );
    metrics::describe_gauge!(LIVE_CONNECTIONS, "Live feeds (board connections) open now");
    metrics::describe_counter!(EVENTS_RELAYED, "Case changes relayed to live feeds");
    metrics::gauge!(LIVE_CONNECTIONS).set(0.0);
    metrics::counter!(EVENTS_RELAYED).absolute(0);
}

/// Count and time every request by its route (the pattern, never the ids in it).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(REQUEST_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    response
}
