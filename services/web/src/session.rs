//! Who is signed in: the session cookie holds the user's bearer token (the
//! console keeps nothing on its side), the intake service says who that is
//! (`WhoAmI`, on every page: an expired or revoked token is noticed at
//! once), and each form carries a CSRF token derived from the session.

use axum::extract::FromRequestParts;
use gridcase_proto::auth::v1 as auth_api;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, header};
use sha2::{Digest as _, Sha256};
use tonic::Code;

use crate::AppState;
use crate::i18n::Lang;
use crate::upstream::{Refusal, as_user};

pub const SESSION_COOKIE: &str = "gridcase_session";
pub const LANG_COOKIE: &str = "gridcase_lang";

/// A cookie of the request, by name.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The language of the request: the user's choice, else the console's default.
pub fn lang(headers: &HeaderMap, default: Lang) -> Lang {
    cookie(headers, LANG_COOKIE).and_then(Lang::parse).unwrap_or(default)
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Strict always, Secure when
/// the console is reached over TLS; `max_age` 0 removes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .expect("cookie values are visible ASCII")
}

/// The CSRF token of a session: a digest of the session's bearer token, so
/// it needs no state on the server, differs per session, and a page of
/// another origin can neither read nor compute it.
pub fn csrf_token(token: &str) -> String {
    let digest = Sha256::new().chain_update(b"gridcase-web csrf\n").chain_update(token.as_bytes()).finalize();
    hex::encode(&digest[..16])
}

/// A path of this console to go back to after signing in (never another site).
pub fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") { next } else { "/" }
}

/// The path (and query) of the page a request came from, or `/`.
pub fn referer_path(headers: &HeaderMap) -> String {
    headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned())))
        .map_or_else(|| "/".to_owned(), |path| local_path(&path).to_owned())
}

/// The signed-in user, as the intake service verified their token.
pub struct Session {
    pub token: String,
    pub caller: auth_api::Caller,
    pub lang: Lang,
    pub csrf: String,
}

impl Session {
    pub fn role(&self) -> &str {
        &self.caller.role
    }

    /// Whether `submitted` is this session's CSRF token (compared in
    /// constant time).
    pub fn csrf_matches(&self, submitted: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), submitted.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Why there is no session: not signed in (or the token expired: sign in
/// again, then back to the page), or the intake service cannot say.
pub enum NoSession {
    SignIn { next: String, expired: bool },
    Unavailable(Refusal, Lang),
}

impl FromRequestParts<AppState> for Session {
    type Rejection = NoSession;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let lang = lang(&parts.headers, state.config.language);
        // Back to where the user was: a page (GET), or the page a form was
        // on (its Referer), so that signing in again returns there.
        let next = if parts.method == http::Method::GET {
            parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned()
        } else {
            referer_path(&parts.headers)
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
            return Err(NoSession::SignIn { next, expired: false });
        };
        let mut auth = state.upstream.auth.clone();
        match auth.who_am_i(as_user(token, auth_api::WhoAmIRequest {})).await {
            Ok(caller) => {
                Ok(Session { token: token.to_owned(), caller: caller.into_inner(), lang, csrf: csrf_token(token) })
            }
            Err(status) if status.code() == Code::Unauthenticated => Err(NoSession::SignIn { next, expired: true }),
            Err(status) => Err(NoSession::Unavailable(Refusal::from_status(&status, lang), lang)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path("/cases/1?x=2"), "/cases/1?x=2");
        for outside in ["https://evil.example/", "//evil.example/", "/\\evil.example", "evil", ""] {
            assert_eq!(local_path(outside), "/", "{outside}");
        }
    }

    #[test]
    fn the_csrf_token_differs_per_session_and_is_stable_within_one() {
        assert_eq!(csrf_token("a.b.c"), csrf_token("a.b.c"));
        assert_ne!(csrf_token("a.b.c"), csrf_token("a.b.d"));
        assert_eq!(csrf_token("a.b.c").len(), 32);
    }

    #[test]
    fn cookies_are_found_by_name_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("x=1; gridcase_session=tok; gridcase_lang=en"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(lang(&headers, Lang::Zh), Lang::En);
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
