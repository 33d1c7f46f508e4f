//! The dispatcher under load, on its own nats-server (fsync always):
//!
//! 1. for single appends (group commit off) and for group commit, each on a
//!    fresh server: a backlog of N filings already in the stream when the
//!    dispatcher starts, timed until every case is registered and
//!    dispatched; then N filings at a fixed rate while the dispatcher runs
//!    (written as intake writes them, through a case store with group commit),
//!    for each case the time from its report event to its dispatch event
//!    (server timestamps), and the backlog of reported-but-not-dispatched cases;
//! 2. baselines: raw JetStream appends (same envelope size, same per-subject
//!    expectation) singly at the dispatcher's append concurrency, and in
//!    atomic batches of the size group commit reached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gridcase_domain::ActorRole;
use gridcase_envelope::Head;
use gridcase_envelope::StoredEvent;
use gridcase_envelope::schema::Actor;
use gridcase_eventlog::store::{CaseStore, Provenance};
use gridcase_eventlog::{EventLog, GroupCommit, StreamSettings};
use gridcase_process::SystemTimeSource;
use gridcase_tests::{NatsServer, TestDispatcher};
use tokio::sync::Mutex;

use crate::raw::{filing_event, publish, publish_batch, raw_event, writes_between};
use crate::{Figures, nats_version, run_phase};

const APPEND_CONCURRENCY: usize = 64;

async fn file_raw(js: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    let (subject, payload, headers, id) = raw_event();
    publish(js, subject, payload, headers, id).await
}

/// File a case as intake does: through a case store (group commit).
async fn file_through(store: &CaseStore) -> anyhow::Result<()> {
    let (subject, case_id, event) = filing_event();
    let provenance = Provenance {
        event_id: uuid::Uuid::now_v7(),
        occurred_at: jiff::Timestamp::now(),
        actor: Actor { person: "gw-0042".into(), role: ActorRole::GridWorker, organisation: "cc-990101001".into() },
        command_id: None,
    };
    store.commit(&Head::new_case(case_id, subject), &event, provenance).await?;
    Ok(())
}

/// The same bytes on a stream the dispatcher does not read.
async fn baseline_append(js: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    let (subject, payload, headers, id) = raw_event();
    publish(js, subject.replacen("gridcase.case", "bench.baseline", 1), payload, headers, id).await
}

#[derive(Default)]
struct Watch {
    filed: HashMap<String, i128>,
    latencies: Vec<Duration>,
    dispatched: usize,
    live_dispatched: usize,
    max_backlog: usize,
}

/// What one dispatcher configuration did: the backlog, the live phase.
struct Measured {
    backlog: Duration,
    live: Figures,
    max_backlog: usize,
    /// Writes and events of the backlog phase (atomic batches count one write).
    writes: usize,
    events: usize,
}

pub async fn run(cases: usize, rate: f64) -> anyhow::Result<()> {
    println!("nats-server {} (file storage, sync_interval: always)", nats_version());
    println!("{cases} cases per phase; live filing rate {rate}/s; each configuration on a fresh server\n");

    let single = measure(cases, rate, 1, "live, single appends: report → dispatch").await?;
    let grouped =
        measure(cases, rate, GroupCommit::default().max_events, "live, group commit: report → dispatch").await?;

    // Baselines: the same bytes, 2 per case, on a stream configured like the
    // case stream: single appends, and atomic batches of the size group commit reached.
    let nats = NatsServer::start();
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;
    let js = log.context().clone();
    let mut config = EventLog::stream_config(&StreamSettings::default());
    config.name = "BENCH_BASELINE".into();
    config.subjects = vec!["bench.baseline.>".into()];
    js.create_stream(config).await?;
    let raw_single = run_phase("raw JetStream appends, single", 2 * cases, APPEND_CONCURRENCY, |_| {
        let js = js.clone();
        async move {
            let started = Instant::now();
            baseline_append(&js).await?;
            Ok(started.elapsed())
        }
    })
    .await?;
    let batch_size = ((grouped.events as f64 / grouped.writes.max(1) as f64).round() as usize).clamp(1, 1000);
    let events: Vec<_> = (0..2 * cases)
        .map(|_| {
            let (subject, payload, headers, id) = raw_event();
            (subject.replacen("gridcase.case", "bench.baseline", 1), payload, headers, id)
        })
        .collect();
    let batches: Vec<Vec<_>> = events.chunks(batch_size).map(<[_]>::to_vec).collect();
    let count = batches.len();
    let mut batches = batches.into_iter();
    let raw_batched = run_phase("raw JetStream atomic batches", count, GroupCommit::default().max_in_flight, |_| {
        let js = js.clone();
        let batch = batches.next().expect("batch");
        async move {
            let started = Instant::now();
            publish_batch(&js, batch).await?;
            Ok(started.elapsed())
        }
    })
    .await?;
    let raw_batched = Figures { count: 2 * cases, ..raw_batched };

    println!("{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}", "phase", "count", "per sec", "p50 ms", "p99 ms", "max ms");
    raw_single.print();
    println!("{:<34} (batches of {batch_size}: latency per batch)", "");
    raw_batched.print();
    single.live.print();
    grouped.live.print();
    for (name, measured) in [("single appends", &single), ("group commit", &grouped)] {
        let backlog_rate = cases as f64 / measured.backlog.as_secs_f64();
        println!(
            "\nbacklog, {name}: {cases} waiting cases registered and dispatched in {:.2}s = {backlog_rate:.0} cases/s = {:.0} appends/s \
             ({:.1}% of raw single appends, {:.1}% of raw atomic batches of {batch_size}); {} events in {} writes",
            measured.backlog.as_secs_f64(),
            2.0 * backlog_rate,
            100.0 * 2.0 * backlog_rate / raw_single.rate(),
            100.0 * 2.0 * backlog_rate / raw_batched.rate(),
            measured.events,
            measured.writes,
        );
        println!("live, {name}: largest backlog of reported-but-undispatched cases: {}", measured.max_backlog);
    }
    println!(
        "\ngroup commit drains the backlog {:.1} x faster than single appends",
        single.backlog.as_secs_f64() / grouped.backlog.as_secs_f64()
    );
    Ok(())
}

/// On a fresh server: a backlog of `cases` filings, then the dispatcher
/// started with `group_commit_events`; then `cases` filings at `rate`.
async fn measure(cases: usize, rate: f64, group_commit_events: usize, label: &'static str) -> anyhow::Result<Measured> {
    let nats = NatsServer::start();
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;
    let js = log.context().clone();
    run_phase("pre-load", cases, APPEND_CONCURRENCY, |_| {
        let js = js.clone();
        async move {
            file_raw(&js).await?;
            Ok(Duration::ZERO)
        }
    })
    .await?;
    let filed = log.last_sequence().await?;
    let watch = Arc::new(Mutex::new(Watch::default()));
    let watcher = tokio::spawn(watch_stream(js.clone(), watch.clone()));
    let mut config = quiet(TestDispatcher::config(&nats.url()));
    config.common.group_commit_events = group_commit_events as u16;
    let started = Instant::now();
    let dispatcher = TestDispatcher::spawn_with(config, Arc::new(SystemTimeSource)).await;
    wait_for(&watch, cases).await;
    let backlog = started.elapsed();
    let end = log.last_sequence().await?;
    let (writes, events) = writes_between(&log, filed + 1, end).await?;

    {
        let mut w = watch.lock().await;
        w.latencies.clear();
        w.max_backlog = 0;
    }
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let live_started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    // Live filings arrive as intake writes them: through a case store.
    let intake = Arc::new(CaseStore::new(log.clone()));
    let mut filings = futures::stream::FuturesUnordered::new();
    for _ in 0..cases {
        ticker.tick().await;
        let intake = intake.clone();
        filings.push(tokio::spawn(async move { file_through(&intake).await }));
    }
    while let Some(result) = filings.next().await {
        result??;
    }
    wait_for(&watch, 2 * cases).await;
    let live_elapsed = live_started.elapsed();
    dispatcher.stop().await?;
    watcher.abort();
    let w = watch.lock().await;
    let live = Figures { label, count: w.latencies.len(), elapsed: live_elapsed, latencies: w.latencies.clone() };
    Ok(Measured { backlog, live, max_backlog: w.max_backlog, writes, events })
}

fn quiet(mut config: gridcase_dispatcher::Config) -> gridcase_dispatcher::Config {
    config.tick = Duration::from_millis(100);
    config
}

async fn wait_for(watch: &Arc<Mutex<Watch>>, dispatched: usize) {
    loop {
        if watch.lock().await.dispatched >= dispatched {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Follow the stream: when each case was filed and dispatched (server time).
async fn watch_stream(js: async_nats::jetstream::Context, watch: Arc<Mutex<Watch>>) -> anyhow::Result<()> {
    let stream = js.get_stream("GRIDCASE_CASES").await?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "gridcase.case.>".into(),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let published = message.info().map_err(|e| anyhow::anyhow!("{e}"))?.published.unix_timestamp_nanos();
        let Ok(stored) = StoredEvent::from_json_bytes(&message.payload) else { continue };
        let mut w = watch.lock().await;
        let case = stored.case_id.to_string();
        match stored.event_type.as_str() {
            "filed" => {
                w.filed.insert(case, published);
            }
            "dispatched" => {
                w.dispatched += 1;
                if let Some(filed) = w.filed.get(&case).copied() {
                    w.live_dispatched += 1;
                    w.latencies.push(Duration::from_nanos((published - filed).max(0) as u64));
                }
            }
            _ => {}
        }
        let backlog = w.filed.len().saturating_sub(w.live_dispatched);
        w.max_backlog = w.max_backlog.max(backlog);
    }
    Ok(())
}
