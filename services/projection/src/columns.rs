//! How the read models store values: instants as microseconds since the
//! epoch, a clock's deadline in a column of its own, a contact's state by
//! name.

use gridcase_domain::{Clock, ContactState};
use jiff::Timestamp;

/// An instant as stored: microseconds since the epoch.
pub fn micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

/// An instant as stored, read back.
pub fn from_micros(micros: i64) -> Timestamp {
    Timestamp::from_microsecond(micros).expect("instants in the database are in range")
}

/// The column of `cases` holding a clock's current deadline.
pub fn due_column(clock: Clock) -> &'static str {
    match clock {
        Clock::Register => "register_due",
        Clock::Acknowledge => "acknowledge_due",
        Clock::Resolve => "resolve_due",
        Clock::Verify => "verify_due",
        Clock::Reply => "reply_due",
        Clock::Callback => "callback_due",
    }
}

/// A contact's state as stored.
pub fn contact_state_name(state: ContactState) -> &'static str {
    match state {
        ContactState::None => "none",
        ContactState::Given => "given",
        ContactState::Erased => "erased",
    }
}

/// A contact's state read back (`None`: not a state's name).
pub(crate) fn contact_state(name: &str) -> Option<ContactState> {
    [ContactState::None, ContactState::Given, ContactState::Erased].into_iter().find(|s| contact_state_name(*s) == name)
}
