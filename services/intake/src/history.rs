//! A case's history as `GetHistory` shows it: each stored event as people
//! read it, never the sealed form of a resident's details.

use gridcase_domain::Event;
use gridcase_envelope::{DecodeError, Positioned};
use gridcase_grpc::status;
use gridcase_proto::cases::v1 as api;
use gridcase_proto::common::v1 as common;
use gridcase_proto::convert;
use tonic::Status;

/// One event as people read it, the resident's contact details shown as
/// `contact` (masked, or erased) wherever the payload holds them. An event
/// of a type this version does not know is shown with its stored type and
/// payload, and no reason or attachments.
pub(crate) fn history_event(
    positioned: &Positioned,
    contact: Option<&serde_json::Value>,
) -> Result<api::HistoryEvent, Status> {
    let stored = &positioned.event;
    let event = match stored.decode() {
        Ok(event) => Some(event),
        Err(DecodeError::UnknownType(_) | DecodeError::UnsupportedVersion { .. }) => None,
        Err(error) => return Err(status::internal(&error)),
    };
    let reason = event.as_ref().and_then(Event::reason);
    let attachments = event.as_ref().map(Event::attachments).unwrap_or_default();
    let mut payload = stored.redacted().payload;
    if let Some(recorded) = payload.get_mut("resident_contact") {
        *recorded = contact.cloned().unwrap_or_else(|| serde_json::json!({ "erased": true }));
    }
    Ok(api::HistoryEvent {
        case_version: stored.case_version,
        event_id: stored.event_id.to_string(),
        r#type: stored.event_type.clone(),
        occurred_at: Some(convert::timestamp_to_proto(stored.occurred_at)),
        actor: Some(api::Actor {
            person: stored.actor.person.clone(),
            role: stored.actor.role.as_str().into(),
            organisation: stored.actor.organisation.clone(),
        }),
        reason: reason.map(|r| r.to_string()).unwrap_or_default(),
        attachments: attachments
            .iter()
            .map(|a| common::AttachmentRef {
                sha256: a.sha256.to_string(),
                size: a.size,
                content_type: a.content_type.clone(),
            })
            .collect(),
        payload_json: serde_json::to_string(&payload).map_err(|e| status::internal(&e))?,
        hash: stored.hash.clone(),
        prev_hash: stored.prev_hash.clone().unwrap_or_default(),
        stream_sequence: positioned.stream_sequence,
    })
}
