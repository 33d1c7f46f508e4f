//! Every stored event is also a CloudEvent in the binary mode of the
//! CloudEvents NATS protocol binding: the attributes travel as `ce-` headers,
//! the message body is the event data (the stored envelope as JSON).

use async_nats::HeaderMap;

use gridcase_envelope::schema::StoredEvent;

pub const SPEC_VERSION: &str = "1.0";
pub const CONTENT_TYPE: &str = "application/json";
/// The CloudEvents `source` of every case event.
pub const SOURCE: &str = "urn:gridcase:cases";

/// The CloudEvents `type` of a stored event type, reverse-DNS and versioned:
/// `cn.gridcase.case.filed.v1`.
pub fn ce_type(stored: &StoredEvent) -> String {
    format!("cn.gridcase.case.{}.v{}", stored.event_type, stored.schema_version)
}

/// The headers for a stored event: the CloudEvents attributes plus gridcase's
/// own extensions (`ce-caseversion`, `ce-hash`).
pub fn headers(stored: &StoredEvent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("ce-specversion", SPEC_VERSION);
    headers.insert("ce-id", stored.event_id.to_string().as_str());
    headers.insert("ce-source", SOURCE);
    headers.insert("ce-type", ce_type(stored).as_str());
    headers.insert("ce-subject", stored.case_id.to_string().as_str());
    headers.insert("ce-time", stored.occurred_at.to_string().as_str());
    headers.insert("content-type", CONTENT_TYPE);
    headers.insert("ce-caseversion", stored.case_version.to_string().as_str());
    headers.insert("ce-hash", stored.hash.as_str());
    headers
}

/// The `ce-id` header of a message, if it has one.
pub fn event_id(headers: Option<&HeaderMap>) -> Option<String> {
    headers?.get("ce-id").map(|value| value.as_str().to_owned())
}
