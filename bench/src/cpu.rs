//! CPU time, so a benchmark can say where the time of a phase went: the
//! nats-server process, the load client (a thread of its own), and the rest
//! of this process (the service under test). Read from /proc (Linux).

use std::time::Instant;

/// CPU seconds a process has used (user + system), from /proc/<pid>/stat.
pub fn process_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The fields after the command name (which may hold spaces) in parentheses.
    let Some((_, rest)) = stat.rsplit_once(") ") else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name and state.
    (ticks(11) + ticks(12)) as f64 / clock_ticks_per_second()
}

/// CPU seconds the threads of this process named `name` have used
/// (nanoseconds on CPU, from each thread's schedstat).
pub fn threads_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    tasks
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name))
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()))
        .map(|ns| ns as f64 / 1e9)
        .sum()
}

/// CPU seconds every PostgreSQL process of this machine has used, the
/// backends that have ended included (the postmaster counts its reaped
/// children's time).
pub fn postgres_seconds() -> f64 {
    let Ok(processes) = std::fs::read_dir("/proc") else { return 0.0 };
    let mut seconds = 0.0;
    for process in processes.flatten() {
        let Ok(stat) = std::fs::read_to_string(process.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        if !head.ends_with("(postgres") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        // utime, stime, cutime, cstime: children's time is only ever the
        // postmaster's (backends have no children of their own to reap).
        seconds += (ticks(11) + ticks(12) + ticks(13) + ticks(14)) as f64 / clock_ticks_per_second();
    }
    seconds
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture gridcase runs on.
    100.0
}

/// CPU used during one phase: the service's process and the nats-server.
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    started: Instant,
    own: f64,
    nats: f64,
    nats_pid: Option<u32>,
}

/// Cores busy on average during a phase, by whom.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub seconds: f64,
    /// This process (service and client together).
    pub own: f64,
    pub nats: f64,
}

impl Meter {
    pub fn start(nats_pid: Option<u32>) -> Self {
        Self {
            started: Instant::now(),
            own: process_seconds(std::process::id()),
            nats: nats_pid.map_or(0.0, process_seconds),
            nats_pid,
        }
    }

    pub fn stop(&self) -> Usage {
        Usage {
            seconds: self.started.elapsed().as_secs_f64(),
            own: process_seconds(std::process::id()) - self.own,
            nats: self.nats_pid.map_or(0.0, process_seconds) - self.nats,
        }
    }
}
