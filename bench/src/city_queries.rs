//! `city-year queries`: the query service over the read models that
//! `city-year rebuild` left in the database gridcase_cityyear: latencies of
//! the reports and lists a centre uses (one call at a time, p50/p99), and
//! the plans PostgreSQL chooses for the heaviest of them (EXPLAIN ANALYZE).

use std::sync::Arc;
use std::time::Instant;

use gridcase_proto::query::v1 as api;
use gridcase_tests::open311::TestOpen311;
use gridcase_tests::{Identity, NatsServer, TestProjection, query_client};
use sqlx::Row as _;

use crate::city_year::{self, Measure};
use crate::{Figures, run_phase};

const SAMPLES: usize = 200;

/// A case list's filter, given the sample's index.
type Filter<'a> = Box<dyn Fn(usize) -> api::ListCasesRequest + 'a>;

pub async fn run(options: Measure, admin_url: &str) -> anyhow::Result<()> {
    let data = city_year::load_manifest(&options.dir)?;
    let nats = NatsServer::start_with_store(&city_year::store(&options.dir));
    measure(&nats, &city_year::database_url(admin_url)?, &data).await
}

/// The queries, through a projection service on the data set's stream and
/// read models.
pub async fn measure(nats: &NatsServer, url: &str, data: &city_year::DataSet) -> anyhow::Result<()> {
    let clock = gridcase_process::ManualTimeSource::new(data.end);
    let mut config = TestProjection::config(&nats.url(), url);
    config.rules.calendar_dir = gridcase_tests::workspace_root().join("deploy/calendar");
    let projection = TestProjection::spawn_with(config, Arc::new(clock)).await;
    projection.caught_up_to(data.events).await;
    let pool = projection.pool.clone();
    println!("read models of {} events; the clock at the year's end ({})", data.events, data.end);

    let townships: Vec<String> = (1..=data.townships).map(|t| format!("990101{t:03}")).collect();
    let centre = |i: usize| {
        let township = &townships[i % townships.len()];
        Identity::new("cc-op", "command_centre", &format!("cc-{township}"), township)
    };
    let auditor = Identity::new("audit-01", "county_auditor", "co-990101", "990101");
    let mut centres = Vec::new();
    for i in 0..townships.len() {
        centres.push(query_client(projection.endpoint(), &centre(i)).await);
    }
    let county = query_client(projection.endpoint(), &auditor).await;
    let sample: Vec<(String, String, Option<String>, String)> = sqlx::query(
        "SELECT case_id::text, township, unit, grid FROM cases TABLESAMPLE SYSTEM (1) REPEATABLE (7) LIMIT $1",
    )
    .bind(SAMPLES as i64)
    .fetch_all(&pool)
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect();
    // A small data set may give a 1 % page sample of fewer cases: then the
    // first ones by id (any data set of the generator has enough).
    let sample = if sample.len() == SAMPLES {
        sample
    } else {
        sqlx::query("SELECT case_id::text, township, unit, grid FROM cases ORDER BY case_id LIMIT $1")
            .bind(SAMPLES as i64)
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    };
    anyhow::ensure!(sample.len() == SAMPLES, "a sample of {SAMPLES} cases (the data set has fewer)");
    // How many cases each township has: what its export must hold.
    let per_township: std::collections::HashMap<String, i64> =
        sqlx::query("SELECT township, count(*) FROM cases GROUP BY township")
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    let township_of = |i: usize| townships.iter().position(|t| *t == sample[i].1).expect("a generated township");

    let mut rows: Vec<Figures> = Vec::new();
    let mut overdue_total = 0u64;
    rows.push(
        run_phase("OverdueReport, one township", SAMPLES, 1, |i| {
            let mut client = centres[i % centres.len()].clone();
            let region = townships[i % townships.len()].clone();
            async move {
                let started = Instant::now();
                let report = client.overdue_report(api::OverdueReportRequest { region_prefix: region }).await?;
                anyhow::ensure!(report.get_ref().total > 0, "overdue cases at the year's end");
                Ok(started.elapsed())
            }
        })
        .await?,
    );
    for i in 0..townships.len() {
        overdue_total += centres[i]
            .clone()
            .overdue_report(api::OverdueReportRequest { region_prefix: townships[i].clone() })
            .await?
            .get_ref()
            .total;
    }
    let open = [
        gridcase_proto::common::v1::CaseState::Dispatched as i32,
        gridcase_proto::common::v1::CaseState::InProgress as i32,
    ];
    let filters: Vec<(&'static str, Filter)> = vec![
        ("ListCases, township", Box::new(|_| api::ListCasesRequest::default())),
        (
            "ListCases, township, open states",
            Box::new(move |_| api::ListCasesRequest { states: open.to_vec(), ..Default::default() }),
        ),
        (
            "ListCases, township, overdue only",
            Box::new(|_| api::ListCasesRequest { overdue_only: true, ..Default::default() }),
        ),
        (
            "ListCases, township, overdue, soonest deadline first (the desk)",
            Box::new(|_| api::ListCasesRequest {
                overdue_only: true,
                order: api::ListOrder::DueSoonest as i32,
                ..Default::default()
            }),
        ),
        (
            "ListCases, township, due within a day, soonest first",
            Box::new(|_| api::ListCasesRequest {
                due_within_seconds: 86_400,
                order: api::ListOrder::DueSoonest as i32,
                ..Default::default()
            }),
        ),
        (
            "ListCases, township, closed",
            Box::new(|_| api::ListCasesRequest {
                states: vec![gridcase_proto::common::v1::CaseState::Closed as i32],
                ..Default::default()
            }),
        ),
        (
            "ListCases, township, tier",
            Box::new(|_| api::ListCasesRequest {
                tier: gridcase_proto::common::v1::Tier::Urgent as i32,
                ..Default::default()
            }),
        ),
        (
            "ListCases, township, its unit",
            Box::new(|i| api::ListCasesRequest { unit: sample[i].2.clone().unwrap_or_default(), ..Default::default() }),
        ),
        (
            "ListCases, township, a grid",
            Box::new(|i| api::ListCasesRequest { grid_code: sample[i].3.clone(), ..Default::default() }),
        ),
        (
            "ListCases, township, March",
            Box::new(|_| api::ListCasesRequest {
                filed_from: Some(prost_types::Timestamp { seconds: 1_740_758_400, nanos: 0 }),
                filed_to: Some(prost_types::Timestamp { seconds: 1_743_436_800, nanos: 0 }),
                ..Default::default()
            }),
        ),
    ];
    for (label, filter) in &filters {
        rows.push(
            run_phase(label, SAMPLES, 1, |i| {
                let mut client = centres[township_of(i)].clone();
                let mut request = filter(i);
                request.page_size = 100;
                async move {
                    let started = Instant::now();
                    client.list_cases(request).await?;
                    Ok(started.elapsed())
                }
            })
            .await?,
        );
    }
    rows.push(
        run_phase("ListCases, county, page 2", SAMPLES, 1, |_| {
            let mut client = county.clone();
            async move {
                let first = client
                    .list_cases(api::ListCasesRequest { page_size: 100, ..Default::default() })
                    .await?
                    .into_inner();
                let started = Instant::now();
                client
                    .list_cases(api::ListCasesRequest {
                        page_size: 100,
                        page_token: first.next_page_token,
                        ..Default::default()
                    })
                    .await?;
                Ok(started.elapsed())
            }
        })
        .await?,
    );
    rows.push(
        run_phase("GetCase (with its history)", SAMPLES, 1, |i| {
            let mut client = centres[township_of(i)].clone();
            let case_id = sample[i].0.clone();
            async move {
                let started = Instant::now();
                client.get_case(api::GetCaseRequest { case_id }).await?;
                Ok(started.elapsed())
            }
        })
        .await?,
    );
    for (label, kind, period) in [
        ("Ledger, the year by month, township", "township", api::Period::Month),
        ("Ledger, the year by day, its units", "unit", api::Period::Day),
        ("Ledger, the year in total, workers", "worker", api::Period::Total),
    ] {
        rows.push(
            run_phase(label, 40, 1, |i| {
                let mut client = centres[i % centres.len()].clone();
                async move {
                    let started = Instant::now();
                    let ledger = client
                        .ledger(api::LedgerRequest {
                            org_kind: kind.to_owned(),
                            from_day: "2025-01-01".to_owned(),
                            to_day: "2025-12-31".to_owned(),
                            period: period as i32,
                            ..Default::default()
                        })
                        .await?;
                    anyhow::ensure!(!ledger.get_ref().rows.is_empty(), "a year's ledger has rows");
                    Ok(started.elapsed())
                }
            })
            .await?,
        );
    }
    rows.push(
        run_phase("ExportCases CSV, a township's year", 5, 1, |i| {
            let mut client = centres[i % centres.len()].clone();
            let expected = per_township.get(&townships[i % townships.len()]).copied().unwrap_or(0);
            async move {
                let started = Instant::now();
                let mut stream = client
                    .export_cases(api::ExportCasesRequest {
                        filter: Some(Default::default()),
                        format: api::ExportFormat::Csv as i32,
                    })
                    .await?
                    .into_inner();
                let mut csv = Vec::new();
                while let Some(chunk) = stream.message().await? {
                    csv.extend_from_slice(&chunk.data);
                }
                let exported = csv::Reader::from_reader(csv.as_slice()).records().count() as i64;
                anyhow::ensure!(exported == expected, "the export holds {exported} cases of the township's {expected}");
                Ok(started.elapsed())
            }
        })
        .await?,
    );
    // The partner's feed: a two-hour window of its requests' changes, through
    // the Open311 gateway (XML, as FixMyStreet asks it every few minutes),
    // beside the same rows read straight from PostgreSQL.
    let gateway = TestOpen311::spawn(TestOpen311::config("http://127.0.0.1:9", &projection.endpoint())).await;
    let key = gridcase_tests::identity::fixmystreet().key;
    let http = reqwest::Client::new();
    let year_start =
        jiff::civil::date(data.year, 1, 1).to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai")?)?.timestamp();
    let window = |i: usize| {
        // Spread over the year, at 09:00 Beijing time (a busy morning).
        let day = (i * 365 / SAMPLES) as i64;
        let start = year_start + jiff::SignedDuration::from_hours(day * 24 + 9);
        (start, start + jiff::SignedDuration::from_hours(2))
    };
    let mut updates_seen = 0usize;
    let mut latencies = Vec::new();
    let started_all = Instant::now();
    for i in 0..SAMPLES {
        let (start, end) = window(i);
        let url =
            format!("{}servicerequestupdates.xml?api_key={key}&start_date={start}&end_date={end}", gateway.base());
        let started = Instant::now();
        let response = http.get(url).send().await?;
        anyhow::ensure!(response.status().is_success(), "the gateway answered {}", response.status());
        let body = response.text().await?;
        latencies.push(started.elapsed());
        updates_seen += body.matches("<request_update>").count();
    }
    rows.push(Figures {
        label: "Open311 updates, a 2-hour window (XML)",
        count: SAMPLES,
        elapsed: started_all.elapsed(),
        latencies,
    });
    anyhow::ensure!(updates_seen > 0, "the partner's windows hold updates");
    rows.push(
        run_phase("  the same rows, raw SQL", SAMPLES, 1, |i| {
            let (start, end) = window(i);
            let pool = pool.clone();
            async move {
                let started = Instant::now();
                let _: Vec<(uuid::Uuid, String)> = sqlx::query_as(
                    "SELECT e.event_id, e.event_type FROM case_events e JOIN cases c ON c.case_id = e.case_id \
                     WHERE e.occurred_at >= ts_from_micros($1) AND e.occurred_at < ts_from_micros($2) \
                     AND c.reported_by = $3 AND e.event_type = ANY($4) ORDER BY e.occurred_at, e.stream_sequence",
                )
                .bind(start.as_microsecond())
                .bind(end.as_microsecond())
                .bind(crate::city_year::simulation::PARTNER)
                .bind(gridcase_projection::query::updates::resident_events())
                .fetch_all(&pool)
                .await?;
                Ok(started.elapsed())
            }
        })
        .await?,
    );
    println!(
        "(the partner's updates over {SAMPLES} two-hour windows: {updates_seen}, {:.0} per window)",
        updates_seen as f64 / SAMPLES as f64
    );
    gateway.stop().await?;

    println!(
        "\n{:<44} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "query (one at a time)", "count", "per sec", "p50 ms", "p99 ms", "max ms"
    );
    for row in &rows {
        row.print();
    }
    println!("(overdue clocks at the year's end over all townships: {overdue_total})");

    // The plans of the heaviest statements.
    let now = gridcase_projection::columns::micros(data.end);
    let mut overdue = sqlx::QueryBuilder::new(
        "SELECT case_id FROM cases WHERE grid LIKE '990101007%' AND township = '990101007' AND ",
    );
    gridcase_projection::query::sql::overdue_condition(&mut overdue, now);
    let plans = [
        ("overdue report, one township", overdue.sql().as_str().to_owned()),
        (
            "case list, township, open states",
            "SELECT case_id FROM cases WHERE township = '990101007' AND state = ANY('{DISPATCHED,IN_PROGRESS}') \
             ORDER BY filed_at DESC, case_id DESC LIMIT 101"
                .to_owned(),
        ),
        (
            "ledger, township by month",
            "SELECT org, date_trunc('month', day), sum(filed) FROM ledger_daily WHERE township = '990101007' \
             AND org_kind = 'township' AND day BETWEEN '2025-01-01' AND '2025-12-31' GROUP BY 1, 2"
                .to_owned(),
        ),
    ];
    for (label, sql) in plans {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}")))
            .fetch_all(&pool)
            .await?;
        println!("\nEXPLAIN ANALYZE, {label}:");
        for line in plan.iter().filter(|l| !l.trim_start().starts_with("Filter") || l.len() < 140) {
            println!("  {line}");
        }
    }
    projection.stop().await?;
    Ok(())
}
