//! The dispatcher's shell: reads every case event from JetStream (an ordered
//! consumer from the first event, so a restart rebuilds its state from the
//! log), feeds [`Core`], appends the steps it decides, and runs the deadline
//! watch on a tick of the injected clock.
//!
//! The log is the state. What the dispatcher has folded of open cases is
//! saved now and then as a snapshot (`snapshot`), a cache of the log up to
//! a stream sequence: a start resumes from it and reads only what came
//! after, and replays the whole stream when it has none it can trust. Steps
//! are appended only once the consumer has caught up with the stream, each
//! with the expected per-case sequence and an event id derived from the
//! step, so a restart or a second instance never takes a step twice.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gridcase_calendar::Calendar;
use gridcase_domain::Event;
use gridcase_domain::{CaseId, Role};
use gridcase_envelope::Head;
use gridcase_envelope::schema::Actor;
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_eventlog::store::{CaseStore, CommitError, Committed, Provenance};
use gridcase_eventlog::{KeyStore, ReadFrom};
use gridcase_policy::Policy;
use gridcase_process::{Shutdown, SystemTimeSource, TimeSource};
use gridcase_reference::Reference;
use jiff::Timestamp;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tracing::{Instrument as _, debug, error, info, warn};
use uuid::Uuid;

use crate::config::Config;
use crate::core::{Action, Core, Tracked};
use crate::snapshot::{self, SnapshotStore};

/// The namespace of the dispatcher's deterministic event ids.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b9c_2f1e_4a3d_5c7b_8e9f_0a1b_2c3d_4e5f);
/// Health service names.
pub const HEALTH_DISPATCHER: &str = "gridcase.dispatcher.v1.Dispatcher";
pub const HEALTH_CALENDAR: &str = "gridcase.dispatcher.v1.Calendar";
/// The metrics, each exported from start-up (at zero) by [`register_metrics`].
const METRIC_STEPS: &str = "gridcase_dispatcher_steps_total";
const METRIC_CONFLICTS: &str = "gridcase_dispatcher_conflicts_total";
const METRIC_PENDING: &str = "gridcase_dispatcher_pending_messages";
const METRIC_LAG_SECONDS: &str = "gridcase_dispatcher_lag_seconds";
const METRIC_SKIPPED: &str = "gridcase_dispatcher_skipped_events_total";
const METRIC_FALLBACK: &str = "gridcase_deadlines_fallback_total";
const METRIC_CALENDAR_MISSING: &str = "gridcase_calendar_missing";
const METRIC_CALENDAR_DAYS_LEFT: &str = "gridcase_calendar_days_left";
const METRIC_OPEN_CASES: &str = "gridcase_dispatcher_open_cases";
const METRIC_SNAPSHOT_SEQUENCE: &str = "gridcase_dispatcher_snapshot_sequence";
const METRIC_SNAPSHOT_FAILURES: &str = "gridcase_dispatcher_snapshot_failures_total";
const METRIC_RESUMED_FROM: &str = "gridcase_dispatcher_resumed_from_sequence";

/// Days from `now` to the end of the last year `years` has a file for (0
/// when there is none, or it has ended).
fn calendar_days_left(years: &gridcase_calendar::YearTable, now: jiff::Timestamp) -> f64 {
    let Some(last) = years.years().map(|file| file.year).max() else { return 0.0 };
    let tz = jiff::tz::TimeZone::get(gridcase_calendar::TIME_ZONE).expect("the bundled time zone");
    let Ok(end) = jiff::civil::date(last + 1, 1, 1).to_zoned(tz) else { return 0.0 };
    ((end.timestamp().as_second() - now.as_second()) as f64 / 86_400.0).max(0.0)
}

/// Describe every metric and give it its zero value, so a scrape right after
/// start-up shows them all (a counter that has not moved yet is 0, not absent).
fn register_metrics() {
    metrics::describe_counter!(METRIC_STEPS, "Steps this instance stored, by the event type of the step.");
    for step in crate::core::STEP_KINDS {
        metrics::counter!(METRIC_STEPS, "step" => step).absolute(0);
    }
    metrics::describe_counter!(
        METRIC_CONFLICTS,
        "Steps not stored because another writer changed the case first or another instance took the same step."
    );
    metrics::counter!(METRIC_CONFLICTS).absolute(0);
    metrics::describe_gauge!(METRIC_PENDING, "Events in the case stream not yet read by this instance.");
    metrics::gauge!(METRIC_PENDING).set(0.0);
    metrics::describe_gauge!(
        METRIC_LAG_SECONDS,
        metrics::Unit::Seconds,
        "How long this instance has been behind the stream (0 when caught up)."
    );
    metrics::gauge!(METRIC_LAG_SECONDS).set(0.0);
    metrics::describe_counter!(METRIC_SKIPPED, "Events this version cannot read, left alone.");
    metrics::counter!(METRIC_SKIPPED).absolute(0);
    metrics::describe_counter!(
        METRIC_FALLBACK,
        "Deadlines computed for a year without a calendar file (Monday-Friday)."
    );
    metrics::counter!(METRIC_FALLBACK).absolute(0);
    metrics::describe_gauge!(METRIC_CALENDAR_MISSING, "1 when this year's or next year's calendar file is missing.");
    metrics::gauge!(METRIC_CALENDAR_MISSING).set(0.0);
    metrics::describe_gauge!(
        METRIC_CALENDAR_DAYS_LEFT,
        "Days until the end of the last year that has a working-calendar file (alert well before 0)."
    );
    metrics::gauge!(METRIC_CALENDAR_DAYS_LEFT).set(0.0);
    metrics::describe_gauge!(METRIC_OPEN_CASES, "Cases not yet closed that this instance tracks.");
    metrics::gauge!(METRIC_OPEN_CASES).set(0.0);
    metrics::describe_gauge!(
        METRIC_SNAPSHOT_SEQUENCE,
        "The stream sequence the last snapshot of open cases saved by this instance covers (0: none yet)."
    );
    metrics::gauge!(METRIC_SNAPSHOT_SEQUENCE).set(0.0);
    metrics::describe_counter!(METRIC_SNAPSHOT_FAILURES, "Snapshots of open cases that could not be saved.");
    metrics::counter!(METRIC_SNAPSHOT_FAILURES).absolute(0);
    metrics::describe_gauge!(
        METRIC_RESUMED_FROM,
        "The stream sequence this instance resumed from at start (0: it replayed the whole stream)."
    );
    metrics::gauge!(METRIC_RESUMED_FROM).set(0.0);
}

/// Dirty cases that make a batch worth deciding before the consumer is idle.
const APPEND_CONCURRENCY: usize = 64;
/// Commits in flight at once (the case store gathers them into batches).
const MAX_COMMITS: usize = 2000;
/// Under continuous load, act at least this often.
const ACT_INTERVAL: Duration = Duration::from_millis(20);

/// What the dispatcher has done, for anyone waiting on it (tests, probes):
/// at clock time `at` it had taken every step due by then for every event
/// up to stream sequence `sequence`, and no step of its own was in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Idle {
    pub at: Option<Timestamp>,
    pub sequence: u64,
}

/// The snapshot of open cases as this instance has used it: the sequence it
/// resumed from (none: it replayed the whole stream) and the sequence the
/// last snapshot it saved covers (0: none yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshots {
    pub resumed_from: Option<u64>,
    pub saved: u64,
}

pub struct Application {
    idle: tokio::sync::watch::Sender<Idle>,
    snapshots: Arc<tokio::sync::watch::Sender<Snapshots>>,
    snapshot_store: Option<SnapshotStore>,
    config: Config,
    health_listener: TcpListener,
    client: async_nats::Client,
    store: Arc<CaseStore>,
    keys: KeyStore,
    policy: Arc<Policy>,
    calendar: Arc<Calendar>,
    reference: Arc<Reference>,
    clock: Arc<dyn TimeSource>,
}

fn actor() -> Actor {
    Actor { person: "gridcase-dispatcher".into(), role: Role::System, organisation: "gridcase".into() }
}

impl Application {
    /// Load and validate policy, calendar and reference data, connect to NATS.
    pub async fn build(
        config: Config,
        health_listener: TcpListener,
        clock: Arc<dyn TimeSource>,
    ) -> anyhow::Result<Self> {
        let (policy, calendar) = config.rules.load()?;
        let reference = Reference::load(&config.reference_dir).context("loading the reference data")?;
        info!(
            regions_sha256 = %reference.regions_sha256,
            categories_sha256 = %reference.categories_sha256,
            "reference data loaded (intake must run the same: gridctl reference show)"
        );
        for route in &policy.routes {
            if reference.taxonomy.iter().all(|c| !route.category.matches(&c.code)) {
                warn!(line = route.line, "a policy route matches no category of the taxonomy");
            }
        }
        let (client, log) = config.common.open_log("gridcase-dispatcher").await?;
        let keys = config.keys.open(&log, false).await?;
        let snapshot_store = if config.no_snapshot {
            None
        } else {
            let rules = snapshot::rules_fingerprint(&policy, &calendar);
            Some(
                SnapshotStore::open(log.context(), &config.snapshot_bucket, log.settings().replicas, rules)
                    .await
                    .context("opening the snapshot bucket")?,
            )
        };
        Ok(Self {
            idle: tokio::sync::watch::Sender::new(Idle::default()),
            snapshots: Arc::new(tokio::sync::watch::Sender::new(Snapshots::default())),
            snapshot_store,
            config,
            health_listener,
            client,
            store: Arc::new(CaseStore::new(log)),
            keys,
            policy: Arc::new(policy),
            calendar: Arc::new(calendar),
            reference: Arc::new(reference),
            clock,
        })
    }

    /// Follows what the dispatcher has caught up with ([`Idle`]).
    pub fn idle(&self) -> tokio::sync::watch::Receiver<Idle> {
        self.idle.subscribe()
    }

    /// Follows the snapshot of open cases ([`Snapshots`]).
    pub fn snapshots(&self) -> tokio::sync::watch::Receiver<Snapshots> {
        self.snapshots.subscribe()
    }

    pub fn health_addr(&self) -> std::io::Result<SocketAddr> {
        self.health_listener.local_addr()
    }

    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::NotServing).await;
        health.set_service_status(HEALTH_DISPATCHER, ServingStatus::NotServing).await;
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.config.tls.config()? {
            builder = builder.tls_config(tls).context("the health listener's TLS configuration")?;
        }
        let health_server = builder.add_service(health_service).serve_with_incoming_shutdown(
            gridcase_grpc::status::incoming(self.health_listener),
            shutdown.clone().requested(),
        );
        let health_task = tokio::spawn(health_server);
        info!(health = %self.config.addr, "dispatcher health service listening");

        if !self.config.no_metrics {
            gridcase_process::exporter::install(self.config.metrics_addr, || {
                gridcase_resources::register_metrics();
                register_metrics();
            })?;
            gridcase_resources::nats::watch_nats(self.client.clone(), shutdown.clone().requested());
        }

        let history = gridcase_resources::nats::watch_history(
            self.store.log(),
            vec![gridcase_eventlog::keys::watched(&self.config.keys.key_bucket, self.store.log().settings().replicas)],
            self.config.common.integrity_interval,
            shutdown.clone().requested(),
        );
        let mut worker = Worker {
            store: self.store.clone(),
            keys: self.keys.clone(),
            policy: self.policy.clone(),
            calendar: self.calendar.clone(),
            reference: self.reference.clone(),
            clock: self.clock.clone(),
            cases: HashMap::new(),
            dirty: BTreeSet::new(),
            wakeups: BTreeSet::new(),
            in_flight: HashMap::new(),
            unreadable: HashSet::new(),
            loading: HashMap::new(),
            traces: HashMap::new(),
            behind_since: None,
            lag_checked_at: None,
            health: health.clone(),
            caught_up: false,
            serving: None,
            calendar_reported: None,
            idle: self.idle.clone(),
            position: 0,
            seen_end: 0,
            woken_at: None,
            // Group commit off (one event per write): one step per commit, as before.
            chain_steps: self.config.common.group_commit_events > 1,
            snapshot: SnapshotState {
                store: self.snapshot_store.clone(),
                every: self.config.snapshot_interval,
                // The first save comes an interval after the start.
                started_at: Some(std::time::Instant::now()),
                covers: 0,
                saving: None,
                progress: self.snapshots.clone(),
            },
        };
        // On shutdown the worker finishes the steps it is committing, for at
        // most the grace period (a step cut short is taken again by the next
        // start: its event id is deterministic).
        let grace = self.config.common.shutdown_grace;
        let result =
            gridcase_process::shutdown::drain_with_grace(worker.run(&self.config, shutdown.clone()), shutdown, grace)
                .await
                .unwrap_or(Ok(()));
        let _ = health_task.await;
        history.abort();
        if let Err(error) = self.client.drain().await {
            warn!(%error, "draining the NATS connection failed");
        }
        info!("dispatcher stopped");
        result
    }
}

struct Worker {
    /// Take a step that follows another at once in the same commit.
    chain_steps: bool,
    snapshot: SnapshotState,
    store: Arc<CaseStore>,
    /// Destroys the data key of each erasure read (see [`erase_key`]).
    keys: KeyStore,
    policy: Arc<Policy>,
    calendar: Arc<Calendar>,
    reference: Arc<Reference>,
    clock: Arc<dyn TimeSource>,
    cases: HashMap<CaseId, Tracked>,
    /// Cases to look at once caught up.
    dirty: BTreeSet<CaseId>,
    /// (instant, case): when to look at a case again.
    wakeups: BTreeSet<(Timestamp, CaseId)>,
    /// Cases with a step of ours being committed, or committed but its
    /// event not read back yet: nothing else is decided for them meanwhile.
    in_flight: HashMap<CaseId, InFlight>,
    /// Cases with an event this version cannot read: left alone.
    unreadable: HashSet<CaseId>,
    /// Closed cases reopened, whose history is being read.
    loading: HashMap<CaseId, Loading>,
    /// The trace of each open case's last event (only while traces are
    /// exported): the case's next step continues it.
    traces: HashMap<CaseId, opentelemetry::Context>,
    /// Since when this instance has been behind the stream.
    behind_since: Option<std::time::Instant>,
    /// When the lag was last measured against the stream's end.
    lag_checked_at: Option<std::time::Instant>,
    health: tonic_health::server::HealthReporter,
    /// Caught up with the stream once (health).
    caught_up: bool,
    /// What health last said (none: not yet).
    serving: Option<bool>,
    calendar_reported: Option<bool>,
    idle: tokio::sync::watch::Sender<Idle>,
    /// The stream sequence of the last event observed.
    position: u64,
    /// The end of the stream as the last record saw it (its sequence plus
    /// what was pending then).
    seen_end: u64,
    /// The clock time of the last look at the wake-up index.
    woken_at: Option<Timestamp>,
}

impl Worker {
    fn core(&self) -> Core<'_> {
        Core { policy: &self.policy, calendar: &self.calendar, reference: &self.reference }
    }

    async fn run(&mut self, config: &Config, shutdown: Shutdown) -> anyhow::Result<()> {
        let resumed = self.resume().await;
        let mut records = self
            .store
            .log()
            .read(CaseSubject::all_filter(), ReadFrom::after(resumed))
            .await
            .context("reading the case stream")?;
        let mut caught_up = records.caught_up_at_start();
        let mut tick = tokio::time::interval(config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A clock moved by hand (tests) is looked at at once, not at the next tick.
        let mut clock_changes = self.clock.changes();
        if caught_up {
            self.mark_caught_up().await;
        }
        // Once caught up, act when the consumer is idle, when a batch has
        // gathered, or at least every ACT_INTERVAL under continuous load.
        // Steps are committed while the stream is read on: the answers come
        // back here, and the case store gathers concurrent commits into batches.
        let mut last_act = std::time::Instant::now();
        let mut commits: FuturesUnordered<Commit> = FuturesUnordered::new();
        // Histories of reopened closed cases being read.
        let mut loads: FuturesUnordered<Load> = self
            .loading
            .values()
            .map(|loading| load(self.store.clone(), loading.subject.clone(), Duration::ZERO))
            .collect();

        loop {
            tokio::select! {
                biased;
                _ = shutdown.clone().requested() => break,
                Some((case_id, history)) = loads.next(), if !loads.is_empty() => {
                    if let Some(subject) = self.loaded(case_id, history) {
                        loads.push(load(self.store.clone(), subject, Duration::from_millis(100)));
                    }
                    if caught_up && self.position >= self.seen_end {
                        commits.extend(self.act(MAX_COMMITS.saturating_sub(commits.len())));
                        self.report_idle(true);
                    }
                }
                Some(done) = commits.next(), if !commits.is_empty() => {
                    self.settle(done);
                    if caught_up && self.position >= self.seen_end {
                        commits.extend(self.act(MAX_COMMITS.saturating_sub(commits.len())));
                        self.report_idle(true);
                    }
                }
                record = records.next() => {
                    let Some(record) = record else { anyhow::bail!("the case stream ended") };
                    let record = match record {
                        Ok(record) => record,
                        Err(error) => {
                            warn!(%error, "reading the case stream failed; the ordered consumer resumes");
                            continue;
                        }
                    };
                    // Before the event counts as read (a snapshot covering it
                    // is saved only after): an erasure's key is destroyed.
                    // Stopping before it is: the event stays unread, so the
                    // next start reads it (and destroys the key) again.
                    let stored = StoredEvent::from_json_bytes(&record.payload);
                    if let Ok(stored) = &stored
                        && stored.event_type == "resident_data_erased"
                        && !erase_key(&self.keys, &stored.case_id, &shutdown).await
                    {
                        break;
                    }
                    if let Some(subject) =
                        self.observe(&record.subject, stored, record.sequence, record.headers.as_ref())
                    {
                        loads.push(load(self.store.clone(), subject, Duration::ZERO));
                    }
                    self.seen_end = self.seen_end.max(record.sequence + record.pending);
                    metrics::gauge!(METRIC_PENDING).set(record.pending as f64);
                    self.note_lag(record.pending);
                    // While reading a long way behind (a first start on years
                    // of history), the tick below seldom gets its turn: save
                    // here too, so a crash does not start the reading over.
                    if !caught_up && self.snapshot.due(self.position) {
                        self.save_snapshot();
                    }
                    if record.caught_up() && !caught_up {
                        caught_up = true;
                        self.mark_caught_up().await;
                    }
                    let batch_ready = self.dirty.len() >= APPEND_CONCURRENCY || last_act.elapsed() >= ACT_INTERVAL;
                    if caught_up && (record.caught_up() || batch_ready) {
                        commits.extend(self.act(MAX_COMMITS.saturating_sub(commits.len())));
                        last_act = std::time::Instant::now();
                        self.report_idle(record.caught_up());
                    }
                }
                _ = tick.tick() => {
                    commits.extend(self.on_tick(caught_up, MAX_COMMITS.saturating_sub(commits.len())).await);
                    if self.snapshot.due(self.position) {
                        self.save_snapshot();
                    }
                }
                Some(()) = clock_moved(&mut clock_changes) => {
                    commits.extend(self.on_tick(caught_up, MAX_COMMITS.saturating_sub(commits.len())).await)
                }
            }
        }
        // Shutting down: the steps being committed get their answers (within
        // the grace period), then what is folded is saved for the next start.
        while let Some(done) = commits.next().await {
            self.settle(done);
        }
        if let Some(saving) = self.snapshot.saving.take() {
            let _ = saving.await;
        }
        // Saved, or resumed from, as far as this (a save that failed does not count).
        let kept = {
            let progress = self.snapshot.progress.borrow();
            progress.saved.max(progress.resumed_from.unwrap_or(0))
        };
        if self.snapshot.store.is_some() && self.position > kept {
            self.save_snapshot();
            if let Some(saving) = self.snapshot.saving.take() {
                let _ = saving.await;
            }
        }
        Ok(())
    }

    /// Take over the saved snapshot of open cases if there is one that can
    /// be trusted; the stream sequence it covers (0: read the whole stream).
    async fn resume(&mut self) -> u64 {
        let Some(store) = self.snapshot.store.clone() else { return 0 };
        let started = std::time::Instant::now();
        let snapshot = match store.load(self.store.log()).await {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => {
                info!("no snapshot of open cases saved yet: reading the whole stream");
                return 0;
            }
            Err(error) => {
                warn!(
                    error = format!("{error:#}"),
                    "the snapshot of open cases cannot be used: reading the whole stream"
                );
                return 0;
            }
        };
        let position = snapshot.header.covers.sequence;
        info!(
            position,
            cases = snapshot.cases.len(),
            saved_at = %snapshot.header.written_at,
            seconds = started.elapsed().as_secs_f64(),
            "resuming from the snapshot of open cases"
        );
        // Every open case is looked at once caught up: its due steps and
        // wake-ups are decided from its state, as after a full replay.
        self.dirty.extend(snapshot.cases.keys().copied());
        self.cases = snapshot.cases;
        self.unreadable = snapshot.unreadable;
        self.loading = snapshot
            .header
            .loading
            .iter()
            // Every event of the case up to the covered position is in its
            // history; the reader notes any later one.
            .map(|subject| (subject.case_id(), Loading { subject: subject.clone(), seen: 0 }))
            .collect();
        self.position = position;
        self.seen_end = position;
        self.snapshot.covers = position;
        metrics::gauge!(METRIC_RESUMED_FROM).set(position as f64);
        metrics::gauge!(METRIC_OPEN_CASES).set(self.cases.len() as f64);
        self.snapshot.progress.send_modify(|progress| progress.resumed_from = Some(position));
        position
    }

    /// Save what is folded now as the snapshot: the case lines are encoded
    /// here (they are the state as of `position`); finding the covered
    /// message and writing go on in the background.
    fn save_snapshot(&mut self) {
        let store = self.snapshot.store.clone().expect("snapshots are on");
        let started = std::time::Instant::now();
        let position = self.position;
        let encoded = snapshot::encode_cases(self.cases.values());
        let unreadable: Vec<CaseId> = self.unreadable.iter().copied().collect();
        let loading: Vec<CaseSubject> = self.loading.values().map(|loading| loading.subject.clone()).collect();
        let written_at = self.clock.now();
        let log = self.store.log().clone();
        let progress = self.snapshot.progress.clone();
        let encode_seconds = started.elapsed().as_secs_f64();
        self.snapshot.started_at = Some(started);
        let task = tokio::spawn(async move {
            let saved = async {
                let (cases, body) = encoded?;
                let covers = log
                    .mark_at(position)
                    .await?
                    .with_context(|| format!("the stream holds no message at {position}"))?;
                let header = snapshot::Header {
                    format: snapshot::FORMAT,
                    covers,
                    rules: store.rules().to_owned(),
                    cases,
                    unreadable,
                    loading,
                    written_at,
                };
                let bytes = snapshot::assemble(&header, &body)?;
                store.save(&bytes).await?;
                Ok::<_, anyhow::Error>((cases, bytes.len()))
            };
            match saved.await {
                Ok((cases, bytes)) => {
                    info!(
                        position,
                        cases,
                        bytes,
                        encode_seconds,
                        seconds = started.elapsed().as_secs_f64(),
                        "snapshot of open cases saved"
                    );
                    metrics::gauge!(METRIC_SNAPSHOT_SEQUENCE).set(position as f64);
                    progress.send_modify(|progress| progress.saved = progress.saved.max(position));
                }
                Err(error) => {
                    warn!(position, error = format!("{error:#}"), "saving the snapshot of open cases failed");
                    metrics::counter!(METRIC_SNAPSHOT_FAILURES).increment(1);
                }
            }
        });
        self.snapshot.covers = position;
        self.snapshot.saving = Some(task);
    }

    /// The deadline watch's turn: the calendar check, then every case due
    /// (at most `room` commits started).
    async fn on_tick(&mut self, caught_up: bool, room: usize) -> Vec<Commit> {
        self.check_calendar().await;
        self.report_health().await;
        metrics::gauge!(METRIC_OPEN_CASES).set(self.cases.len() as f64);
        // The lag also while no record arrives (a reader stalled behind a
        // growing stream): the stream's end against what was read, once a
        // second at most (a tick can be far shorter, and a hand-moved clock
        // ticks at once).
        let due = self.lag_checked_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if due && let Ok(end) = self.store.log().last_sequence().await {
            self.lag_checked_at = Some(std::time::Instant::now());
            let pending = end.saturating_sub(self.position);
            metrics::gauge!(METRIC_PENDING).set(pending as f64);
            self.note_lag(pending);
        }
        if !caught_up {
            return Vec::new();
        }
        self.wake_due();
        let commits = self.act(room);
        self.report_idle(self.position >= self.seen_end);
        commits
    }

    /// How long this instance has been behind the stream (the lag metric).
    fn note_lag(&mut self, pending: u64) {
        let lag = if pending == 0 {
            self.behind_since = None;
            0.0
        } else {
            self.behind_since.get_or_insert_with(std::time::Instant::now).elapsed().as_secs_f64()
        };
        metrics::gauge!(METRIC_LAG_SECONDS).set(lag);
    }

    /// Tell waiters when nothing is left to do: read to the end of the
    /// stream, every due case looked at, no step of ours still in flight.
    fn report_idle(&self, at_stream_end: bool) {
        if at_stream_end && self.dirty.is_empty() && self.in_flight.is_empty() && self.loading.is_empty() {
            let idle = Idle { at: self.woken_at, sequence: self.position };
            self.idle.send_if_modified(|current| {
                let changed = *current != idle;
                *current = idle;
                changed
            });
        }
    }

    async fn mark_caught_up(&mut self) {
        info!(cases = self.cases.len(), "caught up with the case stream");
        self.caught_up = true;
        self.report_health().await;
        self.check_calendar().await;
    }

    /// SERVING once caught up, while the log keeps its history.
    async fn report_health(&mut self) {
        let serving = self.caught_up && self.store.log().integrity().writable().is_ok();
        if self.serving == Some(serving) {
            return;
        }
        self.serving = Some(serving);
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.health.set_service_status("", status).await;
        self.health.set_service_status(HEALTH_DISPATCHER, status).await;
    }

    /// Next year's calendar file must exist before the year starts.
    async fn check_calendar(&mut self) {
        let now = self.clock.now();
        let year = now.to_zoned(jiff::tz::TimeZone::get(gridcase_calendar::TIME_ZONE).expect("tz")).year();
        let ready = self.calendar.years().has(year) && self.calendar.years().has(year + 1);
        metrics::gauge!(METRIC_CALENDAR_MISSING).set(if ready { 0.0 } else { 1.0 });
        metrics::gauge!(METRIC_CALENDAR_DAYS_LEFT).set(calendar_days_left(self.calendar.years(), now));
        if self.calendar_reported != Some(ready) {
            self.calendar_reported = Some(ready);
            let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            self.health.set_service_status(HEALTH_CALENDAR, status).await;
            if !ready {
                warn!(
                    this_year = year,
                    next_year = year + 1,
                    "a working-calendar file is missing: deadlines in that year count Monday-Friday; add deploy/calendar/<year>.toml"
                );
            }
        }
    }

    /// Fold one record of the stream. Returns the subject of a case whose
    /// history must be read (a closed case reopened).
    fn observe(
        &mut self,
        subject: &str,
        stored: Result<StoredEvent, gridcase_envelope::DecodeError>,
        sequence: u64,
        headers: Option<&async_nats::HeaderMap>,
    ) -> Option<CaseSubject> {
        self.position = sequence;
        // Whatever the event is (even one this version cannot read), the
        // case on this subject moved: a step of ours in flight on it has its
        // answer once its last event is read.
        if let Some((_, subject_case)) = CaseSubject::parse(subject) {
            self.answered(subject_case, sequence);
        }
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                error!(sequence, %error, "unreadable message in the case stream; skipped");
                metrics::counter!(METRIC_SKIPPED).increment(1);
                return None;
            }
        };
        let case_id = stored.case_id;
        let event = match stored.decode() {
            Ok(event) => event,
            Err(error) => {
                warn!(%case_id, sequence, %error, "event this version cannot read; leaving the case alone");
                metrics::counter!(METRIC_SKIPPED).increment(1);
                self.unreadable.insert(case_id);
                return None;
            }
        };
        if let Some(loading) = self.loading.get_mut(&case_id) {
            // Its history is being read: the load folds this event too, or reads again.
            loading.seen = loading.seen.max(sequence);
            return None;
        }
        let tracked = self.cases.remove(&case_id);
        if let Some(known) = &tracked
            && sequence <= known.last_sequence
        {
            // Folded already, by a load that read further than the stream reader.
            self.cases.insert(case_id, tracked.expect("known"));
            return None;
        }
        if tracked.is_none() && matches!(event, Event::Reopened { .. }) {
            // A closed case is not kept (no step of ours can be due on it);
            // reopened, its whole history is read from the log and folded.
            let subject = CaseSubject::from_subject(subject)?;
            debug!(%case_id, sequence, "a closed case reopened: reading its history");
            self.loading.insert(case_id, Loading { subject: subject.clone(), seen: sequence });
            return Some(subject);
        }
        let trace = gridcase_eventlog::trace::extract(headers);
        match self.core().observe(tracked, &stored, &event, sequence) {
            Some(tracked) => {
                if !self.core().keeps(&tracked) {
                    self.dirty.remove(&case_id);
                    self.traces.remove(&case_id);
                } else {
                    if opentelemetry::trace::TraceContextExt::has_active_span(&trace) {
                        self.traces.insert(case_id, trace);
                    }
                    self.cases.insert(case_id, tracked);
                    self.dirty.insert(case_id);
                }
            }
            None => {
                debug!(%case_id, kind = event.kind(), "event for a case not open here (never filed, or closed); ignored")
            }
        }
        self.answered(case_id, sequence);
        None
    }

    /// A closed case's history, read because it was reopened: fold it all
    /// (as a full replay would have) and track the case again, unless the
    /// stream reader saw an event of it beyond what was read (read again).
    fn loaded(
        &mut self,
        case_id: CaseId,
        history: Result<Vec<gridcase_envelope::Positioned>, gridcase_eventlog::LogError>,
    ) -> Option<CaseSubject> {
        let loading = self.loading.get(&case_id)?;
        let history = match history {
            Ok(history) => history,
            Err(gridcase_eventlog::LogError::Unavailable(error)) => {
                warn!(%case_id, %error, "reading a reopened case's history failed; trying again");
                return Some(loading.subject.clone());
            }
            Err(error) => {
                warn!(%case_id, %error, "a reopened case's history cannot be read; leaving the case alone");
                metrics::counter!(METRIC_SKIPPED).increment(1);
                self.unreadable.insert(case_id);
                self.loading.remove(&case_id);
                return None;
            }
        };
        let last = history.last().map_or(0, |positioned| positioned.stream_sequence);
        if loading.seen > last {
            return Some(loading.subject.clone());
        }
        self.loading.remove(&case_id);
        let mut tracked = None;
        for positioned in &history {
            let event = match positioned.event.decode() {
                Ok(event) => event,
                Err(error) => {
                    warn!(%case_id, sequence = positioned.stream_sequence, %error, "event this version cannot read; leaving the case alone");
                    metrics::counter!(METRIC_SKIPPED).increment(1);
                    self.unreadable.insert(case_id);
                    return None;
                }
            };
            tracked = self.core().observe(tracked, &positioned.event, &event, positioned.stream_sequence);
        }
        match tracked {
            Some(tracked) if self.core().keeps(&tracked) => {
                self.cases.insert(case_id, tracked);
                self.dirty.insert(case_id);
            }
            _ => {}
        }
        None
    }

    /// The event at `sequence` of `case_id` was read: a step of ours in
    /// flight on the case is done if it ends there (or its end is unknown).
    fn answered(&mut self, case_id: CaseId, sequence: u64) {
        let done = match self.in_flight.get(&case_id) {
            Some(InFlight::Until(last)) => sequence >= *last,
            Some(InFlight::NextEvent) => true,
            // The commit's answer decides (its event may be this one).
            Some(InFlight::Committing) | None => false,
        };
        if done {
            self.in_flight.remove(&case_id);
        }
    }

    fn wake_due(&mut self) {
        let now = self.clock.now();
        self.woken_at = Some(now);
        while let Some(first) = self.wakeups.first().copied() {
            if first.0 > now {
                break;
            }
            self.wakeups.pop_first();
            self.dirty.insert(first.1);
        }
    }

    /// Decide the next step of every dirty case (and, where the state after
    /// it calls for another step at once, that one too, in the same commit),
    /// and start committing them: at most `room` commits; the cases left
    /// over stay dirty.
    fn act(&mut self, room: usize) -> Vec<Commit> {
        // No step is taken on a log that no longer keeps its history: the
        // cases stay dirty and are looked at once it does again.
        if self.dirty.is_empty() || room == 0 || self.store.log().integrity().writable().is_err() {
            return Vec::new();
        }
        let now = self.clock.now();
        let mut commits: Vec<Commit> = Vec::new();
        // Only as many as there is room for are taken (a backlog of
        // thousands is not re-sorted on every turn).
        while commits.len() < room {
            let Some(case_id) = self.dirty.pop_first() else { break };
            if self.in_flight.contains_key(&case_id) || self.unreadable.contains(&case_id) {
                continue;
            }
            let Some(tracked) = self.cases.get(&case_id) else { continue };
            let core = self.core();
            match core.next_action(tracked, now) {
                Some(action) => match gridcase_domain::decide(Some(&tracked.case), &action.command, now) {
                    Ok(event) => {
                        let mut chain = vec![(event, action)];
                        if let Some(next) =
                            self.chain_steps.then(|| follow_on(&core, tracked, &chain[0], now)).flatten()
                        {
                            chain.push(next);
                        }
                        let head = tracked.head();
                        let parent = self.traces.get(&case_id).cloned();
                        commits.push(Box::pin(commit(self.store.clone(), head, chain, parent, now)));
                        self.in_flight.insert(case_id, InFlight::Committing);
                    }
                    Err(error) => error!(%case_id, %error, "the dispatcher decided a step the rules refuse"),
                },
                None => {
                    if let Some(at) = core.next_wakeup(tracked, now) {
                        self.wakeups.insert((at, case_id));
                    }
                }
            }
        }
        commits
    }

    /// A commit's answer: count it, and say when the case may be looked at again.
    fn settle(&mut self, (head, chain, result): Done) {
        let case_id = head.case_id;
        let kind = chain[0].0.kind();
        match result {
            Ok(committed) => {
                for ((event, action), committed) in chain.iter().zip(&committed) {
                    let step = event.kind();
                    match committed {
                        Committed::Stored(positioned) => {
                            info!(%case_id, step, sequence = positioned.stream_sequence, "dispatcher step appended");
                            metrics::counter!(METRIC_STEPS, "step" => step).increment(1);
                            if !action.fallback_years.is_empty() {
                                warn!(%case_id, years = ?action.fallback_years, "deadline computed without a calendar file (Monday-Friday)");
                                metrics::counter!(METRIC_FALLBACK).increment(1);
                            }
                        }
                        Committed::AlreadyStored(_) => {
                            // Another dispatcher took the very same step first.
                            debug!(%case_id, step, "another instance took this step first");
                            metrics::counter!(METRIC_CONFLICTS).increment(1);
                        }
                    }
                }
                let last = committed.last().map_or(0, |c| match c {
                    Committed::Stored(positioned) => positioned.stream_sequence,
                    Committed::AlreadyStored(sequence) => *sequence,
                });
                if last > self.position {
                    self.in_flight.insert(case_id, InFlight::Until(last));
                } else {
                    // Read already, while it was being committed: look at the case now.
                    self.in_flight.remove(&case_id);
                    self.dirty.insert(case_id);
                }
            }
            Err(CommitError::Conflict) => {
                debug!(%case_id, step = kind, "another writer moved the case first");
                metrics::counter!(METRIC_CONFLICTS).increment(1);
                // Look again once the event that won is read (or now, if it was).
                let read_on = self.cases.get(&case_id).is_none_or(|t| t.last_sequence > head.last_sequence);
                if read_on {
                    self.in_flight.remove(&case_id);
                    if self.cases.contains_key(&case_id) {
                        self.dirty.insert(case_id);
                    }
                } else {
                    self.in_flight.insert(case_id, InFlight::NextEvent);
                }
            }
            Err(CommitError::Stopped(_)) => {
                // Writes stopped meanwhile: the case is looked at again once
                // they resume (`act` takes no step until then).
                self.in_flight.remove(&case_id);
                self.dirty.insert(case_id);
            }
            Err(CommitError::Refused(error)) => {
                // Sending it again would change nothing: the case waits
                // for its next event or wake-up, and an operator.
                error!(%case_id, step = kind, %error, "the event log refused a step");
                self.in_flight.remove(&case_id);
            }
            Err(error) => {
                warn!(%case_id, step = kind, %error, "appending a step failed; will retry");
                self.in_flight.remove(&case_id);
                self.dirty.insert(case_id);
            }
        }
        // Events appended by us come back through the consumer, which marks
        // their cases dirty again for the following step.
    }
}

/// A reopened case whose history is being read.
/// Destroy the data key of a case whose erasure was read, trying again
/// (with backoff, each failure logged) until it is done. `false`: the
/// service is stopping and the key may still be there; the event must then
/// not count as read. Intake destroys the key as it records the erasure;
/// this is what makes a crash between the two harmless. Idempotent, so
/// reading old erasures again (a replay) costs one key lookup each. While
/// the key store is unreachable, the dispatcher reads no further (its lag
/// metric and health show it).
async fn erase_key(keys: &KeyStore, case_id: &CaseId, shutdown: &Shutdown) -> bool {
    let mut pause = Duration::from_millis(100);
    loop {
        match keys.erase(case_id).await {
            Ok(()) => {
                debug!(%case_id, "erased resident data: key destroyed");
                return true;
            }
            Err(error) => error!(%case_id, %error, "destroying an erased case's key failed; trying again"),
        }
        tokio::select! {
            _ = shutdown.clone().requested() => return false,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

struct Loading {
    subject: CaseSubject,
    /// The last sequence of the case the stream reader saw meanwhile.
    seen: u64,
}

type Load = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (CaseId, Result<Vec<gridcase_envelope::Positioned>, gridcase_eventlog::LogError>),
            > + Send,
    >,
>;

/// Read a case's history (after `pause`, when trying again).
fn load(store: Arc<CaseStore>, subject: CaseSubject, pause: Duration) -> Load {
    Box::pin(async move {
        tokio::time::sleep(pause).await;
        let history = store.log().history(&subject).await;
        (subject.case_id(), history)
    })
}

/// When the snapshot of open cases is saved, and where.
struct SnapshotState {
    /// None: snapshots are off (`--no-snapshot`).
    store: Option<SnapshotStore>,
    /// Saved at most this often, when the stream has moved.
    every: Duration,
    /// When the last save started (or the instance did).
    started_at: Option<std::time::Instant>,
    /// The sequence the last snapshot saved (or started, or resumed from) covers.
    covers: u64,
    /// The save under way, if any.
    saving: Option<tokio::task::JoinHandle<()>>,
    progress: Arc<tokio::sync::watch::Sender<Snapshots>>,
}

impl SnapshotState {
    /// Whether a snapshot should be saved now that `position` is folded.
    fn due(&self, position: u64) -> bool {
        self.store.is_some()
            && position > self.covers
            && self.saving.as_ref().is_none_or(|saving| saving.is_finished())
            && self.started_at.is_none_or(|at| at.elapsed() >= self.every)
    }
}

/// Where a step of ours on a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InFlight {
    /// Being committed: its answer says what comes next.
    Committing,
    /// Committed: done once the event at this stream sequence is read.
    Until(u64),
    /// Lost to another writer: done once the next event of the case is read.
    NextEvent,
}

/// A commit's head, steps and answer.
type Done = (Head, Vec<(Event, Action)>, Result<Vec<Committed>, CommitError>);
type Commit = std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send>>;

/// Commit one case's steps, each with its span continuing the trace of the
/// event that led to it.
async fn commit(
    store: Arc<CaseStore>,
    head: Head,
    chain: Vec<(Event, Action)>,
    parent: Option<opentelemetry::Context>,
    now: Timestamp,
) -> Done {
    let spans: Vec<tracing::Span> = chain
        .iter()
        .map(|(event, _)| {
            let span = tracing::info_span!(
                "dispatcher.step",
                case_id = %head.case_id,
                township = %head.subject.township(),
                step = event.kind(),
                outcome = tracing::field::Empty,
                sequence = tracing::field::Empty,
            );
            if let Some(parent) = &parent {
                let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent.clone());
            }
            span
        })
        .collect();
    let steps = chain.iter().map(|(event, action)| (event, step_provenance(action, now))).collect();
    let result = store.commit_chain(&head, steps).instrument(spans[0].clone()).await;
    for (index, span) in spans.iter().enumerate() {
        match &result {
            Ok(committed) => {
                span.record("outcome", committed[index].outcome());
                if let Committed::Stored(positioned) = &committed[index] {
                    span.record("sequence", positioned.stream_sequence);
                }
            }
            Err(error) => {
                span.record("outcome", gridcase_eventlog::store::error_outcome(error));
            }
        }
    }
    (head, chain, result)
}

/// Who, when and under which id a step is recorded: the id derives from the
/// step's key, so the same step taken twice (a restart, a second instance)
/// is one event.
pub fn step_provenance(action: &Action, now: Timestamp) -> Provenance {
    Provenance {
        event_id: Uuid::new_v5(&EVENT_ID_NAMESPACE, action.key.as_bytes()),
        occurred_at: now,
        actor: actor(),
        command_id: None,
    }
}

/// The step that follows `first` at once, if the state after it calls for
/// one now (registration, then dispatch): decided from the case as `first`
/// will leave it, so it is the step the dispatcher would take when `first`
/// comes back from the log, with the same key.
fn follow_on(core: &Core<'_>, tracked: &Tracked, first: &(Event, Action), now: Timestamp) -> Option<(Event, Action)> {
    let (event, action) = first;
    let provenance = step_provenance(action, now);
    let sealed = StoredEvent::seal(
        event,
        gridcase_envelope::schema::EventMeta {
            event_id: provenance.event_id,
            case_id: tracked.case.id,
            case_version: tracked.case.version + 1,
            occurred_at: now,
            actor: provenance.actor,
            command_id: None,
        },
        Some(tracked.last_hash.clone()),
    );
    let after = core.observe(Some(tracked.clone()), &sealed, event, tracked.last_sequence)?;
    if after.case.status.is_final() {
        return None;
    }
    let next = core.next_action(&after, now)?;
    let event = gridcase_domain::decide(Some(&after.case), &next.command, now).ok()?;
    Some((event, next))
}

/// Resolves when a hand-moved clock moves; never for a clock that moves by
/// itself (or once its sender is gone).
async fn clock_moved(changes: &mut Option<tokio::sync::watch::Receiver<Timestamp>>) -> Option<()> {
    match changes {
        Some(receiver) => match receiver.changed().await {
            Ok(()) => Some(()),
            Err(_) => {
                *changes = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Build and run with the system clock, stopping on SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
    let app = Application::build(config, listener, Arc::new(SystemTimeSource)).await?;
    app.run(Shutdown::on_signals()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_count_to_the_end_of_the_last_calendar_year_in_beijing() {
        let years = gridcase_calendar::YearTable::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/calendar"),
        )
        .unwrap();
        let last = years.years().map(|file| file.year).max().unwrap();
        // 60 days before the year's end, Beijing time (UTC+8).
        let at = jiff::civil::date(last + 1, 1, 1)
            .at(0, 0, 0, 0)
            .to_zoned(jiff::tz::TimeZone::get(gridcase_calendar::TIME_ZONE).unwrap())
            .unwrap()
            .timestamp()
            - jiff::SignedDuration::from_hours(60 * 24);
        assert_eq!(calendar_days_left(&years, at), 60.0);
        assert_eq!(calendar_days_left(&years, at + jiff::SignedDuration::from_hours(100 * 24)), 0.0, "ended");
        let none = gridcase_calendar::YearTable::new([]).unwrap();
        assert_eq!(calendar_days_left(&none, at), 0.0);
    }
}
