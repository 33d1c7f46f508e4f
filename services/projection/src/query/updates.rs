//! What partner systems follow: the changes of their cases in a window
//! (`ListCaseUpdates`, Open311's service request updates), and the public
//! status of cases by id (`GetPublicStatus`, Open311's requests by id).

use gridcase_auth::policy::ListScope;
use gridcase_domain::{CaseId, Clock, State};
use gridcase_grpc::Violations;
use gridcase_proto::convert;
use gridcase_proto::query::v1 as api;
use jiff::{SignedDuration, Timestamp};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use tonic::Status;

use super::db_error;
use super::sql::push_scope;
use crate::columns::{from_micros, micros};

/// The changes a resident may be told of: each moves where the case stands,
/// or when it will be done. Deadlines, warnings, supervision and people's
/// notes are internal and left out. A reply's update reads under the last
/// of these before it.
pub const STATE_EVENTS: [&str; 16] = [
    "filed",
    "registered",
    "voided",
    "dispatched",
    "reassigned",
    "acknowledged",
    "returned",
    "hold_approved",
    "resumed",
    "extension_approved",
    "resolved",
    "verification_passed",
    "verification_failed",
    "reopened",
    "cancelled",
    "merged_into",
];

/// Every event a partner's feed holds: the changes, and an answer given
/// through the partner system (the query keeps those only).
pub fn resident_events() -> Vec<String> {
    STATE_EVENTS.iter().chain(&["replied"]).map(|e| (*e).to_owned()).collect()
}

/// Events whose reason a resident may read.
const REASON_READ_BY_RESIDENTS: [&str; 5] = ["voided", "cancelled", "hold_approved", "replied", "merged_into"];

/// The widest window one request may ask for.
pub const MAX_WINDOW: SignedDuration = SignedDuration::from_hours(31 * 24);

/// Where a page of updates ends: `u:<occurred micros>:<sequence>`.
fn token(occurred: i64, sequence: i64) -> String {
    format!("u:{occurred}:{sequence}")
}

fn parse_token(token: &str) -> Option<(i64, i64)> {
    let (occurred, sequence) = token.strip_prefix("u:")?.split_once(':')?;
    Some((occurred.parse().ok()?, sequence.parse().ok()?))
}

/// The query of a page of updates, after its checks.
pub fn updates_query(
    request: &api::ListCaseUpdatesRequest,
    scope: &ListScope,
) -> Result<(QueryBuilder<Postgres>, i64), Status> {
    let mut v = Violations::new();
    let mut time = |field: &str, at: Option<&prost_types::Timestamp>| match at {
        None => {
            v.add(field, "REQUIRED", "is required");
            None
        }
        Some(at) => match Timestamp::new(at.seconds, at.nanos) {
            Ok(at) => Some(at),
            Err(_) => {
                v.add(field, "OUT_OF_RANGE", "must be a time between the years -9999 and 9999");
                None
            }
        },
    };
    let (from, to) = (time("from", request.from.as_ref()), time("to", request.to.as_ref()));
    if let (Some(from), Some(to)) = (from, to) {
        if to <= from {
            v.add("to", "OUT_OF_RANGE", "must be after from");
        } else if from.duration_until(to) > MAX_WINDOW {
            v.add("to", "OUT_OF_RANGE", "a window is at most 31 days");
        }
    }
    if request.page_size > 1000 {
        v.add("page_size", "OUT_OF_RANGE", "must be 1-1000 (0: 500)");
    }
    let after = match request.page_token.as_str() {
        "" => None,
        text => {
            let parsed = parse_token(text);
            if parsed.is_none() {
                v.add("page_token", "MALFORMED", "is not a token this service returned");
            }
            parsed
        }
    };
    v.into_result()?;
    let (from, to) = (from.expect("checked"), to.expect("checked"));
    let page_size = if request.page_size == 0 { 500 } else { i64::from(request.page_size) };
    let mut builder = QueryBuilder::new(
        "SELECT e.event_id, e.case_id, e.event_type, e.case_version, micros(e.occurred_at), e.stream_sequence, \
         c.category, e.reason, c.reference, \
         CASE e.event_type WHEN 'dispatched' THEN (e.envelope::jsonb) #>> '{payload,unit}' \
                           WHEN 'reassigned' THEN (e.envelope::jsonb) #>> '{payload,to_unit}' END, \
         CASE WHEN e.event_type = 'replied' THEN (SELECT p.event_type FROM case_events p \
              WHERE p.case_id = e.case_id AND p.case_version < e.case_version AND p.event_type = ANY(",
    );
    builder.push_bind(STATE_EVENTS.map(str::to_owned).to_vec());
    builder.push(
        ") ORDER BY p.case_version DESC LIMIT 1) END \
         FROM case_events e JOIN cases c ON c.case_id = e.case_id WHERE e.occurred_at >= ts_from_micros(",
    );
    builder.push_bind(micros(from)).push(") AND e.occurred_at < ts_from_micros(").push_bind(micros(to)).push(")");
    builder.push(" AND e.event_type = ANY(").push_bind(resident_events()).push(")");
    builder.push(" AND (e.event_type <> 'replied' OR (e.envelope::jsonb) #>> '{payload,method}' = 'PARTNER')");
    push_scope(&mut builder, scope);
    if let Some((occurred, sequence)) = after {
        builder
            .push(" AND (e.occurred_at, e.stream_sequence) > (ts_from_micros(")
            .push_bind(occurred)
            .push("), ")
            .push_bind(sequence)
            .push(")");
    }
    builder.push(" ORDER BY e.occurred_at, e.stream_sequence LIMIT ").push_bind(page_size + 1);
    Ok((builder, page_size))
}

pub async fn list_case_updates(
    pool: &PgPool,
    scope: &ListScope,
    request: &api::ListCaseUpdatesRequest,
) -> Result<api::ListCaseUpdatesResponse, Status> {
    let (mut builder, page_size) = updates_query(request, scope)?;
    let rows = builder.build().fetch_all(pool).await.map_err(db_error)?;
    let more = rows.len() as i64 > page_size;
    let rows = &rows[..rows.len().min(page_size as usize)];
    let updates: Vec<api::CaseUpdate> = rows
        .iter()
        .map(|row| {
            let event_type: String = row.get(2);
            let reason = if REASON_READ_BY_RESIDENTS.contains(&event_type.as_str()) {
                row.get::<Option<String>, _>(7).unwrap_or_default()
            } else {
                String::new()
            };
            api::CaseUpdate {
                event_id: row.get::<uuid::Uuid, _>(0).to_string(),
                case_id: row.get::<uuid::Uuid, _>(1).to_string(),
                event_type,
                case_version: row.get::<i64, _>(3) as u64,
                occurred_at: Some(convert::timestamp_to_proto(from_micros(row.get(4)))),
                stream_sequence: row.get::<i64, _>(5) as u64,
                category_code: row.get(6),
                reason,
                unit: row.get::<Option<String>, _>(9).unwrap_or_default(),
                reference: row.get::<Option<String>, _>(8).unwrap_or_default(),
                state_event: row.get::<Option<String>, _>(10).unwrap_or_default(),
            }
        })
        .collect();
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => token(last.get(4), last.get(5)),
        _ => String::new(),
    };
    Ok(api::ListCaseUpdatesResponse { updates, next_page_token })
}

/// The most ids one status request may name.
pub const MAX_STATUS_IDS: usize = 100;

pub async fn public_status(
    pool: &PgPool,
    request: &api::GetPublicStatusRequest,
) -> Result<api::GetPublicStatusResponse, Status> {
    let mut v = Violations::new();
    if request.case_ids.is_empty() {
        v.add("case_ids", "REQUIRED", "name at least one case id");
    }
    if request.case_ids.len() > MAX_STATUS_IDS {
        v.add("case_ids", "TOO_MANY", format!("at most {MAX_STATUS_IDS} ids, got {}", request.case_ids.len()));
    }
    let ids: Vec<uuid::Uuid> = request
        .case_ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| match CaseId::parse(id.trim()) {
            Ok(id) => Some(*id.as_uuid()),
            Err(e) => {
                v.add(format!("case_ids[{i}]"), "MALFORMED", e.to_string());
                None
            }
        })
        .collect();
    v.into_result()?;
    let rows = sqlx::query(
        "SELECT case_id, state, category, micros(filed_at), micros(updated_at), micros(resolve_due) \
         FROM cases WHERE case_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    let mut statuses: Vec<api::PublicStatus> = rows
        .iter()
        .map(|row| {
            let state = State::from_name(row.get(1)).unwrap_or(State::Reported);
            let due = row.get::<Option<i64>, _>(5).map(from_micros).filter(|_| Clock::Resolve.runs_in(state));
            api::PublicStatus {
                case_id: row.get::<uuid::Uuid, _>(0).to_string(),
                state: convert::state_to_proto(state) as i32,
                category_code: row.get(2),
                filed_at: Some(convert::timestamp_to_proto(from_micros(row.get(3)))),
                updated_at: Some(convert::timestamp_to_proto(from_micros(row.get(4)))),
                expected_at: due.map(convert::timestamp_to_proto),
            }
        })
        .collect();
    // In the order asked.
    statuses.sort_by_key(|s| request.case_ids.iter().position(|id| id.trim() == s.case_id));
    Ok(api::GetPublicStatusResponse { statuses })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_read_back() {
        assert_eq!(parse_token(&token(1_700_000_000_000_000, 42)), Some((1_700_000_000_000_000, 42)));
        for bad in ["", "u:", "u:1", "x:1:2", "u:a:2"] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_window_is_checked_field_by_field() {
        let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
        let scope = ListScope::default();
        let check = |request: api::ListCaseUpdatesRequest| match updates_query(&request, &scope) {
            Ok(_) => vec![],
            Err(status) => {
                use tonic_types::StatusExt as _;
                status.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect()
            }
        };
        assert_eq!(check(api::ListCaseUpdatesRequest::default()), ["from", "to"]);
        let request = api::ListCaseUpdatesRequest { from: at(100), to: at(100), ..Default::default() };
        assert_eq!(check(request), ["to"]);
        let request = api::ListCaseUpdatesRequest { from: at(0), to: at(32 * 86_400), ..Default::default() };
        assert_eq!(check(request), ["to"]);
        let request =
            api::ListCaseUpdatesRequest { from: at(0), to: at(7_200), page_token: "x".into(), ..Default::default() };
        assert_eq!(check(request), ["page_token"]);
        let request = api::ListCaseUpdatesRequest { from: at(0), to: at(7_200), ..Default::default() };
        assert!(check(request).is_empty());
    }
}
