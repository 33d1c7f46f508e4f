//! The case aggregate: `decide` turns a command into events or a typed
//! refusal; `evolve` folds an event into the state. Both are pure and total.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use crate::{
    CaseId, CategoryCode, Clock, ClockMark, ClockTerms, Command, ContactState, DomainError, Event, Feedback, GridCode,
    OrgCode, RequestKind, State, Supervision, Tier,
};

/// Deadlines a dispatch sets, computed by the caller on the working calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlines {
    pub acknowledge_due: Timestamp,
    pub resolve_due: Timestamp,
    pub basis: Option<DeadlineBasis>,
}

/// What a deadline was computed from, so it can be defended later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadlineBasis {
    /// The policy version and file digest ("demo-2026.1@1a2b3c4d5e6f").
    pub policy: String,
    /// The calendar files used ("2026:ab12…"; "2027:missing(mon-fri)").
    pub calendar: String,
    /// True when a year without a calendar file was counted Monday–Friday.
    pub fallback: bool,
    /// How each clock the event sets counts its time (absent from events
    /// written before terms were recorded: payload version 1 or 2; readers
    /// derive them from the policy then).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub terms: BTreeMap<Clock, ClockTerms>,
}

/// The longest extension one request may ask for, in working days.
pub const MAX_EXTENSION_WORKING_DAYS: u32 = 250;

/// Everything the rules need to know about a filed case.
///
/// Serializable for the dispatcher's snapshot of open cases (whose format
/// test pins this shape: a change here bumps the snapshot format).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Case {
    pub id: CaseId,
    pub grid: GridCode,
    pub category: CategoryCode,
    pub state: State,
    /// How many events the case has: 1 after filing.
    pub version: u64,
    pub severity_hint: Option<Tier>,
    pub tier: Option<Tier>,
    pub unit: Option<OrgCode>,
    pub supervision: Supervision,
    pub urgent: bool,
    pub deadlines: BTreeMap<Clock, Timestamp>,
    /// How each clock counts its time, as recorded when its deadline was set
    /// (none recorded for deadlines set before terms were: see
    /// `gridcase_policy::Policy::clock_terms`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub terms: BTreeMap<Clock, ClockTerms>,
    pub marks: BTreeSet<(Clock, ClockMark)>,
    pub pending_extension: Option<u32>,
    pub approved_extension_days: u32,
    pub hold_requested: bool,
    /// Feedback on the current closure, if any.
    pub feedback: Option<Feedback>,
    pub returns: u32,
    pub reworks: u32,
    pub reopenings: u32,
    /// Whether the resident's contact details were left, and erased.
    pub contact: ContactState,
    /// What the resident asks for, when the case is a resident's request
    /// (absent from snapshots taken before requests had kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_kind: Option<RequestKind>,
    /// Whether the resident has been answered (答复).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replied: bool,
    /// Whether a callback reached the resident after the current closure (回访).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub called_back: bool,
    /// Reports of the same problem added after the filing (the case has
    /// `1 + added_reports` reports).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub added_reports: u32,
    /// 并案: the main case this one was merged into (it is voided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<CaseId>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A case id's state: `None` until it is filed.
pub type CaseState = Option<Case>;

/// Decide what a command means for a case at `now`.
pub fn decide(state: Option<&Case>, command: &Command, now: Timestamp) -> Result<Event, DomainError> {
    let case = match (state, command) {
        (None, Command::File(filing)) => return Ok(Event::Filed(filing.clone())),
        (Some(_), Command::File(_)) => return Err(DomainError::AlreadyFiled),
        (None, _) => return Err(DomainError::NotFiled),
        (Some(case), _) => case,
    };
    let state = case.state;
    let refuse = || DomainError::TransitionNotAllowed { command: command.name(), state };
    let require = |allowed: &[State]| {
        if allowed.contains(&state) { Ok(()) } else { Err(refuse()) }
    };
    if let Command::EraseResidentData { reason } = command {
        // Personal data may be erased whatever the case's state, closed and
        // withdrawn cases included: that is when retention applies.
        return match case.contact {
            ContactState::None => Err(DomainError::NoResidentData),
            ContactState::Erased => Err(DomainError::ResidentDataAlreadyErased),
            ContactState::Given => Ok(Event::ResidentDataErased { reason: reason.clone() }),
        };
    }
    if let Command::Reply { method, text } = command {
        // A resident is answered whatever became of the request, a voided
        // or withdrawn one included; later replies add to the first.
        if case.request_kind.is_none() {
            return Err(DomainError::NotAResidentRequest);
        }
        return Ok(Event::Replied { method: *method, text: text.clone() });
    }
    if state.is_final() {
        return Err(refuse());
    }
    let check_deadlines = |deadlines: &crate::case::Deadlines| {
        for (clock, due) in [(Clock::Acknowledge, deadlines.acknowledge_due), (Clock::Resolve, deadlines.resolve_due)] {
            if due < now {
                return Err(DomainError::DeadlineInPast { clock, due, now });
            }
        }
        Ok(())
    };
    use State::*;
    let event = match command {
        Command::File(_) | Command::Reply { .. } => unreachable!("handled above"),
        Command::Register { tier, note, policy } => {
            require(&[Reported])?;
            let tier = case.severity_hint.map_or(*tier, |hint| hint.max(*tier));
            Event::Registered { tier, note: note.clone(), policy: policy.clone() }
        }
        Command::Void { reason } => {
            require(&[Reported])?;
            Event::Voided { reason: reason.clone() }
        }
        Command::Dispatch { unit, deadlines } => {
            require(&[Registered])?;
            check_deadlines(deadlines)?;
            Event::Dispatched {
                unit: unit.clone(),
                acknowledge_due: deadlines.acknowledge_due,
                resolve_due: deadlines.resolve_due,
                basis: deadlines.basis.clone(),
            }
        }
        Command::Acknowledge => {
            require(&[Dispatched])?;
            Event::Acknowledged { unit: assigned_unit(case) }
        }
        Command::Return { reason } => {
            require(&[Dispatched, InProgress])?;
            Event::Returned { unit: assigned_unit(case), reason: reason.clone() }
        }
        Command::Reassign { unit, deadlines, reason } => {
            require(&[Dispatched])?;
            let from = assigned_unit(case);
            if &from == unit {
                return Err(DomainError::SameUnit { unit: unit.to_string() });
            }
            check_deadlines(deadlines)?;
            Event::Reassigned {
                from,
                to: unit.clone(),
                acknowledge_due: deadlines.acknowledge_due,
                resolve_due: deadlines.resolve_due,
                basis: deadlines.basis.clone(),
                reason: reason.clone(),
            }
        }
        Command::AddProgress { note, attachments } => {
            if state == Closed {
                return Err(refuse());
            }
            Event::ProgressAdded { note: note.clone(), attachments: attachments.clone() }
        }
        Command::MergeInto { into, reason } => {
            if !state.is_open() {
                return Err(refuse());
            }
            if *into == case.id {
                return Err(DomainError::MergeIntoItself);
            }
            Event::MergedInto { main: *into, reason: reason.clone() }
        }
        Command::AbsorbDuplicate { duplicate, reports, reporters, attachments } => {
            if !state.is_open() {
                return Err(refuse());
            }
            if *duplicate == case.id {
                return Err(DomainError::MergeIntoItself);
            }
            Event::DuplicateMerged {
                duplicate: *duplicate,
                reports: *reports,
                reporters: reporters.clone(),
                attachments: attachments.clone(),
            }
        }
        Command::AddReport { reported_at, location, note, attachments } => {
            // Only open work takes another report: a closed case's problem
            // seen again is a new case (or a reopening).
            if !state.is_open() {
                return Err(refuse());
            }
            Event::ReportAdded {
                reported_at: *reported_at,
                location: location.clone(),
                note: note.clone(),
                attachments: attachments.clone(),
            }
        }
        Command::RequestExtension { working_days, reason } => {
            require(&[InProgress])?;
            if case.pending_extension.is_some() {
                return Err(DomainError::ExtensionAlreadyPending);
            }
            if !(1..=MAX_EXTENSION_WORKING_DAYS).contains(working_days) {
                return Err(DomainError::ExtensionOutOfRange {
                    requested: *working_days,
                    max: MAX_EXTENSION_WORKING_DAYS,
                });
            }
            Event::ExtensionRequested { working_days: *working_days, reason: reason.clone() }
        }
        Command::DecideExtension { approved_working_days, reason } => {
            require(&[InProgress, OnHold])?;
            let requested = case.pending_extension.ok_or(DomainError::NoExtensionPending)?;
            match approved_working_days {
                Some(approved) if (1..=requested).contains(approved) => Event::ExtensionApproved {
                    requested_working_days: requested,
                    approved_working_days: *approved,
                    reason: reason.clone(),
                },
                Some(approved) => {
                    return Err(DomainError::ApprovalOutOfRange { approved: *approved, requested });
                }
                None => Event::ExtensionRejected {
                    requested_working_days: requested,
                    reason: reason.clone().ok_or(DomainError::ReasonRequired { command: "reject an extension for" })?,
                },
            }
        }
        Command::RequestHold { reason } => {
            require(&[InProgress])?;
            if case.hold_requested {
                return Err(DomainError::HoldAlreadyPending);
            }
            Event::HoldRequested { reason: reason.clone() }
        }
        Command::DecideHold { approve, reason } => {
            require(&[InProgress])?;
            if !case.hold_requested {
                return Err(DomainError::NoHoldPending);
            }
            if *approve {
                Event::HoldApproved { reason: reason.clone() }
            } else {
                Event::HoldRejected {
                    reason: reason.clone().ok_or(DomainError::ReasonRequired { command: "reject a hold for" })?,
                }
            }
        }
        Command::Resume => {
            require(&[OnHold])?;
            Event::Resumed
        }
        Command::Resolve { summary, evidence } => {
            require(&[InProgress])?;
            Event::Resolved { summary: summary.clone(), evidence: evidence.clone() }
        }
        Command::Verify { passed, reason } => {
            require(&[Resolved])?;
            if *passed {
                Event::VerificationPassed { note: reason.clone() }
            } else {
                Event::VerificationFailed {
                    reason: reason.clone().ok_or(DomainError::ReasonRequired { command: "send back for rework" })?,
                }
            }
        }
        Command::RecordFeedback { feedback, comment } => {
            require(&[Closed])?;
            if case.feedback.is_some() {
                return Err(DomainError::FeedbackAlreadyRecorded);
            }
            Event::FeedbackRecorded { feedback: *feedback, comment: comment.clone() }
        }
        Command::RecordCallback { reached, attempts, satisfaction, reason } => {
            require(&[Closed])?;
            if case.request_kind.is_none() {
                return Err(DomainError::NotAResidentRequest);
            }
            if case.called_back {
                return Err(DomainError::CallbackAlreadyDone);
            }
            if *reached != satisfaction.is_some() {
                return Err(DomainError::CallbackSatisfaction);
            }
            if *satisfaction == Some(Feedback::Unsatisfied) && reason.is_none() {
                return Err(DomainError::ReasonRequired { command: command.name() });
            }
            Event::CallbackRecorded {
                reached: *reached,
                attempts: (*attempts).max(1),
                satisfaction: *satisfaction,
                reason: reason.clone(),
            }
        }
        Command::Reopen { reason } => {
            require(&[Closed])?;
            if case.feedback != Some(Feedback::Unsatisfied) {
                return Err(DomainError::ReopenNeedsUnsatisfiedFeedback);
            }
            Event::Reopened { reason: reason.clone() }
        }
        Command::Cancel { reason } => Event::Cancelled { reason: reason.clone() },
        Command::Supervise { level, reason, escalated_to } => {
            if state == Closed {
                return Err(refuse());
            }
            if *level <= case.supervision {
                return Err(DomainError::SupervisionNotRaised { current: case.supervision, requested: *level });
            }
            Event::Supervised {
                from: case.supervision,
                to: *level,
                reason: reason.clone(),
                escalated_to: escalated_to.clone(),
            }
        }
        Command::SetUrgent { urgent, reason } => {
            if state == Closed {
                return Err(refuse());
            }
            if *urgent == case.urgent {
                return Err(DomainError::UrgencyUnchanged { urgent: *urgent });
            }
            Event::UrgencySet { urgent: *urgent, reason: reason.clone() }
        }
        Command::SetDeadline { clock, due, basis } => {
            // The resolve clock is paused on hold, but its deadline may be moved.
            let settable = clock.runs_in(state) || (*clock == Clock::Resolve && state == OnHold);
            if !settable {
                return Err(DomainError::ClockNotRunning { clock: *clock, state });
            }
            Event::DeadlineSet { clock: *clock, due: *due, basis: basis.clone() }
        }
        Command::MarkClock { clock, mark, due } => {
            if !clock.runs_in(state) {
                return Err(DomainError::ClockNotRunning { clock: *clock, state });
            }
            if case.deadlines.get(clock) != Some(due) {
                return Err(DomainError::StaleDeadline { clock: *clock, due: *due });
            }
            if case.marks.contains(&(*clock, *mark)) {
                return Err(DomainError::ClockAlreadyMarked { clock: *clock, mark: *mark });
            }
            if *mark == ClockMark::Overdue && now < *due {
                return Err(DomainError::NotYetDue { clock: *clock, due: *due });
            }
            Event::ClockMarked { clock: *clock, mark: *mark, due: *due }
        }
        Command::EraseResidentData { .. } => unreachable!("handled above"),
    };
    Ok(event)
}

fn assigned_unit(case: &Case) -> OrgCode {
    // Every state that has a unit (DISPATCHED, IN_PROGRESS) got it from a
    // Dispatched or Reassigned event; the fallback keeps `decide` total for
    // a hand-built state.
    case.unit.clone().unwrap_or_else(|| OrgCode::parse("unassigned").expect("valid org code"))
}

/// Fold one event into the state. Total: an event that does not apply to the
/// state (impossible for a history written through `decide`) leaves it as is,
/// apart from counting the version.
pub fn evolve(state: CaseState, event: &Event) -> CaseState {
    let mut case = match (state, event) {
        (None, Event::Filed(filed)) => {
            return Some(Case {
                id: filed.case_id,
                grid: filed.grid.clone(),
                category: filed.category.clone(),
                state: State::Reported,
                version: 1,
                severity_hint: filed.severity_hint,
                tier: None,
                unit: None,
                supervision: Supervision::None,
                urgent: false,
                deadlines: BTreeMap::new(),
                terms: BTreeMap::new(),
                marks: BTreeSet::new(),
                pending_extension: None,
                approved_extension_days: 0,
                hold_requested: false,
                feedback: None,
                returns: 0,
                reworks: 0,
                reopenings: 0,
                contact: if filed.contact.is_some() { ContactState::Given } else { ContactState::None },
                request_kind: filed.request_kind,
                added_reports: 0,
                merged_into: None,
                replied: false,
                called_back: false,
            });
        }
        (None, _) => return None,
        (Some(case), _) => case,
    };
    case.version += 1;
    let restart = |case: &mut Case, clocks: &[Clock]| {
        for clock in clocks {
            case.deadlines.remove(clock);
            case.terms.remove(clock);
            case.marks.retain(|(marked, _)| marked != clock);
        }
    };
    let record_terms = |case: &mut Case, basis: &Option<DeadlineBasis>| {
        if let Some(basis) = basis {
            case.terms.extend(basis.terms.iter().map(|(clock, terms)| (*clock, terms.clone())));
        }
    };
    match event {
        Event::Filed(_) => {}
        Event::Registered { tier, .. } => {
            case.state = State::Registered;
            case.tier = Some(*tier);
            restart(&mut case, &[Clock::Register]);
        }
        Event::Voided { .. } => {
            case.state = State::Voided;
            restart(&mut case, &[Clock::Register]);
        }
        Event::Dispatched { unit, acknowledge_due, resolve_due, basis }
        | Event::Reassigned { to: unit, acknowledge_due, resolve_due, basis, .. } => {
            case.state = State::Dispatched;
            case.unit = Some(unit.clone());
            restart(&mut case, &[Clock::Acknowledge, Clock::Resolve]);
            record_terms(&mut case, basis);
            case.deadlines.insert(Clock::Acknowledge, *acknowledge_due);
            case.deadlines.insert(Clock::Resolve, *resolve_due);
        }
        Event::Acknowledged { .. } => {
            case.state = State::InProgress;
            restart(&mut case, &[Clock::Acknowledge]);
        }
        Event::Returned { .. } => {
            case.state = State::Registered;
            case.unit = None;
            case.returns += 1;
            case.pending_extension = None;
            case.hold_requested = false;
            restart(&mut case, &[Clock::Acknowledge, Clock::Resolve]);
        }
        Event::ProgressAdded { .. } => {}
        Event::ReportAdded { .. } => case.added_reports += 1,
        Event::MergedInto { main, .. } => {
            case.state = State::Voided;
            case.merged_into = Some(*main);
        }
        Event::DuplicateMerged { reports, .. } => case.added_reports += reports,
        Event::ExtensionRequested { working_days, .. } => case.pending_extension = Some(*working_days),
        Event::ExtensionApproved { approved_working_days, .. } => {
            case.pending_extension = None;
            case.approved_extension_days += approved_working_days;
        }
        Event::ExtensionRejected { .. } => case.pending_extension = None,
        Event::HoldRequested { .. } => case.hold_requested = true,
        Event::HoldApproved { .. } => {
            case.hold_requested = false;
            case.state = State::OnHold;
        }
        Event::HoldRejected { .. } => case.hold_requested = false,
        Event::Resumed => case.state = State::InProgress,
        Event::Resolved { .. } => {
            case.state = State::Resolved;
            case.pending_extension = None;
            case.hold_requested = false;
            // The resolve deadline stays: a rework resumes against it.
            restart(&mut case, &[Clock::Verify]);
        }
        Event::VerificationPassed { .. } => {
            case.state = State::Closed;
            case.feedback = None;
            restart(&mut case, &[Clock::Verify]);
        }
        Event::VerificationFailed { .. } => {
            case.state = State::InProgress;
            case.reworks += 1;
            restart(&mut case, &[Clock::Verify]);
        }
        Event::FeedbackRecorded { feedback, .. } => case.feedback = Some(*feedback),
        Event::Replied { .. } => {
            case.replied = true;
            restart(&mut case, &[Clock::Reply]);
        }
        Event::CallbackRecorded { reached: true, satisfaction, .. } => {
            case.called_back = true;
            case.feedback = *satisfaction;
            restart(&mut case, &[Clock::Callback]);
        }
        Event::CallbackRecorded { reached: false, .. } => {}
        Event::Reopened { .. } => {
            case.state = State::InProgress;
            case.reopenings += 1;
            case.feedback = None;
            case.called_back = false;
            restart(&mut case, &[Clock::Callback]);
        }
        Event::Cancelled { .. } => {
            case.state = State::Cancelled;
            case.deadlines.clear();
            case.marks.clear();
        }
        Event::Supervised { to, .. } => case.supervision = *to,
        Event::UrgencySet { urgent, .. } => case.urgent = *urgent,
        Event::DeadlineSet { clock, due, basis } => {
            restart(&mut case, &[*clock]);
            case.deadlines.insert(*clock, *due);
            record_terms(&mut case, basis);
        }
        Event::ClockMarked { clock, mark, .. } => {
            case.marks.insert((*clock, *mark));
        }
        Event::ResidentDataErased { .. } => case.contact = ContactState::Erased,
    }
    Some(case)
}

/// Fold a whole history.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> CaseState {
    events.into_iter().fold(None, evolve)
}

#[cfg(test)]
mod tests;
