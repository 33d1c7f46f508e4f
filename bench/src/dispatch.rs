//! The dispatcher under load, on its own nats-server (fsync always):
//!
//! 1. baseline: raw JetStream appends (same envelope size, same per-subject
//!    expectation) at the dispatcher's append concurrency;
//! 2. backlog: N filings already in the stream when the dispatcher starts;
//!    time until every case is registered and dispatched;
//! 3. live: N filings at a fixed rate while the dispatcher runs; for each
//!    case, the time from its report event to its dispatch event (server
//!    timestamps), and the backlog of reported-but-not-dispatched cases.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gridcase_eventlog::{EventLog, StoredEvent, StreamSettings};
use gridcase_runtime::SystemClock;
use gridcase_tests::{NatsServer, TestDispatcher};
use tokio::sync::Mutex;

use crate::{Figures, nats_version, raw_event, run_phase};

const APPEND_CONCURRENCY: usize = 64;

async fn file_raw(js: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    let (subject, payload, headers, id) = raw_event();
    publish(js, subject, payload, headers, id).await
}

/// The same bytes on a stream the dispatcher does not read.
async fn baseline_append(js: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    let (subject, payload, headers, id) = raw_event();
    publish(js, subject.replacen("gridcase.case", "bench.baseline", 1), payload, headers, id).await
}

/// Append one stored event as a new case (expected subject sequence 0).
pub(crate) async fn publish(
    js: &async_nats::jetstream::Context,
    subject: String,
    payload: bytes::Bytes,
    headers: async_nats::HeaderMap,
    id: String,
) -> anyhow::Result<()> {
    let message = async_nats::jetstream::message::PublishMessage::build()
        .payload(payload)
        .headers(headers)
        .message_id(id)
        .expected_last_subject_sequence(0);
    js.send_publish(subject, message).await?.await?;
    Ok(())
}

#[derive(Default)]
struct Watch {
    filed: HashMap<String, i128>,
    latencies: Vec<Duration>,
    dispatched: usize,
    live_dispatched: usize,
    max_backlog: usize,
}

pub async fn run(cases: usize, rate: f64) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;
    let js = log.context().clone();
    println!("nats-server {} (file storage, sync_interval: always)", nats_version());
    println!("{cases} cases per phase; live filing rate {rate}/s\n");

    // 1. Baseline: 2 appends per case (registration, dispatch) straight to
    // JetStream, on a stream configured like the case stream.
    let mut config = EventLog::stream_config(&StreamSettings::default());
    config.name = "BENCH_BASELINE".into();
    config.subjects = vec!["bench.baseline.>".into()];
    js.create_stream(config).await?;
    let baseline = run_phase("raw JetStream appends (baseline)", 2 * cases, APPEND_CONCURRENCY, |_| {
        let js = js.clone();
        async move {
            let started = Instant::now();
            baseline_append(&js).await?;
            Ok(started.elapsed())
        }
    })
    .await?;

    // 2. Backlog: file N cases, then start the dispatcher.
    run_phase("pre-load", cases, APPEND_CONCURRENCY, |_| {
        let js = js.clone();
        async move {
            file_raw(&js).await?;
            Ok(Duration::ZERO)
        }
    })
    .await?;
    let watch = Arc::new(Mutex::new(Watch::default()));
    let watcher = tokio::spawn(watch_stream(js.clone(), watch.clone()));
    let started = Instant::now();
    let dispatcher =
        TestDispatcher::spawn_with(quiet(TestDispatcher::config(&nats.url())), Arc::new(SystemClock)).await;
    wait_for(&watch, cases).await;
    let backlog_elapsed = started.elapsed();

    // 3. Live: file at `rate` while the dispatcher runs.
    {
        let mut w = watch.lock().await;
        w.latencies.clear();
        w.max_backlog = 0;
    }
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let live_started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    let mut filings = futures::stream::FuturesUnordered::new();
    for _ in 0..cases {
        ticker.tick().await;
        let js = js.clone();
        filings.push(tokio::spawn(async move { file_raw(&js).await }));
    }
    while let Some(result) = filings.next().await {
        result??;
    }
    let filing_elapsed = live_started.elapsed();
    wait_for(&watch, 2 * cases).await;
    let live_elapsed = live_started.elapsed();
    dispatcher.stop().await?;
    watcher.abort();

    let w = watch.lock().await;
    let live = Figures {
        label: "live: report → dispatch latency",
        count: w.latencies.len(),
        elapsed: live_elapsed,
        latencies: w.latencies.clone(),
    };
    println!("{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}", "phase", "count", "per sec", "p50 ms", "p99 ms", "max ms");
    baseline.print();
    live.print();
    let backlog_rate = cases as f64 / backlog_elapsed.as_secs_f64();
    println!(
        "\nbacklog: {cases} waiting cases registered and dispatched in {:.2}s = {backlog_rate:.0} cases/s = {:.0} appends/s ({:.1}% of the raw append rate)",
        backlog_elapsed.as_secs_f64(),
        2.0 * backlog_rate,
        100.0 * 2.0 * backlog_rate / baseline.rate()
    );
    println!(
        "live: {cases} cases filed at {:.0}/s over {:.2}s; largest backlog of reported-but-undispatched cases: {}",
        cases as f64 / filing_elapsed.as_secs_f64(),
        filing_elapsed.as_secs_f64(),
        w.max_backlog
    );
    Ok(())
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
