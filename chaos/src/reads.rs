//! Reads under faults: a county auditor asks every query service for its
//! counts all through the run, telling it the highest sequence the clients
//! have been acknowledged so far (`gridcase-min-position`) and allowing
//! `MAX_STALENESS` seconds of staleness. Each answer says where the read
//! models stand (`gridcase-read-position`) and when they were last seen at
//! the log's end (`gridcase-current-as-of`).
//!
//! The checks ([`judge`]) need nothing from gridcase: an answer at a
//! position below the one asked for is a read older than what its reader
//! had been told (the guarantee: must never happen); an answer claiming the
//! read models were current (at position P) at time T is disproved if a
//! client had been acknowledged an event at a sequence beyond P before T
//! (advisory: it rests on the leader's word, which nats-server does not
//! make linearizable; counted, not failed).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gridcase_proto::query::v1 as api;
use gridcase_proto::query::v1::query_service_client::QueryServiceClient;
use tokio::sync::Mutex;
use tonic::transport::Channel;

/// The staleness the probe allows, in seconds.
pub const MAX_STALENESS: u64 = 5;
/// How much earlier than its claim a query service may have looked at the
/// log: none. A client's acknowledgement arrives after the event was
/// committed, so an acknowledgement received before the claimed instant
/// proves the log held that event then.
pub const TOLERANCE: Duration = Duration::ZERO;

/// One answer, or a refusal, of a query service.
#[derive(Debug, Clone)]
pub struct Read {
    pub service: String,
    pub asked_at: SystemTime,
    /// The position the question asked for at least.
    pub min_position: u64,
    pub outcome: ReadOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Answered: the read models' position and when they were last current.
    Answered { position: u64, current_as_of: Option<SystemTime> },
    /// Refused as staler than allowed.
    RefusedStale,
    /// Refused as behind the position asked for.
    RefusedBehind,
    /// Not reached, or another failure.
    Failed(String),
}

/// What the probe saw.
#[derive(Debug, Default, Clone)]
pub struct ReadVerdict {
    pub answered: usize,
    pub refused_stale: usize,
    pub refused_behind: usize,
    pub failed: usize,
    /// Answers older than the position asked for (must be none).
    pub behind: Vec<String>,
    /// Answers that claimed a currency the log's acknowledgements disprove.
    pub lies: Vec<String>,
}

/// Ask each of `services` for its counts every `every` until `stop` says so.
pub async fn probe(
    services: Vec<(String, Channel)>,
    token: String,
    acknowledged_up_to: Arc<std::sync::atomic::AtomicU64>,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<Read> {
    let reads = Arc::new(Mutex::new(Vec::new()));
    let tasks = services.into_iter().map(|(service, channel)| {
        let (reads, token, mut stop) = (reads.clone(), token.clone(), stop.clone());
        let acknowledged_up_to = acknowledged_up_to.clone();
        tokio::spawn(async move {
            let mut client = QueryServiceClient::new(channel);
            while !*stop.borrow() {
                let mut request = tonic::Request::new(api::CountCasesRequest { region_prefix: String::new() });
                let metadata = request.metadata_mut();
                metadata.insert("authorization", format!("Bearer {token}").parse().expect("ascii token"));
                metadata.insert("gridcase-max-staleness", MAX_STALENESS.to_string().parse().expect("digits"));
                let min_position = acknowledged_up_to.load(std::sync::atomic::Ordering::Relaxed);
                metadata.insert("gridcase-min-position", min_position.to_string().parse().expect("digits"));
                let asked_at = SystemTime::now();
                let answer = tokio::time::timeout(Duration::from_secs(5), client.count_cases(request)).await;
                let outcome = match answer {
                    Ok(Ok(response)) => {
                        let header =
                            |name: &str| response.metadata().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                        ReadOutcome::Answered {
                            position: header("gridcase-read-position").and_then(|v| v.parse().ok()).unwrap_or(0),
                            current_as_of: header("gridcase-current-as-of")
                                .and_then(|v| v.parse::<jiff::Timestamp>().ok())
                                .map(SystemTime::from),
                        }
                    }
                    Ok(Err(status)) if status.message().contains("not yet") => ReadOutcome::RefusedBehind,
                    Ok(Err(status))
                        if status.message().contains("last seen current")
                            || status.message().contains("never seen current") =>
                    {
                        ReadOutcome::RefusedStale
                    }
                    Ok(Err(status)) => ReadOutcome::Failed(format!("{:?}: {}", status.code(), status.message())),
                    Err(_) => ReadOutcome::Failed("no answer within 5 s".into()),
                };
                reads.lock().await.push(Read { service: service.clone(), asked_at, min_position, outcome });
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => {}
                }
            }
        })
    });
    futures::future::join_all(tasks).await;
    Arc::into_inner(reads).map(Mutex::into_inner).unwrap_or_default()
}

/// Judge `reads` against the acknowledgements (wall-clock time, sequence).
pub fn judge(reads: &[Read], acknowledged: &[(SystemTime, u64)]) -> ReadVerdict {
    let mut acknowledged = acknowledged.to_vec();
    acknowledged.sort();
    // The highest sequence acknowledged up to each instant.
    let mut highest = Vec::with_capacity(acknowledged.len());
    let mut top = 0;
    for (at, sequence) in acknowledged {
        top = top.max(sequence);
        highest.push((at, top));
    }
    let known_by = |instant: SystemTime| -> u64 {
        match highest.partition_point(|(at, _)| *at <= instant) {
            0 => 0,
            n => highest[n - 1].1,
        }
    };
    let mut verdict = ReadVerdict::default();
    for read in reads {
        match &read.outcome {
            ReadOutcome::Answered { position, current_as_of } => {
                verdict.answered += 1;
                if *position < read.min_position {
                    verdict.behind.push(format!(
                        "{} answered at position {position} when asked for at least {}",
                        read.service, read.min_position
                    ));
                }
                if let Some(claimed) = current_as_of {
                    let before = claimed.checked_sub(TOLERANCE).unwrap_or(*claimed);
                    let known = known_by(before);
                    if known > *position {
                        verdict.lies.push(format!(
                            "{} answered at position {position} claiming it current at {:?}, but sequence {known} had \
                             been acknowledged before that",
                            read.service,
                            jiff::Timestamp::try_from(*claimed).map(|t| t.to_string()).unwrap_or_default(),
                        ));
                    }
                    let age = read.asked_at.duration_since(*claimed).unwrap_or_default();
                    if age > Duration::from_secs(MAX_STALENESS) + Duration::from_secs(1) {
                        verdict.lies.push(format!(
                            "{} answered with read models last current {:.1} s before the question, beyond the {MAX_STALENESS} s asked",
                            read.service,
                            age.as_secs_f64()
                        ));
                    }
                }
            }
            ReadOutcome::RefusedStale => verdict.refused_stale += 1,
            ReadOutcome::RefusedBehind => verdict.refused_behind += 1,
            ReadOutcome::Failed(_) => verdict.failed += 1,
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_780_000_000.0 + seconds)
    }

    fn answered(position: u64, current_as_of: f64, asked_at: f64) -> Read {
        Read {
            service: "projection-1".into(),
            asked_at: t(asked_at),
            min_position: 0,
            outcome: ReadOutcome::Answered { position, current_as_of: Some(t(current_as_of)) },
        }
    }

    #[test]
    fn a_claim_of_currency_the_acknowledgements_disprove_is_a_lie() {
        let acknowledged = [(t(0.0), 5), (t(10.0), 9), (t(11.0), 7)];
        // Current at 8 with 5 known: true. At 20 with position 9: true.
        let honest = [answered(5, 8.0, 9.0), answered(9, 20.0, 21.0)];
        let verdict = judge(&honest, &acknowledged);
        assert_eq!((verdict.answered, verdict.lies.len()), (2, 0), "{:?}", verdict.lies);
        // Position 5 claimed current at 20, when 9 was acknowledged at 10: a lie.
        let verdict = judge(&[answered(5, 20.0, 21.0)], &acknowledged);
        assert_eq!(verdict.lies.len(), 1);
        assert!(verdict.lies[0].contains("sequence 9"), "{}", verdict.lies[0]);
        // Acknowledged only after the claimed instant: not a lie.
        assert!(judge(&[answered(5, 9.9, 11.5)], &acknowledged).lies.is_empty());
        // Answered although last current 30 s before the question: beyond the allowance.
        assert_eq!(judge(&[answered(9, 20.0, 50.0)], &acknowledged).lies.len(), 1);
        // Answered below the position asked for: a read older than its reader knew.
        let mut older = answered(9, 20.0, 21.0);
        older.min_position = 10;
        let verdict = judge(&[older], &acknowledged);
        assert_eq!(verdict.behind.len(), 1, "{:?}", verdict.behind);
    }
}
