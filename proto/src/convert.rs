//! Conversions between the domain's values and the protobuf enums, in one place.

use crate::common::v1 as pb;
use gridcase_domain::{Clock, Feedback, Status, Supervision, Tier};

pub fn tier_from_proto(value: i32) -> Option<Tier> {
    match pb::Tier::try_from(value).ok()? {
        pb::Tier::Critical => Some(Tier::Critical),
        pb::Tier::Urgent => Some(Tier::Urgent),
        pb::Tier::Normal => Some(Tier::Normal),
        pb::Tier::Complex => Some(Tier::Complex),
        pb::Tier::Unspecified => None,
    }
}

pub fn tier_to_proto(tier: Option<Tier>) -> pb::Tier {
    match tier {
        Some(Tier::Critical) => pb::Tier::Critical,
        Some(Tier::Urgent) => pb::Tier::Urgent,
        Some(Tier::Normal) => pb::Tier::Normal,
        Some(Tier::Complex) => pb::Tier::Complex,
        None => pb::Tier::Unspecified,
    }
}

pub fn state_from_proto(value: i32) -> Option<Status> {
    Some(match pb::CaseState::try_from(value).ok()? {
        pb::CaseState::Reported => Status::Reported,
        pb::CaseState::Registered => Status::Registered,
        pb::CaseState::Voided => Status::Voided,
        pb::CaseState::Dispatched => Status::Dispatched,
        pb::CaseState::InProgress => Status::InProgress,
        pb::CaseState::OnHold => Status::OnHold,
        pb::CaseState::Resolved => Status::Resolved,
        pb::CaseState::Closed => Status::Closed,
        pb::CaseState::Cancelled => Status::Cancelled,
        pb::CaseState::Unspecified => return None,
    })
}

pub fn state_to_proto(status: Status) -> pb::CaseState {
    match status {
        Status::Reported => pb::CaseState::Reported,
        Status::Registered => pb::CaseState::Registered,
        Status::Voided => pb::CaseState::Voided,
        Status::Dispatched => pb::CaseState::Dispatched,
        Status::InProgress => pb::CaseState::InProgress,
        Status::OnHold => pb::CaseState::OnHold,
        Status::Resolved => pb::CaseState::Resolved,
        Status::Closed => pb::CaseState::Closed,
        Status::Cancelled => pb::CaseState::Cancelled,
    }
}

pub fn supervision_from_proto(value: i32) -> Option<Supervision> {
    match pb::Supervision::try_from(value).ok()? {
        pb::Supervision::None => Some(Supervision::None),
        pb::Supervision::Normal => Some(Supervision::Normal),
        pb::Supervision::YellowCard => Some(Supervision::YellowCard),
        pb::Supervision::RedCard => Some(Supervision::RedCard),
        pb::Supervision::Unspecified => None,
    }
}

pub fn supervision_to_proto(level: Supervision) -> pb::Supervision {
    match level {
        Supervision::None => pb::Supervision::None,
        Supervision::Normal => pb::Supervision::Normal,
        Supervision::YellowCard => pb::Supervision::YellowCard,
        Supervision::RedCard => pb::Supervision::RedCard,
    }
}

pub fn feedback_from_proto(value: i32) -> Option<Feedback> {
    match pb::Feedback::try_from(value).ok()? {
        pb::Feedback::Satisfied => Some(Feedback::Satisfied),
        pb::Feedback::BasicallySatisfied => Some(Feedback::BasicallySatisfied),
        pb::Feedback::Unsatisfied => Some(Feedback::Unsatisfied),
        pb::Feedback::Unspecified => None,
    }
}

pub fn feedback_to_proto(feedback: Option<Feedback>) -> pb::Feedback {
    match feedback {
        Some(Feedback::Satisfied) => pb::Feedback::Satisfied,
        Some(Feedback::BasicallySatisfied) => pb::Feedback::BasicallySatisfied,
        Some(Feedback::Unsatisfied) => pb::Feedback::Unsatisfied,
        None => pb::Feedback::Unspecified,
    }
}

pub fn clock_to_proto(clock: Clock) -> pb::Clock {
    match clock {
        Clock::Register => pb::Clock::Register,
        Clock::Acknowledge => pb::Clock::Acknowledge,
        Clock::Resolve => pb::Clock::Resolve,
        Clock::Verify => pb::Clock::Verify,
    }
}

pub fn timestamp_to_proto(ts: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ts.as_second(), nanos: ts.subsec_nanosecond() }
}

/// A protobuf Timestamp, which must have nanos in 0..=999_999_999.
pub fn timestamp_from_proto(ts: &prost_types::Timestamp) -> Option<jiff::Timestamp> {
    if !(0..=999_999_999).contains(&ts.nanos) {
        return None;
    }
    jiff::Timestamp::new(ts.seconds, ts.nanos).ok()
}
