//! The integration tests of gridcase, one module per subject, in one test
//! binary: each binary links every service, and linking them is most of
//! what building the tests costs on two cores. Two tests keep binaries of
//! their own because what they observe is process-wide: `tracing.rs` (the
//! tracing subscriber) and `dispatcher_metrics.rs` (the metrics recorder).
//! nextest runs every test in a process of its own all the same.

mod architecture;
mod audit;
mod auth;
mod backup;
mod cases;
mod chaos;
mod console;
mod dispatcher;
mod docs;
mod eventlog;
mod group_commit;
mod grpc_web;
mod intake;
mod lying_disk;
mod map;
mod merge;
mod metrics;
mod nats_security;
mod nearby;
mod open311;
mod personal_data;
mod projection;
mod residents;
mod stale_reads;
mod sync;
mod tls;
mod uploads;
