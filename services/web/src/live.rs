//! The board's live feed: the query service's `WatchCases` relayed to the
//! browser as Server-Sent Events, one event per stored case event, its SSE
//! id the event's stream sequence. A browser that loses the connection (the
//! console restarted, another instance behind the balancer, the query
//! service away) reconnects by itself and sends the last id it saw
//! (`Last-Event-ID`), and the watch resumes right after it: nothing missed,
//! nothing twice.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use gridcase_proto::query::v1 as query_api;
use http::HeaderMap;
use serde::Deserialize;
use tonic::Code;

use crate::AppState;
use crate::metrics::{EVENTS_RELAYED, LIVE_CONNECTIONS};
use crate::pages::time;
use crate::session::Session;
use crate::upstream::as_user;

/// How long a browser waits before reconnecting.
const RECONNECT: Duration = Duration::from_millis(1500);

#[derive(Deserialize)]
pub struct LiveQuery {
    township: String,
    /// Resume after this stream sequence (a browser that opened a new
    /// EventSource itself; a reconnecting one sends Last-Event-ID).
    #[serde(default)]
    after: u64,
}

/// Counts the connection while the stream lives.
struct Connected;

impl Connected {
    fn new() -> Self {
        metrics::gauge!(LIVE_CONNECTIONS).increment(1.0);
        Connected
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!(LIVE_CONNECTIONS).decrement(1.0);
    }
}

pub async fn feed(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> Response {
    let last_seen = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let after = last_seen.unwrap_or(0).max(query.after);
    let lang = session.lang;
    let request = query_api::WatchCasesRequest { township: query.township, after_sequence: after };
    let mut client = state.upstream.query.clone();
    let retry =
        futures::stream::once(async { Ok::<_, Infallible>(Event::default().retry(RECONNECT).comment("gridcase")) });
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        match client.watch_cases(as_user(&session.token, request)).await {
            Ok(watch) => {
                let connected = Connected::new();
                let changes = watch.into_inner().map(move |change| {
                    let _still = &connected;
                    Ok(match change {
                        Ok(change) => {
                            metrics::counter!(EVENTS_RELAYED).increment(1);
                            Event::default().id(change.stream_sequence.to_string()).event("change").data(
                                serde_json::json!({
                                    "case_id": change.case_id,
                                    "event_type": change.event_type,
                                    "words": lang.event(&change.event_type),
                                    "case_version": change.case_version,
                                    "occurred_at": time(change.occurred_at.as_ref()),
                                    "actor": lang.role(&change.actor_role),
                                    "organisation": change.actor_organisation,
                                    "sequence": change.stream_sequence,
                                })
                                .to_string(),
                            )
                        }
                        Err(status) => ended(status.code()),
                    })
                });
                // A watch ends after its error (tonic ends the stream with
                // the status), and so does this stream: the browser reconnects.
                let ready = futures::stream::once(async { Ok(Event::default().event("ready").data("watching")) });
                Box::pin(retry.chain(ready).chain(changes))
            }
            Err(status) => Box::pin(retry.chain(futures::stream::once(async move { Ok(ended(status.code())) }))),
        };
    let stopping = state.shutdown.clone();
    let events = events.take_until(async move { stopping.requested().await });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// The last event of a feed whose watch ended: `signin` when the session
/// expired (the page goes to sign in), else `end` (the browser reconnects
/// after the last id it saw).
fn ended(code: Code) -> Event {
    let kind = if code == Code::Unauthenticated { "signin" } else { "end" };
    Event::default().event(kind).data(format!("{code:?}"))
}
