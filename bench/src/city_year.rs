//! `city-year`: a year of a city's cases, written once into a JetStream store
//! of its own, then measured (`city_dispatcher`: the dispatcher's start from
//! the whole stream beside its start from the snapshot of open cases;
//! `city_reads`, `city_rebuild`, `city_queries`).
//!
//! The generator simulates the year hour by hour: filings arrive with
//! weekday and working-hour peaks; the dispatcher's steps are decided by the
//! dispatcher's own `Core` at the instants it would take them (register,
//! dispatch, deadlines, warnings, overdue marks, cards), with its event ids;
//! the people's steps (acknowledge, return, extension, resolve, verify,
//! feedback, reopen, cancel, registration and dispatch by hand) come from
//! `decide` at drawn delays, with intake's event ids. Every event is
//! chained as the case store chains it, with the same headers, and
//! written in atomic batches whose first message of each case carries its
//! expected per-subject sequence (a new case: none of its id anywhere).
//! Nothing else writes to the stream, so the stream sequences are known.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gridcase_domain::GridCode;
use gridcase_eventlog::{EventLog, StreamSettings};
use gridcase_tests::NatsServer;
use jiff::Timestamp;

pub mod simulation;

use simulation::{Message, simulate};

/// What the generator wrote, kept beside the store.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DataSet {
    pub year: i16,
    pub townships: usize,
    pub grids: usize,
    pub cases: usize,
    pub events: u64,
    /// The instant the year ends: the clock of every measurement.
    pub end: Timestamp,
    /// Cases not closed, voided or cancelled at the end.
    pub open: usize,
    pub seconds: f64,
    pub events_by_type: std::collections::BTreeMap<String, u64>,
}

fn manifest(dir: &Path) -> PathBuf {
    dir.join("city-year.json")
}

pub(crate) fn store(dir: &Path) -> PathBuf {
    dir.join("nats")
}

pub(crate) fn reference_dir(dir: &Path) -> PathBuf {
    dir.join("reference")
}

/// A grid registry of `townships` townships of county 990101, each with two
/// villages of `grids` grids between them, and its command centres; the
/// shipped category taxonomy beside it.
fn write_reference(dir: &Path, townships: usize, grids: usize) -> anyhow::Result<Vec<GridCode>> {
    let out = reference_dir(dir);
    std::fs::create_dir_all(&out)?;
    let mut csv = String::from("code,level,name,parent,command_centre\n990101,county,示范市,,co-990101\n");
    let mut codes = Vec::new();
    for township in 1..=townships {
        let t = format!("990101{township:03}");
        csv.push_str(&format!("{t},township,第{township}街道,990101,cc-{t}\n"));
        for village in 1..=2 {
            let v = format!("{t}{village:03}");
            csv.push_str(&format!("{v},village,第{township}街道第{village}社区,{t},\n"));
            for grid in (village..=grids).step_by(2) {
                let g = format!("{v}{grid:03}");
                csv.push_str(&format!("{g},grid,第{township}街道第{grid}网格,{v},\n"));
                codes.push(GridCode::parse(&g).context("a generated grid code")?);
            }
        }
    }
    std::fs::write(out.join("regions.csv"), csv)?;
    let root = gridcase_tests::workspace_root();
    std::fs::copy(root.join("deploy/reference/categories.csv"), out.join("categories.csv"))?;
    Ok(codes)
}

/// The rules every service of the data set runs with (the shipped ones).
fn rules() -> gridcase_resources::PolicyArgs {
    let root = gridcase_tests::workspace_root();
    gridcase_resources::PolicyArgs {
        policy: root.join("deploy/policy/policy.toml"),
        calendar_dir: root.join("deploy/calendar"),
    }
}

pub struct Generate {
    pub dir: PathBuf,
    pub cases: usize,
    pub townships: usize,
    pub grids: usize,
    pub year: i16,
    pub seed: u64,
}

pub async fn generate(options: Generate) -> anyhow::Result<()> {
    let Generate { dir, cases, townships, grids, year, seed } = options;
    anyhow::ensure!(!store(&dir).exists(), "{} holds a data set already: remove it first", dir.display());
    std::fs::create_dir_all(&dir)?;
    let grid_codes = write_reference(&dir, townships, grids)?;
    let nats = NatsServer::start_with_store(&store(&dir));
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;
    println!(
        "generating {cases} cases of {year} over {townships} townships ({} grids) into {} (nats-server {})",
        grid_codes.len(),
        dir.display(),
        crate::nats_version()
    );
    let started = Instant::now();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<Message>>(4);
    let dir_for_thread = dir.clone();
    let generator = std::thread::spawn(move || simulate(&dir_for_thread, cases, year, seed, grid_codes, sender));

    let js = log.context().clone();
    let mut written = 0u64;
    let mut last_report = Instant::now();
    while let Some(batch) = receiver.recv().await {
        written += batch.len() as u64;
        publish(&js, batch).await?;
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            println!("  {written} events in {seconds:.0} s ({:.0} events/s)", written as f64 / seconds);
        }
    }
    let mut data_set = generator.join().map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    data_set.seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(log.last_sequence().await? == data_set.events, "the stream holds what was generated");
    std::fs::write(manifest(&dir), serde_json::to_vec_pretty(&data_set)?)?;
    let bytes = dir_size(&store(&dir));
    println!(
        "generated {} cases, {} events in {:.0} s ({:.0} events/s), {:.1} GiB on disk; {} open at the end ({:.1} %)",
        data_set.cases,
        data_set.events,
        data_set.seconds,
        data_set.events as f64 / data_set.seconds,
        bytes as f64 / (1u64 << 30) as f64,
        data_set.open,
        100.0 * data_set.open as f64 / data_set.cases as f64
    );
    for (kind, count) in &data_set.events_by_type {
        println!("  {kind:<24} {count:>10}");
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// One atomic batch: the last message commits it and is answered.
async fn publish(js: &async_nats::jetstream::Context, batch: Vec<Message>) -> anyhow::Result<()> {
    let messages = batch.into_iter().map(|Message { subject, headers, payload }| (subject, headers, payload)).collect();
    crate::raw::publish_atomic(js, messages).await
}

/// The database the city-year read models are rebuilt into.
pub const DATABASE: &str = "gridcase_cityyear";

/// `postgres://…/gridcase_cityyear` from the server's admin URL.
pub fn database_url(admin_url: &str) -> anyhow::Result<String> {
    let (base, _) = admin_url.rsplit_once('/').context("a database URL with a database name")?;
    Ok(format!("{base}/{DATABASE}"))
}

pub struct Measure {
    pub dir: PathBuf,
}

pub(crate) fn load_manifest(dir: &Path) -> anyhow::Result<DataSet> {
    let text = std::fs::read(manifest(dir))
        .with_context(|| format!("no data set in {}: run city-year generate", dir.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches("kB").trim().to_owned()))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small year, generated and then read by the dispatcher at the
    /// year's end: it finds every step it would take already taken (the
    /// generated history is what it writes itself), from the whole stream
    /// and from its snapshot alike; every case's chain verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dispatcher_finds_a_generated_year_complete() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("year");
        generate(Generate { dir: data.clone(), cases: 400, townships: 3, grids: 4, year: 2025, seed: 11 })
            .await
            .unwrap();
        let set = load_manifest(&data).unwrap();
        assert_eq!(set.cases, 400);
        assert!(set.events > 400 * 6, "every case has its lifecycle: {} events", set.events);
        for kind in ["registered", "dispatched", "acknowledged", "resolved", "verification_passed", "deadline_set"] {
            assert!(set.events_by_type.get(kind).is_some_and(|n| *n > 0), "{kind}: {:?}", set.events_by_type);
        }

        let starts = crate::city_dispatcher::dispatcher(Measure { dir: data.clone() }).await.unwrap();
        assert_eq!(starts.len(), 2);
        assert_eq!((starts[0].steps, starts[0].resumed_from), (0, None), "whole stream: {starts:?}");
        assert_eq!((starts[1].steps, starts[1].resumed_from), (0, Some(set.events)), "from the snapshot: {starts:?}");

        let nats = NatsServer::start_with_store(&store(&data));
        let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();
        let mut seen = std::collections::HashSet::new();
        for sequence in (1..=set.events).step_by(97) {
            let mark = log.mark_at(sequence).await.unwrap().unwrap();
            if seen.insert(mark.subject.clone()) {
                let subject = gridcase_envelope::CaseSubject::from_subject(&mark.subject).unwrap();
                let history = log.history(&subject).await.unwrap();
                gridcase_envelope::verify_history(&history).unwrap();
            }
        }
        assert!(seen.len() > 10);
    }
}
