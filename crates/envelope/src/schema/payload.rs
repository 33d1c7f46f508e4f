//! The stored payloads, version 1 to 3: a frozen wire contract, mirrored
//! from the domain's events and kept apart from them (the domain may rename
//! freely, history keeps its names).

use gridcase_domain::{
    AttachmentRef, CaseId, CategoryCode, Channel, Clock, ClockMark, Contact, DeadlineBasis, Event, Feedback, Filing,
    GridCode, Location, OrgCode, OutsideGrid, ReplyMethod, RequestKind, ResidentContact, SealedData, Supervision, Text,
    Tier,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sealing::SealedJson;

/// Every `type` a stored event may have.
pub(super) const KNOWN_TYPES: [&str; 31] = Event::KINDS;

/// Version 1 payloads. The variant name (snake case) is the stored `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub(super) enum PayloadV1 {
    Filed {
        grid_code: GridCode,
        category_code: CategoryCode,
        description: Text,
        location: Location,
        reported_at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity_hint: Option<Tier>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resident_contact: Option<ContactV1>,
        #[serde(default)]
        attachments: Vec<AttachmentRef>,
        /// Added after version 3 without a new version: an older reader
        /// passes over it and reads the rest of the filing right.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outside_grid: Option<OutsideGrid>,
        /// Added with the partners' channel, without a new version: left
        /// out for a grid worker's filing (as every filing before), and an
        /// older reader passes over them.
        #[serde(default, skip_serializing_if = "Channel::is_grid_worker")]
        channel: Channel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_kind: Option<RequestKind>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<Text>,
    },
    Registered {
        tier: Tier,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Text>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
    Voided {
        reason: Text,
    },
    Dispatched {
        unit: OrgCode,
        acknowledge_due: Timestamp,
        resolve_due: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
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
        from_unit: OrgCode,
        to_unit: OrgCode,
        acknowledge_due: Timestamp,
        resolve_due: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        basis: Option<DeadlineBasis>,
        reason: Text,
    },
    ProgressAdded {
        note: Text,
        #[serde(default)]
        attachments: Vec<AttachmentRef>,
    },
    MergedInto {
        main: CaseId,
        reason: Text,
    },
    DuplicateMerged {
        duplicate: CaseId,
        reports: u32,
        #[serde(default)]
        reporters: Vec<String>,
        #[serde(default)]
        attachments: Vec<AttachmentRef>,
    },
    ReportAdded {
        reported_at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<Location>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Text>,
        #[serde(default)]
        attachments: Vec<AttachmentRef>,
    },
    ExtensionRequested {
        working_days: u32,
        reason: Text,
    },
    ExtensionApproved {
        requested_working_days: u32,
        approved_working_days: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Text>,
    },
    HoldRejected {
        reason: Text,
    },
    Resumed {},
    Resolved {
        summary: Text,
        #[serde(default)]
        evidence: Vec<AttachmentRef>,
    },
    VerificationPassed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Text>,
    },
    VerificationFailed {
        reason: Text,
    },
    FeedbackRecorded {
        feedback: Feedback,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<Text>,
    },
    Replied {
        method: ReplyMethod,
        text: Text,
    },
    CallbackRecorded {
        reached: bool,
        attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        satisfaction: Option<Feedback>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Text>,
    },
    Reopened {
        reason: Text,
    },
    Cancelled {
        reason: Text,
    },
    Supervised {
        from_level: Supervision,
        to_level: Supervision,
        reason: Text,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escalated_to: Option<OrgCode>,
    },
    UrgencySet {
        urgent: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Text>,
    },
    DeadlineSet {
        clock: Clock,
        due: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        basis: Option<DeadlineBasis>,
    },
    ClockMarked {
        clock: Clock,
        mark: ClockMark,
        due: Timestamp,
    },
    ResidentDataErased {
        reason: Text,
    },
}

/// A filing's contact details: sealed (payload version 2) or, in history
/// written before sealing, in clear. Read by whether `sealed` is there, so a
/// malformed sealed form is an error, never clear details with nothing in them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(super) enum ContactV1 {
    Sealed { sealed: SealedJson },
    Clear(ResidentContact),
}

impl<'de> Deserialize<'de> for ContactV1 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Sealed {
            sealed: SealedJson,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Clear {
            #[serde(default)]
            name: Option<gridcase_domain::PersonName>,
            #[serde(default)]
            phone: Option<gridcase_domain::PhoneNumber>,
        }
        let value = Value::deserialize(deserializer)?;
        if value.get("sealed").is_some() {
            let Sealed { sealed } = serde_json::from_value(value).map_err(D::Error::custom)?;
            if sealed.alg != crate::sealing::ALGORITHM {
                return Err(D::Error::custom(format!(
                    "sealed with {:?}, this build opens only {}",
                    sealed.alg,
                    crate::sealing::ALGORITHM
                )));
            }
            Ok(ContactV1::Sealed { sealed })
        } else {
            let Clear { name, phone } = serde_json::from_value(value).map_err(D::Error::custom)?;
            Ok(ContactV1::Clear(ResidentContact { name, phone, email: None }))
        }
    }
}

impl From<Contact> for ContactV1 {
    fn from(contact: Contact) -> Self {
        match contact {
            Contact::Clear(clear) => ContactV1::Clear(clear),
            Contact::Sealed(sealed) => ContactV1::Sealed { sealed: SealedJson::from(sealed) },
        }
    }
}

impl From<ContactV1> for Contact {
    fn from(contact: ContactV1) -> Self {
        match contact {
            ContactV1::Clear(clear) => Contact::Clear(clear),
            // Another algorithm's ciphertext simply does not open.
            ContactV1::Sealed { sealed } => {
                Contact::Sealed(SealedData { nonce: sealed.nonce, ciphertext: sealed.ciphertext })
            }
        }
    }
}

impl PayloadV1 {
    pub(super) fn from_event(event: &Event) -> Self {
        match event.clone() {
            Event::Filed(filed) => PayloadV1::Filed {
                grid_code: filed.grid,
                category_code: filed.category,
                description: filed.description,
                location: filed.location,
                reported_at: filed.reported_at,
                severity_hint: filed.severity_hint,
                resident_contact: filed.contact.map(ContactV1::from),
                attachments: filed.attachments,
                outside_grid: filed.outside_grid,
                channel: filed.channel,
                request_kind: filed.request_kind,
                reference: filed.reference,
            },
            Event::Registered { tier, note, policy } => PayloadV1::Registered { tier, note, policy },
            Event::Voided { reason } => PayloadV1::Voided { reason },
            Event::Dispatched { unit, acknowledge_due, resolve_due, basis } => {
                PayloadV1::Dispatched { unit, acknowledge_due, resolve_due, basis }
            }
            Event::Acknowledged { unit } => PayloadV1::Acknowledged { unit },
            Event::Returned { unit, reason } => PayloadV1::Returned { unit, reason },
            Event::Reassigned { from, to, acknowledge_due, resolve_due, basis, reason } => {
                PayloadV1::Reassigned { from_unit: from, to_unit: to, acknowledge_due, resolve_due, basis, reason }
            }
            Event::ProgressAdded { note, attachments } => PayloadV1::ProgressAdded { note, attachments },
            Event::ReportAdded { reported_at, location, note, attachments } => {
                PayloadV1::ReportAdded { reported_at, location, note, attachments }
            }
            Event::MergedInto { main, reason } => PayloadV1::MergedInto { main, reason },
            Event::DuplicateMerged { duplicate, reports, reporters, attachments } => {
                PayloadV1::DuplicateMerged { duplicate, reports, reporters, attachments }
            }
            Event::ExtensionRequested { working_days, reason } => {
                PayloadV1::ExtensionRequested { working_days, reason }
            }
            Event::ExtensionApproved { requested_working_days, approved_working_days, reason } => {
                PayloadV1::ExtensionApproved { requested_working_days, approved_working_days, reason }
            }
            Event::ExtensionRejected { requested_working_days, reason } => {
                PayloadV1::ExtensionRejected { requested_working_days, reason }
            }
            Event::HoldRequested { reason } => PayloadV1::HoldRequested { reason },
            Event::HoldApproved { reason } => PayloadV1::HoldApproved { reason },
            Event::HoldRejected { reason } => PayloadV1::HoldRejected { reason },
            Event::Resumed => PayloadV1::Resumed {},
            Event::Resolved { summary, evidence } => PayloadV1::Resolved { summary, evidence },
            Event::VerificationPassed { note } => PayloadV1::VerificationPassed { note },
            Event::VerificationFailed { reason } => PayloadV1::VerificationFailed { reason },
            Event::FeedbackRecorded { feedback, comment } => PayloadV1::FeedbackRecorded { feedback, comment },
            Event::Replied { method, text } => PayloadV1::Replied { method, text },
            Event::CallbackRecorded { reached, attempts, satisfaction, reason } => {
                PayloadV1::CallbackRecorded { reached, attempts, satisfaction, reason }
            }
            Event::Reopened { reason } => PayloadV1::Reopened { reason },
            Event::Cancelled { reason } => PayloadV1::Cancelled { reason },
            Event::Supervised { from, to, reason, escalated_to } => {
                PayloadV1::Supervised { from_level: from, to_level: to, reason, escalated_to }
            }
            Event::UrgencySet { urgent, reason } => PayloadV1::UrgencySet { urgent, reason },
            Event::DeadlineSet { clock, due, basis } => PayloadV1::DeadlineSet { clock, due, basis },
            Event::ClockMarked { clock, mark, due } => PayloadV1::ClockMarked { clock, mark, due },
            Event::ResidentDataErased { reason } => PayloadV1::ResidentDataErased { reason },
        }
    }

    pub(super) fn into_event(self, case_id: CaseId) -> Event {
        match self {
            PayloadV1::Filed {
                grid_code,
                category_code,
                description,
                location,
                reported_at,
                severity_hint,
                resident_contact,
                attachments,
                outside_grid,
                channel,
                request_kind,
                reference,
            } => Event::Filed(Filing {
                case_id,
                grid: grid_code,
                category: category_code,
                description,
                location,
                reported_at,
                severity_hint,
                contact: resident_contact.map(Contact::from),
                attachments,
                outside_grid,
                channel,
                request_kind,
                reference,
            }),
            PayloadV1::Registered { tier, note, policy } => Event::Registered { tier, note, policy },
            PayloadV1::Voided { reason } => Event::Voided { reason },
            PayloadV1::Dispatched { unit, acknowledge_due, resolve_due, basis } => {
                Event::Dispatched { unit, acknowledge_due, resolve_due, basis }
            }
            PayloadV1::Acknowledged { unit } => Event::Acknowledged { unit },
            PayloadV1::Returned { unit, reason } => Event::Returned { unit, reason },
            PayloadV1::Reassigned { from_unit, to_unit, acknowledge_due, resolve_due, basis, reason } => {
                Event::Reassigned { from: from_unit, to: to_unit, acknowledge_due, resolve_due, basis, reason }
            }
            PayloadV1::ProgressAdded { note, attachments } => Event::ProgressAdded { note, attachments },
            PayloadV1::ReportAdded { reported_at, location, note, attachments } => {
                Event::ReportAdded { reported_at, location, note, attachments }
            }
            PayloadV1::MergedInto { main, reason } => Event::MergedInto { main, reason },
            PayloadV1::DuplicateMerged { duplicate, reports, reporters, attachments } => {
                Event::DuplicateMerged { duplicate, reports, reporters, attachments }
            }
            PayloadV1::ExtensionRequested { working_days, reason } => {
                Event::ExtensionRequested { working_days, reason }
            }
            PayloadV1::ExtensionApproved { requested_working_days, approved_working_days, reason } => {
                Event::ExtensionApproved { requested_working_days, approved_working_days, reason }
            }
            PayloadV1::ExtensionRejected { requested_working_days, reason } => {
                Event::ExtensionRejected { requested_working_days, reason }
            }
            PayloadV1::HoldRequested { reason } => Event::HoldRequested { reason },
            PayloadV1::HoldApproved { reason } => Event::HoldApproved { reason },
            PayloadV1::HoldRejected { reason } => Event::HoldRejected { reason },
            PayloadV1::Resumed {} => Event::Resumed,
            PayloadV1::Resolved { summary, evidence } => Event::Resolved { summary, evidence },
            PayloadV1::VerificationPassed { note } => Event::VerificationPassed { note },
            PayloadV1::VerificationFailed { reason } => Event::VerificationFailed { reason },
            PayloadV1::FeedbackRecorded { feedback, comment } => Event::FeedbackRecorded { feedback, comment },
            PayloadV1::Replied { method, text } => Event::Replied { method, text },
            PayloadV1::CallbackRecorded { reached, attempts, satisfaction, reason } => {
                Event::CallbackRecorded { reached, attempts, satisfaction, reason }
            }
            PayloadV1::Reopened { reason } => Event::Reopened { reason },
            PayloadV1::Cancelled { reason } => Event::Cancelled { reason },
            PayloadV1::Supervised { from_level, to_level, reason, escalated_to } => {
                Event::Supervised { from: from_level, to: to_level, reason, escalated_to }
            }
            PayloadV1::UrgencySet { urgent, reason } => Event::UrgencySet { urgent, reason },
            PayloadV1::DeadlineSet { clock, due, basis } => Event::DeadlineSet { clock, due, basis },
            PayloadV1::ClockMarked { clock, mark, due } => Event::ClockMarked { clock, mark, due },
            PayloadV1::ResidentDataErased { reason } => Event::ResidentDataErased { reason },
        }
    }
}
