//! Signing in and out. Production sign-in is through the identity provider
//! that issues gridcase's tokens (OpenID Connect, [`crate::oidc`]), when one
//! is configured. The development sign-in asks the intake service for a
//! token signed with its development secret (`IssueDevToken`), which it
//! gives only while it runs with one. A form sent with an expired session
//! is carried through either sign-in and offered again, filled in.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use gridcase_proto::auth::v1 as auth_api;
use http::{HeaderMap, StatusCode, header};
use maud::{Markup, html};
use serde::Deserialize;
use tonic::Code;

use super::Fields;
use super::layout::{Nav, page, refusal_box};
use crate::AppState;
use crate::i18n::Lang;
use crate::session::{
    LANG_COOKIE, NoSession, SESSION_COOKIE, Session, csrf_token, lang, local_path, referer_path, set_cookie,
};
use crate::upstream::Refusal;

/// Roles a development sign-in may take, with an organisation and
/// territory of the demo county for each (as hints).
const ROLES: [(&str, &str, &str); 5] = [
    ("command_centre", "cc-990101001", "990101001"),
    ("county_auditor", "county-990101", "990101"),
    ("handling_unit", "unit.utilities.990101", "unit.utilities.990101"),
    ("grid_leader", "cc-990101001", "990101001001001"),
    ("grid_worker", "cc-990101001", "990101001001001"),
];

#[derive(Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    expired: Option<String>,
}

/// A form the user was sending when their session expired: where it went
/// and what was in it (the CSRF token left out: a new one is issued).
pub struct Carried {
    pub action: String,
    pub fields: Vec<(String, String)>,
}

impl Carried {
    pub fn of(action: &str, fields: &Fields) -> Self {
        Self {
            action: local_path(action).to_owned(),
            fields: fields.pairs().iter().filter(|(k, _)| k != "csrf").cloned().collect(),
        }
    }
}

/// The hidden inputs that carry `next` and a form through a sign-in.
fn carried_inputs(next: &str, carried: Option<&Carried>) -> Markup {
    html! {
        input type="hidden" name="next" value=(next);
        @if let Some(carried) = carried {
            input type="hidden" name="carry_action" value=(carried.action);
            @for (name, value) in &carried.fields {
                input type="hidden" name=(format!("carry.{name}")) value=(value);
            }
        }
    }
}

/// A form carried through a sign-in, read back from its hidden inputs.
fn carried_of(fields: &Fields) -> Option<Carried> {
    (!fields.get("carry_action").is_empty()).then(|| Carried {
        action: local_path(fields.get("carry_action")).to_owned(),
        fields: fields
            .pairs()
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("carry.").map(|k| (k.to_owned(), v.clone())))
            .collect(),
    })
}

fn form(
    state: &AppState,
    lang: Lang,
    next: &str,
    expired: bool,
    carried: Option<&Carried>,
    problem: Option<Markup>,
) -> Markup {
    html! {
        section.signin {
            h1 { (lang.t("sign_in")) }
            @if expired { div.notice role="status" { (lang.t("session_expired")) } }
            @if let Some(problem) = problem { (problem) }
            @if state.oidc.is_some() {
                form.oidc method="post" action="/signin/oidc" {
                    (carried_inputs(next, carried))
                    button type="submit" { (lang.t("oidc_sign_in")) }
                }
            }
            h2 { (lang.t("dev_sign_in")) }
            p.hint { (lang.t("dev_sign_in_note")) }
            form.dev method="post" action="/signin" {
                (carried_inputs(next, carried))
                label { (lang.t("subject")) input name="subject" value="operator-1" required; }
                label { (lang.t("role"))
                    select name="role" {
                        @for (role, _, _) in ROLES { option value=(role) { (lang.role(role)) } }
                    }
                }
                label { (lang.t("organisation")) input name="organisation" value="cc-990101001" required; }
                label { (lang.t("territory")) input name="territory" value="990101001" required; }
                ul.hint { @for (role, organisation, territory) in ROLES {
                    li { (lang.role(role)) ": " code { (organisation) } " / " code { (territory) } }
                } }
                button type="submit" { (lang.t("sign_in")) }
            }
        }
    }
}

pub async fn show(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<SignInQuery>) -> Markup {
    let lang = lang(&headers, state.config.language);
    let body = form(&state, lang, local_path(&query.next), query.expired.is_some(), None, None);
    page(lang, None, Nav::SignIn, lang.t("sign_in"), body)
}

/// The session a form was sent with, its CSRF token checked; else the
/// answer: the sign-in page keeping what was typed (the session expired:
/// it is sent again to `action` after signing in), or a refusal.
pub fn posted(
    state: &AppState,
    headers: &HeaderMap,
    session: Result<Session, NoSession>,
    fields: &Fields,
    action: &str,
) -> Result<Session, Response> {
    match session {
        Ok(session) if session.csrf_matches(fields.get("csrf")) => Ok(session),
        Ok(session) => Err((StatusCode::FORBIDDEN, session.lang.t("bad_csrf")).into_response()),
        Err(NoSession::SignIn { .. }) => {
            let lang = lang(headers, state.config.language);
            let carried = Carried::of(action, fields);
            let body = form(state, lang, &carried.action, true, Some(&carried), None);
            Err((StatusCode::UNAUTHORIZED, page(lang, None, Nav::SignIn, lang.t("sign_in"), body)).into_response())
        }
        Err(other) => Err(other.into_response()),
    }
}

pub async fn submit(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let lang = lang(&headers, state.config.language);
    let fields = Fields::parse(&body);
    let next = local_path(fields.get("next")).to_owned();
    let carried = carried_of(&fields);
    let request = auth_api::IssueDevTokenRequest {
        subject: fields.get("subject").trim().to_owned(),
        role: fields.get("role").to_owned(),
        organisation: fields.get("organisation").trim().to_owned(),
        territory: fields.get("territory").trim().to_owned(),
        lifetime_seconds: 0,
    };
    let mut auth = state.upstream.auth.clone();
    match auth.issue_dev_token(request).await {
        Ok(issued) => {
            let issued = issued.into_inner();
            let lifetime =
                issued.expires_at.map_or(8 * 3600, |at| (at.seconds - jiff::Timestamp::now().as_second()).max(0));
            let cookie = set_cookie(SESSION_COOKIE, &issued.token, lifetime, state.config.cookies_secure());
            let response = match carried {
                Some(carried) => resubmit(lang, &issued.token, &carried).into_response(),
                None => Redirect::to(&next).into_response(),
            };
            ([(header::SET_COOKIE, cookie)], response).into_response()
        }
        Err(status) => {
            let refusal = Refusal::from_status(&status, lang);
            let problem = if status.code() == Code::FailedPrecondition {
                html! { div.notice.refused role="alert" { (lang.t("dev_sign_in_off")) } }
            } else {
                refusal_box(lang, &refusal)
            };
            let body = form(&state, lang, &next, false, carried.as_ref(), Some(problem));
            (refusal.http_status(), page(lang, None, Nav::SignIn, lang.t("sign_in"), body)).into_response()
        }
    }
}

/// The cookie of a sign-in in progress. SameSite=Lax: the provider sends
/// the browser back by a top-level navigation from its own site, which
/// must carry it; only the callback's path sees it.
fn pending_cookie(value: &str, max_age: i64, secure: bool) -> http::HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    http::HeaderValue::from_str(&format!(
        "{}={value}; Path=/signin/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        crate::oidc::PENDING_COOKIE
    ))
    .expect("cookie values are visible ASCII")
}

/// `POST /signin/oidc`: to the identity provider, remembering (in a
/// short-lived cookie) the state, the PKCE verifier, the nonce, where to
/// go back to and any form carried through an expired session.
pub async fn oidc_begin(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let lang = lang(&headers, state.config.language);
    let fields = Fields::parse(&body);
    let next = local_path(fields.get("next")).to_owned();
    let carried = carried_of(&fields);
    let Some(oidc) = state.oidc.clone() else {
        return (StatusCode::NOT_FOUND, lang.t("page_not_found")).into_response();
    };
    match oidc.begin(&next, carried.as_ref().map(|c| (c.action.clone(), c.fields.clone()))).await {
        Ok((url, pending)) => {
            let cookie =
                pending_cookie(&pending.to_cookie(), crate::oidc::PENDING_SECONDS, state.config.cookies_secure());
            ([(header::SET_COOKIE, cookie)], Redirect::to(&url)).into_response()
        }
        Err(error) => {
            tracing::warn!(error = %error, "signing in at the identity provider");
            let problem = html! { div.notice.refused role="alert" { (lang.t("oidc_unavailable")) " (" (error) ")" } };
            let body = form(&state, lang, &next, false, carried.as_ref(), Some(problem));
            (StatusCode::BAD_GATEWAY, page(lang, None, Nav::SignIn, lang.t("sign_in"), body)).into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// `GET /signin/oidc/callback`: back from the identity provider. The
/// session cookie is set on a page of this console that then moves on by
/// itself: a SameSite=Strict cookie is not sent on a redirect that began
/// at another site, but is on a navigation this page starts.
pub async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let lang = lang(&headers, state.config.language);
    let pending =
        crate::session::cookie(&headers, crate::oidc::PENDING_COOKIE).and_then(crate::oidc::Pending::from_cookie);
    let clear = pending_cookie("", 0, state.config.cookies_secure());
    let refused = |status: StatusCode, words: String, pending: Option<&crate::oidc::Pending>| {
        let next = pending.map_or("/", |p| p.next.as_str());
        let carried = pending.and_then(|p| p.carried.clone()).map(|(action, fields)| Carried { action, fields });
        let problem = html! { div.notice.refused role="alert" { (words) } };
        let body = form(&state, lang, next, false, carried.as_ref(), Some(problem));
        (status, [(header::SET_COOKIE, clear.clone())], page(lang, None, Nav::SignIn, lang.t("sign_in"), body))
            .into_response()
    };
    let (Some(oidc), Some(pending)) = (state.oidc.clone(), pending) else {
        return refused(StatusCode::BAD_REQUEST, lang.t("oidc_mismatch").to_owned(), None);
    };
    if !query.error.is_empty() {
        let words = format!("{}: {} {}", lang.t("oidc_refused"), query.error, query.error_description);
        return refused(StatusCode::UNAUTHORIZED, words, Some(&pending));
    }
    match oidc.finish(&pending, &query.state, &query.code).await {
        Ok(token) => {
            let lifetime = token_lifetime(&token).unwrap_or(3600);
            let session = set_cookie(SESSION_COOKIE, &token, lifetime, state.config.cookies_secure());
            let page = match &pending.carried {
                Some((action, fields)) => {
                    resubmit(lang, &token, &Carried { action: action.clone(), fields: fields.clone() })
                }
                None => onward(lang, local_path(&pending.next)),
            };
            let mut response = page.into_response();
            response.headers_mut().append(header::SET_COOKIE, session);
            response.headers_mut().append(header::SET_COOKIE, clear);
            response
        }
        Err(crate::oidc::SignInError::Mismatch) => {
            refused(StatusCode::BAD_REQUEST, lang.t("oidc_mismatch").to_owned(), Some(&pending))
        }
        Err(error) => {
            tracing::warn!(error = %error, "a sign-in at the identity provider did not end in a session");
            refused(StatusCode::UNAUTHORIZED, format!("{} ({error})", lang.t("oidc_refused")), Some(&pending))
        }
    }
}

/// A page that moves on to `next` at once (and says where, for a browser
/// that does not).
fn onward(lang: Lang, next: &str) -> Markup {
    let body = html! {
        meta http-equiv="refresh" content=(format!("0;url={next}"));
        p { a #onward href=(next) { (lang.t("signed_in_continue")) } }
    };
    page(lang, None, Nav::SignIn, lang.t("sign_in"), body)
}

/// Seconds until a JWT's `exp`, read without checking it (the services
/// check it; this only sets how long the cookie lasts).
fn token_lifetime(token: &str) -> Option<i64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get("exp")?.as_i64()?;
    Some((exp - jiff::Timestamp::now().as_second()).max(0))
}

/// What the user typed before their session expired, ready to send again
/// (with the new session's CSRF token and the same command id: sending it
/// twice is still one command).
fn resubmit(lang: Lang, token: &str, carried: &Carried) -> Markup {
    let body = html! {
        section {
            div.notice role="status" { (lang.t("kept_typed")) }
            form method="post" action=(carried.action) {
                input type="hidden" name="csrf" value=(csrf_token(token));
                @for (name, value) in &carried.fields {
                    label { code { (name) } input name=(name) value=(value); }
                }
                button type="submit" { (lang.t("submit")) }
            }
        }
    };
    page(lang, None, Nav::SignIn, lang.t("sign_in"), body)
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Result<Session, NoSession>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(answer) = posted(&state, &headers, session, &Fields::parse(&body), "/signout") {
        return answer;
    }
    let cookie = set_cookie(SESSION_COOKIE, "", 0, state.config.cookies_secure());
    ([(header::SET_COOKIE, cookie)], Redirect::to("/signin")).into_response()
}

#[derive(Deserialize)]
pub struct LangQuery {
    to: String,
    #[serde(default)]
    next: String,
}

/// Switch the interface language (a preference, not an action: no CSRF).
pub async fn switch_language(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LangQuery>,
) -> Response {
    let to = Lang::parse(&query.to).unwrap_or(state.config.language);
    let back = if query.next.is_empty() { referer_path(&headers) } else { query.next.clone() };
    let cookie = set_cookie(LANG_COOKIE, to.code(), 365 * 86400, state.config.cookies_secure());
    ([(header::SET_COOKIE, cookie)], Redirect::to(local_path(&back))).into_response()
}
