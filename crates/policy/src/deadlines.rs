//! Deadline arithmetic: when a clock started at some instant warns, falls
//! due, and earns a yellow or red card, on the calendar of the organisation
//! whose clock it is.

use std::collections::BTreeSet;

use gridcase_calendar::Calendar;
use jiff::{SignedDuration, Timestamp};

use crate::{Limit, Span, Thresholds};

/// An instant computed on the calendar, with the years it relied on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub at: Timestamp,
    pub years: BTreeSet<i16>,
    pub fallback_years: BTreeSet<i16>,
}

/// Every instant the deadline watch acts at for one clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockPlan {
    pub started: Timestamp,
    pub span: Span,
    pub warning: Timestamp,
    pub due: Due,
    pub yellow_card: Timestamp,
    pub red_card: Timestamp,
}

impl ClockPlan {
    pub fn used_fallback(&self) -> bool {
        !self.due.fallback_years.is_empty()
    }
}

fn add(calendar: &Calendar, start: Timestamp, span: Span) -> Due {
    match span {
        Span::Calendar(duration) => {
            Due { at: start + duration, years: BTreeSet::new(), fallback_years: BTreeSet::new() }
        }
        Span::Working(amount) => {
            let computed = calendar.add_working(start, amount);
            Due { at: computed.value, years: computed.years, fallback_years: computed.fallback_years }
        }
    }
}

/// Plan a clock that starts at `started` with `limit`, on `calendar`.
/// `extra` is running time granted on top (approved extensions).
pub fn plan_clock(
    calendar: &Calendar,
    started: Timestamp,
    limit: &Limit,
    extra: SignedDuration,
    thresholds: &Thresholds,
) -> ClockPlan {
    let span = match limit.span(calendar.working_day()) {
        Span::Calendar(d) => Span::Calendar(d + extra),
        Span::Working(d) => Span::Working(d + extra),
    };
    let mut due = add(calendar, started, span);
    let mut at = |percent: u32| {
        let point = add(calendar, started, span.scaled(percent));
        due.years.extend(point.years.iter().copied());
        due.fallback_years.extend(point.fallback_years.iter().copied());
        point.at
    };
    let warning = at(thresholds.warning_percent);
    let yellow_card = at(thresholds.yellow_card_percent);
    let red_card = at(thresholds.red_card_percent);
    ClockPlan { started, span, warning, due, yellow_card, red_card }
}
