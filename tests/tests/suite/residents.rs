//! A resident's request end to end (12345-style): filed by a partner system
//! with its API key, answered (答复) on the reply clock of its kind, closed,
//! called back (回访) on the callback clock; each clock's deadline on the
//! official calendar, each overdue on the overdue report, the partner's
//! answer in its Open311 updates. Real NATS, PostgreSQL and services; a
//! clock the test moves by hand.

use std::sync::Arc;

use gridcase_domain::CaseId;
use gridcase_process::ManualTimeSource;
use gridcase_proto::cases::v1 as cases;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as intake_api;
use gridcase_proto::query::v1 as query_api;
use gridcase_tests::fixtures::{filing_at, intake_client};
use gridcase_tests::identity::{Bearer, fixmystreet};
use gridcase_tests::lifecycle::{self, context};
use gridcase_tests::{Backends, Identity, TestDispatcher, TestIntake, TestProjection, query_client, stream_end};
use jiff::Timestamp;

fn bj(text: &str) -> Timestamp {
    format!("{}:00+08:00[Asia/Shanghai]", text.replace(' ', "T")).parse::<jiff::Zoned>().unwrap().timestamp()
}

fn centre() -> Identity {
    Identity::new("cc-op-1", "command_centre", "cc-990101001", "990101001")
}

fn due_of(case: &cases::CaseView, clock: common::Clock) -> Option<Timestamp> {
    case.deadlines
        .iter()
        .find(|d| d.clock == clock as i32)
        .and_then(|d| d.due.as_ref())
        .and_then(gridcase_proto::convert::timestamp_from_proto)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_s_request_is_answered_and_called_back_on_its_clocks_and_late_ones_are_reported() {
    let Backends { nats, db, .. } = Backends::start().await;
    // Wednesday 09-30 10:00, the eve of National Day.
    let clock = ManualTimeSource::new(bj("2026-09-30 10:00"));
    let intake = TestIntake::spawn_with(TestIntake::config(&nats.url()), Arc::new(clock.clone())).await;
    let mut dispatcher = TestDispatcher::spawn_with(TestDispatcher::config(&nats.url()), Arc::new(clock.clone())).await;
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(clock.clone())).await;

    // The partner files a complaint with its key.
    let case_id = CaseId::new_v7();
    let mut request = filing_at(case_id, "0101", gridcase_process::TimeSource::now(&clock));
    request.request_kind = common::RequestKind::Complaint as i32;
    request.resident_contact =
        Some(intake_api::ResidentContact {
            name: "王秀英".into(), phone: "13812345678".into(), ..Default::default()
        });
    let partner = Bearer::new(&fixmystreet().key);
    let mut filing = tonic::Request::new(request);
    partner.attach(&mut filing);
    intake_client(intake.endpoint()).await.file_case(filing).await.unwrap();
    dispatcher.settled_at(gridcase_process::TimeSource::now(&clock), &nats).await;

    // The reply clock of a complaint: 13 working days on the 2026 calendar,
    // worked out by hand (6 h on 09-30; National Day off 10-01..10-07; 10-08,
    // 10-09 and Saturday 10-10 worked; ... 102 h by the end of 10-22): 10:00 on 10-23.
    let mut cases = lifecycle::client(intake.endpoint()).await;
    let get = || centre().request(cases::GetCaseRequest { case_id: case_id.to_string() });
    let view = cases.get_case(get()).await.unwrap().into_inner();
    assert_eq!(view.state, common::CaseState::Dispatched as i32);
    assert_eq!(due_of(&view, common::Clock::Reply), Some(bj("2026-10-23 10:00")));

    // Not answered in time: overdue on the reply clock, on the overdue report.
    clock.set(bj("2026-10-23 10:01"));
    dispatcher.settled_at(gridcase_process::TimeSource::now(&clock), &nats).await;
    projection.caught_up_to(stream_end(&nats).await).await;
    let mut query = query_client(projection.endpoint(), &centre()).await;
    let overdue = |query: &mut gridcase_tests::QueryClient| {
        let mut query = query.clone();
        async move {
            let report = query.overdue_report(query_api::OverdueReportRequest::default()).await.unwrap().into_inner();
            report
                .groups
                .iter()
                .flat_map(|g| g.items.iter())
                .filter(|item| item.case_id == case_id.to_string())
                .map(|item| item.clock)
                .collect::<Vec<i32>>()
        }
    };
    assert!(overdue(&mut query).await.contains(&(common::Clock::Reply as i32)), "the late reply is reported");

    // Answered through the partner system: the clock stops, the answer is
    // in the partner's updates (a phone reply would not be).
    let reply = |method: common::ReplyMethod, text: &str| cases::ReplyRequest {
        context: context(case_id),
        method: method as i32,
        text: text.into(),
    };
    cases.reply(centre().request(reply(common::ReplyMethod::Phone, "已电话告知居民处理进度"))).await.unwrap();
    cases.reply(centre().request(reply(common::ReplyMethod::Partner, "您反映的垃圾已清运"))).await.unwrap();
    let view = cases.get_case(get()).await.unwrap().into_inner();
    assert_eq!(due_of(&view, common::Clock::Reply), None, "answered: the reply clock stops");
    projection.caught_up_to(stream_end(&nats).await).await;
    assert!(!overdue(&mut query).await.contains(&(common::Clock::Reply as i32)));
    let mut partner_query = query_client(projection.endpoint(), &centre()).await;
    let mut updates = tonic::Request::new(query_api::ListCaseUpdatesRequest {
        from: Some(gridcase_proto::convert::timestamp_to_proto(bj("2026-09-30 00:00"))),
        to: Some(gridcase_proto::convert::timestamp_to_proto(bj("2026-10-24 00:00"))),
        ..Default::default()
    });
    partner.attach(&mut updates);
    let updates = partner_query.list_case_updates(updates).await.unwrap().into_inner().updates;
    let replies: Vec<&query_api::CaseUpdate> = updates.iter().filter(|u| u.event_type == "replied").collect();
    assert_eq!(replies.len(), 1, "only the answer through the partner system: {updates:?}");
    assert_eq!(replies[0].reason, "您反映的垃圾已清运");
    assert_eq!(replies[0].state_event, "dispatched", "the change before the answer");

    // Worked and closed on Friday 10-23 16:00: a callback within 5 working
    // days (2 h that day, 10-26..10-29 32 h, 6 h on 10-30): 10-30 16:00.
    let unit = Identity::new("staff-urban", "handling_unit", "unit.urban.990101", "unit.urban.990101");
    cases.acknowledge(unit.request(cases::AcknowledgeRequest { context: context(case_id) })).await.unwrap();
    let resolve = cases::ResolveRequest { context: context(case_id), summary: "已清运".into(), evidence: vec![] };
    cases.resolve(unit.request(resolve)).await.unwrap();
    clock.set(bj("2026-10-23 16:00"));
    let verify = cases::VerifyRequest { context: context(case_id), passed: true, reason: String::new() };
    cases.verify(centre().request(verify)).await.unwrap();
    dispatcher.settled_at(gridcase_process::TimeSource::now(&clock), &nats).await;
    let view = cases.get_case(get()).await.unwrap().into_inner();
    assert_eq!(view.state, common::CaseState::Closed as i32);
    assert_eq!(due_of(&view, common::Clock::Callback), Some(bj("2026-10-30 16:00")));

    // Not called back in time: on the overdue report, a closed case.
    clock.set(bj("2026-10-31 09:00"));
    dispatcher.settled_at(gridcase_process::TimeSource::now(&clock), &nats).await;
    projection.caught_up_to(stream_end(&nats).await).await;
    assert!(overdue(&mut query).await.contains(&(common::Clock::Callback as i32)), "the late callback is reported");

    // Not reached, then reached and unsatisfied: the clock stops, and the
    // existing rule lets the centre reopen it (问题不解决绝不消号).
    let callback =
        |reached: bool, attempts: u32, satisfaction: common::Feedback, reason: &str| cases::RecordCallbackRequest {
            context: context(case_id),
            reached,
            attempts,
            satisfaction: satisfaction as i32,
            reason: reason.into(),
        };
    let refused = cases.record_callback(centre().request(callback(true, 1, common::Feedback::Unspecified, ""))).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);
    cases.record_callback(centre().request(callback(false, 1, common::Feedback::Unspecified, ""))).await.unwrap();
    cases
        .record_callback(centre().request(callback(true, 2, common::Feedback::Unsatisfied, "垃圾又堆起来了")))
        .await
        .unwrap();
    let view = cases.get_case(get()).await.unwrap().into_inner();
    assert_eq!(due_of(&view, common::Clock::Callback), None);
    assert_eq!(view.feedback, common::Feedback::Unsatisfied as i32);
    let reopen = cases::ReopenRequest { context: context(case_id), reason: "回访不满意，重新办理".into() };
    cases.reopen(centre().request(reopen)).await.unwrap();
    projection.caught_up_to(stream_end(&nats).await).await;
    assert!(!overdue(&mut query).await.contains(&(common::Clock::Callback as i32)));

    // The ledgers count it per kind of request and per channel: one answer
    // due and given late (0 % on time), one callback due and done (100 %),
    // one evaluation, unsatisfied (0 % satisfied).
    for (kind, org) in [("kind", "COMPLAINT"), ("channel", "PARTNER"), ("township", "990101001")] {
        let ledger = query
            .ledger(query_api::LedgerRequest {
                org_kind: kind.into(),
                org: org.into(),
                from_day: "2026-09-01".into(),
                to_day: "2026-11-30".into(),
                period: query_api::Period::Total as i32,
            })
            .await
            .unwrap()
            .into_inner();
        let row = ledger.rows.iter().find(|r| r.org == org).unwrap_or_else(|| panic!("{kind} {org}: {ledger:?}"));
        let figures = (row.filed, row.reply_due, row.replied, row.replied_on_time, row.callback_due, row.called_back);
        assert_eq!(figures, (1, 1, 1, 0, 1, 1), "{kind} {org}: {row:?}");
        assert_eq!((row.reply_on_time_rate, row.callback_rate, row.satisfaction_rate), (0.0, 1.0, 0.0), "{kind} {org}");
        assert_eq!(row.unsatisfied, 1);
    }
}
