//! The fault injector: a seeded schedule of faults spread over the load,
//! one step at a time, each healed before the next, the cluster given time
//! to become whole again in between (so that damage to one node's store is
//! always a minority's). Some steps combine a network fault or a pause with
//! a kill -9 of a service (a crash during a partition).
//!
//! Every fault goes through `deploy/cluster.sh` (kill, start, cut, heal,
//! slow, fast, pause, resume, corrupt), which owns the processes and the
//! namespaces; here are only the choices and the timing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::topology::{FaultKind, Topology};

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    /// What was done, to which parts (`kill -9 nats-2`, `cut nats-1 | nats-2 nats-3`, …).
    pub what: String,
    /// Since the load began.
    pub started_at: Duration,
    /// When it was undone (the part running again, the links whole).
    pub healed_at: Duration,
    /// Whether every node said it was current again before the next step.
    pub recovered: bool,
}

pub struct Injector {
    pub plan: Vec<FaultKind>,
    pub seed: u64,
    /// Operations the load is asked for: the faults are spread over them.
    pub operations: usize,
    /// How long a step lasts, at most (partitions and pauses last 40 % to 100 % of it).
    pub fault_length: Duration,
}

const SERVICES: [&str; 3] = ["intake", "dispatcher", "projection"];

impl Injector {
    /// Inject the plan's faults in a seeded order while `done` (finished
    /// operations) grows: step i once i+1 of every plan-length+1 shares of
    /// the load are done, never two steps at once.
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
            let started_at = started.elapsed();
            let mut what = self.inject(topology, kind, &mut rng).await?;
            // A service that exited (one that could not reach the log when
            // it started, as it may during a fault) is started again, as
            // its supervisor (systemd's Restart=on-failure) would.
            let restarted = topology.script(&["start", "all"]).await?;
            let restarted: Vec<&str> = restarted.lines().filter(|l| !l.trim().is_empty()).collect();
            if !restarted.is_empty() {
                what.push_str(&format!("; found exited and started again: {}", restarted.join(", ")));
            }
            let healed_at = started.elapsed();
            // Whole again before the next step: no node's store is damaged
            // while another is behind.
            let recovered = wait_until_healthy(topology, Duration::from_secs(60)).await;
            tracing::info!(fault = kind.name(), what, recovered, "fault healed");
            faults.push(Fault { kind, what, started_at, healed_at, recovered });
        }
        Ok(faults)
    }

    /// A random length for a step (40 % to 100 % of the fault length).
    fn length(&self, rng: &mut fastrand::Rng) -> Duration {
        self.fault_length.mul_f64(0.4 + 0.6 * rng.f64())
    }

    async fn inject(&self, topology: &Topology, kind: FaultKind, rng: &mut fastrand::Rng) -> anyhow::Result<String> {
        let nodes: Vec<String> = (1..=topology.nodes).map(|i| format!("nats-{i}")).collect();
        let leader = topology.stream_leader("GRIDCASE_CASES").await.unwrap_or_else(|_| nodes[0].clone());
        let leader_or_any = |rng: &mut fastrand::Rng| {
            if rng.bool() { leader.clone() } else { nodes[rng.usize(..nodes.len())].clone() }
        };
        let script = |args: Vec<String>| async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            topology.script(&args).await
        };
        let length = self.length(rng);
        // A network fault or a node's pause may come with a crash of a service.
        let crash = (matches!(kind, FaultKind::PauseNode) || kind.needs_netns()) && rng.u8(..100) < 30;
        let crashed = crash.then(|| format!("{}-{}", SERVICES[rng.usize(..SERVICES.len())], rng.usize(1..=2)));
        let what = match kind {
            FaultKind::NatsLeader
            | FaultKind::Intake
            | FaultKind::Dispatcher
            | FaultKind::Projection
            | FaultKind::Postgres => {
                let part = match kind {
                    FaultKind::NatsLeader => leader.clone(),
                    FaultKind::Postgres => "postgres".to_owned(),
                    _ => format!("{}-{}", kind.name(), rng.usize(1..=2)),
                };
                let down_for = Duration::from_millis(rng.u64(500..2500));
                script(vec!["kill".into(), part.clone()]).await?;
                tokio::time::sleep(down_for).await;
                script(vec!["start".into(), part.clone()]).await?;
                format!("kill -9 {part} for {:.1} s", down_for.as_secs_f64())
            }
            FaultKind::TruncateTail | FaultKind::CorruptTail => {
                let node = leader_or_any(rng);
                let (how, bytes) = if kind == FaultKind::TruncateTail {
                    ("truncate", rng.u64(1..8192))
                } else {
                    ("flip", rng.u64(1..4096))
                };
                script(vec!["kill".into(), node.clone()]).await?;
                let did = script(vec!["corrupt".into(), node.clone(), how.into(), bytes.to_string()]).await?;
                script(vec!["start".into(), node.clone()]).await?;
                format!("kill -9 {node}, {how} {bytes} bytes: {}", did.trim())
            }
            FaultKind::PauseNode | FaultKind::PauseService => {
                let part = if kind == FaultKind::PauseNode {
                    leader_or_any(rng)
                } else {
                    format!("{}-{}", SERVICES[rng.usize(..SERVICES.len())], rng.usize(1..=2))
                };
                // A node's pause outlasts the election timeout (the others elect a new leader).
                let pause = if kind == FaultKind::PauseNode { length.max(Duration::from_secs(6)) } else { length };
                script(vec!["pause".into(), part.clone()]).await?;
                let also = crash_during(topology, crashed.as_deref(), pause).await?;
                script(vec!["resume".into(), part.clone()]).await?;
                restart(topology, crashed.as_deref()).await?;
                format!("SIGSTOP {part} for {:.1} s{also}", pause.as_secs_f64())
            }
            FaultKind::IsolateLeader | FaultKind::Split | FaultKind::Bridge => {
                let (cuts, described) = match kind {
                    FaultKind::IsolateLeader => {
                        let others: Vec<&String> = nodes.iter().filter(|n| **n != leader).collect();
                        let cuts = others.iter().map(|other| format!("{leader}:{other}")).collect::<Vec<_>>();
                        let others = others.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" ");
                        (cuts, format!("{leader} | {others}"))
                    }
                    FaultKind::Split => {
                        let alone = leader_or_any(rng);
                        let side = rng.usize(1..=2);
                        let mut one = vec![alone.clone()];
                        let mut two: Vec<String> = nodes.iter().filter(|n| **n != alone).cloned().collect();
                        for service in SERVICES {
                            one.push(format!("{service}-{side}"));
                            two.push(format!("{service}-{}", 3 - side));
                        }
                        let cuts = one.iter().flat_map(|a| two.iter().map(move |b| format!("{a}:{b}"))).collect();
                        (cuts, format!("{} | {}", one.join(" "), two.join(" ")))
                    }
                    _ => {
                        let mut order = nodes.clone();
                        rng.shuffle(&mut order);
                        (
                            vec![format!("{}:{}", order[0], order[2])],
                            format!("{}–{}–{} ({} | {} cut)", order[0], order[1], order[2], order[0], order[2]),
                        )
                    }
                };
                let mut args = vec!["cut".to_owned()];
                args.extend(cuts);
                script(args).await?;
                let also = crash_during(topology, crashed.as_deref(), length).await?;
                script(vec!["heal".into()]).await?;
                restart(topology, crashed.as_deref()).await?;
                format!("partition {described} for {:.1} s{also}", length.as_secs_f64())
            }
            FaultKind::Flap => {
                let node = leader_or_any(rng);
                let others: Vec<String> = nodes.iter().filter(|n| **n != node).cloned().collect();
                let until = Instant::now() + length;
                let mut flips = 0;
                let mut cut = false;
                while Instant::now() < until {
                    if cut {
                        script(vec!["heal".into()]).await?;
                    } else {
                        let mut args = vec!["cut".to_owned()];
                        args.extend(others.iter().map(|other| format!("{node}:{other}")));
                        script(args).await?;
                    }
                    cut = !cut;
                    flips += 1;
                    tokio::time::sleep(Duration::from_millis(rng.u64(1000..3000))).await;
                }
                script(vec!["heal".into()]).await?;
                format!("{node}'s links flapping for {:.1} s ({flips} changes)", length.as_secs_f64())
            }
            FaultKind::Slow => {
                let node = leader_or_any(rng);
                let how = script(vec!["slow".into(), node.clone()]).await?;
                let also = crash_during(topology, crashed.as_deref(), length).await?;
                script(vec!["fast".into(), node.clone()]).await?;
                restart(topology, crashed.as_deref()).await?;
                format!("slow link of {node} ({}) for {:.1} s{also}", how.trim(), length.as_secs_f64())
            }
        };
        Ok(what)
    }
}

/// Wait `length`; with a part to crash, kill it a third of the way in
/// ([`restart`] starts it once the fault is undone: a service may wait for
/// the log before it listens). What to add to the fault's description.
async fn crash_during(topology: &Topology, part: Option<&str>, length: Duration) -> anyhow::Result<String> {
    let Some(part) = part else {
        tokio::time::sleep(length).await;
        return Ok(String::new());
    };
    tokio::time::sleep(length / 3).await;
    topology.script(&["kill", part]).await?;
    tokio::time::sleep(length - length / 3).await;
    Ok(format!(", with kill -9 {part} during it"))
}

async fn restart(topology: &Topology, part: Option<&str>) -> anyhow::Result<()> {
    if let Some(part) = part {
        topology.script(&["start", part]).await?;
    }
    Ok(())
}

/// Wait until every node says it is current, `timeout` at most.
async fn wait_until_healthy(topology: &Topology, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if topology.nodes_healthy().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}
