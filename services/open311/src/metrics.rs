//! The gateway's metrics, on the exporter every service uses. Nothing a
//! resident sent is ever a label: routes are patterns, never ids.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub const REQUESTS: &str = "gridcase_open311_requests_total";
pub const REQUEST_DURATION: &str = "gridcase_open311_request_duration_seconds";
pub const REFUSED: &str = "gridcase_open311_refused_total";
pub const FILED: &str = "gridcase_open311_filed_total";
pub const COMMENTS: &str = "gridcase_open311_comments_total";
pub const MEDIA_URLS_IGNORED: &str = "gridcase_open311_media_urls_ignored_total";

/// Register every metric at zero, so the first scrape shows them all.
pub fn register() {
    metrics::describe_counter!(REQUESTS, "HTTP requests answered, by method, route and status");
    metrics::describe_histogram!(REQUEST_DURATION, metrics::Unit::Seconds, "Time to answer a request");
    metrics::describe_counter!(REFUSED, "Requests answered with a GeoReport error document, by HTTP status");
    metrics::describe_counter!(FILED, "Service requests filed (replayed: a retry answered with the same id)");
    metrics::describe_counter!(COMMENTS, "Residents' comments recorded as notes (replayed: a retried update)");
    metrics::describe_counter!(MEDIA_URLS_IGNORED, "Requests whose media_url was not fetched (fetching is off)");
    metrics::counter!(FILED, "replayed" => "false").absolute(0);
    metrics::counter!(COMMENTS, "replayed" => "false").absolute(0);
    metrics::counter!(MEDIA_URLS_IGNORED).absolute(0);
}

/// Count and time every request by its route.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(REQUEST_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    response
}
