//! The checks of the grid worker's reports and the centre's merges
//! (`AddReport`, `Merge`): `AddReport` needs the clock (its `reported_at`
//! may not lie in the future), so it is a function of `now` beside the
//! [`Check`] implementations.

use gridcase_domain::{AttachmentRef, CaseId, Text};
use gridcase_grpc::Violations;
use gridcase_proto::cases::v1 as api;
use tonic::Status;

use super::{Check, Context, context, done, optional_text, required_text};
use crate::validate::{self, Limits};

/// A merge (并案), checked.
pub(crate) struct MergeRecord {
    pub ctx: Context,
    pub into: CaseId,
    pub reason: Text,
}

impl Check for api::MergeRequest {
    type Checked = MergeRecord;
    fn check(&self, _: &Limits) -> Result<MergeRecord, Status> {
        let mut v = Violations::new();
        let ctx = context(self.context.as_ref(), &mut v);
        let into = match self.into_case_id.trim() {
            "" => {
                v.add("into_case_id", "REQUIRED", "is required: the main case the duplicate is merged into");
                None
            }
            text => CaseId::parse(text).map_err(|e| v.add("into_case_id", "MALFORMED", e.to_string())).ok(),
        };
        let reason = required_text("reason", &self.reason, &mut v);
        done(v, || Some(MergeRecord { ctx: ctx?, into: into?, reason: reason? }))
    }
}

/// Another report of the same problem, checked.
pub(crate) struct ReportRecord {
    pub ctx: Context,
    pub reported_at: jiff::Timestamp,
    pub location: Option<gridcase_domain::Location>,
    pub note: Option<Text>,
    pub attachments: Vec<AttachmentRef>,
}

/// `AddReport`'s check needs the time: `reported_at` may not lie ahead of
/// `now` by more than the clock skew allowed (as a filing's).
pub(crate) fn report_record(
    request: &api::AddReportRequest,
    limits: &Limits,
    now: jiff::Timestamp,
) -> Result<ReportRecord, Status> {
    let mut v = Violations::new();
    let ctx = context(request.context.as_ref(), &mut v);
    let reported_at = validate::reported_at(request.reported_at.as_ref(), limits, now, &mut v);
    let location = request.location.as_ref().and_then(|location| validate::location_of(location, &mut v));
    let note = optional_text("note", &request.note, &mut v);
    let attachments = validate::attachment_refs("attachments", &request.attachments, limits, &mut v);
    done(v, || Some(ReportRecord { ctx: ctx?, reported_at: reported_at?, location, note, attachments }))
}

/// The fuzz target's clock for `AddReport`: a fixed instant.
pub(super) fn wire_report(bytes: &[u8], limits: &Limits) -> bool {
    let now = jiff::Timestamp::from_second(1_796_112_000).expect("a valid instant"); // 2026-12-01T08:00:00Z
    <api::AddReportRequest as prost::Message>::decode(bytes)
        .is_ok_and(|request| report_record(&request, limits, now).is_ok())
}
