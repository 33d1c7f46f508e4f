//! Reads that do not lie (issue 30): a query process cut off from the log's
//! leader (the minority side of a partition, seen from inside) answers
//! from its read models, but every answer says where they stand; a caller
//! that has seen a later position, or allows at most so much staleness, is
//! refused rather than shown old state as current.

use std::sync::Arc;

use gridcase_process::{ManualTimeSource, TimeSource as _};
use gridcase_projection::freshness::{
    CURRENT_AS_OF_HEADER, LOG_END_HEADER, MAX_STALENESS_HEADER, MIN_POSITION_HEADER, POSITION_HEADER,
};
use gridcase_proto::query::v1 as api;
use gridcase_tests::{Backends, Identity, TestProjection, eventually, given, query_client, stream_end};
use jiff::{SignedDuration, Timestamp};
use tonic_types::StatusExt as _;

fn counts_request(max_staleness: Option<&str>) -> tonic::Request<api::CountCasesRequest> {
    let mut request = tonic::Request::new(api::CountCasesRequest { region_prefix: String::new() });
    if let Some(seconds) = max_staleness {
        request.metadata_mut().insert(MAX_STALENESS_HEADER, seconds.parse().unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_service_cut_off_from_the_log_says_how_old_its_answers_are_and_refuses_staler_than_asked() {
    let Backends { mut nats, db, log } = Backends::start().await;
    let now: Timestamp = "2026-05-06T01:00:00Z".parse().unwrap();
    given(&log, "990101001001001").filed("0101").await.registered().await;
    let end = stream_end(&nats).await;
    let clock = Arc::new(ManualTimeSource::new(now));
    let projection = TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), clock.clone()).await;
    projection.caught_up_to(end).await;
    let auditor = Identity::new("audit-01", "county_auditor", "county-990101", "990101");
    let mut client = query_client(projection.endpoint(), &auditor).await;

    // In touch with the log: the answer says the read models are at its end, now.
    eventually("an answer seen current at the log's end", || {
        let mut client = client.clone();
        async move {
            client.count_cases(counts_request(Some("30"))).await.is_ok_and(|response| {
                response.metadata().get(LOG_END_HEADER).is_some_and(|v| v.to_str().unwrap() == end.to_string())
            })
        }
    })
    .await;
    let response = client.count_cases(counts_request(Some("30"))).await.unwrap();
    let metadata = response.metadata();
    assert_eq!(metadata.get(POSITION_HEADER).unwrap().to_str().unwrap(), end.to_string());
    assert_eq!(metadata.get(CURRENT_AS_OF_HEADER).unwrap().to_str().unwrap(), now.to_string());

    // A reader who has seen a later position (its own acknowledgement, a
    // watched change) is refused rather than shown the older state.
    let mut request = counts_request(None);
    request.metadata_mut().insert(MIN_POSITION_HEADER, (end + 1).to_string().parse().unwrap());
    let behind = client.count_cases(request).await.unwrap_err();
    assert_eq!(behind.code(), tonic::Code::Unavailable);
    assert_eq!(behind.get_details_error_info().expect("ErrorInfo").reason, "READ_MODELS_BEHIND");
    let mut request = counts_request(None);
    request.metadata_mut().insert(MIN_POSITION_HEADER, end.to_string().parse().unwrap());
    assert!(client.count_cases(request).await.is_ok(), "at the position asked for: answered");

    // The log's leader gone from this process's sight; a minute passes.
    nats.kill();
    eventually("a read allowed 30 s of staleness refused", || {
        clock.advance(SignedDuration::from_secs(60));
        let mut client = client.clone();
        async move {
            match client.count_cases(counts_request(Some("30"))).await {
                Ok(_) => false,
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                    let info = status.get_details_error_info().expect("ErrorInfo");
                    assert_eq!(info.reason, "READ_MODELS_STALE");
                    assert_eq!(info.metadata.get("position"), Some(&end.to_string()));
                    assert_eq!(info.metadata.get("log_end"), Some(&end.to_string()));
                    assert!(status.message().contains("last seen current"), "{}", status.message());
                    true
                }
            }
        }
    })
    .await;

    // Without a limit it is answered, from the read models, saying how old they are.
    let response = client.count_cases(counts_request(None)).await.unwrap();
    assert_eq!(response.get_ref().open, 1);
    let as_of: Timestamp = response.metadata().get(CURRENT_AS_OF_HEADER).unwrap().to_str().unwrap().parse().unwrap();
    assert!(clock.now().duration_since(as_of) >= SignedDuration::from_secs(60), "{as_of} is a minute old at least");
    // A malformed limit is no limit (the header is advice, not a field).
    assert!(client.count_cases(counts_request(Some("soon"))).await.is_ok());
    projection.stop().await.unwrap();
}
