//! One shutdown path for every service: SIGTERM or SIGINT (or a test) trips a
//! shared signal; servers stop accepting, drain in-flight calls, and give up
//! after a grace period.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

/// A shutdown signal that can be cloned into every task that must stop.
#[derive(Clone, Debug)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// Trips the [`Shutdown`] signal.
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.sender.send(true);
    }
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (ShutdownTrigger { sender }, Shutdown { receiver })
    }

    /// A signal tripped by SIGTERM or SIGINT.
    pub fn on_signals() -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            wait_for_signal().await;
            trigger.trigger();
        });
        shutdown
    }

    /// Resolves once shutdown was requested. A trigger dropped without
    /// firing never requests shutdown.
    pub async fn requested(mut self) {
        if self.receiver.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn is_requested(&self) -> bool {
        *self.receiver.borrow()
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => info!(signal = "SIGTERM", "shutdown requested"),
            _ = tokio::signal::ctrl_c() => info!(signal = "SIGINT", "shutdown requested"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        info!(signal = "ctrl-c", "shutdown requested");
    }
}

/// Run `server` (which drains when `shutdown` trips) but stop waiting for it
/// `grace` after shutdown was requested.
pub async fn drain_with_grace<F, T>(server: F, shutdown: Shutdown, grace: Duration) -> Option<T>
where
    F: Future<Output = T>,
{
    tokio::pin!(server);
    tokio::select! {
        output = &mut server => Some(output),
        _ = async { shutdown.requested().await; tokio::time::sleep(grace).await } => {
            warn!(grace_secs = grace.as_secs_f64(), "in-flight calls did not finish within the grace period; stopping anyway");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_trigger_is_not_a_shutdown_and_a_fired_one_is() {
        let (trigger, shutdown) = Shutdown::new();
        drop(trigger);
        let waited = tokio::time::timeout(Duration::from_millis(50), shutdown.clone().requested()).await;
        assert!(waited.is_err(), "dropping the trigger must not stop anything");
        let (trigger, shutdown) = Shutdown::new();
        trigger.trigger();
        tokio::time::timeout(Duration::from_millis(50), shutdown.requested()).await.expect("fired");
    }
}
