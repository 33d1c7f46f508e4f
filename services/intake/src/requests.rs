//! The lifecycle requests of `gridcase.cases.v1.CaseService`, checked field
//! by field before anything is loaded: each request type has one [`Check`],
//! which the handler calls and the fuzz target `lifecycle_requests` runs on
//! decoded wire bytes ([`check_wire`]), so what is fuzzed is what serves.
//! Pure: no IO, no clock. Every violation of a request is reported at once
//! (INVALID_ARGUMENT with a google.rpc.BadRequest).

use gridcase_domain::{
    AttachmentRef, CaseId, Feedback, OrgCode, Sha256Digest, Supervision as SupervisionLevel, Text, TextError, Tier,
};
use gridcase_grpc::{Violations, status};
use gridcase_proto::cases::v1 as api;
use gridcase_proto::common::v1 as common;
use gridcase_proto::convert;
use tonic::Status;

use crate::validate::{self, Limits};

mod reports;
use reports::wire_report;
pub(crate) use reports::{MergeRecord, ReportRecord, report_record};

/// A request checked: its fields parsed, or every violation in one status.
pub(crate) trait Check {
    type Checked;
    fn check(&self, limits: &Limits) -> Result<Self::Checked, Status>;
}

/// A command's context, checked.
pub(crate) struct Context {
    pub case_id: CaseId,
    pub command_id: String,
    pub expected_version: Option<u64>,
}

fn context(raw: Option<&api::CommandContext>, v: &mut Violations) -> Option<Context> {
    let Some(raw) = raw else {
        v.add("context", "REQUIRED", "is required: case_id and command_id");
        return None;
    };
    let case_id = match raw.case_id.trim() {
        "" => {
            v.add("context.case_id", "REQUIRED", "is required");
            None
        }
        text => CaseId::parse(text).map_err(|e| v.add("context.case_id", "MALFORMED", e.to_string())).ok(),
    };
    let command_id = raw.command_id.trim();
    let valid_command_id = (1..=128).contains(&command_id.len())
        && command_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if command_id.is_empty() {
        v.add("context.command_id", "REQUIRED", "is required: an id the client generates and reuses on retries");
    } else if !valid_command_id {
        v.add("context.command_id", "MALFORMED", "must be 1-128 letters, digits or -_.:");
    }
    Some(Context { case_id: case_id?, command_id: command_id.to_owned(), expected_version: raw.expected_version })
}

fn text_rule(error: &TextError) -> &'static str {
    match error {
        TextError::Blank => "REQUIRED",
        TextError::TooLong { .. } => "TOO_LONG",
        TextError::ControlCharacters => "MALFORMED",
    }
}

/// A required reason (or note, or summary).
fn required_text(field: &str, value: &str, v: &mut Violations) -> Option<Text> {
    Text::reason(value).map_err(|e| v.add(field, text_rule(&e), e.to_string())).ok()
}

/// An optional text: empty means absent.
fn optional_text(field: &str, value: &str, v: &mut Violations) -> Option<Text> {
    if value.trim().is_empty() { None } else { required_text(field, value, v) }
}

/// A reason required when `required`, else optional.
fn reason_if(required: bool, value: &str, v: &mut Violations) -> Option<Text> {
    if required { required_text("reason", value, v) } else { optional_text("reason", value, v) }
}

fn unit(field: &str, value: &str, v: &mut Violations) -> Option<OrgCode> {
    if value.trim().is_empty() {
        v.add(field, "REQUIRED", "is required: the handling unit's organisation code");
        return None;
    }
    OrgCode::parse(value.trim()).map_err(|e| v.add(field, "MALFORMED", e.to_string())).ok()
}

/// The parsed fields once no violation was found. Every parse that failed
/// added a violation, so a `None` cannot survive `into_result`; if one did,
/// that is a bug of this module, answered INTERNAL, never a panic.
fn done<T>(v: Violations, parsed: impl FnOnce() -> Option<T>) -> Result<T, Status> {
    v.into_result()?;
    parsed().ok_or_else(|| status::internal(&"a request passed its checks with a field unparsed"))
}

/// A command whose only field is a required reason.
pub(crate) struct WithReason {
    pub ctx: Context,
    pub reason: Text,
}

macro_rules! with_reason {
    ($($request:ty),+) => {$(
        impl Check for $request {
            type Checked = WithReason;
            fn check(&self, _: &Limits) -> Result<WithReason, Status> {
                let mut v = Violations::new();
                let ctx = context(self.context.as_ref(), &mut v);
                let reason = required_text("reason", &self.reason, &mut v);
                done(v, || Some(WithReason { ctx: ctx?, reason: reason? }))
            }
        }
    )+};
}

with_reason!(
    api::VoidRequest,
    api::ReturnRequest,
    api::RequestHoldRequest,
    api::ReopenRequest,
    api::CancelRequest,
    api::EraseResidentDataRequest
);

macro_rules! context_only {
    ($($request:ty),+) => {$(
        impl Check for $request {
            type Checked = Context;
            fn check(&self, _: &Limits) -> Result<Context, Status> {
                let mut v = Violations::new();
                let ctx = context(self.context.as_ref(), &mut v);
                done(v, || ctx)
            }
        }
    )+};
}

context_only!(api::AcknowledgeRequest, api::ResumeRequest);

pub(crate) struct Registration {
    pub ctx: Context,
    /// None: the tier the policy gives.
    pub tier: Option<Tier>,
    pub note: Option<Text>,
}

impl Check for api::RegisterRequest {
    type Checked = Registration;
    fn check(&self, _: &Limits) -> Result<Registration, Status> {
        let mut v = Violations::new();
        let ctx = context(self.context.as_ref(), &mut v);
        let tier = match common::Tier::try_from(self.tier) {
            Ok(common::Tier::Unspecified) => None,
            Ok(_) => convert::tier_from_proto(self.tier),
            Err(_) => {
                v.add(
                    "tier",
                    "UNKNOWN_VALUE",
                    "must be TIER_CRITICAL, TIER_URGENT, TIER_NORMAL, TIER_COMPLEX or unset",
                );
                None
            }
        };
        let note = optional_text("note", &self.note, &mut v);
        done(v, || Some(Registration { ctx: ctx?, tier, note }))
    }
}

pub(crate) struct ToUnit {
    pub ctx: Context,
    pub unit: OrgCode,
}

impl Check for api::DispatchRequest {
    type Checked = ToUnit;
    fn check(&self, _: &Limits) -> Result<ToUnit, Status> {
        let mut v = Violations::new();
        let ctx = context(self.context.as_ref(), &mut v);
        let unit = unit("unit", &self.unit, &mut v);
        done(v, || Some(ToUnit { ctx: ctx?, unit: unit? }))
    }
}

pub(crate) struct Reassignment {
    pub ctx: Context,
    pub unit: OrgCode,
    pub reason: Text,
}

impl Check for api::ReassignRequest {
    type Checked = Reassignment;
    fn check(&self, _: &Limits) -> Result<Reassignment, Status> {
        let mut v = Violations::new();
        let ctx = context(self.context.as_ref(), &mut v);
        let unit = unit("unit", &self.unit, &mut v);
        let reason = required_text("reason", &self.reason, &mut v);
        done(v, || Some(Reassignment { ctx: ctx?, unit: unit?, reason: reason? }))
    }
}

/// A text with photos (progress, resolution): the references checked here,
/// the photos' presence in the attachment stream by the handler.
pub(crate) struct WithAttachments {
    pub ctx: Context,
    pub text: Text,
    pub attachments: Vec<AttachmentRef>,
}

fn with_attachments(
    raw: Option<&api::CommandContext>,
    (text_field, text): (&str, &str),
    (refs_field, refs): (&str, &[common::AttachmentRef]),
    limits: &Limits,
) -> Result<WithAttachments, Status> {
    let mut v = Violations::new();
    let ctx = context(raw, &mut v);
    let text = required_text(text_field, text, &mut v);
    let attachments = validate::attachment_refs(refs_field, refs, limits, &mut v);
    done(v, || Some(WithAttachments { ctx: ctx?, text: text?, attachments }))
}

impl Check for api::AddProgressRequest {
    type Checked = WithAttachments;
    fn check(&self, limits: &Limits) -> Result<WithAttachments, Status> {
        with_attachments(self.context.as_ref(), ("note", &self.note), ("attachments", &self.attachments), limits)
    }
}

impl Check for api::ResolveRequest {
    type Checked = WithAttachments;
    fn check(&self, limits: &Limits) -> Result<WithAttachments, Status> {
        with_attachments(self.context.as_ref(), ("summary", &self.summary), ("evidence", &self.evidence), limits)
    }
}

pub(crate) struct ExtensionRequest {
    pub ctx: Context,
    pub working_days: u32,
    pub reason: Text,
}

impl Check for api::RequestExtensionRequest {
    type Checked = ExtensionRequest;
    fn check(&self, _: &Limits) -> Result<ExtensionRequest, Status> {
        let mut v = Violations::new();
        let ctx = context(self.context.as_ref(), &mut v);
        let max = gridcase_domain::MAX_EXTENSION_WORKING_DAYS;
        if !(1..=max).contains(&self.working_days) {
            v.add("working_days", "OUT_OF_RANGE", format!("must be 1-{max} working days"));
        }
        let reason = required_text("reason", &self.reason, &mut v);
        done(v, || Some(ExtensionRequest { ctx: ctx?, working_days: self.working_days, reason: reason? }))
    }
}

pub(crate) struct ExtensionDecision {
    pub ctx: Context,
    /// Some: approved, for so many working days.
    pub approved_working_days: Option<u32>,
    pub reason: Option<Text>,
}

impl Check for api::DecideExtensionRequest {
    type Checked = ExtensionDecision;
    fn check(&self, _: &Limits) -> Result<ExtensionDecision, Status> {
        let mut v = Violations::new();
        let ctx = context(self.context.as_ref(), &mut v);
        if self.approve && self.approved_working_days == 0 {
            v.add("approved_working_days", "REQUIRED", "must be at least 1 when approving");
        }
        // A refusal gives its reason.
        let reason = reason_if(!self.approve, &self.reason, &mut v);
        let approved_working_days = self.approve.then_some(self.approved_working_days);
        done(v, || Some(ExtensionDecision { ctx: ctx?, approved_working_days, reason }))
    }
}

/// A yes or no with a reason: a refusal (or a failed verification) must
/// give one, a yes may.
pub(crate) struct Decision {
    pub ctx: Context,
    pub yes: bool,
    pub reason: Option<Text>,
}

fn decision(
    raw: Option<&api::CommandContext>,
    yes: bool,
    reason: &str,
    reason_required_for_no: bool,
) -> Result<Decision, Status> {
    let mut v = Violations::new();
    let ctx = context(raw, &mut v);
    let reason = reason_if(!yes && reason_required_for_no, reason, &mut v);
    done(v, || Some(Decision { ctx: ctx?, yes, reason }))
}

impl Check for api::DecideHoldRequest {
    type Checked = Decision;
    fn check(&self, _: &Limits) -> Result<Decision, Status> {
        decision(self.context.as_ref(), self.approve, &self.reason, true)
    }
}

impl Check for api::VerifyRequest {
    type Checked = Decision;
    fn check(&self, _: &Limits) -> Result<Decision, Status> {
        decision(self.context.as_ref(), self.passed, &self.reason, true)
    }
}

impl Check for api::SetUrgentRequest {
    type Checked = Decision;
    fn check(&self, _: &Limits) -> Result<Decision, Status> {
        decision(self.context.as_ref(), self.urgent, &self.reason, false)
    }
}

pub(crate) struct FeedbackRecord {
    pub ctx: Context,
    pub feedback: Feedback,
    pub comment: Option<Text>,
}

impl Check for api::RecordFeedbackRequest {
    type Checked = FeedbackRecord;
    fn check(&self, _: &Limits) -> Result<FeedbackRecord, Status> {
        let mut v = Violations::new();
        let ctx = context(self.context.as_ref(), &mut v);
        let feedback = convert::feedback_from_proto(self.feedback);
        if feedback.is_none() {
            v.add(
                "feedback",
                "REQUIRED",
                "must be FEEDBACK_SATISFIED, FEEDBACK_BASICALLY_SATISFIED or FEEDBACK_UNSATISFIED",
            );
        }
        let comment = optional_text("comment", &self.comment, &mut v);
        done(v, || Some(FeedbackRecord { ctx: ctx?, feedback: feedback?, comment }))
    }
}

pub(crate) struct Supervision {
    pub ctx: Context,
    pub level: SupervisionLevel,
    pub reason: Text,
}

impl Check for api::SuperviseRequest {
    type Checked = Supervision;
    fn check(&self, _: &Limits) -> Result<Supervision, Status> {
        let mut v = Violations::new();
        let ctx = context(self.context.as_ref(), &mut v);
        let level = convert::supervision_from_proto(self.level);
        if level.is_none() {
            v.add("level", "REQUIRED", "must be SUPERVISION_NORMAL, SUPERVISION_YELLOW_CARD or SUPERVISION_RED_CARD");
        }
        let reason = required_text("reason", &self.reason, &mut v);
        done(v, || Some(Supervision { ctx: ctx?, level: level?, reason: reason? }))
    }
}

/// A case id in a read request (GetCase, GetHistory).
pub(crate) fn case_id(text: &str) -> Result<CaseId, Status> {
    CaseId::parse(text.trim()).map_err(|e| {
        Violations::one("case_id", if text.trim().is_empty() { "REQUIRED" } else { "MALFORMED" }, e.to_string())
    })
}

impl Check for api::GetCaseRequest {
    type Checked = CaseId;
    fn check(&self, _: &Limits) -> Result<CaseId, Status> {
        case_id(&self.case_id)
    }
}

impl Check for api::GetHistoryRequest {
    type Checked = CaseId;
    fn check(&self, _: &Limits) -> Result<CaseId, Status> {
        case_id(&self.case_id)
    }
}

/// What of an attachment is asked for: the original (or a range of it) or
/// a thumbnail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Portion {
    /// Bytes `offset..offset + length` of the original (`length` 0: to the end).
    Range { offset: u64, length: u64 },
    /// A JPEG whose longer side is at most this many pixels.
    Thumbnail { max_dimension: u32 },
}

/// The smallest and largest thumbnail asked for, in pixels.
pub(crate) const THUMBNAIL_DIMENSIONS: std::ops::RangeInclusive<u32> = 16..=1024;

impl Check for api::GetAttachmentRequest {
    type Checked = (CaseId, Sha256Digest, Portion);
    fn check(&self, _: &Limits) -> Result<(CaseId, Sha256Digest, Portion), Status> {
        // Every field's problem at once.
        let mut v = Violations::new();
        let rule = |text: &str| if text.trim().is_empty() { "REQUIRED" } else { "MALFORMED" };
        let case_id =
            CaseId::parse(self.case_id.trim()).map_err(|e| v.add("case_id", rule(&self.case_id), e.to_string())).ok();
        let sha256 = Sha256Digest::parse(self.sha256.trim())
            .map_err(|e| v.add("sha256", rule(&self.sha256), e.to_string()))
            .ok();
        let portion = match self.max_dimension {
            0 => Portion::Range { offset: self.offset, length: self.length },
            px if !THUMBNAIL_DIMENSIONS.contains(&px) => {
                v.add("max_dimension", "OUT_OF_RANGE", "must be 16-1024 pixels (0: the original)");
                Portion::Range { offset: 0, length: 0 }
            }
            _ if self.offset != 0 || self.length != 0 => {
                v.add("offset", "UNEXPECTED", "a thumbnail comes whole: no range with max_dimension");
                Portion::Range { offset: 0, length: 0 }
            }
            max_dimension => Portion::Thumbnail { max_dimension },
        };
        match (case_id, sha256) {
            (Some(case_id), Some(sha256)) if v.is_empty() => Ok((case_id, sha256, portion)),
            _ => Err(v.into_status()),
        }
    }
}

pub(crate) struct ReplyRecord {
    pub ctx: Context,
    pub method: gridcase_domain::ReplyMethod,
    pub text: Text,
}

impl Check for api::ReplyRequest {
    type Checked = ReplyRecord;
    fn check(&self, _: &Limits) -> Result<ReplyRecord, Status> {
        let mut v = Violations::new();
        let ctx = context(self.context.as_ref(), &mut v);
        let method = convert::reply_method_from_proto(self.method);
        if method.is_none() {
            v.add(
                "method",
                "REQUIRED",
                "must be REPLY_METHOD_PHONE, REPLY_METHOD_SMS, REPLY_METHOD_IN_PERSON or REPLY_METHOD_PARTNER",
            );
        }
        let text = required_text("text", &self.text, &mut v);
        done(v, || Some(ReplyRecord { ctx: ctx?, method: method?, text: text? }))
    }
}

pub(crate) struct CallbackRecord {
    pub ctx: Context,
    pub reached: bool,
    pub attempts: u32,
    pub satisfaction: Option<Feedback>,
    pub reason: Option<Text>,
}

/// The most attempts a callback may record.
pub const MAX_CALLBACK_ATTEMPTS: u32 = 99;

impl Check for api::RecordCallbackRequest {
    type Checked = CallbackRecord;
    fn check(&self, _: &Limits) -> Result<CallbackRecord, Status> {
        let mut v = Violations::new();
        let ctx = context(self.context.as_ref(), &mut v);
        let satisfaction = convert::feedback_from_proto(self.satisfaction);
        match (self.reached, satisfaction, self.satisfaction) {
            (true, None, _) => v.add(
                "satisfaction",
                "REQUIRED",
                "a callback that reached the resident records FEEDBACK_SATISFIED, FEEDBACK_BASICALLY_SATISFIED or FEEDBACK_UNSATISFIED",
            ),
            (false, _, value) if value != 0 => {
                v.add("satisfaction", "NOT_ALLOWED", "a callback that did not reach the resident records none")
            }
            _ => {}
        }
        if self.attempts > MAX_CALLBACK_ATTEMPTS {
            v.add("attempts", "OUT_OF_RANGE", format!("at most {MAX_CALLBACK_ATTEMPTS}"));
        }
        let reason = reason_if(satisfaction == Some(Feedback::Unsatisfied), &self.reason, &mut v);
        done(v, || {
            Some(CallbackRecord {
                ctx: ctx?,
                reached: self.reached,
                attempts: self.attempts.max(1),
                satisfaction,
                reason,
            })
        })
    }
}

fn wire<R: Check + prost::Message + Default>(bytes: &[u8], limits: &Limits) -> bool {
    R::decode(bytes).is_ok_and(|request| request.check(limits).is_ok())
}

/// A wire check: the bytes decoded as one request type, then checked.
pub type WireCheck = fn(&[u8], &Limits) -> bool;

/// Every request type of the case service, by its RPC's name, with its wire
/// check: the kinds of the fuzz target `lifecycle_requests`, in order.
pub const KINDS: [(&str, WireCheck); 27] = [
    ("Register", wire::<api::RegisterRequest>),
    ("Void", wire::<api::VoidRequest>),
    ("Dispatch", wire::<api::DispatchRequest>),
    ("Acknowledge", wire::<api::AcknowledgeRequest>),
    ("Return", wire::<api::ReturnRequest>),
    ("Reassign", wire::<api::ReassignRequest>),
    ("AddProgress", wire::<api::AddProgressRequest>),
    ("RequestExtension", wire::<api::RequestExtensionRequest>),
    ("DecideExtension", wire::<api::DecideExtensionRequest>),
    ("RequestHold", wire::<api::RequestHoldRequest>),
    ("DecideHold", wire::<api::DecideHoldRequest>),
    ("Resume", wire::<api::ResumeRequest>),
    ("Resolve", wire::<api::ResolveRequest>),
    ("Verify", wire::<api::VerifyRequest>),
    ("RecordFeedback", wire::<api::RecordFeedbackRequest>),
    ("Reopen", wire::<api::ReopenRequest>),
    ("Cancel", wire::<api::CancelRequest>),
    ("Supervise", wire::<api::SuperviseRequest>),
    ("SetUrgent", wire::<api::SetUrgentRequest>),
    ("EraseResidentData", wire::<api::EraseResidentDataRequest>),
    ("GetCase", wire::<api::GetCaseRequest>),
    ("GetHistory", wire::<api::GetHistoryRequest>),
    ("GetAttachment", wire::<api::GetAttachmentRequest>),
    ("Reply", wire::<api::ReplyRequest>),
    ("RecordCallback", wire::<api::RecordCallbackRequest>),
    ("AddReport", wire_report),
    ("Merge", wire::<api::MergeRequest>),
];

/// One request off the wire, of the kind `which` picks among [`KINDS`]:
/// decoded, then run through the check its handler makes (the fuzz target
/// `lifecycle_requests`). Whether it passed.
pub fn check_wire(which: u8, bytes: &[u8], limits: &Limits) -> bool {
    (KINDS[usize::from(which) % KINDS.len()].1)(bytes, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_attachment_bytes: 1024,
            max_clock_skew: jiff::SignedDuration::from_mins(10),
            max_report_age: jiff::SignedDuration::from_hours(720),
            grid_tolerance_m: 200,
        }
    }

    fn ctx() -> Option<api::CommandContext> {
        Some(api::CommandContext {
            case_id: "019a0000-0000-7000-8000-000000000001".into(),
            command_id: "c-1".into(),
            expected_version: None,
        })
    }

    fn fields(status: &Status) -> Vec<String> {
        use tonic_types::StatusExt as _;
        status
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|f| f.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_violation_of_a_request_is_reported_at_once() {
        let request = api::AddProgressRequest {
            context: Some(api::CommandContext {
                case_id: "nope".into(),
                command_id: String::new(),
                expected_version: None,
            }),
            note: "  ".into(),
            attachments: vec![common::AttachmentRef { sha256: "x".into(), size: 1, content_type: "image/jpeg".into() }],
        };
        let status = request.check(&limits()).err().expect("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let fields = fields(&status);
        for field in ["context.case_id", "context.command_id", "note"] {
            assert!(fields.iter().any(|f| f == field), "{field} missing from {fields:?}");
        }
        assert!(fields.iter().any(|f| f.starts_with("attachments")), "{fields:?}");
    }

    #[test]
    fn a_refusal_needs_a_reason_an_approval_does_not() {
        let no = api::DecideHoldRequest { context: ctx(), approve: false, reason: String::new() };
        assert_eq!(fields(&no.check(&limits()).err().expect("refused")), ["reason"]);
        let yes = api::DecideHoldRequest { context: ctx(), approve: true, reason: String::new() };
        assert!(yes.check(&limits()).unwrap().yes);
        let urgent_off = api::SetUrgentRequest { context: ctx(), urgent: false, reason: String::new() };
        assert!(urgent_off.check(&limits()).is_ok(), "SetUrgent's reason is optional either way");
        let approve_zero = api::DecideExtensionRequest {
            context: ctx(),
            approve: true,
            approved_working_days: 0,
            reason: String::new(),
        };
        assert_eq!(fields(&approve_zero.check(&limits()).err().expect("refused")), ["approved_working_days"]);
    }

    #[test]
    fn the_wire_checks_cover_every_request_type_and_accept_good_ones() {
        use prost::Message as _;
        let good = api::EraseResidentDataRequest { context: ctx(), reason: "居民申请".into() }.encode_to_vec();
        let erase = KINDS.iter().position(|(name, _)| *name == "EraseResidentData").unwrap() as u8;
        assert!(check_wire(erase, &good, &limits()));
        assert!(!check_wire(erase, &[], &limits()), "an empty request has no context");
        assert!(check_wire(erase + KINDS.len() as u8, &good, &limits()), "the kind wraps around");
        let get = api::GetCaseRequest { case_id: "019a0000-0000-7000-8000-000000000001".into() }.encode_to_vec();
        let get_case = KINDS.iter().position(|(name, _)| *name == "GetCase").unwrap() as u8;
        assert!(check_wire(get_case, &get, &limits()));
        assert!(!check_wire(get_case, &api::GetCaseRequest { case_id: "x".into() }.encode_to_vec(), &limits()));
    }
}
