//! The projection and query service on real NATS and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use gridcase_domain::{ActorRole, CaseId, Command, Deadlines, Event, Feedback, OrgCode, Supervision, Text, Tier};
use gridcase_envelope::CaseSubject;
use gridcase_eventlog::{EventLog, StreamSettings};
use gridcase_process::ManualTimeSource;
use gridcase_projection::{rebuild, store};
use gridcase_proto::query::v1 as api;
use gridcase_tests::scenario::filing;
use gridcase_tests::{
    Backends, Identity, NatsServer, OwnPostgres, QueryClient, TestDatabase, TestProjection, act, append_foreign, given,
    query_client, stream_end,
};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use sqlx::Row;

const GRIDS: [&str; 4] = ["990101001001001", "990101001002001", "990101101001001", "990101201001002"];
const UNITS: [&str; 2] = ["unit.urban.990101", "unit.property.990101001"];

fn bj(text: &str) -> Timestamp {
    format!("{}:00+08:00[Asia/Shanghai]", text.replace(' ', "T")).parse::<jiff::Zoned>().unwrap().timestamp()
}

fn text(s: &str) -> Text {
    Text::reason(s).unwrap()
}

/// The commands a random walk picks from, given the moment.
fn candidates(at: Timestamp, pick: u8) -> Vec<(Command, ActorRole, &'static str)> {
    let unit = UNITS[pick as usize % 2];
    let deadlines = Deadlines {
        acknowledge_due: at + SignedDuration::from_hours(8),
        resolve_due: at + SignedDuration::from_hours(40 + (pick % 5) as i64 * 24),
        basis: None,
    };
    vec![
        (Command::Register { tier: Tier::Normal, note: None, policy: None }, ActorRole::CommandCentre, "cc-990101001"),
        (Command::Void { reason: text("重复") }, ActorRole::CommandCentre, "cc-990101001"),
        (
            Command::Dispatch { unit: OrgCode::parse(unit).unwrap(), deadlines },
            ActorRole::CommandCentre,
            "cc-990101001",
        ),
        (Command::Acknowledge, ActorRole::HandlingUnit, unit),
        (Command::Return { reason: text("派错") }, ActorRole::HandlingUnit, unit),
        (Command::RequestExtension { working_days: 2, reason: text("材料") }, ActorRole::HandlingUnit, unit),
        (
            Command::DecideExtension { approved_working_days: Some(1), reason: None },
            ActorRole::CommandCentre,
            "cc-990101001",
        ),
        (Command::Resolve { summary: text("已处理"), evidence: vec![] }, ActorRole::HandlingUnit, unit),
        (
            Command::Verify { passed: !pick.is_multiple_of(3), reason: Some(text("核查")) },
            ActorRole::CommandCentre,
            "cc-990101001",
        ),
        (
            Command::RecordFeedback {
                feedback: [Feedback::Satisfied, Feedback::BasicallySatisfied, Feedback::Unsatisfied][pick as usize % 3],
                comment: None,
            },
            ActorRole::CommandCentre,
            "cc-990101001",
        ),
        (Command::Reopen { reason: text("不满意") }, ActorRole::CommandCentre, "cc-990101001"),
        (
            Command::Supervise { level: Supervision::Normal, reason: text("督办"), escalated_to: None },
            ActorRole::CommandCentre,
            "cc-990101001",
        ),
        (Command::Cancel { reason: text("撤销") }, ActorRole::CommandCentre, "cc-990101001"),
    ]
}

/// File cases and walk each through random legal steps; returns their subjects.
async fn random_histories(log: &EventLog, walks: &[Vec<u8>], start: Timestamp) -> Vec<CaseSubject> {
    let mut subjects = Vec::new();
    for (index, walk) in walks.iter().enumerate() {
        let case_id = CaseId::new_v7();
        let grid = GRIDS[index % GRIDS.len()];
        let subject = act::subject(grid, case_id);
        let mut at = start + SignedDuration::from_hours(index as i64 * 7);
        let category = ["0101", "0204", "0301"][index % 3];
        act::command(log, &subject, filing(case_id, grid, category, at), ActorRole::GridWorker, "cc-990101001", at)
            .await
            .unwrap();
        for pick in walk {
            at += SignedDuration::from_mins(30 + *pick as i64 * 7);
            let options = candidates(at, *pick);
            // Try the picked command first, then the others: take the first the rules allow.
            for offset in 0..options.len() {
                let (command, role, org) = options[(*pick as usize + offset) % options.len()].clone();
                if act::command(log, &subject, command, role, org, at).await.is_ok() {
                    break;
                }
            }
        }
        subjects.push(subject);
    }
    subjects
}

async fn projected(nats: &NatsServer, db: &TestDatabase, now: Timestamp) -> TestProjection {
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(ManualTimeSource::new(now)))
            .await;
    projection.caught_up_to(stream_end(nats).await).await;
    projection
}

fn walks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 3..22), 12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn projected_state_equals_the_domain_fold_and_ledgers_equal_a_count_of_the_raw_events(walks in walks()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let nats = NatsServer::start();
            let db = TestDatabase::create().await;
            let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();
            let subjects = random_histories(&log, &walks, bj("2026-03-02 09:00")).await;
            let projection = projected(&nats, &db, bj("2026-04-30 09:00")).await;

            let mut raw: BTreeMap<&str, i64> = BTreeMap::new();
            for subject in &subjects {
                let history = act::events(&log, subject).await;
                let events: Vec<Event> = history.iter().map(|(_, e)| e.clone()).collect();
                let folded = gridcase_domain::replay(&events).unwrap();
                let rows = store::load_cases(&projection.pool, &[*folded.id.as_uuid()]).await.unwrap();
                assert_eq!(rows[&folded.id].case, folded, "projected row of {}", folded.id);
                for (_, event) in &history {
                    *raw.entry(event.kind()).or_default() += 1;
                }
            }
            // Every township's counters summed equal the raw events of each kind.
            let totals = sqlx::query(
                "SELECT SUM(filed)::bigint, SUM(registered)::bigint, SUM(closed)::bigint, SUM(returned)::bigint, \
                 SUM(reworked)::bigint, SUM(extended)::bigint, SUM(resolved)::bigint, SUM(dispatched)::bigint, \
                 SUM(satisfied + basically_satisfied + unsatisfied)::bigint FROM ledger_daily WHERE org_kind = 'township'",
            )
            .fetch_one(&projection.pool)
            .await
            .unwrap();
            let count = |k: &str| *raw.get(k).unwrap_or(&0);
            let got: Vec<i64> = (0..9).map(|i| totals.get::<Option<i64>, _>(i).unwrap_or(0)).collect();
            let expected = vec![
                count("filed"), count("registered"), count("verification_passed"), count("returned"),
                count("verification_failed"), count("extension_approved"), count("resolved"),
                count("dispatched") + count("reassigned"), count("feedback_recorded"),
            ];
            assert_eq!(got, expected, "filed, registered, closed, returned, reworked, extended, resolved, dispatched, feedback");
            let audit: i64 = sqlx::query("SELECT COUNT(*) FROM case_events").fetch_one(&projection.pool).await.unwrap().get(0);
            assert_eq!(audit, raw.values().sum::<i64>());
            projection.stop().await.unwrap();
        });
    }
}

/// Every row of every read-model table, in a canonical order, as text.
async fn dump(pool: &sqlx::PgPool) -> Vec<String> {
    let mut all = Vec::new();
    for (table, order) in [
        ("cases", "case_id"),
        ("case_events", "stream_sequence"),
        ("ledger_daily", "org_kind, org, township, day"),
        ("projection_position", "projection"),
    ] {
        let sql = format!("SELECT to_jsonb(t) - 'updated_at' AS row FROM {table} t ORDER BY {order}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.unwrap();
        all.extend(rows.iter().map(|r| format!("{table}: {}", r.get::<serde_json::Value, _>(0))));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_at_random_points_ends_equal_to_a_rebuild_and_redelivery_counts_nothing_twice() {
    let Backends { nats, db, log } = Backends::start().await;
    let now = bj("2026-04-30 09:00");
    let walks: Vec<Vec<u8>> =
        (0..16u8).map(|i| (0..14u8).map(|j| i.wrapping_mul(31).wrapping_add(j.wrapping_mul(17))).collect()).collect();
    let writer = {
        let log = log.clone();
        tokio::spawn(async move { random_histories(&log, &walks, bj("2026-03-02 09:00")).await })
    };
    // Kill the projector several times while events are being written.
    let mut config = TestProjection::config(&nats.url(), &db.url);
    config.batch_size = 7;
    for _ in 0..5 {
        let projection = TestProjection::spawn_with(config.clone(), Arc::new(ManualTimeSource::new(now))).await;
        // Killed once it has written a batch or two of what came since the last kill.
        let (from, _) = store::position(&projection.pool).await.unwrap();
        let end = stream_end(&nats).await;
        gridcase_tests::eventually("the projector to write", || async {
            store::position(&projection.pool).await.unwrap().0 >= (from + 10).min(end)
        })
        .await;
        projection.kill();
    }
    writer.await.unwrap();
    let projection = TestProjection::spawn_with(config.clone(), Arc::new(ManualTimeSource::new(now))).await;
    let end = stream_end(&nats).await;
    projection.caught_up_to(end).await;

    // A crash between commit and acknowledgement means the same messages come
    // again: replaying an already-applied stretch changes nothing.
    let before = dump(&projection.pool).await;
    let stream = log.context().get_stream("GRIDCASE_CASES").await.unwrap();
    let mut again = Vec::new();
    for sequence in 1..=end.min(40) {
        let message = stream.get_raw_message(sequence).await.unwrap();
        again.push(gridcase_projection::projector::Message {
            sequence,
            payload: message.payload.to_vec(),
            headers: None,
            township: String::new(),
        });
    }
    gridcase_projection::projector::apply_batch(&mut projection.pool.acquire().await.unwrap(), &again).await.unwrap();
    assert_eq!(dump(&projection.pool).await, before, "redelivered events were not counted twice");

    // A rebuild from the first event produces the same tables, also one
    // that lets every case go as soon as it can and reads them back.
    let [plain, eager] = assert_rebuild_equals_live(&db.url, &log, &projection.pool).await;
    assert_eq!(plain.read_back, 0, "a short history lets no case go: {plain:?}");
    assert!(eager.read_back > 0, "cases were let go and read back: {eager:?}");

    // Swapping the rebuild in keeps the live projector going.
    rebuild::swap(&db.url, "read_rebuild", "read").await.unwrap();
    let case_id = given(&log, GRIDS[0]).at(now).filed("0101").await.id;
    projection.caught_up_to(end + 1).await;
    let rows = store::load_cases(&projection.pool, &[*case_id.as_uuid()]).await.unwrap();
    assert!(rows.contains_key(&case_id), "the live projector continued in the swapped-in schema");
    projection.stop().await.unwrap();
}

/// A query client acting as the demo county's auditor (reads everything in 990101).
async fn query(projection: &TestProjection) -> QueryClient {
    query_client(projection.endpoint(), &Identity::new("audit-01", "county_auditor", "county-990101", "990101")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_pagination_is_stable_while_new_cases_arrive() {
    let Backends { nats, db, log } = Backends::start().await;
    let start = bj("2026-03-02 09:00");
    let mut filed = Vec::new();
    for i in 0..45 {
        let case_id = given(&log, GRIDS[0]).at(start + SignedDuration::from_mins(i)).filed("0101").await.id;
        filed.push(case_id.to_string());
    }
    let projection = projected(&nats, &db, bj("2026-03-03 09:00")).await;
    let mut client = query(&projection).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_cases(api::ListCasesRequest {
                region_prefix: "990101".into(),
                page_size: 10,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.cases.iter().map(|c| c.case_id.clone()));
        pages += 1;
        // New cases arrive (filed later, so they sort before every page already read).
        for _ in 0..3 {
            given(&log, GRIDS[1]).at(bj("2026-03-02 20:00") + SignedDuration::from_mins(pages)).filed("0101").await;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    filed.reverse(); // newest first
    assert_eq!(seen, filed, "every original case exactly once, newest first, despite the new ones");
    assert_eq!(pages, 5);

    let status = client
        .list_cases(api::ListCasesRequest { page_token: "garbage".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    projection.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overdue_report_measures_working_time_across_the_spring_festival() {
    let Backends { nats, db, log } = Backends::start().await;
    // Dispatched Friday 02-13 17:00 with a resolve deadline of Tuesday 02-24 17:00 (4 working days).
    let case_id = given(&log, GRIDS[0])
        .at(bj("2026-02-13 17:00"))
        .filed("0101")
        .await
        .registered()
        .await
        .dispatched_to(UNITS[0], bj("2026-02-14 17:00"), bj("2026-02-24 17:00"))
        .await
        .at(bj("2026-02-14 09:00"))
        .acknowledged()
        .await
        .id;
    // Asked on Thursday 02-26 10:00: overdue by Tue 17-18 (1 h) + Wed (8 h) + Thu 08-10 (2 h) = 11 working hours.
    let projection = projected(&nats, &db, bj("2026-02-26 10:00")).await;
    let report = query(&projection)
        .await
        .overdue_report(api::OverdueReportRequest { region_prefix: "990101001".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.total, 1);
    let group = &report.groups[0];
    assert_eq!((group.township.as_str(), group.unit.as_str()), ("990101001", UNITS[0]));
    let item = &group.items[0];
    assert_eq!(item.case_id, case_id.to_string());
    assert_eq!(item.clock, gridcase_proto::common::v1::Clock::Resolve as i32);
    assert_eq!((item.overdue_seconds, item.unit_of_time.as_str()), (11 * 3600, "working time"));
    // The dispatcher need not run: the report is computed against now.
    let empty = query(&projection)
        .await
        .overdue_report(api::OverdueReportRequest { region_prefix: "990101201".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(empty.total, 0);
    projection.stop().await.unwrap();
}

/// The overdue report's items (the acknowledge and the resolve clocks).
async fn overdue_items(projection: &TestProjection) -> Vec<api::OverdueItem> {
    let report = query(projection)
        .await
        .overdue_report(api::OverdueReportRequest { region_prefix: "990101001".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.total, 2);
    report.groups[0].items.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_changed_after_dispatch_does_not_change_an_open_case_s_remaining_time() {
    use gridcase_calendar::{Calendar, YearTable};
    use gridcase_policy::{Planner, Policy};
    let Backends { nats, db, log } = Backends::start().await;
    let root = gridcase_tests::workspace_root();
    let shipped = root.join("deploy/policy/policy.toml");
    let policy = Policy::load(&shipped).unwrap();
    let years = YearTable::load_dir(&root.join("deploy/calendar")).unwrap();
    let calendar = Calendar::new(Arc::new(years), policy.default_hours.clone());
    // Dispatched on Friday 02-13 17:00 as a command centre does: with the
    // deadlines the policy gives a NORMAL case (5 working days to resolve)
    // and the terms they run on.
    let friday = bj("2026-02-13 17:00");
    let case = given(&log, GRIDS[0]).at(friday).filed("0101").await.registered().await;
    let (unit, grid) = (OrgCode::parse(UNITS[0]).unwrap(), gridcase_domain::GridCode::parse(GRIDS[0]).unwrap());
    let category = gridcase_domain::CategoryCode::parse("0101").unwrap();
    let (deadlines, _) = Planner::new(&policy, &calendar).dispatch(Tier::Normal, &category, &grid, &unit, friday);
    let resolve_due = deadlines.resolve_due;
    case.by_centre(Command::Dispatch { unit, deadlines }).await;

    let later = resolve_due + SignedDuration::from_hours(50);
    let before = projected(&nats, &db, later).await;
    let measured = overdue_items(&before).await;
    let resolve = measured.iter().find(|i| i.clock == gridcase_proto::common::v1::Clock::Resolve as i32).unwrap();
    assert_eq!(resolve.unit_of_time, "working time");
    assert!(resolve.overdue_seconds > 0);
    before.stop().await.unwrap();

    // The policy changes: NORMAL cases would now be resolved in 120
    // calendar hours. The query service restarted on it measures the case
    // dispatched before as it was dispatched.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&shipped).unwrap();
    let changed = text.replacen("resolve = \"5 working days\"", "resolve = \"120 hours\"", 1);
    assert_ne!(changed, text);
    std::fs::write(dir.path().join("policy.toml"), changed).unwrap();
    let mut config = TestProjection::config(&nats.url(), &db.url);
    config.rules.policy = dir.path().join("policy.toml");
    let after = TestProjection::spawn_with(config, Arc::new(ManualTimeSource::new(later))).await;
    after.caught_up_to(stream_end(&nats).await).await;
    assert_eq!(overdue_items(&after).await, measured, "the same overdue time, in the same kind of time");
    after.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_numbers_match_the_events_and_the_csv_export_reads_back_the_same() {
    let Backends { nats, db, log } = Backends::start().await;
    let day = bj("2026-03-09 09:00");
    let later = |h: i64| day + SignedDuration::from_hours(h);
    // Three cases in 城关街道 on 03-09: one closed on time, one returned, one still open and overdue.
    let mut cases = Vec::new();
    for (i, grid) in [GRIDS[0], GRIDS[1], GRIDS[0]].iter().enumerate() {
        let at = day + SignedDuration::from_mins(i as i64);
        let case = given(&log, grid).at(at).filed("0101").await.registered().await;
        cases.push(case.dispatched_to(UNITS[0], bj("2026-03-10 09:00"), bj("2026-03-09 17:00")).await);
    }
    let mut cases = cases.into_iter();
    let closed = cases.next().unwrap();
    closed.at(later(1)).acknowledged().await.at(later(3)).resolved("好了").await.at(later(4)).verified().await;
    cases.next().unwrap().at(later(2)).returned("派错").await;

    let projection = projected(&nats, &db, bj("2026-03-10 12:00")).await;
    let mut client = query(&projection).await;
    let request = api::LedgerRequest {
        org_kind: "township".into(),
        org: "990101001".into(),
        from_day: "2026-03-01".into(),
        to_day: "2026-03-31".into(),
        period: api::Period::Total as i32,
    };
    let rows = client.ledger(request.clone()).await.unwrap().into_inner().rows;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.filed, row.registered, row.dispatched, row.returned, row.closed, row.closed_on_time),
        (3, 3, 3, 1, 1, 1)
    );
    // Due on 03-09: the two cases still holding a resolve deadline (the returned one lost its clock).
    assert_eq!(row.due, 2);
    assert_eq!((row.closure_rate, row.on_time_closure_rate), (0.5, 0.5));
    assert!((row.accurate_dispatch_rate - (1.0 - 1.0 / 3.0)).abs() < 1e-9);
    assert_eq!(row.average_acknowledge_seconds, 3600.0);
    assert_eq!(row.overdue_open, 1, "the third case is past its resolve deadline now");

    let mut chunks = client
        .export_ledger(api::ExportLedgerRequest { ledger: Some(request), format: api::ExportFormat::Csv as i32 })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        bytes.extend(chunk.data);
    }
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header = reader.headers().unwrap().clone();
    let record = reader.records().next().unwrap().unwrap();
    let field = |name: &str| record.get(header.iter().position(|h| h == name).unwrap()).unwrap().to_owned();
    assert_eq!(
        (field("filed"), field("due"), field("closed"), field("closure_rate")),
        ("3".into(), "2".into(), "1".into(), "0.5000".into())
    );
    assert_eq!(field("overdue_open"), "1");

    let mut chunks = client
        .export_cases(api::ExportCasesRequest {
            filter: Some(api::ListCasesRequest { region_prefix: "990101001".into(), ..Default::default() }),
            format: api::ExportFormat::Csv as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    let mut progress = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        progress.push((chunk.rows_done, chunk.rows_total));
        bytes.extend(chunk.data);
    }
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let overdue_column = reader.headers().unwrap().iter().position(|h| h == "overdue").expect("an overdue column");
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // Every chunk says how far the export has got, of how many rows.
    let rows = records.len() as u64;
    assert!(progress.iter().all(|(done, total)| *total == rows && *done <= rows), "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0), "progress never goes back: {progress:?}");
    assert_eq!(progress.last().map(|(done, _)| *done), Some(rows), "{progress:?}");
    assert_eq!(records.len(), 3);
    assert_eq!(records.iter().filter(|r| r.get(overdue_column) == Some("true")).count(), 1, "one overdue case");

    // The history from the database verifies its hash chain; a tampered row is reported.
    let case = store::load_cases(&projection.pool, &[]).await.unwrap();
    assert!(case.is_empty());
    let first: uuid::Uuid = sqlx::query("SELECT case_id FROM cases ORDER BY filed_at LIMIT 1")
        .fetch_one(&projection.pool)
        .await
        .unwrap()
        .get(0);
    let history =
        client.get_case_history(api::GetCaseHistoryRequest { case_id: first.to_string() }).await.unwrap().into_inner();
    assert!(history.chain_verified, "{}", history.chain_problem);
    assert_eq!(history.events.len(), 6);
    sqlx::query("UPDATE case_events SET envelope = replace(envelope, '好了', '早就好了') WHERE case_id = $1")
        .bind(first)
        .execute(&projection.pool)
        .await
        .unwrap();
    let tampered =
        client.get_case_history(api::GetCaseHistoryRequest { case_id: first.to_string() }).await.unwrap().into_inner();
    assert!(!tampered.chain_verified);
    assert!(tampered.chain_problem.contains("was altered"), "{}", tampered.chain_problem);
    projection.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_as_xlsx_read_back_with_the_same_numbers_and_watch_follows_one_township() {
    use calamine::{DataType, Reader};
    let Backends { nats, db, log } = Backends::start().await;
    let at = bj("2026-03-09 09:00");
    for (i, grid) in [GRIDS[0], GRIDS[0], GRIDS[2]].iter().enumerate() {
        given(&log, grid).at(at + SignedDuration::from_mins(i as i64)).filed("0101").await;
    }
    let projection = projected(&nats, &db, bj("2026-03-10 09:00")).await;
    let mut client = query(&projection).await;

    let read_all = |mut stream: tonic::Streaming<api::ExportChunk>| async move {
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            bytes.extend(chunk.data);
        }
        bytes
    };
    let ledger = api::LedgerRequest {
        org_kind: "township".into(),
        org: String::new(),
        from_day: "2026-03-01".into(),
        to_day: "2026-03-31".into(),
        period: api::Period::Total as i32,
    };
    let rows = client.ledger(ledger.clone()).await.unwrap().into_inner().rows;
    let xlsx = read_all(
        client
            .export_ledger(api::ExportLedgerRequest { ledger: Some(ledger), format: api::ExportFormat::Xlsx as i32 })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let mut workbook: calamine::Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(xlsx)).unwrap();
    let sheet = workbook.worksheet_range_at(0).unwrap().unwrap();
    let header: Vec<String> = sheet.rows().next().unwrap().iter().map(|c| c.to_string()).collect();
    let filed = header.iter().position(|h| h == "filed").unwrap();
    let org = header.iter().position(|h| h == "org").unwrap();
    let from_sheet: Vec<(String, f64)> =
        sheet.rows().skip(1).map(|r| (r[org].to_string(), r[filed].get_float().expect("a number cell"))).collect();
    let from_rpc: Vec<(String, f64)> = rows.iter().map(|r| (r.org.clone(), r.filed as f64)).collect();
    assert_eq!(from_sheet, from_rpc);
    assert_eq!(from_rpc, [("990101001".to_owned(), 2.0), ("990101101".to_owned(), 1.0)]);

    let cases_xlsx = read_all(
        client
            .export_cases(api::ExportCasesRequest {
                filter: Some(Default::default()),
                format: api::ExportFormat::Xlsx as i32,
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let mut workbook: calamine::Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(cases_xlsx)).unwrap();
    let sheet = workbook.worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(sheet.height(), 4, "a header and three cases");
    assert_eq!(sheet.get((1, 3)).unwrap().to_string().len(), 15, "grid codes stay text, not numbers");

    // WatchCases: a command centre's wall screen follows its township only.
    let mut watch = client
        .watch_cases(api::WatchCasesRequest { township: "990101001".into(), after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mine = CaseId::new_v7();
    let other = CaseId::new_v7();
    act::command(
        &log,
        &act::subject(GRIDS[2], other),
        filing(other, GRIDS[2], "0101", at),
        ActorRole::GridWorker,
        "cc-990101101",
        at,
    )
    .await
    .unwrap();
    act::command(
        &log,
        &act::subject(GRIDS[0], mine),
        filing(mine, GRIDS[0], "0101", at),
        ActorRole::GridWorker,
        "cc-990101001",
        at,
    )
    .await
    .unwrap();
    let change =
        tokio::time::timeout(std::time::Duration::from_secs(10), watch.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        (change.case_id, change.event_type.as_str(), change.township.as_str()),
        (mine.to_string(), "filed", "990101001")
    );
    let status =
        client.watch_cases(api::WatchCasesRequest { township: "9901".into(), after_sequence: 0 }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    projection.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_type_written_by_a_newer_version_is_kept_in_the_audit_history_skipped_and_counted() {
    let Backends { nats, db, log } = Backends::start().await;
    let at = bj("2026-03-09 09:00");
    let case = given(&log, GRIDS[0]).at(at).filed("0101").await;
    let (case_id, subject) = (case.id, case.subject);
    // A newer writer appends an event of a type this version does not know.
    let first = log.first(&subject).await.unwrap().unwrap();
    let mut future = gridcase_envelope::StoredEvent::chained(
        &Event::Resumed,
        gridcase_envelope::schema::EventMeta {
            event_id: uuid::Uuid::now_v7(),
            case_id,
            case_version: 2,
            occurred_at: at,
            actor: gridcase_envelope::Actor {
                person: "city-1".into(),
                role: ActorRole::System,
                organisation: "city".into(),
            },
            command_id: None,
        },
        Some(first.event.hash.clone()),
    );
    future.event_type = "escalated_to_city".into();
    future.hash = future.compute_hash();
    append_foreign(&nats, &subject, &future.to_json_bytes(), first.stream_sequence).await;

    let projection = projected(&nats, &db, at).await;
    let (position, skipped) = store::position(&projection.pool).await.unwrap();
    assert_eq!((position, skipped), (stream_end(&nats).await, 1));
    let audit: Vec<String> = sqlx::query("SELECT event_type FROM case_events WHERE case_id = $1 ORDER BY case_version")
        .bind(case_id.as_uuid())
        .fetch_all(&projection.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(audit, ["filed", "escalated_to_city"]);
    let history = query(&projection)
        .await
        .get_case_history(api::GetCaseHistoryRequest { case_id: case_id.to_string() })
        .await
        .unwrap()
        .into_inner();
    assert!(history.chain_verified, "the unknown event still chains: {}", history.chain_problem);
    assert_rebuild_equals_live(&db.url, &log, &projection.pool).await;
    projection.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_id_filed_again_in_another_township_is_skipped_not_folded_and_stalls_nothing() {
    let Backends { nats, db, log } = Backends::start().await;
    let at = bj("2026-03-09 09:00");
    let case_id = CaseId::new_v7();
    let original = act::subject(GRIDS[0], case_id);
    act::command(&log, &original, filing(case_id, GRIDS[0], "0101", at), ActorRole::GridWorker, "cc-990101001", at)
        .await
        .unwrap();
    // Written past gridcase (whose case store refuses it): the same id in
    // another township, and a step on that copy.
    let copy = act::subject(GRIDS[2], case_id);
    let copy_filing = gridcase_domain::decide(None, &filing(case_id, GRIDS[2], "0204", at), at).unwrap();
    let sealed = gridcase_envelope::StoredEvent::chained(
        &copy_filing,
        gridcase_envelope::schema::EventMeta {
            event_id: uuid::Uuid::now_v7(),
            case_id,
            case_version: 1,
            occurred_at: at,
            actor: gridcase_envelope::Actor {
                person: "gridworker-1".into(),
                role: ActorRole::GridWorker,
                organisation: "cc-990101101".into(),
            },
            command_id: None,
        },
        None,
    );
    gridcase_tests::append_foreign(&nats, &copy, &sealed.to_json_bytes(), 0).await;
    let register = Command::Register { tier: Tier::Normal, note: None, policy: None };
    act::command(&log, &copy, register, ActorRole::CommandCentre, "cc-990101101", at).await.unwrap();
    act::command(&log, &original, Command::Void { reason: text("重复") }, ActorRole::CommandCentre, "cc-990101001", at)
        .await
        .unwrap();

    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(ManualTimeSource::new(at)))
            .await;
    projection.caught_up_to(stream_end(&nats).await).await;
    let (_, skipped) = store::position(&projection.pool).await.unwrap();
    assert_eq!(skipped, 2, "the copy's filing and its registration");
    let rows = store::load_cases(&projection.pool, &[*case_id.as_uuid()]).await.unwrap();
    let row = &rows[&case_id];
    assert_eq!(
        (row.case.grid.as_str(), row.case.category.as_str(), row.case.state, row.case.version),
        (GRIDS[0], "0101", gridcase_domain::State::Voided, 2),
        "the original case, untouched by the copy"
    );
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM case_events WHERE case_id = $1")
        .bind(case_id.as_uuid())
        .fetch_one(&projection.pool)
        .await
        .unwrap();
    assert_eq!(kept, 2);
    // A rebuild refuses the same events, whether it holds the case or has
    // let it go and reads it back.
    assert_rebuild_equals_live(&db.url, &log, &projection.pool).await;
    projection.stop().await.unwrap();
}

/// Rebuilds, plain and letting every case go at once (in small chunks,
/// over three folds), equal the live tables and reach the stream's end; the
/// last stays in schema `read_rebuild`. What each did.
async fn assert_rebuild_equals_live(url: &str, log: &EventLog, live: &sqlx::PgPool) -> [rebuild::Figures; 2] {
    let end = log.last_sequence().await.unwrap();
    let live = dump(live).await;
    let eager =
        rebuild::Options { chunk: 2, folds: 3, idle: jiff::SignedDuration::ZERO, sweep_every: 1, ..Default::default() };
    let mut figures = Vec::new();
    for options in [rebuild::Options::default(), eager] {
        let built = rebuild::build(url, "read_rebuild", log, &options).await.unwrap();
        assert_eq!(built.position, end);
        assert_eq!(dump(&built.pool).await, live, "rebuilt with {options:?}");
        built.pool.close().await;
        figures.push(built.figures);
    }
    figures.try_into().expect("two rebuilds")
}

/// How many sessions hold the projection writer lock in this database.
async fn writer_lock_holders(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1 AND objsubid = 2 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(0x6772_6964_i64)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Wait (bounded) until `holders` sessions hold the writer lock.
async fn until_writer_lock_holders(pool: &sqlx::PgPool, holders: i64) {
    let what = format!("{holders} writer lock holder(s)");
    gridcase_tests::eventually(&what, || async { writer_lock_holders(pool).await == holders }).await;
}

#[tokio::test]
async fn of_two_projection_processes_one_writes_and_the_other_takes_over_when_it_dies() {
    let backends = Backends::start().await;
    let config = || {
        let mut config = TestProjection::config(&backends.nats.url(), &backends.db.url);
        config.writer_poll = std::time::Duration::from_millis(100);
        config
    };
    let first = TestProjection::spawn_with(config(), Arc::new(ManualTimeSource::new(Timestamp::now()))).await;
    until_writer_lock_holders(&first.pool, 1).await;
    let second = TestProjection::spawn_with(config(), Arc::new(ManualTimeSource::new(Timestamp::now()))).await;

    for grid in GRIDS {
        given(&backends.log, grid).filed("0101").await;
    }
    let end = stream_end(&backends.nats).await;
    first.caught_up_to(end).await;
    // Both run; one session holds the lock (the first, which got it before
    // the second started), and the second only stands by.
    assert_eq!(writer_lock_holders(&second.pool).await, 1);

    first.kill();
    for grid in GRIDS {
        given(&backends.log, grid).filed("0101").await;
    }
    let end = stream_end(&backends.nats).await;
    second.caught_up_to(end).await;
    assert_eq!(writer_lock_holders(&second.pool).await, 1, "the standby holds the lock now, alone");
    let cases: i64 = sqlx::query_scalar("SELECT count(*) FROM cases").fetch_one(&second.pool).await.unwrap();
    assert_eq!(cases, 2 * GRIDS.len() as i64, "every case projected once");
    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_survives_postgresql_crashing_mid_load_and_queries_are_unavailable_meanwhile() {
    let mut postgres = OwnPostgres::start();
    let nats = NatsServer::start();
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();
    let now = bj("2026-04-30 09:00");
    let mut config = TestProjection::config(&nats.url(), &postgres.url());
    config.batch_size = 5;
    config.writer_poll = std::time::Duration::from_millis(100);
    let projection = TestProjection::spawn_with(config, Arc::new(ManualTimeSource::new(now))).await;
    let mut client = query(&projection).await;

    let walks: Vec<Vec<u8>> =
        (0..12u8).map(|i| (0..10u8).map(|j| i.wrapping_mul(29).wrapping_add(j.wrapping_mul(13))).collect()).collect();
    let writer = {
        let log = log.clone();
        tokio::spawn(async move { random_histories(&log, &walks, bj("2026-03-02 09:00")).await })
    };
    // Crash PostgreSQL once the projector is writing, mid-load.
    gridcase_tests::eventually("the projector to start writing", || async {
        store::position(&projection.pool).await.map(|(p, _)| p).unwrap_or(0) >= 10
    })
    .await;
    tokio::task::block_in_place(|| postgres.kill());
    let status = client.list_cases(api::ListCasesRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    tokio::task::block_in_place(|| postgres.restart());
    writer.await.unwrap();
    let end = stream_end(&nats).await;
    projection.caught_up_to(end).await;
    let listed = client.list_cases(api::ListCasesRequest::default()).await.expect("queries recover by themselves");
    assert!(!listed.into_inner().cases.is_empty());

    // Nothing applied twice, nothing missed: the tables equal a rebuild.
    let live = dump(&projection.pool).await;
    let built = rebuild::build(&postgres.url(), "read_rebuild", &log, &rebuild::Options::default()).await.unwrap();
    assert_eq!(built.position, end);
    assert_eq!(dump(&built.pool).await, live, "the live tables after the crash equal a rebuild");
    built.pool.close().await;
    projection.stop().await.unwrap();
}

/// A case filed and registered at `at` in `grid`, dispatched to the first
/// unit with these deadlines (Beijing time).
async fn dispatched<'a>(
    log: &'a EventLog,
    grid: &str,
    at: Timestamp,
    acknowledge_due: &str,
    resolve_due: &str,
) -> gridcase_tests::scenario::Scenario<'a> {
    given(log, grid)
        .at(at)
        .filed("0101")
        .await
        .registered()
        .await
        .dispatched_to(UNITS[0], bj(acknowledge_due), bj(resolve_due))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_counts_open_work_only_due_today_in_beijing_and_overdue_now() {
    let Backends { nats, db, log } = Backends::start().await;
    let monday = bj("2026-03-09 10:00");
    // Due later today (acknowledge by Tuesday 15:00; it is Tuesday 09:00).
    dispatched(&log, GRIDS[0], monday, "2026-03-10 15:00", "2026-03-20 12:00").await;
    // Overdue (acknowledge due Monday 12:00), under a yellow card.
    let late = dispatched(&log, GRIDS[1], monday, "2026-03-09 12:00", "2026-03-20 12:00").await;
    let reason = Text::reason("超时未签收").unwrap();
    late.by_centre(Command::Supervise { level: Supervision::YellowCard, reason, escalated_to: None }).await;
    // Closed and voided: no open work, whatever their deadlines said.
    dispatched(&log, GRIDS[0], monday, "2026-03-09 12:00", "2026-03-09 18:00")
        .await
        .acknowledged()
        .await
        .resolved("已修复")
        .await
        .verified()
        .await;
    given(&log, GRIDS[0]).at(monday).filed("0101").await.voided("重复上报").await;
    // Another township's case.
    given(&log, GRIDS[2]).at(monday).filed("0101").await;

    let projection = projected(&nats, &db, bj("2026-03-10 09:00")).await;
    let mut client =
        query_client(projection.endpoint(), &Identity::new("audit-01", "county_auditor", "county-990101", "990101"))
            .await;
    let counts =
        client.count_cases(api::CountCasesRequest { region_prefix: "990101001".into() }).await.unwrap().into_inner();
    assert_eq!(
        (counts.open, counts.due_today, counts.overdue, counts.on_hold, counts.yellow_card, counts.red_card),
        (2, 1, 1, 0, 1, 0),
        "{counts:?}"
    );
    let county =
        client.count_cases(api::CountCasesRequest { region_prefix: String::new() }).await.unwrap().into_inner();
    assert_eq!(county.open, 3, "the whole county: {county:?}");
    // A region outside the caller's territory is refused, not counted.
    let outside = client.count_cases(api::CountCasesRequest { region_prefix: "990202".into() }).await.unwrap_err();
    assert_eq!(outside.code(), tonic::Code::PermissionDenied);
    projection.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_lists_by_the_soonest_running_deadline_with_due_soon_clock_and_card_filters_in_keyset_pages() {
    let Backends { nats, db, log } = Backends::start().await;
    let monday = bj("2026-03-09 08:00");
    let a = dispatched(&log, GRIDS[0], monday, "2026-03-10 15:00", "2026-03-20 12:00").await.id;
    let b = dispatched(&log, GRIDS[0], monday, "2026-03-09 12:00", "2026-03-19 12:00").await;
    let reason = Text::reason("超时未签收").unwrap();
    let b = b.by_centre(Command::Supervise { level: Supervision::YellowCard, reason, escalated_to: None }).await.id;
    let c = dispatched(&log, GRIDS[0], monday, "2026-03-10 10:00", "2026-03-11 09:00").await.acknowledged().await.id;
    let d = given(&log, GRIDS[0]).at(monday).filed("0101").await.id;
    let e = dispatched(&log, GRIDS[0], monday, "2026-03-10 11:00", "2026-03-18 12:00").await.id;
    let projection = projected(&nats, &db, bj("2026-03-10 09:00")).await;
    let client = query(&projection).await;
    let list = |request: api::ListCasesRequest| {
        let mut client = client.clone();
        async move { client.list_cases(request).await }
    };
    let ids = |cases: &[api::CaseSummary]| cases.iter().map(|c| c.case_id.clone()).collect::<Vec<_>>();
    let names = |expected: &[CaseId]| expected.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    let due_soonest = |page_token: String| api::ListCasesRequest {
        region_prefix: "990101001".into(),
        order: api::ListOrder::DueSoonest as i32,
        page_size: 2,
        page_token,
        ..Default::default()
    };

    // Soonest running deadline first, the case with none last, two a page.
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(due_soonest(token)).await.unwrap().into_inner();
        pages.push(ids(&page.cases));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, vec![names(&[b, e]), names(&[a, c]), names(&[d])]);
    let first = list(due_soonest(String::new())).await.unwrap().into_inner();
    assert_eq!(first.cases[0].next_due_clock, common_clock(gridcase_domain::Clock::Acknowledge));
    assert_eq!(first.cases[0].next_due.as_ref().unwrap().seconds, bj("2026-03-09 12:00").as_second());

    // Due within a day (and not yet overdue): the deadlines up to Wednesday 09:00.
    let soon = list(api::ListCasesRequest { due_within_seconds: 86_400, page_size: 10, ..due_soonest(String::new()) });
    assert_eq!(ids(&soon.await.unwrap().into_inner().cases), names(&[e, a, c]));
    let soon = list(api::ListCasesRequest { due_within_seconds: 86_399, page_size: 10, ..due_soonest(String::new()) });
    assert_eq!(ids(&soon.await.unwrap().into_inner().cases), names(&[e, a]), "one second short of C's");
    // The resolve clock alone: every case it runs on, by its deadline.
    let resolve = common_clock(gridcase_domain::Clock::Resolve);
    let request = api::ListCasesRequest { clock: resolve, page_size: 10, ..due_soonest(String::new()) };
    let listed = list(request).await.unwrap().into_inner().cases;
    assert_eq!(ids(&listed), names(&[c, e, b, a]));
    assert!(listed.iter().all(|s| s.next_due_clock == resolve));
    // Overdue on the acknowledge clock; under a yellow card.
    let acknowledge = common_clock(gridcase_domain::Clock::Acknowledge);
    let request = api::ListCasesRequest { clock: acknowledge, overdue_only: true, ..due_soonest(String::new()) };
    assert_eq!(ids(&list(request).await.unwrap().into_inner().cases), names(&[b]));
    let yellow = gridcase_proto::common::v1::Supervision::YellowCard as i32;
    let request =
        api::ListCasesRequest { supervision: yellow, region_prefix: "990101001".into(), ..Default::default() };
    assert_eq!(ids(&list(request).await.unwrap().into_inner().cases), names(&[b]));

    // A token of the newest-first order is no token for the soonest-first
    // one; overdue and due soon at once is a contradiction. Each named.
    let newest = api::ListCasesRequest { region_prefix: "990101001".into(), page_size: 2, ..Default::default() };
    let token = list(newest).await.unwrap().into_inner().next_page_token;
    let field_of = |status: tonic::Status| {
        use tonic_types::StatusExt;
        status.get_error_details().bad_request().unwrap().field_violations[0].field.clone()
    };
    assert_eq!(field_of(list(due_soonest(token)).await.unwrap_err()), "page_token");
    let both = api::ListCasesRequest { overdue_only: true, due_within_seconds: 60, ..Default::default() };
    assert_eq!(field_of(list(both).await.unwrap_err()), "due_within_seconds");
    projection.stop().await.unwrap();
}

fn common_clock(clock: gridcase_domain::Clock) -> i32 {
    gridcase_proto::convert::clock_to_proto(clock) as i32
}
