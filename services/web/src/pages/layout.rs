//! The frame every page shares: the head (the console's own stylesheet and
//! script, nothing from elsewhere), the navigation, the signed-in user and
//! the language switch; and the page that shows a refusal.

use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};

use crate::i18n::Lang;
use crate::session::{NoSession, Session};
use crate::upstream::Refusal;

/// Which page of the navigation is open.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Board,
    Desk,
    Ledger,
    Case,
    SignIn,
}

pub fn page(lang: Lang, session: Option<&Session>, nav: Nav, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t("title")) }
                link rel="stylesheet" href=(crate::assets::CSS_PATH);
                script src=(crate::assets::JS_PATH) defer {}
            }
            body data-nav=(nav_name(nav)) {
                header.top {
                    span.brand { (lang.t("title")) }
                    @if let Some(session) = session {
                        nav {
                            a.active[nav == Nav::Board] href="/" { (lang.t("board")) }
                            a.active[nav == Nav::Desk] href="/desk" { (lang.t("desk")) }
                            a.active[nav == Nav::Ledger] href="/ledger" { (lang.t("ledger")) }
                        }
                        span.who {
                            (session.caller.subject) " · " (lang.role(session.role())) " · " (session.caller.territory)
                        }
                        form.inline method="post" action="/signout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button.link type="submit" { (lang.t("sign_out")) }
                        }
                    }
                    a.lang href=(format!("/lang?to={}", lang.other().code())) { (lang.t("language")) }
                }
                main { (body) }
                footer { (lang.t("timezone_note")) }
            }
        }
    }
}

fn nav_name(nav: Nav) -> &'static str {
    match nav {
        Nav::Board => "board",
        Nav::Desk => "desk",
        Nav::Ledger => "ledger",
        Nav::Case => "case",
        Nav::SignIn => "signin",
    }
}

/// A refusal as a message box (with the fields at fault, if any).
pub fn refusal_box(lang: Lang, refusal: &Refusal) -> Markup {
    html! {
        div.notice.refused role="alert" data-code=(format!("{:?}", refusal.code)) {
            strong { (lang.t("refused")) } (refusal.message)
            @if !refusal.fields.is_empty() {
                ul.fields {
                    @for (field, problem) in &refusal.fields { li { code { (field) } ": " (problem) } }
                }
            }
        }
    }
}

/// A whole page saying why something could not be shown.
pub fn refusal_page(lang: Lang, refusal: &Refusal) -> Response {
    let body = page(lang, None, Nav::Case, lang.t("refused"), refusal_box(lang, refusal));
    (refusal.http_status(), body).into_response()
}

/// No session: to the sign-in page (and back to `next` after it), or the
/// reason the intake service could not say who the user is.
impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::SignIn { next, expired } => {
                let mut query = form_urlencoded::Serializer::new(String::new());
                query.append_pair("next", &next);
                if expired {
                    query.append_pair("expired", "1");
                }
                Redirect::to(&format!("/signin?{}", query.finish())).into_response()
            }
            NoSession::Unavailable(refusal, lang) => refusal_page(lang, &refusal),
        }
    }
}
