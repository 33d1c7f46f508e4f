//! Trying a write again within its deadline: the attempts of one append,
//! and the backoff between them.

use std::time::Duration;

/// One append's attempts so far: its deadline and how many times it was sent.
pub(crate) struct Sending {
    pub(crate) retry: Retry,
    pub(crate) sent: u32,
    /// A send got no answer (it may have been stored). A send that was
    /// refused or never left stored nothing.
    pub(crate) unanswered: bool,
}

impl Sending {
    pub(crate) fn new(within: Duration) -> Self {
        Self { retry: Retry::new(within), sent: 0, unanswered: false }
    }
}

/// Trying again within a deadline, with exponential backoff and jitter (so
/// many writers that lost the same leader do not all come back at once).
pub(crate) struct Retry {
    deadline: tokio::time::Instant,
    pause: Duration,
    pub(crate) last_failure: String,
}

impl Retry {
    const FIRST_PAUSE: Duration = Duration::from_millis(25);
    const LONGEST_PAUSE: Duration = Duration::from_secs(1);

    pub(crate) fn new(within: Duration) -> Self {
        Self { deadline: tokio::time::Instant::now() + within, pause: Self::FIRST_PAUSE, last_failure: String::new() }
    }

    /// How long the next attempt may wait for its answer (at most `limit`),
    /// or `None` when the deadline has passed.
    pub(crate) fn attempt_time(&self, limit: Duration) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(tokio::time::Instant::now());
        (!left.is_zero()).then(|| left.min(limit))
    }

    pub(crate) fn failed(&mut self, failure: String) {
        self.last_failure = failure;
    }

    /// Sleep before the next attempt (never past the deadline): a random
    /// time between half the current pause and all of it, which doubles up
    /// to a second.
    pub(crate) async fn pause(&mut self) {
        use std::hash::BuildHasher;
        let spread = std::collections::hash_map::RandomState::new().hash_one(self.last_failure.len()) % 1000;
        let pause = self.pause / 2 + self.pause.mul_f64(spread as f64 / 2000.0);
        self.pause = (self.pause * 2).min(Self::LONGEST_PAUSE);
        let left = self.deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(pause.min(left)).await;
    }
}
