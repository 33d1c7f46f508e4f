use jiff::SignedDuration;
use jiff::civil::{Date, DateTime, Time};

/// Working periods of a day, e.g. 08:00–12:00 and 14:00–18:00. Stored as
/// minutes since midnight; an end of 24:00 means midnight of the next day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    periods: Vec<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error("{0:?} is not a period like \"08:00-12:00\"")]
    Malformed(String),
    #[error("period {0:?} must end after it starts")]
    Empty(String),
    #[error("periods must be in order and must not overlap: {0:?}")]
    Overlap(String),
    #[error("at least one working period is required")]
    None,
}

impl Default for WorkingHours {
    fn default() -> Self {
        Self { periods: vec![(8 * 60, 12 * 60), (14 * 60, 18 * 60)] }
    }
}

fn parse_time(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    // Checked: an hour such as 2174 must be refused, not overflow (found by fuzzing).
    let minutes = h.checked_mul(60)?.checked_add(m)?;
    (m < 60 && minutes <= 24 * 60).then_some(minutes)
}

impl WorkingHours {
    /// Parse periods such as `["08:00-12:00", "14:00-18:00"]`.
    pub fn parse<S: AsRef<str>>(periods: &[S]) -> Result<Self, HoursError> {
        let mut parsed: Vec<(u16, u16)> = Vec::new();
        for period in periods {
            let text = period.as_ref();
            let (open, close) = text.split_once('-').ok_or_else(|| HoursError::Malformed(text.into()))?;
            let (open, close) = match (parse_time(open), parse_time(close)) {
                (Some(open), Some(close)) => (open, close),
                _ => return Err(HoursError::Malformed(text.into())),
            };
            if close <= open {
                return Err(HoursError::Empty(text.into()));
            }
            if parsed.last().is_some_and(|(_, last_close)| open < *last_close) {
                return Err(HoursError::Overlap(text.into()));
            }
            parsed.push((open, close));
        }
        if parsed.is_empty() {
            return Err(HoursError::None);
        }
        Ok(Self { periods: parsed })
    }

    /// Round the clock: 00:00–24:00.
    pub fn around_the_clock() -> Self {
        Self { periods: vec![(0, 24 * 60)] }
    }

    pub fn day_length(&self) -> SignedDuration {
        let minutes: i64 = self.periods.iter().map(|(open, close)| i64::from(close - open)).sum();
        SignedDuration::from_mins(minutes)
    }

    /// The civil opening and closing times of each period on `date`.
    pub(crate) fn periods_on(&self, date: Date) -> impl Iterator<Item = (DateTime, DateTime)> + '_ {
        self.periods.iter().map(move |(open, close)| (at_minute(date, *open), at_minute(date, *close)))
    }
}

fn at_minute(date: Date, minute: u16) -> DateTime {
    if minute >= 24 * 60 {
        return date.tomorrow().expect("dates stay in range").to_datetime(Time::midnight());
    }
    date.to_datetime(Time::constant((minute / 60) as i8, (minute % 60) as i8, 0, 0))
}
