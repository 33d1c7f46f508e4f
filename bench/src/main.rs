//! `gridcase-bench`: measures gridcase beside a raw baseline in the same run,
//! on a nats-server of its own configured like production (file storage,
//! fsync before every acknowledgement). Prints figures; asserts nothing.
//!
//!     cargo run --release -p gridcase-bench -- intake --cases 20000 --concurrency 256

mod city_dispatcher;
mod city_field;
mod city_queries;
mod city_reads;
mod city_rebuild;
mod city_year;
mod console;
mod cpu;
mod dispatch;
mod intake;
mod mobile;
mod observability;
mod open311;
mod personal;
mod projection;
mod raw;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures::StreamExt;
use gridcase_eventlog::GroupCommit;

#[derive(Parser)]
#[command(
    name = "gridcase-bench",
    about = "Throughput and latency of gridcase beside a raw baseline, measured in one run"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// What sealing residents' contact details costs: filings and GetCase
    /// with and without them, the raw key store beside, and erasures.
    PersonalData {
        /// Filings of each kind.
        #[arg(long, default_value_t = 10000)]
        cases: usize,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Cases whose data are erased (at most --cases).
        #[arg(long, default_value_t = 10000)]
        erase: usize,
    },
    /// File N cases through the intake gRPC API at concurrency C, with group
    /// commit and with single appends, then publish the same event payloads
    /// straight to JetStream, singly and in atomic batches.
    Intake {
        /// Cases to file in each measured phase.
        #[arg(long, default_value_t = 20000)]
        cases: usize,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Unmeasured calls first, to warm connections and caches.
        #[arg(long, default_value_t = 1000)]
        warmup: usize,
        /// Group commit: most events per batch.
        #[arg(long, default_value_t = GroupCommit::default().max_events)]
        group_commit_events: usize,
        /// Group commit: writes in flight at once.
        #[arg(long, default_value_t = GroupCommit::default().max_in_flight)]
        group_commit_in_flight: usize,
        /// Group commit: how long a batch's first append waits for others, in milliseconds.
        #[arg(long, default_value_t = 0)]
        group_commit_wait_ms: u64,
        /// Filings per second of the open-loop phase (latency at a sustained rate).
        #[arg(long, default_value_t = 10000.0)]
        rate: f64,
    },
    /// A year of a city's cases: generate it once into a store of its own,
    /// then measure gridcase on it.
    CityYear {
        #[command(subcommand)]
        step: CityYear,
    },
    /// Dispatcher throughput on a backlog, report-to-dispatch latency and
    /// backlog at a given filing rate, beside raw JetStream appends.
    Dispatch {
        /// Cases in each phase.
        #[arg(long, default_value_t = 2000)]
        cases: usize,
        /// Filing rate of the live phase, cases per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
    },
    /// The cost of observability: intake and dispatch with traces off and
    /// with every span exported over OTLP to a collector, in one run.
    Observability {
        /// Cases filed in each intake phase.
        #[arg(long, default_value_t = 5000)]
        cases: usize,
        /// Intake calls in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Cases in each dispatch phase.
        #[arg(long, default_value_t = 2000)]
        dispatch_cases: usize,
        /// Filing rate of the live dispatch phase, cases per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
    },
    /// Projection throughput live and on rebuild beside a raw PostgreSQL COPY
    /// of the same rows; ListCases and OverdueReport latency over a large case table.
    /// The command centre's console: the board's first render with N open
    /// cases, the desk's first overdue page over a large table, B boards
    /// live while filings arrive at R/s, the console's memory (run
    /// `cargo build --release --bins` first: the console runs as its own
    /// process).
    Console {
        /// Open cases in the township the board shows.
        #[arg(long, default_value_t = 10_000)]
        open_cases: usize,
        /// Closed cases in the county (the table the desk's query runs over).
        #[arg(long, default_value_t = 1_000_000)]
        table_cases: usize,
        /// Boards connected at once.
        #[arg(long, default_value_t = 200)]
        boards: usize,
        /// Filings per second while the boards are connected.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// How long filings arrive (memory is sampled every 10 s).
        #[arg(long, default_value_t = 30)]
        stream_seconds: u64,
    },
    /// The Open311 gateway's POST requests.xml beside intake's FileCase over
    /// gRPC: the same filings at the same concurrency, alternated.
    Open311 {
        /// Filings per phase.
        #[arg(long, default_value_t = 5000)]
        cases: usize,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Unmeasured calls of each kind first.
        #[arg(long, default_value_t = 500)]
        warmup: usize,
        /// Rounds of the two phases.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The grid worker's day on a weak connection: SyncCases (200 items per
    /// call) beside the same items one by one, and the bytes on the wire of
    /// a 10 MB photo uploaded resumably through a connection cut every 1 MB.
    Mobile {
        /// Workers' days (200 items each) per phase.
        #[arg(long, default_value_t = 50)]
        days: usize,
        /// Workers syncing at once.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Rounds of the two phases.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    Projection {
        /// Cases (3 events each) appended and projected.
        #[arg(long, default_value_t = 10000)]
        cases: usize,
        /// Synthetic cases in the table the queries run over.
        #[arg(long, default_value_t = 1_000_000)]
        query_cases: usize,
    },
}

pub(crate) struct Figures {
    pub(crate) label: &'static str,
    pub(crate) count: usize,
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Vec<Duration>,
}

impl Figures {
    pub(crate) fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }

    pub(crate) fn print(&self) {
        println!(
            "{:<34} {:>8} {:>10.0} {:>10.2} {:>10.2} {:>10.2}",
            self.label,
            self.count,
            self.rate(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.percentile(1.0).as_secs_f64() * 1e3,
        );
    }
}

/// The services' allocator, so the in-process intake and dispatcher run as deployed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Traces are exported when OTEL_EXPORTER_OTLP_ENDPOINT is set (the
    // observability benchmark sets it for its traced runs).
    let telemetry = gridcase_process::telemetry::init(gridcase_process::LogFormat::Text, "warn", "gridcase-bench");
    let result = run(Cli::parse().bench).await;
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::PersonalData { cases, concurrency, erase } => {
            personal::run(personal::Options { cases, concurrency, erase }).await
        }
        Bench::Observability { cases, concurrency, dispatch_cases, rate } => {
            observability::run(cases, concurrency, dispatch_cases, rate).await
        }
        Bench::Intake {
            cases,
            concurrency,
            warmup,
            group_commit_events,
            group_commit_in_flight,
            group_commit_wait_ms,
            rate,
        } => {
            let group_commit = GroupCommit {
                max_events: group_commit_events,
                max_in_flight: group_commit_in_flight,
                max_wait: Duration::from_millis(group_commit_wait_ms),
            };
            intake::run(intake::Options { cases, concurrency, warmup, group_commit, rate }).await
        }
        Bench::Dispatch { cases, rate } => dispatch::run(cases, rate).await,
        Bench::CityYear { step: CityYear::Generate { dir, cases, townships, grids, year, seed } } => {
            city_year::generate(city_year::Generate { dir, cases, townships, grids, year, seed }).await
        }
        Bench::CityYear { step: CityYear::Dispatcher { dir } } => {
            let starts = city_dispatcher::dispatcher(city_year::Measure { dir }).await?;
            for start in starts.iter().filter(|start| start.steps > 0) {
                println!(
                    "NOTE: a start (resumed from {:?}) appended {} steps: the data set lacks steps the dispatcher takes",
                    start.resumed_from, start.steps
                );
            }
            Ok(())
        }
        Bench::CityYear { step: CityYear::Reads { dir, samples } } => {
            city_reads::reads(city_year::Measure { dir }, samples).await
        }
        Bench::CityYear { step: CityYear::Rebuild { dir, admin_url, no_baseline, no_raw_read } } => {
            city_rebuild::run(city_year::Measure { dir }, &admin_url, !no_baseline, !no_raw_read).await
        }
        Bench::CityYear { step: CityYear::Queries { dir, admin_url } } => {
            city_queries::run(city_year::Measure { dir }, &admin_url).await
        }
        Bench::CityYear { step: CityYear::Field { dir, admin_url } } => {
            city_field::run(city_year::Measure { dir }, &admin_url).await
        }
        Bench::Mobile { days, workers, rounds } => mobile::run(days, workers, rounds).await,
        Bench::Projection { cases, query_cases } => projection::run(cases, query_cases).await,
        Bench::Open311 { cases, concurrency, warmup, rounds } => open311::run(cases, concurrency, warmup, rounds).await,
        Bench::Console { open_cases, table_cases, boards, rate, stream_seconds } => {
            console::run(console::Options { open_cases, table_cases, boards, rate, stream_seconds }).await
        }
    }
}

#[derive(Subcommand)]
enum CityYear {
    /// Write a year of cases, with every lifecycle step the services would
    /// have written, into a new JetStream store under DIR (with its grid
    /// registry). Prints how long it took.
    Generate {
        /// Where the data set goes (DIR/nats, DIR/reference, DIR/city-year.json).
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Cases filed over the year (Kunming's grid centre: 2 467 722 in 2024).
        #[arg(long, default_value_t = 2_500_000)]
        cases: usize,
        /// Townships of the county.
        #[arg(long, default_value_t = 40)]
        townships: usize,
        /// Grids per township.
        #[arg(long, default_value_t = 20)]
        grids: usize,
        /// The year (its calendar file must be shipped).
        #[arg(long, default_value_t = 2025)]
        year: i16,
        /// Seed of the random draws (the same seed, the same data set).
        #[arg(long, default_value_t = 2024)]
        seed: u64,
    },
    /// The dispatcher on the data set: a start reading the whole stream,
    /// then a start from its snapshot; time until every open case is armed,
    /// steps taken (0 expected), peak memory.
    Dispatcher {
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// The projection's rebuild on the data set, beside a raw read of the
    /// stream and a raw COPY of the same rows; the read models stay in the
    /// database gridcase_cityyear for `queries`.
    Rebuild {
        #[arg(long)]
        dir: std::path::PathBuf,
        /// A PostgreSQL URL with the right to create databases.
        #[arg(long, env = "GRIDCASE_TEST_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        admin_url: String,
        /// Skip the raw COPY baseline and keep the read models for `queries`.
        #[arg(long)]
        no_baseline: bool,
        /// Skip the raw read of the stream (when iterating on the rebuild).
        #[arg(long)]
        no_raw_read: bool,
    },
    /// The query service over the read models `rebuild` left: latencies
    /// of reports, lists, histories, ledgers and exports; the plans of the
    /// heaviest statements.
    Queries {
        #[arg(long)]
        dir: std::path::PathBuf,
        /// A PostgreSQL URL of the same server `rebuild` used.
        #[arg(long, env = "GRIDCASE_TEST_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        admin_url: String,
    },
    /// The grid worker's calls on the rebuilt read models: FindSimilarCases
    /// at open cases' points, and ListMyCases of a worker whose grid gets
    /// 300 more open cases (filed through intake, appended to the data set),
    /// each beside the same SQL sent straight to PostgreSQL.
    Field {
        #[arg(long)]
        dir: std::path::PathBuf,
        /// A PostgreSQL URL of the same server `rebuild` used.
        #[arg(long, env = "GRIDCASE_TEST_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        admin_url: String,
    },
    /// The write path's reads on the data set: locating and loading random
    /// cases, beside a raw read of one message.
    Reads {
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Cases to load.
        #[arg(long, default_value_t = 1000)]
        samples: usize,
    },
}

pub(crate) async fn run_phase<F, Fut>(
    label: &'static str,
    count: usize,
    concurrency: usize,
    mut make: F,
) -> anyhow::Result<Figures>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Duration>>,
{
    let calls: Vec<Fut> = (0..count).map(&mut make).collect();
    let started = Instant::now();
    let results: Vec<anyhow::Result<Duration>> =
        futures::stream::iter(calls).buffer_unordered(concurrency.max(1)).collect().await;
    let elapsed = started.elapsed();
    let latencies = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Figures { label, count, elapsed, latencies })
}

pub(crate) fn nats_version() -> String {
    let binary = gridcase_tests::nats::nats_server_binary();
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
