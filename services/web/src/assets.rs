//! The console's stylesheet and script, compiled into the binary: the page
//! needs nothing from any other server (no CDN, no font or tile server).

use axum::response::IntoResponse;
use http::header;

pub const CSS_PATH: &str = "/assets/console.css";
pub const JS_PATH: &str = "/assets/console.js";

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");

/// An hour of caching: a new release's pages load the new files within one.
const CACHE: &str = "public, max-age=3600";

pub async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, CACHE)], CSS)
}

pub async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, CACHE)], JS)
}
