//! The dispatcher's snapshot of open cases: what it knows of every case not
//! yet closed (the folded case, its clocks, holds, pending re-arms) and the
//! stream message up to which it has folded the log, kept in a JetStream
//! object-store bucket. A start resumes from it and reads only what came
//! after, so a restart costs time in proportion to the open cases, not to
//! the history.
//!
//! The snapshot is a cache of the log, never a second source of truth:
//! everything in it is a fold of the stream up to `covers`, and the steps
//! due are decided from it exactly as from a full replay (level-triggered).
//! Any doubt falls back to a full replay: no object, an object whose digest
//! does not match (the object store checks it on reading), another format,
//! other rules (policy or calendar files: a clock's allowance depends on
//! them), a stream that does not hold the covered message, a body that does
//! not parse or does not have as many cases as its header says.
//!
//! Format (JSON lines): a [`Header`], then one [`Tracked`] per open case.

use std::collections::{HashMap, HashSet};

use anyhow::Context as _;
use async_nats::jetstream::{self, object_store};
use gridcase_calendar::Calendar;
use gridcase_domain::CaseId;
use gridcase_envelope::CaseSubject;
use gridcase_eventlog::{EventLog, StreamMark};
use gridcase_policy::Policy;
use jiff::Timestamp;
use tokio::io::AsyncReadExt as _;

use crate::core::Tracked;

/// The bucket's default name.
pub const DEFAULT_BUCKET: &str = "gridcase-dispatcher";
/// The one object in it.
const OBJECT: &str = "open-cases";
/// The version of the snapshot's shape. Bump it whenever [`Tracked`] or
/// anything it holds (the domain's `Case`, a `ClockTiming`) changes shape:
/// the format test below pins it, and a snapshot of another format is not
/// read (the next start replays the stream once and writes the new format).
pub const FORMAT: u32 = 4;

/// The first line of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub format: u32,
    /// Every message of the stream up to and including this one is folded in.
    pub covers: StreamMark,
    /// The rules the clocks were folded under ([`rules_fingerprint`]).
    pub rules: String,
    /// How many case lines follow.
    pub cases: usize,
    /// Cases with an event this version cannot read (left alone).
    pub unreadable: Vec<CaseId>,
    /// Closed cases reopened whose history was being read: read again on resuming.
    pub loading: Vec<CaseSubject>,
    pub written_at: Timestamp,
}

/// A snapshot read back.
#[derive(Debug)]
pub struct Snapshot {
    pub header: Header,
    pub cases: HashMap<CaseId, Tracked>,
    pub unreadable: HashSet<CaseId>,
}

/// The policy and calendar files a fold depends on: a clock's allowance is
/// computed on the calendar, and whether it counts working time comes from
/// the policy. A snapshot folded under other rules is not used.
pub fn rules_fingerprint(policy: &Policy, calendar: &Calendar) -> String {
    let years: Vec<String> = calendar.years().years().map(|file| format!("{}:{}", file.year, file.digest)).collect();
    format!("policy {}; calendar {}", policy.stamp(), years.join(","))
}

/// The case lines of a snapshot (the header is written last, once the
/// covered message is known).
pub fn encode_cases<'a>(cases: impl ExactSizeIterator<Item = &'a Tracked>) -> anyhow::Result<(usize, Vec<u8>)> {
    let count = cases.len();
    let mut body = Vec::with_capacity(count * 768);
    for tracked in cases {
        serde_json::to_writer(&mut body, tracked).context("encoding a tracked case")?;
        body.push(b'\n');
    }
    Ok((count, body))
}

/// A whole snapshot: the header line, then the case lines.
pub fn assemble(header: &Header, body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(header).context("encoding the snapshot header")?;
    bytes.push(b'\n');
    bytes.extend_from_slice(body);
    Ok(bytes)
}

/// Parse a snapshot and check it against the rules in force. Errors say why
/// it cannot be used.
pub fn decode(bytes: &[u8], rules: &str) -> anyhow::Result<Snapshot> {
    let mut lines = bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty());
    let header: Header = serde_json::from_slice(lines.next().context("an empty snapshot")?)
        .context("the snapshot header does not parse")?;
    anyhow::ensure!(header.format == FORMAT, "format {} (this version reads {FORMAT})", header.format);
    anyhow::ensure!(header.rules == rules, "folded under other rules ({}; now {rules})", header.rules);
    let mut cases = HashMap::with_capacity(header.cases);
    for (index, line) in lines.enumerate() {
        let tracked: Tracked =
            serde_json::from_slice(line).with_context(|| format!("case line {} does not parse", index + 2))?;
        cases.insert(tracked.case.id, tracked);
    }
    anyhow::ensure!(
        cases.len() == header.cases,
        "{} cases where the header says {} (cut short?)",
        cases.len(),
        header.cases
    );
    let unreadable = header.unreadable.iter().copied().collect();
    Ok(Snapshot { header, cases, unreadable })
}

/// The bucket holding the snapshot.
#[derive(Clone)]
pub struct SnapshotStore {
    bucket: object_store::ObjectStore,
    rules: String,
}

impl SnapshotStore {
    /// Open the bucket, creating it with `replicas` copies if it does not exist.
    pub async fn open(
        context: &jetstream::Context,
        bucket: &str,
        replicas: usize,
        rules: String,
    ) -> anyhow::Result<Self> {
        let name = bucket;
        let bucket = match context.get_object_store(name).await {
            Ok(store) => store,
            Err(_) => context
                .create_object_store(object_store::Config {
                    bucket: name.to_owned(),
                    description: Some("gridcase dispatcher: the snapshot of open cases".to_owned()),
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("opening the object-store bucket {name}"))?,
        };
        Ok(Self { bucket, rules })
    }

    pub fn rules(&self) -> &str {
        &self.rules
    }

    /// Replace the snapshot. The object store writes the new chunks before
    /// the new description, so a crash mid-write leaves the old snapshot.
    pub async fn save(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let mut reader = bytes;
        self.bucket.put(OBJECT, &mut reader).await.context("writing the snapshot")?;
        Ok(())
    }

    /// The raw snapshot bytes, if one was saved (the object store checks
    /// their digest).
    pub async fn read(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let mut object = match self.bucket.get(OBJECT).await {
            Ok(object) => object,
            Err(error) if error.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).context("opening the snapshot"),
        };
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.context("reading the snapshot")?;
        Ok(Some(bytes))
    }

    /// The snapshot to resume from: `Ok(None)` if none was saved; an error
    /// saying why the saved one cannot be used (the caller replays the
    /// whole stream then).
    pub async fn load(&self, log: &EventLog) -> anyhow::Result<Option<Snapshot>> {
        let Some(bytes) = self.read().await? else { return Ok(None) };
        let rules = self.rules.clone();
        let snapshot = tokio::task::spawn_blocking(move || decode(&bytes, &rules)).await??;
        let covers = &snapshot.header.covers;
        let found = log.mark_at(covers.sequence).await.context("reading the covered message")?;
        anyhow::ensure!(
            found.as_ref() == Some(covers),
            "the stream holds {found:?} at sequence {}, not the message the snapshot covers",
            covers.sequence
        );
        Ok(Some(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use gridcase_domain::{CategoryCode, Clock, ClockMark, GridCode, OrgCode, State, Supervision, Tier};
    use gridcase_policy::ClockTiming;
    use jiff::SignedDuration;

    use super::*;

    fn tracked() -> Tracked {
        let id = CaseId::parse("019a0000-0000-7000-8000-000000000001").unwrap();
        let grid = GridCode::parse("990101001001001").unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let case = gridcase_domain::Case {
            id,
            grid: grid.clone(),
            category: CategoryCode::parse("0101").unwrap(),
            state: State::OnHold,
            version: 7,
            severity_hint: Some(Tier::Urgent),
            tier: Some(Tier::Normal),
            unit: Some(OrgCode::parse("unit-990101-cg").unwrap()),
            supervision: Supervision::YellowCard,
            urgent: false,
            deadlines: BTreeMap::from([(Clock::Resolve, at("2026-03-20T01:00:00Z"))]),
            terms: BTreeMap::from([(
                Clock::Resolve,
                gridcase_domain::ClockTerms {
                    working: true,
                    hours_of: Some(OrgCode::parse("unit-990101-cg").unwrap()),
                },
            )]),
            marks: [(Clock::Acknowledge, ClockMark::Warning)].into_iter().collect(),
            pending_extension: None,
            approved_extension_days: 2,
            hold_requested: false,
            feedback: None,
            returns: 1,
            reworks: 0,
            reopenings: 0,
            added_reports: 0,
            merged_into: None,
            contact: gridcase_domain::ContactState::Given,
            request_kind: Some(gridcase_domain::RequestKind::Complaint),
            replied: true,
            called_back: false,
        };
        Tracked {
            subject: CaseSubject::for_grid(&grid, &id),
            last_sequence: 42,
            last_hash: "ab".repeat(32),
            filed_at: at("2026-03-09T01:00:00Z"),
            clocks: BTreeMap::from([(
                Clock::Resolve,
                ClockTiming {
                    origin: at("2026-03-10T01:00:00Z"),
                    used_before: SignedDuration::from_hours(3),
                    allowed: SignedDuration::from_hours(40),
                    due: at("2026-03-20T01:00:00Z"),
                    working: true,
                    hours_of: Some(OrgCode::parse("unit-990101-cg").unwrap()),
                },
            )]),
            waiting_noted: false,
            hold: Some((at("2026-03-12T02:00:00Z"), SignedDuration::from_mins(90))),
            extension_to_apply: 0,
            resume_remaining: None,
            resolved_at: None,
            reopened_at: None,
            awaiting_first_dispatch: false,
            retention_from: None,
            closed_at: None,
            case,
        }
    }

    fn header(cases: usize) -> Header {
        Header {
            format: FORMAT,
            covers: StreamMark { sequence: 42, subject: tracked().subject.to_string(), hash: Some("ab".repeat(32)) },
            rules: "policy p@1; calendar 2026:x".into(),
            cases,
            unreadable: vec![CaseId::parse("019a0000-0000-7000-8000-000000000002").unwrap()],
            loading: vec![tracked().subject],
            written_at: "2026-03-12T03:00:00Z".parse().unwrap(),
        }
    }

    /// The shape of a case line, pinned: if this test fails because a field
    /// of `Tracked`, `Case` or `ClockTiming` changed, bump [`FORMAT`] and
    /// update the expected line (old snapshots are then replayed over, not
    /// misread).
    #[test]
    fn the_format_of_a_case_line_is_pinned() {
        assert_eq!(FORMAT, 4, "bumped: update the expected line below to the new shape");
        let line = serde_json::to_string(&tracked()).unwrap();
        let expected = r#"{"case":{"id":"019a0000-0000-7000-8000-000000000001","grid":"990101001001001","category":"0101","state":"ON_HOLD","version":7,"severity_hint":"URGENT","tier":"NORMAL","unit":"unit-990101-cg","supervision":"YELLOW_CARD","urgent":false,"deadlines":{"RESOLVE":"2026-03-20T01:00:00Z"},"terms":{"RESOLVE":{"working":true,"hours_of":"unit-990101-cg"}},"marks":[["ACKNOWLEDGE","WARNING"]],"pending_extension":null,"approved_extension_days":2,"hold_requested":false,"feedback":null,"returns":1,"reworks":0,"reopenings":0,"contact":"given","request_kind":"COMPLAINT","replied":true},"subject":"gridcase.case.990101001.019a0000-0000-7000-8000-000000000001","last_sequence":42,"last_hash":"abababababababababababababababababababababababababababababababab","filed_at":"2026-03-09T01:00:00Z","clocks":{"RESOLVE":{"origin":"2026-03-10T01:00:00Z","used_before":"PT3H","allowed":"PT40H","due":"2026-03-20T01:00:00Z","working":true,"hours_of":"unit-990101-cg"}},"waiting_noted":false,"hold":["2026-03-12T02:00:00Z","PT1H30M"],"extension_to_apply":0,"resume_remaining":null,"resolved_at":null,"reopened_at":null,"awaiting_first_dispatch":false,"retention_from":null,"closed_at":null}"#;
        assert_eq!(line, expected);
    }

    #[test]
    fn a_snapshot_reads_back_as_written() {
        let (count, body) = encode_cases([tracked()].iter()).unwrap();
        let bytes = assemble(&header(count), &body).unwrap();
        let snapshot = decode(&bytes, "policy p@1; calendar 2026:x").unwrap();
        assert_eq!(snapshot.header, header(1));
        assert_eq!(snapshot.cases.len(), 1);
        let back = &snapshot.cases[&tracked().case.id];
        assert_eq!(serde_json::to_string(back).unwrap(), serde_json::to_string(&tracked()).unwrap());
        assert_eq!(snapshot.unreadable, header(1).unreadable.into_iter().collect());
    }

    #[test]
    fn a_snapshot_in_doubt_is_refused_with_the_reason() {
        let (count, body) = encode_cases([tracked()].iter()).unwrap();
        let good = assemble(&header(count), &body).unwrap();
        let refusal = |bytes: &[u8], rules: &str| decode(bytes, rules).unwrap_err().to_string();

        assert!(refusal(&good, "policy p@2; calendar 2026:x").contains("other rules"));
        let other_format = assemble(&Header { format: FORMAT + 1, ..header(count) }, &body).unwrap();
        assert!(refusal(&other_format, "policy p@1; calendar 2026:x").contains(&format!("format {}", FORMAT + 1)));
        let cut_short = assemble(&header(2), &body).unwrap();
        assert!(refusal(&cut_short, "policy p@1; calendar 2026:x").contains("1 cases where the header says 2"));
        let torn = &good[..good.len() - 20];
        assert!(refusal(torn, "policy p@1; calendar 2026:x").contains("does not parse"));
        assert!(refusal(b"", "x").contains("empty"));
        assert!(refusal(b"garbage\n", "x").contains("header does not parse"));
    }
}

/// The snapshot of open cases as this instance has used it: the sequence it
/// resumed from (none: it replayed the whole stream) and the sequence the
/// last snapshot it saved covers (0: none yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshots {
    pub resumed_from: Option<u64>,
    pub saved: u64,
}

/// When the snapshot of open cases is saved, and where.
pub struct SnapshotState {
    /// None: snapshots are off (`--no-snapshot`).
    store: Option<SnapshotStore>,
    /// Saved at most this often, when the stream has moved.
    every: std::time::Duration,
    /// When the last save started (or the instance did).
    started_at: Option<std::time::Instant>,
    /// The sequence the last snapshot saved (or started, or resumed from) covers.
    covers: u64,
    /// The save under way, if any.
    saving: Option<tokio::task::JoinHandle<()>>,
    progress: std::sync::Arc<tokio::sync::watch::Sender<Snapshots>>,
}

impl SnapshotState {
    /// The first save comes an interval after the start.
    pub fn new(
        store: Option<SnapshotStore>,
        every: std::time::Duration,
        progress: std::sync::Arc<tokio::sync::watch::Sender<Snapshots>>,
    ) -> Self {
        Self { store, every, started_at: Some(std::time::Instant::now()), covers: 0, saving: None, progress }
    }

    /// Whether a snapshot should be saved now that `position` is folded.
    pub fn due(&self, position: u64) -> bool {
        self.store.is_some()
            && position > self.covers
            && self.saving.as_ref().is_none_or(|saving| saving.is_finished())
            && self.started_at.is_none_or(|at| at.elapsed() >= self.every)
    }

    /// The saved snapshot, if there is one that can be trusted (why not is logged).
    pub async fn load(&self, log: &EventLog) -> Option<Snapshot> {
        let store = self.store.as_ref()?;
        let started = std::time::Instant::now();
        let snapshot = match store.load(log).await {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => {
                tracing::info!("no snapshot of open cases saved yet: reading the whole stream");
                return None;
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "the snapshot of open cases cannot be used: reading the whole stream"
                );
                return None;
            }
        };
        tracing::info!(
            position = snapshot.header.covers.sequence,
            cases = snapshot.cases.len(),
            saved_at = %snapshot.header.written_at,
            seconds = started.elapsed().as_secs_f64(),
            "resuming from the snapshot of open cases"
        );
        Some(snapshot)
    }

    /// The instance resumed from a snapshot covering `position`.
    pub fn resumed(&mut self, position: u64) {
        self.covers = position;
        self.progress.send_modify(|progress| progress.resumed_from = Some(position));
    }

    /// Save what `schedule` has folded as the snapshot: the case lines are
    /// encoded here (they are the state as of its position); finding the
    /// covered message and writing go on in the background.
    pub fn save(&mut self, schedule: &crate::schedule::Schedule, written_at: Timestamp, log: EventLog) {
        let store = self.store.clone().expect("snapshots are on");
        let started = std::time::Instant::now();
        let position = schedule.position();
        let encoded = encode_cases(schedule.cases.values());
        let unreadable: Vec<CaseId> = schedule.unreadable.iter().copied().collect();
        let loading = schedule.loading_subjects();
        let progress = self.progress.clone();
        let encode_seconds = started.elapsed().as_secs_f64();
        self.started_at = Some(started);
        let task = tokio::spawn(async move {
            let saved = async {
                let (cases, body) = encoded?;
                let covers = log
                    .mark_at(position)
                    .await?
                    .with_context(|| format!("the stream holds no message at {position}"))?;
                let header = Header {
                    format: FORMAT,
                    covers,
                    rules: store.rules().to_owned(),
                    cases,
                    unreadable,
                    loading,
                    written_at,
                };
                let bytes = assemble(&header, &body)?;
                store.save(&bytes).await?;
                Ok::<_, anyhow::Error>((cases, bytes.len()))
            };
            match saved.await {
                Ok((cases, bytes)) => {
                    tracing::info!(
                        position,
                        cases,
                        bytes,
                        encode_seconds,
                        seconds = started.elapsed().as_secs_f64(),
                        "snapshot of open cases saved"
                    );
                    metrics::gauge!(crate::metrics::METRIC_SNAPSHOT_SEQUENCE).set(position as f64);
                    progress.send_modify(|progress| progress.saved = progress.saved.max(position));
                }
                Err(error) => {
                    tracing::warn!(position, error = format!("{error:#}"), "saving the snapshot of open cases failed");
                    metrics::counter!(crate::metrics::METRIC_SNAPSHOT_FAILURES).increment(1);
                }
            }
        });
        self.covers = position;
        self.saving = Some(task);
    }

    /// On stopping: let the save under way finish, then save what is
    /// folded beyond what was saved or resumed from.
    pub async fn finish(&mut self, schedule: &crate::schedule::Schedule, now: Timestamp, log: EventLog) {
        if let Some(saving) = self.saving.take() {
            let _ = saving.await;
        }
        // Saved, or resumed from, as far as this (a save that failed does not count).
        let kept = {
            let progress = self.progress.borrow();
            progress.saved.max(progress.resumed_from.unwrap_or(0))
        };
        if self.store.is_some() && schedule.position() > kept {
            self.save(schedule, now, log);
            if let Some(saving) = self.saving.take() {
                let _ = saving.await;
            }
        }
    }
}
