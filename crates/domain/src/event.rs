use jiff::Timestamp;

use crate::case::DeadlineBasis;
use crate::{
    AttachmentRef, CaseId, CategoryCode, Clock, ClockMark, Feedback, GridCode, Location, OrgCode, ResidentContact,
    Supervision, Text, Tier,
};

/// A grid worker's report: the command's content, and the facts the
/// filing event records, are the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filing {
    pub case_id: CaseId,
    pub grid: GridCode,
    pub category: CategoryCode,
    pub description: Text,
    pub location: Location,
    pub reported_at: Timestamp,
    pub severity_hint: Option<Tier>,
    pub contact: Option<ResidentContact>,
    pub attachments: Vec<AttachmentRef>,
}

/// What happened to a case. Who, when and why-in-general live in the stored
/// envelope (eventlog crate); the event holds the facts of the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Filed(Filing),
    /// `policy` names the policy version that chose the tier, when a policy did.
    Registered {
        tier: Tier,
        note: Option<Text>,
        policy: Option<String>,
    },
    Voided {
        reason: Text,
    },
    Dispatched {
        unit: OrgCode,
        acknowledge_due: Timestamp,
        resolve_due: Timestamp,
        basis: Option<DeadlineBasis>,
    },
    Acknowledged {
        unit: OrgCode,
    },
    Returned {
        unit: OrgCode,
        reason: Text,
    },
    Reassigned {
        from: OrgCode,
        to: OrgCode,
        acknowledge_due: Timestamp,
        resolve_due: Timestamp,
        basis: Option<DeadlineBasis>,
        reason: Text,
    },
    ProgressAdded {
        note: Text,
        attachments: Vec<AttachmentRef>,
    },
    ExtensionRequested {
        working_days: u32,
        reason: Text,
    },
    ExtensionApproved {
        requested_working_days: u32,
        approved_working_days: u32,
        reason: Option<Text>,
    },
    ExtensionRejected {
        requested_working_days: u32,
        reason: Text,
    },
    HoldRequested {
        reason: Text,
    },
    HoldApproved {
        reason: Option<Text>,
    },
    HoldRejected {
        reason: Text,
    },
    Resumed,
    Resolved {
        summary: Text,
        evidence: Vec<AttachmentRef>,
    },
    VerificationPassed {
        note: Option<Text>,
    },
    VerificationFailed {
        reason: Text,
    },
    FeedbackRecorded {
        feedback: Feedback,
        comment: Option<Text>,
    },
    Reopened {
        reason: Text,
    },
    Cancelled {
        reason: Text,
    },
    /// `escalated_to`: the organisation the case was raised to (township → county).
    Supervised {
        from: Supervision,
        to: Supervision,
        reason: Text,
        escalated_to: Option<OrgCode>,
    },
    UrgencySet {
        urgent: bool,
        reason: Option<Text>,
    },
    DeadlineSet {
        clock: Clock,
        due: Timestamp,
        basis: Option<DeadlineBasis>,
    },
    ClockMarked {
        clock: Clock,
        mark: ClockMark,
        due: Timestamp,
    },
}

impl Event {
    /// Every event kind's stable name, as stored (the eventlog's `type`).
    pub const KINDS: [&'static str; 25] = [
        "filed",
        "registered",
        "voided",
        "dispatched",
        "acknowledged",
        "returned",
        "reassigned",
        "progress_added",
        "extension_requested",
        "extension_approved",
        "extension_rejected",
        "hold_requested",
        "hold_approved",
        "hold_rejected",
        "resumed",
        "resolved",
        "verification_passed",
        "verification_failed",
        "feedback_recorded",
        "reopened",
        "cancelled",
        "supervised",
        "urgency_set",
        "deadline_set",
        "clock_marked",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Event::Filed(_) => "filed",
            Event::Registered { .. } => "registered",
            Event::Voided { .. } => "voided",
            Event::Dispatched { .. } => "dispatched",
            Event::Acknowledged { .. } => "acknowledged",
            Event::Returned { .. } => "returned",
            Event::Reassigned { .. } => "reassigned",
            Event::ProgressAdded { .. } => "progress_added",
            Event::ExtensionRequested { .. } => "extension_requested",
            Event::ExtensionApproved { .. } => "extension_approved",
            Event::ExtensionRejected { .. } => "extension_rejected",
            Event::HoldRequested { .. } => "hold_requested",
            Event::HoldApproved { .. } => "hold_approved",
            Event::HoldRejected { .. } => "hold_rejected",
            Event::Resumed => "resumed",
            Event::Resolved { .. } => "resolved",
            Event::VerificationPassed { .. } => "verification_passed",
            Event::VerificationFailed { .. } => "verification_failed",
            Event::FeedbackRecorded { .. } => "feedback_recorded",
            Event::Reopened { .. } => "reopened",
            Event::Cancelled { .. } => "cancelled",
            Event::Supervised { .. } => "supervised",
            Event::UrgencySet { .. } => "urgency_set",
            Event::DeadlineSet { .. } => "deadline_set",
            Event::ClockMarked { .. } => "clock_marked",
        }
    }
}

impl Event {
    /// The reason, note, summary or description the event records, if any.
    pub fn reason(&self) -> Option<&Text> {
        match self {
            Event::Filed(filing) => Some(&filing.description),
            Event::Registered { note, .. } => note.as_ref(),
            Event::ProgressAdded { note, .. } => Some(note),
            Event::Resolved { summary, .. } => Some(summary),
            Event::Voided { reason }
            | Event::Returned { reason, .. }
            | Event::Reassigned { reason, .. }
            | Event::ExtensionRequested { reason, .. }
            | Event::ExtensionRejected { reason, .. }
            | Event::HoldRequested { reason }
            | Event::HoldRejected { reason }
            | Event::VerificationFailed { reason }
            | Event::Reopened { reason }
            | Event::Cancelled { reason }
            | Event::Supervised { reason, .. } => Some(reason),
            Event::ExtensionApproved { reason, .. }
            | Event::HoldApproved { reason }
            | Event::UrgencySet { reason, .. } => reason.as_ref(),
            Event::VerificationPassed { note } => note.as_ref(),
            Event::FeedbackRecorded { comment, .. } => comment.as_ref(),
            Event::Acknowledged { .. }
            | Event::Dispatched { .. }
            | Event::Resumed
            | Event::DeadlineSet { .. }
            | Event::ClockMarked { .. } => None,
        }
    }

    /// The photos and files the event carries.
    pub fn attachments(&self) -> &[AttachmentRef] {
        match self {
            Event::Filed(filing) => &filing.attachments,
            Event::ProgressAdded { attachments, .. } => attachments,
            Event::Resolved { evidence, .. } => evidence,
            _ => &[],
        }
    }
}
