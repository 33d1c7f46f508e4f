//! The dispatcher's metrics endpoint. Its own test binary: the metrics
//! recorder is process-wide, so no other test may share the process.

use std::collections::BTreeMap;
use std::sync::Arc;

use gridcase_domain::CaseId;
use gridcase_eventlog::{EventLog, StreamSettings};
use gridcase_process::ManualTimeSource;
use gridcase_tests::fixtures::{as_worker, filing_at, intake_client};
use gridcase_tests::{NatsServer, TestDispatcher, TestIntake, act};

const GRID: &str = "990101001001001";

use gridcase_tests::scrape_metrics as scrape;

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_exported_at_zero_and_racing_instances_count_only_the_steps_they_stored() {
    let nats = NatsServer::start();
    let clock = ManualTimeSource::new("2026-03-09T01:00:00Z".parse().unwrap());
    let intake = TestIntake::spawn_with(TestIntake::config(&nats.url()), Arc::new(clock.clone())).await;
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();

    // The instance with the endpoint installs the process-wide recorder
    // first; the second serves no endpoint but counts into the same
    // recorder: the figures are the two instances' sums.
    let metrics_addr = free_port();
    let mut with_metrics = TestDispatcher::config(&nats.url());
    with_metrics.no_metrics = false;
    with_metrics.metrics_addr = metrics_addr;
    let mut a = TestDispatcher::spawn_with(with_metrics, Arc::new(clock.clone())).await;
    gridcase_tests::eventually("the metrics endpoint to answer", || async { scrape(metrics_addr).await.is_some() })
        .await;
    let first = scrape(metrics_addr).await.expect("the metrics endpoint answers");
    // Every documented metric is there from the start, before it ever moved.
    for name in [
        "gridcase_dispatcher_conflicts_total",
        "gridcase_dispatcher_pending_messages",
        "gridcase_dispatcher_skipped_events_total",
        "gridcase_deadlines_fallback_total",
        "gridcase_calendar_missing",
    ] {
        assert!(first.keys().any(|k| k == name), "{name} missing from {first:?}");
    }
    for step in ["registered", "dispatched", "deadline_set", "clock_marked", "supervised", "progress_added"] {
        let key = format!("gridcase_dispatcher_steps_total{{step=\"{step}\"}}");
        assert_eq!(first.get(&key), Some(&0.0), "{key} at zero from the start: {first:?}");
    }
    let now = gridcase_process::TimeSource::now(&clock);
    let mut b = TestDispatcher::spawn_with(TestDispatcher::config(&nats.url()), Arc::new(clock.clone())).await;
    b.settled_at(now, &nats).await;

    // Forty cases filed at once: both instances see each and race for its steps.
    let filings = (0..40).map(|i| {
        let endpoint = intake.endpoint();
        async move {
            let case_id = CaseId::new_v7();
            let category = if i % 2 == 0 { "0101" } else { "0202" };
            let mut client = intake_client(endpoint).await;
            client.file_case(as_worker(filing_at(case_id, category, now))).await.unwrap();
            act::subject(GRID, case_id)
        }
    });
    let subjects = futures::future::join_all(filings).await;
    a.settled_at(now, &nats).await;
    b.settled_at(now, &nats).await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();

    // What the dispatchers stored, counted in the log…
    let mut stored = 0;
    for subject in &subjects {
        let events = act::events(&log, subject).await;
        assert!(events.iter().any(|(_, e)| e.kind() == "dispatched"), "every case was dispatched");
        stored += events.iter().filter(|(event, _)| event.actor.person == "gridcase-dispatcher").count();
    }
    // …equals the steps the two instances counted as their own: a step the
    // other instance stored first is a lost race, not a step.
    let page = scrape_after_stop(&first, metrics_addr).await;
    let counted: f64 =
        page.iter().filter(|(k, _)| k.starts_with("gridcase_dispatcher_steps_total{")).map(|(_, v)| v).sum();
    let conflicts = page["gridcase_dispatcher_conflicts_total"];
    eprintln!("dispatcher steps stored {stored}, counted {counted}, races lost {conflicts}");
    assert_eq!(counted as usize, stored, "steps counted vs stored; conflicts {conflicts}; {page:?}");
    assert!(conflicts > 0.0, "two instances on the same cases race at least once; {page:?}");
}

/// The endpoint outlives the dispatcher (the exporter is process-wide): scrape it again.
async fn scrape_after_stop(first: &BTreeMap<String, f64>, addr: std::net::SocketAddr) -> BTreeMap<String, f64> {
    scrape(addr).await.unwrap_or_else(|| panic!("the metrics endpoint went away; first page {first:?}"))
}
