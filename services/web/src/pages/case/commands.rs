//! A case page's button as the command it sends, and the sending.

use gridcase_proto::cases::v1 as cases_api;
use gridcase_proto::common::v1 as common;

use super::ACTIONS;
use crate::AppState;
use crate::pages::Fields;
use crate::upstream::as_user;

/// One button's command, as the case page sent it.
pub(super) fn command(fields: &Fields, case_id: &str) -> Result<(&'static str, Command), String> {
    let action = ACTIONS.iter().find(|a| a.name == fields.get("action")).ok_or("no such action")?;
    let context = Some(cases_api::CommandContext {
        case_id: case_id.to_owned(),
        command_id: fields.get("command_id").to_owned(),
        expected_version: fields.get("expected_version").parse().ok(),
    });
    let reason = fields.get("reason").to_owned();
    let days = fields.get("days").parse().unwrap_or(0);
    use Command as C;
    Ok((
        action.name,
        match action.name {
            "register" => {
                C::Register(cases_api::RegisterRequest { context, tier: 0, note: fields.get("note").to_owned() })
            }
            "void" => C::Void(cases_api::VoidRequest { context, reason }),
            "dispatch" => {
                C::Dispatch(cases_api::DispatchRequest { context, unit: fields.get("unit").trim().to_owned() })
            }
            "reassign" => {
                C::Reassign(cases_api::ReassignRequest { context, unit: fields.get("unit").trim().to_owned(), reason })
            }
            "acknowledge" => C::Acknowledge(cases_api::AcknowledgeRequest { context }),
            "return" => C::Return(cases_api::ReturnRequest { context, reason }),
            "resolve" => C::Resolve(cases_api::ResolveRequest { context, summary: reason, evidence: vec![] }),
            "request_extension" => {
                C::RequestExtension(cases_api::RequestExtensionRequest { context, working_days: days, reason })
            }
            "request_hold" => C::RequestHold(cases_api::RequestHoldRequest { context, reason }),
            "approve_extension" => C::DecideExtension(cases_api::DecideExtensionRequest {
                context,
                approve: true,
                approved_working_days: days,
                reason,
            }),
            "reject_extension" => C::DecideExtension(cases_api::DecideExtensionRequest {
                context,
                approve: false,
                approved_working_days: 0,
                reason,
            }),
            "approve_hold" => C::DecideHold(cases_api::DecideHoldRequest { context, approve: true, reason }),
            "reject_hold" => C::DecideHold(cases_api::DecideHoldRequest { context, approve: false, reason }),
            "verify_pass" => C::Verify(cases_api::VerifyRequest { context, passed: true, reason }),
            "verify_rework" => C::Verify(cases_api::VerifyRequest { context, passed: false, reason }),
            "supervise" => C::Supervise(cases_api::SuperviseRequest {
                context,
                level: common::Supervision::from_str_name(fields.get("level")).map_or(0, |l| l as i32),
                reason,
            }),
            "set_urgent" => C::SetUrgent(cases_api::SetUrgentRequest { context, urgent: true, reason }),
            "cancel" => C::Cancel(cases_api::CancelRequest { context, reason }),
            "erase" => C::Erase(cases_api::EraseResidentDataRequest { context, reason }),
            "reply" => C::Reply(cases_api::ReplyRequest {
                context,
                method: common::ReplyMethod::from_str_name(fields.get("method")).map_or(0, |m| m as i32),
                text: reason,
            }),
            "callback" => {
                let satisfaction = common::Feedback::from_str_name(fields.get("outcome"));
                C::Callback(cases_api::RecordCallbackRequest {
                    context,
                    reached: satisfaction.is_some(),
                    attempts: 0,
                    satisfaction: satisfaction.map_or(0, |s| s as i32),
                    reason: fields.get("note").to_owned(),
                })
            }
            _ => return Err("no such action".into()),
        },
    ))
}

pub(super) enum Command {
    Register(cases_api::RegisterRequest),
    Void(cases_api::VoidRequest),
    Dispatch(cases_api::DispatchRequest),
    Reassign(cases_api::ReassignRequest),
    Acknowledge(cases_api::AcknowledgeRequest),
    Return(cases_api::ReturnRequest),
    Resolve(cases_api::ResolveRequest),
    RequestExtension(cases_api::RequestExtensionRequest),
    RequestHold(cases_api::RequestHoldRequest),
    DecideExtension(cases_api::DecideExtensionRequest),
    DecideHold(cases_api::DecideHoldRequest),
    Verify(cases_api::VerifyRequest),
    Supervise(cases_api::SuperviseRequest),
    SetUrgent(cases_api::SetUrgentRequest),
    Cancel(cases_api::CancelRequest),
    Erase(cases_api::EraseResidentDataRequest),
    Reply(cases_api::ReplyRequest),
    Callback(cases_api::RecordCallbackRequest),
}

pub(super) async fn send(
    state: &AppState,
    token: &str,
    command: Command,
) -> Result<cases_api::CommandResult, tonic::Status> {
    let mut c = state.upstream.cases.clone();
    let result = match command {
        Command::Register(r) => c.register(as_user(token, r)).await,
        Command::Void(r) => c.void(as_user(token, r)).await,
        Command::Dispatch(r) => c.dispatch(as_user(token, r)).await,
        Command::Reassign(r) => c.reassign(as_user(token, r)).await,
        Command::Acknowledge(r) => c.acknowledge(as_user(token, r)).await,
        Command::Return(r) => c.r#return(as_user(token, r)).await,
        Command::Resolve(r) => c.resolve(as_user(token, r)).await,
        Command::RequestExtension(r) => c.request_extension(as_user(token, r)).await,
        Command::RequestHold(r) => c.request_hold(as_user(token, r)).await,
        Command::DecideExtension(r) => c.decide_extension(as_user(token, r)).await,
        Command::DecideHold(r) => c.decide_hold(as_user(token, r)).await,
        Command::Verify(r) => c.verify(as_user(token, r)).await,
        Command::Supervise(r) => c.supervise(as_user(token, r)).await,
        Command::SetUrgent(r) => c.set_urgent(as_user(token, r)).await,
        Command::Cancel(r) => c.cancel(as_user(token, r)).await,
        Command::Erase(r) => c.erase_resident_data(as_user(token, r)).await,
        Command::Reply(r) => c.reply(as_user(token, r)).await,
        Command::Callback(r) => c.record_callback(as_user(token, r)).await,
    };
    result.map(|r| r.into_inner())
}
