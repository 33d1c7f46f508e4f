use jiff::Timestamp;

use crate::case::{DeadlineBasis, Deadlines};
use crate::{
    AttachmentRef, CaseId, Clock, ClockMark, Feedback, Filing, Location, OrgCode, ReplyMethod, Supervision, Text, Tier,
};

/// Everything anyone may ask of a case, over its whole lifecycle. Which role
/// may send which command is checked by the services (authorisation), not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A grid worker files a case.
    File(Filing),
    /// The centre (or the dispatcher's policy) accepts the case (立案). The
    /// tier is raised to the report's severity hint if that is higher.
    Register { tier: Tier, note: Option<Text>, policy: Option<String> },
    /// Not a case: duplicate, out of scope, false report (不予立案).
    Void { reason: Text },
    /// Assign to a handling unit with deadlines computed on the calendar (派遣).
    Dispatch { unit: OrgCode, deadlines: Deadlines },
    /// The unit acknowledges (签收).
    Acknowledge,
    /// The unit returns a wrongly routed case (退回).
    Return { reason: Text },
    /// The centre moves a dispatched, not yet acknowledged case to another unit.
    Reassign { unit: OrgCode, deadlines: Deadlines, reason: Text },
    /// A note or photos added along the way.
    AddProgress { note: Text, attachments: Vec<AttachmentRef> },
    /// Another report of the same problem (a worker who found it already
    /// filed): when they saw it, where, what they add, their photos. The
    /// case counts its reports; the reporter is the event's actor.
    AddReport {
        reported_at: Timestamp,
        location: Option<Location>,
        note: Option<Text>,
        attachments: Vec<AttachmentRef>,
    },
    /// 并案, on the duplicate: it is merged into `into` (the main case),
    /// which goes on; the duplicate is voided and takes no further step.
    MergeInto { into: CaseId, reason: Text },
    /// 并案, on the main case: the duplicate's reports (its filing and
    /// those added to it), reporters and photos are linked to it.
    AbsorbDuplicate { duplicate: CaseId, reports: u32, reporters: Vec<String>, attachments: Vec<AttachmentRef> },
    /// The unit asks for more time (延期申请).
    RequestExtension { working_days: u32, reason: Text },
    /// The centre approves (`Some(days)`, at most the days requested) or rejects (`None`, reason required).
    DecideExtension { approved_working_days: Option<u32>, reason: Option<Text> },
    /// The unit asks to put the case on hold (挂账/缓办).
    RequestHold { reason: Text },
    /// The centre approves or rejects the hold (rejecting requires a reason).
    DecideHold { approve: bool, reason: Option<Text> },
    /// Work resumes after a hold.
    Resume,
    /// The unit reports the case done, with evidence (办结).
    Resolve { summary: Text, evidence: Vec<AttachmentRef> },
    /// The centre verifies (核查): pass closes the case, fail sends it back for rework (reason required).
    Verify { passed: bool, reason: Option<Text> },
    /// The resident's evaluation after closure (评价).
    RecordFeedback { feedback: Feedback, comment: Option<Text> },
    /// Reopen a closed case after "unsatisfied" feedback (问题不解决绝不消号).
    Reopen { reason: Text },
    /// Withdraw the case (撤销).
    Cancel { reason: Text },
    /// Raise supervision (督办), by hand or by the deadline watch's escalation.
    Supervise { level: Supervision, reason: Text, escalated_to: Option<OrgCode> },
    /// Set or clear the urgent flag (加急).
    SetUrgent { urgent: bool, reason: Option<Text> },
    /// Set the deadline of a running clock (register and verify clocks, re-arming after an extension or a hold).
    SetDeadline { clock: Clock, due: Timestamp, basis: Option<DeadlineBasis> },
    /// The deadline watch records a warning or an overdue clock.
    MarkClock { clock: Clock, mark: ClockMark, due: Timestamp },
    /// Answer the resident (答复): how, and what they were told. Any state;
    /// the first reply stops the reply clock.
    Reply { method: ReplyMethod, text: Text },
    /// Call the resident back after closure (回访): reached or not (with the
    /// attempts so far), and when reached how satisfied, and why when not.
    RecordCallback { reached: bool, attempts: u32, satisfaction: Option<Feedback>, reason: Option<Text> },
    /// Erase the resident's contact details (a data subject's request, or the
    /// retention policy). Allowed in every state, once.
    EraseResidentData { reason: Text },
}

impl Command {
    /// The command's name as the rules and errors speak of it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::File(_) => "file",
            Command::Register { .. } => "register",
            Command::Void { .. } => "void",
            Command::Dispatch { .. } => "dispatch",
            Command::Acknowledge => "acknowledge",
            Command::Return { .. } => "return",
            Command::Reassign { .. } => "reassign",
            Command::AddProgress { .. } => "add progress to",
            Command::AddReport { .. } => "add a report to",
            Command::MergeInto { .. } => "merge",
            Command::AbsorbDuplicate { .. } => "merge a duplicate into",
            Command::RequestExtension { .. } => "request an extension for",
            Command::DecideExtension { .. } => "decide an extension for",
            Command::RequestHold { .. } => "request a hold for",
            Command::DecideHold { .. } => "decide a hold for",
            Command::Resume => "resume",
            Command::Resolve { .. } => "resolve",
            Command::Verify { .. } => "verify",
            Command::RecordFeedback { .. } => "record feedback for",
            Command::Reopen { .. } => "reopen",
            Command::Cancel { .. } => "cancel",
            Command::Supervise { .. } => "supervise",
            Command::SetUrgent { .. } => "set the urgent flag of",
            Command::SetDeadline { .. } => "set a deadline of",
            Command::MarkClock { .. } => "mark a clock of",
            Command::Reply { .. } => "reply to the resident of",
            Command::RecordCallback { .. } => "record a callback for",
            Command::EraseResidentData { .. } => "erase the resident data of",
        }
    }
}
