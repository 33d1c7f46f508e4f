//! The projection under load, on its own nats-server and PostgreSQL database:
//!
//! 1. N cases of 3 events each (filed, registered, dispatched) are appended;
//! 2. live: the projection service catches up with them while they arrive;
//! 3. rebuild: the whole stream replayed into a fresh schema;
//! 4. baseline: a raw PostgreSQL COPY of the same audit rows into a plain table;
//! 5. queries over a large case table (synthetic rows inserted in the
//!    database): ListCases pages and OverdueReport for one township.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gridcase_domain::{
    ActorRole, CaseId, CategoryCode, Command, Deadlines, Event, Filing, GridCode, Location, OrgCode, Text, Tier,
};
use gridcase_envelope::CaseSubject;
use gridcase_envelope::Head;
use gridcase_envelope::schema::Actor;
use gridcase_eventlog::store::{CaseStore, Committed, Provenance};
use gridcase_eventlog::{EventLog, StreamSettings};
use gridcase_process::SystemTimeSource;
use gridcase_proto::query::v1 as api;
use gridcase_tests::{NatsServer, TestDatabase, TestProjection, stream_end};
use jiff::{SignedDuration, Timestamp};

use crate::{Figures, nats_version, run_phase};

/// One `case_events` row as COPY writes it.
type AuditRow = (
    i64,
    uuid::Uuid,
    uuid::Uuid,
    i64,
    String,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
);

const GRIDS: [&str; 4] = ["990101001001001", "990101001002001", "990101101001001", "990101201001002"];

/// The three events of one case, decided in order.
fn case_events(index: usize, at: Timestamp) -> (Head, Vec<Event>) {
    let case_id = CaseId::new_v7();
    let grid = GridCode::parse(GRIDS[index % GRIDS.len()]).unwrap();
    let commands = [
        Command::File(Filing {
            case_id,
            grid: grid.clone(),
            category: CategoryCode::parse("0101").unwrap(),
            description: Text::reason("基准测试事件").unwrap(),
            location: Location::from_degrees(30.27, 120.15, None).unwrap(),
            reported_at: at,
            severity_hint: None,
            contact: None,
            attachments: vec![],
            outside_grid: None,
            channel: Default::default(),
            request_kind: None,
            reference: None,
        }),
        Command::Register { tier: Tier::Normal, note: None, policy: None },
        Command::Dispatch {
            unit: OrgCode::parse("unit.urban.990101").unwrap(),
            deadlines: Deadlines {
                acknowledge_due: at + SignedDuration::from_hours(8),
                resolve_due: at + SignedDuration::from_hours(40),
                basis: None,
            },
        },
    ];
    let mut state = None;
    let mut events = Vec::new();
    for command in commands {
        let event = gridcase_domain::decide(state.as_ref(), &command, at).expect("valid step");
        state = gridcase_domain::evolve(state, &event);
        events.push(event);
    }
    (Head::new_case(case_id, CaseSubject::for_grid(&grid, &case_id)), events)
}

/// Every case's events, committed one after the other through the case store.
async fn append_all(store: &Arc<CaseStore>, cases: usize, concurrency: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let at = Timestamp::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..cases)
        .map(|index| {
            let store = store.clone();
            async move {
                let (mut head, events) = case_events(index, at);
                for event in events {
                    let provenance = Provenance {
                        event_id: uuid::Uuid::now_v7(),
                        occurred_at: at,
                        actor: Actor {
                            person: "bench".into(),
                            role: ActorRole::GridWorker,
                            organisation: "cc-990101001".into(),
                        },
                        command_id: None,
                    };
                    match store.commit(&head, &event, provenance).await? {
                        Committed::Stored(positioned) => head = head.after(&positioned),
                        Committed::AlreadyStored(_) => anyhow::bail!("a fresh event id was already stored"),
                    }
                }
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(started.elapsed())
}

/// VmHWM of this process (Linux), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub async fn run(cases: usize, query_cases: usize) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await;
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;
    println!("nats-server {} (fsync always); PostgreSQL on 127.0.0.1; {cases} cases × 3 events\n", nats_version());

    // Live: the projection runs while the events are appended.
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(SystemTimeSource)).await;
    let started = Instant::now();
    let store = Arc::new(CaseStore::new(log.clone()));
    let append = append_all(&store, cases, 64).await?;
    let end = stream_end(&nats).await;
    projection.caught_up_to(end).await;
    let live = started.elapsed();
    println!(
        "append {end} events: {:.2}s ({:.0} events/s); live projection caught up {:.2}s after the first append: {:.0} events/s",
        append.as_secs_f64(),
        end as f64 / append.as_secs_f64(),
        live.as_secs_f64(),
        end as f64 / live.as_secs_f64()
    );

    // Rebuild from the first event.
    let started = Instant::now();
    let built = gridcase_projection::rebuild::build(&db.url, "read_rebuild", &log, &Default::default()).await?;
    let rebuild = started.elapsed();
    let position = built.position;
    built.pool.close().await;
    println!(
        "rebuild of {position} events: {:.2}s = {:.0} events/s",
        rebuild.as_secs_f64(),
        position as f64 / rebuild.as_secs_f64()
    );

    // Baseline: COPY the same audit rows into a plain table.
    let pool = &projection.pool;
    sqlx::query("CREATE TABLE copy_baseline (LIKE case_events)").execute(pool).await?;
    let rows: Vec<AuditRow> =
        sqlx::query_as("SELECT stream_sequence, event_id, case_id, case_version, event_type, micros(occurred_at), actor_person, actor_role, actor_organisation, reason, hash, prev_hash, envelope FROM case_events")
            .fetch_all(pool)
            .await?;
    let mut text = String::new();
    let escape = |s: &str| s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r");
    for r in &rows {
        let at = Timestamp::from_microsecond(r.5)?.to_string();
        let fields = [
            r.0.to_string(),
            r.1.to_string(),
            r.2.to_string(),
            r.3.to_string(),
            escape(&r.4),
            at,
            escape(&r.6),
            escape(&r.7),
            escape(&r.8),
            r.9.as_deref().map(escape).unwrap_or_else(|| "\\N".into()),
            escape(&r.10),
            r.11.as_deref().map(escape).unwrap_or_else(|| "\\N".into()),
            escape(&r.12),
        ];
        text.push_str(&fields.join("\t"));
        text.push('\n');
    }
    let mut connection = pool.acquire().await?;
    let started = Instant::now();
    let mut copy = connection.copy_in_raw("COPY copy_baseline FROM STDIN").await?;
    copy.send(text.as_bytes()).await?;
    let copied = copy.finish().await?;
    let baseline = started.elapsed();
    drop(connection);
    println!(
        "raw COPY of the same {copied} audit rows (baseline): {:.2}s = {:.0} rows/s; the rebuild runs at {:.1}% of it while also writing case rows and ledgers",
        baseline.as_secs_f64(),
        copied as f64 / baseline.as_secs_f64(),
        100.0 * (position as f64 / rebuild.as_secs_f64()) / (copied as f64 / baseline.as_secs_f64())
    );

    // Queries over a large case table: synthetic rows generated in the
    // database, spread over two years; 1 in 50 still open (filed in the last
    // ten days, about half of them past their resolve deadline).
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO cases (case_id, version, last_sequence, state, county, township, village, grid, category, description, \
         reported_by, supervision, urgent, filed_at, acknowledge_due, resolve_due, marks, approved_extension_days, hold_requested, \
         returns, reworks, reopenings, tier, unit, last_hash) \
         SELECT id, 3, 0, CASE WHEN i % 50 = 0 THEN 'IN_PROGRESS' ELSE 'CLOSED' END, '990101', \
         '990101' || lpad((1 + i % 3)::text, 3, '0'), '990101' || lpad((1 + i % 3)::text, 3, '0') || '001', \
         '990101' || lpad((1 + i % 3)::text, 3, '0') || '001001', '0101', 'synthetic', 'bench', 'NONE', false, \
         f, f + interval '8 hours', f + interval '5 days', ARRAY[]::text[], 0, false, 0, 0, 0, 'NORMAL', 'unit.urban.990101', md5(id::text) \
         FROM UNNEST($1::uuid[]) WITH ORDINALITY AS u(id, i), \
         LATERAL (SELECT CASE WHEN i % 50 = 0 THEN now() - ((i / 50) % 14400 || ' minutes')::interval \
                              ELSE now() - (i || ' minutes')::interval END AS f) AS filed",
    )
    .bind((0..query_cases).map(|_| uuid::Uuid::now_v7()).collect::<Vec<_>>())
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE cases").execute(pool).await?;
    println!("\ninserted {query_cases} synthetic cases in {:.1}s", started.elapsed().as_secs_f64());
    // The county's auditor reads every township of the demo county.
    let auditor = gridcase_tests::Identity::new("bench-audit", "county_auditor", "co-990101", "990101");
    let client = gridcase_tests::query_client(projection.endpoint(), &auditor).await;
    let list = run_phase("ListCases, 100 per page, township", 200, 4, |i| {
        let mut client = client.clone();
        async move {
            let started = Instant::now();
            let region = format!("990101{:03}", 1 + i % 3);
            client
                .list_cases(api::ListCasesRequest { region_prefix: region, page_size: 100, ..Default::default() })
                .await?;
            Ok(started.elapsed())
        }
    })
    .await?;
    let overdue = run_phase("OverdueReport, one township", 20, 2, |i| {
        let mut client = client.clone();
        async move {
            let started = Instant::now();
            let region = format!("990101{:03}", 1 + i % 3);
            let report = client.overdue_report(api::OverdueReportRequest { region_prefix: region }).await?.into_inner();
            anyhow::ensure!(report.total > 0, "expected overdue cases");
            Ok(started.elapsed())
        }
    })
    .await?;
    let overdue_items: u64 = client
        .clone()
        .overdue_report(api::OverdueReportRequest { region_prefix: "990101001".into() })
        .await?
        .into_inner()
        .total;
    println!("\n{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}", "query", "count", "per sec", "p50 ms", "p99 ms", "max ms");
    list.print();
    overdue.print();
    println!("(one township's overdue report lists {overdue_items} overdue clocks)");

    // Export every case as CSV: time, size and the process's peak memory.
    let peak_before = peak_rss_kib();
    let started = Instant::now();
    let mut stream = client
        .clone()
        .export_cases(api::ExportCasesRequest {
            filter: Some(Default::default()),
            format: api::ExportFormat::Csv as i32,
        })
        .await?
        .into_inner();
    let (mut bytes, mut chunks) = (0usize, 0usize);
    while let Some(chunk) = stream.message().await? {
        bytes += chunk.data.len();
        chunks += 1;
    }
    println!(
        "ExportCases CSV of every case: {:.1} MB in {chunks} chunks, {:.2}s; peak RSS of this process {} MiB before, {} MiB after",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        peak_before / 1024,
        peak_rss_kib() / 1024
    );
    projection.stop().await?;
    let _: Figures = list;
    Ok(())
}
