//! `IntakeService.SyncCases`: a day's filings and notes made offline, in one
//! call. Each item goes through the very handler its single call has
//! (`FileCase`, `CaseService.AddProgress`: the same checks, authorisation,
//! idempotency and answers), as the same caller; items of one case one
//! after another in the order sent, different cases side by side, so their
//! appends meet in the group commit as concurrent single calls would.

use std::collections::HashMap;

use futures::StreamExt as _;
use gridcase_auth::Operation;
use gridcase_auth::policy::Target;
use gridcase_grpc::{Access, Violations};
use gridcase_proto::cases::v1::case_service_server::CaseService as _;
use gridcase_proto::intake::v1::intake_service_server::IntakeService as _;
use gridcase_proto::intake::v1::{self as api, sync_item::Item};
use tonic::{Request, Status};
use tonic_types::StatusExt as _;

use crate::IntakeApi;

/// Cases carried out side by side within one call.
const CASES_AT_ONCE: usize = 64;

/// The same caller, asking for `operation`: refused as the gRPC layer
/// would refuse the single call if the role may never do it.
fn as_single<T>(access: &Access, operation: Operation, message: T) -> Result<Request<T>, Status> {
    let access = Access { operation, ..access.clone() };
    access.check(Target::Service)?;
    let mut request = Request::new(message);
    request.extensions_mut().insert(access);
    Ok(request)
}

fn refusal(status: &Status) -> api::ItemRefusal {
    let field_violations = status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| api::FieldViolation { field: v.field, reason: v.reason, description: v.description })
                .collect()
        })
        .unwrap_or_default();
    api::ItemRefusal { code: status.code() as i32, message: status.message().to_owned(), field_violations }
}

fn refused(index: u32, case_id: String, status: &Status) -> api::SyncItemResult {
    api::SyncItemResult {
        index,
        outcome: api::SyncOutcome::Refused as i32,
        case_id,
        stream_sequence: 0,
        recorded_at: None,
        refusal: Some(refusal(status)),
    }
}

fn outcome(replayed: bool) -> i32 {
    (if replayed { api::SyncOutcome::Replayed } else { api::SyncOutcome::Stored }) as i32
}

/// Which case an item is about, to keep each case's items in order. A
/// filing under a client reference is keyed by it (its id is derived);
/// an item naming no case is a case of its own (it will be refused).
fn case_key(index: usize, item: &api::SyncItem) -> String {
    match &item.item {
        Some(Item::File(file)) if !file.case_id.is_empty() => file.case_id.to_ascii_lowercase(),
        Some(Item::File(file)) if !file.client_reference.is_empty() => format!("reference:{}", file.client_reference),
        Some(Item::Note(note)) => match &note.context {
            Some(context) if !context.case_id.is_empty() => context.case_id.to_ascii_lowercase(),
            _ => format!("item:{index}"),
        },
        _ => format!("item:{index}"),
    }
}

impl IntakeApi {
    async fn sync_item(&self, access: &Access, index: u32, item: api::SyncItem) -> api::SyncItemResult {
        match item.item {
            Some(Item::File(file)) => {
                let case_id = file.case_id.clone();
                let answer = match as_single(access, Operation::FileCase, file) {
                    Ok(request) => self.file_case(request).await,
                    Err(status) => Err(status),
                };
                match answer {
                    Ok(receipt) => {
                        let receipt = receipt.into_inner();
                        api::SyncItemResult {
                            index,
                            outcome: outcome(receipt.replayed),
                            case_id: receipt.case_id,
                            stream_sequence: receipt.stream_sequence,
                            recorded_at: receipt.recorded_at,
                            refusal: None,
                        }
                    }
                    Err(status) => refused(index, case_id, &status),
                }
            }
            Some(Item::Note(note)) => {
                let case_id = note.context.as_ref().map(|c| c.case_id.clone()).unwrap_or_default();
                let answer = match as_single(access, Operation::AddProgress, note) {
                    Ok(request) => self.cases.add_progress(request).await,
                    Err(status) => Err(status),
                };
                match answer {
                    Ok(result) => {
                        let result = result.into_inner();
                        api::SyncItemResult {
                            index,
                            outcome: outcome(result.replayed),
                            case_id: result.case_id,
                            stream_sequence: result.stream_sequence,
                            recorded_at: result.recorded_at,
                            refusal: None,
                        }
                    }
                    Err(status) => refused(index, case_id, &status),
                }
            }
            None => refused(
                index,
                String::new(),
                &Violations::one(format!("items[{index}]"), "REQUIRED", "is empty: an item is a filing or a note"),
            ),
        }
    }

    pub(crate) async fn sync(
        &self,
        access: &Access,
        request: api::SyncCasesRequest,
    ) -> Result<api::SyncCasesResponse, Status> {
        let count = request.items.len();
        if count == 0 {
            return Err(Violations::one("items", "REQUIRED", "is empty: send at least one filing or note"));
        }
        if count > self.sync_max_items {
            return Err(Violations::one(
                "items",
                "TOO_MANY",
                format!("holds {count} items; send at most {} per call", self.sync_max_items),
            ));
        }
        // Each case's items in the order sent; the cases in the order first named.
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<(u32, api::SyncItem)>> = HashMap::new();
        for (index, item) in request.items.into_iter().enumerate() {
            let key = case_key(index, &item);
            let group = groups.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                Vec::new()
            });
            group.push((index as u32, item));
        }
        let groups: Vec<Vec<(u32, api::SyncItem)>> =
            order.into_iter().map(|key| groups.remove(&key).expect("every key has its group")).collect();
        let mut results: Vec<api::SyncItemResult> = futures::stream::iter(groups)
            .map(|group| async move {
                let mut answered = Vec::with_capacity(group.len());
                for (index, item) in group {
                    answered.push(self.sync_item(access, index, item).await);
                }
                answered
            })
            .buffer_unordered(CASES_AT_ONCE)
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        results.sort_by_key(|result| result.index);
        Ok(api::SyncCasesResponse { results })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridcase_proto::cases::v1 as cases;

    fn note(case_id: &str) -> api::SyncItem {
        api::SyncItem {
            item: Some(Item::Note(cases::AddProgressRequest {
                context: Some(cases::CommandContext { case_id: case_id.into(), ..Default::default() }),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn items_are_grouped_by_the_case_they_name() {
        let filing = |case_id: &str, reference: &str| api::SyncItem {
            item: Some(Item::File(api::FileCaseRequest {
                case_id: case_id.into(),
                client_reference: reference.into(),
                ..Default::default()
            })),
        };
        assert_eq!(case_key(0, &filing("0190ABCD", "")), "0190abcd");
        assert_eq!(case_key(1, &note("0190abcd")), "0190abcd", "a note joins its case's filing");
        assert_eq!(case_key(2, &filing("", "R-1")), "reference:R-1");
        assert_eq!(case_key(3, &filing("", "")), "item:3");
        assert_eq!(case_key(4, &note("")), "item:4");
        assert_eq!(case_key(5, &api::SyncItem { item: None }), "item:5");
    }
}
