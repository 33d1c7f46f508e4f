//! gridcase dispatcher, as a library: `core` decides a case's next step,
//! `schedule` decides which case to look at when (both pure: no IO, no
//! async, `now` an argument); `service` is the shell that feeds them the
//! stream and carries out what they ask for, `commit` appends the steps,
//! `snapshot` keeps what it knows of open cases between starts, `health`
//! says whether it serves, `metrics` names what it exports.

pub mod commit;
pub mod config;
pub mod core;
pub mod health;
pub mod metrics;
pub mod schedule;
pub mod service;
pub mod snapshot;

pub use config::Config;
pub use service::{Application, run};
