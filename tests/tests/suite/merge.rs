//! 并案 against real nats-server, intake, dispatcher, projection and
//! PostgreSQL: duplicates merged into a main case (one already dispatched,
//! one with a report of its own), both histories linked, no further step
//! by the dispatcher on a duplicate, and every ledger figure equal to a
//! count made here, independently, from the raw events of the stream.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gridcase_domain::{CaseId, Event};
use gridcase_process::{ManualTimeSource, TimeSource as _};
use gridcase_proto::cases::v1 as cases;
use gridcase_proto::intake::v1 as api;
use gridcase_proto::query::v1 as query;
use gridcase_tests::fixtures::{filing, intake_client, worker};
use gridcase_tests::lifecycle::{centre, client as cases_client};
use gridcase_tests::{Backends, Identity, TestDispatcher, TestIntake, TestProjection, query_client, stream_end};
use tonic::Code;

fn context(id: CaseId, command: &str) -> Option<cases::CommandContext> {
    Some(cases::CommandContext { case_id: id.to_string(), command_id: command.into(), expected_version: None })
}

fn merge(duplicate: CaseId, into: CaseId, command: &str) -> cases::MergeRequest {
    cases::MergeRequest {
        context: context(duplicate, command),
        into_case_id: into.to_string(),
        reason: "同一路灯".into(),
    }
}

/// Per measure, what the raw events say a township's ledger must hold
/// over all days: counted here from the events alone, by the rules the
/// README states (a merged duplicate's filing is not counted; a case is
/// due once if it got a resolve deadline and was neither voided, merged
/// nor cancelled).
fn independent_count(events: &[(CaseId, String, Event)], township: &str) -> BTreeMap<&'static str, u64> {
    let mine: Vec<&(CaseId, String, Event)> = events.iter().filter(|(_, t, _)| t == township).collect();
    let kind = |name: &str| mine.iter().filter(|(_, _, e)| e.kind() == name).count() as u64;
    let mut ended = BTreeSet::new();
    let mut with_deadline = BTreeSet::new();
    for (id, _, event) in &mine {
        match event {
            Event::Voided { .. } | Event::Cancelled { .. } | Event::MergedInto { .. } => {
                ended.insert(*id);
            }
            Event::Dispatched { .. } | Event::Reassigned { .. } => {
                with_deadline.insert(*id);
            }
            _ => {}
        }
    }
    BTreeMap::from([
        ("filed", kind("filed") - kind("merged_into")),
        ("merged", kind("merged_into")),
        ("registered", kind("registered")),
        ("dispatched", kind("dispatched") + kind("reassigned")),
        ("due", with_deadline.difference(&ended).count() as u64),
        ("closed", kind("verification_passed")),
    ])
}

fn figures(row: &query::LedgerRow) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("filed", row.filed),
        ("merged", row.merged),
        ("registered", row.registered),
        ("dispatched", row.dispatched),
        ("due", row.due),
        ("closed", row.closed),
    ])
}

#[tokio::test]
async fn duplicates_merged_leave_one_case_going_on_and_ledgers_that_an_independent_count_confirms() {
    let Backends { nats, db, log } = Backends::start().await;
    let start = jiff::Timestamp::now();
    let clock = ManualTimeSource::new(start);
    let intake = TestIntake::spawn_with(TestIntake::config(&nats.url()), Arc::new(clock.clone())).await;
    let mut dispatcher = TestDispatcher::spawn_with(TestDispatcher::config(&nats.url()), Arc::new(clock.clone())).await;
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(clock.clone())).await;
    let mut filer = intake_client(intake.endpoint()).await;
    let mut lifecycle = cases_client(intake.endpoint()).await;

    // Five reports of one lamp by two workers, and a leaking roof.
    let other = Identity::new("gw-0043", "grid_worker", "cc-990101001", "990101001001001");
    let mut file = async |who: &Identity, category: &str| {
        let id = CaseId::new_v7();
        filer
            .file_case(who.request(api::FileCaseRequest { category_code: category.into(), ..filing(id) }))
            .await
            .unwrap();
        id
    };
    let main = file(&worker(), "0201").await;
    let duplicates = [file(&other, "0201").await, file(&worker(), "0201").await, file(&other, "0201").await];
    let roof = file(&worker(), "0204").await;
    // The dispatcher registers and dispatches them all.
    dispatcher.settled_at(start, &nats).await;
    // One duplicate has a report of its own.
    lifecycle
        .add_report(worker().request(cases::AddReportRequest {
            context: context(duplicates[0], "report-1"),
            reported_at: Some(gridcase_proto::convert::timestamp_to_proto(start)),
            note: "灯杆也歪了".into(),
            ..Default::default()
        }))
        .await
        .unwrap();

    // The command centre merges the three into the main case.
    let merged = lifecycle.merge(centre().request(merge(duplicates[0], main, "merge-1"))).await.unwrap().into_inner();
    assert_eq!(
        (merged.event_type.as_str(), merged.case_id.as_str()),
        ("merged_into", duplicates[0].to_string().as_str())
    );
    let again = lifecycle.merge(centre().request(merge(duplicates[0], main, "merge-1"))).await.unwrap().into_inner();
    assert!(again.replayed, "a retried merge is the same merge");
    for (n, duplicate) in duplicates[1..].iter().enumerate() {
        lifecycle.merge(centre().request(merge(*duplicate, main, &format!("merge-{}", n + 2)))).await.unwrap();
    }
    // What is refused: a merged duplicate again (into another case), a
    // case into itself, a worker's merge, a main case out of sight.
    let twice = lifecycle.merge(centre().request(merge(duplicates[1], roof, "merge-9"))).await.unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition, "{twice:?}");
    let itself = lifecycle.merge(centre().request(merge(roof, roof, "merge-10"))).await.unwrap_err();
    assert_eq!(itself.code(), Code::FailedPrecondition, "{itself:?}");
    assert!(itself.message().contains("MERGE_INTO_ITSELF"), "{itself:?}");
    let by_worker = lifecycle.merge(worker().request(merge(roof, main, "merge-11"))).await.unwrap_err();
    assert_eq!(by_worker.code(), Code::PermissionDenied);
    let elsewhere = Identity::new("command_centre-02", "command_centre", "cc-990101002", "990101002");
    let hidden = lifecycle.merge(elsewhere.request(merge(roof, main, "merge-12"))).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);

    // Both histories show the link.
    let history = async |id: CaseId| {
        gridcase_tests::act::events(&log, &gridcase_tests::act::subject("990101001001001", id)).await
    };
    let main_events = history(main).await;
    let absorbed: Vec<(CaseId, u32, Vec<String>)> = main_events
        .iter()
        .filter_map(|(_, event)| match event {
            Event::DuplicateMerged { duplicate, reports, reporters, .. } => {
                Some((*duplicate, *reports, reporters.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(absorbed.iter().map(|(d, _, _)| *d).collect::<Vec<_>>(), duplicates);
    assert_eq!(absorbed[0].1, 2, "the first duplicate brought its filing and its added report");
    assert_eq!(absorbed[0].2, ["gw-0043", "gw-0042"], "its reporters, each once");
    for duplicate in duplicates {
        let events = history(duplicate).await;
        let (stored, last) = events.last().unwrap();
        assert!(matches!(last, Event::MergedInto { main: m, .. } if *m == main), "{duplicate}: {last:?}");
        assert_eq!(stored.actor.person, "command_centre-01");
    }

    // A month on: the main case and the roof go overdue; the duplicates
    // take no further step.
    clock.advance(jiff::SignedDuration::from_hours(24 * 30));
    dispatcher.settled_at(clock.now(), &nats).await;
    let main_events = history(main).await;
    assert!(main_events.iter().any(|(_, e)| matches!(e, Event::ClockMarked { .. })), "the main case is watched on");
    for duplicate in duplicates {
        let events = history(duplicate).await;
        assert!(
            matches!(events.last().unwrap().1, Event::MergedInto { .. }),
            "a step on a merged duplicate: {events:?}"
        );
    }

    // The read models: the main case counts every report; the ledgers
    // equal an independent count from the raw events.
    projection.caught_up_to(stream_end(&nats).await).await;
    let mut reader = query_client(projection.endpoint(), &centre()).await;
    let main_record = reader.get_case(query::GetCaseRequest { case_id: main.to_string() }).await.unwrap().into_inner();
    assert_eq!(main_record.reports, 5, "its filing, three duplicates, and the report added to one of them");
    let duplicate_record =
        reader.get_case(query::GetCaseRequest { case_id: duplicates[0].to_string() }).await.unwrap().into_inner();
    assert_eq!(duplicate_record.merged_into, main.to_string());

    // Every event of the township's five cases, straight from the stream.
    let mut raw = Vec::new();
    for id in [main, roof].into_iter().chain(duplicates) {
        for (stored, event) in history(id).await {
            raw.push((stored.case_id, "990101001".to_owned(), event));
        }
    }
    let expected = independent_count(&raw, "990101001");
    assert_eq!(expected["merged"], 3);
    assert_eq!(expected["filed"], 2, "five filings, three merged: two cases");
    let day = |t: jiff::Timestamp| t.to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()).date().to_string();
    let ledger = reader
        .ledger(query::LedgerRequest {
            org_kind: "township".into(),
            org: "990101001".into(),
            from_day: day(start - jiff::SignedDuration::from_hours(24)),
            to_day: day(clock.now() + jiff::SignedDuration::from_hours(24 * 90)),
            period: query::Period::Total as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ledger.rows.len(), 1, "{ledger:?}");
    assert_eq!(figures(&ledger.rows[0]), expected, "the ledger against the raw events");
}
