//! Sign-in through the identity provider that issues gridcase's tokens:
//! OpenID Connect, authorization code with PKCE (S256), by the
//! `openidconnect` crate. The provider is found by discovery on first use
//! (and again after a failure: the console starts while the provider is
//! away). The console keeps nothing between the redirect to the provider
//! and the way back but a short-lived cookie holding the state, the PKCE
//! verifier, the nonce and where to go next (with a form carried through
//! an expired session); the way back must bring the same state.
//!
//! What the session then holds is the provider's **access token**: a JWT
//! for the audience the services check, with the role, organisation and
//! territory claims they read, signed by a key they trust
//! (`GRIDCASE_AUTH_KEYS`). The ID token is checked (signature by the
//! provider's keys, issuer, audience, nonce, and the access token's hash
//! when it carries one) before the access token is taken; the services
//! check the access token on every call, as they check any bearer token.

use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _, reqwest,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use tokio::sync::Mutex;

/// The cookie holding a sign-in in progress (between the redirect to the
/// provider and the way back), and how long it lasts.
pub const PENDING_COOKIE: &str = "gridcase_oidc";
pub const PENDING_SECONDS: i64 = 600;

/// How the console signs users in at the provider.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Where the provider sends the browser back: `<public URL>/signin/oidc/callback`.
    pub redirect_uri: String,
    pub scopes: Vec<String>,
}

/// A sign-in in progress, as its cookie holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub verifier: String,
    pub nonce: String,
    /// Where to go after signing in (a path of this console).
    pub next: String,
    /// A form carried through an expired session: its action and fields.
    #[serde(default)]
    pub carried: Option<(String, Vec<(String, String)>)>,
}

impl Pending {
    pub fn to_cookie(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("a pending sign-in serialises"))
    }

    pub fn from_cookie(value: &str) -> Option<Pending> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(value).ok()?).ok()
    }
}

/// Why a sign-in at the provider did not end in a session.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the identity provider cannot be reached: {0}")]
    Unavailable(String),
    #[error("the sign-in was not the one this browser started (state mismatch or expired)")]
    Mismatch,
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("the identity provider's answer does not check out: {0}")]
    Invalid(String),
}

pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    metadata: Mutex<Option<CoreProviderMetadata>>,
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> anyhow::Result<Self> {
        IssuerUrl::new(settings.issuer.clone()).context("--oidc-issuer is not a URL")?;
        RedirectUrl::new(settings.redirect_uri.clone()).context("--public-url does not make a redirect URL")?;
        let http = reqwest::ClientBuilder::new()
            // Following redirects would let a provider's answer send the console elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client for the identity provider")?;
        Ok(Self { settings, http, metadata: Mutex::new(None) })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The provider's metadata, discovered once (again after a failure).
    async fn metadata(&self) -> Result<CoreProviderMetadata, SignInError> {
        let mut known = self.metadata.lock().await;
        if let Some(metadata) = known.as_ref() {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| SignInError::Invalid(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| SignInError::Unavailable(error_chain(&e)))?;
        *known = Some(metadata.clone());
        Ok(metadata)
    }

    /// Where to send the browser to sign in, and the sign-in to remember.
    pub async fn begin(
        &self,
        next: &str,
        carried: Option<(String, Vec<(String, String)>)>,
    ) -> Result<(String, Pending), SignInError> {
        let metadata = self.metadata().await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(RedirectUrl::new(self.settings.redirect_uri.clone()).expect("checked in new"));
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request =
            client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        // openid is always asked (the crate adds it).
        for scope in self.settings.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let pending = Pending {
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
            next: next.to_owned(),
            carried,
        };
        Ok((url.to_string(), pending))
    }

    /// The way back: the same state as the sign-in this browser began, the
    /// code exchanged (with the PKCE verifier), the ID token checked; the
    /// access token for the session.
    pub async fn finish(&self, pending: &Pending, state: &str, code: &str) -> Result<String, SignInError> {
        // The state is this browser's secret: compared in constant time.
        if !bool::from(pending.state.as_bytes().ct_eq(state.as_bytes())) {
            return Err(SignInError::Mismatch);
        }
        let metadata = self.metadata().await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(RedirectUrl::new(self.settings.redirect_uri.clone()).expect("checked in new"));
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SignInError::Invalid(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| SignInError::Refused(error_chain(&e)))?;
        let id_token = answer.id_token().ok_or_else(|| SignInError::Invalid("no ID token".into()))?;
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(pending.nonce.clone()))
            .map_err(|e| SignInError::Invalid(e.to_string()))?;
        if let Some(expected) = claims.access_token_hash() {
            let algorithm = id_token.signing_alg().map_err(|e| SignInError::Invalid(e.to_string()))?;
            let key = id_token.signing_key(&verifier).map_err(|e| SignInError::Invalid(e.to_string()))?;
            let actual = AccessTokenHash::from_token(answer.access_token(), algorithm, key)
                .map_err(|e| SignInError::Invalid(e.to_string()))?;
            if actual != *expected {
                return Err(SignInError::Invalid("the access token is not the one the ID token names".into()));
            }
        }
        Ok(answer.access_token().secret().clone())
    }
}

/// An error with its causes, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_sign_in_survives_its_cookie_and_a_forged_one_does_not_parse() {
        let pending = Pending {
            state: "s".into(),
            verifier: "v".repeat(43),
            nonce: "n".into(),
            next: "/desk?view=soon".into(),
            carried: Some(("/cases/x/act".into(), vec![("reason".into(), "超时 <b>".into())])),
        };
        let cookie = pending.to_cookie();
        assert!(cookie.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{cookie}");
        assert_eq!(Pending::from_cookie(&cookie), Some(pending));
        assert_eq!(Pending::from_cookie("not base64 !"), None);
        assert_eq!(Pending::from_cookie(&URL_SAFE_NO_PAD.encode(b"{}")), None);
    }
}
