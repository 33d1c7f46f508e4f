//! Intake with group commit beside single appends, beside raw JetStream
//! publishing (single and atomic batches of the same payloads, at the batch
//! size group commit reached), in one run on one nats-server (fsync always).
//!
//! 1. intake, group commit (the shipped defaults unless flags say otherwise);
//! 2. intake, single appends (`--group-commit-events 1`);
//! 3. raw single publishes with the per-case expectation;
//! 4. raw atomic batches of the mean batch size of phase 1, as many in
//!    flight as group commit allows;
//! 5. one case at a time through each intake: the latency group commit adds
//!    at low load.
//!
//! The gRPC load client runs on a thread of its own (its own runtime and
//! connection), so each phase can say where the CPU went: the nats-server,
//! the intake service (the rest of this process) and the client.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use gridcase_domain::CaseId;
use gridcase_eventlog::{EventLog, GroupCommit, StreamSettings};
use gridcase_tests::fixtures::{filing, intake_client};
use gridcase_tests::{NatsServer, TestIntake};

use crate::raw::{Raw, publish, publish_batch, raw_event, writes_between};
use crate::{Figures, cpu, nats_version, run_phase};
use gridcase_proto::intake::v1::intake_service_client::IntakeServiceClient;
use tonic::transport::Channel;

pub struct Options {
    pub cases: usize,
    pub concurrency: usize,
    pub warmup: usize,
    pub group_commit: GroupCommit,
    /// Filings per second of the open-loop phase.
    pub rate: f64,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let Options { cases, concurrency, warmup, group_commit, rate } = options;
    let nats = NatsServer::start();
    println!(
        "nats-server {} (file storage, sync_interval: always), store {}",
        nats_version(),
        nats.store_dir().display()
    );
    println!(
        "{cases} cases per phase, concurrency {concurrency}, {warmup} warm-up calls; group commit: up to {} events, {} in flight, wait {:?}\n",
        group_commit.max_events, group_commit.max_in_flight, group_commit.max_wait
    );
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;

    let batched = spawn_intake(&nats, group_commit).await;
    let single = spawn_intake(&nats, GroupCommit { max_events: 1, ..group_commit }).await;
    let batched_client = intake_client(batched.endpoint()).await;
    let single_client = intake_client(single.endpoint()).await;
    let pid = nats.pid();
    let mut cpu_table: Vec<(&'static str, usize, cpu::Usage, f64)> = Vec::new();

    let endpoint = batched.endpoint();
    from_client_thread(endpoint.clone(), pid, move |client| async move {
        run_phase("warm-up", warmup, concurrency, |_| file(&client)).await
    })
    .await?;
    let start = log.last_sequence().await? + 1;
    let grouped = from_client_thread(endpoint.clone(), pid, move |client| async move {
        run_phase("intake FileCase, group commit", cases, concurrency, |_| file(&client)).await
    })
    .await?;
    let end = log.last_sequence().await?;
    let (writes, events) = writes_between(&log, start, end).await?;
    let mean_batch = events as f64 / writes.max(1) as f64;

    let open_loop = from_client_thread(endpoint, pid, move |client| async move {
        let filing = move || {
            let client = client.clone();
            async move { file(&client).await }
        };
        at_rate(cases, rate, filing).await
    })
    .await?;

    let endpoint = single.endpoint();
    from_client_thread(endpoint.clone(), pid, move |client| async move {
        run_phase("warm-up", warmup, concurrency, |_| file(&client)).await
    })
    .await?;
    let singles = from_client_thread(endpoint, pid, move |client| async move {
        run_phase("intake FileCase, single appends", cases, concurrency, |_| file(&client)).await
    })
    .await?;
    for measured in [&grouped, &open_loop, &singles] {
        cpu_table.push((measured.figures.label, measured.figures.count, measured.usage, measured.client));
    }
    let (grouped, open_loop, singles) = (grouped.figures, open_loop.figures, singles.figures);

    let js = log.context().clone();
    let mut payloads = (0..2 * (cases + warmup)).map(|_| raw_event());
    let publish = |raw: Raw| {
        let js = js.clone();
        async move {
            let started = Instant::now();
            publish(&js, raw.0, raw.1, raw.2, raw.3).await?;
            Ok::<Duration, anyhow::Error>(started.elapsed())
        }
    };
    let warm: Vec<Raw> = payloads.by_ref().take(warmup).collect();
    let mut warm = warm.into_iter();
    run_phase("warm-up", warmup, concurrency, |_| publish(warm.next().expect("payload"))).await?;
    let raw: Vec<Raw> = payloads.by_ref().take(cases).collect();
    let mut raw = raw.into_iter();
    let meter = cpu::Meter::start(pid);
    let raw_single =
        run_phase("raw JetStream publish, single", cases, concurrency, |_| publish(raw.next().expect("payload")))
            .await?;
    let usage = meter.stop();
    cpu_table.push((raw_single.label, cases, cpu::Usage { own: 0.0, ..usage }, usage.own));

    let batch_size = (mean_batch.round() as usize).clamp(1, 1000);
    let batches: Vec<Vec<Raw>> =
        payloads.by_ref().take(cases).collect::<Vec<_>>().chunks(batch_size).map(<[Raw]>::to_vec).collect();
    let batch_count = batches.len();
    let mut batches = batches.into_iter();
    let meter = cpu::Meter::start(pid);
    let raw_batched = run_phase("raw JetStream atomic batches", batch_count, group_commit.max_in_flight, |_| {
        let js = js.clone();
        let batch = batches.next().expect("batch");
        async move {
            let started = Instant::now();
            publish_batch(&js, batch).await?;
            Ok::<Duration, anyhow::Error>(started.elapsed())
        }
    })
    .await?;
    // Per event, for comparison with the per-case figures.
    let raw_batched = Figures { count: cases, ..raw_batched };
    let usage = meter.stop();
    cpu_table.push((raw_batched.label, cases, cpu::Usage { own: 0.0, ..usage }, usage.own));

    let one_grouped = run_phase("one at a time, group commit", 500, 1, |_| file(&batched_client)).await?;
    let one_single = run_phase("one at a time, single appends", 500, 1, |_| file(&single_client)).await?;

    println!("{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}", "phase", "count", "per sec", "p50 ms", "p99 ms", "max ms");
    grouped.print();
    open_loop.print();
    singles.print();
    raw_single.print();
    println!("{:<34} (batches of {batch_size}: latency per batch)", "");
    raw_batched.print();
    one_grouped.print();
    one_single.print();
    println!(
        "\ngroup commit: {events} events in {writes} writes (mean {mean_batch:.1} events per write)\n\
         intake, group commit = {:.2} x single appends, {:.1}% of raw atomic batches of {batch_size}, {:.1}% of raw single publishes\n\
         latency added at low load (p50, one case at a time): {:+.2} ms",
        grouped.rate() / singles.rate(),
        100.0 * grouped.rate() / raw_batched.rate(),
        100.0 * grouped.rate() / raw_single.rate(),
        (one_grouped.percentile(0.5).as_secs_f64() - one_single.percentile(0.5).as_secs_f64()) * 1e3,
    );
    println!(
        "\nwhere the CPU went (cores busy on average over the phase; this machine has {}):",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} | {:>22}",
        "phase", "nats", "service", "client", "total", "us CPU per case n/s/c"
    );
    for (label, count, usage, client) in cpu_table {
        let service = (usage.own - client).max(0.0);
        let cores = |seconds: f64| seconds / usage.seconds;
        let per_case = |seconds: f64| seconds * 1e6 / count as f64;
        println!(
            "{label:<34} {:>8.2} {:>8.2} {:>8.2} {:>8.2} | {:>6.0} / {:>6.0} / {:>6.0}",
            cores(usage.nats),
            cores(service),
            cores(client),
            cores(usage.nats + usage.own),
            per_case(usage.nats),
            per_case(service),
            per_case(client),
        );
    }
    batched.stop().await?;
    single.stop().await?;
    Ok(())
}

/// One filing, timed. The worker's token is minted once, as a mobile client
/// holds its token for the hour it is valid.
async fn file(client: &IntakeServiceClient<Channel>) -> anyhow::Result<Duration> {
    static TOKEN: std::sync::OnceLock<gridcase_tests::identity::Bearer> = std::sync::OnceLock::new();
    let mut client = client.clone();
    let mut request = tonic::Request::new(filing(CaseId::new_v7()));
    TOKEN.get_or_init(|| gridcase_tests::fixtures::worker().bearer()).attach(&mut request);
    let started = Instant::now();
    client.file_case(request).await.context("file case")?;
    Ok(started.elapsed())
}

/// A phase driven by a load client of its own and what it cost in CPU.
struct Measured {
    figures: Figures,
    usage: cpu::Usage,
    /// CPU seconds of the client thread.
    client: f64,
}

/// The name of the load client's threads.
const CLIENT_THREADS: &str = "load-client";

/// Run `phase` on a runtime of its own (two worker threads, as many as the
/// service's) with its own connection to intake at `endpoint`: the client's
/// CPU is that of its threads, the service's the rest of this process.
async fn from_client_thread<F, Fut>(endpoint: String, nats_pid: Option<u32>, phase: F) -> anyhow::Result<Measured>
where
    F: FnOnce(IntakeServiceClient<Channel>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Figures>> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(CLIENT_THREADS)
            .enable_all()
            .build()
            .context("the load client's runtime")?;
        let measured = runtime.block_on(async move {
            let client = intake_client(endpoint).await;
            let meter = cpu::Meter::start(nats_pid);
            let before = cpu::threads_seconds(CLIENT_THREADS);
            let figures = tokio::spawn(phase(client)).await??;
            let client = cpu::threads_seconds(CLIENT_THREADS) - before;
            Ok(Measured { figures, usage: meter.stop(), client })
        });
        runtime.shutdown_background();
        measured
    })
    .await?
}

async fn spawn_intake(nats: &NatsServer, group_commit: GroupCommit) -> TestIntake {
    let mut config = TestIntake::config(&nats.url());
    config.common.group_commit_events = group_commit.max_events as u16;
    config.common.group_commit_in_flight = group_commit.max_in_flight as u16;
    config.common.group_commit_wait = group_commit.max_wait;
    TestIntake::spawn_with(config, std::sync::Arc::new(gridcase_process::SystemTimeSource)).await
}

/// `count` calls started at `rate` per second whatever their answers (an
/// open loop: latency is not hidden by fewer calls in flight); the rate
/// achieved is calls over the time until the last answer.
async fn at_rate<F, Fut>(count: usize, rate: f64, make: F) -> anyhow::Result<Figures>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Duration>> + Send + 'static,
{
    let per_tick = (rate / 1000.0).max(f64::MIN_POSITIVE);
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut calls = futures::stream::FuturesUnordered::new();
    let (mut launched, mut due) = (0usize, 0.0f64);
    while launched < count {
        ticker.tick().await;
        due += per_tick;
        while launched < count && (launched as f64) < due {
            calls.push(tokio::spawn(make()));
            launched += 1;
        }
    }
    let mut latencies = Vec::with_capacity(count);
    while let Some(result) = calls.next().await {
        latencies.push(result??);
    }
    let label: &'static str = Box::leak(format!("intake FileCase at {rate:.0}/s, group commit").into_boxed_str());
    Ok(Figures { label, count, elapsed: started.elapsed(), latencies })
}
