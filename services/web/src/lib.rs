//! gridcase web, as a library: `main` parses the configuration and calls
//! [`run`]; tests build the same [`Application`] on their own listener.
//!
//! The console keeps no state: each request calls the intake and query
//! services as the signed-in user ([`upstream`]), whose token is the
//! session ([`session`]). Pages ([`pages`]) are rendered on the server
//! and escaped by default; the live board's feed is the query service's
//! watch relayed as Server-Sent Events ([`live`]).

pub mod assets;
pub mod config;
pub mod i18n;
pub mod live;
pub mod metrics;
pub mod oidc;
pub mod pages;
pub mod session;
pub mod tls;
pub mod upstream;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gridcase_process::Shutdown;
use http::{HeaderValue, StatusCode, header};
use tokio::net::TcpListener;

pub use config::Config;
use upstream::Upstream;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub upstream: Upstream,
    pub config: Arc<Config>,
    /// Live feeds end when the console stops (browsers reconnect elsewhere).
    pub shutdown: Shutdown,
    /// Sign-in at the identity provider, when one is configured.
    pub oidc: Option<Arc<oidc::Oidc>>,
}

/// The console's Content-Security-Policy: its own script and stylesheet
/// only, no inline script or style, no frames, forms only to itself (and,
/// with an identity provider configured, to the provider's origin: the
/// sign-in form is answered with a redirect there, which `form-action`
/// governs too).
pub fn content_security_policy(identity_provider: Option<&str>) -> String {
    let provider = identity_provider.and_then(origin_of).map(|origin| format!(" {origin}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'{provider}; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// `scheme://host[:port]` of a URL (None for anything else, or anything a
/// CSP source could not hold).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    let fine =
        |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    (matches!(scheme, "http" | "https") && fine(host)).then(|| format!("{scheme}://{host}"))
}

/// Every answer's security headers.
async fn security_headers(State(policy): State<HeaderValue>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Served over HTTPS: browsers are told to keep to it for a year.
async fn strict_transport(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    response
}

/// A form sent from another site is refused before any handler runs (with
/// SameSite=Strict cookies and the CSRF token, a third line of defence; it
/// also covers the sign-in form, which has no session yet).
async fn same_origin(request: Request, next: Next) -> Response {
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
        if let (Some(host), Some(origin)) = (host, origin) {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if origin_host != host {
                return (StatusCode::FORBIDDEN, "cross-site request refused").into_response();
            }
        }
    }
    next.run(request).await
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the services the console calls answer their health checks.
async fn readyz(State(state): State<AppState>) -> Response {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let check = |channel: tonic::transport::Channel| async move {
        let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
        matches!(answer.map(|a| a.into_inner().status()), Ok(ServingStatus::Serving))
    };
    let (intake, query) = futures::join!(check(state.upstream.intake_channel()), check(state.upstream.query_channel()));
    let body = format!(
        "intake {}\nquery {}\n",
        if intake { "ok" } else { "unavailable" },
        if query { "ok" } else { "unavailable" }
    );
    let status = if intake && query { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, body).into_response()
}

async fn not_found(State(state): State<AppState>, headers: http::HeaderMap) -> Response {
    let lang = session::lang(&headers, state.config.language);
    let refusal =
        upstream::Refusal { code: tonic::Code::NotFound, message: lang.t("page_not_found").to_owned(), fields: vec![] };
    pages::layout::refusal_page(lang, &refusal)
}

pub fn router(state: AppState) -> Router {
    let tls = state.config.tls();
    let policy = HeaderValue::from_str(&content_security_policy(state.config.oidc_issuer.as_deref()))
        .expect("the policy is visible ASCII");
    let router = Router::new()
        .route("/", get(pages::board::show))
        .route("/board/counts", get(pages::board::counts))
        .route("/board/map", get(pages::board::map_points))
        .route("/live", get(live::feed))
        .route("/desk", get(pages::desk::show))
        .route("/desk/supervise", post(pages::desk::supervise))
        .route("/desk/export", get(pages::desk::export))
        .route("/cases/{case_id}", get(pages::case::show))
        .route("/cases/{case_id}/act", post(pages::case::act))
        .route("/cases/{case_id}/attachments/{sha256}", get(pages::photos::full))
        .route("/cases/{case_id}/attachments/{sha256}/thumbnail", get(pages::photos::thumbnail))
        .route("/ledger", get(pages::ledger::show))
        .route("/signin", get(pages::signin::show).post(pages::signin::submit))
        .route("/signout", post(pages::signin::sign_out))
        .route("/signin/oidc", post(pages::signin::oidc_begin))
        .route("/signin/oidc/callback", get(pages::signin::oidc_callback))
        .route("/lang", get(pages::signin::switch_language))
        .route(assets::CSS_PATH, get(assets::css))
        .route(assets::JS_PATH, get(assets::js))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(middleware::from_fn(same_origin))
        .layer(middleware::from_fn_with_state(policy, security_headers))
        .route_layer(middleware::from_fn(metrics::track));
    let router = if tls { router.layer(middleware::from_fn(strict_transport)) } else { router };
    router.with_state(state)
}

/// The console, built and ready to serve.
pub struct Application {
    config: Config,
    listener: TcpListener,
}

impl Application {
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        Ok(Self { config, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown`: new connections stop at once, live feeds
    /// end (browsers reconnect and resume), requests in progress get the
    /// grace period.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let upstream = Upstream::new(&self.config)?;
        let grace = self.config.shutdown_grace;
        let tls = match (&self.config.tls_cert, &self.config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            _ => None,
        };
        let oidc = match self.config.oidc(self.listener.local_addr()?)? {
            Some(settings) => Some(Arc::new(oidc::Oidc::new(settings)?)),
            None => None,
        };
        let state = AppState { upstream, config: Arc::new(self.config), shutdown: shutdown.clone(), oidc };
        let app = router(state);
        match tls {
            Some(tls) => serve(tls::TlsListener::new(self.listener, tls)?, app, shutdown, grace).await,
            None => serve(self.listener, app, shutdown, grace).await,
        }
    }
}

/// Serve `app` on `listener` until `shutdown`, then give requests in
/// progress `grace`.
async fn serve<L>(listener: L, app: Router, shutdown: Shutdown, grace: std::time::Duration) -> anyhow::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let stopping = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move { stopping.requested().await });
    match gridcase_process::shutdown::drain_with_grace(server.into_future(), shutdown, grace).await {
        Some(result) => result.context("serving the console"),
        None => Ok(()),
    }
}

/// Run the console as the binary does: metrics, the listener, until SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    if !config.no_metrics {
        gridcase_process::exporter::install(config.metrics_addr, metrics::register)?;
    }
    let listener = TcpListener::bind(config.addr).await.with_context(|| format!("listening on {}", config.addr))?;
    let scheme = if config.tls() { "https" } else { "http" };
    tracing::info!(addr = %config.addr, intake = %config.intake_url, query = %config.query_url, "console listening: open {scheme}://{}/", config.addr);
    Application::build(config, listener).await?.run(Shutdown::on_signals()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_may_go_to_the_identity_provider_s_origin_only() {
        assert!(content_security_policy(None).contains("form-action 'self';"));
        let policy = content_security_policy(Some("https://id.example.org:8443/realms/gridcase"));
        assert!(policy.contains("form-action 'self' https://id.example.org:8443;"), "{policy}");
        // Nothing that could smuggle another directive in.
        assert!(content_security_policy(Some("https://x.org; script-src *")).contains("form-action 'self';"));
        assert!(content_security_policy(Some("javascript:alert(1)")).contains("form-action 'self';"));
    }
}
