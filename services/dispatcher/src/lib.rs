//! gridcase dispatcher, as a library. See `core` for the decisions and
//! `service` for the shell that feeds it events from JetStream and appends
//! its steps; `snapshot` keeps what it knows of open cases between starts.

pub mod config;
pub mod core;
pub mod service;
pub mod snapshot;

pub use config::Config;
pub use service::{Application, run};
