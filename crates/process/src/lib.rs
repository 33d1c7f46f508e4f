//! The process shell every gridcase service shares, whatever it serves:
//! the shutdown signal and draining ([`shutdown`]), logs and trace export
//! ([`telemetry`]), where "now" comes from ([`time`]), the Prometheus
//! exporter ([`exporter`]), flag parsing and the exit code.

pub mod exporter;
pub mod shutdown;
pub mod telemetry;
pub mod time;

use std::process::ExitCode;

pub use shutdown::{Shutdown, ShutdownTrigger};
pub use telemetry::LogFormat;
pub use time::{ManualTimeSource, SystemTimeSource, TimeSource};

/// The process exit code for a service's result, logging the failure.
pub fn exit_code(name: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{name} failed");
            eprintln!("{name}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

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
