//! What a gridcase service connects to and loads at start: NATS and the
//! case log on it ([`nats`]), residents' data keys ([`keys`]), the policy
//! and the calendar ([`rules`]).

pub mod keys;
pub mod nats;
pub mod rules;

pub use keys::KeyArgs;
pub use nats::CommonArgs;
pub use rules::PolicyArgs;

/// Register, at zero, the metrics of what every service connects to: the
/// NATS connection, and the case log's (appends, keys, integrity).
pub fn register_metrics() {
    metrics::describe_gauge!(nats::NATS_CONNECTED, "1 while the NATS connection is up, 0 while it is down.");
    metrics::gauge!(nats::NATS_CONNECTED).set(0.0);
    gridcase_eventlog::store::register_metrics();
}
