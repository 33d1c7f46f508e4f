use std::fmt;

use jiff::SignedDuration;

/// A time limit in the unit its clock runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// Calendar time, 24×7 (life and safety).
    Calendar(SignedDuration),
    /// N working hours of running time.
    WorkingHours(u32),
    /// N working days: N times the working-day length of running time.
    WorkingDays(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a limit like \"30 minutes\", \"6 hours\", \"2 days\", \"4 working hours\" or \"5 working days\" (1 to 99999 of them)"
)]
pub struct LimitError(pub String);

/// How much running time a limit allows, and in which kind of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Calendar(SignedDuration),
    Working(SignedDuration),
}

impl Span {
    pub fn amount(self) -> SignedDuration {
        match self {
            Span::Calendar(d) | Span::Working(d) => d,
        }
    }

    /// `percent`% of this span, rounded down to the second.
    pub fn scaled(self, percent: u32) -> Span {
        let seconds = self.amount().as_secs() * i64::from(percent) / 100;
        let scaled = SignedDuration::from_secs(seconds);
        match self {
            Span::Calendar(_) => Span::Calendar(scaled),
            Span::Working(_) => Span::Working(scaled),
        }
    }
}

impl Limit {
    /// The largest number a limit may count (minutes, hours or days).
    pub const MAX_AMOUNT: u32 = 99_999;

    pub fn parse(text: &str) -> Result<Self, LimitError> {
        let error = || LimitError(text.to_owned());
        let mut words = text.split_whitespace();
        let amount: u32 = words.next().and_then(|n| n.parse().ok()).ok_or_else(error)?;
        let unit: Vec<&str> = words.collect();
        let limit = match unit.as_slice() {
            ["minute" | "minutes"] => Limit::Calendar(SignedDuration::from_mins(amount.into())),
            ["hour" | "hours"] => Limit::Calendar(SignedDuration::from_hours(amount.into())),
            ["day" | "days"] => Limit::Calendar(SignedDuration::from_hours(24 * i64::from(amount))),
            ["working", "hour" | "hours"] => Limit::WorkingHours(amount),
            ["working", "day" | "days"] => Limit::WorkingDays(amount),
            _ => return Err(error()),
        };
        // Bounded, so deadline arithmetic on it cannot overflow (a policy
        // would otherwise parse and then panic the dispatcher).
        if amount == 0 || amount > Self::MAX_AMOUNT {
            return Err(error());
        }
        Ok(limit)
    }

    /// The running time this limit allows, given the length of a working day.
    pub fn span(&self, working_day: SignedDuration) -> Span {
        match self {
            Limit::Calendar(duration) => Span::Calendar(*duration),
            Limit::WorkingHours(hours) => Span::Working(SignedDuration::from_hours((*hours).into())),
            Limit::WorkingDays(days) => Span::Working(working_day * (*days as i32)),
        }
    }

    /// The unit for people ("working days", …).
    pub fn unit(&self) -> &'static str {
        match self {
            Limit::Calendar(_) => "calendar time",
            Limit::WorkingHours(_) => "working hours",
            Limit::WorkingDays(_) => "working days",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Calendar(d) if d.as_secs() % 86_400 == 0 => write!(f, "{} days", d.as_secs() / 86_400),
            Limit::Calendar(d) if d.as_secs() % 3_600 == 0 => write!(f, "{} hours", d.as_secs() / 3_600),
            Limit::Calendar(d) => write!(f, "{} minutes", d.as_secs() / 60),
            Limit::WorkingHours(1) => write!(f, "1 working hour"),
            Limit::WorkingHours(n) => write!(f, "{n} working hours"),
            Limit::WorkingDays(1) => write!(f, "1 working day"),
            Limit::WorkingDays(n) => write!(f, "{n} working days"),
        }
    }
}
