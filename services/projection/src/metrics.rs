//! The projection's metrics (registered at zero at start-up): lag, batches,
//! the writer lock, and open and overdue cases per township from the read
//! models.

use std::time::Duration;

use gridcase_domain::State;
use jiff::Timestamp;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

pub const LAG_EVENTS: &str = "gridcase_projection_lag_events";
pub const LAG_SECONDS: &str = "gridcase_projection_lag_seconds";
pub const BATCH_EVENTS: &str = "gridcase_projection_batch_events";
pub const POSITION: &str = "gridcase_projection_position";
pub const WRITER: &str = "gridcase_projection_writer";
pub const CASES_OPEN: &str = "gridcase_cases_open";
pub const CASES_OVERDUE: &str = "gridcase_cases_overdue";
pub const EXPORT_ROWS: &str = "gridcase_export_rows_total";
pub const REBUILD_DONE: &str = "gridcase_rebuild_events_done";
pub const REBUILD_TOTAL: &str = "gridcase_rebuild_events_total";

pub fn register() {
    metrics::describe_gauge!(LAG_EVENTS, "Events stored in the case stream that the read models do not reflect yet.");
    metrics::describe_gauge!(
        LAG_SECONDS,
        metrics::Unit::Seconds,
        "How long the read models have been behind the stream (0 when caught up)."
    );
    metrics::describe_histogram!(BATCH_EVENTS, "Events per projection transaction.");
    metrics::describe_gauge!(POSITION, "The stream sequence the read models reflect.");
    metrics::describe_gauge!(
        WRITER,
        "1 while this process holds the writer lock and writes the read models, 0 on standby."
    );
    metrics::describe_gauge!(
        CASES_OPEN,
        "Open cases per township (read models; counted every GRIDCASE_CASES_METRICS_INTERVAL)."
    );
    metrics::describe_gauge!(
        CASES_OVERDUE,
        "Open cases past a running deadline now, per township (read models; counted every GRIDCASE_CASES_METRICS_INTERVAL)."
    );
    metrics::describe_gauge!(REBUILD_DONE, "Events a running rebuild has replayed.");
    metrics::describe_gauge!(REBUILD_TOTAL, "Events a running rebuild replays (the stream's end when it started).");
    for gauge in [LAG_EVENTS, LAG_SECONDS, POSITION, WRITER, REBUILD_DONE, REBUILD_TOTAL] {
        metrics::gauge!(gauge).set(0.0);
    }
    let _ = metrics::histogram!(BATCH_EVENTS);
    metrics::describe_counter!(EXPORT_ROWS, "Rows written by exports, by export.");
    for export in ["cases", "ledger"] {
        metrics::counter!(EXPORT_ROWS, "export" => export).absolute(0);
    }
}

/// After a batch: where the read models are, and the batch's size.
pub fn progress(position: u64, events: usize) {
    metrics::gauge!(POSITION).set(position as f64);
    metrics::histogram!(BATCH_EVENTS).record(events as f64);
}

/// The read models' lag, measured against the stream's end (so a stalled
/// projector shows as lagging): events not reflected yet, and since when.
pub struct Lag {
    behind_since: Option<std::time::Instant>,
}

impl Lag {
    pub fn new() -> Self {
        Self { behind_since: None }
    }

    pub fn measure(&mut self, stream_end: u64, position: u64) {
        let pending = stream_end.saturating_sub(position);
        let seconds = if pending == 0 {
            self.behind_since = None;
            0.0
        } else {
            self.behind_since.get_or_insert_with(std::time::Instant::now).elapsed().as_secs_f64()
        };
        metrics::gauge!(LAG_EVENTS).set(pending as f64);
        metrics::gauge!(LAG_SECONDS).set(seconds);
    }
}

impl Default for Lag {
    fn default() -> Self {
        Self::new()
    }
}

pub fn writer(holds: bool) {
    metrics::gauge!(WRITER).set(if holds { 1.0 } else { 0.0 });
}

/// Count open and overdue cases per township in the read models and set
/// the gauges. Only open cases are read (through the state index), so the
/// count costs what the open work does, not the history; a township whose
/// last open case closed is set to zero (`seen` remembers which were set).
pub async fn refresh_cases(
    pool: &PgPool,
    now: Timestamp,
    seen: &mut std::collections::BTreeSet<String>,
) -> anyhow::Result<()> {
    let open: Vec<String> = State::ALL.into_iter().filter(|s| s.is_open()).map(|s| format!("'{}'", s.name())).collect();
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new("SELECT township, count(*), count(*) FILTER (WHERE ");
    crate::query::sql::overdue_condition(&mut query, crate::columns::micros(now));
    query.push(format!(") FROM cases WHERE state IN ({}) GROUP BY township", open.join(", ")));
    let counted: Vec<(String, i64, i64)> =
        query.build().fetch_all(pool).await?.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect();
    for (township, open, overdue) in township_gauges(counted, seen) {
        metrics::gauge!(CASES_OPEN, "township" => township.clone()).set(open as f64);
        metrics::gauge!(CASES_OVERDUE, "township" => township).set(overdue as f64);
    }
    Ok(())
}

/// The gauges to set from this count of (township, open, overdue): those
/// counted, and zero for every township counted before but not now (its
/// last open case closed). `seen` remembers every township ever counted.
fn township_gauges(
    counted: Vec<(String, i64, i64)>,
    seen: &mut std::collections::BTreeSet<String>,
) -> Vec<(String, i64, i64)> {
    let now: std::collections::BTreeSet<String> = counted.iter().map(|(t, ..)| t.clone()).collect();
    let mut gauges = counted;
    gauges.extend(seen.difference(&now).map(|t| (t.clone(), 0, 0)));
    seen.extend(now);
    gauges
}

/// A rebuild's progress, in the log every few seconds and in the metrics.
pub struct RebuildProgress {
    total: u64,
    started: std::time::Instant,
    last_report: std::time::Instant,
}

impl RebuildProgress {
    pub fn new(total: u64) -> Self {
        metrics::gauge!(REBUILD_TOTAL).set(total as f64);
        let now = std::time::Instant::now();
        Self { total, started: now, last_report: now }
    }

    /// The rebuild has replayed up to stream sequence `done`.
    pub fn at(&mut self, done: u64) {
        metrics::gauge!(REBUILD_DONE).set(done as f64);
        let finished = done >= self.total;
        if finished || self.last_report.elapsed() >= Duration::from_secs(5) {
            self.last_report = std::time::Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let left = self.total.saturating_sub(done) as f64 / rate.max(f64::MIN_POSITIVE);
            tracing::info!(
                done,
                total = self.total,
                events_per_second = rate.round(),
                seconds_left = left.round(),
                "rebuild progress"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_township_whose_last_open_case_closed_is_set_back_to_zero() {
        let mut seen = std::collections::BTreeSet::new();
        let first = township_gauges(vec![("990101001".into(), 2, 1), ("990101002".into(), 1, 0)], &mut seen);
        assert_eq!(first, [("990101001".to_owned(), 2, 1), ("990101002".to_owned(), 1, 0)]);
        let second = township_gauges(vec![("990101001".into(), 1, 0)], &mut seen);
        assert_eq!(second, [("990101001".to_owned(), 1, 0), ("990101002".to_owned(), 0, 0)]);
        // Still zero the time after, and back when a case opens again.
        let third = township_gauges(vec![("990101002".into(), 1, 1)], &mut seen);
        assert_eq!(third, [("990101002".to_owned(), 1, 1), ("990101001".to_owned(), 0, 0)]);
    }
}
