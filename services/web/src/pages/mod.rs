//! The console's pages, each a thin shell: read the form, call the services
//! as the user, render what they answered.

pub mod board;
pub mod case;
pub mod chart;
pub mod desk;
pub mod layout;
pub mod ledger;
pub mod map;
pub mod photos;
pub mod signin;

use gridcase_auth::{Operation, TokenRole};
use jiff::tz::TimeZone;

use crate::i18n::Lang;
use crate::session::Session;

fn zone() -> TimeZone {
    TimeZone::get(gridcase_calendar::TIME_ZONE).expect("the bundled tz database has Asia/Shanghai")
}

/// A time as Beijing civil time with its offset: `2026-12-06 14:03 +08:00`.
pub fn time(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
        .map(|t| t.to_zoned(zone()).strftime("%Y-%m-%d %H:%M %:z").to_string())
        .unwrap_or_default()
}

/// Today in Beijing, `YYYY-MM-DD`, and the first day of its month.
pub fn today() -> (String, String) {
    day_and_month_of(jiff::Timestamp::now())
}

/// The Beijing day of `at`, `YYYY-MM-DD`, and the first day of its month.
pub fn day_and_month_of(at: jiff::Timestamp) -> (String, String) {
    let at = at.to_zoned(zone());
    (at.strftime("%Y-%m-%d").to_string(), at.strftime("%Y-%m-01").to_string())
}

/// A length of time for people: working time in working hours (and
/// minutes), calendar time in days, hours and minutes.
pub fn span(lang: Lang, seconds: i64, working: bool) -> String {
    let seconds = seconds.unsigned_abs();
    let (hours, minutes) = (seconds / 3600, seconds % 3600 / 60);
    match (working, lang) {
        (true, Lang::Zh) => format!("{hours} 工作小时 {minutes} 分"),
        (true, Lang::En) => format!("{hours} working h {minutes} min"),
        (false, Lang::Zh) if hours >= 24 => format!("{} 天 {} 小时", hours / 24, hours % 24),
        (false, Lang::En) if hours >= 24 => format!("{} d {} h", hours / 24, hours % 24),
        (false, Lang::Zh) => format!("{hours} 小时 {minutes} 分"),
        (false, Lang::En) => format!("{hours} h {minutes} min"),
    }
}

/// Whether the signed-in user's role may do `operation` at all (the console
/// offers only those buttons; the services decide each call).
pub fn may(session: &Session, operation: Operation) -> bool {
    TokenRole::parse(session.role()).is_some_and(|role| gridcase_auth::policy::role_may(role, operation))
}

/// A fresh command id: put in a form when it is shown, so submitting the
/// form twice (a double click, a retry after a timeout) is one command.
pub fn command_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The fields of a submitted form, in order (a name may repeat, as a list
/// of ticked boxes does).
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// The region a page looks at by default: the caller's territory when it
/// is a region, else the whole of what they may see (a unit's queue).
pub fn home_region(session: &Session) -> String {
    let territory = &session.caller.territory;
    if territory.bytes().all(|b| b.is_ascii_digit()) { territory.clone() } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_in_the_clock_s_own_time() {
        assert_eq!(span(Lang::Zh, 3 * 3600 + 20 * 60, true), "3 工作小时 20 分");
        assert_eq!(span(Lang::En, -(26 * 3600), false), "1 d 2 h");
        assert_eq!(span(Lang::En, 59, false), "0 h 0 min");
    }

    #[test]
    fn repeated_form_fields_are_all_kept() {
        let fields = Fields::parse(b"case=a&case=b&reason=%E7%9D%A3+now&csrf=x");
        assert_eq!(fields.all("case"), ["a", "b"]);
        assert_eq!(fields.get("reason"), "督 now");
        assert_eq!(fields.get("missing"), "");
    }
}
