//! Where services get "now". Pure code never asks: it is given `now`. (Not
//! to be confused with a case's deadline clocks, `gridcase_domain::Clock`.)

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::watch;

/// Where services get "now": the system clock in production, a clock a test
/// sets by hand elsewhere. Pure code never asks; it is given `now`.
pub trait TimeSource: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Told whenever the clock is moved by hand (a test's clock), so a
    /// service that acts on time can look at once instead of waiting for its
    /// next tick. `None`: the clock moves by itself (the system clock).
    fn changes(&self) -> Option<watch::Receiver<Timestamp>> {
        None
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTimeSource;

impl TimeSource for SystemTimeSource {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A time source that only moves when told to (tests, benchmarks).
#[derive(Debug, Clone)]
pub struct ManualTimeSource(Arc<watch::Sender<Timestamp>>);

impl ManualTimeSource {
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

impl TimeSource for ManualTimeSource {
    fn now(&self) -> Timestamp {
        *self.0.borrow()
    }

    fn changes(&self) -> Option<watch::Receiver<Timestamp>> {
        Some(self.0.subscribe())
    }
}
