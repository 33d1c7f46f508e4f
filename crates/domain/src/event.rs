use jiff::Timestamp;

use crate::case::DeadlineBasis;
use crate::{
    AttachmentRef, CaseId, CategoryCode, Channel, Clock, ClockMark, Contact, Feedback, GridCode, Location, OrgCode,
    OutsideGrid, ReplyMethod, RequestKind, Supervision, Text, Tier,
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
    pub contact: Option<Contact>,
    pub attachments: Vec<AttachmentRef>,
    /// Set by intake, not by the filer: the coordinates lie outside the
    /// grid's boundary, beyond the tolerance.
    pub outside_grid: Option<OutsideGrid>,
    /// Set by intake from who filed: a grid worker's app or a partner system.
    pub channel: Channel,
    /// What the resident asks for, when a resident asks (a partner's
    /// requests, a worker's report of a resident's request).
    pub request_kind: Option<RequestKind>,
    /// The filer's own id of this request (a partner's request number),
    /// from which the case id was derived.
    pub reference: Option<Text>,
}

/// What happened to a case. Who, when and why-in-general live in the stored
/// envelope (envelope crate); the event holds the facts of the change.
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
    /// 并案: this case (a duplicate) was merged into `main`, which goes on.
    MergedInto {
        main: CaseId,
        reason: Text,
    },
    /// 并案: the duplicate's reports, reporters and photos now belong here.
    DuplicateMerged {
        duplicate: CaseId,
        reports: u32,
        reporters: Vec<String>,
        attachments: Vec<AttachmentRef>,
    },
    /// Another report of the same problem (the actor reported it).
    ReportAdded {
        reported_at: Timestamp,
        location: Option<Location>,
        note: Option<Text>,
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
    /// The resident was answered.
    Replied {
        method: ReplyMethod,
        text: Text,
    },
    /// A callback after closure: reached or not, and how satisfied.
    CallbackRecorded {
        reached: bool,
        attempts: u32,
        satisfaction: Option<Feedback>,
        reason: Option<Text>,
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
    /// The resident's contact details were erased (their data key destroyed):
    /// who and why are in the envelope and the reason; no personal data.
    ResidentDataErased {
        reason: Text,
    },
}

impl Event {
    /// Every event kind's stable name, as stored (the envelope's `type`).
    pub const KINDS: [&'static str; 31] = [
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
        "resident_data_erased",
        "replied",
        "callback_recorded",
        "report_added",
        "merged_into",
        "duplicate_merged",
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
            Event::ReportAdded { .. } => "report_added",
            Event::MergedInto { .. } => "merged_into",
            Event::DuplicateMerged { .. } => "duplicate_merged",
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
            Event::Replied { .. } => "replied",
            Event::CallbackRecorded { .. } => "callback_recorded",
            Event::Reopened { .. } => "reopened",
            Event::Cancelled { .. } => "cancelled",
            Event::Supervised { .. } => "supervised",
            Event::UrgencySet { .. } => "urgency_set",
            Event::DeadlineSet { .. } => "deadline_set",
            Event::ClockMarked { .. } => "clock_marked",
            Event::ResidentDataErased { .. } => "resident_data_erased",
        }
    }
}

impl Event {
    /// Whether two events record the same request: equal in everything but
    /// what the server computes when it records one (the deadlines of a
    /// dispatch or reassignment, and their basis). A retried command is
    /// recognised by this, so a command id reused for other content is not.
    pub fn same_request(&self, other: &Event) -> bool {
        match (self, other) {
            (Event::Dispatched { unit: a, .. }, Event::Dispatched { unit: b, .. }) => a == b,
            (
                Event::Reassigned { from: from_a, to: to_a, reason: reason_a, .. },
                Event::Reassigned { from: from_b, to: to_b, reason: reason_b, .. },
            ) => from_a == from_b && to_a == to_b && reason_a == reason_b,
            _ => self == other,
        }
    }

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
            | Event::ResidentDataErased { reason }
            | Event::MergedInto { reason, .. }
            | Event::Supervised { reason, .. } => Some(reason),
            Event::ExtensionApproved { reason, .. }
            | Event::HoldApproved { reason }
            | Event::UrgencySet { reason, .. } => reason.as_ref(),
            Event::VerificationPassed { note } | Event::ReportAdded { note, .. } => note.as_ref(),
            Event::FeedbackRecorded { comment, .. } => comment.as_ref(),
            Event::Replied { text, .. } => Some(text),
            Event::CallbackRecorded { reason, .. } => reason.as_ref(),
            Event::Acknowledged { .. }
            | Event::DuplicateMerged { .. }
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
            Event::ProgressAdded { attachments, .. }
            | Event::ReportAdded { attachments, .. }
            | Event::DuplicateMerged { attachments, .. } => attachments,
            Event::Resolved { evidence, .. } => evidence,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_same_request_ignores_only_what_the_server_computed() {
        let unit = OrgCode::parse("unit.property.990101001").unwrap();
        let other = OrgCode::parse("unit.urban.990101").unwrap();
        let dispatched = |unit: &OrgCode, due: &str| Event::Dispatched {
            unit: unit.clone(),
            acknowledge_due: at(due),
            resolve_due: at(due),
            basis: None,
        };
        assert!(dispatched(&unit, "2026-12-02T10:00:00Z").same_request(&dispatched(&unit, "2026-12-03T10:00:00Z")));
        assert!(!dispatched(&unit, "2026-12-02T10:00:00Z").same_request(&dispatched(&other, "2026-12-02T10:00:00Z")));

        let asked =
            |days: u32| Event::ExtensionRequested { working_days: days, reason: Text::reason("材料").unwrap() };
        assert!(asked(2).same_request(&asked(2)));
        assert!(!asked(2).same_request(&asked(3)), "two days and three days are different requests");
        assert!(!asked(2).same_request(&Event::Resumed), "different kinds are never the same request");
    }
}
