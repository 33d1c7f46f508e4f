//! The fault injector: one fault at a time, spread over the load, each a
//! `kill -9` of a part followed, after a random pause, by its restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::topology::{FaultKind, Topology};

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    /// The part killed (`nats-2`, `intake-1`, `postgres`, …).
    pub part: String,
    /// Since the load began.
    pub killed_at: Duration,
    /// When the part was running again (its port open).
    pub restarted_at: Duration,
}

pub struct Injector {
    pub plan: Vec<FaultKind>,
    pub seed: u64,
    /// Operations the load is asked for: the faults are spread over them.
    pub operations: usize,
}

impl Injector {
    /// Inject the plan's faults in a seeded order while `done` (finished
    /// operations) grows: fault i once i+1 of every plan-length+1 shares of
    /// the load are done, and never two at once.
    pub async fn run(
        &self,
        topology: &Topology,
        done: Arc<AtomicUsize>,
        started: Instant,
    ) -> anyhow::Result<Vec<Fault>> {
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let mut plan = self.plan.clone();
        rng.shuffle(&mut plan);
        let mut faults = Vec::with_capacity(plan.len());
        for (index, kind) in plan.into_iter().enumerate() {
            let due = (index + 1) * self.operations / (self.plan.len() + 1);
            while done.load(Ordering::Relaxed) < due {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let part = match kind {
                FaultKind::NatsLeader => topology.stream_leader("GRIDCASE_CASES").await?,
                FaultKind::Intake => format!("intake-{}", rng.usize(1..=2)),
                FaultKind::Dispatcher => format!("dispatcher-{}", rng.usize(1..=2)),
                FaultKind::Projection => format!("projection-{}", rng.usize(1..=2)),
                FaultKind::Postgres => "postgres".to_owned(),
            };
            let down_for = Duration::from_millis(rng.u64(500..2500));
            tracing::info!(part, ?down_for, "fault: kill -9");
            let killed_at = started.elapsed();
            topology.script(&["kill", &part]).await?;
            tokio::time::sleep(down_for).await;
            topology.script(&["start", &part]).await?;
            let restarted_at = started.elapsed();
            tracing::info!(part, "fault healed: restarted");
            faults.push(Fault { kind, part, killed_at, restarted_at });
        }
        Ok(faults)
    }
}
