//! The case event log on NATS JetStream (the stored-event format itself is
//! `gridcase-envelope`'s, free of IO).
//!
//! * [`cloudevents`]: the NATS headers that make every stored event a
//!   CloudEvent in binary mode.
//! * [`log`]: appends with per-case optimistic concurrency and reads histories
//!   back, on NATS JetStream.
//! * `retry`: an append's attempts within its deadline, with backoff.
//! * [`reader`]: the stream read in order from a sequence, with a caught-up
//!   signal (dispatcher, projector, live watch).
//! * [`store`]: the one write path: load a case, commit one event (or a
//!   chain of events of one case).
//! * [`group`]: group commit, the one mechanism: concurrent writes as one atomic batch.
//! * [`batch`]: the case stream's writer of the group commit.
//! * [`attachments`]: photos, content-addressed and write-once on a stream of their own.
//! * [`uploads`]: resumable uploads, in parts, until they become attachments.
//! * [`integrity`]: whether the streams still keep their history; writes stop when not.
//! * [`keys`]: the key store (a key-value bucket) and erasure.
//! * [`trace`]: the trace context carried in message headers.

pub mod attachments;
pub mod batch;
pub mod cloudevents;
pub mod group;
pub mod integrity;
pub mod keys;
pub mod log;
pub mod reader;
mod retry;
pub mod store;
pub mod trace;
pub mod uploads;

pub use attachments::{AttachmentError, AttachmentStore};
pub use group::GroupCommit;
pub use keys::{KeyState, KeyStore, KeyStoreError};
pub use log::{AppendError, AppendOutcome, EventLog, LogError, StreamMark, StreamSettings};
pub use reader::{CaseStreamReader, ReadFrom, Record};
pub use uploads::{UploadError, UploadStore};
