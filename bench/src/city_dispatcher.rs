//! `city-year dispatcher`: the dispatcher started on a year of history,
//! first reading the whole stream, then from its snapshot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridcase_tests::{NatsServer, TestDispatcher};
use uuid::Uuid;

use crate::city_year::{Measure, load_manifest, peak_rss_mib, reference_dir, store};

/// One start of the dispatcher on the data set.
#[derive(Debug)]
pub struct Start {
    /// Steps it appended (0: the data set already holds every step it takes).
    pub steps: u64,
    /// The sequence it resumed from (none: it read the whole stream).
    pub resumed_from: Option<u64>,
}

/// The dispatcher on the data set: a start that reads the whole stream, then
/// (after it stopped and saved its snapshot) a start from the snapshot.
pub async fn dispatcher(options: Measure) -> anyhow::Result<Vec<Start>> {
    let data = load_manifest(&options.dir)?;
    let nats = NatsServer::start_with_store(&store(&options.dir));
    println!(
        "data set: {} cases, {} events of {} over {} townships; {} open at the end; clock at {}",
        data.cases, data.events, data.year, data.townships, data.open, data.end
    );
    let clock = gridcase_process::ManualTimeSource::new(data.end);
    let config = |bucket: &str| {
        let mut config = TestDispatcher::config(&nats.url());
        config.reference_dir = reference_dir(&options.dir);
        config.snapshot_bucket = bucket.to_owned();
        config.tick = Duration::from_millis(200);
        config
    };
    // A bucket of this run's own: the first start finds no snapshot.
    let bucket = format!("bench-{}", Uuid::new_v4().simple());
    let mut rows = Vec::new();
    for start in ["cold (whole stream)", "warm (snapshot)"] {
        let rss_before = peak_rss_mib();
        let started = Instant::now();
        let mut dispatcher = TestDispatcher::spawn_with(config(&bucket), Arc::new(clock.clone())).await;
        dispatcher.settled_within(data.end, &nats, Duration::from_secs(3600)).await;
        let ready = started.elapsed();
        let steps = gridcase_tests::stream_end(&nats).await - data.events;
        let resumed = dispatcher.snapshots().resumed_from;
        let stop_started = Instant::now();
        dispatcher.stop().await?;
        let stop = stop_started.elapsed();
        rows.push((start, ready, steps, resumed, stop, rss_before, peak_rss_mib()));
    }
    println!(
        "\n{:<22} {:>16} {:>8} {:>14} {:>16} {:>14}",
        "start", "to all armed, s", "steps", "resumed from", "stop + save, s", "peak RSS, MiB"
    );
    for (start, ready, steps, resumed, stop, _, rss) in &rows {
        println!(
            "{start:<22} {:>16.2} {:>8} {:>14} {:>16.2} {:>14.0}",
            ready.as_secs_f64(),
            steps,
            resumed.map_or("-".to_owned(), |s| s.to_string()),
            stop.as_secs_f64(),
            rss
        );
    }
    println!(
        "\n'to all armed': from start until the dispatcher has read the stream to its end and looked at every open case at the year's end \
         (every step due taken, every wake-up set). 'steps': what it appended: 0 means the generated history is what the dispatcher itself writes. \
         Peak RSS is the benchmark process's high-water mark (it only grows)."
    );
    Ok(rows.into_iter().map(|(_, _, steps, resumed_from, ..)| Start { steps, resumed_from }).collect())
}
