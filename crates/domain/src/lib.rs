//! The case domain of gridcase, free of IO and async.
//!
//! Architecture invariant: this crate depends on no async runtime, broker,
//! database or RPC crate (`tests/tests/suite/architecture.rs` fails if it does). Every
//! decision takes the current state, a command and `now`; facts from the
//! outside world (grid registry, policy, calendar) are looked up by services
//! and passed in as plain values.

mod case;
mod codes;
mod command;
mod error;
mod event;
mod ids;
mod personal;
mod text;
mod values;

pub use case::{Case, CaseState, DeadlineBasis, Deadlines, MAX_EXTENSION_WORKING_DAYS, decide, evolve, replay};
pub use codes::{CategoryCode, CodeError, GridCode, OrgCode, TownshipCode};
pub use command::Command;
pub use error::DomainError;
pub use event::{Event, Filing};
pub use ids::{CaseId, CaseIdError};
pub use personal::{
    Contact, ContactState, EmailAddress, PersonName, PersonalDataError, PhoneNumber, ResidentContact, SealedData,
};
pub use text::{Text, TextError};
pub use values::{
    ActorRole, AttachmentRef, Channel, Clock, ClockMark, ClockTerms, Feedback, Location, LocationError, OutsideGrid,
    ReplyMethod, RequestKind, Sha256Digest, State, Supervision, Tier,
};
