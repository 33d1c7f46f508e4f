//! The stored-event format of the case log, free of IO (no async, no
//! NATS): what rebuilds, fuzzing, benchmarks and the pure cores read and
//! write. The log itself (appending, reading, group commit) is
//! `gridcase-eventlog`'s.
//!
//! * [`schema`]: how an event is stored: a versioned JSON envelope,
//!   separate from the domain's types, with a SHA-256 hash chaining it to
//!   the previous event of the same case.
//! * [`subject`]: one subject per case, under its township.
//! * [`history`]: a case's events as read back (with their stream
//!   sequences), where it stands, its fold and the checks of its chain.
//! * [`sealing`]: residents' personal fields sealed under a per-case data
//!   key, data keys wrapped under the master key.

pub mod history;
pub mod schema;
pub mod sealing;
pub mod subject;

pub use history::{Head, Positioned, check_links, fold, verify_history};
pub use schema::{
    Actor, ChainBreak, DecodeError, EventMeta, StoredEvent, hash_as_stored, verify_chain, verify_chain_as_stored,
};
pub use subject::CaseSubject;
