//! The console under load, on its own nats-server and database, with the
//! console as its own process (`gridcase-web`, release build) so that its
//! memory is its own:
//!
//! 1. the board's first render with N open cases in the township (the page
//!    over HTTP, beside the CountCases call it makes, straight over gRPC),
//!    and once in headless Chromium (navigation until the feed is live);
//! 2. the desk's first page of overdue cases over a large case table,
//!    beside ListCases straight over gRPC;
//! 3. B boards connected at once (Server-Sent Events) while filings arrive
//!    at R per second: from the filing call to each board seeing it, beside
//!    a raw WatchCases subscriber of the same filings;
//! 4. the console's resident memory, sampled while it streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridcase_domain::CaseId;
use gridcase_process::SystemTimeSource;
use gridcase_proto::common::v1::CaseState;
use gridcase_proto::query::v1 as api;
use gridcase_tests::fixtures::{filing, intake_client, worker};
use gridcase_tests::{Identity, NatsServer, TestDatabase, TestIntake, TestProjection};
use http_body_util::BodyExt as _;

use crate::{Figures, nats_version, run_phase};

pub struct Options {
    pub open_cases: usize,
    pub table_cases: usize,
    pub boards: usize,
    pub rate: u32,
    pub stream_seconds: u64,
}

const TOWNSHIP: &str = "990101001";

/// Synthetic rows in the read model: `open` open cases in the township
/// (filed over the last ten days, a third past their resolve deadline), and
/// `closed` closed ones spread over the county's year; each with a point
/// over the township's grids, so the board's map carries them.
async fn fill(pool: &sqlx::PgPool, open: usize, closed: usize) -> anyhow::Result<()> {
    let insert = "INSERT INTO cases (case_id, version, last_sequence, state, county, township, village, grid, category, description, \
         reported_by, supervision, urgent, filed_at, acknowledge_due, resolve_due, marks, approved_extension_days, hold_requested, \
         returns, reworks, reopenings, tier, unit, last_hash, latitude_e6, longitude_e6) \
         SELECT id, 3, 0, $2, '990101', t, t || '001', t || '001001', '0201', 'synthetic', 'bench', \
         CASE WHEN i % 17 = 0 THEN 'YELLOW_CARD' ELSE 'NONE' END, false, \
         f, f + interval '8 hours', f + interval '5 days', ARRAY[]::text[], 0, false, 0, 0, 0, 'NORMAL', 'unit.utilities.990101', md5(id::text), \
         30240000 + (i * 104729 % 70000)::int, 120110000 + (i * 7919 % 80000)::int \
         FROM UNNEST($1::uuid[]) WITH ORDINALITY AS u(id, i), \
         LATERAL (SELECT CASE WHEN $2 = 'IN_PROGRESS' THEN '990101001' ELSE '990101' || lpad((1 + i % 3)::text, 3, '0') END AS t, \
                         CASE WHEN $2 = 'IN_PROGRESS' THEN now() - ((i % 14400) || ' minutes')::interval \
                              ELSE now() - ((i % 525600) || ' minutes')::interval END AS f) AS filed";
    for (state, count) in [("IN_PROGRESS", open), ("CLOSED", closed)] {
        for chunk in (0..count).collect::<Vec<_>>().chunks(200_000) {
            sqlx::query(insert)
                .bind(chunk.iter().map(|_| uuid::Uuid::now_v7()).collect::<Vec<_>>())
                .bind(state)
                .execute(pool)
                .await?;
        }
    }
    sqlx::query("ANALYZE cases").execute(pool).await?;
    Ok(())
}

/// The console as a process of its own, in front of the in-process services.
struct WebProcess {
    child: std::process::Child,
    addr: String,
}

impl WebProcess {
    fn start(intake: &str, query: &str) -> anyhow::Result<Self> {
        let bin = std::env::current_exe()?.with_file_name("gridcase-web");
        anyhow::ensure!(bin.exists(), "{} is missing: cargo build --release --bin gridcase-web", bin.display());
        let port = gridcase_tests::free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(&bin)
            .env("GRIDCASE_WEB_ADDR", &addr)
            .env("GRIDCASE_WEB_INTAKE_URL", intake)
            .env("GRIDCASE_WEB_QUERY_URL", query)
            .env("GRIDCASE_WEB_NO_METRICS", "true")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()?;
        Ok(Self { child, addr })
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for WebProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<bytes::Bytes>,
>;

fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(512)
        .build_http()
}

/// GET `path` as the session `token`: the status and the whole body.
async fn get(client: &HttpClient, addr: &str, path: &str, token: &str) -> anyhow::Result<(u16, bytes::Bytes)> {
    let request = http::Request::get(format!("http://{addr}{path}"))
        .header(http::header::COOKIE, format!("gridcase_session={token}"))
        .body(http_body_util::Empty::new())?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

fn table_header() {
    println!("\n{:<44} {:>8} {:>10} {:>10} {:>10} {:>10}", "phase", "count", "per sec", "p50 ms", "p99 ms", "max ms");
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await;
    println!(
        "nats-server {} (fsync always); PostgreSQL on 127.0.0.1; the console as its own process\n",
        nats_version()
    );
    let intake = TestIntake::spawn(&nats.url()).await;
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(SystemTimeSource)).await;
    let started = Instant::now();
    fill(&projection.pool, options.open_cases, options.table_cases).await?;
    println!(
        "read model: {} open cases in township {TOWNSHIP}, {} closed cases in the county ({:.1}s)",
        options.open_cases,
        options.table_cases,
        started.elapsed().as_secs_f64()
    );
    let web = WebProcess::start(&intake.endpoint(), &projection.endpoint())?;
    let centre = Identity::new("bench-centre", "command_centre", "cc-990101001", TOWNSHIP);
    let token = centre.token();
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&http, &web.addr, "/healthz", &token).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the console did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 1. The board: the page, beside the gRPC call it is built around.
    let query = gridcase_tests::query_client(projection.endpoint(), &centre).await;
    let counts =
        query.clone().count_cases(api::CountCasesRequest { region_prefix: TOWNSHIP.into() }).await?.into_inner();
    anyhow::ensure!(counts.open as usize >= options.open_cases, "CountCases sees {} open cases", counts.open);
    let raw_counts = run_phase("CountCases over gRPC (baseline)", 100, 1, |_| {
        let mut query = query.clone();
        async move {
            let started = Instant::now();
            query.count_cases(api::CountCasesRequest { region_prefix: TOWNSHIP.into() }).await?;
            Ok(started.elapsed())
        }
    })
    .await?;
    let board = run_phase("GET / (the board), whole page", 100, 1, |_| {
        let (http, addr, token) = (http.clone(), web.addr.clone(), token.clone());
        async move {
            let started = Instant::now();
            let (status, body) = get(&http, &addr, "/", &token).await?;
            anyhow::ensure!(status == 200 && body.len() > 1000, "the board answered {status}");
            Ok(started.elapsed())
        }
    })
    .await?;

    // 2. The desk's first page of overdue cases.
    let raw_list = run_phase("ListCases overdue, 50 (baseline)", 100, 1, |_| {
        let mut query = query.clone();
        async move {
            let started = Instant::now();
            // The request the desk sends: the open states, overdue, soonest
            // deadline first, 50.
            let open = [CaseState::Reported, CaseState::Registered, CaseState::Dispatched, CaseState::InProgress]
                .into_iter()
                .chain([CaseState::OnHold, CaseState::Resolved])
                .map(|s| s as i32)
                .collect();
            let request = api::ListCasesRequest {
                region_prefix: TOWNSHIP.into(),
                states: open,
                overdue_only: true,
                page_size: 50,
                order: api::ListOrder::DueSoonest as i32,
                ..Default::default()
            };
            let page = query.list_cases(request).await?.into_inner();
            anyhow::ensure!(page.cases.len() == 50, "a full page of overdue cases");
            Ok(started.elapsed())
        }
    })
    .await?;
    let desk = run_phase("GET /desk (overdue, first page)", 100, 1, |_| {
        let (http, addr, token) = (http.clone(), web.addr.clone(), token.clone());
        async move {
            let started = Instant::now();
            let (status, body) = get(&http, &addr, "/desk", &token).await?;
            anyhow::ensure!(status == 200 && body.len() > 10_000, "the desk answered {status}");
            Ok(started.elapsed())
        }
    })
    .await?;
    table_header();
    for figures in [&raw_counts, &board, &raw_list, &desk] {
        figures.print();
    }

    // 1b. The board in a real browser: from navigation until the feed is live.
    match browser_render(&web.addr, &centre).await {
        Ok(times) => println!(
            "\nheadless Chromium, the board from navigation until its feed is live: first {:.0} ms, then {}",
            times[0].as_secs_f64() * 1e3,
            times[1..].iter().map(|t| format!("{:.0}", t.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(", ")
        ),
        Err(error) => println!("\nheadless Chromium not measured: {error:#}"),
    }

    // 3. B boards while filings arrive at R per second.
    stream(&options, &web, &intake, &projection, &centre, &token, &http).await?;
    Ok(())
}

async fn browser_render(addr: &str, centre: &Identity) -> anyhow::Result<Vec<Duration>> {
    let browser = gridcase_tests::Browser::start().await;
    browser.goto(&format!("http://{addr}/healthz")).await;
    let cookie = fantoccini::cookies::Cookie::parse(format!(
        "gridcase_session={}; Path=/; Domain=127.0.0.1; SameSite=Strict; HttpOnly",
        centre.token()
    ))?;
    browser.client.add_cookie(cookie).await?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        browser.goto(&format!("http://{addr}/")).await;
        while !browser.has("body[data-live=on]").await {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "the board did not go live");
        }
        times.push(started.elapsed());
    }
    browser.close().await;
    Ok(times)
}

/// One board's connection: every `filed` change's case id and when it came.
async fn board_connection(
    http: HttpClient,
    addr: String,
    token: String,
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let request = http::Request::get(format!("http://{addr}/live?township={TOWNSHIP}"))
        .header(http::header::COOKIE, format!("gridcase_session={token}"))
        .header(http::header::ACCEPT, "text/event-stream")
        .body(http_body_util::Empty::new())?;
    let mut body = http.request(request).await?.into_body();
    let mut pending = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        let received = Instant::now();
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if event.contains("event: ready") {
                let _ = ready.send(()).await;
            }
            if let Some(line) = event.lines().find(|l| l.starts_with("data: {")) {
                let change: serde_json::Value = serde_json::from_str(&line[6..])?;
                if change["event_type"] == "filed" {
                    let case_id = change["case_id"].as_str().unwrap_or_default();
                    if let Some(at) = sent.lock().unwrap().get(case_id) {
                        latencies.lock().unwrap().push(received - *at);
                    }
                }
            }
        }
    }
    Ok(())
}

async fn stream(
    options: &Options,
    web: &WebProcess,
    intake: &TestIntake,
    projection: &TestProjection,
    centre: &Identity,
    token: &str,
    http: &HttpClient,
) -> anyhow::Result<()> {
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let board_latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let raw_latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(options.boards + 1);
    let rss_before = web.rss_kib();
    let mut boards = Vec::new();
    for _ in 0..options.boards {
        boards.push(tokio::spawn(board_connection(
            http.clone(),
            web.addr.clone(),
            token.to_owned(),
            sent.clone(),
            board_latencies.clone(),
            ready_tx.clone(),
        )));
    }
    for _ in 0..options.boards {
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("a board"))?;
    }
    // The baseline: one raw WatchCases subscriber of the same filings.
    let mut watch = gridcase_tests::query_client(projection.endpoint(), centre)
        .await
        .watch_cases(api::WatchCasesRequest { township: TOWNSHIP.into(), after_sequence: 0 })
        .await?
        .into_inner();
    let raw = {
        let (sent, raw_latencies) = (sent.clone(), raw_latencies.clone());
        tokio::spawn(async move {
            while let Ok(Some(change)) = watch.message().await {
                let received = Instant::now();
                if change.event_type == "filed"
                    && let Some(at) = sent.lock().unwrap().get(&change.case_id)
                {
                    raw_latencies.lock().unwrap().push(received - *at);
                }
            }
        })
    };
    println!(
        "\n{} boards connected (console RSS {} MiB); filing {} cases per second for {} s",
        options.boards,
        rss_before / 1024,
        options.rate,
        options.stream_seconds
    );
    let client = intake_client(intake.endpoint()).await;
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / options.rate);
    let total = options.rate as u64 * options.stream_seconds;
    let mut rss = Vec::new();
    let started = Instant::now();
    let mut filings = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let (mut client, sent) = (client.clone(), sent.clone());
        filings.push(tokio::spawn(async move {
            let case_id = CaseId::new_v7();
            sent.lock().unwrap().insert(case_id.to_string(), Instant::now());
            client.file_case(worker().request(filing(case_id))).await.map(|_| ())
        }));
        if i % (options.rate as u64 * 10) == 0 {
            let sample = (started.elapsed().as_secs(), web.rss_kib());
            // Once a minute on stderr too, so a long run shows its course as it goes.
            if sample.0 % 60 < 10 {
                eprintln!("{:>5} s: console RSS {} MiB", sample.0, sample.1 / 1024);
            }
            rss.push(sample);
        }
    }
    for filing in filings {
        filing.await??;
    }
    let elapsed = started.elapsed();
    // Wait until every board has seen every filing (or give up after 30 s).
    let expected = total as usize * options.boards;
    let deadline = Instant::now() + Duration::from_secs(30);
    while board_latencies.lock().unwrap().len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rss.push((started.elapsed().as_secs(), web.rss_kib()));
    raw.abort();
    for board in boards {
        board.abort();
    }
    let seen = board_latencies.lock().unwrap().len();
    let figures = |label, latencies: &Arc<Mutex<Vec<Duration>>>| {
        let latencies = latencies.lock().unwrap().clone();
        Figures { label, count: latencies.len(), elapsed, latencies }
    };
    table_header();
    figures("raw WatchCases: filing → change (baseline)", &raw_latencies).print();
    figures("boards (SSE): filing → change on each board", &board_latencies).print();
    println!(
        "{seen} of {expected} board deliveries seen ({} filings × {} boards); console RSS over the run (s: MiB): {}",
        total,
        options.boards,
        rss.iter().map(|(s, kib)| format!("{s}: {}", kib / 1024)).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
