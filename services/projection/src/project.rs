//! What each event means for the read models, free of IO: the row of its
//! case (the domain's own fold plus the timestamps the ledgers need) and the
//! ledger counts it moves. The store writes the results in bulk.

use gridcase_domain::{Case, Channel, Clock, ClockMark, Contact, Event, Feedback, OrgCode, RequestKind, State};
use gridcase_envelope::StoredEvent;
use gridcase_envelope::sealing::SealedJson;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use uuid::Uuid;

/// One audit-history row.
pub struct EventRow {
    pub stream_sequence: u64,
    pub event_id: Uuid,
    pub case_id: Uuid,
    pub case_version: u64,
    pub event_type: String,
    pub occurred_at: Timestamp,
    pub actor_person: String,
    pub actor_role: String,
    pub actor_organisation: String,
    pub reason: Option<String>,
    pub hash: String,
    pub prev_hash: Option<String>,
    pub envelope: String,
}

/// The read-model row of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    /// The domain's state of the case, folded by `gridcase_domain::evolve`.
    pub case: Case,
    pub last_sequence: u64,
    pub description: String,
    pub reported_by: String,
    /// Sealed contact details as stored ([`SealedJson`]): ciphertext only;
    /// the query service opens them with the case's key to mask them.
    pub contact_sealed: Option<String>,
    /// When the server received the filing (the register clock's start).
    pub filed_at: Timestamp,
    /// When the worker saw the problem (the device's time on the filing).
    pub reported_at: Option<Timestamp>,
    /// The SHA-256 of the case's first photo (the filing's, else the first
    /// added report's): what a list shows as its thumbnail.
    pub photo: Option<String>,
    pub registered_at: Option<Timestamp>,
    pub dispatched_at: Option<Timestamp>,
    pub acknowledged_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    /// The hash of the case's last kept event: the next one must chain to it.
    pub last_hash: String,
    /// Where the filer stood, WGS 84 microdegrees (latitude, longitude).
    pub location_e6: Option<(i32, i32)>,
    /// Intake's flag: metres outside the grid's boundary, beyond tolerance.
    pub outside_grid_m: Option<u32>,
    pub channel: Channel,
    pub request_kind: Option<RequestKind>,
    /// The partner's own id of the request.
    pub reference: Option<String>,
    /// When the case's last event occurred.
    pub updated_at: Timestamp,
    /// When the resident was first answered.
    pub replied_at: Option<Timestamp>,
}

/// Which kind of organisation a ledger row counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrgKind {
    Township,
    Village,
    Grid,
    Unit,
    /// Whoever filed: a grid worker, or a partner system.
    Worker,
    /// A kind of request (诉求类型): a resident's requests only.
    Kind,
    /// A channel (受理渠道): the grid workers' app, partner systems.
    Channel,
}

impl OrgKind {
    pub const ALL: [OrgKind; 7] = [
        OrgKind::Township,
        OrgKind::Village,
        OrgKind::Grid,
        OrgKind::Unit,
        OrgKind::Worker,
        OrgKind::Kind,
        OrgKind::Channel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Township => "township",
            OrgKind::Village => "village",
            OrgKind::Grid => "grid",
            OrgKind::Unit => "unit",
            OrgKind::Worker => "worker",
            OrgKind::Kind => "kind",
            OrgKind::Channel => "channel",
        }
    }

    pub fn parse(text: &str) -> Option<OrgKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// The counters of a ledger row (columns of `ledger_daily`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    Filed,
    Registered,
    Due,
    Closed,
    ClosedOnTime,
    Dispatched,
    Returned,
    Reworked,
    Extended,
    Acknowledged,
    AcknowledgeSeconds,
    Resolved,
    ResolveSeconds,
    Satisfied,
    BasicallySatisfied,
    Unsatisfied,
    /// A clock of the case passed its deadline (the dispatcher's overdue
    /// mark), counted on the day it did: the daily trend of overdue work.
    TurnedOverdue,
    /// A resident's request whose reply deadline falls on the day (应答复).
    ReplyDue,
    /// A resident's request first answered on the day.
    Replied,
    /// Of the requests due on the day, those answered by their deadline
    /// (按时答复; counted on the deadline's day, beside `ReplyDue`).
    RepliedOnTime,
    /// A closure of a resident's request whose callback falls due on the day (应回访).
    CallbackDue,
    /// A callback that reached the resident, on the day (回访).
    CalledBack,
    /// A duplicate merged into another case (并案), on the day of the merge,
    /// for the duplicate's organisations. Its filing is withdrawn from
    /// `Filed` (on its filing's day): the pair counts as one case filed.
    Merged,
}

impl Measure {
    pub const ALL: [Measure; 23] = [
        Measure::Filed,
        Measure::Registered,
        Measure::Due,
        Measure::Closed,
        Measure::ClosedOnTime,
        Measure::Dispatched,
        Measure::Returned,
        Measure::Reworked,
        Measure::Extended,
        Measure::Acknowledged,
        Measure::AcknowledgeSeconds,
        Measure::Resolved,
        Measure::ResolveSeconds,
        Measure::Satisfied,
        Measure::BasicallySatisfied,
        Measure::Unsatisfied,
        Measure::TurnedOverdue,
        Measure::ReplyDue,
        Measure::Replied,
        Measure::RepliedOnTime,
        Measure::CallbackDue,
        Measure::CalledBack,
        Measure::Merged,
    ];

    /// The column of `ledger_daily`.
    pub fn column(self) -> &'static str {
        match self {
            Measure::Filed => "filed",
            Measure::Registered => "registered",
            Measure::Due => "due",
            Measure::Closed => "closed",
            Measure::ClosedOnTime => "closed_on_time",
            Measure::Dispatched => "dispatched",
            Measure::Returned => "returned",
            Measure::Reworked => "reworked",
            Measure::Extended => "extended",
            Measure::Acknowledged => "acknowledged",
            Measure::AcknowledgeSeconds => "acknowledge_seconds",
            Measure::Resolved => "resolved",
            Measure::ResolveSeconds => "resolve_seconds",
            Measure::Satisfied => "satisfied",
            Measure::TurnedOverdue => "turned_overdue",
            Measure::BasicallySatisfied => "basically_satisfied",
            Measure::Unsatisfied => "unsatisfied",
            Measure::ReplyDue => "reply_due",
            Measure::Replied => "replied",
            Measure::RepliedOnTime => "replied_on_time",
            Measure::CallbackDue => "callback_due",
            Measure::CalledBack => "called_back",
            Measure::Merged => "merged",
        }
    }
}

/// One ledger row: an organisation's cases of one township on a day. (A
/// unit or a worker may serve several townships; keeping their counts apart
/// lets a command centre's ledger count its own township's cases only.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerKey {
    pub kind: OrgKind,
    pub org: String,
    pub township: String,
    pub day: Date,
}

/// A change to one counter of one ledger row.
pub type LedgerChange = (LedgerKey, Measure, i64);

static SHANGHAI: std::sync::LazyLock<TimeZone> =
    std::sync::LazyLock::new(|| TimeZone::get("Asia/Shanghai").expect("bundled tz"));

/// The calendar day of an instant in Asia/Shanghai.
pub fn day_of(at: Timestamp) -> Date {
    SHANGHAI.to_datetime(at).date()
}

impl CaseRow {
    /// The organisations a case counts for: its township, village and grid,
    /// the handling unit given, and the grid worker who filed it.
    fn orgs(&self, unit: Option<&OrgCode>) -> Vec<(OrgKind, String)> {
        let grid = &self.case.grid;
        let mut orgs = vec![
            (OrgKind::Township, grid.township().to_string()),
            (OrgKind::Village, grid.village().to_owned()),
            (OrgKind::Grid, grid.as_str().to_owned()),
            (OrgKind::Worker, self.reported_by.clone()),
        ];
        if let Some(unit) = unit {
            orgs.push((OrgKind::Unit, unit.to_string()));
        }
        if let Some(kind) = self.request_kind {
            orgs.push((OrgKind::Kind, kind.as_str().to_owned()));
        }
        orgs.push((OrgKind::Channel, self.channel.as_str().to_owned()));
        orgs
    }

    /// What decides where this case counts as due (应结案): its resolve
    /// deadline's day and its unit; none if it has no resolve deadline or
    /// was voided or cancelled.
    fn due_at(&self) -> Option<(Date, Option<OrgCode>)> {
        match (self.case.state, self.case.deadlines.get(&Clock::Resolve)) {
            (State::Voided | State::Cancelled, _) | (_, None) => None,
            (_, Some(due)) => Some((day_of(*due), self.case.unit.clone())),
        }
    }

    /// The ledger rows of a case due on `day` while handled by `unit`.
    fn due_rows(&self, day: Date, unit: Option<&OrgCode>) -> Vec<LedgerKey> {
        let township = self.case.grid.township().to_string();
        self.orgs(unit)
            .into_iter()
            .map(|(kind, org)| LedgerKey { kind, org, township: township.clone(), day })
            .collect()
    }
}

fn count(row: &CaseRow, at: Timestamp, measure: Measure, amount: i64, changes: &mut Vec<LedgerChange>) {
    count_on(row, day_of(at), measure, amount, changes)
}

/// [`count`] on a given day (a deadline's).
fn count_on(row: &CaseRow, day: Date, measure: Measure, amount: i64, changes: &mut Vec<LedgerChange>) {
    let township = row.case.grid.township().to_string();
    for (kind, org) in row.orgs(row.case.unit.as_ref()) {
        changes.push((LedgerKey { kind, org, township: township.clone(), day }, measure, amount));
    }
}

/// Fold one event into its case's row, and say which ledger counters move.
/// `None` for an event of a case never filed (ignored).
pub fn apply(
    row: Option<CaseRow>,
    stored: &StoredEvent,
    event: &Event,
    sequence: u64,
) -> (Option<CaseRow>, Vec<LedgerChange>) {
    let at = stored.occurred_at;
    let mut changes = Vec::new();
    let before_due = row.as_ref().and_then(CaseRow::due_at);
    let before_deadlines = row.as_ref().map(|r| r.case.deadlines.clone()).unwrap_or_default();
    let first_reply = row.as_ref().is_some_and(|r| r.replied_at.is_none());
    // A closure's evaluation counts once: a callback after recorded
    // feedback changes it, and does not count it again.
    let evaluated = row.as_ref().is_some_and(|r| r.case.feedback.is_some());
    // A return counts for the unit that returned it, which the row no longer names.
    let returning = if matches!(event, Event::Returned { .. }) { row.clone() } else { None };
    let mut row = match (row, event) {
        (None, Event::Filed(filing)) => CaseRow {
            case: gridcase_domain::evolve(None, event).expect("a filing starts a case"),
            last_sequence: sequence,
            description: filing.description.to_string(),
            reported_by: stored.actor.person.clone(),
            contact_sealed: match &filing.contact {
                Some(Contact::Sealed(sealed)) => Some(SealedJson::to_json(sealed)),
                _ => None,
            },
            filed_at: at,
            reported_at: Some(filing.reported_at),
            photo: filing.attachments.first().map(|a| a.sha256.to_string()),
            registered_at: None,
            dispatched_at: None,
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            last_hash: stored.hash.clone(),
            location_e6: Some((filing.location.latitude_e6, filing.location.longitude_e6)),
            outside_grid_m: filing.outside_grid.map(|o| o.distance_m),
            channel: filing.channel,
            request_kind: filing.request_kind,
            reference: filing.reference.as_ref().map(|r| r.as_str().to_owned()),
            updated_at: at,
            replied_at: None,
        },
        (None, _) => return (None, changes),
        (Some(mut row), _) => {
            row.last_hash.clone_from(&stored.hash);
            match gridcase_domain::evolve(Some(row.case.clone()), event) {
                Some(case) => row.case = case,
                None => return (Some(row), changes),
            }
            row.last_sequence = sequence;
            row.updated_at = at;
            row
        }
    };
    match event {
        Event::Filed(_) => count(&row, at, Measure::Filed, 1, &mut changes),
        Event::MergedInto { .. } => {
            // The pair counts as one case filed: the duplicate's filing is
            // withdrawn where it was counted, and the merge counted today.
            let filed_at = row.filed_at;
            count(&row, filed_at, Measure::Filed, -1, &mut changes);
            count(&row, at, Measure::Merged, 1, &mut changes);
        }
        Event::DuplicateMerged { attachments, .. } | Event::ReportAdded { attachments, .. } if row.photo.is_none() => {
            row.photo = attachments.first().map(|a| a.sha256.to_string());
        }
        Event::Registered { .. } => {
            row.registered_at.get_or_insert(at);
            count(&row, at, Measure::Registered, 1, &mut changes);
        }
        Event::Dispatched { .. } | Event::Reassigned { .. } => {
            row.dispatched_at = Some(at);
            count(&row, at, Measure::Dispatched, 1, &mut changes);
        }
        Event::Acknowledged { .. } => {
            row.acknowledged_at = Some(at);
            let waited = row.dispatched_at.map_or(0, |d| d.duration_until(at).as_secs().max(0));
            count(&row, at, Measure::Acknowledged, 1, &mut changes);
            count(&row, at, Measure::AcknowledgeSeconds, waited, &mut changes);
        }
        Event::Returned { .. } => {
            let returning = returning.as_ref().unwrap_or(&row);
            count(returning, at, Measure::Returned, 1, &mut changes);
        }
        Event::ExtensionApproved { .. } => count(&row, at, Measure::Extended, 1, &mut changes),
        Event::Resolved { .. } => {
            row.resolved_at = Some(at);
            let took = row.dispatched_at.map_or(0, |d| d.duration_until(at).as_secs().max(0));
            count(&row, at, Measure::Resolved, 1, &mut changes);
            count(&row, at, Measure::ResolveSeconds, took, &mut changes);
        }
        Event::VerificationFailed { .. } => count(&row, at, Measure::Reworked, 1, &mut changes),
        Event::VerificationPassed { .. } => {
            row.closed_at = Some(at);
            count(&row, at, Measure::Closed, 1, &mut changes);
            let on_time = match (row.resolved_at, row.case.deadlines.get(&Clock::Resolve)) {
                (Some(resolved), Some(due)) => resolved <= *due,
                _ => true,
            };
            if on_time {
                count(&row, at, Measure::ClosedOnTime, 1, &mut changes);
            }
        }
        Event::Reopened { .. } => row.closed_at = None,
        Event::Replied { .. } if first_reply => {
            row.replied_at = Some(at);
            count(&row, at, Measure::Replied, 1, &mut changes);
            if let Some(due) = before_deadlines.get(&Clock::Reply).filter(|due| at <= **due) {
                count_on(&row, day_of(*due), Measure::RepliedOnTime, 1, &mut changes);
            }
        }
        Event::DeadlineSet { clock: Clock::Reply, due, .. } if !before_deadlines.contains_key(&Clock::Reply) => {
            count_on(&row, day_of(*due), Measure::ReplyDue, 1, &mut changes);
        }
        Event::DeadlineSet { clock: Clock::Callback, due, .. } if !before_deadlines.contains_key(&Clock::Callback) => {
            count_on(&row, day_of(*due), Measure::CallbackDue, 1, &mut changes);
        }
        Event::CallbackRecorded { reached: true, satisfaction, .. } => {
            count(&row, at, Measure::CalledBack, 1, &mut changes);
            let measure = match satisfaction {
                Some(Feedback::Satisfied) => Some(Measure::Satisfied),
                Some(Feedback::BasicallySatisfied) => Some(Measure::BasicallySatisfied),
                Some(Feedback::Unsatisfied) => Some(Measure::Unsatisfied),
                None => None,
            };
            if let Some(measure) = measure.filter(|_| !evaluated) {
                count(&row, at, measure, 1, &mut changes);
            }
        }
        Event::ClockMarked { mark: ClockMark::Overdue, .. } => count(&row, at, Measure::TurnedOverdue, 1, &mut changes),
        Event::FeedbackRecorded { feedback, .. } => {
            let measure = match feedback {
                Feedback::Satisfied => Measure::Satisfied,
                Feedback::BasicallySatisfied => Measure::BasicallySatisfied,
                Feedback::Unsatisfied => Measure::Unsatisfied,
            };
            count(&row, at, measure, 1, &mut changes);
        }
        // Nothing of the details stays in the row (the fold marked the
        // case's contact erased); the ciphertext no longer opens anyway.
        Event::ResidentDataErased { .. } => {
            row.contact_sealed = None;
        }
        _ => {}
    }
    let after_due = row.due_at();
    if before_due != after_due {
        if let Some((day, unit)) = &before_due {
            changes.extend(row.due_rows(*day, unit.as_ref()).into_iter().map(|key| (key, Measure::Due, -1)));
        }
        if let Some((day, unit)) = &after_due {
            changes.extend(row.due_rows(*day, unit.as_ref()).into_iter().map(|key| (key, Measure::Due, 1)));
        }
    }
    (Some(row), changes)
}

#[cfg(test)]
mod tests;
