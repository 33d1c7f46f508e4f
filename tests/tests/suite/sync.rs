//! `SyncCases`: a day's offline work in one call, against a real
//! nats-server, intake, projection and PostgreSQL. Every item stored once,
//! each case's items in order, the same call again stores nothing, bad
//! items refused one by one; both times of a filing kept, shown, exported.

use std::sync::Arc;

use gridcase_domain::{CaseId, Event};
use gridcase_process::SystemTimeSource;
use gridcase_proto::cases::v1 as cases;
use gridcase_proto::intake::v1 as api;
use gridcase_proto::query::v1 as query;
use gridcase_tests::fixtures::{as_worker, filing, intake_client, worker};
use gridcase_tests::{Backends, TestIntake, TestProjection, query_client, stream_end};
use tonic::Code;

fn at(timestamp: jiff::Timestamp) -> prost_types::Timestamp {
    gridcase_proto::convert::timestamp_to_proto(timestamp)
}

fn filing_item(case_id: CaseId, reported_at: jiff::Timestamp) -> api::SyncItem {
    api::SyncItem {
        item: Some(api::sync_item::Item::File(api::FileCaseRequest {
            description: format!("离线上报 {case_id}"),
            reported_at: Some(at(reported_at)),
            ..filing(case_id)
        })),
    }
}

fn note_item(case_id: CaseId, command_id: &str, note: &str) -> api::SyncItem {
    api::SyncItem {
        item: Some(api::sync_item::Item::Note(cases::AddProgressRequest {
            context: Some(cases::CommandContext {
                case_id: case_id.to_string(),
                command_id: command_id.into(),
                expected_version: None,
            }),
            note: note.into(),
            attachments: vec![],
        })),
    }
}

fn outcomes(response: &api::SyncCasesResponse) -> Vec<api::SyncOutcome> {
    response.results.iter().map(|r| api::SyncOutcome::try_from(r.outcome).unwrap()).collect()
}

#[tokio::test]
async fn a_days_offline_work_syncs_in_one_call_once_and_in_order_and_bad_items_refuse_only_themselves() {
    let Backends { nats, db, log } = Backends::start().await;
    let intake = TestIntake::spawn(&nats.url()).await;
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(SystemTimeSource)).await;
    let mut client = intake_client(intake.endpoint()).await;

    // 40 cases seen over the morning, each with 4 notes: 200 items, the
    // notes of different cases interleaved as the worker made them.
    // Whole seconds: the read models keep microseconds.
    let morning = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 5 * 3600).unwrap();
    let ids: Vec<CaseId> = (0..40).map(|_| CaseId::new_v7()).collect();
    let mut items = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        items.push(filing_item(*id, morning + jiff::SignedDuration::from_mins(i as i64 * 3)));
    }
    for round in 0..4 {
        for (i, id) in ids.iter().enumerate().rev() {
            items.push(note_item(*id, &format!("note-{i}-{round}"), &format!("第{round}次跟进")));
        }
    }
    assert_eq!(items.len(), 200);
    let before = stream_end(&nats).await;
    let first =
        client.sync_cases(as_worker(api::SyncCasesRequest { items: items.clone() })).await.unwrap().into_inner();
    assert_eq!(first.results.len(), 200);
    assert!(first.results.iter().enumerate().all(|(i, r)| r.index as usize == i), "answers in the request's order");
    assert!(outcomes(&first).iter().all(|o| *o == api::SyncOutcome::Stored), "{:?}", first.results);
    let after_first = stream_end(&nats).await;
    assert_eq!(after_first - before, 200, "each item stored once (and the dispatcher is not running)");

    for (i, id) in ids.iter().enumerate() {
        let events = gridcase_tests::act::events(&log, &gridcase_tests::act::subject("990101001001001", *id)).await;
        assert_eq!(events.len(), 5, "case {i}");
        let Event::Filed(filed) = &events[0].1 else { panic!("case {i} does not start with its filing") };
        assert_eq!(filed.reported_at, morning + jiff::SignedDuration::from_mins(i as i64 * 3));
        assert!(events[0].0.occurred_at > filed.reported_at, "received later than seen");
        let notes: Vec<String> = events[1..]
            .iter()
            .map(|(_, event)| match event {
                Event::ProgressAdded { note, .. } => note.to_string(),
                other => panic!("case {i}: {other:?}"),
            })
            .collect();
        assert_eq!(notes, ["第0次跟进", "第1次跟进", "第2次跟进", "第3次跟进"], "case {i}: in the order made");
        let commands: Vec<_> = events[1..].iter().map(|(stored, _)| stored.command_id.clone().unwrap()).collect();
        assert_eq!(commands, (0..4).map(|r| format!("note-{i}-{r}")).collect::<Vec<_>>());
    }

    // The same call again (the app never heard the answer): nothing new.
    let again = client.sync_cases(as_worker(api::SyncCasesRequest { items })).await.unwrap().into_inner();
    assert!(outcomes(&again).iter().all(|o| *o == api::SyncOutcome::Replayed), "{:?}", again.results);
    assert_eq!(
        again.results.iter().map(|r| r.stream_sequence).collect::<Vec<_>>(),
        first.results.iter().map(|r| r.stream_sequence).collect::<Vec<_>>(),
        "replays name the original events"
    );
    assert_eq!(stream_end(&nats).await, after_first, "the repeated call stored nothing");

    // Bad items among good ones: each refused alone, with the single call's details.
    let good = CaseId::new_v7();
    let bad_fields = CaseId::new_v7();
    let future = CaseId::new_v7();
    let mut wrong = filing_item(bad_fields, morning);
    if let Some(api::sync_item::Item::File(file)) = &mut wrong.item {
        file.grid_code = "12".into();
        file.category_code = "x".into();
    }
    let mixed = vec![
        filing_item(good, morning),
        wrong,
        filing_item(future, jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2)),
        note_item(CaseId::new_v7(), "n-1", "没有这个案件"),
        note_item(good, "n-2", ""),
        note_item(good, "n-3", "到场查看"),
        api::SyncItem { item: None },
    ];
    let answer = client.sync_cases(as_worker(api::SyncCasesRequest { items: mixed })).await.unwrap().into_inner();
    use api::SyncOutcome::{Refused, Stored};
    assert_eq!(
        outcomes(&answer),
        [Stored, Refused, Refused, Refused, Refused, Stored, Refused],
        "{:?}",
        answer.results
    );
    let refusal = |i: usize| answer.results[i].refusal.clone().expect("a refusal");
    let fields = |i: usize| refusal(i).field_violations.into_iter().map(|v| (v.field, v.reason)).collect::<Vec<_>>();
    assert_eq!(refusal(1).code, Code::InvalidArgument as i32);
    assert_eq!(fields(1).iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), ["grid_code", "category_code"]);
    assert_eq!(fields(2), [("reported_at".to_owned(), "IN_THE_FUTURE".to_owned())]);
    assert_eq!(refusal(3).code, Code::NotFound as i32, "a note on a case that does not exist");
    assert_eq!(refusal(4).code, Code::InvalidArgument as i32);
    assert_eq!(fields(4)[0].0, "note");
    assert_eq!(fields(6)[0].0, "items[6]");
    assert_eq!(answer.results[5].case_id, good.to_string());

    // Too many items, or none: the call itself is refused.
    let none = client.sync_cases(as_worker(api::SyncCasesRequest { items: vec![] })).await.unwrap_err();
    assert_eq!(none.code(), Code::InvalidArgument);
    let many: Vec<_> = (0..501).map(|_| filing_item(CaseId::new_v7(), morning)).collect();
    let too_many = client.sync_cases(as_worker(api::SyncCasesRequest { items: many })).await.unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument, "{too_many:?}");

    // Both times kept, shown and exported.
    projection.caught_up_to(stream_end(&nats).await).await;
    let mut reader = query_client(projection.endpoint(), &worker()).await;
    let view = reader.get_case(query::GetCaseRequest { case_id: ids[0].to_string() }).await.unwrap().into_inner();
    assert_eq!(view.reported_at, Some(at(morning)));
    assert!(view.filed_at.unwrap().seconds > morning.as_second() + 4 * 3600, "filed_at is the receipt");
    let listed = reader
        .list_cases(query::ListCasesRequest { page_size: 1000, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let summary = listed.cases.iter().find(|c| c.case_id == ids[0].to_string()).expect("listed");
    assert_eq!(summary.reported_at, Some(at(morning)));
    let centre = gridcase_tests::lifecycle::centre();
    let mut export = query_client(projection.endpoint(), &centre).await;
    let mut chunks = export
        .export_cases(query::ExportCasesRequest {
            filter: Some(query::ListCasesRequest { region_prefix: "990101001".into(), ..Default::default() }),
            format: query::ExportFormat::Csv as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        bytes.extend(chunk.data);
    }
    let mut csv = csv::Reader::from_reader(bytes.as_slice());
    let headers = csv.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let (id_column, seen_column, filed_column) = (column("case_id"), column("reported_at"), column("filed_at"));
    let row =
        csv.records().map(Result::unwrap).find(|r| r.get(id_column) == Some(&ids[0].to_string())).expect("exported");
    assert_eq!(row.get(seen_column), Some(morning.to_string().as_str()));
    assert_ne!(row.get(filed_column), row.get(seen_column));
    drop(log);
}
