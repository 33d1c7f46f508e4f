//! Committing the dispatcher's steps: who, when and under which id each is
//! recorded, and the commit itself, each step with a span continuing the
//! trace of the event that led to it.

use std::sync::Arc;

use gridcase_domain::ActorRole;
use gridcase_envelope::schema::Actor;
use gridcase_eventlog::store::{CaseStore, CommitError, Committed, Provenance};
use jiff::Timestamp;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::core::Action;
use crate::schedule::StepCommit;

/// The namespace of the dispatcher's deterministic event ids.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b9c_2f1e_4a3d_5c7b_8e9f_0a1b_2c3d_4e5f);

fn actor() -> Actor {
    Actor { person: "gridcase-dispatcher".into(), role: ActorRole::System, organisation: "gridcase".into() }
}

/// Who, when and under which id a step is recorded: the id derives from the
/// step's key, so the same step taken twice (a restart, a second instance)
/// is one event.
pub fn step_provenance(action: &Action, now: Timestamp) -> Provenance {
    Provenance {
        event_id: Uuid::new_v5(&EVENT_ID_NAMESPACE, action.key.as_bytes()),
        occurred_at: now,
        actor: actor(),
        command_id: None,
    }
}

/// A commit's steps and the log's answer.
pub type Done = (StepCommit, Result<Vec<Committed>, CommitError>);
pub type Commit = std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send>>;

/// Commit one case's steps as one atomic chain, each with its span
/// continuing the trace of the event that led to it (`parent`).
pub fn commit(
    store: Arc<CaseStore>,
    steps: StepCommit,
    parent: Option<opentelemetry::Context>,
    now: Timestamp,
) -> Commit {
    Box::pin(async move {
        let head = &steps.head;
        let spans: Vec<tracing::Span> = steps
            .steps
            .iter()
            .map(|(event, _)| {
                let span = tracing::info_span!(
                    "dispatcher.step",
                    case_id = %head.case_id,
                    township = %head.subject.township(),
                    step = event.kind(),
                    outcome = tracing::field::Empty,
                    sequence = tracing::field::Empty,
                );
                if let Some(parent) = &parent {
                    let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent.clone());
                }
                span
            })
            .collect();
        let provenance = steps.steps.iter().map(|(event, action)| (event, step_provenance(action, now))).collect();
        let result = store.commit_chain(head, provenance).instrument(spans[0].clone()).await;
        for (index, span) in spans.iter().enumerate() {
            match &result {
                Ok(committed) => {
                    span.record("outcome", committed[index].outcome());
                    if let Committed::Stored(positioned) = &committed[index] {
                        span.record("sequence", positioned.stream_sequence);
                    }
                }
                Err(error) => {
                    span.record("outcome", gridcase_eventlog::store::error_outcome(error));
                }
            }
        }
        (steps, result)
    })
}
