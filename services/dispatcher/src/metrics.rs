//! The dispatcher's metrics: their names, their registration at zero (so
//! the first scrape shows them all), the calendar's days-left figure and
//! how far behind the stream it is.

// The metrics, each exported from start-up (at zero) by `register_metrics`.
pub(crate) const METRIC_STEPS: &str = "gridcase_dispatcher_steps_total";
pub(crate) const METRIC_CONFLICTS: &str = "gridcase_dispatcher_conflicts_total";
pub(crate) const METRIC_PENDING: &str = "gridcase_dispatcher_pending_messages";
pub(crate) const METRIC_LAG_SECONDS: &str = "gridcase_dispatcher_lag_seconds";
pub(crate) const METRIC_SKIPPED: &str = "gridcase_dispatcher_skipped_events_total";
pub(crate) const METRIC_FALLBACK: &str = "gridcase_deadlines_fallback_total";
pub(crate) const METRIC_CALENDAR_MISSING: &str = "gridcase_calendar_missing";
pub(crate) const METRIC_CALENDAR_DAYS_LEFT: &str = "gridcase_calendar_days_left";
pub(crate) const METRIC_OPEN_CASES: &str = "gridcase_dispatcher_open_cases";
pub(crate) const METRIC_SNAPSHOT_SEQUENCE: &str = "gridcase_dispatcher_snapshot_sequence";
pub(crate) const METRIC_SNAPSHOT_FAILURES: &str = "gridcase_dispatcher_snapshot_failures_total";
pub(crate) const METRIC_RESUMED_FROM: &str = "gridcase_dispatcher_resumed_from_sequence";

/// Days from `now` to the end of the last year `years` has a file for (0
/// when there is none, or it has ended).
pub(crate) fn calendar_days_left(years: &gridcase_calendar::YearTable, now: jiff::Timestamp) -> f64 {
    let Some(last) = years.years().map(|file| file.year).max() else { return 0.0 };
    let tz = jiff::tz::TimeZone::get(gridcase_calendar::TIME_ZONE).expect("the bundled time zone");
    let Ok(end) = jiff::civil::date(last + 1, 1, 1).to_zoned(tz) else { return 0.0 };
    ((end.timestamp().as_second() - now.as_second()) as f64 / 86_400.0).max(0.0)
}

/// How long this instance has been behind the stream: the lag metric.
#[derive(Default)]
pub(crate) struct Lag {
    behind_since: Option<std::time::Instant>,
    /// When the lag was last measured against the stream's end.
    checked_at: Option<std::time::Instant>,
}

impl Lag {
    /// Messages still `pending` after the one just read.
    pub(crate) fn note(&mut self, pending: u64) {
        let lag = if pending == 0 {
            self.behind_since = None;
            0.0
        } else {
            self.behind_since.get_or_insert_with(std::time::Instant::now).elapsed().as_secs_f64()
        };
        metrics::gauge!(METRIC_LAG_SECONDS).set(lag);
    }

    /// Whether to measure against the stream's end again: once a second at
    /// most.
    pub(crate) fn check_due(&self) -> bool {
        self.checked_at.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1))
    }

    /// Measured against the stream's end: `pending` messages not read.
    pub(crate) fn checked(&mut self, pending: u64) {
        self.checked_at = Some(std::time::Instant::now());
        metrics::gauge!(METRIC_PENDING).set(pending as f64);
        self.note(pending);
    }
}

/// Describe every metric and give it its zero value, so a scrape right after
/// start-up shows them all (a counter that has not moved yet is 0, not absent).
pub(crate) fn register_metrics() {
    metrics::describe_counter!(METRIC_STEPS, "Steps this instance stored, by the event type of the step.");
    for step in crate::core::STEP_KINDS {
        metrics::counter!(METRIC_STEPS, "step" => step).absolute(0);
    }
    metrics::describe_counter!(
        METRIC_CONFLICTS,
        "Steps not stored because another writer changed the case first or another instance took the same step."
    );
    metrics::counter!(METRIC_CONFLICTS).absolute(0);
    metrics::describe_gauge!(METRIC_PENDING, "Events in the case stream not yet read by this instance.");
    metrics::gauge!(METRIC_PENDING).set(0.0);
    metrics::describe_gauge!(
        METRIC_LAG_SECONDS,
        metrics::Unit::Seconds,
        "How long this instance has been behind the stream (0 when caught up)."
    );
    metrics::gauge!(METRIC_LAG_SECONDS).set(0.0);
    metrics::describe_counter!(METRIC_SKIPPED, "Events this version cannot read, left alone.");
    metrics::counter!(METRIC_SKIPPED).absolute(0);
    metrics::describe_counter!(
        METRIC_FALLBACK,
        "Deadlines computed for a year without a calendar file (Monday-Friday)."
    );
    metrics::counter!(METRIC_FALLBACK).absolute(0);
    metrics::describe_gauge!(METRIC_CALENDAR_MISSING, "1 when this year's or next year's calendar file is missing.");
    metrics::gauge!(METRIC_CALENDAR_MISSING).set(0.0);
    metrics::describe_gauge!(
        METRIC_CALENDAR_DAYS_LEFT,
        "Days until the end of the last year that has a working-calendar file (alert well before 0)."
    );
    metrics::gauge!(METRIC_CALENDAR_DAYS_LEFT).set(0.0);
    metrics::describe_gauge!(METRIC_OPEN_CASES, "Cases not yet closed that this instance tracks.");
    metrics::gauge!(METRIC_OPEN_CASES).set(0.0);
    metrics::describe_gauge!(
        METRIC_SNAPSHOT_SEQUENCE,
        "The stream sequence the last snapshot of open cases saved by this instance covers (0: none yet)."
    );
    metrics::gauge!(METRIC_SNAPSHOT_SEQUENCE).set(0.0);
    metrics::describe_counter!(METRIC_SNAPSHOT_FAILURES, "Snapshots of open cases that could not be saved.");
    metrics::counter!(METRIC_SNAPSHOT_FAILURES).absolute(0);
    metrics::describe_gauge!(
        METRIC_RESUMED_FROM,
        "The stream sequence this instance resumed from at start (0: it replayed the whole stream)."
    );
    metrics::gauge!(METRIC_RESUMED_FROM).set(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_count_to_the_end_of_the_last_calendar_year_in_beijing() {
        let years = gridcase_calendar::YearTable::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/calendar"),
        )
        .unwrap();
        let last = years.years().map(|file| file.year).max().unwrap();
        // 60 days before the year's end, Beijing time (UTC+8).
        let at = jiff::civil::date(last + 1, 1, 1)
            .at(0, 0, 0, 0)
            .to_zoned(jiff::tz::TimeZone::get(gridcase_calendar::TIME_ZONE).unwrap())
            .unwrap()
            .timestamp()
            - jiff::SignedDuration::from_hours(60 * 24);
        assert_eq!(calendar_days_left(&years, at), 60.0);
        assert_eq!(calendar_days_left(&years, at + jiff::SignedDuration::from_hours(100 * 24)), 0.0, "ended");
        let none = gridcase_calendar::YearTable::new([]).unwrap();
        assert_eq!(calendar_days_left(&none, at), 0.0);
    }
}
