//! Reads that say how current they are.
//!
//! Every answer of the query service is read from the read models, which
//! trail the log. On the minority side of a partition a projection process
//! can neither learn the log's end nor (if it writes) read new events, yet
//! PostgreSQL answers as before: without a word, a stale board would look
//! current. So each process asks the log's leader for the stream's end
//! every second ([`watch`]) and every answer carries, as response metadata:
//!
//! * `gridcase-read-position`: the stream sequence the read models reflect;
//! * `gridcase-log-end`: the stream's end as the leader last said it
//!   (absent while it was never heard);
//! * `gridcase-current-as-of`: the latest instant T such that the read
//!   models hold everything the log held at T (RFC 3339; absent: never
//!   known): a stream end the leader gave, which holds every event
//!   acknowledged up to the leader's last contact with a quorum (T: the
//!   question's time less that contact's age; a leader paused or cut off,
//!   not yet aware it was deposed, answers with an old end and an old
//!   contact), has since been reached by the read models. Under a steady
//!   load this stays a second or two old; cut off from the leader, it stops.
//!   (Found by the chaos harness: trusting the leader's end as of the
//!   question let a resumed, deposed leader's old end pass as current.)
//!
//! Two ways for a client to be refused rather than shown old state:
//!
//! * `gridcase-min-position: <sequence>` (the guarantee): the answer waits
//!   up to [`BEHIND_WAIT`] for the read models and is then UNAVAILABLE
//!   (`ErrorInfo` reason `READ_MODELS_BEHIND`) unless they reflect at least
//!   that stream sequence, e.g. the one its last
//!   acknowledgement or watched change named: a read never shows a state
//!   older than one the client has already been told about.
//! * `gridcase-max-staleness: <seconds>` (advice): UNAVAILABLE
//!   (`READ_MODELS_STALE`) unless the read models were seen current within
//!   that many seconds. "Current" rests on the leader's word: nats-server
//!   answers a stream's state from whichever server believes it leads, with
//!   no quorum read (nats-server PRs 7146 and 7748, linearizable gets and
//!   read leases, are not merged), so a deposed leader that has not yet
//!   stepped down can vouch for an old end. The chaos harness measures how
//!   often that happens; it never breaks the min-position guarantee.
//!
//! Either refusal names the three values; another query process may
//! answer. Without the headers nothing is refused: the metadata tells.
//!
//! [`assess`] is pure; [`Fresh`] puts it in front of the query service.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use gridcase_eventlog::EventLog;
use gridcase_process::{Shutdown, TimeSource};
use jiff::Timestamp;
use sqlx::PgPool;

pub const POSITION_HEADER: &str = "gridcase-read-position";
pub const LOG_END_HEADER: &str = "gridcase-log-end";
pub const CURRENT_AS_OF_HEADER: &str = "gridcase-current-as-of";
pub const MAX_STALENESS_HEADER: &str = "gridcase-max-staleness";
pub const MIN_POSITION_HEADER: &str = "gridcase-min-position";
pub const STALE_REASON: &str = "READ_MODELS_STALE";
pub const BEHIND_REASON: &str = "READ_MODELS_BEHIND";

/// What this process last saw of the read models and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The read models' position (stream sequence).
    pub position: u64,
    /// The stream's end, as the leader last said it.
    pub log_end: Option<u64>,
    /// The latest instant the read models are known to hold all the log held.
    pub current_as_of: Option<Timestamp>,
    /// Ends the leader gave (when asked, the end) the read models have not reached yet.
    pending: std::collections::VecDeque<(Timestamp, u64)>,
}

impl Seen {
    /// After a look: the position now, and the log's end if the leader answered.
    /// After a look begun at `asked_at`: the read models' position now and
    /// the stream's end if the leader answered.
    pub fn after(mut self, asked_at: Timestamp, position: Option<u64>, log_end: Option<u64>) -> Self {
        if let Some(end) = log_end {
            self.log_end = Some(end);
            // Ten seconds of ends at most are remembered (one a second).
            if self.pending.len() >= 10 {
                self.pending.pop_front();
            }
            self.pending.push_back((asked_at, end));
        }
        if let Some(position) = position {
            self.position = position;
        }
        while let Some((at, end)) = self.pending.front().copied() {
            if end > self.position {
                break;
            }
            self.current_as_of = Some(self.current_as_of.map_or(at, |known| known.max(at)));
            self.pending.pop_front();
        }
        self
    }
}

/// What a caller allows: at most so stale, at least this position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_staleness: Option<Duration>,
    pub min_position: Option<u64>,
}

/// The metadata of an answer given `seen` at `now`, or why it is refused
/// under `limits` (the `ErrorInfo` reason and the message).
pub fn assess(
    seen: &Seen,
    now: Timestamp,
    limits: Limits,
) -> Result<Vec<(&'static str, String)>, (&'static str, String)> {
    if let Some(wanted) = limits.min_position
        && seen.position < wanted
    {
        return Err((
            BEHIND_REASON,
            format!("the read models reflect the log up to position {}, not yet {wanted}", seen.position),
        ));
    }
    let max_staleness = limits.max_staleness;
    let mut metadata = vec![(POSITION_HEADER, seen.position.to_string())];
    if let Some(end) = seen.log_end {
        metadata.push((LOG_END_HEADER, end.to_string()));
    }
    if let Some(at) = seen.current_as_of {
        metadata.push((CURRENT_AS_OF_HEADER, at.to_string()));
    }
    if let Some(limit) = max_staleness {
        let age = seen.current_as_of.map(|at| now.duration_since(at));
        let fresh = age.is_some_and(|age| age.as_secs_f64() <= limit.as_secs_f64());
        if !fresh {
            return Err((
                STALE_REASON,
                match seen.current_as_of {
                    Some(at) => format!(
                        "the read models were last seen current at {at} (position {}, log end {}), more than {} s ago",
                        seen.position,
                        seen.log_end.map_or("unknown".into(), |e| e.to_string()),
                        limit.as_secs()
                    ),
                    None => format!("the read models were never seen current (position {})", seen.position),
                },
            ));
        }
    }
    Ok(metadata)
}

/// The shared view of one process.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    seen: Arc<Mutex<Seen>>,
}

impl Freshness {
    pub fn seen(&self) -> Seen {
        self.seen.lock().expect("freshness").clone()
    }

    fn record(&self, asked_at: Timestamp, position: Option<u64>, log_end: Option<u64>) {
        let mut seen = self.seen.lock().expect("freshness");
        *seen = std::mem::take(&mut *seen).after(asked_at, position, log_end);
    }
}

/// Every second until `shutdown`: the read models' position and the log's
/// end (from the leader), into `freshness` and the lag metrics.
pub async fn watch(pool: PgPool, log: EventLog, clock: Arc<dyn TimeSource>, freshness: Freshness, shutdown: Shutdown) {
    let mut lag = crate::metrics::Lag::new();
    loop {
        let asked_at = clock.now();
        let (end, position) =
            tokio::join!(tokio::time::timeout(Duration::from_secs(2), log.end_as_of()), crate::store::position(&pool));
        let end = end.ok().and_then(Result::ok);
        let position = position.ok().map(|(position, _)| position);
        if let (Some((end, _)), Some(position)) = (end, position) {
            lag.measure(end, position);
        }
        // The leader's end holds what was acknowledged up to its last
        // contact with a quorum (a deposed leader, paused or cut off, still
        // answers): the end counts as of then, or not at all.
        let trusted = end.and_then(|(end, age)| {
            let age = jiff::SignedDuration::try_from(age?).ok()?;
            Some((asked_at.checked_sub(age).ok()?, end))
        });
        freshness.record(trusted.map_or(asked_at, |(at, _)| at), position, trusted.map(|(_, end)| end));
        tokio::select! {
            _ = shutdown.clone().requested() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The query service with [`assess`] in front: metadata on every answer,
/// UNAVAILABLE for a read staler than the caller allows.
#[derive(Clone)]
pub struct Fresh<S> {
    inner: S,
    freshness: Freshness,
    clock: Arc<dyn TimeSource>,
    /// The read models' position, looked up again while a request waits for it.
    pool: PgPool,
}

/// How long a request asking for a position the read models have not
/// reached yet waits for them (they usually trail the log by milliseconds)
/// before it is refused.
pub const BEHIND_WAIT: Duration = Duration::from_secs(1);

impl<S> Fresh<S> {
    pub fn new(inner: S, freshness: Freshness, clock: Arc<dyn TimeSource>, pool: PgPool) -> Self {
        Self { inner, freshness, clock, pool }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Fresh<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower_service::Service<http::Request<B>> for Fresh<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let number = |name: &str| {
            request.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok())
        };
        let limits = Limits {
            max_staleness: number(MAX_STALENESS_HEADER).map(Duration::from_secs),
            min_position: number(MIN_POSITION_HEADER),
        };
        let mut seen = self.freshness.seen();
        let (clock, pool) = (self.clock.clone(), self.pool.clone());
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            // Behind the position asked for: wait a moment for the projector.
            if let Some(wanted) = limits.min_position {
                let deadline = tokio::time::Instant::now() + BEHIND_WAIT;
                while seen.position < wanted && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if let Ok((position, _)) = crate::store::position(&pool).await {
                        seen.position = seen.position.max(position);
                    }
                }
            }
            let verdict = assess(&seen, clock.now(), limits);
            let metadata = match verdict {
                Ok(metadata) => metadata,
                Err((reason, why)) => {
                    let mut info = std::collections::HashMap::new();
                    info.insert("position".to_owned(), seen.position.to_string());
                    if let Some(end) = seen.log_end {
                        info.insert("log_end".to_owned(), end.to_string());
                    }
                    if let Some(at) = seen.current_as_of {
                        info.insert("current_as_of".to_owned(), at.to_string());
                    }
                    let status = <tonic::Status as tonic_types::StatusExt>::with_error_details(
                        tonic::Code::Unavailable,
                        format!("{why}; ask another query service or retry later"),
                        tonic_types::ErrorDetails::with_error_info(reason, "gridcase", info),
                    );
                    return Ok(status.into_http());
                }
            };
            let mut response = inner.call(request).await?;
            for (name, value) in metadata {
                if let Ok(value) = http::HeaderValue::from_str(&value) {
                    response.headers_mut().insert(name, value);
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + seconds).unwrap()
    }

    #[test]
    fn current_as_of_the_latest_end_the_read_models_have_reached() {
        let seen = Seen::default().after(at(0), Some(10), Some(10));
        assert_eq!(seen.current_as_of, Some(at(0)));
        // Behind the end said at 5: still current as of 0.
        let behind = seen.after(at(5), Some(10), Some(14));
        assert_eq!((behind.current_as_of, behind.log_end), (Some(at(0)), Some(14)));
        // Under a steady load: at 6 the end is 17, and the read models
        // reached 14 (the end at 5), so they hold what the log held at 5.
        let moving = behind.clone().after(at(6), Some(15), Some(17));
        assert_eq!(moving.current_as_of, Some(at(5)));
        // The leader unreachable: the end is the last one heard, no newer instant.
        let cut_off = moving.clone().after(at(9), Some(17), None);
        assert_eq!(cut_off.current_as_of, Some(at(6)), "17, the end at 6, reached");
        assert_eq!(cut_off.clone().after(at(30), Some(17), None).current_as_of, Some(at(6)));
        assert_eq!(Seen::default().after(at(0), Some(0), None).current_as_of, None, "never heard the leader");
    }

    #[test]
    fn a_read_staler_than_allowed_is_refused_and_every_answer_says_where_it_stands() {
        let seen = Seen { position: 10, log_end: Some(14), current_as_of: Some(at(0)), ..Seen::default() };
        let limits = |seconds: u64| Limits { max_staleness: Some(Duration::from_secs(seconds)), min_position: None };
        let metadata = assess(&seen, at(20), Limits::default()).unwrap();
        assert_eq!(
            metadata,
            vec![
                (POSITION_HEADER, "10".to_owned()),
                (LOG_END_HEADER, "14".to_owned()),
                (CURRENT_AS_OF_HEADER, at(0).to_string())
            ]
        );
        assert!(assess(&seen, at(20), limits(30)).is_ok());
        let (reason, refused) = assess(&seen, at(31), limits(30)).unwrap_err();
        assert_eq!(reason, STALE_REASON);
        assert!(refused.contains("position 10, log end 14"), "{refused}");
        assert!(assess(&Seen::default(), at(0), limits(30)).unwrap_err().1.contains("never"));
        // Behind what the caller has already been told: refused, however fresh.
        let behind = Limits { min_position: Some(11), ..Limits::default() };
        assert_eq!(assess(&seen, at(1), behind).unwrap_err().0, BEHIND_REASON);
        assert!(assess(&seen, at(1), Limits { min_position: Some(10), ..Limits::default() }).is_ok());
    }
}
