//! Given events / when command / then events or error, table-driven.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::{AttachmentRef, Filing, Location, ReplyMethod, RequestKind, Sha256Digest, Text};

fn now() -> Timestamp {
    "2026-03-02T01:00:00Z".parse().unwrap()
}

fn text(s: &str) -> Text {
    Text::reason(s).unwrap()
}

fn unit(code: &str) -> OrgCode {
    OrgCode::parse(code).unwrap()
}

fn deadlines() -> Deadlines {
    Deadlines {
        acknowledge_due: now() + SignedDuration::from_hours(8),
        resolve_due: now() + SignedDuration::from_hours(40),
        basis: None,
    }
}

fn file_command(hint: Option<Tier>) -> Command {
    Command::File(Filing {
        case_id: CaseId::parse("019a0000-0000-7000-8000-000000000001").unwrap(),
        grid: GridCode::parse("110101001001001").unwrap(),
        category: CategoryCode::parse("0102").unwrap(),
        description: Text::parse("楼道堆放杂物", 2000).unwrap(),
        location: Location::from_degrees(39.9, 116.4, Some("1号楼")).unwrap(),
        reported_at: now(),
        severity_hint: hint,
        contact: None,
        attachments: vec![AttachmentRef {
            sha256: Sha256Digest::parse(&"ab".repeat(32)).unwrap(),
            size: 1024,
            content_type: "image/jpeg".into(),
        }],
        outside_grid: None,
        channel: Default::default(),
        request_kind: None,
        reference: None,
    })
}

/// A resident's request (a kind of request recorded).
fn resident_request(hint: Option<Tier>) -> Command {
    let Command::File(mut filing) = file_command(hint) else { unreachable!() };
    filing.request_kind = Some(RequestKind::Complaint);
    Command::File(filing)
}

/// Apply commands in order, panicking on a refusal: the "given" part of a test.
fn given(commands: &[Command]) -> CaseState {
    commands.iter().fold(None, |state, command| {
        let event = decide(state.as_ref(), command, now())
            .unwrap_or_else(|e| panic!("setup command {} refused: {e}", command.name()));
        evolve(state, &event)
    })
}

fn register() -> Command {
    Command::Register { tier: Tier::Normal, note: None, policy: None }
}
fn dispatch() -> Command {
    Command::Dispatch { unit: unit("unit.property"), deadlines: deadlines() }
}
fn request_hold() -> Command {
    Command::RequestHold { reason: text("冬季无法施工") }
}
fn approve_hold() -> Command {
    Command::DecideHold { approve: true, reason: None }
}
fn resolve() -> Command {
    Command::Resolve { summary: text("已清理"), evidence: vec![] }
}
fn verify(passed: bool) -> Command {
    Command::Verify { passed, reason: (!passed).then(|| text("仍有杂物")) }
}

/// The shortest history that leaves a case in `state`.
fn path_to(state: State) -> Vec<Command> {
    let mut path = vec![file_command(None)];
    let steps: Vec<Command> = match state {
        State::Reported => vec![],
        State::Voided => vec![Command::Void { reason: text("重复上报") }],
        State::Cancelled => vec![Command::Cancel { reason: text("误报撤销") }],
        State::Registered => vec![register()],
        State::Dispatched => vec![register(), dispatch()],
        State::InProgress => vec![register(), dispatch(), Command::Acknowledge],
        State::OnHold => vec![register(), dispatch(), Command::Acknowledge, request_hold(), approve_hold()],
        State::Resolved => vec![register(), dispatch(), Command::Acknowledge, resolve()],
        State::Closed => vec![register(), dispatch(), Command::Acknowledge, resolve(), verify(true)],
    };
    path.extend(steps);
    path
}

/// The lifecycle commands of the brief's transition table, each with the
/// states it may be sent in and the state it leads to, written from
/// `shared/domain.md` independently of `decide`.
fn transition_table() -> Vec<(Command, Vec<State>, State)> {
    use State::*;
    let not_final = vec![Reported, Registered, Dispatched, InProgress, OnHold, Resolved, Closed];
    vec![
        (register(), vec![Reported], Registered),
        (Command::Void { reason: text("不属于受理范围") }, vec![Reported], Voided),
        (dispatch(), vec![Registered], Dispatched),
        (Command::Acknowledge, vec![Dispatched], InProgress),
        (Command::Return { reason: text("非本单位职责") }, vec![Dispatched, InProgress], Registered),
        (
            Command::Reassign { unit: unit("unit.police"), deadlines: deadlines(), reason: text("改派") },
            vec![Dispatched],
            Dispatched,
        ),
        (Command::Resume, vec![OnHold], InProgress),
        (resolve(), vec![InProgress], Resolved),
        (verify(true), vec![Resolved], Closed),
        (verify(false), vec![Resolved], InProgress),
        (Command::Cancel { reason: text("撤销") }, not_final, Cancelled),
    ]
}

#[test]
fn every_transition_of_the_brief_is_allowed_and_no_other() {
    for (command, allowed_from, leads_to) in transition_table() {
        for state in State::ALL {
            let case = given(&path_to(state));
            assert_eq!(case.as_ref().unwrap().state, state, "path_to({state})");
            let result = decide(case.as_ref(), &command, now());
            if allowed_from.contains(&state) {
                let event = result.unwrap_or_else(|e| panic!("{} from {state} refused: {e}", command.name()));
                let after = evolve(case, &event).unwrap();
                assert_eq!(after.state, leads_to, "{} from {state}", command.name());
            } else {
                assert_eq!(
                    result,
                    Err(DomainError::TransitionNotAllowed { command: command.name(), state }),
                    "{} from {state} must be refused",
                    command.name()
                );
            }
        }
    }
}

#[test]
fn hold_request_and_approval_move_in_progress_to_on_hold() {
    let state = given(&path_to(State::InProgress));
    let state = given_more(state, &[request_hold()]);
    assert_eq!(state.as_ref().unwrap().state, State::InProgress);
    assert!(state.as_ref().unwrap().hold_requested);
    let state = given_more(state, &[approve_hold()]);
    assert_eq!(state.as_ref().unwrap().state, State::OnHold);
    for state in [State::Reported, State::Registered, State::Dispatched, State::OnHold, State::Resolved, State::Closed]
    {
        let case = given(&path_to(state));
        assert_eq!(
            decide(case.as_ref(), &request_hold(), now()),
            Err(DomainError::TransitionNotAllowed { command: "request a hold for", state })
        );
    }
}

fn given_more(state: CaseState, commands: &[Command]) -> CaseState {
    commands.iter().fold(state, |state, command| {
        let event =
            decide(state.as_ref(), command, now()).unwrap_or_else(|e| panic!("{} refused: {e}", command.name()));
        evolve(state, &event)
    })
}

#[test]
fn reopen_needs_unsatisfied_feedback_and_counts() {
    let closed = given(&path_to(State::Closed));
    let reopen = Command::Reopen { reason: text("居民反映仍未解决") };
    assert_eq!(decide(closed.as_ref(), &reopen, now()), Err(DomainError::ReopenNeedsUnsatisfiedFeedback));
    let satisfied =
        given_more(closed.clone(), &[Command::RecordFeedback { feedback: Feedback::Satisfied, comment: None }]);
    assert_eq!(decide(satisfied.as_ref(), &reopen, now()), Err(DomainError::ReopenNeedsUnsatisfiedFeedback));
    let unsatisfied = given_more(
        closed,
        &[Command::RecordFeedback { feedback: Feedback::Unsatisfied, comment: Some(text("还在漏水")) }],
    );
    assert_eq!(
        decide(unsatisfied.as_ref(), &Command::RecordFeedback { feedback: Feedback::Satisfied, comment: None }, now()),
        Err(DomainError::FeedbackAlreadyRecorded)
    );
    let reopened = given_more(unsatisfied, &[reopen]).unwrap();
    assert_eq!((reopened.state, reopened.reopenings, reopened.feedback), (State::InProgress, 1, None));
}

#[test]
fn a_resident_is_answered_in_any_state_and_called_back_once_reached() {
    let mut path = path_to(State::Closed);
    path[0] = resident_request(None);
    let armed = given(&path).map(|mut case| {
        case.deadlines.insert(Clock::Reply, now() + SignedDuration::from_hours(72));
        case.deadlines.insert(Clock::Callback, now() + SignedDuration::from_hours(40));
        case
    });
    // The reply drops the reply clock; a second reply is recorded too.
    let reply = Command::Reply { method: ReplyMethod::Phone, text: text("已电话答复：路灯已修复") };
    let replied = given_more(armed.clone(), std::slice::from_ref(&reply)).unwrap();
    assert!(replied.replied && !replied.deadlines.contains_key(&Clock::Reply), "{replied:?}");
    assert!(decide(Some(&replied), &reply, now()).is_ok());
    // Not reached: recorded, the clock runs on; reached: satisfaction, once.
    let missed = Command::RecordCallback { reached: false, attempts: 1, satisfaction: None, reason: None };
    let tried = given_more(Some(replied), &[missed]).unwrap();
    assert!(!tried.called_back && tried.deadlines.contains_key(&Clock::Callback));
    let without = Command::RecordCallback { reached: true, attempts: 2, satisfaction: None, reason: None };
    assert_eq!(decide(Some(&tried), &without, now()), Err(DomainError::CallbackSatisfaction));
    let unsatisfied_no_reason =
        Command::RecordCallback { reached: true, attempts: 2, satisfaction: Some(Feedback::Unsatisfied), reason: None };
    assert!(matches!(decide(Some(&tried), &unsatisfied_no_reason, now()), Err(DomainError::ReasonRequired { .. })));
    let unsatisfied = Command::RecordCallback {
        reached: true,
        attempts: 2,
        satisfaction: Some(Feedback::Unsatisfied),
        reason: Some(text("路灯仍不亮")),
    };
    let reached = given_more(Some(tried), std::slice::from_ref(&unsatisfied)).unwrap();
    assert!(reached.called_back && !reached.deadlines.contains_key(&Clock::Callback));
    assert_eq!(reached.feedback, Some(Feedback::Unsatisfied));
    assert_eq!(decide(Some(&reached), &unsatisfied, now()), Err(DomainError::CallbackAlreadyDone));
    // "Unsatisfied" opens the existing reopening rule; a new closure is called back again.
    let reopened = given_more(Some(reached), &[Command::Reopen { reason: text("不满意，重新办理") }]).unwrap();
    assert!(!reopened.called_back && reopened.state == State::InProgress);
    // A worker's own report is no resident's request.
    let report = given(&path_to(State::Closed));
    assert_eq!(decide(report.as_ref(), &reply, now()), Err(DomainError::NotAResidentRequest));
    let voided = given(&[resident_request(None), Command::Void { reason: text("不属于受理范围") }]);
    assert!(decide(voided.as_ref(), &reply, now()).is_ok(), "a voided request is still answered");
    assert!(!Clock::Reply.runs_in(State::Voided) && Clock::Reply.runs_in(State::Closed));
}

#[test]
fn full_scenario_counts_returns_reworks_and_extensions() {
    let case = given(&[
        file_command(None),
        register(),
        dispatch(),
        Command::Return { reason: text("派错单位") },
        dispatch(),
        Command::Acknowledge,
        Command::RequestExtension { working_days: 5, reason: text("需采购材料") },
        Command::DecideExtension { approved_working_days: Some(3), reason: None },
        resolve(),
        verify(false),
        resolve(),
        verify(true),
        Command::RecordFeedback { feedback: Feedback::Unsatisfied, comment: None },
        Command::Reopen { reason: text("不满意") },
        resolve(),
        verify(true),
    ])
    .unwrap();
    assert_eq!(case.state, State::Closed);
    assert_eq!((case.returns, case.reworks, case.reopenings, case.approved_extension_days), (1, 1, 1, 3));
    assert_eq!(case.version, 16);
}

#[test]
fn rules_name_what_was_broken() {
    let in_progress = given(&path_to(State::InProgress));
    let reported_critical = given(&[file_command(Some(Tier::Critical))]);
    let dispatched = given(&path_to(State::Dispatched));
    let cases: Vec<(CaseState, Command, DomainError)> = vec![
        (None, Command::Acknowledge, DomainError::NotFiled),
        (given(&[file_command(None)]), file_command(None), DomainError::AlreadyFiled),
        (
            in_progress.clone(),
            Command::RequestExtension { working_days: 0, reason: text("x") },
            DomainError::ExtensionOutOfRange { requested: 0, max: MAX_EXTENSION_WORKING_DAYS },
        ),
        (
            in_progress.clone(),
            Command::DecideExtension { approved_working_days: Some(1), reason: None },
            DomainError::NoExtensionPending,
        ),
        (
            given_more(in_progress.clone(), &[Command::RequestExtension { working_days: 2, reason: text("x") }]),
            Command::DecideExtension { approved_working_days: Some(3), reason: None },
            DomainError::ApprovalOutOfRange { approved: 3, requested: 2 },
        ),
        (
            given_more(in_progress.clone(), &[Command::RequestExtension { working_days: 2, reason: text("x") }]),
            Command::DecideExtension { approved_working_days: None, reason: None },
            DomainError::ReasonRequired { command: "reject an extension for" },
        ),
        (
            given_more(in_progress.clone(), &[Command::RequestExtension { working_days: 2, reason: text("x") }]),
            Command::RequestExtension { working_days: 1, reason: text("again") },
            DomainError::ExtensionAlreadyPending,
        ),
        (in_progress.clone(), approve_hold(), DomainError::NoHoldPending),
        (given_more(in_progress.clone(), &[request_hold()]), request_hold(), DomainError::HoldAlreadyPending),
        (
            given_more(in_progress.clone(), &[request_hold()]),
            Command::DecideHold { approve: false, reason: None },
            DomainError::ReasonRequired { command: "reject a hold for" },
        ),
        (
            given(&path_to(State::Resolved)),
            Command::Verify { passed: false, reason: None },
            DomainError::ReasonRequired { command: "send back for rework" },
        ),
        (
            dispatched.clone(),
            Command::Reassign { unit: unit("unit.property"), deadlines: deadlines(), reason: text("x") },
            DomainError::SameUnit { unit: "unit.property".into() },
        ),
        (
            given(&path_to(State::Registered)),
            Command::Dispatch {
                unit: unit("u"),
                deadlines: Deadlines {
                    acknowledge_due: now() - SignedDuration::from_secs(1),
                    resolve_due: now(),
                    basis: None,
                },
            },
            DomainError::DeadlineInPast {
                clock: Clock::Acknowledge,
                due: now() - SignedDuration::from_secs(1),
                now: now(),
            },
        ),
        (
            given_more(
                in_progress.clone(),
                &[Command::Supervise { level: Supervision::YellowCard, reason: text("x"), escalated_to: None }],
            ),
            Command::Supervise { level: Supervision::Normal, reason: text("y"), escalated_to: None },
            DomainError::SupervisionNotRaised { current: Supervision::YellowCard, requested: Supervision::Normal },
        ),
        (
            in_progress.clone(),
            Command::SetUrgent { urgent: false, reason: None },
            DomainError::UrgencyUnchanged { urgent: false },
        ),
        (
            reported_critical.clone(),
            Command::MarkClock { clock: Clock::Acknowledge, mark: ClockMark::Warning, due: now() },
            DomainError::ClockNotRunning { clock: Clock::Acknowledge, state: State::Reported },
        ),
        (
            dispatched.clone(),
            Command::MarkClock { clock: Clock::Acknowledge, mark: ClockMark::Overdue, due: now() },
            DomainError::StaleDeadline { clock: Clock::Acknowledge, due: now() },
        ),
        (
            dispatched.clone(),
            Command::MarkClock {
                clock: Clock::Acknowledge,
                mark: ClockMark::Overdue,
                due: deadlines().acknowledge_due,
            },
            DomainError::NotYetDue { clock: Clock::Acknowledge, due: deadlines().acknowledge_due },
        ),
    ];
    for (index, (state, command, expected)) in cases.into_iter().enumerate() {
        assert_eq!(decide(state.as_ref(), &command, now()), Err(expected), "case #{index}: {}", command.name());
    }
}

#[test]
fn severity_hint_raises_the_tier_but_never_lowers_it() {
    for (hint, requested, expected) in [
        (None, Tier::Normal, Tier::Normal),
        (Some(Tier::Critical), Tier::Normal, Tier::Critical),
        (Some(Tier::Complex), Tier::Urgent, Tier::Urgent),
        (Some(Tier::Urgent), Tier::Critical, Tier::Critical),
    ] {
        let state = given(&[file_command(hint), Command::Register { tier: requested, note: None, policy: None }]);
        assert_eq!(state.unwrap().tier, Some(expected), "hint {hint:?} requested {requested:?}");
    }
}

#[test]
fn deadline_watch_marks_once_per_deadline_and_rearms_on_a_new_deadline() {
    let dispatched = given(&path_to(State::Dispatched));
    let due = deadlines().acknowledge_due;
    let late = due + SignedDuration::from_mins(1);
    let overdue = Command::MarkClock { clock: Clock::Acknowledge, mark: ClockMark::Overdue, due };
    let event = decide(dispatched.as_ref(), &overdue, late).unwrap();
    let marked = evolve(dispatched, &event);
    assert_eq!(
        decide(marked.as_ref(), &overdue, late),
        Err(DomainError::ClockAlreadyMarked { clock: Clock::Acknowledge, mark: ClockMark::Overdue })
    );
    let new_due = late + SignedDuration::from_hours(1);
    let rearmed = given_more(marked, &[Command::SetDeadline { clock: Clock::Acknowledge, due: new_due, basis: None }]);
    let case = rearmed.as_ref().unwrap();
    assert_eq!(case.deadlines.get(&Clock::Acknowledge), Some(&new_due));
    assert!(case.marks.is_empty());
}

// ---- properties -------------------------------------------------------------

fn any_command() -> impl Strategy<Value = Command> {
    let reason = prop_oneof![Just(text("理由")), Just(text("另一个理由"))];
    let tier = prop_oneof![Just(Tier::Critical), Just(Tier::Urgent), Just(Tier::Normal), Just(Tier::Complex)];
    let units = prop_oneof![Just(unit("unit.a")), Just(unit("unit.b"))];
    let offset = (-2i64..50).prop_map(|h| now() + SignedDuration::from_hours(h));
    let clock = proptest::sample::select(Clock::ALL.to_vec());
    let level = prop_oneof![
        Just(Supervision::None),
        Just(Supervision::Normal),
        Just(Supervision::YellowCard),
        Just(Supervision::RedCard)
    ];
    let feedback =
        prop_oneof![Just(Feedback::Satisfied), Just(Feedback::BasicallySatisfied), Just(Feedback::Unsatisfied)];
    prop_oneof![
        proptest::option::of(tier.clone()).prop_map(file_command),
        proptest::option::of(tier.clone()).prop_map(resident_request),
        (proptest::sample::select(vec![ReplyMethod::Phone, ReplyMethod::Partner]), reason.clone())
            .prop_map(|(method, text)| Command::Reply { method, text }),
        (any::<bool>(), 0u32..4, proptest::option::of(feedback.clone()), proptest::option::of(reason.clone()))
            .prop_map(|(reached, attempts, satisfaction, reason)| Command::RecordCallback {
                reached,
                attempts,
                satisfaction,
                reason
            }),
        tier.prop_map(|tier| Command::Register { tier, note: None, policy: None }),
        reason.clone().prop_map(|reason| Command::Void { reason }),
        (units.clone(), offset.clone(), offset.clone()).prop_map(|(unit, a, r)| {
            Command::Dispatch { unit, deadlines: Deadlines { acknowledge_due: a, resolve_due: r, basis: None } }
        }),
        Just(Command::Acknowledge),
        reason.clone().prop_map(|reason| Command::Return { reason }),
        (units, offset.clone(), reason.clone()).prop_map(|(unit, a, reason)| Command::Reassign {
            unit,
            deadlines: Deadlines { acknowledge_due: a, resolve_due: a, basis: None },
            reason
        }),
        reason.clone().prop_map(|note| Command::AddProgress { note, attachments: vec![] }),
        (0u32..300, reason.clone())
            .prop_map(|(working_days, reason)| Command::RequestExtension { working_days, reason }),
        (proptest::option::of(0u32..10), proptest::option::of(reason.clone()))
            .prop_map(|(approved_working_days, reason)| Command::DecideExtension { approved_working_days, reason }),
        reason.clone().prop_map(|reason| Command::RequestHold { reason }),
        (any::<bool>(), proptest::option::of(reason.clone()))
            .prop_map(|(approve, reason)| Command::DecideHold { approve, reason }),
        Just(Command::Resume),
        reason.clone().prop_map(|summary| Command::Resolve { summary, evidence: vec![] }),
        (any::<bool>(), proptest::option::of(reason.clone()))
            .prop_map(|(passed, reason)| Command::Verify { passed, reason }),
        feedback.prop_map(|feedback| Command::RecordFeedback { feedback, comment: None }),
        reason.clone().prop_map(|reason| Command::Reopen { reason }),
        reason.clone().prop_map(|reason| Command::Cancel { reason }),
        (level, reason.clone()).prop_map(|(level, reason)| Command::Supervise { level, reason, escalated_to: None }),
        any::<bool>().prop_map(|urgent| Command::SetUrgent { urgent, reason: None }),
        (clock.clone(), offset.clone()).prop_map(|(clock, due)| Command::SetDeadline { clock, due, basis: None }),
        (clock, any::<bool>(), offset).prop_map(|(clock, overdue, due)| Command::MarkClock {
            clock,
            mark: if overdue { ClockMark::Overdue } else { ClockMark::Warning },
            due
        }),
    ]
}

/// What must hold of any state reachable through `decide`.
fn assert_valid(case: &Case) {
    use State::*;
    if matches!(case.state, Dispatched | InProgress | OnHold | Resolved) {
        assert!(case.unit.is_some(), "{:?} without a unit", case.state);
    }
    if !matches!(case.state, Reported | Voided) {
        assert!(case.tier.is_some() || case.state == Cancelled, "{:?} without a tier", case.state);
    }
    if let Some(hint) = case.severity_hint
        && let Some(tier) = case.tier
    {
        assert!(tier >= hint, "tier {tier:?} below hint {hint:?}");
    }
    for (clock, _) in &case.marks {
        assert!(case.deadlines.contains_key(clock), "mark on {clock:?} without a deadline");
    }
    assert!(case.pending_extension.is_none() || matches!(case.state, InProgress | OnHold | Cancelled));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_command_sequence_folds_to_a_valid_state_or_is_refused(
        commands in proptest::collection::vec(any_command(), 0..40),
        minutes in proptest::collection::vec(0i64..3000, 40),
    ) {
        let mut state: CaseState = None;
        let mut history: Vec<Event> = Vec::new();
        for (command, minute) in commands.iter().zip(&minutes) {
            let at = now() + SignedDuration::from_mins(*minute);
            match decide(state.as_ref(), command, at) {
                Ok(event) => {
                    let before = state.as_ref().map_or(0, |c| c.version);
                    state = evolve(state, &event);
                    let case = state.as_ref().expect("a decided event leaves a filed case");
                    prop_assert_eq!(case.version, before + 1);
                    assert_valid(case);
                    history.push(event);
                }
                Err(error) => {
                    // A refusal names a rule and changes nothing.
                    prop_assert!(!error.rule().is_empty());
                    prop_assert!(!error.to_string().is_empty());
                }
            }
        }
        // Replay is deterministic and equals the incremental fold.
        prop_assert_eq!(replay(&history), state.clone());
        prop_assert_eq!(replay(&history), replay(&history));
    }
}

#[test]
fn another_report_counts_on_an_open_case_only() {
    let report = || Command::AddReport { reported_at: now(), location: None, note: None, attachments: vec![] };
    let case = given(&[file_command(None), report(), report()]).unwrap();
    assert_eq!(case.added_reports, 2);
    for state in [State::Closed, State::Voided, State::Cancelled] {
        let case = given(&path_to(state)).unwrap();
        let refused = decide(Some(&case), &report(), now()).unwrap_err();
        assert_eq!(refused.rule(), "TRANSITION_NOT_ALLOWED", "{state:?}");
    }
}

#[test]
fn a_merged_duplicate_is_voided_and_its_reports_go_to_the_main_case() {
    let main_id = CaseId::new_v7();
    for state in
        [State::Reported, State::Registered, State::Dispatched, State::InProgress, State::OnHold, State::Resolved]
    {
        let duplicate = given(&path_to(state)).unwrap();
        let merge = Command::MergeInto { into: main_id, reason: text("同一路灯") };
        let event = decide(Some(&duplicate), &merge, now()).unwrap();
        let merged = evolve(Some(duplicate.clone()), &event).unwrap();
        assert_eq!((merged.state, merged.merged_into), (State::Voided, Some(main_id)), "from {state:?}");
        assert!(State::Voided.is_final(), "a merged duplicate takes no further command");
        let itself = Command::MergeInto { into: duplicate.id, reason: text("同一路灯") };
        assert_eq!(decide(Some(&duplicate), &itself, now()).unwrap_err().rule(), "MERGE_INTO_ITSELF");
    }
    for state in [State::Closed, State::Voided, State::Cancelled] {
        let case = given(&path_to(state)).unwrap();
        let merge = Command::MergeInto { into: main_id, reason: text("同一路灯") };
        assert_eq!(decide(Some(&case), &merge, now()).unwrap_err().rule(), "TRANSITION_NOT_ALLOWED", "{state:?}");
    }
    let main = given(&[file_command(None)]).unwrap();
    let absorb = Command::AbsorbDuplicate {
        duplicate: CaseId::new_v7(),
        reports: 3,
        reporters: vec!["gw-0042".into()],
        attachments: vec![],
    };
    let event = decide(Some(&main), &absorb, now()).unwrap();
    assert_eq!(evolve(Some(main), &event).unwrap().added_reports, 3, "the main case now has 1 + 3 reports");
}
