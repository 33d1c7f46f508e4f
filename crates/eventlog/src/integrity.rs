//! Whether the streams that hold gridcase's history still keep all of it.
//!
//! JetStream discards messages under a stream's limits (`max_msgs`,
//! `max_bytes`, `max_age`, `max_msgs_per_subject`), on roll-up headers and
//! on message TTLs, without any delete or purge being sent; `deny_delete`
//! and `deny_purge` do not stop any of it. So every service checks, at
//! start and on an interval, that the case stream and the attachment
//! stream keep everything (and that the key bucket keeps its one key per
//! case), and that what they hold never shrinks: no first sequence moving
//! forward, no message missing between the first and the last, no last
//! sequence going back. A problem stops writes ([`Integrity::writable`]),
//! makes the service unhealthy, sets the metric [`METRIC_PROBLEMS`] and is
//! logged with exactly what changed.
//!
//! The checks themselves ([`config_problems`], [`config_changes`],
//! [`state_problems`]) are pure; [`watch`] runs them against the server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tokio::sync::watch as signal;

/// Problems found with each watched stream's configuration or contents (0: keeps everything).
pub const METRIC_PROBLEMS: &str = "gridcase_log_integrity_problems";

/// What a stream keeps, which decides what it must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeps {
    /// Every message, forever: the case stream, the attachment stream.
    Everything,
    /// One value per subject, deleted only one by one (erasure): the key bucket.
    OneKeyPerCase,
}

/// One watched stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub stream: String,
    pub keeps: Keeps,
    /// A subject filter the stream must keep taking (e.g. `gridcase.case.>`).
    pub subjects: String,
}

fn limit(value: i64) -> String {
    if value <= 0 { "unlimited".into() } else { value.to_string() }
}

fn age(value: Duration) -> String {
    if value.is_zero() { "unlimited".into() } else { format!("{}s", value.as_secs()) }
}

/// What is wrong with `config` for a stream that keeps `watched.keeps`.
pub fn config_problems(watched: &Watched, config: &stream::Config) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |text: String| problems.push(text);
    if config.storage != stream::StorageType::File {
        problem("storage is not file".into());
    }
    if !config.subjects.iter().any(|s| s == &watched.subjects) {
        problem(format!("subjects {:?} no longer include {}", config.subjects, watched.subjects));
    }
    if config.max_messages > 0 {
        problem(format!("max_msgs is {} (must be unlimited)", config.max_messages));
    }
    if config.max_bytes > 0 {
        problem(format!("max_bytes is {} (must be unlimited)", config.max_bytes));
    }
    if !config.max_age.is_zero() {
        problem(format!("max_age is {} (must be unlimited)", age(config.max_age)));
    }
    match watched.keeps {
        Keeps::Everything => {
            if config.max_messages_per_subject > 0 {
                problem(format!("max_msgs_per_subject is {} (must be unlimited)", config.max_messages_per_subject));
            }
            if !config.deny_delete {
                problem("deny_delete is off".into());
            }
        }
        Keeps::OneKeyPerCase => {
            if config.max_messages_per_subject != 1 {
                problem(format!("max_msgs_per_subject is {} (must be 1)", limit(config.max_messages_per_subject)));
            }
        }
    }
    if !config.deny_purge {
        problem("deny_purge is off".into());
    }
    if config.allow_rollup {
        problem("roll-ups are allowed".into());
    }
    if config.allow_message_ttl || config.subject_delete_marker_ttl.is_some() {
        problem("message TTLs are allowed".into());
    }
    if config.retention != stream::RetentionPolicy::Limits {
        problem(format!("retention is {:?} (must be limits)", config.retention));
    }
    if config.sealed {
        problem("the stream is sealed (it takes no new message)".into());
    }
    if config.mirror.is_some() || config.subject_transform.is_some() {
        problem("the stream mirrors or transforms subjects".into());
    }
    if matches!(config.persist_mode, Some(stream::PersistenceMode::Async)) {
        problem("persist_mode is async (acknowledged writes may not be on disk)".into());
    }
    problems
}

/// The settings history depends on that differ between `before` and
/// `after`, as `field: before → after`.
pub fn config_changes(before: &stream::Config, after: &stream::Config) -> Vec<String> {
    let mut changes = Vec::new();
    let mut compare = |field: &str, a: String, b: String| {
        if a != b {
            changes.push(format!("{field}: {a} → {b}"));
        }
    };
    compare("subjects", format!("{:?}", before.subjects), format!("{:?}", after.subjects));
    compare("storage", format!("{:?}", before.storage), format!("{:?}", after.storage));
    compare("max_msgs", limit(before.max_messages), limit(after.max_messages));
    compare("max_bytes", limit(before.max_bytes), limit(after.max_bytes));
    compare("max_age", age(before.max_age), age(after.max_age));
    compare("max_msgs_per_subject", limit(before.max_messages_per_subject), limit(after.max_messages_per_subject));
    compare("deny_delete", before.deny_delete.to_string(), after.deny_delete.to_string());
    compare("deny_purge", before.deny_purge.to_string(), after.deny_purge.to_string());
    compare("allow_rollup_hdrs", before.allow_rollup.to_string(), after.allow_rollup.to_string());
    compare("allow_msg_ttl", before.allow_message_ttl.to_string(), after.allow_message_ttl.to_string());
    compare("retention", format!("{:?}", before.retention), format!("{:?}", after.retention));
    compare("sealed", before.sealed.to_string(), after.sealed.to_string());
    compare("num_replicas", before.num_replicas.to_string(), after.num_replicas.to_string());
    changes
}

/// Where a stream's contents stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extent {
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub messages: u64,
}

impl Extent {
    pub fn of(state: &stream::State) -> Self {
        Self { first_sequence: state.first_sequence, last_sequence: state.last_sequence, messages: state.messages }
    }
}

/// What is wrong with a stream's contents `now`, given what was seen
/// `before` (none at the first look).
pub fn state_problems(keeps: Keeps, before: Option<&Extent>, now: &Extent) -> Vec<String> {
    let mut problems = Vec::new();
    if keeps == Keeps::Everything && now.last_sequence > 0 {
        if now.first_sequence > 1 {
            problems.push(format!(
                "the first stream sequence is {}: messages 1 to {} are gone",
                now.first_sequence,
                now.first_sequence - 1
            ));
        }
        let span = now.last_sequence + 1 - now.first_sequence.max(1);
        if now.messages < span {
            problems.push(format!(
                "{} of the messages between sequences {} and {} are gone",
                span - now.messages,
                now.first_sequence.max(1),
                now.last_sequence
            ));
        }
    }
    if let Some(before) = before {
        if now.last_sequence < before.last_sequence {
            problems.push(format!(
                "the last stream sequence went back from {} to {}",
                before.last_sequence, now.last_sequence
            ));
        }
        if keeps == Keeps::Everything {
            if now.first_sequence > before.first_sequence && before.last_sequence > 0 {
                problems.push(format!(
                    "the first stream sequence moved forward from {} to {}",
                    before.first_sequence, now.first_sequence
                ));
            }
            if now.messages < before.messages {
                problems.push(format!("the stream went from {} to {} messages", before.messages, now.messages));
            }
        }
    }
    problems
}

/// The shared verdict of a process's watches: whether it may write, and why not.
#[derive(Clone)]
pub struct Integrity {
    inner: Arc<Inner>,
}

struct Inner {
    problems: Mutex<BTreeMap<String, Vec<String>>>,
    broken: signal::Sender<bool>,
}

impl Default for Integrity {
    fn default() -> Self {
        Self { inner: Arc::new(Inner { problems: Mutex::new(BTreeMap::new()), broken: signal::channel(false).0 }) }
    }
}

impl std::fmt::Debug for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integrity").field("problems", &self.problems()).finish()
    }
}

impl Integrity {
    /// Ok while every watched stream keeps its history; else what is wrong.
    pub fn writable(&self) -> Result<(), String> {
        if !*self.inner.broken.borrow() {
            return Ok(());
        }
        let problems = self.problems();
        Err(problems
            .iter()
            .map(|(stream, list)| format!("{stream}: {}", list.join("; ")))
            .collect::<Vec<_>>()
            .join("; "))
    }

    /// Every stream's current problems.
    pub fn problems(&self) -> BTreeMap<String, Vec<String>> {
        self.inner.problems.lock().expect("integrity").clone()
    }

    /// Record `stream`'s problems (empty: none), as the watch found them.
    pub fn set(&self, stream: &str, problems: Vec<String>) {
        let mut all = self.inner.problems.lock().expect("integrity");
        metrics::gauge!(METRIC_PROBLEMS, "stream" => stream.to_owned()).set(problems.len() as f64);
        if problems.is_empty() {
            all.remove(stream);
        } else {
            all.insert(stream.to_owned(), problems);
        }
        let broken = !all.is_empty();
        self.inner.broken.send_if_modified(|was| std::mem::replace(was, broken) != broken);
    }

    /// Changes of [`Integrity::writable`] (true: broken), for health.
    pub fn subscribe(&self) -> signal::Receiver<bool> {
        self.inner.broken.subscribe()
    }
}

/// Register the metric (its streams appear at their first check).
pub fn register_metrics() {
    metrics::describe_gauge!(
        METRIC_PROBLEMS,
        "Problems found with a stream that holds gridcase's history: a retention limit, roll-ups, TTLs, \
         deletion allowed, or messages gone (0: it keeps everything). Writes stop while any is above 0."
    );
}

/// One stream's watch: what it saw last, so changes can be named.
struct Seen {
    config: stream::Config,
    extent: Option<Extent>,
    /// Problems of contents seen earlier in this process (a sequence going
    /// back): they stay until the process restarts after an operator looked.
    sticky: Vec<String>,
    /// The other problems of contents at the last look that judged them.
    contents: Vec<String>,
}

/// Check `watched` once against the server, record the verdict in
/// `integrity` and log what changed since `seen`. A stream that cannot be
/// read (NATS down) is not judged this time.
async fn check(
    context: &jetstream::Context,
    watched: &Watched,
    seen: &mut Seen,
    integrity: &Integrity,
) -> Result<(), jetstream::context::GetStreamError> {
    let stream = context.get_stream_no_info(&watched.stream).await?;
    let Ok(info) = stream.get_info().await else { return Ok(()) };
    let extent = Extent::of(&info.state);
    let mut problems = config_problems(watched, &info.config);
    // Contents are judged only from a leader in touch with a quorum: a
    // deposed leader not yet stepped down, or a leaderless group's member,
    // answers with an old extent, which would read as history going back.
    if !leader_current(&info) {
        tracing::debug!(stream = %watched.stream, "the stream's state comes from a leader not known to be current; contents not judged this time");
        problems.extend(seen.contents.iter().cloned());
        problems.extend(seen.sticky.iter().cloned());
        integrity.set(&watched.stream, problems);
        seen.config = info.config;
        return Ok(());
    }
    let contents = state_problems(watched.keeps, seen.extent.as_ref(), &extent);
    let previous = integrity.problems().remove(&watched.stream).unwrap_or_default();
    seen.contents.clear();
    for problem in contents {
        if problem.starts_with("the last stream sequence went back") || problem.starts_with("the stream went from") {
            seen.sticky.push(problem);
        } else {
            seen.contents.push(problem.clone());
            problems.push(problem);
        }
    }
    problems.extend(seen.sticky.iter().cloned());
    let changes = config_changes(&seen.config, &info.config);
    if problems != previous {
        if problems.is_empty() {
            tracing::warn!(stream = %watched.stream, "the stream keeps its history again: writes resume");
        } else {
            tracing::error!(
                stream = %watched.stream,
                problems = ?problems,
                changed = ?changes,
                first_sequence = extent.first_sequence,
                last_sequence = extent.last_sequence,
                messages = extent.messages,
                "the stream no longer keeps gridcase's history: writes stop until an operator restores it"
            );
        }
    } else if !changes.is_empty() {
        tracing::warn!(stream = %watched.stream, changed = ?changes, "the stream's configuration changed");
    }
    integrity.set(&watched.stream, problems);
    seen.config = info.config;
    seen.extent = Some(extent);
    Ok(())
}

/// How long ago a leader with these `followers` (offline, time since last
/// heard) last heard from enough of them to make a quorum of `replicas`
/// with itself; `None`: not enough of them are known. One replica: now.
pub fn quorum_contact(followers: &[(bool, Duration)], replicas: usize) -> Option<Duration> {
    let needed = (replicas.max(1) / 2 + 1) - 1;
    if needed == 0 {
        return Some(Duration::ZERO);
    }
    let mut heard: Vec<Duration> =
        followers.iter().filter(|(offline, _)| !offline).map(|(_, active)| *active).collect();
    heard.sort();
    heard.get(needed - 1).copied()
}

/// A leader that heard from a quorum longer ago than this is not taken at its word.
pub const CURRENT_LEADER_CONTACT: Duration = Duration::from_secs(2);

/// How long ago the server that answered with a stream's info last heard
/// from a quorum ([`quorum_contact`]); `None` for a group that names no
/// leader (each member answers with its own copy). A single replica: now.
pub fn leader_contact(info: &stream::Info) -> Option<Duration> {
    let replicas = info.config.num_replicas;
    if replicas <= 1 {
        return Some(Duration::ZERO);
    }
    let cluster = info.cluster.as_ref().filter(|cluster| cluster.leader.is_some())?;
    let followers: Vec<(bool, Duration)> = cluster.replicas.iter().map(|peer| (peer.offline, peer.active)).collect();
    quorum_contact(&followers, replicas)
}

/// Whether a stream's info comes from a leader in touch with a quorum.
fn leader_current(info: &stream::Info) -> bool {
    leader_contact(info).is_some_and(|age| age <= CURRENT_LEADER_CONTACT)
}

/// Watch `streams` every `interval` until `stop` resolves, recording the
/// verdict in `integrity`. The first check runs at once; `expected` is the
/// configuration each stream should have (the changes the first check logs
/// are relative to it).
pub async fn watch(
    context: jetstream::Context,
    streams: Vec<(Watched, stream::Config)>,
    integrity: Integrity,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut seen: Vec<Seen> = streams
        .iter()
        .map(|(_, expected)| Seen { config: expected.clone(), extent: None, sticky: Vec::new(), contents: Vec::new() })
        .collect();
    tokio::pin!(stop);
    loop {
        for ((watched, _), seen) in streams.iter().zip(seen.iter_mut()) {
            if let Err(error) = check(&context, watched, seen, &integrity).await {
                tracing::debug!(stream = %watched.stream, %error, "the stream could not be checked this time");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases() -> Watched {
        Watched { stream: "GRIDCASE_CASES".into(), keeps: Keeps::Everything, subjects: "gridcase.case.>".into() }
    }

    fn keys() -> Watched {
        Watched {
            stream: "KV_gridcase-keys".into(),
            keeps: Keeps::OneKeyPerCase,
            subjects: "$KV.gridcase-keys.>".into(),
        }
    }

    fn kept() -> stream::Config {
        crate::EventLog::stream_config(&crate::StreamSettings::default())
    }

    #[test]
    fn a_leader_is_current_as_of_its_last_contact_with_a_quorum() {
        let ms = Duration::from_millis;
        assert_eq!(quorum_contact(&[], 1), Some(Duration::ZERO), "one replica: its own word");
        assert_eq!(quorum_contact(&[(false, ms(300)), (false, ms(9000))], 3), Some(ms(300)));
        // Paused for ten seconds: it has heard from nobody since.
        assert_eq!(quorum_contact(&[(false, ms(10_200)), (false, ms(10_100))], 3), Some(ms(10_100)));
        assert_eq!(quorum_contact(&[(true, ms(10)), (true, ms(10))], 3), None, "its followers offline");
        assert_eq!(quorum_contact(&[(false, ms(10))], 5), None, "two of four followers needed");
    }

    #[test]
    fn gridcase_own_configurations_have_no_problem() {
        assert_eq!(config_problems(&cases(), &kept()), Vec::<String>::new());
        let attachments = Watched {
            stream: crate::attachments::DEFAULT_STREAM.into(),
            keeps: Keeps::Everything,
            subjects: crate::attachments::SUBJECTS.into(),
        };
        assert_eq!(config_problems(&attachments, &crate::attachments::stream_config("A", 3)), Vec::<String>::new());
        assert_eq!(config_problems(&keys(), &crate::keys::stream_config("gridcase-keys", 3)), Vec::<String>::new());
    }

    #[test]
    fn every_way_to_lose_history_by_configuration_is_a_problem() {
        type Change = fn(&mut stream::Config);
        let table: [(&str, Change, &str); 13] = [
            ("max_msgs", |c| c.max_messages = 1, "max_msgs is 1"),
            ("max_bytes", |c| c.max_bytes = 1_000, "max_bytes is 1000"),
            ("max_age", |c| c.max_age = Duration::from_secs(60), "max_age is 60s"),
            ("per subject", |c| c.max_messages_per_subject = 1, "max_msgs_per_subject is 1"),
            ("deny_delete", |c| c.deny_delete = false, "deny_delete is off"),
            ("deny_purge", |c| c.deny_purge = false, "deny_purge is off"),
            ("rollups", |c| c.allow_rollup = true, "roll-ups are allowed"),
            ("ttl", |c| c.allow_message_ttl = true, "message TTLs are allowed"),
            ("interest", |c| c.retention = stream::RetentionPolicy::Interest, "retention is Interest"),
            ("memory", |c| c.storage = stream::StorageType::Memory, "storage is not file"),
            ("subjects", |c| c.subjects = vec!["other.>".into()], "no longer include gridcase.case.>"),
            ("sealed", |c| c.sealed = true, "sealed"),
            ("async", |c| c.persist_mode = Some(stream::PersistenceMode::Async), "persist_mode is async"),
        ];
        for (name, change, expected) in table {
            let mut config = kept();
            change(&mut config);
            let problems = config_problems(&cases(), &config);
            assert_eq!(problems.len(), 1, "{name}: {problems:?}");
            assert!(problems[0].contains(expected), "{name}: {problems:?}");
        }
        // The key bucket keeps one value per case and may delete, nothing more.
        let mut config = crate::keys::stream_config("gridcase-keys", 1);
        config.max_messages_per_subject = -1;
        config.max_messages = 10;
        config.allow_rollup = true;
        config.deny_purge = false;
        let problems = config_problems(&keys(), &config);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn changes_name_the_field_and_both_values() {
        let mut changed = kept();
        changed.max_messages_per_subject = 1;
        changed.num_replicas = 3;
        assert_eq!(
            config_changes(&kept(), &changed),
            vec!["max_msgs_per_subject: unlimited → 1".to_owned(), "num_replicas: 1 → 3".to_owned()]
        );
        assert!(config_changes(&kept(), &kept()).is_empty());
    }

    #[test]
    fn contents_that_shrink_are_problems() {
        let extent = |first, last, messages| Extent { first_sequence: first, last_sequence: last, messages };
        let everything = Keeps::Everything;
        // Whole, empty, growing: fine.
        assert!(state_problems(everything, None, &extent(1, 10, 10)).is_empty());
        assert!(state_problems(everything, None, &extent(0, 0, 0)).is_empty());
        assert!(state_problems(everything, Some(&extent(1, 10, 10)), &extent(1, 12, 12)).is_empty());
        // The first messages gone (max_msgs), messages gone in between (per subject).
        let head = state_problems(everything, None, &extent(8, 10, 3));
        assert_eq!(head, vec!["the first stream sequence is 8: messages 1 to 7 are gone".to_owned()]);
        let holes = state_problems(everything, None, &extent(1, 10, 4));
        assert_eq!(holes, vec!["6 of the messages between sequences 1 and 10 are gone".to_owned()]);
        // Against what was seen before.
        let moved = state_problems(everything, Some(&extent(1, 10, 10)), &extent(3, 10, 8));
        assert!(moved.iter().any(|p| p.contains("moved forward from 1 to 3")), "{moved:?}");
        assert!(moved.iter().any(|p| p.contains("from 10 to 8 messages")), "{moved:?}");
        let back = state_problems(everything, Some(&extent(1, 10, 10)), &extent(1, 4, 4));
        assert!(back.iter().any(|p| p.contains("went back from 10 to 4")), "{back:?}");
        // The key bucket deletes keys (erasure): fewer messages are fine, a
        // sequence going back is not.
        assert!(state_problems(Keeps::OneKeyPerCase, Some(&extent(1, 10, 10)), &extent(2, 11, 3)).is_empty());
        assert!(!state_problems(Keeps::OneKeyPerCase, Some(&extent(1, 10, 10)), &extent(1, 5, 5)).is_empty());
    }

    #[test]
    fn the_verdict_follows_every_stream() {
        let integrity = Integrity::default();
        let mut broken = integrity.subscribe();
        assert!(integrity.writable().is_ok());
        integrity.set("A", vec!["max_msgs is 1 (must be unlimited)".into()]);
        integrity.set("B", vec![]);
        assert!(*broken.borrow_and_update());
        assert_eq!(integrity.writable().unwrap_err(), "A: max_msgs is 1 (must be unlimited)");
        integrity.set("A", vec![]);
        assert!(integrity.writable().is_ok());
        assert!(!*broken.borrow_and_update());
    }
}
