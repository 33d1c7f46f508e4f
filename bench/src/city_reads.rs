//! `city-year reads`: loading a case after a year of history, beside a raw
//! read of one message.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use gridcase_envelope::CaseSubject;
use gridcase_eventlog::{EventLog, StreamSettings};
use gridcase_tests::NatsServer;

use crate::city_year::{Measure, load_manifest, store};

/// The write path's reads on the data set: how long loading a case (find its
/// subject from its id, read its history, fold it) takes after a year of
/// history, beside a raw read of one message by stream sequence.
pub async fn reads(options: Measure, samples: usize) -> anyhow::Result<()> {
    let data = load_manifest(&options.dir)?;
    let started = Instant::now();
    let nats = NatsServer::start_with_store(&store(&options.dir));
    println!("nats-server ready on the data set in {:.1} s", started.elapsed().as_secs_f64());
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;
    let store = gridcase_eventlog::store::CaseStore::new(log.clone());
    let mut rng = fastrand::Rng::with_seed(7);
    let mut raw = Vec::with_capacity(samples);
    let mut subjects = Vec::with_capacity(samples);
    for _ in 0..samples {
        let sequence = rng.u64(1..=data.events);
        let started = Instant::now();
        let mark = log.mark_at(sequence).await?.context("a message at every sequence")?;
        raw.push(started.elapsed());
        subjects.push(CaseSubject::from_subject(&mark.subject).context("a case subject")?);
    }
    let (mut locate, mut history, mut events) = (Vec::new(), Vec::new(), 0usize);
    for subject in &subjects {
        let case_id = subject.case_id();
        let started = Instant::now();
        anyhow::ensure!(log.locate(&case_id).await?.as_ref() == Some(subject), "located");
        locate.push(started.elapsed());
        let started = Instant::now();
        let loaded = store.load_subject(case_id, subject.clone()).await?.context("a filed case")?;
        history.push(started.elapsed());
        events += loaded.history.len();
    }
    let figures = |label: &'static str, latencies: Vec<Duration>| crate::Figures {
        label,
        count: latencies.len(),
        elapsed: latencies.iter().sum(),
        latencies,
    };
    println!(
        "{} random cases of {} events in all ({:.1} events per case), one read at a time:\n",
        samples,
        data.events,
        events as f64 / samples as f64
    );
    println!("{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}", "read", "count", "per sec", "p50 ms", "p99 ms", "max ms");
    figures("raw: one message by sequence", raw).print();
    figures("locate a case by id (wildcard)", locate).print();
    figures("load a case (history + fold)", history).print();
    Ok(())
}
