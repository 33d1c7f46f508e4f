//! `gridcase.cases.v1.CaseService`: the lifecycle commands. Each handler
//! validates its fields, then [`CaseApi::execute`] reads the case's history,
//! folds it, lets the domain decide, and appends the event with the case's
//! expected sequence. Retries are recognised by the client's command id,
//! stored on the event; a stale `expected_version` is ABORTED.

use std::sync::Arc;

use gridcase_auth::policy::{CaseScope, ContactView, contact_view};
use gridcase_calendar::Calendar;
use gridcase_domain::{Case, CaseId, Command, DomainError, Text};
use gridcase_envelope::fold;
use gridcase_envelope::{Positioned, StoredEvent, verify_history};
use gridcase_eventlog::store::{CaseStore, CommitError, Committed, LoadError, Loaded, Provenance};
use gridcase_eventlog::{AttachmentStore, KeyStore};
use gridcase_grpc::auth::case_not_found;
use gridcase_grpc::{Access, status};
use gridcase_policy::{Planner, Policy};
use gridcase_process::TimeSource;
use gridcase_proto::cases::v1::{self as api, case_service_server::CaseService};
use gridcase_proto::convert;
use jiff::Timestamp;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, PreconditionViolation, StatusExt};
use tracing::{info, instrument};
use uuid::Uuid;

use crate::download::{self, AttachmentStream};
use crate::history::history_event;
use crate::personal;
use crate::requests::{
    CallbackRecord, Check as _, Context, Decision, ExtensionDecision, ExtensionRequest, FeedbackRecord, Reassignment,
    Registration, ReplyRecord, Supervision, ToUnit, WithAttachments, WithReason,
};
use crate::service::check_uploaded;
use crate::validate::Limits;

/// The namespace of lifecycle event ids: UUID v5 of "<case id>/<command id>".
const COMMAND_EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x2d4c_7a61_93b8_4f0e_a5c2_6e1d_8b3f_0a97);

/// The event id of a lifecycle command: a UUID v5 of the case and the
/// caller's command id, so a retried command is the same event.
pub fn command_event_id(case_id: &CaseId, command_id: &str) -> Uuid {
    Uuid::new_v5(&COMMAND_EVENT_NAMESPACE, format!("{case_id}/{command_id}").as_bytes())
}
/// How often a command without an expected version is re-decided after a concurrent change.
const ATTEMPTS: usize = 3;

pub struct CaseApi {
    pub(crate) store: Arc<CaseStore>,
    pub(crate) attachments: AttachmentStore,
    pub(crate) keys: KeyStore,
    pub(crate) policy: Arc<Policy>,
    pub(crate) reference: Arc<gridcase_reference::Reference>,
    pub(crate) calendar: Arc<Calendar>,
    pub(crate) limits: Limits,
    pub(crate) clock: Arc<dyn TimeSource>,
}

/// What access to a loaded case depends on.
fn scope(loaded: &Loaded) -> CaseScope {
    CaseScope {
        grid: loaded.case.grid.to_string(),
        unit: loaded.case.unit.as_ref().map(|u| u.to_string()),
        reporter: loaded.history.first().map(|p| p.event.actor.person.clone()).unwrap_or_default(),
    }
}

/// FAILED_PRECONDITION for a command id that names another request: only
/// the identical request sent again is a retry.
fn command_id_reused(case_id: &CaseId, command_id: &str, what: &str) -> Status {
    let description = format!("command_id {command_id} {what}; a new request needs a new command id");
    Status::with_error_details(
        Code::FailedPrecondition,
        format!("{description} (COMMAND_ID_REUSED)"),
        ErrorDetails::with_precondition_failure(vec![PreconditionViolation::new(
            "COMMAND_ID_REUSED",
            format!("case/{case_id}/command/{command_id}"),
            description,
        )]),
    )
}

/// FAILED_PRECONDITION naming the rule, with a google.rpc.PreconditionFailure.
pub(crate) fn refused(case_id: &CaseId, error: &DomainError) -> Status {
    Status::with_error_details(
        Code::FailedPrecondition,
        format!("{} ({})", error, error.rule()),
        ErrorDetails::with_precondition_failure(vec![PreconditionViolation::new(
            error.rule(),
            format!("case/{case_id}"),
            error.to_string(),
        )]),
    )
}

impl CaseApi {
    async fn load(&self, case_id: &CaseId) -> Result<Loaded, Status> {
        match self.store.load(case_id).await {
            Ok(Some(loaded)) => Ok(loaded),
            Ok(None) => Err(case_not_found(case_id)),
            Err(LoadError::Log(error)) => Err(status::unavailable("the event log", &error)),
            Err(LoadError::ChainBroken { .. }) => Err(status::history_broken(case_id)),
            Err(error) => Err(status::internal(&error)),
        }
    }

    /// Load a case the caller may see: one outside their territory is
    /// NOT_FOUND, as a missing one is.
    pub(crate) async fn load_for(&self, access: &Access, case_id: &CaseId) -> Result<Loaded, Status> {
        let loaded = self.load(case_id).await?;
        access.case(case_id, &scope(&loaded))?;
        Ok(loaded)
    }

    fn result(loaded_up_to: &[Positioned], replayed: bool) -> Result<api::CommandResult, Status> {
        let last = loaded_up_to.last().ok_or_else(|| status::internal(&"empty history"))?;
        let case = fold(loaded_up_to)
            .map_err(|e| status::internal(&e))?
            .ok_or_else(|| status::internal(&"history without a filing"))?;
        Ok(api::CommandResult {
            case_id: case.id.to_string(),
            version: last.event.case_version,
            stream_sequence: last.stream_sequence,
            state: convert::state_to_proto(case.state) as i32,
            event_type: last.event.event_type.clone(),
            replayed,
            recorded_at: Some(convert::timestamp_to_proto(last.event.occurred_at)),
            event_hash: last.event.hash.clone(),
        })
    }

    /// Carry out one lifecycle command. `allowed` lists the event types this
    /// rpc may produce (a command id reused for another rpc is refused);
    /// `make` turns the validated request into the domain command, given the
    /// current case and `now`.
    pub(crate) async fn execute<F>(
        &self,
        access: &Access,
        context: Context,
        allowed: &[&str],
        make: F,
    ) -> Result<Response<api::CommandResult>, Status>
    where
        F: Fn(&Case, Timestamp) -> Result<Command, Status>,
    {
        let case_id = context.case_id;
        // Set when the log says an event with this command's id was stored
        // before this call (a concurrent retry, or another person's command
        // with the same id): the answer then comes from what is stored.
        let mut found_stored = false;
        for _ in 0..ATTEMPTS {
            let loaded = self.load(&case_id).await?;
            let earlier = loaded.command(&context.command_id);
            let actor = access.actor()?;
            // A retry by the person who sent the command gets its first
            // result even when the command took the case out of their sight
            // (a unit's Return); everyone else must see the case.
            let own_retry = earlier.is_some_and(|index| loaded.history[index].event.actor == actor);
            if !own_retry {
                access.case(&case_id, &scope(&loaded))?;
            }
            if let Some(index) = earlier {
                let original = &loaded.history[index].event;
                if !own_retry {
                    return Err(command_id_reused(&case_id, &context.command_id, "was already used by someone else"));
                }
                if !allowed.contains(&original.event_type.as_str()) {
                    return Err(command_id_reused(
                        &case_id,
                        &context.command_id,
                        &format!("was already used for a different command ({})", original.event_type),
                    ));
                }
                if !Self::same_request(&loaded.history[..index], original, &make)? {
                    return Err(command_id_reused(
                        &case_id,
                        &context.command_id,
                        &format!("was already used for a {} with different content", original.event_type),
                    ));
                }
                info!(%case_id, command_id = %context.command_id, "retried command answered with its first result");
                return Ok(Response::new(Self::result(&loaded.history[..=index], true)?));
            }
            // Versions count every stored event (also types a newer version
            // wrote, which the fold passes over).
            if let Some(expected) = context.expected_version
                && expected != loaded.head.version
            {
                return Err(Status::aborted(format!(
                    "case {case_id} is at version {}, not {expected}: reload it and decide again",
                    loaded.head.version
                )));
            }
            let now = self.clock.now();
            let command = make(&loaded.case, now)?;
            let event =
                &gridcase_domain::decide(Some(&loaded.case), &command, now).map_err(|e| refused(&case_id, &e))?;
            let provenance = Provenance {
                event_id: command_event_id(&case_id, &context.command_id),
                occurred_at: now,
                actor,
                command_id: Some(context.command_id.clone()),
            };
            match self.store.commit(&loaded.head, event, provenance).await {
                Ok(Committed::AlreadyStored(_)) if !found_stored => {
                    found_stored = true;
                    continue;
                }
                Ok(Committed::AlreadyStored(_)) => {
                    return Err(status::internal(&"an event reported stored is not in the case's history"));
                }
                Ok(Committed::Stored(positioned)) => {
                    info!(%case_id, event = %positioned.event.event_type, version = positioned.event.case_version, "lifecycle command recorded");
                    let mut history = loaded.history;
                    history.push(positioned);
                    return Ok(Response::new(Self::result(&history, false)?));
                }
                Err(CommitError::Conflict) if context.expected_version.is_some() => {
                    return Err(Status::aborted(format!(
                        "case {case_id} changed while this command was being recorded: reload it and decide again"
                    )));
                }
                Err(CommitError::Conflict) => continue,
                Err(CommitError::Unavailable(error)) => return Err(status::unavailable("the event log", &error)),
                Err(CommitError::Refused(error)) => return Err(status::internal(&error)),
                Err(CommitError::Stopped(problems)) => return Err(status::writes_stopped(&problems)),
            }
        }
        Err(Status::aborted(format!("case {case_id} keeps changing; retry the command")))
    }

    /// Whether `make` asks for what `original` recorded: the command is
    /// decided again on the case as it stood before `original`, at its time,
    /// and the two events compared (deadlines the server computed aside).
    fn same_request<F>(before: &[Positioned], original: &StoredEvent, make: &F) -> Result<bool, Status>
    where
        F: Fn(&Case, Timestamp) -> Result<Command, Status>,
    {
        let Some(case) = fold(before).map_err(|e| status::internal(&e))? else { return Ok(false) };
        let Ok(recorded) = original.decode() else { return Ok(false) };
        let at = original.occurred_at;
        let Ok(command) = make(&case, at) else { return Ok(false) };
        Ok(gridcase_domain::decide(Some(&case), &command, at).is_ok_and(|again| again.same_request(&recorded)))
    }

    fn planner(&self) -> Planner<'_> {
        Planner::new(&self.policy, &self.calendar)
    }

    /// The commands whose only field is a required reason.
    async fn with_reason(
        &self,
        access: &Access,
        checked: WithReason,
        event_type: &'static str,
        make: fn(Text) -> Command,
    ) -> CommandResponse {
        let WithReason { ctx, reason } = checked;
        self.execute(access, ctx, &[event_type], |_, _| Ok(make(reason.clone()))).await
    }
}

type CommandResponse = Result<Response<api::CommandResult>, Status>;

#[tonic::async_trait]
impl CaseService for CaseApi {
    #[instrument(skip_all)]
    async fn register(&self, request: Request<api::RegisterRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let Registration { ctx, tier, note } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["registered"], |case, _| {
            // No tier: the one the policy gives (route, then the category's default).
            let tier = tier.unwrap_or_else(|| {
                let default = self.reference.taxonomy.category(&case.category).map(|c| c.default_tier);
                self.policy.tier_for(&case.category, &case.grid, default)
            });
            Ok(Command::Register { tier, note: note.clone(), policy: None })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn void(&self, request: Request<api::VoidRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let checked = request.get_ref().check(&self.limits)?;
        self.with_reason(&access, checked, "voided", |reason| Command::Void { reason }).await
    }

    #[instrument(skip_all)]
    async fn dispatch(&self, request: Request<api::DispatchRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let ToUnit { ctx, unit } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["dispatched"], |case, now| {
            let tier = case.tier.unwrap_or(gridcase_domain::Tier::Normal);
            let (deadlines, _) = self.planner().dispatch(tier, &case.category, &case.grid, &unit, now);
            Ok(Command::Dispatch { unit: unit.clone(), deadlines })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn acknowledge(&self, request: Request<api::AcknowledgeRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let ctx = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["acknowledged"], |_, _| Ok(Command::Acknowledge)).await
    }

    #[instrument(skip_all)]
    async fn r#return(&self, request: Request<api::ReturnRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let checked = request.get_ref().check(&self.limits)?;
        self.with_reason(&access, checked, "returned", |reason| Command::Return { reason }).await
    }

    #[instrument(skip_all)]
    async fn reassign(&self, request: Request<api::ReassignRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let Reassignment { ctx, unit, reason } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["reassigned"], |case, now| {
            let tier = case.tier.unwrap_or(gridcase_domain::Tier::Normal);
            let (deadlines, _) = self.planner().dispatch(tier, &case.category, &case.grid, &unit, now);
            Ok(Command::Reassign { unit: unit.clone(), deadlines, reason: reason.clone() })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn add_progress(&self, request: Request<api::AddProgressRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let WithAttachments { ctx, text: note, attachments } = request.get_ref().check(&self.limits)?;
        check_uploaded(&self.attachments, "attachments", &attachments).await?;
        self.execute(&access, ctx, &["progress_added"], |_, _| {
            Ok(Command::AddProgress { note: note.clone(), attachments: attachments.clone() })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn add_report(&self, request: Request<api::AddReportRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let report = crate::requests::report_record(request.get_ref(), &self.limits, self.clock.now())?;
        check_uploaded(&self.attachments, "attachments", &report.attachments).await?;
        let crate::requests::ReportRecord { ctx, reported_at, location, note, attachments } = report;
        self.execute(&access, ctx, &["report_added"], |_, _| {
            Ok(Command::AddReport {
                reported_at,
                location: location.clone(),
                note: note.clone(),
                attachments: attachments.clone(),
            })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn merge(&self, request: Request<api::MergeRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let record = request.get_ref().check(&self.limits)?;
        self.merge_cases(&access, record).await
    }

    #[instrument(skip_all)]
    async fn request_extension(&self, request: Request<api::RequestExtensionRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let ExtensionRequest { ctx, working_days, reason } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["extension_requested"], |_, _| {
            Ok(Command::RequestExtension { working_days, reason: reason.clone() })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn decide_extension(&self, request: Request<api::DecideExtensionRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let ExtensionDecision { ctx, approved_working_days, reason } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["extension_approved", "extension_rejected"], |_, _| {
            Ok(Command::DecideExtension { approved_working_days, reason: reason.clone() })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn request_hold(&self, request: Request<api::RequestHoldRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let checked = request.get_ref().check(&self.limits)?;
        self.with_reason(&access, checked, "hold_requested", |reason| Command::RequestHold { reason }).await
    }

    #[instrument(skip_all)]
    async fn decide_hold(&self, request: Request<api::DecideHoldRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let Decision { ctx, yes: approve, reason } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["hold_approved", "hold_rejected"], |_, _| {
            Ok(Command::DecideHold { approve, reason: reason.clone() })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn resume(&self, request: Request<api::ResumeRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let ctx = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["resumed"], |_, _| Ok(Command::Resume)).await
    }

    #[instrument(skip_all)]
    async fn resolve(&self, request: Request<api::ResolveRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let WithAttachments { ctx, text: summary, attachments: evidence } = request.get_ref().check(&self.limits)?;
        check_uploaded(&self.attachments, "evidence", &evidence).await?;
        self.execute(&access, ctx, &["resolved"], |_, _| {
            Ok(Command::Resolve { summary: summary.clone(), evidence: evidence.clone() })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn verify(&self, request: Request<api::VerifyRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let Decision { ctx, yes: passed, reason } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["verification_passed", "verification_failed"], |_, _| {
            Ok(Command::Verify { passed, reason: reason.clone() })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn record_feedback(&self, request: Request<api::RecordFeedbackRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let FeedbackRecord { ctx, feedback, comment } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["feedback_recorded"], |_, _| {
            Ok(Command::RecordFeedback { feedback, comment: comment.clone() })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn reply(&self, request: Request<api::ReplyRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let ReplyRecord { ctx, method, text } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["replied"], |_, _| Ok(Command::Reply { method, text: text.clone() })).await
    }

    #[instrument(skip_all)]
    async fn record_callback(&self, request: Request<api::RecordCallbackRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let CallbackRecord { ctx, reached, attempts, satisfaction, reason } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["callback_recorded"], |_, _| {
            Ok(Command::RecordCallback { reached, attempts, satisfaction, reason: reason.clone() })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn reopen(&self, request: Request<api::ReopenRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let checked = request.get_ref().check(&self.limits)?;
        self.with_reason(&access, checked, "reopened", |reason| Command::Reopen { reason }).await
    }

    #[instrument(skip_all)]
    async fn cancel(&self, request: Request<api::CancelRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let checked = request.get_ref().check(&self.limits)?;
        self.with_reason(&access, checked, "cancelled", |reason| Command::Cancel { reason }).await
    }

    #[instrument(skip_all)]
    async fn supervise(&self, request: Request<api::SuperviseRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let Supervision { ctx, level, reason } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["supervised"], |_, _| {
            Ok(Command::Supervise { level, reason: reason.clone(), escalated_to: None })
        })
        .await
    }

    #[instrument(skip_all)]
    async fn set_urgent(&self, request: Request<api::SetUrgentRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let Decision { ctx, yes: urgent, reason } = request.get_ref().check(&self.limits)?;
        self.execute(&access, ctx, &["urgency_set"], |_, _| Ok(Command::SetUrgent { urgent, reason: reason.clone() }))
            .await
    }

    #[instrument(skip_all)]
    async fn erase_resident_data(&self, request: Request<api::EraseResidentDataRequest>) -> CommandResponse {
        let access = Access::of(&request)?.clone();
        let WithReason { ctx, reason } = request.get_ref().check(&self.limits)?;
        let case_id = ctx.case_id;
        // Recorded first, then the key destroyed: the event is the intent,
        // and the dispatcher destroys the key of every erasure it reads, so
        // a crash between the two still ends with the key gone. A retry of
        // this command (same command id) destroys it again, harmlessly.
        let response = self
            .execute(&access, ctx, &["resident_data_erased"], |_, _| {
                Ok(Command::EraseResidentData { reason: reason.clone() })
            })
            .await?;
        personal::erase(&self.keys, &case_id).await?;
        info!(%case_id, "resident data erased");
        Ok(response)
    }

    #[instrument(skip_all)]
    async fn get_case(&self, request: Request<api::GetCaseRequest>) -> Result<Response<api::CaseView>, Status> {
        let access = Access::of(&request)?;
        let case_id = request.get_ref().check(&self.limits)?;
        let loaded = self.load_for(access, &case_id).await?;
        let resident_contact =
            personal::shown(&self.keys, &loaded, contact_view(&access.principal, &scope(&loaded))).await?;
        let version = loaded.head.version;
        let case = loaded.case;
        let deadlines = case
            .deadlines
            .iter()
            .map(|(clock, due)| api::Deadline {
                clock: convert::clock_to_proto(*clock) as i32,
                due: Some(convert::timestamp_to_proto(*due)),
                warned: case.marks.contains(&(*clock, gridcase_domain::ClockMark::Warning)),
                overdue: case.marks.contains(&(*clock, gridcase_domain::ClockMark::Overdue)),
            })
            .collect();
        Ok(Response::new(api::CaseView {
            case_id: case.id.to_string(),
            version,
            state: convert::state_to_proto(case.state) as i32,
            grid_code: case.grid.to_string(),
            category_code: case.category.to_string(),
            tier: convert::tier_to_proto(case.tier) as i32,
            unit: case.unit.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            supervision: convert::supervision_to_proto(case.supervision) as i32,
            urgent: case.urgent,
            deadlines,
            pending_extension_days: case.pending_extension.unwrap_or(0),
            approved_extension_days: case.approved_extension_days,
            hold_requested: case.hold_requested,
            feedback: convert::feedback_to_proto(case.feedback) as i32,
            returns: case.returns,
            reworks: case.reworks,
            reopenings: case.reopenings,
            resident_contact,
            offered_units: self.policy.units_for(&case.category, &case.grid).iter().map(|u| u.to_string()).collect(),
            request_kind: gridcase_proto::convert::request_kind_to_proto(case.request_kind) as i32,
            replied: case.replied,
            called_back: case.called_back,
        }))
    }

    type GetAttachmentStream = AttachmentStream;

    #[instrument(skip_all, fields(case_id = %request.get_ref().case_id, sha256 = %request.get_ref().sha256))]
    async fn get_attachment(
        &self,
        request: Request<api::GetAttachmentRequest>,
    ) -> Result<Response<AttachmentStream>, Status> {
        let access = Access::of(&request)?;
        let (case_id, sha256, portion) = request.get_ref().check(&self.limits)?;
        let loaded = self.load_for(access, &case_id).await?;
        Ok(Response::new(download::attachment(&self.attachments, &loaded, &case_id, &sha256, portion).await?))
    }

    #[instrument(skip_all)]
    async fn get_history(&self, request: Request<api::GetHistoryRequest>) -> Result<Response<api::History>, Status> {
        let access = Access::of(&request)?;
        let case_id = request.get_ref().check(&self.limits)?;
        let loaded = self.load_for(access, &case_id).await?;
        let chain = verify_history(&loaded.history);
        // A history is an audit view: the resident's contact details
        // masked for every role, or said to be erased; never their sealed form.
        let contact = personal::shown(&self.keys, &loaded, ContactView::Masked).await?.map(|shown| {
            if shown.erased {
                serde_json::json!({ "erased": true })
            } else {
                let mut shown_json = serde_json::json!({ "name": shown.name, "phone": shown.phone });
                if !shown.email.is_empty() {
                    shown_json["email"] = serde_json::Value::String(shown.email);
                }
                shown_json
            }
        });
        let events = loaded
            .history
            .iter()
            .map(|positioned| history_event(positioned, contact.as_ref()))
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(api::History {
            case_id: case_id.to_string(),
            events,
            chain_verified: chain.is_ok(),
            chain_problem: chain.err().map(|e| e.to_string()).unwrap_or_default(),
        }))
    }
}
