//! The lifecycle API end to end over gRPC: every transition and refusal,
//! retries, races, and the scenarios of the brief.

use std::sync::Arc;

use gridcase_domain::{CaseId, State};
use gridcase_process::{ManualTimeSource, SystemTimeSource};
use gridcase_proto::cases::v1 as api;
use gridcase_proto::common::v1 as common;
use gridcase_tests::fixtures::{as_worker, filing, intake_client};
use gridcase_tests::lifecycle::{self, Client, centre, request, unit};
use gridcase_tests::{NatsServer, TestDispatcher, TestIntake};
use tonic::Code;
use tonic_types::StatusExt;

const UNIT: &str = "unit.urban.990101";

/// Every lifecycle operation the table exercises, with who performs it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Register,
    Void,
    Dispatch,
    Acknowledge,
    Return,
    Reassign,
    RequestHold,
    ApproveHold,
    Resume,
    Resolve,
    VerifyPass,
    VerifyRework,
    Unsatisfied,
    Reopen,
    Cancel,
    RequestExtension,
    ApproveExtension,
    Supervise,
    Urgent,
    Progress,
}

const ALL_OPS: [Op; 15] = [
    Op::Register,
    Op::Void,
    Op::Dispatch,
    Op::Acknowledge,
    Op::Return,
    Op::Reassign,
    Op::RequestHold,
    Op::ApproveHold,
    Op::Resume,
    Op::Resolve,
    Op::VerifyPass,
    Op::VerifyRework,
    Op::Unsatisfied,
    Op::Reopen,
    Op::Cancel,
];

/// The unit that acts on the case now: the one it is dispatched to (a unit
/// sees only those), or UNIT when it is dispatched to none.
async fn acting_unit(client: &mut Client, case_id: CaseId) -> Result<String, tonic::Status> {
    let current = client.get_case(request(&centre(), api::GetCaseRequest { case_id: case_id.to_string() })).await?;
    let unit = current.into_inner().unit;
    Ok(if unit.is_empty() { UNIT.to_owned() } else { unit })
}

async fn send(
    client: &mut Client,
    case_id: CaseId,
    op: Op,
    context: Option<api::CommandContext>,
) -> Result<api::CommandResult, tonic::Status> {
    let acting = acting_unit(client, case_id).await?;
    send_as(client, case_id, op, context, &acting).await
}

/// Send `op`: centre commands as the centre, unit commands as `acting`.
async fn send_as(
    client: &mut Client,
    case_id: CaseId,
    op: Op,
    context: Option<api::CommandContext>,
    acting: &str,
) -> Result<api::CommandResult, tonic::Status> {
    let ctx = context.or_else(|| lifecycle::context(case_id));
    let (cc, u) = (centre(), unit(acting));
    let reason = |s: &str| s.to_owned();
    let result = match op {
        Op::Register => {
            client
                .register(request(
                    &cc,
                    api::RegisterRequest { context: ctx, tier: common::Tier::Normal as i32, note: String::new() },
                ))
                .await
        }
        Op::Void => client.void(request(&cc, api::VoidRequest { context: ctx, reason: reason("重复上报") })).await,
        Op::Dispatch => client.dispatch(request(&cc, api::DispatchRequest { context: ctx, unit: UNIT.into() })).await,
        Op::Acknowledge => client.acknowledge(request(&u, api::AcknowledgeRequest { context: ctx })).await,
        Op::Return => {
            client.r#return(request(&u, api::ReturnRequest { context: ctx, reason: reason("非本单位职责") })).await
        }
        Op::Reassign => {
            client
                .reassign(request(
                    &cc,
                    api::ReassignRequest {
                        context: ctx,
                        unit: "unit.property.990101001".into(),
                        reason: reason("改派物业"),
                    },
                ))
                .await
        }
        Op::RequestHold => {
            client
                .request_hold(request(&u, api::RequestHoldRequest { context: ctx, reason: reason("冬季无法施工") }))
                .await
        }
        Op::ApproveHold => {
            client
                .decide_hold(request(
                    &cc,
                    api::DecideHoldRequest { context: ctx, approve: true, reason: String::new() },
                ))
                .await
        }
        Op::Resume => client.resume(request(&cc, api::ResumeRequest { context: ctx })).await,
        Op::Resolve => {
            client
                .resolve(request(&u, api::ResolveRequest { context: ctx, summary: reason("已处理"), evidence: vec![] }))
                .await
        }
        Op::VerifyPass => {
            client.verify(request(&cc, api::VerifyRequest { context: ctx, passed: true, reason: String::new() })).await
        }
        Op::VerifyRework => {
            client
                .verify(request(
                    &cc,
                    api::VerifyRequest { context: ctx, passed: false, reason: reason("现场仍有问题") },
                ))
                .await
        }
        Op::Unsatisfied => {
            client
                .record_feedback(request(
                    &cc,
                    api::RecordFeedbackRequest {
                        context: ctx,
                        feedback: common::Feedback::Unsatisfied as i32,
                        comment: String::new(),
                    },
                ))
                .await
        }
        Op::Reopen => {
            client.reopen(request(&cc, api::ReopenRequest { context: ctx, reason: reason("居民不满意") })).await
        }
        Op::Cancel => client.cancel(request(&cc, api::CancelRequest { context: ctx, reason: reason("误报") })).await,
        Op::RequestExtension => {
            let message =
                api::RequestExtensionRequest { context: ctx, working_days: 2, reason: reason("需采购材料") };
            client.request_extension(request(&u, message)).await
        }
        Op::ApproveExtension => {
            let message = api::DecideExtensionRequest {
                context: ctx,
                approve: true,
                approved_working_days: 1,
                reason: String::new(),
            };
            client.decide_extension(request(&cc, message)).await
        }
        Op::Supervise => {
            let level = common::Supervision::Normal as i32;
            client.supervise(request(&cc, api::SuperviseRequest { context: ctx, level, reason: reason("督办") })).await
        }
        Op::Urgent => {
            client
                .set_urgent(request(&cc, api::SetUrgentRequest { context: ctx, urgent: true, reason: reason("加急") }))
                .await
        }
        Op::Progress => {
            let message =
                api::AddProgressRequest { context: ctx, note: reason("已联系住户"), attachments: vec![] };
            client.add_progress(request(&u, message)).await
        }
    };
    result.map(|r| r.into_inner())
}

fn state_of(result: &api::CommandResult) -> State {
    match common::CaseState::try_from(result.state).unwrap() {
        common::CaseState::Reported => State::Reported,
        common::CaseState::Registered => State::Registered,
        common::CaseState::Voided => State::Voided,
        common::CaseState::Dispatched => State::Dispatched,
        common::CaseState::InProgress => State::InProgress,
        common::CaseState::OnHold => State::OnHold,
        common::CaseState::Resolved => State::Resolved,
        common::CaseState::Closed => State::Closed,
        common::CaseState::Cancelled => State::Cancelled,
        common::CaseState::Unspecified => panic!("unspecified state"),
    }
}

/// The operations that bring a new case into `state`.
fn path_to(state: State) -> Vec<Op> {
    use Op::*;
    match state {
        State::Reported => vec![],
        State::Registered => vec![Register],
        State::Voided => vec![Void],
        State::Dispatched => vec![Register, Dispatch],
        State::InProgress => vec![Register, Dispatch, Acknowledge],
        State::OnHold => vec![Register, Dispatch, Acknowledge, RequestHold, ApproveHold],
        State::Resolved => vec![Register, Dispatch, Acknowledge, Resolve],
        State::Closed => vec![Register, Dispatch, Acknowledge, Resolve, VerifyPass, Unsatisfied],
        State::Cancelled => vec![Cancel],
    }
}

/// Where each operation may be sent and where it leads, from the brief.
fn allowed(op: Op, state: State) -> Option<State> {
    use State::*;
    match (op, state) {
        (Op::Register, Reported) => Some(Registered),
        (Op::Void, Reported) => Some(Voided),
        (Op::Dispatch, Registered) => Some(Dispatched),
        (Op::Acknowledge, Dispatched) => Some(InProgress),
        (Op::Return, Dispatched | InProgress) => Some(Registered),
        (Op::Reassign, Dispatched) => Some(Dispatched),
        (Op::RequestHold, InProgress) => Some(InProgress),
        (Op::Resume, OnHold) => Some(InProgress),
        (Op::Resolve, InProgress) => Some(Resolved),
        (Op::VerifyPass, Resolved) => Some(Closed),
        (Op::VerifyRework, Resolved) => Some(InProgress),
        (Op::Reopen, Closed) => Some(InProgress),
        (Op::Cancel, Reported | Registered | Dispatched | InProgress | OnHold | Resolved | Closed) => Some(Cancelled),
        _ => None,
    }
}

/// The operations a handling unit sends.
fn unit_op(op: Op) -> bool {
    matches!(op, Op::Acknowledge | Op::Return | Op::RequestHold | Op::Resolve | Op::RequestExtension | Op::Progress)
}

async fn file_new(intake: &TestIntake) -> CaseId {
    let case_id = CaseId::new_v7();
    intake_client(intake.endpoint()).await.file_case(as_worker(filing(case_id))).await.expect("filed");
    case_id
}

async fn reach(client: &mut Client, intake: &TestIntake, state: State) -> CaseId {
    let case_id = file_new(intake).await;
    for op in path_to(state) {
        send(client, case_id, op, None).await.unwrap_or_else(|e| panic!("{op:?} on the way to {state:?}: {e:?}"));
    }
    case_id
}

#[tokio::test]
async fn every_transition_of_the_brief_works_over_grpc_and_every_other_is_refused_naming_the_rule() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    let mut checked = 0;
    for state in State::ALL {
        for op in ALL_OPS {
            // Hold approval and feedback depend on a pending request or a
            // closure; they are checked in the scenarios below.
            if matches!(op, Op::ApproveHold | Op::Unsatisfied) {
                continue;
            }
            let case_id = reach(&mut client, &intake, state).await;
            let result = send(&mut client, case_id, op, None).await;
            match allowed(op, state) {
                Some(next) => {
                    let result = result.unwrap_or_else(|e| panic!("{op:?} from {state:?} refused: {e:?}"));
                    assert_eq!(state_of(&result), next, "{op:?} from {state:?}");
                }
                None if unit_op(op)
                    && matches!(state, State::Reported | State::Registered | State::Voided | State::Cancelled) =>
                {
                    // Never dispatched: no unit may even see the case.
                    let status = result.expect_err(&format!("{op:?} from {state:?} must be refused"));
                    assert_eq!(status.code(), Code::NotFound, "{op:?} from {state:?}: {status:?}");
                    assert_eq!(status.message(), format!("case {case_id} does not exist"));
                }
                None => {
                    let status = result.expect_err(&format!("{op:?} from {state:?} must be refused"));
                    assert_eq!(status.code(), Code::FailedPrecondition, "{op:?} from {state:?}: {status:?}");
                    let details = status.get_error_details();
                    let violation = &details.precondition_failure().expect("PreconditionFailure detail").violations[0];
                    assert!(
                        ["TRANSITION_NOT_ALLOWED", "REOPEN_NEEDS_UNSATISFIED_FEEDBACK"]
                            .contains(&violation.r#type.as_str()),
                        "{op:?} from {state:?}: {violation:?}"
                    );
                    assert_eq!(violation.subject, format!("case/{case_id}"));
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 9 * 13);
}

#[tokio::test]
async fn a_retried_command_returns_its_first_result_also_after_a_restart() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    // Every command, each sent twice with the same command id.
    use Op::*;
    let paths = [
        vec![Register, Dispatch, Reassign, Return, Dispatch, Acknowledge, Progress, RequestExtension, ApproveExtension],
        vec![Supervise, Urgent, RequestHold, ApproveHold, Resume, Resolve, VerifyRework, Resolve, VerifyPass],
        vec![Unsatisfied, Reopen, Cancel],
    ];
    let voided = file_new(&intake).await;
    let context = lifecycle::context(voided);
    let first = send(&mut client, voided, Void, context.clone()).await.unwrap();
    let again = send(&mut client, voided, Void, context.clone()).await.unwrap();
    assert_eq!((again.replayed, again.version), (true, first.version));
    let case_id = file_new(&intake).await;
    let mut contexts = Vec::new();
    for op in paths.concat() {
        let context = lifecycle::context(case_id);
        let acting = acting_unit(&mut client, case_id).await.unwrap();
        let first = send_as(&mut client, case_id, op, context.clone(), &acting).await.unwrap();
        let again = send_as(&mut client, case_id, op, context.clone(), &acting).await.unwrap();
        assert!(!first.replayed && again.replayed, "{op:?}");
        assert_eq!(
            (again.version, again.stream_sequence, again.state),
            (first.version, first.stream_sequence, first.state),
            "{op:?}"
        );
        contexts.push((op, context, first, acting));
    }
    intake.stop().await.unwrap();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    for (op, context, first, acting) in contexts {
        let again = send_as(&mut client, case_id, op, context, &acting).await.unwrap();
        assert!(again.replayed, "{op:?} after a restart");
        assert_eq!((again.version, again.event_type.as_str()), (first.version, first.event_type.as_str()), "{op:?}");
    }
    let history = client
        .get_history(request(&centre(), api::GetHistoryRequest { case_id: case_id.to_string() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.events.len(), 1 + paths.concat().len(), "a filing and every command once");

    // A command id reused for another command is refused, not replayed.
    let other = reach(&mut client, &intake, State::InProgress).await;
    let reused = api::CommandContext { command_id: "cmd-reused".into(), ..lifecycle::context(other).unwrap() };
    send(&mut client, other, Op::Progress, Some(reused.clone())).await.unwrap();
    let status = send(&mut client, other, Op::Resolve, Some(reused)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("already used for a different command"), "{status:?}");
}

#[tokio::test]
async fn of_two_operators_acting_on_the_same_version_exactly_one_wins_the_other_is_aborted() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    for round in 0..5 {
        let case_id = reach(&mut client, &intake, State::Dispatched).await;
        let version = client
            .get_case(request(&centre(), api::GetCaseRequest { case_id: case_id.to_string() }))
            .await
            .unwrap()
            .into_inner()
            .version;
        let pinned =
            || Some(api::CommandContext { expected_version: Some(version), ..lifecycle::context(case_id).unwrap() });
        // The unit acknowledges while the centre reassigns, both from version `version`.
        let (mut a, mut b) = (client.clone(), client.clone());
        let (ack, reassign) = tokio::join!(
            send_as(&mut a, case_id, Op::Acknowledge, pinned(), UNIT),
            send_as(&mut b, case_id, Op::Reassign, pinned(), UNIT),
        );
        let outcomes = [&ack, &reassign];
        let wins = outcomes.iter().filter(|r| r.is_ok()).count();
        let aborted = outcomes.iter().filter(|r| matches!(r, Err(s) if s.code() == Code::Aborted)).count();
        // Once the reassignment is in, the case is no longer the first
        // unit's to see: its late acknowledgement is NOT_FOUND, not ABORTED.
        let lost_sight = reassign.is_ok()
            && matches!(&ack, Err(s) if s.code() == Code::NotFound
                && s.message() == format!("case {case_id} does not exist"));
        assert_eq!((wins, aborted + usize::from(lost_sight)), (1, 1), "round {round}: {ack:?} / {reassign:?}");
    }
    // A version seen before a later change is refused outright.
    let case_id = reach(&mut client, &intake, State::Registered).await;
    let stale = Some(api::CommandContext { expected_version: Some(1), ..lifecycle::context(case_id).unwrap() });
    let status = send(&mut client, case_id, Op::Dispatch, stale).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert!(status.message().contains("is at version 2, not 1"), "{status:?}");
}

#[tokio::test]
async fn malformed_commands_are_invalid_argument_and_unknown_cases_not_found() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    let case_id = reach(&mut client, &intake, State::Reported).await;
    let field = |status: &tonic::Status| {
        let details = status.get_error_details();
        details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| (v.field.clone(), v.reason.clone())).collect::<Vec<_>>())
    };
    let cc = centre();
    let status = client
        .void(request(&cc, api::VoidRequest { context: lifecycle::context(case_id), reason: "  ".into() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field(&status).unwrap(), [("reason".to_owned(), "REQUIRED".to_owned())]);

    let status =
        client.void(request(&cc, api::VoidRequest { context: None, reason: "重复".into() })).await.unwrap_err();
    assert_eq!(field(&status).unwrap(), [("context".to_owned(), "REQUIRED".to_owned())]);

    let bad = api::CommandContext { case_id: "x".into(), command_id: String::new(), expected_version: None };
    let status =
        client.acknowledge(request(&unit(UNIT), api::AcknowledgeRequest { context: Some(bad) })).await.unwrap_err();
    assert_eq!(
        field(&status).unwrap(),
        [
            ("context.case_id".to_owned(), "MALFORMED".to_owned()),
            ("context.command_id".to_owned(), "REQUIRED".to_owned())
        ]
    );

    let status = client
        .register(request(
            &cc,
            api::RegisterRequest { context: lifecycle::context(case_id), tier: 42, note: String::new() },
        ))
        .await
        .unwrap_err();
    assert_eq!(field(&status).unwrap(), [("tier".to_owned(), "UNKNOWN_VALUE".to_owned())], "not a tier of the proto");

    let status = client
        .request_extension(request(
            &unit(UNIT),
            api::RequestExtensionRequest { context: lifecycle::context(case_id), working_days: 0, reason: "x".into() },
        ))
        .await
        .unwrap_err();
    assert_eq!(field(&status).unwrap(), [("working_days".to_owned(), "OUT_OF_RANGE".to_owned())]);

    let status = client
        .add_progress(request(
            &cc,
            api::AddProgressRequest {
                context: lifecycle::context(case_id),
                note: "照片".into(),
                attachments: vec![common::AttachmentRef {
                    sha256: "c".repeat(64),
                    size: 9,
                    content_type: "image/png".into(),
                }],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(field(&status).unwrap(), [("attachments[0].sha256".to_owned(), "NOT_UPLOADED".to_owned())]);

    let unknown = CaseId::new_v7();
    let status = send_as(&mut client, unknown, Op::Register, None, UNIT).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), format!("case {unknown} does not exist"));

    let status = client
        .acknowledge(tonic::Request::new(api::AcknowledgeRequest { context: lifecycle::context(case_id) }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

fn kinds(history: &api::History) -> Vec<&str> {
    history.events.iter().map(|e| e.r#type.as_str()).collect()
}

async fn history(client: &mut Client, case_id: CaseId) -> api::History {
    client
        .get_history(request(&centre(), api::GetHistoryRequest { case_id: case_id.to_string() }))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn scenario_a_from_filing_through_return_rework_and_reopening_to_closure() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    let case_id = CaseId::new_v7();
    let mut report = filing(case_id);
    report.resident_contact = Some(gridcase_proto::intake::v1::ResidentContact {
        name: "王芳".into(),
        phone: "13812345678".into(),
        ..Default::default()
    });
    intake_client(intake.endpoint()).await.file_case(as_worker(report)).await.unwrap();

    // Returned by UNIT, then dispatched to the utilities company: from then on it acts.
    let (cc, u) = (centre(), unit("unit.utilities.990101"));
    let ctx = || lifecycle::context(case_id);
    send(&mut client, case_id, Op::Register, None).await.unwrap();
    send(&mut client, case_id, Op::Dispatch, None).await.unwrap();
    send(&mut client, case_id, Op::Return, None).await.unwrap();
    client
        .dispatch(request(&cc, api::DispatchRequest { context: ctx(), unit: "unit.utilities.990101".into() }))
        .await
        .unwrap();
    client.acknowledge(request(&u, api::AcknowledgeRequest { context: ctx() })).await.unwrap();
    client
        .request_extension(request(
            &u,
            api::RequestExtensionRequest { context: ctx(), working_days: 3, reason: "需采购灯具".into() },
        ))
        .await
        .unwrap();
    let approved = client
        .decide_extension(request(
            &cc,
            api::DecideExtensionRequest {
                context: ctx(),
                approve: true,
                approved_working_days: 2,
                reason: "同意两天".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.event_type, "extension_approved");
    send(&mut client, case_id, Op::Resolve, None).await.unwrap();
    send(&mut client, case_id, Op::VerifyRework, None).await.unwrap();
    send(&mut client, case_id, Op::Resolve, None).await.unwrap();
    send(&mut client, case_id, Op::VerifyPass, None).await.unwrap();
    send(&mut client, case_id, Op::Unsatisfied, None).await.unwrap();
    send(&mut client, case_id, Op::Reopen, None).await.unwrap();
    send(&mut client, case_id, Op::Resolve, None).await.unwrap();
    let closed = send(&mut client, case_id, Op::VerifyPass, None).await.unwrap();
    assert_eq!(state_of(&closed), State::Closed);

    let history = history(&mut client, case_id).await;
    assert_eq!(
        kinds(&history),
        [
            "filed",
            "registered",
            "dispatched",
            "returned",
            "dispatched",
            "acknowledged",
            "extension_requested",
            "extension_approved",
            "resolved",
            "verification_failed",
            "resolved",
            "verification_passed",
            "feedback_recorded",
            "reopened",
            "resolved",
            "verification_passed"
        ]
    );
    assert!(history.chain_verified, "{}", history.chain_problem);
    let actor = |i: usize| history.events[i].actor.clone().unwrap();
    assert_eq!(
        (actor(0).role.as_str(), actor(1).role.as_str(), actor(3).role.as_str()),
        ("GRID_WORKER", "COMMAND_CENTRE", "HANDLING_UNIT")
    );
    assert_eq!(actor(3).organisation, UNIT);
    assert_eq!(history.events[3].reason, "非本单位职责");
    assert_eq!(history.events[9].reason, "现场仍有问题");
    assert_eq!(history.events[13].reason, "居民不满意");
    let filed_payload = &history.events[0].payload_json;
    // An audit view: the contact masked for every role, not its sealed form.
    assert!(filed_payload.contains("****") && !filed_payload.contains("ciphertext"), "{filed_payload}");

    let view =
        client.get_case(request(&cc, api::GetCaseRequest { case_id: case_id.to_string() })).await.unwrap().into_inner();
    assert_eq!((view.returns, view.reworks, view.reopenings, view.approved_extension_days), (1, 1, 1, 2));
    assert_eq!(view.version, 16);
    assert_eq!(view.unit, "unit.utilities.990101");
}

#[tokio::test]
async fn scenario_b_a_hold_pauses_the_resolve_clock_and_resuming_rearms_it() {
    let nats = NatsServer::start();
    let clock = ManualTimeSource::new("2026-03-02T01:00:00Z".parse().unwrap()); // Monday 09:00 in Beijing
    let intake = TestIntake::spawn_with(TestIntake::config(&nats.url()), Arc::new(clock.clone())).await;
    let mut dispatcher = TestDispatcher::spawn_with(TestDispatcher::config(&nats.url()), Arc::new(clock.clone())).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    let case_id = CaseId::new_v7();
    let report = gridcase_tests::fixtures::filing_at(case_id, "0101", gridcase_process::TimeSource::now(&clock));
    intake_client(intake.endpoint()).await.file_case(as_worker(report)).await.unwrap();
    // The dispatcher registers and dispatches it (route 0101 → urban management).
    let view = wait_for_state(&mut client, case_id, common::CaseState::Dispatched).await;
    let resolve_due = |view: &api::CaseView| {
        view.deadlines.iter().find(|d| d.clock == common::Clock::Resolve as i32).and_then(|d| d.due).map(|t| t.seconds)
    };
    let first_due = resolve_due(&view).unwrap();
    assert_eq!(first_due, "2026-03-09T01:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second(), "5 working days");

    send(&mut client, case_id, Op::Acknowledge, None).await.unwrap();
    clock.set("2026-03-03T01:00:00Z".parse().unwrap());
    send(&mut client, case_id, Op::RequestHold, None).await.unwrap();
    send(&mut client, case_id, Op::ApproveHold, None).await.unwrap();
    let on_hold_until = "2026-03-23T01:00:00Z".parse().unwrap();
    clock.set(on_hold_until); // long past the old deadline, still on hold
    dispatcher.settled_at(on_hold_until, &nats).await; // the watch has looked at that moment
    let history = history(&mut client, case_id).await;
    assert!(!kinds(&history).contains(&"clock_marked"), "no mark while on hold: {:?}", kinds(&history));
    let view = client
        .get_case(request(&centre(), api::GetCaseRequest { case_id: case_id.to_string() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.state, common::CaseState::OnHold as i32);
    assert!(view.deadlines.iter().all(|d| !d.overdue), "no overdue while on hold: {:?}", view.deadlines);

    send(&mut client, case_id, Op::Resume, None).await.unwrap();
    let view = |client: Client| async move {
        let mut client = client;
        client
            .get_case(request(&centre(), api::GetCaseRequest { case_id: case_id.to_string() }))
            .await
            .unwrap()
            .into_inner()
    };
    gridcase_tests::eventually("the resolve deadline to be re-armed", || {
        let client = client.clone();
        async move { resolve_due(&view(client).await) != Some(first_due) }
    })
    .await;
    // 4 working days were left at the hold; resumed Monday 03-23 09:00 → Friday 03-27 09:00.
    assert_eq!(
        resolve_due(&view(client.clone()).await),
        Some("2026-03-27T01:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second())
    );
    dispatcher.stop().await.unwrap();
}

async fn wait_for_state(client: &mut Client, case_id: CaseId, state: common::CaseState) -> api::CaseView {
    let view = |client: Client| async move {
        let mut client = client;
        client
            .get_case(request(&centre(), api::GetCaseRequest { case_id: case_id.to_string() }))
            .await
            .unwrap()
            .into_inner()
    };
    gridcase_tests::eventually(&format!("the case to reach {state:?}"), || {
        let client = client.clone();
        async move { view(client).await.state == state as i32 }
    })
    .await;
    view(client.clone()).await
}

#[tokio::test]
async fn scenario_c_a_duplicate_report_is_voided_with_its_reason() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn_with(TestIntake::config(&nats.url()), Arc::new(SystemTimeSource)).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    let case_id = file_new(&intake).await;
    let voided = client
        .void(request(
            &centre(),
            api::VoidRequest {
                context: lifecycle::context(case_id), reason: "重复上报: 与已立案事件相同".into()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state_of(&voided), State::Voided);
    let history = history(&mut client, case_id).await;
    assert_eq!(kinds(&history), ["filed", "voided"]);
    let voiding = &history.events[1];
    assert_eq!(voiding.reason, "重复上报: 与已立案事件相同");
    let actor = voiding.actor.as_ref().unwrap();
    let who = centre();
    assert_eq!(
        (actor.person.as_str(), actor.role.as_str(), actor.organisation.as_str()),
        (who.subject(), "COMMAND_CENTRE", "cc-990101001"),
        "the actor is the token's subject, role and organisation"
    );
    // Final: nothing more is possible.
    let status = send(&mut client, case_id, Op::Register, None).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn two_operators_sending_the_same_command_id_never_both_succeed() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    let colleague = gridcase_tests::Identity::new("command_centre-02", "command_centre", "cc-990101001", "990101001");
    for round in 0..5 {
        let case_id = reach(&mut client, &intake, State::Registered).await;
        let shared = lifecycle::context(case_id);
        let supervise = |context| api::SuperviseRequest {
            context,
            level: common::Supervision::Normal as i32,
            reason: "督办".into(),
        };
        let (mut a, mut b) = (client.clone(), client.clone());
        let (first, second) = tokio::join!(
            a.supervise(request(&centre(), supervise(shared.clone()))),
            b.supervise(request(&colleague, supervise(shared.clone()))),
        );
        let wins = [&first, &second].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {first:?} / {second:?}");
        let loser = if first.is_ok() { &second } else { &first };
        let status = loser.as_ref().unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "round {round}: {status:?}");
        assert!(status.message().contains("already used by someone else"), "round {round}: {status:?}");
        let history = client
            .get_history(request(&centre(), api::GetHistoryRequest { case_id: case_id.to_string() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(history.events.len(), 3, "filed, registered, supervised once");
    }
}

#[tokio::test]
async fn a_command_id_reused_with_other_content_is_refused_and_only_an_identical_request_is_a_retry() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    let case_id = reach(&mut client, &intake, State::InProgress).await;
    let acting = acting_unit(&mut client, case_id).await.unwrap();
    let context = lifecycle::context(case_id);
    let ask = |days: u32, reason: &str| api::RequestExtensionRequest {
        context: context.clone(),
        working_days: days,
        reason: reason.into(),
    };
    let first = client.request_extension(request(&unit(&acting), ask(2, "等待防水材料"))).await.unwrap().into_inner();
    assert!(!first.replayed);

    // The same id for 3 days, or for 2 days with another reason: refused, naming the rule.
    for other in [ask(3, "等待防水材料"), ask(2, "另一个理由")] {
        let status = client.request_extension(request(&unit(&acting), other)).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        let details = status.get_error_details();
        let violation = &details.precondition_failure().expect("PreconditionFailure detail").violations[0];
        assert_eq!(violation.r#type, "COMMAND_ID_REUSED");
        assert_eq!(violation.subject, format!("case/{case_id}/command/{}", context.as_ref().unwrap().command_id));
        assert!(status.message().contains("different content"), "{status:?}");
    }
    // The identical request is a retry: the first result again.
    let again = client.request_extension(request(&unit(&acting), ask(2, "等待防水材料"))).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!((again.version, again.stream_sequence), (first.version, first.stream_sequence));

    let history = history(&mut client, case_id).await;
    let asked: Vec<_> = history.events.iter().filter(|e| e.r#type == "extension_requested").collect();
    assert_eq!(asked.len(), 1, "one request recorded");
    assert!(asked[0].payload_json.contains("\"working_days\":2"), "{}", asked[0].payload_json);

    // A dispatch retried with the same unit is a retry although the server
    // computes its deadlines anew; with another unit it is not.
    let registered = reach(&mut client, &intake, State::Registered).await;
    let context = lifecycle::context(registered);
    let dispatch = |unit: &str| api::DispatchRequest { context: context.clone(), unit: unit.into() };
    client.dispatch(request(&centre(), dispatch(UNIT))).await.unwrap();
    assert!(client.dispatch(request(&centre(), dispatch(UNIT))).await.unwrap().into_inner().replayed);
    let status = client.dispatch(request(&centre(), dispatch("unit.property.990101001"))).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
}

#[tokio::test]
async fn register_without_a_tier_takes_the_tier_the_policy_gives() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    let mut intake_api = intake_client(intake.endpoint()).await;
    // 0202 (missing manhole cover) is routed as CRITICAL; 0201 (street light) defaults to NORMAL.
    for (category, tier) in [("0202", common::Tier::Critical), ("0201", common::Tier::Normal)] {
        let case_id = CaseId::new_v7();
        intake_api.file_case(as_worker(api_filing(case_id, category))).await.unwrap();
        let registered = client
            .register(request(
                &centre(),
                api::RegisterRequest { context: lifecycle::context(case_id), tier: 0, note: String::new() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state_of(&registered), State::Registered);
        let view = client
            .get_case(request(&centre(), api::GetCaseRequest { case_id: case_id.to_string() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(view.tier, tier as i32, "category {category}");
    }
}

fn api_filing(case_id: CaseId, category: &str) -> gridcase_proto::intake::v1::FileCaseRequest {
    gridcase_proto::intake::v1::FileCaseRequest { category_code: category.into(), ..filing(case_id) }
}

#[tokio::test]
async fn the_same_command_sent_twice_at_once_is_recorded_once_and_the_second_answer_says_replayed() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut client = lifecycle::client(intake.endpoint()).await;
    for round in 0..5 {
        let case_id = reach(&mut client, &intake, State::Registered).await;
        let shared = lifecycle::context(case_id);
        let supervise = || api::SuperviseRequest {
            context: shared.clone(),
            level: common::Supervision::Normal as i32,
            reason: "督办".into(),
        };
        let (mut a, mut b) = (client.clone(), client.clone());
        let (first, second) =
            tokio::join!(a.supervise(request(&centre(), supervise())), b.supervise(request(&centre(), supervise())));
        let (first, second) = (first.unwrap().into_inner(), second.unwrap().into_inner());
        assert_eq!(
            [first.replayed, second.replayed].iter().filter(|r| !**r).count(),
            1,
            "round {round}: exactly one answer is the recording, the other a replay: {first:?} / {second:?}"
        );
        assert_eq!((first.version, first.stream_sequence), (second.version, second.stream_sequence));
        assert_eq!(kinds(&history(&mut client, case_id).await), ["filed", "registered", "supervised"]);
    }
}
