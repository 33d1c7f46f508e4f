//! Signing in and out. The development sign-in asks the intake service for
//! a token signed with its development secret (`IssueDevToken`), which it
//! gives only while it runs with one; production sign-in is through the
//! identity provider that issues gridcase's tokens (OpenID Connect: not
//! built yet, see ARCHITECTURE.md). A form sent with an expired session
//! is carried through the sign-in and offered again, filled in.

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

fn form(lang: Lang, next: &str, expired: bool, carried: Option<&Carried>, problem: Option<Markup>) -> Markup {
    html! {
        section.signin {
            h1 { (lang.t("sign_in")) }
            @if expired { div.notice role="status" { (lang.t("session_expired")) } }
            @if let Some(problem) = problem { (problem) }
            h2 { (lang.t("dev_sign_in")) }
            p.hint { (lang.t("dev_sign_in_note")) }
            form method="post" action="/signin" {
                input type="hidden" name="next" value=(next);
                @if let Some(carried) = carried {
                    input type="hidden" name="carry_action" value=(carried.action);
                    @for (name, value) in &carried.fields {
                        input type="hidden" name=(format!("carry.{name}")) value=(value);
                    }
                }
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
    let body = form(lang, local_path(&query.next), query.expired.is_some(), None, None);
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
            let body = form(lang, &carried.action, true, Some(&carried), None);
            Err((StatusCode::UNAUTHORIZED, page(lang, None, Nav::SignIn, lang.t("sign_in"), body)).into_response())
        }
        Err(other) => Err(other.into_response()),
    }
}

pub async fn submit(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let lang = lang(&headers, state.config.language);
    let fields = Fields::parse(&body);
    let next = local_path(fields.get("next")).to_owned();
    let carried = (!fields.get("carry_action").is_empty()).then(|| Carried {
        action: local_path(fields.get("carry_action")).to_owned(),
        fields: fields
            .pairs()
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("carry.").map(|k| (k.to_owned(), v.clone())))
            .collect(),
    });
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
            let body = form(lang, &next, false, carried.as_ref(), Some(problem));
            (refusal.http_status(), page(lang, None, Nav::SignIn, lang.t("sign_in"), body)).into_response()
        }
    }
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
