//! The dispatcher's decisions, driven like the service drives them: fold the
//! case's events, ask for the next step at a given `now`, apply it.

use std::path::PathBuf;
use std::sync::Arc;

use gridcase_calendar::{Calendar, YearTable};
use gridcase_domain::{CaseId, CategoryCode, Deadlines, Filing, GridCode, Location, Text};

use super::*;

struct World {
    policy: Policy,
    calendar: Calendar,
    reference: Reference,
}

fn world() -> World {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    World {
        policy: Policy::load(&root.join("deploy/policy/policy.toml")).unwrap(),
        calendar: Calendar::new(
            Arc::new(YearTable::load_dir(&root.join("deploy/calendar")).unwrap()),
            Default::default(),
        ),
        reference: Reference::load(&root.join("deploy/reference")).unwrap(),
    }
}

fn bj(text: &str) -> Timestamp {
    format!("{}:00+08:00[Asia/Shanghai]", text.replace(' ', "T")).parse::<jiff::Zoned>().unwrap().timestamp()
}

/// A case as the dispatcher sees it, and the clock of the test.
struct Scenario<'w> {
    core: Core<'w>,
    tracked: Option<Tracked>,
    sequence: u64,
    /// Every event so far, as the core observed it.
    history: Vec<(Observed, Event)>,
}

impl<'w> Scenario<'w> {
    fn new(world: &'w World) -> Self {
        Scenario {
            core: Core { policy: &world.policy, calendar: &world.calendar, reference: &world.reference },
            tracked: None,
            sequence: 0,
            history: Vec::new(),
        }
    }

    fn tracked(&self) -> &Tracked {
        self.tracked.as_ref().unwrap()
    }

    /// A person (or the dispatcher) does `command` at `at`.
    fn apply(&mut self, command: Command, at: Timestamp, role: ActorRole) {
        let state = self.tracked.as_ref().map(|t| &t.case);
        let event = gridcase_domain::decide(state, &command, at).unwrap_or_else(|e| panic!("{}: {e}", command.name()));
        self.sequence += 1;
        let observed = Observed { at, role, sequence: self.sequence, hash: format!("hash-{}", self.sequence) };
        self.tracked = self.core.observe(self.tracked.take(), &observed, &event);
        self.history.push((observed, event));
    }

    fn file(&mut self, category: &str, grid: &str, hint: Option<Tier>, at: Timestamp) {
        self.file_request(category, grid, hint, None, at);
    }

    /// A resident's request of `kind` (none: a grid worker's own report).
    fn file_request(
        &mut self,
        category: &str,
        grid: &str,
        hint: Option<Tier>,
        kind: Option<gridcase_domain::RequestKind>,
        at: Timestamp,
    ) {
        let command = Command::File(Filing {
            case_id: CaseId::new_v7(),
            grid: GridCode::parse(grid).unwrap(),
            category: CategoryCode::parse(category).unwrap(),
            description: Text::reason("描述").unwrap(),
            location: Location::from_degrees(30.27, 120.15, None).unwrap(),
            reported_at: at,
            severity_hint: hint,
            contact: None,
            attachments: vec![],
            outside_grid: None,
            channel: Default::default(),
            request_kind: kind,
            reference: None,
        });
        self.apply(command, at, ActorRole::GridWorker);
    }

    /// Ask the dispatcher for its next step at `now` and take it.
    fn step(&mut self, now: Timestamp) -> Option<Command> {
        let action = self.core.next_action(self.tracked(), now)?;
        self.apply(action.command.clone(), now, ActorRole::System);
        Some(action.command)
    }

    /// Take every step due at `now`.
    fn settle(&mut self, now: Timestamp) -> Vec<&'static str> {
        let mut names = Vec::new();
        while let Some(command) = self.step(now) {
            names.push(command.name());
            assert!(names.len() < 20, "the dispatcher keeps acting: {names:?}");
        }
        names
    }

    /// A case filed with contact details (sealed: opaque to the dispatcher)
    /// on Monday 2026-03-02 09:00, worked and resolved, closed by the centre
    /// on Wednesday 10:00.
    fn closed_with_contact(&mut self) {
        let monday = bj("2026-03-02 09:00");
        self.file("0101", STREET_GRID, None, monday);
        let mut with_contact = self.tracked().clone();
        with_contact.case.contact = gridcase_domain::ContactState::Given;
        self.tracked = Some(with_contact);
        self.settle(monday);
        assert_eq!(self.core.retention_due(self.tracked()), None, "an open case keeps its contact details");
        self.apply(Command::Acknowledge, bj("2026-03-02 10:00"), ActorRole::HandlingUnit);
        let resolve = Command::Resolve { summary: Text::reason("已修复").unwrap(), evidence: vec![] };
        self.apply(resolve, bj("2026-03-03 10:00"), ActorRole::HandlingUnit);
        self.settle(bj("2026-03-03 10:00"));
        self.apply(Command::Verify { passed: true, reason: None }, bj("2026-03-04 10:00"), ActorRole::CommandCentre);
    }

    fn due(&self, clock: Clock) -> Option<Timestamp> {
        self.tracked().case.deadlines.get(&clock).copied()
    }
}

const STREET_GRID: &str = "990101001001001";

#[test]
fn a_routed_case_is_registered_and_dispatched_with_deadlines_on_the_calendar() {
    let world = world();
    let mut s = Scenario::new(&world);
    let friday = bj("2026-02-13 17:00");
    s.file("0101", STREET_GRID, None, friday); // exposed rubbish: NORMAL, urban management
    assert_eq!(s.settle(friday), ["register", "dispatch"]);
    let case = &s.tracked().case;
    assert_eq!(case.state, State::Dispatched);
    assert_eq!(case.tier, Some(Tier::Normal));
    assert_eq!(case.unit.as_ref().unwrap().as_str(), "unit.urban.990101");
    assert_eq!(s.due(Clock::Acknowledge), Some(bj("2026-02-14 17:00")), "Saturday 02-14 is a working day");
    assert_eq!(s.due(Clock::Resolve), Some(bj("2026-02-27 17:00")), "5 working days across the Spring Festival");
    assert_eq!(s.settle(friday), Vec::<&str>::new(), "nothing more to do until a threshold");
}

/// The reply clock of each kind of request on the official 2026 calendar,
/// against deadlines worked out by hand from the State Council's schedule
/// (08:00-12:00, 14:00-18:00; National Day off 10-01..10-07, Saturday 10-10
/// worked): filed Wednesday 09-30 10:00, 6 working hours are left that day.
#[test]
fn a_resident_s_request_is_answered_and_called_back_on_clocks_of_the_working_calendar() {
    use gridcase_domain::{ReplyMethod, RequestKind};
    let world = world();
    let filed = bj("2026-09-30 10:00");
    let expected = [
        // 3 working days = 24 h: 6 (09-30) + 8 (10-08) + 8 (10-09) + 2 (Saturday 10-10).
        (RequestKind::Consultation, "2026-10-10 10:00"),
        (RequestKind::Help, "2026-10-10 10:00"),
        (RequestKind::Praise, "2026-10-10 10:00"),
        // 13 working days = 104 h: ... 102 h by the end of Thursday 10-22, then 2 h.
        (RequestKind::Complaint, "2026-10-23 10:00"),
        (RequestKind::Report, "2026-10-23 10:00"),
        (RequestKind::Suggestion, "2026-10-23 10:00"),
    ];
    // Across the Spring Festival: filed Friday 02-13 17:00 (1 h left that
    // day; Saturday 02-14 worked; 02-15..02-23 off; Saturday 02-28 worked).
    let festival = bj("2026-02-13 17:00");
    let across_the_festival = [
        // 1 + 8 (02-14) + 8 (02-24) = 17 h, then 7 h on 02-25: 17:00.
        (RequestKind::Consultation, "2026-02-25 17:00"),
        // ... 97 h by the end of Monday 03-09, then 7 h on 03-10: 17:00.
        (RequestKind::Complaint, "2026-03-10 17:00"),
    ];
    let cases = expected.iter().map(|(kind, due)| (filed, *kind, *due));
    for (filed, kind, due) in cases.chain(across_the_festival.iter().map(|(kind, due)| (festival, *kind, *due))) {
        let mut s = Scenario::new(&world);
        s.file_request("0101", STREET_GRID, None, Some(kind), filed);
        assert_eq!(s.settle(filed), ["register", "dispatch", "set a deadline of"], "{kind:?}");
        assert_eq!(s.due(Clock::Reply), Some(bj(due)), "{kind:?} filed {filed}");
        assert!(s.tracked().case.terms[&Clock::Reply].working);
    }
    // A worker's own report has no reply clock.
    let mut s = Scenario::new(&world);
    s.file("0101", STREET_GRID, None, filed);
    s.settle(filed);
    assert_eq!(s.due(Clock::Reply), None);

    // Answered in time: the clock stops, nothing more is marked.
    let mut s = Scenario::new(&world);
    s.file_request("0101", STREET_GRID, None, Some(RequestKind::Help), filed);
    s.settle(filed);
    let reply = Command::Reply { method: ReplyMethod::Phone, text: Text::reason("已电话答复").unwrap() };
    s.apply(reply, bj("2026-10-08 09:00"), ActorRole::CommandCentre);
    assert_eq!(
        s.settle(bj("2026-10-30 09:00")).iter().filter(|n| **n == "mark a clock of").count(),
        2,
        "ack and resolve only"
    );
    assert_eq!(s.due(Clock::Reply), None);
    // Worked, resolved, closed on Friday 10-16 16:00: a callback within 5
    // working days (40 h): 2 h that day, then 10-19..10-22 (32 h), 6 h on 10-23.
    s.apply(Command::Acknowledge, bj("2026-10-12 10:00"), ActorRole::HandlingUnit);
    let resolve = Command::Resolve { summary: Text::reason("已处理").unwrap(), evidence: vec![] };
    s.apply(resolve, bj("2026-10-15 10:00"), ActorRole::HandlingUnit);
    s.settle(bj("2026-10-15 10:00"));
    s.apply(Command::Verify { passed: true, reason: None }, bj("2026-10-16 16:00"), ActorRole::CommandCentre);
    assert_eq!(s.settle(bj("2026-10-16 16:00")), ["set a deadline of"]);
    assert_eq!(s.due(Clock::Callback), Some(bj("2026-10-23 16:00")));
    assert!(s.core.keeps(s.tracked()), "a closed request owing a callback is kept");
    // Overdue is marked; a closed case is not supervised (any further).
    let supervision = s.tracked().case.supervision;
    assert_eq!(s.settle(bj("2026-11-30 09:00")), ["mark a clock of"]);
    assert!(s.tracked().case.marks.contains(&(Clock::Callback, ClockMark::Overdue)));
    assert_eq!(s.tracked().case.supervision, supervision);
    let missed = Command::RecordCallback { reached: false, attempts: 1, satisfaction: None, reason: None };
    s.apply(missed, bj("2026-11-30 10:00"), ActorRole::CommandCentre);
    assert!(s.core.keeps(s.tracked()));
    let reached = Command::RecordCallback {
        reached: true,
        attempts: 2,
        satisfaction: Some(gridcase_domain::Feedback::Satisfied),
        reason: None,
    };
    s.apply(reached, bj("2026-11-30 15:00"), ActorRole::CommandCentre);
    assert_eq!(s.settle(bj("2026-12-30 09:00")), Vec::<&str>::new());
    assert!(!s.core.keeps(s.tracked()), "nothing owed: let go");
}

#[test]
fn every_tier_gets_its_limits() {
    let world = world();
    let friday = bj("2026-02-13 17:00");
    // (category, hint, tier, acknowledge due, resolve due)
    let cases = [
        ("0202", None, Tier::Critical, "2026-02-13 17:30", "2026-02-13 23:00"),
        ("0101", Some(Tier::Urgent), Tier::Urgent, "2026-02-13 18:00", "2026-02-14 11:00"),
        ("0101", None, Tier::Normal, "2026-02-14 17:00", "2026-02-27 17:00"),
        ("0701", None, Tier::Complex, "2026-02-14 17:00", "2026-03-12 17:00"),
    ];
    for (category, hint, tier, ack, resolve) in cases {
        let mut s = Scenario::new(&world);
        s.file(category, STREET_GRID, hint, friday);
        s.settle(friday);
        assert_eq!(s.tracked().case.tier, Some(tier), "{category}");
        assert_eq!(s.due(Clock::Acknowledge), Some(bj(ack)), "{tier} acknowledge");
        assert_eq!(s.due(Clock::Resolve), Some(bj(resolve)), "{tier} resolve");
    }
}

#[test]
fn the_watch_warns_marks_overdue_and_escalates_at_the_thresholds() {
    let world = world();
    let mut s = Scenario::new(&world);
    let monday = bj("2026-03-09 09:00");
    s.file("0101", STREET_GRID, None, monday);
    s.settle(monday);
    // Acknowledge: 1 working day → Tuesday 09:00; 70% → Monday 16:36 (5.6 h later, lunch excluded).
    assert_eq!(s.due(Clock::Acknowledge), Some(bj("2026-03-10 09:00")));
    assert_eq!(s.tracked().case.marks.len(), 0);
    assert_eq!(s.core.next_wakeup(s.tracked(), monday), Some(bj("2026-03-09 16:36")));
    assert!(s.settle(bj("2026-03-09 16:35")).is_empty());
    assert_eq!(s.settle(bj("2026-03-09 16:36")), ["mark a clock of"]);
    assert!(s.tracked().case.marks.contains(&(Clock::Acknowledge, ClockMark::Warning)));
    assert!(s.settle(bj("2026-03-10 08:59")).is_empty());
    assert_eq!(s.settle(bj("2026-03-10 09:00")), ["mark a clock of", "supervise"]);
    let case = &s.tracked().case;
    assert!(case.marks.contains(&(Clock::Acknowledge, ClockMark::Overdue)));
    assert_eq!(case.supervision, Supervision::YellowCard);
    // Red card at twice the limit: 2 working days after dispatch.
    assert!(s.settle(bj("2026-03-11 08:59")).is_empty());
    assert_eq!(s.settle(bj("2026-03-11 09:00")), ["supervise"]);
    assert_eq!(s.tracked().case.supervision, Supervision::RedCard);
    // Later the resolve clock (due Monday 03-16 09:00) runs out too: it is
    // marked overdue, but the case is already at the highest card.
    assert_eq!(s.settle(bj("2026-03-20 09:00")), ["mark a clock of"]);
    assert!(s.tracked().case.marks.contains(&(Clock::Resolve, ClockMark::Overdue)));
    assert!(s.settle(bj("2026-03-27 09:00")).is_empty(), "nothing fires twice");
}

#[test]
fn escalation_names_the_county_office() {
    let world = world();
    let mut s = Scenario::new(&world);
    let at = bj("2026-03-09 09:00");
    s.file("0202", STREET_GRID, None, at); // CRITICAL: 30 minutes to acknowledge
    s.settle(at);
    let overdue = s.core.next_action(s.tracked(), bj("2026-03-09 09:30")).unwrap();
    assert!(matches!(overdue.command, Command::MarkClock { mark: ClockMark::Overdue, clock: Clock::Acknowledge, .. }));
    s.step(bj("2026-03-09 09:30"));
    let escalation = s.core.next_action(s.tracked(), bj("2026-03-09 09:30")).unwrap();
    let Command::Supervise { level, escalated_to, .. } = &escalation.command else { panic!("expected an escalation") };
    assert_eq!(*level, Supervision::YellowCard);
    assert_eq!(escalated_to.as_ref().map(OrgCode::as_str), Some("co-990101"), "township → county");
}

#[test]
fn an_unrouted_case_waits_for_manual_registration_visibly_and_its_register_clock_runs() {
    let world = world();
    let mut s = Scenario::new(&world);
    let at = bj("2026-03-09 09:00");
    s.file("0901", STREET_GRID, None, at); // suggestions: registered by hand, no route
    assert_eq!(s.settle(at), ["add progress to", "set a deadline of"]);
    assert_eq!(s.tracked().case.state, State::Reported);
    assert_eq!(s.due(Clock::Register), Some(bj("2026-03-10 09:00")));
    assert_eq!(s.settle(bj("2026-03-10 09:00")), ["mark a clock of", "supervise"]);
    // The centre registers it by hand: it has no route, so it waits to be dispatched by hand too.
    s.apply(
        Command::Register { tier: Tier::Complex, note: None, policy: None },
        bj("2026-03-10 10:00"),
        ActorRole::CommandCentre,
    );
    assert!(s.settle(bj("2026-03-10 10:00")).is_empty());
}

#[test]
fn an_extension_moves_the_resolve_deadline_by_the_approved_working_days() {
    let world = world();
    let mut s = Scenario::new(&world);
    let friday = bj("2026-02-13 17:00");
    s.file("0101", STREET_GRID, None, friday);
    s.settle(friday);
    s.apply(Command::Acknowledge, bj("2026-02-14 09:00"), ActorRole::HandlingUnit);
    s.apply(
        Command::RequestExtension { working_days: 3, reason: Text::reason("需采购材料").unwrap() },
        bj("2026-02-24 09:00"),
        ActorRole::HandlingUnit,
    );
    s.apply(
        Command::DecideExtension { approved_working_days: Some(2), reason: None },
        bj("2026-02-24 10:00"),
        ActorRole::CommandCentre,
    );
    assert_eq!(s.settle(bj("2026-02-24 10:00")), ["set a deadline of"]);
    // 02-27 17:00 plus 16 working hours: Fri 1 h, Sat 02-28 (working) 8 h, Mon 03-02 7 h.
    assert_eq!(s.due(Clock::Resolve), Some(bj("2026-03-02 17:00")));
}

#[test]
fn a_hold_pauses_the_resolve_clock_and_resuming_rearms_what_was_left() {
    let world = world();
    let mut s = Scenario::new(&world);
    let monday = bj("2026-03-02 09:00");
    s.file("0101", STREET_GRID, None, monday);
    s.settle(monday);
    assert_eq!(s.due(Clock::Resolve), Some(bj("2026-03-09 09:00")));
    s.apply(Command::Acknowledge, bj("2026-03-02 10:00"), ActorRole::HandlingUnit);
    s.apply(
        Command::RequestHold { reason: Text::reason("冬季无法施工").unwrap() },
        bj("2026-03-03 09:00"),
        ActorRole::HandlingUnit,
    );
    s.apply(Command::DecideHold { approve: true, reason: None }, bj("2026-03-03 09:00"), ActorRole::CommandCentre);
    // On hold the resolve clock does not run: no overdue even long after the old deadline.
    assert!(s.settle(bj("2026-03-20 09:00")).is_empty());
    s.apply(Command::Resume, bj("2026-03-23 09:00"), ActorRole::CommandCentre);
    assert_eq!(s.settle(bj("2026-03-23 09:00")), ["set a deadline of"]);
    // 4 working days were left at the hold (Tue 09:00 → next Mon 09:00): due Fri 03-27 09:00.
    assert_eq!(s.due(Clock::Resolve), Some(bj("2026-03-27 09:00")));
    // Thresholds count running time only: 8 of 40 working hours were used
    // before the hold, so 70% (28 h) is reached 20 working hours after resuming.
    assert_eq!(s.core.next_wakeup(s.tracked(), bj("2026-03-23 09:00")), Some(bj("2026-03-25 15:00")));
}

#[test]
fn a_returned_case_waits_for_the_centre_and_a_redispatch_restarts_the_clocks() {
    let world = world();
    let mut s = Scenario::new(&world);
    let monday = bj("2026-03-02 09:00");
    s.file("0101", STREET_GRID, None, monday);
    s.settle(monday);
    s.apply(
        Command::Return { reason: Text::reason("非本单位职责").unwrap() },
        bj("2026-03-02 10:00"),
        ActorRole::HandlingUnit,
    );
    assert!(s.settle(bj("2026-03-05 10:00")).is_empty(), "no automatic redispatch to the unit that returned it");
    let deadlines =
        Deadlines { acknowledge_due: bj("2026-03-06 10:00"), resolve_due: bj("2026-03-12 10:00"), basis: None };
    s.apply(
        Command::Dispatch { unit: OrgCode::parse("unit.property.990101001").unwrap(), deadlines },
        bj("2026-03-05 10:00"),
        ActorRole::CommandCentre,
    );
    assert!(s.tracked().case.marks.is_empty());
    assert_eq!(s.settle(bj("2026-03-06 10:00")), ["mark a clock of", "supervise"]);
}

#[test]
fn a_resolved_case_gets_a_verify_deadline_and_a_reopened_one_a_fresh_resolve_deadline() {
    let world = world();
    let mut s = Scenario::new(&world);
    let monday = bj("2026-03-02 09:00");
    s.file("0101", STREET_GRID, None, monday);
    s.settle(monday);
    s.apply(Command::Acknowledge, bj("2026-03-02 10:00"), ActorRole::HandlingUnit);
    s.apply(
        Command::Resolve { summary: Text::reason("已清理").unwrap(), evidence: vec![] },
        bj("2026-03-03 10:00"),
        ActorRole::HandlingUnit,
    );
    assert_eq!(s.settle(bj("2026-03-03 10:00")), ["set a deadline of"]);
    assert_eq!(s.due(Clock::Verify), Some(bj("2026-03-05 10:00")), "2 working days to verify");
    s.apply(Command::Verify { passed: true, reason: None }, bj("2026-03-04 10:00"), ActorRole::CommandCentre);
    s.apply(
        Command::RecordFeedback { feedback: gridcase_domain::Feedback::Unsatisfied, comment: None },
        bj("2026-03-04 11:00"),
        ActorRole::CommandCentre,
    );
    s.apply(
        Command::Reopen { reason: Text::reason("居民不满意").unwrap() },
        bj("2026-03-04 14:00"),
        ActorRole::CommandCentre,
    );
    assert_eq!(s.settle(bj("2026-03-04 14:00")), ["set a deadline of"]);
    // 5 fresh working days from Wed 14:00 land exactly on Wed 03-11 12:00.
    assert_eq!(s.due(Clock::Resolve), Some(bj("2026-03-11 12:00")), "5 fresh working days from the reopening");
}

#[test]
fn the_same_step_on_the_same_version_has_the_same_key() {
    let world = world();
    let mut s = Scenario::new(&world);
    let at = bj("2026-03-09 09:00");
    s.file("0101", STREET_GRID, None, at);
    let first = s.core.next_action(s.tracked(), at).unwrap();
    let again = s.core.next_action(s.tracked(), at + SignedDuration::from_secs(5)).unwrap();
    assert_eq!(first.key, again.key);
}

#[test]
fn a_deadline_in_a_year_without_a_calendar_file_is_flagged() {
    let world = world();
    let mut s = Scenario::new(&world);
    let at = bj("2026-12-28 09:00");
    s.file("0701", STREET_GRID, None, at); // COMPLEX: 15 working days reach into 2027
    s.step(at); // register
    let action = s.core.next_action(s.tracked(), at).unwrap();
    assert_eq!(action.fallback_years, vec![2027]);
    let Command::Dispatch { deadlines, .. } = &action.command else { panic!("expected a dispatch") };
    let basis = deadlines.basis.as_ref().unwrap();
    assert!(basis.fallback);
    assert!(basis.calendar.contains("2027:missing(mon-fri)"), "{}", basis.calendar);
    assert!(basis.policy.starts_with("demo-2026.1@"));
}

#[test]
fn the_retention_policy_erases_contact_details_once_its_days_after_the_feedback() {
    let mut world = world();
    world.policy.retention = Some(gridcase_policy::Retention { contact_days: 30 });
    let mut s = Scenario::new(&world);
    s.closed_with_contact();
    // Closed: the wait starts (no feedback may ever come); kept until then.
    assert!(s.core.keeps(s.tracked()));
    assert_eq!(s.core.retention_due(s.tracked()), Some(bj("2026-04-03 10:00")), "30 days after the closure");
    // The feedback, a day later, starts it over.
    let feedback_at = bj("2026-03-05 11:00");
    s.apply(
        Command::RecordFeedback { feedback: gridcase_domain::Feedback::Satisfied, comment: None },
        feedback_at,
        ActorRole::CommandCentre,
    );
    let due = bj("2026-04-04 11:00");
    assert_eq!(s.core.retention_due(s.tracked()), Some(due), "30 calendar days after the feedback");
    assert_eq!(s.core.next_wakeup(s.tracked(), feedback_at), Some(due));
    assert_eq!(s.settle(due - SignedDuration::from_secs(1)), Vec::<&str>::new(), "nothing before it is due");
    let action = s.core.next_action(s.tracked(), due).unwrap();
    assert!(action.key.ends_with("/erase the resident data of/retention"), "{}", action.key);
    assert_eq!(s.settle(due), ["erase the resident data of"], "exactly once");
    assert_eq!(s.tracked().case.contact, gridcase_domain::ContactState::Erased);
    assert!(!s.core.keeps(s.tracked()), "nothing left to do: let go");
    assert_eq!(s.core.next_wakeup(s.tracked(), due), None);
}

#[test]
fn a_reopening_restarts_the_retention_wait_and_a_withdrawn_case_counts_from_its_withdrawal() {
    let mut world = world();
    world.policy.retention = Some(gridcase_policy::Retention { contact_days: 10 });
    let mut s = Scenario::new(&world);
    s.closed_with_contact();
    s.apply(
        Command::RecordFeedback { feedback: gridcase_domain::Feedback::Unsatisfied, comment: None },
        bj("2026-03-04 11:00"),
        ActorRole::CommandCentre,
    );
    assert_eq!(s.core.retention_due(s.tracked()), Some(bj("2026-03-14 11:00")));
    s.apply(
        Command::Reopen { reason: Text::reason("居民不满意").unwrap() },
        bj("2026-03-05 09:00"),
        ActorRole::CommandCentre,
    );
    assert_eq!(s.core.retention_due(s.tracked()), None, "open again: the resident may be called");
    s.apply(
        Command::Cancel { reason: Text::reason("居民撤回").unwrap() },
        bj("2026-03-06 09:00"),
        ActorRole::CommandCentre,
    );
    assert_eq!(s.core.retention_due(s.tracked()), Some(bj("2026-03-16 09:00")), "from the withdrawal");

    // Without a retention policy a closed case is let go, details and all.
    let plain = world_without_retention();
    let core = Core { policy: &plain.policy, calendar: &plain.calendar, reference: &plain.reference };
    assert!(!core.keeps(s.tracked()));
    assert_eq!(core.retention_due(s.tracked()), None);
}

fn world_without_retention() -> World {
    let world = world();
    assert_eq!(world.policy.retention, None, "the shipped policy sets no retention");
    world
}

/// The shipped policy with NORMAL cases to be resolved in 120 calendar
/// hours instead of 5 working days.
fn world_with_calendar_time_resolution() -> World {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/policy/policy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replacen("resolve = \"5 working days\"", "resolve = \"120 hours\"", 1);
    assert_ne!(changed, text, "the shipped policy resolves NORMAL cases in 5 working days");
    World { policy: Policy::parse(&path, &changed).unwrap(), ..world() }
}

/// Fold `history` with `core` (a restart that replays the stream).
fn replay_with(core: &Core<'_>, history: &[(Observed, Event)]) -> Tracked {
    history.iter().fold(None, |tracked, (observed, event)| core.observe(tracked, observed, event)).unwrap()
}

#[test]
fn a_policy_changed_after_dispatch_does_not_change_how_a_case_clocks_run() {
    let world = world();
    let mut s = Scenario::new(&world);
    let friday = bj("2026-02-13 17:00");
    s.file("0101", STREET_GRID, None, friday); // NORMAL: resolved in 5 working days
    assert_eq!(s.settle(friday), ["register", "dispatch"]);
    let before = s.tracked().clocks.clone();
    assert!(before[&Clock::Resolve].working);
    let wakeup = s.core.next_wakeup(s.tracked(), friday);

    // The policy changes: NORMAL cases would now count calendar time.
    let changed = world_with_calendar_time_resolution();
    let core = Core { policy: &changed.policy, calendar: &changed.calendar, reference: &changed.reference };
    let case = &s.tracked().case;
    assert!(!core.policy.terms_for(Clock::Resolve, case.tier, &case.category, &case.grid, case.unit.as_ref()).working);

    // A restart folds the case's history under the new policy: its clocks
    // run as they were set (the terms recorded with the deadlines), so the
    // warning, the overdue mark and the cards fall when they did.
    let again = replay_with(&core, &s.history);
    assert_eq!(again.clocks, before);
    assert_eq!(core.next_wakeup(&again, friday), wakeup);

    // Without recorded terms (a deadline set before they were), the clock
    // would follow today's policy: what recording them prevents.
    let unrecorded: Vec<(Observed, Event)> = s
        .history
        .iter()
        .cloned()
        .map(|(observed, event)| match event {
            Event::Dispatched { unit, acknowledge_due, resolve_due, basis } => {
                let basis = basis.map(|b| gridcase_domain::DeadlineBasis { terms: Default::default(), ..b });
                (observed, Event::Dispatched { unit, acknowledge_due, resolve_due, basis })
            }
            other => (observed, other),
        })
        .collect();
    assert!(!replay_with(&core, &unrecorded).clocks[&Clock::Resolve].working, "upcast from today's policy");
    assert!(replay_with(&s.core, &unrecorded).clocks[&Clock::Resolve].working, "the same policy: as before");
}
