//! Deadlines as the policy sets them, on the calendar of the organisation
//! whose clock it is: used by the dispatcher for automatic steps and by the
//! lifecycle API for manual dispatch, reassignment and extensions, so both
//! compute the same deadline the same way and record the same basis.

use std::collections::BTreeSet;

use gridcase_calendar::Calendar;
use gridcase_domain::{CategoryCode, DeadlineBasis, Deadlines, GridCode, OrgCode, Tier};
use jiff::{SignedDuration, Timestamp};

use crate::{Limit, Policy, Span};

/// An instant computed on the calendar, with the years it relied on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Computed {
    pub at: Timestamp,
    pub years: BTreeSet<i16>,
    pub fallback_years: BTreeSet<i16>,
}

pub struct Planner<'a> {
    pub policy: &'a Policy,
    /// The year files with the policy's default hours.
    pub calendar: &'a Calendar,
}

impl<'a> Planner<'a> {
    pub fn new(policy: &'a Policy, calendar: &'a Calendar) -> Self {
        Self { policy, calendar }
    }

    /// The calendar of an organisation (its working hours), or the default.
    pub fn calendar_for(&self, organisation: Option<&OrgCode>) -> Calendar {
        match organisation {
            Some(org) => self.calendar.with_hours(self.policy.hours_of(org).clone()),
            None => self.calendar.with_hours(self.policy.default_hours.clone()),
        }
    }

    pub fn span_of(&self, limit: &Limit, organisation: Option<&OrgCode>) -> Span {
        limit.span(self.calendar_for(organisation).working_day())
    }

    /// The instant `span` after `start` on `organisation`'s calendar.
    pub fn add(&self, start: Timestamp, span: Span, organisation: Option<&OrgCode>) -> Computed {
        match span {
            Span::Calendar(d) => Computed { at: start + d, ..Computed::default() },
            Span::Working(d) => {
                let computed = self.calendar_for(organisation).add_working(start, d);
                Computed { at: computed.value, years: computed.years, fallback_years: computed.fallback_years }
            }
        }
    }

    /// Running time between two instants (working or calendar time), never negative.
    pub fn running(
        &self,
        working: bool,
        organisation: Option<&OrgCode>,
        from: Timestamp,
        to: Timestamp,
    ) -> SignedDuration {
        let elapsed = if working {
            self.calendar_for(organisation).working_elapsed(from, to).value
        } else {
            from.duration_until(to)
        };
        elapsed.max(SignedDuration::ZERO)
    }

    /// What deadlines computed from these instants rest on.
    pub fn basis<'c>(&self, computed: impl IntoIterator<Item = &'c Computed>) -> DeadlineBasis {
        let (mut years, mut fallback) = (BTreeSet::new(), BTreeSet::new());
        for c in computed {
            years.extend(c.years.iter().copied());
            fallback.extend(c.fallback_years.iter().copied());
        }
        DeadlineBasis {
            policy: self.policy.stamp(),
            calendar: self.calendar.describe(&years, &fallback),
            fallback: !fallback.is_empty(),
        }
    }

    /// Deadlines of a case of `tier` dispatched to `unit` at `now`. A route's
    /// overrides apply when it routes this category and region to this unit.
    pub fn dispatch(
        &self,
        tier: Tier,
        category: &CategoryCode,
        grid: &GridCode,
        unit: &OrgCode,
        now: Timestamp,
    ) -> (Deadlines, Vec<i16>) {
        let route = self.policy.route(category, grid).filter(|route| &route.unit == unit);
        let limits = self.policy.limits(tier, route);
        let acknowledge = self.add(now, self.span_of(&limits.acknowledge, Some(unit)), Some(unit));
        let resolve = self.add(now, self.span_of(&limits.resolve, Some(unit)), Some(unit));
        let basis = self.basis([&acknowledge, &resolve]);
        let fallback = acknowledge.fallback_years.union(&resolve.fallback_years).copied().collect();
        (Deadlines { acknowledge_due: acknowledge.at, resolve_due: resolve.at, basis: Some(basis) }, fallback)
    }
}
