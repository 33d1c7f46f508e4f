//! The working calendar and working-time arithmetic, free of IO (apart from
//! the convenience loader `YearTable::load_dir`) and of any clock.
//!
//! * Which days are working days is data: one TOML file per year listing the
//!   State Council's holidays and the weekends that become working days
//!   (调休上班). A day is a working day if the file lists it as a working
//!   weekend; else not if it lists it as a holiday; else if it is Monday to
//!   Friday. A year without a file falls back to Monday–Friday, and every
//!   computation that touched such a year says so.
//! * Working hours are periods of the day (default 08:00–12:00 and
//!   14:00–18:00), configurable per organisation.
//! * A clock in working time runs only inside working periods of working days.
//!   N working days is N times the length of a working day of running time.
//!   A deadline that lands exactly on a closing time is that closing time.
//!
//! All arithmetic happens on civil time in Asia/Shanghai (through jiff's
//! bundled time-zone database, so no system tzdata is needed).

mod hours;
mod years;

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

pub use hours::{HoursError, WorkingHours};
pub use years::{CalendarError, YearFile, YearTable};

/// The time zone of every calendar computation.
pub const TIME_ZONE: &str = "Asia/Shanghai";

/// What kind of day a date is, and on what authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayKind {
    pub working: bool,
    /// True when the year has no calendar file and the Monday–Friday rule decided.
    pub fallback: bool,
}

/// The result of a calendar computation, with the years it relied on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed<T> {
    pub value: T,
    /// Years whose calendar file was consulted.
    pub years: BTreeSet<i16>,
    /// Years that had no calendar file (Monday–Friday was assumed).
    pub fallback_years: BTreeSet<i16>,
}

impl<T> Computed<T> {
    pub fn used_fallback(&self) -> bool {
        !self.fallback_years.is_empty()
    }
}

/// A working calendar: the year files plus one organisation's working hours.
#[derive(Debug, Clone)]
pub struct Calendar {
    years: Arc<YearTable>,
    hours: WorkingHours,
    tz: TimeZone,
}

#[derive(Default)]
struct Trace {
    years: BTreeSet<i16>,
    fallback_years: BTreeSet<i16>,
}

impl Trace {
    fn finish<T>(self, value: T) -> Computed<T> {
        Computed { value, years: self.years, fallback_years: self.fallback_years }
    }
}

impl Calendar {
    pub fn new(years: Arc<YearTable>, hours: WorkingHours) -> Self {
        let tz = TimeZone::get(TIME_ZONE).expect("the bundled tz database has Asia/Shanghai");
        Self { years, hours, tz }
    }

    /// The same years with another organisation's working hours.
    pub fn with_hours(&self, hours: WorkingHours) -> Self {
        Self { years: self.years.clone(), hours, tz: self.tz.clone() }
    }

    pub fn years(&self) -> &YearTable {
        &self.years
    }

    pub fn hours(&self) -> &WorkingHours {
        &self.hours
    }

    /// Length of one working day (8 h by default).
    pub fn working_day(&self) -> SignedDuration {
        self.hours.day_length()
    }

    pub fn day_kind(&self, date: Date) -> DayKind {
        match self.years.year(date.year()) {
            Some(file) if file.working_weekends.contains(&date) => DayKind { working: true, fallback: false },
            Some(file) if file.holidays.contains(&date) => DayKind { working: false, fallback: false },
            Some(_) => DayKind { working: is_weekday(date), fallback: false },
            None => DayKind { working: is_weekday(date), fallback: true },
        }
    }

    fn working_day_traced(&self, date: Date, trace: &mut Trace) -> bool {
        let kind = self.day_kind(date);
        if kind.fallback {
            trace.fallback_years.insert(date.year());
        } else {
            trace.years.insert(date.year());
        }
        kind.working
    }

    /// The first instant of the day after `at`'s day in Asia/Shanghai: the
    /// end of "today" for a board's "due today".
    pub fn end_of_day(&self, at: Timestamp) -> Timestamp {
        let tomorrow = self.civil(at).date().tomorrow().expect("Asia/Shanghai dates are in range");
        self.instant(tomorrow.to_datetime(jiff::civil::Time::midnight()))
    }

    fn civil(&self, at: Timestamp) -> DateTime {
        self.tz.to_datetime(at)
    }

    fn instant(&self, civil: DateTime) -> Timestamp {
        self.tz.to_ambiguous_timestamp(civil).compatible().expect("Asia/Shanghai civil times are in range")
    }

    /// The instant `amount` of working time after `start`. A start outside
    /// working hours begins at the next opening; a zero amount is `start`.
    pub fn add_working(&self, start: Timestamp, amount: SignedDuration) -> Computed<Timestamp> {
        let mut trace = Trace::default();
        if amount <= SignedDuration::ZERO {
            return trace.finish(start);
        }
        let mut remaining = amount;
        let mut cursor = self.civil(start);
        // Bounded: a year of days without a single working period means the
        // hours are empty, which WorkingHours rules out.
        loop {
            let date = cursor.date();
            if self.working_day_traced(date, &mut trace) {
                for (open, close) in self.hours.periods_on(date) {
                    let from = if cursor > open { cursor } else { open };
                    if from >= close {
                        continue;
                    }
                    let available = from.duration_until(close);
                    if remaining <= available {
                        return trace.finish(self.instant(from + remaining));
                    }
                    remaining -= available;
                }
            }
            cursor = date.tomorrow().expect("dates stay in range").to_datetime(jiff::civil::Time::midnight());
        }
    }

    /// `days` working days after `start` (days × the working-day length).
    pub fn add_working_days(&self, start: Timestamp, days: u32) -> Computed<Timestamp> {
        self.add_working(start, self.working_day() * days as i32)
    }

    /// `hours` working hours after `start`.
    pub fn add_working_hours(&self, start: Timestamp, hours: u32) -> Computed<Timestamp> {
        self.add_working(start, SignedDuration::from_hours(hours as i64))
    }

    /// Working time between two instants (negative if `to` is before `from`).
    pub fn working_elapsed(&self, from: Timestamp, to: Timestamp) -> Computed<SignedDuration> {
        if to < from {
            let computed = self.working_elapsed(to, from);
            return Computed { value: -computed.value, ..computed };
        }
        let mut trace = Trace::default();
        let (from, to) = (self.civil(from), self.civil(to));
        let mut total = SignedDuration::ZERO;
        let mut date = from.date();
        while date <= to.date() {
            if self.working_day_traced(date, &mut trace) {
                for (open, close) in self.hours.periods_on(date) {
                    let start = if from > open { from } else { open };
                    let end = if to < close { to } else { close };
                    if start < end {
                        total += start.duration_until(end);
                    }
                }
            }
            date = date.tomorrow().expect("dates stay in range");
        }
        trace.finish(total)
    }

    /// A human description of the calendar files a computation used.
    pub fn describe(&self, computed_years: &BTreeSet<i16>, fallback_years: &BTreeSet<i16>) -> String {
        let mut parts: Vec<String> = computed_years
            .iter()
            .filter_map(|year| self.years.year(*year))
            .map(|file| format!("{}:{}", file.year, file.digest))
            .collect();
        parts.extend(fallback_years.iter().map(|year| format!("{year}:missing(mon-fri)")));
        parts.join(",")
    }
}

fn is_weekday(date: Date) -> bool {
    !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
}

#[cfg(test)]
mod tests;
