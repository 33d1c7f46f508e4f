//! Conversions between the domain's values and the protobuf enums, in one place.

use crate::common::v1 as pb;
use gridcase_domain::{Channel, Clock, Feedback, ReplyMethod, RequestKind, State, Supervision, Tier};

pub fn request_kind_from_proto(kind: pb::RequestKind) -> Option<RequestKind> {
    match kind {
        pb::RequestKind::Unspecified => None,
        pb::RequestKind::Consultation => Some(RequestKind::Consultation),
        pb::RequestKind::Help => Some(RequestKind::Help),
        pb::RequestKind::Complaint => Some(RequestKind::Complaint),
        pb::RequestKind::Report => Some(RequestKind::Report),
        pb::RequestKind::Suggestion => Some(RequestKind::Suggestion),
        pb::RequestKind::Praise => Some(RequestKind::Praise),
    }
}

pub fn request_kind_to_proto(kind: Option<RequestKind>) -> pb::RequestKind {
    match kind {
        None => pb::RequestKind::Unspecified,
        Some(RequestKind::Consultation) => pb::RequestKind::Consultation,
        Some(RequestKind::Help) => pb::RequestKind::Help,
        Some(RequestKind::Complaint) => pb::RequestKind::Complaint,
        Some(RequestKind::Report) => pb::RequestKind::Report,
        Some(RequestKind::Suggestion) => pb::RequestKind::Suggestion,
        Some(RequestKind::Praise) => pb::RequestKind::Praise,
    }
}

pub fn channel_to_proto(channel: Channel) -> pb::Channel {
    match channel {
        Channel::GridWorker => pb::Channel::GridWorker,
        Channel::Partner => pb::Channel::Partner,
    }
}

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

pub fn state_from_proto(value: i32) -> Option<State> {
    Some(match pb::CaseState::try_from(value).ok()? {
        pb::CaseState::Reported => State::Reported,
        pb::CaseState::Registered => State::Registered,
        pb::CaseState::Voided => State::Voided,
        pb::CaseState::Dispatched => State::Dispatched,
        pb::CaseState::InProgress => State::InProgress,
        pb::CaseState::OnHold => State::OnHold,
        pb::CaseState::Resolved => State::Resolved,
        pb::CaseState::Closed => State::Closed,
        pb::CaseState::Cancelled => State::Cancelled,
        pb::CaseState::Unspecified => return None,
    })
}

pub fn state_to_proto(status: State) -> pb::CaseState {
    match status {
        State::Reported => pb::CaseState::Reported,
        State::Registered => pb::CaseState::Registered,
        State::Voided => pb::CaseState::Voided,
        State::Dispatched => pb::CaseState::Dispatched,
        State::InProgress => pb::CaseState::InProgress,
        State::OnHold => pb::CaseState::OnHold,
        State::Resolved => pb::CaseState::Resolved,
        State::Closed => pb::CaseState::Closed,
        State::Cancelled => pb::CaseState::Cancelled,
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
        Clock::Reply => pb::Clock::Reply,
        Clock::Callback => pb::Clock::Callback,
    }
}

pub fn reply_method_from_proto(value: i32) -> Option<ReplyMethod> {
    match pb::ReplyMethod::try_from(value).ok()? {
        pb::ReplyMethod::Phone => Some(ReplyMethod::Phone),
        pb::ReplyMethod::Sms => Some(ReplyMethod::Sms),
        pb::ReplyMethod::InPerson => Some(ReplyMethod::InPerson),
        pb::ReplyMethod::Partner => Some(ReplyMethod::Partner),
        pb::ReplyMethod::Unspecified => None,
    }
}

pub fn clock_from_proto(value: i32) -> Option<Clock> {
    match pb::Clock::try_from(value).ok()? {
        pb::Clock::Register => Some(Clock::Register),
        pb::Clock::Acknowledge => Some(Clock::Acknowledge),
        pb::Clock::Resolve => Some(Clock::Resolve),
        pb::Clock::Verify => Some(Clock::Verify),
        pb::Clock::Reply => Some(Clock::Reply),
        pb::Clock::Callback => Some(Clock::Callback),
        pb::Clock::Unspecified => None,
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
