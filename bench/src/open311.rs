//! The Open311 gateway's `POST requests.xml` beside intake's `FileCase` over
//! gRPC, in one run on one nats-server (fsync always): the same filings (a
//! resident's name, phone and e-mail sealed, the grid named), at the same
//! concurrency, the phases alternated so drift hits both. The load runs on
//! a runtime of its own; the gateway and intake share this process, as on
//! one machine.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use gridcase_domain::CaseId;
use gridcase_proto::intake::v1 as intake;
use gridcase_tests::fixtures::{filing, intake_client};
use gridcase_tests::open311::TestOpen311;
use gridcase_tests::{NatsServer, TestIntake};

use crate::{Figures, nats_version, run_phase};

pub async fn run(cases: usize, concurrency: usize, warmup: usize, rounds: usize) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    println!(
        "nats-server {} (file storage, sync_interval: always), store {}",
        nats_version(),
        nats.store_dir().display()
    );
    let intake = TestIntake::spawn(&nats.url()).await;
    let gateway = TestOpen311::spawn(TestOpen311::config(&intake.endpoint(), "http://127.0.0.1:9")).await;
    println!(
        "{cases} filings per phase, concurrency {concurrency}, {rounds} rounds of each, {warmup} warm-up calls each\n"
    );
    let endpoint = intake.endpoint();
    let base = gateway.base();
    let key = gridcase_tests::identity::fixmystreet().key;

    let figures = on_client_thread(move || async move {
        let grpc = intake_client(endpoint).await;
        let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let post = |_: usize| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            post(&http, &base, &key, n)
        };
        run_phase("warm-up (gRPC)", warmup, concurrency, |_| file(&grpc)).await?;
        run_phase("warm-up (Open311)", warmup, concurrency, post).await?;
        let mut all = Vec::new();
        for _ in 0..rounds {
            all.push(run_phase("intake FileCase (gRPC)", cases, concurrency, |_| file(&grpc)).await?);
            all.push(run_phase("Open311 POST requests.xml", cases, concurrency, post).await?);
        }
        Ok(all)
    })
    .await?;

    println!("{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}", "phase", "count", "per sec", "p50 ms", "p99 ms", "max ms");
    for row in &figures {
        row.print();
    }
    let merged = |label: &'static str| {
        let rows: Vec<&Figures> = figures.iter().filter(|f| f.label == label).collect();
        Figures {
            label,
            count: rows.iter().map(|f| f.count).sum(),
            elapsed: rows.iter().map(|f| f.elapsed).sum(),
            latencies: rows.iter().flat_map(|f| f.latencies.iter().copied()).collect(),
        }
    };
    let (grpc, http) = (merged("intake FileCase (gRPC)"), merged("Open311 POST requests.xml"));
    println!("\nall rounds:");
    grpc.print();
    http.print();
    println!(
        "Open311 / gRPC throughput: {:.2} (goal >= 0.7); p99 {:.1} ms vs {:.1} ms",
        http.rate() / grpc.rate(),
        http.percentile(0.99).as_secs_f64() * 1e3,
        grpc.percentile(0.99).as_secs_f64() * 1e3
    );
    gateway.stop().await?;
    intake.stop().await?;
    Ok(())
}

const CONTACT: (&str, &str, &str) = ("王秀英", "13812345678", "wang.xiuying@example.org");

async fn file(
    client: &gridcase_proto::intake::v1::intake_service_client::IntakeServiceClient<tonic::transport::Channel>,
) -> anyhow::Result<Duration> {
    static TOKEN: std::sync::OnceLock<gridcase_tests::identity::Bearer> = std::sync::OnceLock::new();
    let mut client = client.clone();
    let mut request = filing(CaseId::new_v7());
    request.resident_contact =
        Some(intake::ResidentContact { name: CONTACT.0.into(), phone: CONTACT.1.into(), email: CONTACT.2.into() });
    let mut request = tonic::Request::new(request);
    TOKEN.get_or_init(|| gridcase_tests::fixtures::worker().bearer()).attach(&mut request);
    let started = Instant::now();
    client.file_case(request).await.context("file case")?;
    Ok(started.elapsed())
}

async fn post(http: &reqwest::Client, base: &str, key: &str, n: usize) -> anyhow::Result<Duration> {
    let reference = format!("bench-{n}-{}", std::process::id());
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("api_key", key),
            ("service_code", "0204"),
            ("lat", "30.2741"),
            ("long", "120.1551"),
            ("attribute[grid_code]", "990101001001001"),
            ("description", "楼顶漏水，三号楼"),
            ("first_name", "王"),
            ("last_name", "秀英"),
            ("phone", CONTACT.1),
            ("email", CONTACT.2),
            ("attribute[fixmystreet_id]", &reference),
            ("attribute[request_kind]", "HELP"),
        ])
        .finish();
    let request =
        http.post(format!("{base}requests.xml")).header("content-type", "application/x-www-form-urlencoded").body(body);
    let started = Instant::now();
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.as_u16() == 201, "the gateway answered {status}: {text}");
    Ok(started.elapsed())
}

async fn on_client_thread<F, Fut>(phase: F) -> anyhow::Result<Vec<Figures>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Figures>>> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("load-client")
            .enable_all()
            .build()
            .context("the load client's runtime")?;
        let figures = runtime.block_on(async move { tokio::spawn(phase()).await? });
        runtime.shutdown_background();
        figures
    })
    .await?
}
