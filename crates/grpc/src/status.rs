//! Failures as gRPC statuses, with details a client can act on. Internal
//! messages (NATS, SQL) never reach the client: they are logged here and the
//! client gets a generic message.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Field violations collected while validating a request.
#[derive(Debug, Default, Clone)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record that `field` broke `rule` (a SCREAMING_SNAKE_CASE identifier),
    /// described for people by `description`.
    pub fn add(&mut self, field: impl Into<String>, rule: &str, description: impl Into<String>) {
        let mut violation = FieldViolation::new(field, description);
        violation.reason = rule.to_owned();
        self.0.push(violation);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|v| v.field.as_str())
    }

    /// INVALID_ARGUMENT with a `google.rpc.BadRequest` detail.
    pub fn into_status(self) -> Status {
        let summary = self.0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ");
        Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid request: {summary}"),
            ErrorDetails::with_bad_request(self.0),
        )
    }

    /// INVALID_ARGUMENT for a single violated field.
    pub fn one(field: impl Into<String>, rule: &str, description: impl Into<String>) -> Status {
        let mut v = Self::new();
        v.add(field, rule, description);
        v.into_status()
    }

    /// `Ok(())` when nothing was violated, the status otherwise.
    pub fn into_result(self) -> Result<(), Status> {
        if self.is_empty() { Ok(()) } else { Err(self.into_status()) }
    }
}

/// UNAVAILABLE for a dependency that did not answer; the detail is logged,
/// not sent.
pub fn unavailable(what: &str, error: &dyn std::fmt::Display) -> Status {
    tracing::warn!(%error, "{what} unavailable");
    Status::unavailable(format!("{what} is unavailable; retry the same request later"))
}

/// UNAVAILABLE while writes are stopped because the log no longer keeps its
/// history (`gridcase_eventlog::integrity`): the client keeps its request
/// and sends it again later; operators have the alert and the details.
pub fn writes_stopped(problems: &str) -> Status {
    tracing::warn!(%problems, "a write refused: the case log no longer keeps its history");
    Status::unavailable(
        "gridcase is not accepting changes now: the case log's safeguards were changed and operators have been \
         alerted; keep the request and send it again later",
    )
}

/// DATA_LOSS for a case whose history the log no longer holds whole; the
/// detail is logged (by the case store), not sent.
pub fn history_broken(case_id: &dyn std::fmt::Display) -> Status {
    Status::data_loss(format!("the history of case {case_id} is damaged in the log; operators have been alerted"))
}

/// INTERNAL for a bug or a broken invariant; the detail is logged, not sent.
pub fn internal(error: &dyn std::fmt::Display) -> Status {
    tracing::error!(%error, "internal error");
    Status::internal("internal error; it has been logged")
}

/// Accepted connections of a gRPC listener, with Nagle's algorithm off: small
/// HTTP/2 frames go out at once instead of waiting for the peer's delayed
/// acknowledgement (about 40 ms on Linux).
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}
