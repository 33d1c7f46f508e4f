//! The authorization policy: one pure function, [`authorize`], decides
//! whether a principal may do an operation on a target. The gRPC layer asks
//! it once per call before the request is read ([`Target::Service`]: may
//! this role ever do this?), and the handler asks it again once it knows the
//! case, grid or region the call is about.
//!
//! A case outside the caller's territory is [`Decision::Hidden`] (NOT_FOUND,
//! the answer a case that does not exist gets), so trying case ids tells an
//! outsider nothing. A role that may never do an operation, or a filing or
//! report for a region outside the territory, is [`Decision::Forbidden`]
//! (PERMISSION_DENIED): there the caller names the region and learns nothing
//! by being refused.

use std::fmt;

use crate::principal::{Principal, Territory, TokenRole};

/// Every operation the gRPC services offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    // gridcase.intake.v1.IntakeService
    FileCase,
    UploadAttachment,
    /// Many filings and notes in one call (each item is then checked as
    /// its own FileCase or AddProgress).
    SyncCases,
    // gridcase.cases.v1.CaseService: lifecycle commands
    Register,
    Void,
    Dispatch,
    Acknowledge,
    Return,
    Reassign,
    AddProgress,
    /// Another report of the same problem, on an open case of the caller's grids.
    AddReport,
    /// 并案: a duplicate merged into a main case.
    Merge,
    RequestExtension,
    DecideExtension,
    RequestHold,
    DecideHold,
    Resume,
    Resolve,
    Verify,
    RecordFeedback,
    Reopen,
    Cancel,
    Supervise,
    SetUrgent,
    EraseResidentData,
    /// 答复: answer the resident of a resident's request.
    Reply,
    /// 回访: record a callback after closure.
    RecordCallback,
    // reading one case (CaseService and QueryService)
    ReadCase,
    ReadHistory,
    // gridcase.query.v1.QueryService: many cases
    ListCases,
    OverdueReport,
    Ledger,
    ExportCases,
    ExportLedger,
    WatchCases,
    /// The changes of the caller's cases in a window (a partner's feed).
    ListUpdates,
    /// Open cases near a point, in the caller's territory (before filing).
    FindSimilar,
    /// A grid worker's own filings and the open cases of their grids, by change cursor.
    ListMine,
    // gridcase.auth.v1.AuthService
    WhoAmI,
    // gridcase.admin.v1.ReferenceService
    ReadReference,
    ValidateReference,
}

use Operation::*;

/// gRPC method paths and the operation each is. A path missing here is
/// refused by the layer (deny by default); a test checks every method of the
/// protos is listed or deliberately public.
const PATHS: &[(&str, Operation)] = &[
    ("/gridcase.intake.v1.IntakeService/FileCase", FileCase),
    ("/gridcase.intake.v1.IntakeService/UploadAttachment", UploadAttachment),
    ("/gridcase.intake.v1.IntakeService/StartUpload", UploadAttachment),
    ("/gridcase.intake.v1.IntakeService/PutUploadPart", UploadAttachment),
    ("/gridcase.intake.v1.IntakeService/GetUpload", UploadAttachment),
    ("/gridcase.intake.v1.IntakeService/CancelUpload", UploadAttachment),
    ("/gridcase.intake.v1.IntakeService/SyncCases", SyncCases),
    ("/gridcase.cases.v1.CaseService/Register", Register),
    ("/gridcase.cases.v1.CaseService/Void", Void),
    ("/gridcase.cases.v1.CaseService/Dispatch", Dispatch),
    ("/gridcase.cases.v1.CaseService/Acknowledge", Acknowledge),
    ("/gridcase.cases.v1.CaseService/Return", Return),
    ("/gridcase.cases.v1.CaseService/Reassign", Reassign),
    ("/gridcase.cases.v1.CaseService/AddProgress", AddProgress),
    ("/gridcase.cases.v1.CaseService/AddReport", AddReport),
    ("/gridcase.cases.v1.CaseService/Merge", Merge),
    ("/gridcase.cases.v1.CaseService/RequestExtension", RequestExtension),
    ("/gridcase.cases.v1.CaseService/DecideExtension", DecideExtension),
    ("/gridcase.cases.v1.CaseService/RequestHold", RequestHold),
    ("/gridcase.cases.v1.CaseService/DecideHold", DecideHold),
    ("/gridcase.cases.v1.CaseService/Resume", Resume),
    ("/gridcase.cases.v1.CaseService/Resolve", Resolve),
    ("/gridcase.cases.v1.CaseService/Verify", Verify),
    ("/gridcase.cases.v1.CaseService/RecordFeedback", RecordFeedback),
    ("/gridcase.cases.v1.CaseService/Reply", Reply),
    ("/gridcase.cases.v1.CaseService/RecordCallback", RecordCallback),
    ("/gridcase.cases.v1.CaseService/Reopen", Reopen),
    ("/gridcase.cases.v1.CaseService/Cancel", Cancel),
    ("/gridcase.cases.v1.CaseService/Supervise", Supervise),
    ("/gridcase.cases.v1.CaseService/SetUrgent", SetUrgent),
    ("/gridcase.cases.v1.CaseService/EraseResidentData", EraseResidentData),
    ("/gridcase.cases.v1.CaseService/GetCase", ReadCase),
    ("/gridcase.cases.v1.CaseService/GetAttachment", ReadCase),
    ("/gridcase.cases.v1.CaseService/GetHistory", ReadHistory),
    ("/gridcase.query.v1.QueryService/GetCase", ReadCase),
    ("/gridcase.query.v1.QueryService/GetCaseHistory", ReadHistory),
    ("/gridcase.query.v1.QueryService/ListCases", ListCases),
    // Counting is listing: the counts of what the caller may list.
    ("/gridcase.query.v1.QueryService/CountCases", ListCases),
    ("/gridcase.query.v1.QueryService/GetGridMap", ListCases),
    ("/gridcase.query.v1.QueryService/OverdueReport", OverdueReport),
    ("/gridcase.query.v1.QueryService/Ledger", Ledger),
    ("/gridcase.query.v1.QueryService/ExportCases", ExportCases),
    ("/gridcase.query.v1.QueryService/ExportLedger", ExportLedger),
    ("/gridcase.query.v1.QueryService/WatchCases", WatchCases),
    ("/gridcase.query.v1.QueryService/ListCaseUpdates", ListUpdates),
    ("/gridcase.query.v1.QueryService/FindSimilarCases", FindSimilar),
    ("/gridcase.query.v1.QueryService/ListMyCases", ListMine),
    ("/gridcase.auth.v1.AuthService/WhoAmI", WhoAmI),
    ("/gridcase.admin.v1.ReferenceService/GetReference", ReadReference),
    ("/gridcase.admin.v1.ReferenceService/ValidateReference", ValidateReference),
];

/// Paths any caller may use without a token: health checks, reflection (the
/// schema only), the development token minter (which refuses unless the
/// server has a development key), and the public status of cases by id
/// (state, category and times, to whoever holds an id, as Open311 answers
/// requests by id).
const PUBLIC_PREFIXES: &[&str] = &[
    "/gridcase.query.v1.QueryService/GetPublicStatus",
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/gridcase.auth.v1.AuthService/IssueDevToken",
];

impl Operation {
    pub const ALL: [Operation; 41] = [
        FileCase,
        UploadAttachment,
        SyncCases,
        Register,
        Void,
        Dispatch,
        Acknowledge,
        Return,
        Reassign,
        AddProgress,
        AddReport,
        Merge,
        RequestExtension,
        DecideExtension,
        RequestHold,
        DecideHold,
        Resume,
        Resolve,
        Verify,
        RecordFeedback,
        Reopen,
        Cancel,
        Supervise,
        SetUrgent,
        EraseResidentData,
        Reply,
        RecordCallback,
        ReadCase,
        ReadHistory,
        ListCases,
        OverdueReport,
        Ledger,
        ExportCases,
        ExportLedger,
        WatchCases,
        ListUpdates,
        FindSimilar,
        ListMine,
        WhoAmI,
        ReadReference,
        ValidateReference,
    ];

    /// The operation a gRPC method path is, if it is one.
    pub fn from_grpc_path(path: &str) -> Option<Operation> {
        PATHS.iter().find(|(p, _)| *p == path).map(|(_, op)| *op)
    }

    /// Whether a path needs no token at all.
    pub fn is_public_path(path: &str) -> bool {
        PUBLIC_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
    }

    /// Whether the operation changes a case (records an event).
    pub fn changes_cases(self) -> bool {
        !matches!(
            self,
            UploadAttachment
                | ReadCase
                | ReadHistory
                | ListCases
                | OverdueReport
                | Ledger
                | ExportCases
                | ExportLedger
                | WatchCases
                | ListUpdates
                | FindSimilar
                | ListMine
                | WhoAmI
                | ReadReference
                | ValidateReference
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Which operations each role may do at all, wherever (a console offers
/// only these; the services decide each call with [`authorize`]).
pub fn role_may(role: TokenRole, operation: Operation) -> bool {
    match role {
        TokenRole::GridWorker | TokenRole::GridLeader => {
            matches!(
                operation,
                FileCase
                    | UploadAttachment
                    | SyncCases
                    | AddProgress
                    | AddReport
                    | FindSimilar
                    | ListMine
                    | ReadCase
                    | ReadHistory
                    | ListCases
                    | WhoAmI
            )
        }
        TokenRole::HandlingUnit => matches!(
            operation,
            UploadAttachment
                | Reply
                | Acknowledge
                | Return
                | AddProgress
                | RequestExtension
                | RequestHold
                | Resume
                | Resolve
                | ReadCase
                | ReadHistory
                | ListCases
                | WhoAmI
        ),
        TokenRole::CommandCentre => matches!(
            operation,
            UploadAttachment
                | FindSimilar
                | Merge
                | Reply
                | RecordCallback
                | Register
                | Void
                | Dispatch
                | Reassign
                | AddProgress
                | DecideExtension
                | DecideHold
                | Resume
                | Verify
                | RecordFeedback
                | Reopen
                | Cancel
                | Supervise
                | SetUrgent
                | EraseResidentData
                | ReadCase
                | ReadHistory
                | ListCases
                | OverdueReport
                | Ledger
                | ExportCases
                | ExportLedger
                | WatchCases
                | ListUpdates
                | WhoAmI
        ),
        // The county audits, and answers residents' requests to erase
        // their data across its townships.
        TokenRole::CountyAuditor => matches!(
            operation,
            EraseResidentData
                | ReadCase
                | ReadHistory
                | ListCases
                | OverdueReport
                | Ledger
                | ExportCases
                | ExportLedger
                | WatchCases
                | ListUpdates
                | WhoAmI
        ),
        TokenRole::Admin => matches!(operation, WhoAmI | ReadReference | ValidateReference),
        // A partner system files residents' requests, passes on their
        // comments as notes, and follows its own cases.
        TokenRole::Partner => {
            matches!(operation, FileCase | UploadAttachment | AddProgress | ReadCase | ListCases | ListUpdates | WhoAmI)
        }
    }
}

/// What an existing case is, as far as access goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseScope {
    /// The grid (or micro-grid) code.
    pub grid: String,
    /// The handling unit it is dispatched to now, if any.
    pub unit: Option<String>,
    /// The person who filed it.
    pub reporter: String,
}

/// What an operation is about.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Nothing known yet (the layer, before the request is read).
    Service,
    /// A new case in this grid.
    Filing { grid: &'a str },
    /// An existing case.
    Case(&'a CaseScope),
    /// A region-code prefix (a report, an export, a watch).
    Region(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// PERMISSION_DENIED, with why.
    Forbidden(String),
    /// NOT_FOUND, exactly as for a case that does not exist.
    Hidden,
}

/// Whether `principal` sees the case at all.
fn sees(principal: &Principal, case: &CaseScope) -> bool {
    match (principal.role, &principal.territory) {
        (TokenRole::GridWorker, _) => case.reporter == principal.subject,
        (TokenRole::GridLeader | TokenRole::CommandCentre | TokenRole::CountyAuditor, territory) => {
            territory.contains_grid(&case.grid)
        }
        (TokenRole::HandlingUnit, Territory::Unit(unit)) => case.unit.as_deref() == Some(unit.as_str()),
        // Its own filings, and only while they lie in its territory.
        (TokenRole::Partner, territory) => case.reporter == principal.subject && territory.contains_grid(&case.grid),
        (TokenRole::HandlingUnit, Territory::Region(_)) | (TokenRole::Admin, _) => false,
    }
}

/// May `principal` do `operation` on `target`?
pub fn authorize(principal: &Principal, operation: Operation, target: Target<'_>) -> Decision {
    if !role_may(principal.role, operation) {
        return Decision::Forbidden(format!("{} may not {operation}", principal.role.with_article()));
    }
    let outside = |what: &str| Decision::Forbidden(format!("{what} is outside your territory {}", principal.territory));
    match target {
        Target::Service => Decision::Allow,
        Target::Filing { grid } if principal.territory.contains_grid(grid) => Decision::Allow,
        Target::Filing { grid } => outside(&format!("grid {grid}")),
        Target::Case(case) if sees(principal, case) => Decision::Allow,
        // Another report of an open case: any case of the caller's grids,
        // not only their own filings (they found it with FindSimilarCases).
        Target::Case(case)
            if operation == AddReport
                && matches!(principal.role, TokenRole::GridWorker | TokenRole::GridLeader)
                && principal.territory.contains_grid(&case.grid) =>
        {
            Decision::Allow
        }
        Target::Case(_) => Decision::Hidden,
        Target::Region(region) if principal.territory.contains_region(region) => Decision::Allow,
        Target::Region(region) => outside(&format!("region {region}")),
    }
}

/// The restriction every list, report and export of a principal is ANDed
/// with; `None`: they see no case at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListScope {
    pub region_prefix: Option<String>,
    pub unit: Option<String>,
    pub reporter: Option<String>,
}

pub fn list_scope(principal: &Principal) -> Option<ListScope> {
    match (principal.role, &principal.territory) {
        (TokenRole::GridWorker, _) => {
            Some(ListScope { reporter: Some(principal.subject.clone()), ..ListScope::default() })
        }
        (TokenRole::GridLeader | TokenRole::CommandCentre | TokenRole::CountyAuditor, Territory::Region(prefix)) => {
            Some(ListScope { region_prefix: Some(prefix.clone()), ..ListScope::default() })
        }
        (TokenRole::HandlingUnit, Territory::Unit(unit)) => {
            Some(ListScope { unit: Some(unit.to_string()), ..ListScope::default() })
        }
        (TokenRole::Partner, Territory::Region(prefix)) => Some(ListScope {
            region_prefix: Some(prefix.clone()),
            reporter: Some(principal.subject.clone()),
            ..ListScope::default()
        }),
        _ => None,
    }
}

/// How a resident's contact details are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactView {
    /// In full: the roles that call the resident back (the reporting worker
    /// and their grid leader, the unit handling it, the command centre).
    Full,
    /// 138****5678: everyone else (county audit, partner systems, which
    /// sent them and need them no more), and every list, ledger, export and
    /// stream.
    Masked,
}

/// How `principal` sees the contact details of a case it may read.
pub fn contact_view(principal: &Principal, case: &CaseScope) -> ContactView {
    let calls_back = matches!(
        principal.role,
        TokenRole::GridWorker | TokenRole::GridLeader | TokenRole::HandlingUnit | TokenRole::CommandCentre
    );
    if calls_back && sees(principal, case) { ContactView::Full } else { ContactView::Masked }
}

#[cfg(test)]
mod tests;
