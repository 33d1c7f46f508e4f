//! Authentication and authorization at the gRPC edge: one tower layer in
//! front of every service of a server.
//!
//! For each call the layer reads `authorization: Bearer <JWT>`, verifies it
//! ([`gridcase_auth::KeySet::verify`]), or a partner system's API key
//! (`Bearer gck_…`, [`gridcase_auth::ApiKeys::verify`]), and asks the one policy function
//! ([`gridcase_auth::authorize`]) whether the caller's role may do the
//! method's operation at all. A missing or bad token is UNAUTHENTICATED, a
//! role that may not is PERMISSION_DENIED, and a method the policy does not
//! know is refused (deny by default). Health checks, reflection and the
//! development token minter need no token.
//!
//! What passes carries an [`Access`] in the request's extensions: the
//! verified principal and the operation. Handlers ask it again once they know
//! the case or region ([`Access::case`], [`Access::check`]), and take the
//! actor of every event from it ([`Access::actor`]), never from the body.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use gridcase_auth::policy::{CaseScope, Decision, Target};
use gridcase_auth::token::{DevIssuer, KeySet, TokenAlgorithm, Verified, VerifierSettings};
use gridcase_auth::{ApiKeys, Operation, Principal, authorize};
use gridcase_envelope::schema::Actor;
use tonic::Status;

use gridcase_process::{TimeSource, parse_duration};

/// Where tokens come from and how strictly they are checked.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// A trusted signing key of the identity provider, as KID:ALG:PEM_FILE
    /// (ALG: EdDSA, ES256 or RS256; the PEM holds the public key). Repeat
    /// the flag, or separate entries with commas in the variable, to accept
    /// several keys while rotating.
    #[arg(long = "auth-key", env = "GRIDCASE_AUTH_KEYS", value_delimiter = ',', value_name = "KID:ALG:PEM_FILE")]
    pub keys: Vec<String>,

    /// DEVELOPMENT ONLY: a file holding a shared secret (at least 32 bytes)
    /// that signs and verifies tokens with key id "dev", and enables
    /// `gridctl token`. Never set this in production: whoever reads the file
    /// can act as anyone.
    #[arg(long = "auth-dev-secret-file", env = "GRIDCASE_AUTH_DEV_SECRET_FILE", value_name = "FILE")]
    pub dev_secret_file: Option<PathBuf>,

    /// The issuer (`iss`) tokens must name.
    #[arg(long = "auth-issuer", env = "GRIDCASE_AUTH_ISSUER", default_value = "gridcase")]
    pub issuer: String,

    /// The audience (`aud`) tokens must include.
    #[arg(long = "auth-audience", env = "GRIDCASE_AUTH_AUDIENCE", default_value = "gridcase")]
    pub audience: String,

    /// Tolerated clock difference with the issuer.
    #[arg(long = "auth-clock-skew", env = "GRIDCASE_AUTH_CLOCK_SKEW", default_value = "60s", value_parser = parse_duration)]
    pub clock_skew: Duration,

    /// The longest token lifetime (exp - iat) accepted; longer-lived tokens are refused.
    #[arg(long = "auth-max-token-lifetime", env = "GRIDCASE_AUTH_MAX_TOKEN_LIFETIME", default_value = "12h", value_parser = parse_duration)]
    pub max_token_lifetime: Duration,

    /// Partner systems' API keys (the Open311 gateway's callers): one line
    /// per key, `ID SHA256 SUBJECT ORGANISATION TERRITORY`, made by
    /// `gridctl api-key new`. Read again within seconds of a change, so a key
    /// is added or revoked without a restart. None: no API key is accepted.
    #[arg(long = "auth-api-keys-file", env = "GRIDCASE_AUTH_API_KEYS_FILE", value_name = "FILE")]
    pub api_keys_file: Option<PathBuf>,
}

impl AuthArgs {
    /// Load the keys; refuses to start without any, and with both an
    /// identity provider's keys and a development secret (a production
    /// server that also mints tokens for anyone who asks).
    pub fn load(&self, clock: Arc<dyn TimeSource>) -> anyhow::Result<Authenticator> {
        if !self.keys.is_empty() && self.dev_secret_file.is_some() {
            anyhow::bail!(
                "--auth-key and --auth-dev-secret-file are exclusive: a server that trusts an identity provider \
                 must not also issue development tokens"
            );
        }
        let mut keys = KeySet::new(VerifierSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            clock_skew_seconds: self.clock_skew.as_secs() as i64,
            max_lifetime_seconds: self.max_token_lifetime.as_secs() as i64,
        });
        for entry in &self.keys {
            let mut parts = entry.splitn(3, ':');
            let (Some(kid), Some(algorithm), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                anyhow::bail!("--auth-key {entry:?} must be KID:ALG:PEM_FILE");
            };
            let algorithm = TokenAlgorithm::parse(algorithm)
                .with_context(|| format!("--auth-key {entry:?}: ALG must be EdDSA, ES256 or RS256"))?;
            let pem = std::fs::read(path).with_context(|| format!("--auth-key {entry:?}: reading {path}"))?;
            keys.add_public_key(kid, algorithm, &pem).with_context(|| format!("--auth-key {entry:?}"))?;
        }
        let dev = match &self.dev_secret_file {
            Some(path) => {
                let secret = std::fs::read_to_string(path)
                    .with_context(|| format!("--auth-dev-secret-file: reading {}", path.display()))?;
                let issuer = keys
                    .add_dev_secret(secret.trim().as_bytes())
                    .with_context(|| format!("--auth-dev-secret-file {}", path.display()))?;
                tracing::warn!(
                    file = %path.display(),
                    "a development token secret is configured: anyone who can read it can act as anyone; never in production"
                );
                Some(issuer)
            }
            None => None,
        };
        if keys.is_empty() {
            anyhow::bail!(
                "no token keys are configured: pass --auth-key KID:ALG:PEM_FILE (the identity provider's public key) \
                 or, for development, --auth-dev-secret-file FILE"
            );
        }
        tracing::info!(keys = ?keys.key_ids(), issuer = %self.issuer, audience = %self.audience, "token keys loaded");
        let api_keys = match &self.api_keys_file {
            Some(path) => Some(Arc::new(ApiKeyFile::open(path.clone())?)),
            None => None,
        };
        Ok(Authenticator { keys: Arc::new(keys), dev, clock, verified: Arc::new(VerifiedTokens::default()), api_keys })
    }
}

/// Verifies tokens for a server; shared by its layer and its AuthService.
#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<KeySet>,
    dev: Option<DevIssuer>,
    clock: Arc<dyn TimeSource>,
    verified: Arc<VerifiedTokens>,
    api_keys: Option<Arc<ApiKeyFile>>,
}

/// The partners' key file, read again when it changes (checked at most
/// every [`ApiKeyFile::RECHECK`]); a file that is gone or no longer parses
/// accepts no key (fail closed), and says so.
pub struct ApiKeyFile {
    path: PathBuf,
    state: std::sync::Mutex<ApiKeyState>,
}

struct ApiKeyState {
    keys: Arc<ApiKeys>,
    modified: Option<std::time::SystemTime>,
    checked: std::time::Instant,
}

impl ApiKeyFile {
    pub const RECHECK: Duration = Duration::from_secs(2);

    fn read(path: &std::path::Path) -> anyhow::Result<(ApiKeys, Option<std::time::SystemTime>)> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let keys = ApiKeys::parse(&text).with_context(|| format!("{}", path.display()))?;
        Ok((keys, modified))
    }

    pub fn open(path: PathBuf) -> anyhow::Result<Self> {
        let (keys, modified) = Self::read(&path).context("--auth-api-keys-file")?;
        tracing::info!(file = %path.display(), keys = keys.len(), "partner API keys loaded");
        let state = ApiKeyState { keys: Arc::new(keys), modified, checked: std::time::Instant::now() };
        Ok(Self { path, state: std::sync::Mutex::new(state) })
    }

    /// The keys as the file now has them.
    pub fn current(&self) -> Arc<ApiKeys> {
        let mut state = self.state.lock().expect("the API key file lock");
        if state.checked.elapsed() >= Self::RECHECK {
            state.checked = std::time::Instant::now();
            let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
            if modified != state.modified {
                match Self::read(&self.path) {
                    Ok((keys, modified)) => {
                        tracing::info!(file = %self.path.display(), keys = keys.len(), "partner API keys read again");
                        state.keys = Arc::new(keys);
                        state.modified = modified;
                    }
                    // Fail closed: a key file deleted or saved broken
                    // (perhaps while revoking a key) accepts no key at all
                    // until it reads again.
                    Err(error) => {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "the partner API key file changed and cannot be used: no API key is accepted until it reads again"
                        );
                        state.keys = Arc::new(ApiKeys::default());
                        state.modified = modified;
                    }
                }
            }
        }
        state.keys.clone()
    }
}

/// Tokens that verified, kept until they expire: a client sends the same
/// token with every call, and checking its signature and claims again took
/// about an eighth of intake's CPU per filing. The key set never changes
/// while a server runs and a verified token only becomes invalid by
/// expiring, so an answer from here is the answer verification would give:
/// a hit needs the very same token string, a time before its `valid_until`,
/// and a clock not moved back before the first verification (its `nbf` and
/// `iat` are checked again then).
#[derive(Debug, Default)]
pub struct VerifiedTokens {
    tokens: std::sync::Mutex<std::collections::HashMap<Box<str>, (Verified, jiff::Timestamp)>>,
}

impl VerifiedTokens {
    /// Most tokens kept; when full, the expired ones are dropped, and if none
    /// were, all of them (they are verified again on their next use).
    pub const CAPACITY: usize = 16_384;

    pub fn get(&self, token: &str, now: jiff::Timestamp) -> Option<Verified> {
        let tokens = self.tokens.lock().expect("the token cache lock");
        let (verified, at) = tokens.get(token)?;
        (now >= *at && now < verified.valid_until).then(|| verified.clone())
    }

    pub fn insert(&self, token: &str, verified: &Verified, now: jiff::Timestamp) {
        let mut tokens = self.tokens.lock().expect("the token cache lock");
        if tokens.len() >= Self::CAPACITY {
            tokens.retain(|_, (verified, _)| now < verified.valid_until);
            if tokens.len() >= Self::CAPACITY {
                tokens.clear();
            }
        }
        tokens.insert(token.into(), (verified.clone(), now));
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").field("keys", &self.keys.key_ids()).finish_non_exhaustive()
    }
}

impl Authenticator {
    /// The development token issuer, when the server has a development secret.
    pub fn dev_issuer(&self) -> Option<&DevIssuer> {
        self.dev.as_ref()
    }

    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// Decide on a call before its body is read: `Ok(None)` for a public
    /// method, `Ok(Some(access))` for an admitted one.
    pub fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<Option<Access>, Status> {
        if Operation::is_public_path(path) {
            return Ok(None);
        }
        let Verified { principal, valid_until } = self.verify(headers)?;
        let Some(operation) = Operation::from_grpc_path(path) else {
            tracing::warn!(path, subject = %principal.subject, "refused a method the authorization policy does not list");
            return Err(Status::permission_denied(format!("{path} is not open to any role")));
        };
        let access = Access { principal, operation, valid_until };
        access.check(Target::Service)?;
        Ok(Some(access))
    }

    fn verify(&self, headers: &http::HeaderMap) -> Result<Verified, Status> {
        let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
            Status::unauthenticated("no bearer token: send the metadata `authorization: Bearer <token>`")
        })?;
        let value = value.to_str().map_err(|_| Status::unauthenticated("the authorization metadata must be ASCII"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(Status::unauthenticated("the authorization metadata must be `Bearer <token>`")),
        };
        let now = self.clock.now();
        if gridcase_auth::apikey::is_api_key(token) {
            let Some(file) = &self.api_keys else {
                return Err(Status::unauthenticated("this server accepts no API keys"));
            };
            // Checked on every call (a SHA-256, a lookup): a revoked key stops at once.
            let principal = file.current().verify(token).map_err(|error| {
                tracing::info!(%error, "refused an API key");
                Status::unauthenticated(error.to_string())
            })?;
            return Ok(Verified { principal, valid_until: now + jiff::SignedDuration::from_hours(1) });
        }
        if let Some(verified) = self.verified.get(token, now) {
            return Ok(verified);
        }
        let verified = self.keys.verify(token, now).map_err(|error| {
            tracing::info!(%error, "refused a token");
            Status::unauthenticated(error.to_string())
        })?;
        self.verified.insert(token, &verified, now);
        Ok(verified)
    }
}

/// The tower layer that puts an [`Authenticator`] in front of every service.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Authenticator,
}

impl AuthLayer {
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated { inner, auth: self.auth.clone() }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Authenticator,
}

/// The most of a refused request's body read (and dropped) before the
/// refusal is sent, and the longest it is waited for.
const DRAIN_BYTES: usize = 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Read what is left of a refused request's body, up to [`DRAIN_BYTES`]. A
/// gRPC-Web call over HTTP/1.1 shares its connection with the calls after
/// it: answered with its body unread, the server must close the connection,
/// and a client already writing its next call there gets a broken pipe.
async fn drain<B: http_body::Body + Send>(body: B) {
    use http_body_util::BodyExt as _;
    let mut body = std::pin::pin!(body);
    let mut read = 0;
    while read <= DRAIN_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, bytes::Buf::remaining),
            _ => return,
        }
    }
}

impl<S, B> tower_service::Service<http::Request<B>> for Authenticated<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.auth.admit(request.uri().path(), request.headers()) {
            Ok(Some(access)) => {
                request.extensions_mut().insert(access);
            }
            Ok(None) => {}
            Err(status) => {
                let body = request.into_body();
                return Box::pin(async move {
                    // Bounded in time too: a caller that never ends its
                    // body holds nothing for long.
                    let _ = tokio::time::timeout(DRAIN_TIME, drain(body)).await;
                    Ok(status.into_http())
                });
            }
        }
        // The service that was made ready is the one that must be called.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(inner.call(request))
    }
}

/// An admitted call: who, doing what.
#[derive(Debug, Clone)]
pub struct Access {
    pub principal: Principal,
    pub operation: Operation,
    /// From this instant the token no longer verifies: long-lived calls
    /// (a watch stream) end there.
    pub valid_until: jiff::Timestamp,
}

/// NOT_FOUND for a case: the same answer whether it does not exist or the
/// caller may not see it.
pub fn case_not_found(case_id: &dyn fmt::Display) -> Status {
    Status::not_found(format!("case {case_id} does not exist"))
}

impl Access {
    /// The access the layer admitted this request with.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<&Access, Status> {
        request.extensions().get::<Access>().ok_or_else(|| {
            tracing::error!("a handler ran without the authentication layer in front of it");
            Status::unauthenticated("no verified caller")
        })
    }

    /// Ask the policy about a grid, region or the service itself.
    pub fn check(&self, target: Target<'_>) -> Result<(), Status> {
        match authorize(&self.principal, self.operation, target) {
            Decision::Allow => Ok(()),
            Decision::Forbidden(why) => {
                tracing::info!(subject = %self.principal.subject, role = %self.principal.role, operation = %self.operation, %why, "permission denied");
                Err(Status::permission_denied(why))
            }
            Decision::Hidden => Err(Status::not_found("not found")),
        }
    }

    /// Ask the policy about an existing case; one outside the caller's
    /// territory is NOT_FOUND, word for word as a missing one.
    pub fn case(&self, case_id: &dyn fmt::Display, scope: &CaseScope) -> Result<(), Status> {
        match authorize(&self.principal, self.operation, Target::Case(scope)) {
            Decision::Allow => Ok(()),
            Decision::Forbidden(why) => Err(Status::permission_denied(why)),
            Decision::Hidden => {
                tracing::info!(subject = %self.principal.subject, role = %self.principal.role, operation = %self.operation, %case_id, "case outside the caller's territory");
                Err(case_not_found(case_id))
            }
        }
    }

    /// The actor recorded on the events this call causes.
    pub fn actor(&self) -> Result<Actor, Status> {
        let role = self.principal.role.actor_role().ok_or_else(|| {
            Status::permission_denied(format!("{} records no case events", self.principal.role.with_article()))
        })?;
        Ok(Actor {
            person: self.principal.subject.clone(),
            role,
            organisation: self.principal.organisation.to_string(),
        })
    }
}

/// `gridcase.auth.v1.AuthService`, served by every gRPC server next to its
/// own services.
pub struct AuthApi {
    auth: Authenticator,
}

impl AuthApi {
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }

    pub fn into_server(self) -> auth_api::auth_service_server::AuthServiceServer<Self> {
        auth_api::auth_service_server::AuthServiceServer::new(self)
    }
}

use gridcase_proto::auth::v1 as auth_api;

/// The default lifetime of a development token.
const DEV_TOKEN_LIFETIME_SECONDS: i64 = 8 * 3600;

#[tonic::async_trait]
impl auth_api::auth_service_server::AuthService for AuthApi {
    async fn who_am_i(
        &self,
        request: tonic::Request<auth_api::WhoAmIRequest>,
    ) -> Result<tonic::Response<auth_api::Caller>, Status> {
        let principal = &Access::of(&request)?.principal;
        Ok(tonic::Response::new(auth_api::Caller {
            subject: principal.subject.clone(),
            role: principal.role.as_str().into(),
            organisation: principal.organisation.to_string(),
            territory: principal.territory.to_string(),
        }))
    }

    async fn issue_dev_token(
        &self,
        request: tonic::Request<auth_api::IssueDevTokenRequest>,
    ) -> Result<tonic::Response<auth_api::IssueDevTokenResponse>, Status> {
        let Some(issuer) = self.auth.dev_issuer() else {
            return Err(Status::failed_precondition(
                "this server has no development secret (--auth-dev-secret-file), so it issues no tokens; \
                 get a token from your identity provider",
            ));
        };
        let r = request.into_inner();
        let principal = Principal::new(&r.subject, &r.role, &r.organisation, &r.territory).map_err(|e| {
            let mut v = crate::Violations::new();
            let field = match e {
                gridcase_auth::PrincipalError::BadSubject => "subject",
                gridcase_auth::PrincipalError::UnknownRole => "role",
                gridcase_auth::PrincipalError::BadOrganisation => "organisation",
                gridcase_auth::PrincipalError::BadTerritory { .. } => "territory",
            };
            v.add(field, "INVALID", e.to_string());
            v.into_status()
        })?;
        let lifetime = match r.lifetime_seconds {
            0 => DEV_TOKEN_LIFETIME_SECONDS.min(issuer.max_lifetime_seconds()),
            asked => i64::from(asked).min(issuer.max_lifetime_seconds()),
        };
        let now = self.auth.now();
        let claims = issuer.claims(&principal, now, lifetime);
        tracing::info!(subject = %principal.subject, role = %principal.role, territory = %principal.territory, "development token issued");
        Ok(tonic::Response::new(auth_api::IssueDevTokenResponse {
            token: issuer.sign(&claims),
            expires_at: Some(prost_types::Timestamp { seconds: claims.exp, nanos: 0 }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use gridcase_auth::{Principal, Verified};
    use jiff::{SignedDuration, Timestamp};

    use super::VerifiedTokens;

    fn verified(until: Timestamp) -> Verified {
        Verified {
            principal: Principal::new("w-1", "grid_worker", "org", "990101001001001").unwrap(),
            valid_until: until,
        }
    }

    #[test]
    fn a_verified_token_is_answered_until_it_expires_and_only_for_the_same_string() {
        let cache = VerifiedTokens::default();
        let now: Timestamp = "2026-03-09T01:00:00Z".parse().unwrap();
        let until = now + SignedDuration::from_hours(1);
        cache.insert("header.claims.signature", &verified(until), now);

        assert_eq!(cache.get("header.claims.signature", now), Some(verified(until)));
        assert_eq!(cache.get("header.claims.signature", until - SignedDuration::from_secs(1)), Some(verified(until)));
        assert_eq!(cache.get("header.claims.signature", until), None, "expired: verified again, and refused");
        assert_eq!(cache.get("header.claims.signaturf", now), None, "another string is verified on its own");
        assert_eq!(cache.get("header.claims.signature", now - SignedDuration::from_secs(1)), None, "clock moved back");
    }

    #[test]
    fn a_full_cache_drops_expired_tokens_first() {
        let cache = VerifiedTokens::default();
        let now: Timestamp = "2026-03-09T01:00:00Z".parse().unwrap();
        let later = now + SignedDuration::from_hours(2);
        for index in 0..VerifiedTokens::CAPACITY {
            let until =
                if index == 0 { later + SignedDuration::from_hours(1) } else { now + SignedDuration::from_hours(1) };
            cache.insert(&format!("token-{index}"), &verified(until), now);
        }
        cache.insert("new", &verified(later + SignedDuration::from_hours(1)), later);
        assert!(cache.get("token-0", later).is_some(), "still valid: kept");
        assert!(cache.get("token-1", later).is_none());
        assert!(cache.get("new", later).is_some());
        assert_eq!(cache.tokens.lock().unwrap().len(), 2);
    }
}
