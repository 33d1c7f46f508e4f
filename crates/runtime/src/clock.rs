use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::watch;

/// Where services get "now": the system clock in production, a clock a test
/// sets by hand elsewhere. Pure code never asks; it is given `now`.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Told whenever the clock is moved by hand (a test's clock), so a
    /// service that acts on time can look at once instead of waiting for its
    /// next tick. `None`: the clock moves by itself (the system clock).
    fn changes(&self) -> Option<watch::Receiver<Timestamp>> {
        None
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<watch::Sender<Timestamp>>);

impl FixedClock {
    pub fn new(at: Timestamp) -> Self {
        Self(Arc::new(watch::Sender::new(at)))
    }

    pub fn set(&self, at: Timestamp) {
        self.0.send_replace(at);
    }

    pub fn advance(&self, by: jiff::SignedDuration) {
        self.0.send_modify(|now| *now += by);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.0.borrow()
    }

    fn changes(&self) -> Option<watch::Receiver<Timestamp>> {
        Some(self.0.subscribe())
    }
}
