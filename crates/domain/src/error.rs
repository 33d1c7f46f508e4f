use jiff::Timestamp;

use crate::{Clock, ClockMark, State, Supervision};

/// A business rule that refused a command. Each variant names the rule; none
/// is a technical failure (those belong to the services).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("case already filed: a case id names one case forever")]
    AlreadyFiled,
    #[error("no such case: it has not been filed")]
    NotFiled,
    #[error("cannot {command} a case that is {state}")]
    TransitionNotAllowed { command: &'static str, state: State },
    #[error("a reason is required to {command} a case")]
    ReasonRequired { command: &'static str },
    #[error("deadline {due} for the {clock:?} clock lies before now ({now})")]
    DeadlineInPast { clock: Clock, due: Timestamp, now: Timestamp },
    #[error("the case is already assigned to {unit}")]
    SameUnit { unit: String },
    #[error("a case cannot be merged into itself")]
    MergeIntoItself,
    #[error("an extension request is already pending")]
    ExtensionAlreadyPending,
    #[error("no extension request is pending")]
    NoExtensionPending,
    #[error("an extension must be 1-{max} working days, got {requested}")]
    ExtensionOutOfRange { requested: u32, max: u32 },
    #[error("cannot approve {approved} working days when {requested} were requested (1-{requested} allowed)")]
    ApprovalOutOfRange { approved: u32, requested: u32 },
    #[error("a hold request is already pending")]
    HoldAlreadyPending,
    #[error("no hold request is pending")]
    NoHoldPending,
    #[error("feedback was already recorded for this closure")]
    FeedbackAlreadyRecorded,
    #[error("only a case whose resident feedback is UNSATISFIED can be reopened")]
    ReopenNeedsUnsatisfiedFeedback,
    #[error("supervision can only be raised: it is {current:?}, {requested:?} is not higher")]
    SupervisionNotRaised { current: Supervision, requested: Supervision },
    #[error("the urgent flag is already {urgent}")]
    UrgencyUnchanged { urgent: bool },
    #[error("the {clock:?} clock is not running while the case is {state}")]
    ClockNotRunning { clock: Clock, state: State },
    #[error("the {clock:?} clock has no deadline, or a different one than {due}")]
    StaleDeadline { clock: Clock, due: Timestamp },
    #[error("{mark:?} was already recorded for the {clock:?} clock")]
    ClockAlreadyMarked { clock: Clock, mark: ClockMark },
    #[error("the {clock:?} clock is not overdue before {due}")]
    NotYetDue { clock: Clock, due: Timestamp },
    #[error("the case holds no contact details of a resident")]
    NoResidentData,
    #[error("the resident's contact details were already erased")]
    ResidentDataAlreadyErased,
    #[error("the case is not a resident's request (it has no kind of request)")]
    NotAResidentRequest,
    #[error("the resident was already reached by a callback after this closure")]
    CallbackAlreadyDone,
    #[error("a callback that reached the resident records their satisfaction; one that did not, none")]
    CallbackSatisfaction,
}

impl DomainError {
    /// A stable identifier of the rule, for machine-readable error details.
    pub fn rule(&self) -> &'static str {
        match self {
            DomainError::AlreadyFiled => "ALREADY_FILED",
            DomainError::NotFiled => "NOT_FILED",
            DomainError::TransitionNotAllowed { .. } => "TRANSITION_NOT_ALLOWED",
            DomainError::ReasonRequired { .. } => "REASON_REQUIRED",
            DomainError::DeadlineInPast { .. } => "DEADLINE_IN_PAST",
            DomainError::SameUnit { .. } => "SAME_UNIT",
            DomainError::MergeIntoItself => "MERGE_INTO_ITSELF",
            DomainError::ExtensionAlreadyPending => "EXTENSION_ALREADY_PENDING",
            DomainError::NoExtensionPending => "NO_EXTENSION_PENDING",
            DomainError::ExtensionOutOfRange { .. } => "EXTENSION_OUT_OF_RANGE",
            DomainError::ApprovalOutOfRange { .. } => "APPROVAL_OUT_OF_RANGE",
            DomainError::HoldAlreadyPending => "HOLD_ALREADY_PENDING",
            DomainError::NoHoldPending => "NO_HOLD_PENDING",
            DomainError::FeedbackAlreadyRecorded => "FEEDBACK_ALREADY_RECORDED",
            DomainError::ReopenNeedsUnsatisfiedFeedback => "REOPEN_NEEDS_UNSATISFIED_FEEDBACK",
            DomainError::SupervisionNotRaised { .. } => "SUPERVISION_NOT_RAISED",
            DomainError::UrgencyUnchanged { .. } => "URGENCY_UNCHANGED",
            DomainError::ClockNotRunning { .. } => "CLOCK_NOT_RUNNING",
            DomainError::StaleDeadline { .. } => "STALE_DEADLINE",
            DomainError::ClockAlreadyMarked { .. } => "CLOCK_ALREADY_MARKED",
            DomainError::NotYetDue { .. } => "NOT_YET_DUE",
            DomainError::NoResidentData => "NO_RESIDENT_DATA",
            DomainError::ResidentDataAlreadyErased => "RESIDENT_DATA_ALREADY_ERASED",
            DomainError::NotAResidentRequest => "NOT_A_RESIDENT_REQUEST",
            DomainError::CallbackAlreadyDone => "CALLBACK_ALREADY_DONE",
            DomainError::CallbackSatisfaction => "CALLBACK_SATISFACTION",
        }
    }
}
