//! The dispatcher's shell: reads every case event from JetStream (an ordered
//! consumer from the first event, or from its snapshot's position), feeds
//! the [`Schedule`], carries out what it asks for (histories to read, steps
//! to commit) and runs the deadline watch on a tick of the injected time
//! source. What to do when is the schedule's; what the next step of a case
//! is, the core's; this module only waits, reads and writes.
//!
//! The log is the state. What the dispatcher has folded of open cases is
//! saved now and then as a snapshot (`snapshot`), a cache of the log up to
//! a stream sequence: a start resumes from it and reads only what came
//! after, and replays the whole stream when it has none it can trust. Steps
//! are appended only once the consumer has caught up with the stream, each
//! with the expected per-case sequence and an event id derived from the
//! step, so a restart or a second instance never takes a step twice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gridcase_calendar::Calendar;
use gridcase_domain::CaseId;
use gridcase_envelope::{CaseSubject, Positioned, StoredEvent};
use gridcase_eventlog::store::{CaseStore, CommitError, Committed};
use gridcase_eventlog::{KeyStore, LogError, ReadFrom};
use gridcase_policy::Policy;
use gridcase_process::{Shutdown, SystemTimeSource, TimeSource};
use gridcase_reference::Reference;
use jiff::Timestamp;
use tokio::net::TcpListener;
use tracing::{debug, error, info, warn};

use crate::commit::{Commit, Done, commit};
use crate::config::Config;
use crate::core::Core;
use crate::health::Health;
pub use crate::health::{HEALTH_CALENDAR, HEALTH_DISPATCHER};
use crate::metrics::*;
use crate::schedule::{Answer, LoadFailure, Loaded, Observation, Schedule};
pub use crate::snapshot::Snapshots;
use crate::snapshot::{SnapshotState, SnapshotStore};

/// Dirty cases that make a batch worth deciding before the consumer is idle.
const DIRTY_BATCH: usize = 64;
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
            let rules = crate::snapshot::rules_fingerprint(&policy, &calendar);
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
        let health = Health::start(health).await;
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
            // Group commit off (one event per write): one step per commit, as before.
            schedule: Schedule::new(self.config.common.group_commit_events > 1),
            snapshot: SnapshotState::new(
                self.snapshot_store.clone(),
                self.config.snapshot_interval,
                self.snapshots.clone(),
            ),
            store: self.store.clone(),
            keys: self.keys.clone(),
            policy: self.policy.clone(),
            calendar: self.calendar.clone(),
            reference: self.reference.clone(),
            clock: self.clock.clone(),
            traces: HashMap::new(),
            lag: Lag::default(),
            health,
            idle: self.idle.clone(),
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
    schedule: Schedule,
    snapshot: SnapshotState,
    store: Arc<CaseStore>,
    /// Destroys the data key of each erasure read (see [`erase_key`]).
    keys: KeyStore,
    policy: Arc<Policy>,
    calendar: Arc<Calendar>,
    reference: Arc<Reference>,
    clock: Arc<dyn TimeSource>,
    /// The trace of each open case's last event (only while traces are
    /// exported): the case's next step continues it.
    traces: HashMap<CaseId, opentelemetry::Context>,
    lag: Lag,
    health: Health,
    idle: tokio::sync::watch::Sender<Idle>,
}

/// A case's history being read.
type Load = std::pin::Pin<Box<dyn std::future::Future<Output = (CaseId, Result<Vec<Positioned>, LogError>)> + Send>>;

/// How long one attempt to start reading the case stream may take.
const READ_START_DEADLINE: Duration = Duration::from_secs(20);

/// Read a case's history (after `pause`, when trying again).
fn load(store: Arc<CaseStore>, subject: CaseSubject, pause: Duration) -> Load {
    Box::pin(async move {
        tokio::time::sleep(pause).await;
        let history = store.log().history(&subject).await;
        (subject.case_id(), history)
    })
}

impl Worker {
    async fn run(&mut self, config: &Config, shutdown: Shutdown) -> anyhow::Result<()> {
        let (resumed, reopened) = self.resume().await;
        // Each attempt to start the read is bounded and said: the fourth
        // long chaos run saw both dispatchers wait minutes, silently, for an
        // ordered consumer to be created right after a restart from their
        // snapshot (the cause is not established; the wait is now visible
        // and cut short).
        let mut attempt = 0u32;
        let mut records = loop {
            attempt += 1;
            let read = self.store.log().read(CaseSubject::all_filter(), ReadFrom::after(resumed));
            let failure = match tokio::time::timeout(READ_START_DEADLINE, read).await {
                Ok(Ok(records)) => break records,
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {READ_START_DEADLINE:?}"),
            };
            warn!(attempt, after = resumed, %failure, "starting the read of the case stream failed; trying again");
            tokio::select! {
                _ = shutdown.clone().requested() => anyhow::bail!("reading the case stream: {failure}"),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
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
        let mut loads: FuturesUnordered<Load> =
            reopened.into_iter().map(|subject| load(self.store.clone(), subject, Duration::ZERO)).collect();
        let at_end = |schedule: &Schedule| schedule.position() >= schedule.seen_end();

        loop {
            tokio::select! {
                biased;
                _ = shutdown.clone().requested() => break,
                Some((case_id, history)) = loads.next(), if !loads.is_empty() => {
                    if let Some(subject) = self.loaded(case_id, history) {
                        loads.push(load(self.store.clone(), subject, Duration::from_millis(100)));
                    }
                    if caught_up && at_end(&self.schedule) {
                        commits.extend(self.act(MAX_COMMITS.saturating_sub(commits.len())));
                        self.report_idle(true);
                    }
                }
                Some(done) = commits.next(), if !commits.is_empty() => {
                    self.settle(done);
                    if caught_up && at_end(&self.schedule) {
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
                    if let Some(subject) = self.observe(&record.subject, &stored, record.sequence, record.headers.as_ref()) {
                        loads.push(load(self.store.clone(), subject, Duration::ZERO));
                    }
                    self.schedule.saw_end(record.sequence, record.pending);
                    metrics::gauge!(METRIC_PENDING).set(record.pending as f64);
                    self.lag.note(record.pending);
                    // While reading a long way behind (a first start on years
                    // of history), the tick below seldom gets its turn: save
                    // here too, so a crash does not start the reading over.
                    if !caught_up && self.snapshot.due(self.schedule.position()) {
                        self.snapshot.save(&self.schedule, self.clock.now(), self.store.log().clone());
                    }
                    if record.caught_up() && !caught_up {
                        caught_up = true;
                        self.mark_caught_up().await;
                    }
                    let batch_ready = last_act.elapsed() >= ACT_INTERVAL || self.schedule.dirty_cases() >= DIRTY_BATCH;
                    if caught_up && (record.caught_up() || batch_ready) {
                        commits.extend(self.act(MAX_COMMITS.saturating_sub(commits.len())));
                        last_act = std::time::Instant::now();
                        self.report_idle(record.caught_up());
                    }
                }
                _ = tick.tick() => {
                    commits.extend(self.on_tick(caught_up, MAX_COMMITS.saturating_sub(commits.len())).await);
                    if self.snapshot.due(self.schedule.position()) {
                        self.snapshot.save(&self.schedule, self.clock.now(), self.store.log().clone());
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
        self.snapshot.finish(&self.schedule, self.clock.now(), self.store.log().clone()).await;
        Ok(())
    }

    /// Take over the saved snapshot of open cases if there is one that can
    /// be trusted: the stream sequence it covers (0: read the whole stream),
    /// and the reopened cases whose histories are to be read again.
    async fn resume(&mut self) -> (u64, Vec<CaseSubject>) {
        let Some(snapshot) = self.snapshot.load(self.store.log()).await else { return (0, Vec::new()) };
        let position = snapshot.header.covers.sequence;
        // Every open case is looked at once caught up: its due steps and
        // wake-ups are decided from its state, as after a full replay.
        let reopened = self.schedule.resume(position, snapshot.cases, snapshot.unreadable, snapshot.header.loading);
        metrics::gauge!(METRIC_RESUMED_FROM).set(position as f64);
        metrics::gauge!(METRIC_OPEN_CASES).set(self.schedule.open_cases() as f64);
        self.snapshot.resumed(position);
        (position, reopened)
    }

    /// Fold one message of the stream; the subject of a case whose history
    /// must be read (a closed case reopened), if any.
    fn observe(
        &mut self,
        subject: &str,
        stored: &Result<StoredEvent, gridcase_envelope::DecodeError>,
        sequence: u64,
        headers: Option<&async_nats::HeaderMap>,
    ) -> Option<CaseSubject> {
        let core = Core { policy: &self.policy, calendar: &self.calendar, reference: &self.reference };
        match self.schedule.observe(&core, subject, stored.as_ref(), sequence) {
            Observation::Tracked(case_id) => {
                let trace = gridcase_eventlog::trace::extract(headers);
                if opentelemetry::trace::TraceContextExt::has_active_span(&trace) {
                    self.traces.insert(case_id, trace);
                }
            }
            Observation::Dropped(case_id) => {
                self.traces.remove(&case_id);
            }
            Observation::Load(subject) => {
                debug!(case_id = %subject.case_id(), sequence, "a closed case reopened: reading its history");
                return Some(subject);
            }
            Observation::Unreadable(None) => {
                let error = stored.as_ref().err().map(ToString::to_string).unwrap_or_default();
                error!(sequence, %error, "unreadable message in the case stream; skipped");
                metrics::counter!(METRIC_SKIPPED).increment(1);
            }
            Observation::Unreadable(Some(case_id)) => {
                warn!(%case_id, sequence, "event this version cannot read; leaving the case alone");
                metrics::counter!(METRIC_SKIPPED).increment(1);
            }
            Observation::Ignored => {}
        }
        None
    }

    /// A reopened case's history as read; the subject to read again, if any.
    fn loaded(&mut self, case_id: CaseId, history: Result<Vec<Positioned>, LogError>) -> Option<CaseSubject> {
        let core = Core { policy: &self.policy, calendar: &self.calendar, reference: &self.reference };
        let history = match &history {
            Ok(history) => Ok(history.iter().map(|p| (p.stream_sequence, &p.event)).collect()),
            Err(LogError::Unavailable(error)) => {
                warn!(%case_id, %error, "reading a reopened case's history failed; trying again");
                Err(LoadFailure::Unavailable)
            }
            Err(error) => {
                warn!(%case_id, %error, "a reopened case's history cannot be read; leaving the case alone");
                Err(LoadFailure::Unreadable)
            }
        };
        match self.schedule.loaded(&core, case_id, history) {
            Loaded::Again(subject) => Some(subject),
            Loaded::Unreadable => {
                warn!(%case_id, "an event of a reopened case this version cannot read; leaving the case alone");
                metrics::counter!(METRIC_SKIPPED).increment(1);
                None
            }
            Loaded::Done | Loaded::Unknown => None,
        }
    }

    /// The deadline watch's turn: the calendar check, then every case due
    /// (at most `room` commits started).
    async fn on_tick(&mut self, caught_up: bool, room: usize) -> Vec<Commit> {
        self.health.check_calendar(&self.calendar, self.clock.now()).await;
        self.report_health().await;
        metrics::gauge!(METRIC_OPEN_CASES).set(self.schedule.open_cases() as f64);
        // The lag also while no record arrives (a reader stalled behind a
        // growing stream): the stream's end against what was read, once a
        // second at most (a tick can be far shorter, and a hand-moved clock
        // ticks at once).
        if self.lag.check_due()
            && let Ok(end) = self.store.log().last_sequence().await
        {
            self.lag.checked(end.saturating_sub(self.schedule.position()));
        }
        if !caught_up {
            return Vec::new();
        }
        self.schedule.wake_due(self.clock.now());
        let commits = self.act(room);
        self.report_idle(self.schedule.position() >= self.schedule.seen_end());
        commits
    }

    /// Start committing the steps the schedule hands out: none while the log
    /// does not keep its history (the cases stay dirty until it does again).
    fn act(&mut self, room: usize) -> Vec<Commit> {
        if room == 0 || self.store.log().integrity().writable().is_err() {
            return Vec::new();
        }
        let now = self.clock.now();
        let core = Core { policy: &self.policy, calendar: &self.calendar, reference: &self.reference };
        let steps = self.schedule.act(&core, now, room);
        steps
            .into_iter()
            .map(|steps| {
                let parent = self.traces.get(&steps.head.case_id).cloned();
                commit(self.store.clone(), steps, parent, now)
            })
            .collect()
    }

    /// A commit's answer: count and log it, and tell the schedule.
    fn settle(&mut self, (steps, result): Done) {
        let case_id = steps.head.case_id;
        let kind = steps.steps[0].0.kind();
        let answer = match result {
            Ok(committed) => {
                for ((event, action), committed) in steps.steps.iter().zip(&committed) {
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
                let last_sequence = committed.last().map_or(0, |c| match c {
                    Committed::Stored(positioned) => positioned.stream_sequence,
                    Committed::AlreadyStored(sequence) => *sequence,
                });
                Answer::Stored { last_sequence }
            }
            Err(CommitError::Conflict) => {
                debug!(%case_id, step = kind, "another writer moved the case first");
                metrics::counter!(METRIC_CONFLICTS).increment(1);
                Answer::Conflict
            }
            // Writes stopped meanwhile: looked at again once they resume.
            Err(CommitError::Stopped(_)) => Answer::Retry,
            Err(CommitError::Refused(error)) => {
                // Sending it again would change nothing: the case waits
                // for its next event or wake-up, and an operator.
                error!(%case_id, step = kind, %error, "the event log refused a step");
                Answer::Refused
            }
            Err(error @ CommitError::Unavailable(_)) => {
                warn!(%case_id, step = kind, %error, "appending a step failed; will retry");
                Answer::Retry
            }
        };
        // Events appended by us come back through the consumer, which marks
        // their cases dirty again for the following step.
        self.schedule.settle(&steps.head, answer);
    }

    /// Tell waiters when nothing is left to do: read to the end of the
    /// stream, every due case looked at, no step of ours still in flight.
    fn report_idle(&self, at_stream_end: bool) {
        if at_stream_end && self.schedule.settled() {
            let idle = Idle { at: self.schedule.woken_at(), sequence: self.schedule.position() };
            self.idle.send_if_modified(|current| {
                let changed = *current != idle;
                *current = idle;
                changed
            });
        }
    }

    async fn mark_caught_up(&mut self) {
        let writable = self.store.log().integrity().writable().is_ok();
        self.health.caught_up(self.schedule.open_cases(), writable).await;
        self.health.check_calendar(&self.calendar, self.clock.now()).await;
    }

    async fn report_health(&mut self) {
        self.health.report(self.store.log().integrity().writable().is_ok()).await;
    }
}

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

/// Build and run with the system time, stopping on SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
    let app = Application::build(config, listener, Arc::new(SystemTimeSource)).await?;
    app.run(Shutdown::on_signals()).await
}
