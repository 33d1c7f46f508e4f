//! The history audit: does the log still hold what the read models were
//! built from?
//!
//! A replicated log can lose or rewrite acknowledged events without any
//! delete: a node that lost its page cache and then leads, a truncated
//! replica elected after a partition (Jepsen's NATS 2.12.1 report). The
//! stream then looks whole (no gap, no sequence going back for long: new
//! appends fill the sequences again), and a projector reading on from its
//! position would never look back. The read models remember every
//! projected event's sequence and hash (`case_events`), so every
//! `--history-audit-interval` the newest `--history-audit-window` of them
//! are compared with what the log's leader holds at those sequences now,
//! while that leader was in touch with a quorum; what is found must last
//! `--history-audit-confirm` before it counts ([`Suspicions`]).
//!
//! An event gone, or another event at its sequence, is history rewritten:
//! each is logged as an error naming the case, its version, the sequence
//! and both hashes; the metric [`METRIC_REWRITTEN`] counts them; the case
//! stream's integrity is marked broken under [`WATCHED`], which pauses
//! the projector (nothing is folded on top of a forked history), makes the
//! service NOT_SERVING and raises the shipped alert `GridcaseHistoryAtRisk`.
//! Queries are still answered (from what was projected: the record of what
//! the log held). The finding stays until the process restarts after an
//! operator looked (README: What gridcase promises under faults).
//!
//! [`compare`] is pure; [`run`] feeds it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_eventlog::{EventLog, ReadFrom};
use gridcase_process::Shutdown;
use sqlx::{PgPool, Row as _};
use tracing::{debug, error, warn};

/// Events the read models hold that the log no longer holds as projected.
pub const METRIC_REWRITTEN: &str = "gridcase_history_rewritten_events";
/// The name the finding goes under in the log's integrity verdict.
pub const WATCHED: &str = "GRIDCASE_CASES as projected";

/// One projected event: where it was, whose, and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projected {
    pub sequence: u64,
    pub case_id: uuid::Uuid,
    pub case_version: i64,
    pub hash: String,
}

/// A projected event the log no longer holds as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub event: Projected,
    /// What the log holds at that sequence now (none: nothing, or no event).
    pub now: Option<(uuid::Uuid, i64, String)>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.event;
        match &self.now {
            None => write!(
                f,
                "case {} version {} (sequence {}, hash {}) is gone from the log",
                e.case_id, e.case_version, e.sequence, e.hash
            ),
            Some((case, version, hash)) => write!(
                f,
                "case {} version {} (sequence {}, hash {}) was replaced by case {case} version {version} (hash {hash})",
                e.case_id, e.case_version, e.sequence, e.hash
            ),
        }
    }
}

/// The projected events `log` (sequence → case, version, hash of the
/// event there now) no longer holds as they were.
pub fn compare(projected: &[Projected], log: &BTreeMap<u64, (uuid::Uuid, i64, String)>) -> Vec<Finding> {
    projected
        .iter()
        .filter_map(|event| match log.get(&event.sequence) {
            Some((case, version, hash))
                if *case == event.case_id && *version == event.case_version && *hash == event.hash =>
            {
                None
            }
            now => Some(Finding { event: event.clone(), now: now.cloned() }),
        })
        .collect()
}

/// Register the metric at zero.
pub fn register_metrics() {
    metrics::describe_gauge!(
        METRIC_REWRITTEN,
        "Projected events the case stream no longer holds as they were (gone, or another event at their \
         sequence): the log lost or rewrote acknowledged history. Projecting stops while above 0."
    );
    metrics::gauge!(METRIC_REWRITTEN).set(0.0);
}

/// Suspicions kept until they last: a finding counts once it has been
/// seen in every look for `confirm` (pure; [`run`] feeds it each look's
/// findings). A single look can be wrong: nats-server answers from
/// whichever server believes it leads, and a deposed leader not yet
/// stepped down answers with an old end (found by the chaos harness: fifty
/// events taken for gone that every node held).
#[derive(Debug, Default)]
pub struct Suspicions {
    first_seen: std::collections::HashMap<u64, (Finding, std::time::Instant)>,
}

impl Suspicions {
    /// After a look that found `findings` at `now`: those seen in every
    /// look for at least `confirm` (what is not found again is forgotten).
    pub fn look(&mut self, findings: Vec<Finding>, now: std::time::Instant, confirm: Duration) -> Vec<Finding> {
        let mut kept = std::collections::HashMap::new();
        for finding in findings {
            let since = match self.first_seen.remove(&finding.event.sequence) {
                Some((before, since)) if before == finding => since,
                _ => now,
            };
            kept.insert(finding.event.sequence, (finding, since));
        }
        self.first_seen = kept;
        let mut confirmed: Vec<Finding> = self
            .first_seen
            .values()
            .filter(|(_, since)| now.duration_since(*since) >= confirm)
            .map(|(finding, _)| finding.clone())
            .collect();
        confirmed.sort_by_key(|f| f.event.sequence);
        confirmed
    }
}

/// Audit every `interval` until `shutdown`: the newest `window` projected
/// events against the log; a finding is reported once it has lasted `confirm`.
pub async fn run(pool: PgPool, log: EventLog, interval: Duration, window: u64, confirm: Duration, shutdown: Shutdown) {
    let mut found: Vec<Finding> = Vec::new();
    let mut suspicions = Suspicions::default();
    loop {
        tokio::select! {
            _ = shutdown.clone().requested() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        // One look may not take longer than the interval (a partition).
        match tokio::time::timeout(interval, audit_once(&pool, &log, window)).await {
            Ok(Ok(None)) => debug!("the history audit did not look: the stream's leader is not known to be current"),
            Ok(Ok(Some(findings))) => {
                let confirmed = suspicions.look(findings, std::time::Instant::now(), confirm);
                let new: Vec<Finding> = confirmed.into_iter().filter(|f| !found.contains(f)).collect();
                for finding in new.iter().take(50) {
                    error!(
                        case_id = %finding.event.case_id,
                        case_version = finding.event.case_version,
                        sequence = finding.event.sequence,
                        projected_hash = %finding.event.hash,
                        now = ?finding.now,
                        "the log no longer holds an event the read models were built from: {finding}"
                    );
                }
                if !new.is_empty() {
                    found.extend(new);
                    metrics::gauge!(METRIC_REWRITTEN).set(found.len() as f64);
                    let cases: std::collections::BTreeSet<String> =
                        found.iter().map(|f| f.event.case_id.to_string()).collect();
                    log.integrity().set(
                        WATCHED,
                        vec![format!(
                            "{} projected event(s) of {} case(s) are gone from the log or replaced (first: {}); \
                             cases: {}",
                            found.len(),
                            cases.len(),
                            found[0],
                            cases.into_iter().take(20).collect::<Vec<_>>().join(", ")
                        )],
                    );
                }
            }
            Ok(Err(failure)) => warn!(error = format!("{failure:#}"), "the history audit could not look this time"),
            Err(_) => warn!("the history audit did not finish within its interval (the log unreachable?)"),
        }
    }
}

/// One look: the newest `window` projected events against the log; `None`
/// when the stream's leader is not known to be current (no quorum contact
/// within `CURRENT_LEADER_CONTACT`): nothing can be judged from its copy.
pub async fn audit_once(pool: &PgPool, log: &EventLog, window: u64) -> anyhow::Result<Option<Vec<Finding>>> {
    let (position, _) = crate::store::position(pool).await?;
    if position == 0 {
        return Ok(Some(Vec::new()));
    }
    let (end, contact) = log.end_as_of().await?;
    if contact.is_none_or(|age| age > gridcase_eventlog::integrity::CURRENT_LEADER_CONTACT) {
        return Ok(None);
    }
    let from = position.saturating_sub(window) + 1;
    let projected: Vec<Projected> = sqlx::query(
        "SELECT stream_sequence, case_id, case_version, hash FROM case_events \
         WHERE stream_sequence >= $1 AND stream_sequence <= $2 ORDER BY stream_sequence",
    )
    .bind(from as i64)
    .bind(position as i64)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| Projected {
        sequence: row.get::<i64, _>(0) as u64,
        case_id: row.get(1),
        case_version: row.get(2),
        hash: row.get(3),
    })
    .collect();
    let Some(first) = projected.first().map(|p| p.sequence) else { return Ok(Some(Vec::new())) };
    let top = position.min(end);
    let mut held = BTreeMap::new();
    if first <= top {
        let mut records = log.read(CaseSubject::all_filter(), ReadFrom::Sequence(first)).await?;
        while let Some(record) = records.next().await {
            let record = record?;
            if let Ok(stored) = StoredEvent::from_json_bytes(&record.payload) {
                held.insert(record.sequence, (*stored.case_id.as_uuid(), stored.case_version as i64, stored.hash));
            }
            if record.sequence >= top || record.caught_up() {
                break;
            }
        }
    }
    Ok(Some(compare(&projected, &held)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: u64, version: i64, hash: &str) -> Projected {
        Projected { sequence, case_id: uuid::Uuid::from_u128(7), case_version: version, hash: hash.into() }
    }

    #[test]
    fn an_event_gone_or_replaced_is_found_and_one_kept_is_not() {
        let projected = vec![event(10, 1, "a"), event(11, 2, "b"), event(12, 3, "c")];
        let mut log = BTreeMap::new();
        log.insert(10, (uuid::Uuid::from_u128(7), 1, "a".to_owned()));
        // 11: another case's event took the sequence; 12: nothing there.
        log.insert(11, (uuid::Uuid::from_u128(8), 1, "x".to_owned()));
        let findings = compare(&projected, &log);
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].event.sequence, 11);
        assert_eq!(findings[0].now, Some((uuid::Uuid::from_u128(8), 1, "x".to_owned())));
        assert!(findings[0].to_string().contains("replaced by case"));
        assert_eq!(findings[1].now, None);
        assert!(findings[1].to_string().contains("is gone from the log"));
        // The same event with another hash (rewritten in place) is found too.
        log.insert(11, (uuid::Uuid::from_u128(7), 2, "b2".to_owned()));
        log.insert(12, (uuid::Uuid::from_u128(7), 3, "c".to_owned()));
        let findings = compare(&projected, &log);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].event.hash, "b");
    }

    #[test]
    fn a_finding_counts_once_it_has_lasted_and_one_look_is_not_enough() {
        let gone = |sequence| Finding { event: event(sequence, 1, "a"), now: None };
        let start = std::time::Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let confirm = Duration::from_secs(30);
        let mut suspicions = Suspicions::default();
        assert!(suspicions.look(vec![gone(10), gone(11)], at(0), confirm).is_empty(), "a first look");
        // 11 is held again (a deposed leader's old end, since replaced): forgotten.
        assert!(suspicions.look(vec![gone(10)], at(20), confirm).is_empty());
        assert_eq!(suspicions.look(vec![gone(10), gone(11)], at(30), confirm), vec![gone(10)]);
        // 11 must last its own thirty seconds from its second sighting.
        assert_eq!(suspicions.look(vec![gone(10), gone(11)], at(60), confirm), vec![gone(10), gone(11)]);
        // What a later look finds differently starts again.
        let replaced = Finding { event: event(10, 1, "a"), now: Some((uuid::Uuid::from_u128(9), 1, "z".into())) };
        assert_eq!(suspicions.look(vec![replaced], at(61), confirm), vec![]);
    }
}
