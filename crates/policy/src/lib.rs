//! Dispatch policy as data, validated at start-up, and the deadline
//! arithmetic that applies it on the working calendar.
//!
//! The policy file (TOML, `deploy/policy/policy.toml`) names its `version`,
//! the limits of each tier (acknowledge, resolve, verify; each in calendar
//! minutes/hours/days, working hours or working days), the register limit of
//! cases left for manual registration, the warning threshold and the yellow-
//! and red-card thresholds (percent of the limit), per-organisation working
//! hours, the categories a command centre registers by hand, and the routes:
//! category (exact code or 2-digit major) × region-code prefix → handling
//! unit, optional tier and limit overrides. The most specific route wins:
//! the longest region prefix, then an exact category over a major.

mod limit;
mod parse;
mod planner;

use std::collections::{BTreeMap, BTreeSet};

use gridcase_calendar::WorkingHours;
use gridcase_domain::{Case, CategoryCode, Clock, ClockTerms, GridCode, OrgCode, RequestKind, Tier};

pub use limit::{Limit, LimitError, Span};
pub use parse::PolicyError;
pub use planner::{ClockTiming, Marks, Planner};

/// The limits of one tier (or a route's overrides of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierLimits {
    pub acknowledge: Limit,
    pub resolve: Limit,
    pub verify: Limit,
}

impl TierLimits {
    pub fn for_clock(&self, clock: Clock) -> Option<&Limit> {
        match clock {
            Clock::Acknowledge => Some(&self.acknowledge),
            Clock::Resolve => Some(&self.resolve),
            Clock::Verify => Some(&self.verify),
            Clock::Register | Clock::Reply | Clock::Callback => None,
        }
    }
}

/// Which categories a route covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum CategorySelector {
    /// A 2-digit major code: every category under it.
    Major(String),
    Exact(CategoryCode),
}

impl CategorySelector {
    pub fn matches(&self, category: &CategoryCode) -> bool {
        match self {
            CategorySelector::Major(major) => category.major() == major,
            CategorySelector::Exact(code) => code == category,
        }
    }

    fn specificity(&self) -> u8 {
        match self {
            CategorySelector::Major(_) => 0,
            CategorySelector::Exact(_) => 1,
        }
    }
}

/// Where cases of some categories in some region go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub category: CategorySelector,
    /// Region-code prefix the grid code must start with ("" = everywhere).
    pub region: String,
    pub unit: OrgCode,
    pub tier: Option<Tier>,
    pub acknowledge: Option<Limit>,
    pub resolve: Option<Limit>,
    pub verify: Option<Limit>,
    /// Line of the route in the policy file, for messages.
    pub line: usize,
}

/// Percentages of a clock's limit at which the deadline watch acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Warning (yellow light), default 70.
    pub warning_percent: u32,
    /// Yellow card (escalation to the next level), default 100: at the deadline.
    pub yellow_card_percent: u32,
    /// Red card, default 200: twice the limit.
    pub red_card_percent: u32,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub version: String,
    /// First 12 hex digits of the policy file's SHA-256.
    pub digest: String,
    pub tiers: BTreeMap<Tier, TierLimits>,
    /// How long a case may wait for manual registration.
    pub register: Limit,
    pub thresholds: Thresholds,
    pub default_hours: WorkingHours,
    pub hours: BTreeMap<OrgCode, WorkingHours>,
    pub manual_registration: BTreeSet<CategoryCode>,
    pub routes: Vec<Route>,
    pub escalation: Escalation,
    /// How long residents' contact details are kept (`[retention]`); none:
    /// until someone erases them.
    pub retention: Option<Retention>,
    /// Residents' requests: the reply limit of each kind, the callback limit.
    pub residents: Residents,
}

/// The duties a resident's request brings (`[residents]`): an answer within
/// the reply limit of its kind, from its filing (答复时限), and a callback
/// within the callback limit, from its closure (回访). Defaults: the local
/// 12345 rules published for consultation and help (3 working days) and
/// complaint and report (13 working days), local defaults rather than
/// national law; suggestion and praise, and the callback, reasoned defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Residents {
    pub reply: BTreeMap<RequestKind, Limit>,
    pub callback: Limit,
}

impl Default for Residents {
    fn default() -> Self {
        use RequestKind::*;
        let reply = [(Consultation, 3), (Help, 3), (Complaint, 13), (Report, 13), (Suggestion, 13), (Praise, 3)]
            .into_iter()
            .map(|(kind, days)| (kind, Limit::WorkingDays(days)))
            .collect();
        Self { reply, callback: Limit::WorkingDays(5) }
    }
}

/// An 8-hour working day, to compare limits of different units.
const WORKING_DAY: jiff::SignedDuration = jiff::SignedDuration::from_hours(8);

impl Residents {
    /// The limit of a resident's clock: the reply limit of the request's
    /// kind (a kind the file leaves out keeps its default; no kind: the
    /// longest), or the callback limit.
    pub fn limit(&self, clock: Clock, kind: Option<RequestKind>) -> Option<Limit> {
        match clock {
            Clock::Reply => match kind {
                Some(kind) => self.reply.get(&kind).cloned().or_else(|| Residents::default().reply.remove(&kind)),
                None => self.reply.values().max_by_key(|limit| limit.span(WORKING_DAY).amount()).cloned(),
            },
            Clock::Callback => Some(self.callback.clone()),
            _ => None,
        }
    }
}

/// The retention of residents' contact details (PIPL: deleted once their
/// purpose is served). The dispatcher erases them `contact_days` calendar
/// days after the case's end: after the resident's feedback on a closed
/// case (the last time anyone calls them back), or after a case is voided
/// or cancelled. A reopening starts the wait over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub contact_days: u32,
}

impl Retention {
    pub const MAX_DAYS: u32 = 3650;
}

/// The level of the hierarchy a case is raised to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The township's command centre.
    Township,
    /// The county office (县网格办).
    County,
}

/// Where each card raises a case (the escalation chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escalation {
    pub yellow_card: Level,
    pub red_card: Level,
}

impl Policy {
    /// The most specific route for a case, if any.
    pub fn route(&self, category: &CategoryCode, grid: &GridCode) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|route| route.category.matches(category) && grid.as_str().starts_with(&route.region))
            .max_by_key(|route| (route.region.len(), route.category.specificity()))
    }

    /// The units a case may be dispatched to, as the policy offers them:
    /// the unit of its route first, then every other unit routed to in its
    /// region, each once (a command centre may still choose another).
    pub fn units_for(&self, category: &CategoryCode, grid: &GridCode) -> Vec<&OrgCode> {
        let mut units: Vec<&OrgCode> = self.route(category, grid).map(|route| &route.unit).into_iter().collect();
        for route in self.routes.iter().filter(|route| grid.as_str().starts_with(&route.region)) {
            if !units.contains(&&route.unit) {
                units.push(&route.unit);
            }
        }
        units
    }

    /// The tier a case is registered at when nobody chose one: its route's
    /// tier, else its category's default tier (from the taxonomy), else
    /// NORMAL. The dispatcher registers with it, and so does a command
    /// centre's `Register` that names no tier.
    pub fn tier_for(&self, category: &CategoryCode, grid: &GridCode, category_default: Option<Tier>) -> Tier {
        self.route(category, grid).and_then(|route| route.tier).or(category_default).unwrap_or(Tier::Normal)
    }

    /// Whether cases of this category wait for a command centre to register them.
    pub fn registers_by_hand(&self, category: &CategoryCode) -> bool {
        self.manual_registration.contains(category)
    }

    /// The limit of one clock of a case: the register limit, or the limit of
    /// its tier with the overrides of the route that sends its category and
    /// region to the unit handling it (`unit`: none before a dispatch). A
    /// case dispatched by hand to another unit gets the tier's limits.
    pub fn clock_limit(
        &self,
        clock: Clock,
        tier: Option<Tier>,
        category: &CategoryCode,
        grid: &GridCode,
        unit: Option<&OrgCode>,
    ) -> Limit {
        self.limit_of(clock, tier, self.route_for(category, grid, unit))
    }

    /// How a clock of `case` counts its time: as recorded when its deadline
    /// was set, or, for a deadline set before terms were recorded (payload
    /// versions 1 and 2), as this policy would set it now. The one answer
    /// to "does this clock run in working time, on whose hours" for the
    /// dispatcher, the query service and gridctl.
    pub fn clock_terms(&self, clock: Clock, case: &Case) -> ClockTerms {
        case.terms.get(&clock).cloned().unwrap_or_else(|| match self.residents.limit(clock, case.request_kind) {
            Some(limit) => Self::terms(clock, &limit, None),
            None => self.terms_for(clock, case.tier, &case.category, &case.grid, case.unit.as_ref()),
        })
    }

    /// The terms this policy gives a clock of a case of `tier`, `category`
    /// and `grid` handled by `unit` (none yet): working time unless its limit
    /// is in calendar time, on the hours [`Policy::clock_hours`] names.
    pub fn terms_for(
        &self,
        clock: Clock,
        tier: Option<Tier>,
        category: &CategoryCode,
        grid: &GridCode,
        unit: Option<&OrgCode>,
    ) -> ClockTerms {
        Self::terms(clock, &self.clock_limit(clock, tier, category, grid, unit), unit)
    }

    /// The terms of a clock under `limit` for a case handled by `unit`.
    pub fn terms(clock: Clock, limit: &Limit, unit: Option<&OrgCode>) -> ClockTerms {
        ClockTerms { working: !matches!(limit, Limit::Calendar(_)), hours_of: Self::clock_hours(clock, unit).cloned() }
    }

    /// Whose working hours a clock runs on: the handling unit's for the
    /// acknowledge and resolve clocks, the default (command centre's) hours
    /// for the register and verify clocks.
    pub fn clock_hours(clock: Clock, unit: Option<&OrgCode>) -> Option<&OrgCode> {
        match clock {
            Clock::Acknowledge | Clock::Resolve => unit,
            Clock::Register | Clock::Verify | Clock::Reply | Clock::Callback => None,
        }
    }

    /// The route whose overrides apply to a case handled by `unit` (none
    /// yet: the route that would dispatch it).
    pub fn route_for(&self, category: &CategoryCode, grid: &GridCode, unit: Option<&OrgCode>) -> Option<&Route> {
        self.route(category, grid).filter(|route| unit.is_none_or(|unit| &route.unit == unit))
    }

    /// The limit of `clock` for a case of `tier` under `route`'s overrides.
    pub fn limit_of(&self, clock: Clock, tier: Option<Tier>, route: Option<&Route>) -> Limit {
        if clock == Clock::Register {
            return self.register.clone();
        }
        if let Some(limit) = self.residents.limit(clock, None) {
            return limit;
        }
        let limits = self.limits(tier.unwrap_or(Tier::Normal), route);
        limits.for_clock(clock).cloned().expect("every clock but register has a tier limit")
    }

    /// The limits that apply to a case of `tier` routed by `route`.
    pub fn limits(&self, tier: Tier, route: Option<&Route>) -> TierLimits {
        let base = self.tiers.get(&tier).cloned().expect("every tier is defined (checked at load)");
        match route {
            None => base,
            Some(route) => TierLimits {
                acknowledge: route.acknowledge.clone().unwrap_or(base.acknowledge),
                resolve: route.resolve.clone().unwrap_or(base.resolve),
                verify: route.verify.clone().unwrap_or(base.verify),
            },
        }
    }

    /// The working hours of an organisation.
    pub fn hours_of(&self, organisation: &OrgCode) -> &WorkingHours {
        self.hours.get(organisation).unwrap_or(&self.default_hours)
    }

    /// "version@digest", recorded on every event the policy produced.
    pub fn stamp(&self) -> String {
        format!("{}@{}", self.version, self.digest)
    }
}

#[cfg(test)]
mod tests;
