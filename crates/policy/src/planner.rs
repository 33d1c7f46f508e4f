//! The deadline rulebook: deadlines as the policy sets them, on the calendar
//! of the organisation whose clock it is, and the instants a running clock
//! warns and earns its cards at. The dispatcher (automatic steps and the
//! deadline watch), the lifecycle API (manual dispatch and reassignment),
//! the query service (how long a clock is overdue) and `gridctl deadline`
//! all compute with these functions, so they agree to the second.
//!
//! * Which limit applies to a clock: [`Policy::clock_limit`].
//! * When a clock falls due: [`Planner::add`] of the limit's [`Span`] on the
//!   calendar of [`Planner::calendar_for`] the unit (the register and verify
//!   clocks run on the default hours).
//! * How time on hold counts: [`Planner::left_at`] keeps what was left when
//!   the hold began; [`Planner::moved`] restarts the clock at the
//!   resumption with the running time it had used
//!   ([`ClockTiming::used_before`]).
//! * When it warns, and earns a yellow or red card: [`Planner::marks`], each
//!   the moment a percentage of the allowed running time is used.

use std::collections::BTreeSet;

use gridcase_calendar::{Calendar, Computed};
use gridcase_domain::{CategoryCode, Clock, ClockTerms, DeadlineBasis, Deadlines, GridCode, OrgCode, Tier};
use jiff::{SignedDuration, Timestamp};

use crate::{Limit, Policy, Span};

/// The timing of one running clock. A clock that was paused (hold)
/// restarts at a new `origin` with part of its allowance already used, so
/// its thresholds stay percentages of running time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockTiming {
    /// Since when the clock has been running without a pause.
    pub origin: Timestamp,
    /// Running time used before `origin`.
    pub used_before: SignedDuration,
    /// Running time allowed in all (limit plus extensions).
    pub allowed: SignedDuration,
    pub due: Timestamp,
    /// Working time (on `hours_of`'s calendar) or calendar time.
    pub working: bool,
    /// Whose working hours the clock runs on.
    pub hours_of: Option<OrgCode>,
}

/// The instants the deadline watch acts at, besides the deadline itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// The yellow light: the warning share of the allowed time is used.
    pub warning: Timestamp,
    pub yellow_card: Timestamp,
    pub red_card: Timestamp,
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
    pub fn add(&self, start: Timestamp, span: Span, organisation: Option<&OrgCode>) -> Computed<Timestamp> {
        match span {
            Span::Calendar(d) => {
                Computed { value: start + d, years: Default::default(), fallback_years: Default::default() }
            }
            Span::Working(d) => self.calendar_for(organisation).add_working(start, d),
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

    /// A clock started at `origin` and due at `due`, with nothing used before.
    pub fn timing(&self, origin: Timestamp, due: Timestamp, working: bool, hours_of: Option<OrgCode>) -> ClockTiming {
        let allowed = self.running(working, hours_of.as_ref(), origin, due);
        ClockTiming { origin, used_before: SignedDuration::ZERO, allowed, due, working, hours_of }
    }

    /// Running time left on a clock at `at` (what a hold approved then keeps).
    pub fn left_at(&self, timing: &ClockTiming, at: Timestamp) -> SignedDuration {
        self.running(timing.working, timing.hours_of.as_ref(), at, timing.due)
    }

    /// The same clock with its deadline moved to `due`. An extension keeps
    /// its origin; after a hold (`resumed`: when work resumed and the
    /// running time that was left when the hold began) the clock runs again
    /// from the resumption with what it had used before, so time on hold
    /// counts for nothing and its marks stay shares of running time.
    pub fn moved(
        &self,
        timing: &ClockTiming,
        due: Timestamp,
        resumed: Option<(Timestamp, SignedDuration)>,
    ) -> ClockTiming {
        let (origin, used_before) = match resumed {
            Some((at, left)) => (at, (timing.allowed - left).max(SignedDuration::ZERO)),
            None => (timing.origin, timing.used_before),
        };
        let allowed = used_before + self.running(timing.working, timing.hours_of.as_ref(), origin, due);
        ClockTiming { origin, used_before, allowed, due, ..timing.clone() }
    }

    /// When a running clock warns and earns its yellow and red cards: the
    /// moments the policy's percentages of its allowed running time are used.
    pub fn marks(&self, timing: &ClockTiming) -> Marks {
        let thresholds = &self.policy.thresholds;
        let at = |percent: u32| {
            let target = Span::Calendar(timing.allowed).scaled(percent).amount();
            if target <= timing.used_before {
                return timing.origin;
            }
            let rest = target - timing.used_before;
            let span = if timing.working { Span::Working(rest) } else { Span::Calendar(rest) };
            self.add(timing.origin, span, timing.hours_of.as_ref()).value
        };
        Marks {
            warning: at(thresholds.warning_percent),
            yellow_card: at(thresholds.yellow_card_percent),
            red_card: at(thresholds.red_card_percent),
        }
    }

    /// What deadlines computed from these instants rest on, with how each
    /// clock they set counts its time.
    pub fn basis<'c>(
        &self,
        terms: impl IntoIterator<Item = (Clock, ClockTerms)>,
        computed: impl IntoIterator<Item = &'c Computed<Timestamp>>,
    ) -> DeadlineBasis {
        let (mut years, mut fallback) = (BTreeSet::new(), BTreeSet::new());
        for c in computed {
            years.extend(c.years.iter().copied());
            fallback.extend(c.fallback_years.iter().copied());
        }
        DeadlineBasis {
            policy: self.policy.stamp(),
            calendar: self.calendar.describe(&years, &fallback),
            fallback: !fallback.is_empty(),
            terms: terms.into_iter().collect(),
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
        let limit = |clock| self.policy.clock_limit(clock, Some(tier), category, grid, Some(unit));
        let acknowledge = self.add(now, self.span_of(&limit(Clock::Acknowledge), Some(unit)), Some(unit));
        let resolve = self.add(now, self.span_of(&limit(Clock::Resolve), Some(unit)), Some(unit));
        let terms = [Clock::Acknowledge, Clock::Resolve]
            .map(|clock| (clock, self.policy.terms_for(clock, Some(tier), category, grid, Some(unit))));
        let basis = self.basis(terms, [&acknowledge, &resolve]);
        let fallback = acknowledge.fallback_years.union(&resolve.fallback_years).copied().collect();
        (Deadlines { acknowledge_due: acknowledge.value, resolve_due: resolve.value, basis: Some(basis) }, fallback)
    }
}
