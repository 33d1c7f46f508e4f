//! `WatchCases`: one township's stored events as they come, read from the
//! event log with the ordered reader (so a write the log refused never
//! shows), resumable after a stream sequence, until the caller's token ends.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use gridcase_auth::policy::Target;
use gridcase_domain::TownshipCode;
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_eventlog::{EventLog, ReadFrom};
use gridcase_grpc::{Access, Violations, status};
use gridcase_process::Shutdown;
use gridcase_proto::convert;
use gridcase_proto::query::v1 as api;
use jiff::Timestamp;
use tonic::Status;

pub(super) type WatchStream = Pin<Box<dyn Stream<Item = Result<api::CaseChange, Status>> + Send>>;

/// A watch request's township: a 9-digit code.
pub(super) fn township_of(text: &str) -> Result<TownshipCode, Status> {
    TownshipCode::parse(text).map_err(|_| Violations::one("township", "MALFORMED", "must be a 9-digit township code"))
}

pub(super) async fn watch(
    log: &EventLog,
    access: Access,
    request: api::WatchCasesRequest,
    stopping: Option<Shutdown>,
) -> Result<WatchStream, Status> {
    let api::WatchCasesRequest { township, after_sequence: request_after } = request;
    let township_code = township_of(&township)?;
    access.check(Target::Region(&township))?;
    let from = match request_after {
        0 => ReadFrom::New,
        after => ReadFrom::after(after),
    };
    let reader = log
        .read(CaseSubject::township_filter(&township_code), from)
        .await
        .map_err(|e| status::unavailable("the event log", &e))?;
    let changes = reader.filter_map(move |record| {
        let township = township.clone();
        async move {
            let record = match record {
                Ok(record) => record,
                Err(error) => {
                    // The ordered consumer resumes after the last event it delivered.
                    tracing::warn!(%error, "reading the case stream for a watch; resuming");
                    return None;
                }
            };
            let stored = match StoredEvent::from_json_bytes(&record.payload) {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::warn!(sequence = record.sequence, %error, "unreadable message not sent to a watch");
                    return None;
                }
            };
            Some(Ok(api::CaseChange {
                case_id: stored.case_id.to_string(),
                township,
                event_type: stored.event_type,
                case_version: stored.case_version,
                occurred_at: Some(convert::timestamp_to_proto(stored.occurred_at)),
                actor_role: stored.actor.role.as_str().to_owned(),
                actor_organisation: stored.actor.organisation,
                stream_sequence: record.sequence,
            }))
        }
    });
    // The stream lasts as long as the token (then it ends with
    // UNAUTHENTICATED and the screen reconnects with a fresh one) and as
    // long as the service runs (a stopping server ends it with UNAVAILABLE
    // at once, instead of holding the graceful stop for its whole grace
    // period; the screen reconnects after the last sequence it saw).
    let valid_until = access.valid_until;
    let remaining = std::time::Duration::try_from(valid_until.duration_since(Timestamp::now())).unwrap_or_default();
    let ends = async move {
        let stopped = async move {
            match stopping {
                Some(stopping) => stopping.requested().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(remaining) => {}
            _ = stopped => {}
        }
    };
    let closing = futures::stream::once(async move {
        Err(if Timestamp::now() >= valid_until {
            Status::unauthenticated("the token has expired: watch again with a fresh one")
        } else {
            Status::unavailable("the query service is stopping: watch again after the last stream_sequence you saw")
        })
    });
    Ok(Box::pin(changes.take_until(ends).chain(closing)))
}
