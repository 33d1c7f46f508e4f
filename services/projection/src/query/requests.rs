//! The query service's requests off the wire, through the same field checks
//! its handlers make (before the caller's scope and the database): the fuzz
//! target `query_requests`. Each kind decodes one request type.

use gridcase_auth::policy::ListScope;
use gridcase_proto::query::v1 as api;
use jiff::Timestamp;
use prost::Message as _;

use super::export::export_format;
use super::ledger::ledger_params;
use super::sql::{SUMMARY_COLUMNS, filtered_query, list_query};
use super::watch::township_of;
use super::{parse_case_id, report_prefix};

/// A county's scope, the widest one a list is cut to.
fn county() -> ListScope {
    ListScope { region_prefix: Some("990101".into()), ..ListScope::default() }
}

fn list(filter: &api::ListCasesRequest, now: Timestamp) -> bool {
    filtered_query(filter, &county(), now, "count(*)").is_ok()
        && list_query(filter, &county(), now, SUMMARY_COLUMNS).is_ok()
}

/// A wire check: the bytes decoded as one request type, then checked at `now`.
pub type WireCheck = fn(&[u8], Timestamp) -> bool;

/// Every request type of the query service, by its RPC's name, with its
/// wire check: the kinds of the fuzz target `query_requests`, in order.
pub const KINDS: [(&str, WireCheck); 10] = [
    ("GetCase", |b, _| api::GetCaseRequest::decode(b).is_ok_and(|r| parse_case_id(&r.case_id).is_ok())),
    ("GetCaseHistory", |b, _| api::GetCaseHistoryRequest::decode(b).is_ok_and(|r| parse_case_id(&r.case_id).is_ok())),
    ("ListCases", |b, now| api::ListCasesRequest::decode(b).is_ok_and(|r| list(&r, now))),
    ("OverdueReport", |b, _| {
        api::OverdueReportRequest::decode(b).is_ok_and(|r| report_prefix(&r.region_prefix).is_ok())
    }),
    ("Ledger", |b, _| api::LedgerRequest::decode(b).is_ok_and(|r| ledger_params(&r).is_ok())),
    ("ExportCases", |b, now| {
        api::ExportCasesRequest::decode(b)
            .is_ok_and(|r| export_format(r.format).is_ok() && list(&r.filter.unwrap_or_default(), now))
    }),
    ("ExportLedger", |b, _| {
        api::ExportLedgerRequest::decode(b)
            .is_ok_and(|r| export_format(r.format).is_ok() && ledger_params(&r.ledger.unwrap_or_default()).is_ok())
    }),
    ("WatchCases", |b, _| api::WatchCasesRequest::decode(b).is_ok_and(|r| township_of(&r.township).is_ok())),
    ("CountCases", |b, _| api::CountCasesRequest::decode(b).is_ok_and(|r| report_prefix(&r.region_prefix).is_ok())),
    ("GetGridMap", |b, _| api::GetGridMapRequest::decode(b).is_ok_and(|r| report_prefix(&r.region_prefix).is_ok())),
];

/// One request off the wire, of the kind `which` picks among [`KINDS`];
/// whether it passed its checks.
pub fn check_wire(which: u8, bytes: &[u8], now: Timestamp) -> bool {
    (KINDS[usize::from(which) % KINDS.len()].1)(bytes, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_filter_with_times_beyond_any_calendar_is_refused_not_a_panic() {
        let far = prost_types::Timestamp { seconds: i64::MAX, nanos: 0 };
        let filter = api::ListCasesRequest { filed_from: Some(far), ..api::ListCasesRequest::default() };
        let bytes = filter.encode_to_vec();
        let list_cases = KINDS.iter().position(|(name, _)| *name == "ListCases").unwrap() as u8;
        assert!(!check_wire(list_cases, &bytes, Timestamp::UNIX_EPOCH));
        let forged = api::ListCasesRequest {
            page_token: format!("{}:019a0000-0000-7000-8000-000000000001", i64::MAX),
            ..api::ListCasesRequest::default()
        };
        assert!(!check_wire(list_cases, &forged.encode_to_vec(), Timestamp::UNIX_EPOCH), "a forged page token");
    }
}
