//! `city-year field`: the grid worker's calls on the read models that
//! `city-year rebuild` left (a year of a city, 2.5 M cases by default),
//! through a projection service on the data set, one call at a time, each
//! beside the same SQL sent straight to PostgreSQL (the raw baseline):
//!
//! * `FindSimilarCases` at the points of 200 open cases (50 m, 30 days,
//!   the worker of the case's grid asking);
//! * `ListMyCases` of a worker whose grid has 300 more open cases, each with
//!   a photo, filed for the purpose through intake on the data set's stream
//!   (appended to the data set: a later run finds them there too): a full
//!   sync (every page) and a sync after the cursor with nothing changed,
//!   with the bytes each answer takes on the wire.

use std::sync::Arc;
use std::time::Instant;

use gridcase_domain::CaseId;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as intake;
use gridcase_proto::query::v1 as api;
use gridcase_tests::{Identity, NatsServer, TestIntake, TestProjection, query_client, stream_end};
use prost::Message as _;
use sqlx::Row as _;

use crate::city_year::{self, Measure};
use crate::run_phase;

const SAMPLES: usize = 200;
const FIELD_CASES: usize = 300;

/// The queries exactly as the query service sends them (the baselines).
use gridcase_projection::query::{mine::SQL as MINE_SQL, nearby::SQL as NEARBY_SQL};

pub async fn run(options: Measure, admin_url: &str) -> anyhow::Result<()> {
    let data = city_year::load_manifest(&options.dir)?;
    let nats = NatsServer::start_with_store(&city_year::store(&options.dir));
    let url = city_year::database_url(admin_url)?;
    let clock = gridcase_process::ManualTimeSource::new(data.end);
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &url), Arc::new(clock.clone())).await;
    projection.caught_up_to(stream_end(&nats).await).await;
    let pool = projection.pool.clone();
    let (cases, open): (i64, i64) = {
        let row = sqlx::query(
            "SELECT count(*), count(*) FILTER (WHERE state NOT IN ('CLOSED', 'VOIDED', 'CANCELLED')) FROM cases",
        )
        .fetch_one(&pool)
        .await?;
        (row.get(0), row.get(1))
    };
    println!("read models of {cases} cases ({open} open at the year's end, {})", data.end);

    // FindSimilarCases at the points of open cases filed in the last 30 days.
    let since = data.end.as_microsecond() - 30 * 86_400_000_000;
    let points: Vec<(String, String, i32, i32)> = sqlx::query(
        "SELECT grid, category, latitude_e6, longitude_e6 FROM cases \
         WHERE state NOT IN ('CLOSED', 'VOIDED', 'CANCELLED') AND latitude_e6 IS NOT NULL \
           AND filed_at >= ts_from_micros($2) \
         ORDER BY md5(case_id::text) LIMIT $1",
    )
    .bind(SAMPLES as i64)
    .bind(since)
    .fetch_all(&pool)
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect();
    anyhow::ensure!(!points.is_empty(), "open cases with a point");
    // A small data set may have fewer open cases than samples: each of them.
    let samples = points.len();
    let mut clients = Vec::new();
    for (grid, ..) in &points {
        clients.push(
            query_client(projection.endpoint(), &Identity::new("gw-field", "grid_worker", "cc-field", grid)).await,
        );
    }
    let found = std::sync::atomic::AtomicUsize::new(0);
    let mut rows = vec![
        run_phase("FindSimilarCases, 50 m (gRPC)", samples, 1, |i| {
            let mut client = clients[i].clone();
            let (_, category, lat, lon) = points[i].clone();
            let found = &found;
            async move {
                let request = api::FindSimilarCasesRequest {
                    location: Some(common::Location {
                        latitude: f64::from(lat) / 1e6,
                        longitude: f64::from(lon) / 1e6,
                        address: String::new(),
                    }),
                    category_code: category,
                    radius_m: 50,
                    days: 30,
                    limit: 20,
                };
                let started = Instant::now();
                let answer = client.find_similar_cases(request).await?.into_inner();
                let elapsed = started.elapsed();
                anyhow::ensure!(!answer.cases.is_empty(), "the case asked about is itself near");
                found.fetch_add(answer.cases.len(), std::sync::atomic::Ordering::Relaxed);
                Ok(elapsed)
            }
        })
        .await?,
    ];
    let nearby_raw = |i: usize| {
        let (grid, category, lat, lon) = points[i].clone();
        sqlx::query(NEARBY_SQL)
            .bind(f64::from(lon) / 1e6)
            .bind(f64::from(lat) / 1e6)
            .bind(50.0_f64)
            .bind(grid)
            .bind(category)
            .bind(since)
            .bind(20_i64)
    };
    rows.push(
        run_phase("  the same SQL, raw", samples, 1, |i| {
            let query = nearby_raw(i);
            let pool = pool.clone();
            async move {
                let started = Instant::now();
                query.fetch_all(&pool).await?;
                Ok(started.elapsed())
            }
        })
        .await?,
    );

    // ListMyCases: 300 more open cases in one grid, each with a photo (a
    // second run finds the ones an earlier run filed and files no more).
    let earlier: Option<(String, i64)> = sqlx::query(
        "SELECT grid, count(*) FROM cases WHERE reported_by LIKE 'gw-field-%' GROUP BY grid ORDER BY 2 DESC LIMIT 1",
    )
    .fetch_optional(&pool)
    .await?
    .map(|r| (r.get(0), r.get(1)));
    let (grid, filed_before) = earlier.unwrap_or_else(|| (points[0].0.clone(), 0));
    let mut intake_config = TestIntake::config(&nats.url());
    intake_config.reference_dir = city_year::reference_dir(&options.dir);
    let intake = TestIntake::spawn_with(intake_config, Arc::new(clock.clone())).await;
    let photo = gridcase_tests::fixtures::photo_png(1600, 1200);
    let worker = |n: usize| Identity::new(&format!("gw-field-{n}"), "grid_worker", "cc-field", &grid);
    let mut filer = gridcase_tests::fixtures::intake_client(intake.endpoint()).await;
    let attachment = {
        let parts = gridcase_tests::fixtures::upload_parts("image/png", &photo, 64 * 1024);
        filer
            .upload_attachment(worker(0).request(tokio_stream::iter(parts)))
            .await?
            .into_inner()
            .attachment
            .expect("a reference")
    };
    let seen = gridcase_proto::convert::timestamp_to_proto(data.end - jiff::SignedDuration::from_hours(1));
    for n in (filed_before as usize)..FIELD_CASES {
        let request = intake::FileCaseRequest {
            case_id: CaseId::new_v7().to_string(),
            grid_code: grid.clone(),
            category_code: "0201".into(),
            description: "路灯不亮，灯杆倾斜，已拍照".into(),
            location: Some(common::Location { latitude: 25.1, longitude: 102.8, address: String::new() }),
            reported_at: Some(seen),
            attachments: vec![attachment.clone()],
            ..Default::default()
        };
        // A tenth of them by the worker who syncs, the rest by colleagues.
        filer.file_case(worker(n % 10).request(request)).await?;
    }
    projection.caught_up_to(stream_end(&nats).await).await;
    let me = worker(0);
    let in_grid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM cases WHERE grid LIKE $1 AND state NOT IN ('CLOSED', 'VOIDED', 'CANCELLED')",
    )
    .bind(format!("{grid}%"))
    .fetch_one(&pool)
    .await?;
    let mine: i64 = sqlx::query_scalar("SELECT count(*) FROM cases WHERE reported_by = $1")
        .bind(me.subject())
        .fetch_one(&pool)
        .await?;
    println!(
        "\nListMyCases of {}: {in_grid} open cases in grid {grid} ({FIELD_CASES} of them filed for it, each with a photo), {mine} filed by them",
        me.subject()
    );
    let client = query_client(projection.endpoint(), &me).await;
    let largest = std::sync::atomic::AtomicUsize::new(0);
    let cursor = std::sync::Mutex::new(String::new());
    rows.push(
        run_phase("ListMyCases, first sync (gRPC)", SAMPLES, 1, |_| {
            let mut client = client.clone();
            let (largest, cursor) = (&largest, &cursor);
            async move {
                let started = Instant::now();
                let (mut next, mut bytes) = (String::new(), 0);
                loop {
                    let page = client
                        .list_my_cases(api::ListMyCasesRequest { cursor: next.clone(), page_size: 0 })
                        .await?
                        .into_inner();
                    bytes += page.encoded_len();
                    next = page.cursor.clone();
                    if !page.more {
                        break;
                    }
                }
                let elapsed = started.elapsed();
                largest.fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
                *cursor.lock().expect("the cursor") = next;
                Ok(elapsed)
            }
        })
        .await?,
    );
    let after = cursor.lock().expect("the cursor").clone();
    rows.push(
        run_phase("ListMyCases, nothing new (gRPC)", SAMPLES, 1, |_| {
            let mut client = client.clone();
            let after = after.clone();
            async move {
                let started = Instant::now();
                let page = client.list_my_cases(api::ListMyCasesRequest { cursor: after, page_size: 0 }).await?;
                anyhow::ensure!(page.get_ref().cases.is_empty(), "nothing changed");
                Ok(started.elapsed())
            }
        })
        .await?,
    );
    rows.push(
        run_phase("  first sync's SQL, raw", SAMPLES, 1, |_| {
            let (pool, subject, grid) = (pool.clone(), me.subject().to_owned(), grid.clone());
            async move {
                let started = Instant::now();
                let mut cursor = 0_i64;
                loop {
                    let rows = sqlx::query(MINE_SQL)
                        .bind(&subject)
                        .bind(cursor)
                        .bind(format!("{grid}%"))
                        .bind(201_i64)
                        .fetch_all(&pool)
                        .await?;
                    let more = rows.len() > 200;
                    cursor = rows.iter().take(200).last().map_or(cursor, |r| r.get::<i64, _>(14));
                    if !more {
                        break;
                    }
                }
                Ok(started.elapsed())
            }
        })
        .await?,
    );
    println!("\n{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}", "call", "count", "per sec", "p50 ms", "p99 ms", "max ms");
    for row in &rows {
        row.print();
    }
    println!(
        "\nFindSimilarCases answered {:.1} cases on average; ListMyCases' first sync took {} bytes on the wire (goal < 100 KB), photos referenced by digest",
        found.load(std::sync::atomic::Ordering::Relaxed) as f64 / samples as f64,
        largest.load(std::sync::atomic::Ordering::Relaxed)
    );
    let (lon, lat) = (f64::from(points[0].3) / 1e6, f64::from(points[0].2) / 1e6);
    let explain = NEARBY_SQL
        .replace("$1", &lon.to_string())
        .replace("$2", &lat.to_string())
        .replace("$3", "50")
        .replace("$4", &format!("'{}'", points[0].0))
        .replace("$5", &format!("'{}'", points[0].1))
        .replace("$6", &since.to_string())
        .replace("$7", "20");
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, COSTS OFF) {explain}")))
        .fetch_all(&pool)
        .await?;
    println!("\nEXPLAIN ANALYZE, FindSimilarCases:");
    for line in plan {
        println!("  {line}");
    }
    intake.stop().await?;
    projection.stop().await?;
    Ok(())
}
