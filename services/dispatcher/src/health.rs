//! What the dispatcher's health service says: `""` and the dispatcher's own
//! service SERVING once it has caught up with the stream, while the log
//! keeps its history; the working calendar's status beside (NOT_SERVING
//! while this year's or next year's file is missing).

use gridcase_calendar::Calendar;
use jiff::Timestamp;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::metrics::{METRIC_CALENDAR_DAYS_LEFT, METRIC_CALENDAR_MISSING, calendar_days_left};

/// The dispatcher's health service name.
pub const HEALTH_DISPATCHER: &str = "gridcase.dispatcher.v1.Dispatcher";
/// The working calendar's health service name.
pub const HEALTH_CALENDAR: &str = "gridcase.dispatcher.v1.Calendar";

/// The statuses last reported, so each change is reported once.
pub(crate) struct Health {
    reporter: HealthReporter,
    caught_up: bool,
    serving: Option<bool>,
    calendar_ready: Option<bool>,
}

impl Health {
    /// A reporter that starts NOT_SERVING.
    pub(crate) async fn start(reporter: HealthReporter) -> Self {
        reporter.set_service_status("", ServingStatus::NotServing).await;
        reporter.set_service_status(HEALTH_DISPATCHER, ServingStatus::NotServing).await;
        Self { reporter, caught_up: false, serving: None, calendar_ready: None }
    }

    /// The dispatcher has read the stream to its end once.
    pub(crate) async fn caught_up(&mut self, open_cases: usize, writable: bool) {
        info!(cases = open_cases, "caught up with the case stream");
        self.caught_up = true;
        self.report(writable).await;
    }

    /// SERVING once caught up, while the log is `writable` (keeps its
    /// history).
    pub(crate) async fn report(&mut self, writable: bool) {
        let serving = self.caught_up && writable;
        if self.serving == Some(serving) {
            return;
        }
        self.serving = Some(serving);
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.reporter.set_service_status("", status).await;
        self.reporter.set_service_status(HEALTH_DISPATCHER, status).await;
    }

    /// Next year's calendar file must exist before the year starts.
    pub(crate) async fn check_calendar(&mut self, calendar: &Calendar, now: Timestamp) {
        let year = now.to_zoned(jiff::tz::TimeZone::get(gridcase_calendar::TIME_ZONE).expect("tz")).year();
        let ready = calendar.years().has(year) && calendar.years().has(year + 1);
        metrics::gauge!(METRIC_CALENDAR_MISSING).set(if ready { 0.0 } else { 1.0 });
        metrics::gauge!(METRIC_CALENDAR_DAYS_LEFT).set(calendar_days_left(calendar.years(), now));
        if self.calendar_ready == Some(ready) {
            return;
        }
        self.calendar_ready = Some(ready);
        let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.reporter.set_service_status(HEALTH_CALENDAR, status).await;
        if !ready {
            warn!(
                this_year = year,
                next_year = year + 1,
                "a working-calendar file is missing: deadlines in that year count Monday-Friday; add deploy/calendar/<year>.toml"
            );
        }
    }
}
