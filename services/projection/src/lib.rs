//! gridcase projection and query service: builds the read models in
//! PostgreSQL from the case event log (`projector`, with the pure `project`
//! logic and the bulk `store`), rebuilds them from scratch (`rebuild`, loading
//! with `copy`), and serves them (`query`); `case_table` declares the cases
//! table once, `columns` how values are stored.

pub mod audit;
pub mod case_table;
pub mod columns;
pub mod config;
pub mod copy;
pub mod freshness;
pub mod metrics;
pub mod project;
pub mod projector;
pub mod query;
pub mod rebuild;
pub mod service;
pub mod store;

pub use config::{Cli, Config};
