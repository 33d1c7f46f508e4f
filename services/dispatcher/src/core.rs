//! The dispatcher's decisions, free of IO: what it knows of each case
//! ([`Tracked`], folded from the case's stored events) and what to do next
//! ([`Core::next_action`]) at a given `now`.
//!
//! The dispatcher is level-triggered: it does not react to "an event
//! happened", it looks at where a case stands and decides the one next step
//! (register, dispatch, set a deadline, warn, mark overdue, escalate). After
//! that step's event comes back from the log, it looks again. A restart, a
//! redelivery or a second instance therefore converges on the same history:
//! a step already taken is visible in the state, and two instances racing
//! for the same step are serialised by the log's per-case sequence check.

use std::collections::BTreeMap;

use gridcase_calendar::{Calendar, Computed};
use gridcase_domain::{
    ActorRole, Case, Clock, ClockMark, ClockTerms, Command, ContactState, Event, OrgCode, State, Supervision, Text,
    Tier,
};
use gridcase_envelope::{CaseSubject, Head};
use gridcase_policy::{ClockTiming, Limit, Marks, Planner, Policy, Span};
use gridcase_reference::Reference;
use jiff::{SignedDuration, Timestamp};

/// Marks the system notes the dispatcher leaves on a case.
pub const WAITING_NOTE_PREFIX: &str = "等待人工立案";

/// What the dispatcher knows of one case (a line of the snapshot: its
/// format test in `snapshot` pins this shape).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Tracked {
    pub case: Case,
    pub subject: CaseSubject,
    /// Stream sequence and hash of the case's last event: the next append expects them.
    pub last_sequence: u64,
    pub last_hash: String,
    pub filed_at: Timestamp,
    pub clocks: BTreeMap<Clock, ClockTiming>,
    /// A system note says the case waits for manual registration.
    pub waiting_noted: bool,
    /// When a hold began and how much of the resolve clock was left then.
    pub hold: Option<(Timestamp, SignedDuration)>,
    /// The resolve deadline must move: approved extension days not yet applied.
    pub extension_to_apply: u32,
    /// Remaining resolve time to re-arm after a hold, and when work resumed.
    pub resume_remaining: Option<(Timestamp, SignedDuration)>,
    /// When the case was last resolved: its verify clock starts there.
    pub resolved_at: Option<Timestamp>,
    /// A reopened case needs a fresh resolve deadline.
    pub reopened_at: Option<Timestamp>,
    /// The case was registered and never dispatched or returned.
    pub awaiting_first_dispatch: bool,
    /// When the case ended for the resident (its closure, the feedback on
    /// it, or voided, cancelled): the retention of their contact details
    /// counts from the latest of these.
    pub retention_from: Option<Timestamp>,
    /// When the case was last closed: a resident's request's callback clock
    /// starts there.
    #[serde(default)]
    pub closed_at: Option<Timestamp>,
}

/// What the core needs of a stored event beside the event itself: when
/// and by whom it happened, where it sits in the stream, its hash (what
/// the case's next event chains to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub at: Timestamp,
    pub role: ActorRole,
    pub sequence: u64,
    pub hash: String,
}

/// Whether a case in this state can need no deadline step of the
/// dispatcher's: final (voided, cancelled), or closed (no clock runs; only a
/// reopening, which the dispatcher reads, takes it out). Such cases are not
/// kept ([`Core::keeps`]) unless a retention erasure is still to come, so
/// what the dispatcher holds grows with open cases, not with the history.
pub fn dormant(state: State) -> bool {
    state.is_final() || state == State::Closed
}

/// Whether a resident's request still owes the resident something the
/// dispatcher watches: an answer (in a state where its clock runs), or a
/// callback after its closure. Such a case is kept while closed.
pub fn resident_duty_pending(case: &Case) -> bool {
    case.request_kind.is_some()
        && ((!case.replied && Clock::Reply.runs_in(case.state)) || (case.state == State::Closed && !case.called_back))
}

/// The event types of the steps the dispatcher takes.
pub const STEP_KINDS: [&str; 7] = [
    "registered",
    "progress_added",
    "dispatched",
    "deadline_set",
    "clock_marked",
    "supervised",
    "resident_data_erased",
];

/// One step for the dispatcher to take on one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub command: Command,
    /// A stable key: the same step on the same case version has the same
    /// key, so a step taken twice (two instances, a retry) carries the same
    /// event id and is recognised as one.
    pub key: String,
    /// Calendar years a deadline of this step counted Monday–Friday.
    pub fallback_years: Vec<i16>,
}

pub struct Core<'a> {
    pub policy: &'a Policy,
    pub calendar: &'a Calendar,
    pub reference: &'a Reference,
}

impl Tracked {
    /// Where the case stands in the log: what its next step chains to.
    pub fn head(&self) -> Head {
        Head {
            case_id: self.case.id,
            subject: self.subject.clone(),
            last_sequence: self.last_sequence,
            last_hash: Some(self.last_hash.clone()),
            version: self.case.version,
        }
    }
}

impl<'a> Core<'a> {
    fn planner(&self) -> Planner<'_> {
        Planner::new(self.policy, self.calendar)
    }

    fn span_of(&self, limit: &Limit, organisation: Option<&OrgCode>) -> Span {
        self.planner().span_of(limit, organisation)
    }

    /// The instant `span` after `start` on `organisation`'s calendar, with
    /// the years it used and those without a calendar file.
    fn add(&self, start: Timestamp, span: Span, organisation: Option<&OrgCode>) -> Computed<Timestamp> {
        self.planner().add(start, span, organisation)
    }

    /// A clock started at `origin`, due at `due`, with nothing used before.
    fn fresh(&self, origin: Timestamp, due: Timestamp, terms: ClockTerms) -> ClockTiming {
        self.planner().timing(origin, due, terms.working, terms.hours_of)
    }

    /// A step setting one deadline, with what it was computed from and how
    /// the clock counts its time.
    fn set_deadline(
        &self,
        tracked: &Tracked,
        clock: Clock,
        terms: ClockTerms,
        computed: Computed<Timestamp>,
        detail: &str,
    ) -> Option<Action> {
        let basis = Some(self.planner().basis([(clock, terms)], [&computed]));
        let fallback = computed.fallback_years.into_iter().collect();
        self.action(tracked, Command::SetDeadline { clock, due: computed.value, basis }, detail, fallback)
    }

    /// The terms of a clock that starts now: the policy's, as it stands.
    fn fresh_terms(&self, case: &Case, clock: Clock) -> ClockTerms {
        self.policy.terms_for(clock, case.tier, &case.category, &case.grid, case.unit.as_ref())
    }

    fn tier_limit(&self, case: &Case, clock: Clock) -> Limit {
        self.policy.clock_limit(clock, case.tier, &case.category, &case.grid, case.unit.as_ref())
    }

    /// Fold one event (`observed` says when, by whom, where in the stream)
    /// into what we know of its case.
    pub fn observe(&self, tracked: Option<Tracked>, observed: &Observed, event: &Event) -> Option<Tracked> {
        let (at, sequence) = (observed.at, observed.sequence);
        let mut tracked = match (tracked, event) {
            (None, Event::Filed(filed)) => Tracked {
                case: gridcase_domain::evolve(None, event)?,
                subject: CaseSubject::for_grid(&filed.grid, &filed.case_id),
                last_sequence: sequence,
                last_hash: observed.hash.clone(),
                filed_at: at,
                clocks: BTreeMap::new(),
                waiting_noted: false,
                hold: None,
                extension_to_apply: 0,
                resume_remaining: None,
                resolved_at: None,
                reopened_at: None,
                awaiting_first_dispatch: false,
                retention_from: None,
                closed_at: None,
            },
            (None, _) => return None,
            (Some(mut tracked), _) => {
                tracked.case = gridcase_domain::evolve(Some(tracked.case), event)?;
                tracked.last_sequence = sequence;
                tracked.last_hash = observed.hash.clone();
                tracked
            }
        };
        match event {
            Event::Registered { .. } => {
                tracked.clocks.remove(&Clock::Register);
                tracked.awaiting_first_dispatch = tracked.case.returns == 0;
            }
            // A merged duplicate is voided: no clock runs, nothing is owed.
            Event::Voided { .. } | Event::Cancelled { .. } | Event::MergedInto { .. } => {
                tracked.clocks.clear();
                tracked.retention_from = Some(at);
            }
            Event::FeedbackRecorded { .. } if tracked.case.state == State::Closed => tracked.retention_from = Some(at),
            Event::Replied { .. } => {
                tracked.clocks.remove(&Clock::Reply);
            }
            Event::CallbackRecorded { reached: true, .. } => {
                tracked.clocks.remove(&Clock::Callback);
                if tracked.case.state == State::Closed {
                    tracked.retention_from = Some(at);
                }
            }
            Event::Dispatched { acknowledge_due, resolve_due, .. }
            | Event::Reassigned { acknowledge_due, resolve_due, .. } => {
                tracked.awaiting_first_dispatch = false;
                for (clock, due) in [(Clock::Acknowledge, *acknowledge_due), (Clock::Resolve, *resolve_due)] {
                    let terms = self.policy.clock_terms(clock, &tracked.case);
                    tracked.clocks.insert(clock, self.fresh(at, due, terms));
                }
                tracked.extension_to_apply = 0;
                tracked.hold = None;
                tracked.resume_remaining = None;
                tracked.reopened_at = None;
            }
            Event::Acknowledged { .. } => {
                tracked.clocks.remove(&Clock::Acknowledge);
            }
            Event::Returned { .. } => {
                tracked.clocks.remove(&Clock::Acknowledge);
                tracked.clocks.remove(&Clock::Resolve);
                tracked.awaiting_first_dispatch = false;
            }
            Event::ProgressAdded { note, .. }
                if observed.role == ActorRole::System && note.as_str().starts_with(WAITING_NOTE_PREFIX) =>
            {
                tracked.waiting_noted = true;
            }
            Event::ExtensionApproved { approved_working_days, .. } => {
                tracked.extension_to_apply += approved_working_days
            }
            Event::HoldApproved { .. } => {
                if let Some(timing) = tracked.clocks.get(&Clock::Resolve) {
                    tracked.hold = Some((at, self.planner().left_at(timing, at)));
                }
            }
            Event::Resumed => {
                if let Some((_, left)) = tracked.hold.take() {
                    tracked.resume_remaining = Some((at, left));
                }
            }
            Event::Resolved { .. } => {
                tracked.clocks.remove(&Clock::Verify);
                tracked.resolved_at = Some(at);
            }
            Event::VerificationPassed { .. } => {
                tracked.clocks.remove(&Clock::Verify);
                tracked.retention_from = Some(at);
                tracked.closed_at = Some(at);
            }
            Event::VerificationFailed { .. } => {
                tracked.clocks.remove(&Clock::Verify);
            }
            Event::Reopened { .. } => {
                tracked.reopened_at = Some(at);
                tracked.retention_from = None;
                tracked.closed_at = None;
                tracked.clocks.remove(&Clock::Callback);
            }
            Event::DeadlineSet { clock, due, .. } => {
                let terms = self.policy.clock_terms(*clock, &tracked.case);
                let resumed_with = tracked.resume_remaining.map(|(_, left)| left);
                let moved = match tracked.clocks.get(clock) {
                    // The same resolve clock moved: after a hold it runs again
                    // from now with what it had used; an extension keeps its origin.
                    Some(timing) if *clock == Clock::Resolve && tracked.reopened_at.is_none() => {
                        Some(self.planner().moved(timing, *due, resumed_with.map(|left| (at, left))))
                    }
                    _ => None,
                };
                let timing = moved.unwrap_or_else(|| self.fresh(at, *due, terms));
                tracked.clocks.insert(*clock, timing);
                if *clock == Clock::Resolve {
                    tracked.extension_to_apply = 0;
                    tracked.resume_remaining = None;
                    tracked.reopened_at = None;
                }
            }
            _ => {}
        }
        Some(tracked)
    }

    fn action(&self, tracked: &Tracked, command: Command, detail: &str, fallback: Vec<i16>) -> Option<Action> {
        let key = format!("{}/{}/{}/{}", tracked.case.id, tracked.case.version + 1, command.name(), detail);
        Some(Action { command, key, fallback_years: fallback })
    }

    /// When the retention policy erases the case's contact details, if it
    /// will: details still there, and the case ended for the resident.
    pub fn retention_due(&self, tracked: &Tracked) -> Option<Timestamp> {
        let retention = self.policy.retention?;
        if tracked.case.contact != ContactState::Given || !dormant(tracked.case.state) {
            return None;
        }
        let from = tracked.retention_from?;
        from.checked_add(SignedDuration::from_hours(24 * i64::from(retention.contact_days))).ok()
    }

    /// Whether the dispatcher keeps the case: it may still need a deadline
    /// step, or (with a retention policy) its contact details are still to
    /// be erased.
    pub fn keeps(&self, tracked: &Tracked) -> bool {
        let retention_pending = self.policy.retention.is_some() && tracked.case.contact == ContactState::Given;
        !dormant(tracked.case.state) || retention_pending || resident_duty_pending(&tracked.case)
    }

    /// A resident's request's clocks: the reply clock from the filing, on
    /// the limit of its kind; the callback clock from each closure. Both on
    /// the command centre's (default) hours, as the policy's
    /// `[residents]` limits say.
    fn resident_clocks(&self, tracked: &Tracked) -> Option<Action> {
        let case = &tracked.case;
        let kind = case.request_kind?;
        let arm = |clock: Clock, origin: Timestamp, detail: &str| {
            let limit = self.policy.residents.limit(clock, Some(kind))?;
            let due = self.add(origin, self.span_of(&limit, None), None);
            self.set_deadline(tracked, clock, Policy::terms(clock, &limit, None), due, detail)
        };
        if !case.replied && Clock::Reply.runs_in(case.state) && !case.deadlines.contains_key(&Clock::Reply) {
            return arm(Clock::Reply, tracked.filed_at, "reply");
        }
        if case.state == State::Closed && !case.called_back && !case.deadlines.contains_key(&Clock::Callback) {
            return arm(Clock::Callback, tracked.closed_at?, "callback");
        }
        None
    }

    /// The next step for a case at `now`, if any.
    pub fn next_action(&self, tracked: &Tracked, now: Timestamp) -> Option<Action> {
        let case = &tracked.case;
        if let Some(due) = self.retention_due(tracked)
            && now >= due
        {
            let days = self.policy.retention.map(|r| r.contact_days).unwrap_or_default();
            let reason = Text::reason(&format!(
                "保留期满: 办结评价后 {days} 天删除居民联系方式 (retention policy {})",
                self.policy.stamp()
            ))
            .expect("valid text");
            return self.action(tracked, Command::EraseResidentData { reason }, "retention", vec![]);
        }
        let route = self.policy.route(&case.category, &case.grid);
        match case.state {
            State::Reported => {
                let manual = self.policy.registers_by_hand(&case.category) || route.is_none();
                if !manual {
                    let default = self.reference.taxonomy.category(&case.category).map(|c| c.default_tier);
                    let tier = self.policy.tier_for(&case.category, &case.grid, default);
                    let command = Command::Register { tier, note: None, policy: Some(self.policy.stamp()) };
                    return self.action(tracked, command, "", vec![]);
                }
                if !tracked.waiting_noted {
                    let why = if route.is_none() {
                        format!(
                            "{WAITING_NOTE_PREFIX}: 分派策略 {} 中没有类别 {} 在 {} 的派遣规则 (no routing rule for this category and region)",
                            self.policy.version, case.category, case.grid
                        )
                    } else {
                        format!(
                            "{WAITING_NOTE_PREFIX}: 类别 {} 由指挥中心人工立案 (registered by hand by policy)",
                            case.category
                        )
                    };
                    let note = Text::reason(&why).expect("system note is valid text");
                    return self.action(tracked, Command::AddProgress { note, attachments: vec![] }, "waiting", vec![]);
                }
                if !case.deadlines.contains_key(&Clock::Register) {
                    let span = self.span_of(&self.policy.register, None);
                    let computed = self.add(tracked.filed_at, span, None);
                    let terms = self.fresh_terms(case, Clock::Register);
                    return self.set_deadline(tracked, Clock::Register, terms, computed, "register");
                }
            }
            State::Registered if tracked.awaiting_first_dispatch => {
                if let Some(route) = route {
                    let tier = case.tier.unwrap_or(Tier::Normal);
                    let (deadlines, fallback) =
                        self.planner().dispatch(tier, &case.category, &case.grid, &route.unit, now);
                    let command = Command::Dispatch { unit: route.unit.clone(), deadlines };
                    return self.action(tracked, command, route.unit.as_str(), fallback);
                }
            }
            _ => {}
        }
        if let Some(action) = self.resident_clocks(tracked) {
            return Some(action);
        }
        if let Some(action) = self.rearm(tracked, now) {
            return Some(action);
        }
        self.watch(tracked, now)
    }

    /// Deadlines that must move: an approved extension, the end of a hold, a
    /// reopened case, a resolved case's verify clock.
    fn rearm(&self, tracked: &Tracked, now: Timestamp) -> Option<Action> {
        let case = &tracked.case;
        let resolve = tracked.clocks.get(&Clock::Resolve);
        let unit = case.unit.as_ref();
        let resolve_settable = matches!(case.state, State::Dispatched | State::InProgress | State::OnHold);
        if resolve_settable && let Some(timing) = resolve {
            // A moved deadline keeps how its clock counts time.
            let terms = ClockTerms { working: timing.working, hours_of: timing.hours_of.clone() };
            if tracked.extension_to_apply > 0 {
                let span = self.span_of(&Limit::WorkingDays(tracked.extension_to_apply), unit);
                let due = self.add(timing.due, span, unit);
                return self.set_deadline(tracked, Clock::Resolve, terms, due, "extension");
            }
            if case.state == State::InProgress
                && let Some((resumed_at, left)) = tracked.resume_remaining
            {
                // The clock runs again from the moment work resumed.
                let span = if timing.working { Span::Working(left) } else { Span::Calendar(left) };
                let due = self.add(resumed_at, span, unit);
                return self.set_deadline(tracked, Clock::Resolve, terms, due, "resume");
            }
        }
        if case.state == State::InProgress
            && let Some(reopened) = tracked.reopened_at
        {
            let span = self.span_of(&self.tier_limit(case, Clock::Resolve), unit);
            let terms = self.fresh_terms(case, Clock::Resolve);
            return self.set_deadline(tracked, Clock::Resolve, terms, self.add(reopened, span, unit), "reopened");
        }
        if case.state == State::Resolved && !case.deadlines.contains_key(&Clock::Verify) {
            // The verify clock starts at the resolution and runs on the
            // command centre's (default) hours.
            let span = self.span_of(&self.tier_limit(case, Clock::Verify), None);
            let due = self.add(tracked.resolved_at.unwrap_or(now), span, None);
            return self.set_deadline(tracked, Clock::Verify, self.fresh_terms(case, Clock::Verify), due, "verify");
        }
        None
    }

    /// The organisation a card raises the case to: the township's command
    /// centre or the county office, as the registry names them.
    fn escalation_target(&self, case: &Case, level: Supervision) -> Option<OrgCode> {
        let chain = &self.policy.escalation;
        let to = if level >= Supervision::RedCard { chain.red_card } else { chain.yellow_card };
        let region = match to {
            gridcase_policy::Level::Township => case.grid.township().to_string(),
            gridcase_policy::Level::County => case.grid.county().to_owned(),
        };
        self.reference.registry.region(&region).and_then(|r| r.command_centre.clone())
    }

    /// The deadline watch: warn, mark overdue, escalate.
    fn watch(&self, tracked: &Tracked, now: Timestamp) -> Option<Action> {
        let case = &tracked.case;
        for (clock, timing) in &tracked.clocks {
            // Only clocks that run in this state, with the deadline the case holds.
            if !clock.runs_in(case.state) || case.deadlines.get(clock) != Some(&timing.due) {
                continue;
            }
            let Marks { warning, yellow_card: yellow, red_card: red } = self.planner().marks(timing);
            let marked = |mark| case.marks.contains(&(*clock, mark));
            let mark = |mark: ClockMark| {
                let command = Command::MarkClock { clock: *clock, mark, due: timing.due };
                self.action(tracked, command, &format!("{clock:?}/{mark:?}/{}", timing.due), vec![])
            };
            if now >= warning && now < timing.due && !marked(ClockMark::Warning) && !marked(ClockMark::Overdue) {
                return mark(ClockMark::Warning);
            }
            if now >= timing.due && !marked(ClockMark::Overdue) {
                return mark(ClockMark::Overdue);
            }
            let escalate = |level: Supervision, why: String| {
                let reason = Text::reason(&why).expect("valid text");
                let command = Command::Supervise { level, reason, escalated_to: self.escalation_target(case, level) };
                self.action(tracked, command, &format!("{level:?}"), vec![])
            };
            // A closed case is not supervised (its callback is the centre's own duty).
            if case.state == State::Closed {
                continue;
            }
            if now >= yellow && case.supervision < Supervision::YellowCard {
                return escalate(Supervision::YellowCard, format!("黄牌督办: {clock:?} 时限 {} 已到", timing.due));
            }
            if now >= red && case.supervision < Supervision::RedCard {
                return escalate(
                    Supervision::RedCard,
                    format!(
                        "红牌督办: {clock:?} 时限 {} 已超过 {}%",
                        timing.due, self.policy.thresholds.red_card_percent
                    ),
                );
            }
        }
        None
    }

    /// The step that follows `first` at once, if the state after it calls
    /// for one now (registration, then dispatch): decided from the case as
    /// `first` will leave it, so it is the step the dispatcher would take
    /// when `first` comes back from the log, with the same key. (The hash
    /// `first` will have is not known before it is chained; nothing decided
    /// here depends on it.)
    pub fn follow_on(&self, tracked: &Tracked, first: &(Event, Action), now: Timestamp) -> Option<(Event, Action)> {
        let observed =
            Observed { at: now, role: ActorRole::System, sequence: tracked.last_sequence, hash: String::new() };
        let after = self.observe(Some(tracked.clone()), &observed, &first.0)?;
        if after.case.state.is_final() {
            return None;
        }
        let next = self.next_action(&after, now)?;
        let event = gridcase_domain::decide(Some(&after.case), &next.command, now).ok()?;
        Some((event, next))
    }

    /// The earliest future instant at which `next_action` may have work for
    /// this case (for scheduling the deadline watch).
    pub fn next_wakeup(&self, tracked: &Tracked, now: Timestamp) -> Option<Timestamp> {
        let case = &tracked.case;
        tracked
            .clocks
            .iter()
            .filter(|(clock, timing)| clock.runs_in(case.state) && case.deadlines.get(clock) == Some(&timing.due))
            .flat_map(|(_, timing)| {
                let marks = self.planner().marks(timing);
                [marks.warning, timing.due, marks.yellow_card, marks.red_card]
            })
            .chain(self.retention_due(tracked))
            .filter(|at| *at > now)
            .min()
    }
}

#[cfg(test)]
mod tests;
