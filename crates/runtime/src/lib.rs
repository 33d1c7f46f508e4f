//! What every gridcase service shares around its pure core: the shutdown
//! signal and draining, telemetry, the clock, authentication and authorization at the gRPC edge and the
//! mapping of failures to gRPC statuses with machine-readable details.

pub mod auth;
pub mod clock;
pub mod grpc;
pub mod metrics;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use auth::{Access, AuthArgs, AuthLayer, Authenticator};
pub use clock::{Clock, FixedClock, SystemClock};
pub use grpc::Violations;
pub use server::{GrpcServer, ServerTlsArgs};
pub use service::{CommonArgs, KeyArgs, PolicyArgs, exit_code};
pub use shutdown::Shutdown;
pub use telemetry::LogFormat;

/// Parse a human duration such as `5s`, `250ms`, `10m` or `1h 30m` (for flags).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let signed: jiff::SignedDuration =
        text.parse().map_err(|e| format!("{text:?} is not a duration like 5s, 250ms or 10m: {e}"))?;
    std::time::Duration::try_from(signed).map_err(|_| format!("{text:?} must not be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(std::time::Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(std::time::Duration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(std::time::Duration::from_secs(5400)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
