//! The case event log.
//!
//! * [`schema`]: how an event is stored: a versioned JSON envelope, separate
//!   from the domain's types, with a SHA-256 hash chaining it to the previous
//!   event of the same case.
//! * [`cloudevents`]: the NATS headers that make every stored event a
//!   CloudEvent in binary mode.
//! * [`subject`]: one subject per case, under its township.
//! * [`log`]: appends with per-case optimistic concurrency and reads histories
//!   back, on NATS JetStream.
//! * [`reader`]: the stream read in order from a sequence, with a caught-up
//!   signal (dispatcher, projector, live watch).
//! * [`store`]: the one write path: load a case, commit one event (or a
//!   chain of events of one case).
//! * [`batch`]: group commit: concurrent appends as one atomic batch.
//! * [`attachments`]: photos, content-addressed and write-once on a stream of their own.
//! * [`integrity`]: whether the streams still keep their history; writes stop when not.
//! * [`sealing`]: residents' personal fields sealed under a per-case data
//!   key, data keys wrapped under the master key (no IO).
//! * [`keys`]: the key store (a key-value bucket) and erasure.

pub mod attachments;
pub mod batch;
pub mod cloudevents;
pub mod integrity;
pub mod keys;
pub mod log;
pub mod reader;
pub mod schema;
pub mod sealing;
pub mod store;
pub mod subject;
pub mod trace;

pub use attachments::{AttachmentError, AttachmentStore};
pub use batch::GroupCommit;
pub use keys::{KeyState, KeyStore, KeyStoreError};
pub use log::{AppendError, AppendOutcome, EventLog, LogError, Positioned, StreamMark, StreamSettings, verify_history};
pub use reader::{CaseStreamReader, ReadFrom, Record};
pub use schema::{Actor, ChainBreak, DecodeError, StoredEvent, hash_as_stored, verify_chain, verify_chain_as_stored};
pub use subject::CaseSubject;
