//! One filed case is one trace: the gRPC call and the filing in intake, the
//! dispatcher's register and dispatch steps, and the projection's writes,
//! connected through the W3C trace context in the NATS headers of each
//! appended event. Its own test binary: the tracing subscriber (with an
//! in-memory span exporter) is process-wide.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use gridcase_domain::CaseId;
use gridcase_process::{LogFormat, ManualTimeSource};
use gridcase_proto::intake::v1 as api;
use gridcase_tests::fixtures::{as_worker, filing_at, intake_client};
use gridcase_tests::{NatsServer, TestDatabase, TestDispatcher, TestIntake, TestProjection, stream_end};
use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

const PHONE: &str = "13812345678";
const NAME: &str = "王小明";

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_filed_case_is_one_trace_through_intake_the_dispatcher_and_the_projection() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_resource(gridcase_process::telemetry::resource("gridcase-tests"))
        .build();
    let _telemetry = gridcase_process::telemetry::install(LogFormat::Text, "warn", Some(provider.clone()));

    let nats = NatsServer::start();
    let db = TestDatabase::create().await;
    let now: jiff::Timestamp = "2026-03-09T01:00:00Z".parse().unwrap();
    let clock = ManualTimeSource::new(now);
    let intake = TestIntake::spawn_with(TestIntake::config(&nats.url()), Arc::new(clock.clone())).await;
    let mut dispatcher = TestDispatcher::spawn_with(TestDispatcher::config(&nats.url()), Arc::new(clock.clone())).await;
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(clock.clone())).await;

    let case_id = CaseId::new_v7();
    let mut request = filing_at(case_id, "0101", now);
    request.resident_contact =
        Some(api::ResidentContact { name: NAME.into(), phone: PHONE.into(), ..Default::default() });
    intake_client(intake.endpoint()).await.file_case(as_worker(request)).await.unwrap();
    dispatcher.settled_at(now, &nats).await;
    let end = stream_end(&nats).await;
    assert_eq!(end, 3, "filed, registered, dispatched");
    projection.caught_up_to(end).await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let case = case_id.to_string();
    let of_case: Vec<&SpanData> = spans.iter().filter(|s| attribute(s, "case_id").as_deref() == Some(&case)).collect();
    let traces: HashSet<TraceId> = of_case.iter().map(|s| s.span_context.trace_id()).collect();
    assert_eq!(traces.len(), 1, "every span of the case in one trace: {of_case:#?}");
    let trace = *traces.iter().next().unwrap();
    let in_trace: Vec<&SpanData> = spans.iter().filter(|s| s.span_context.trace_id() == trace).collect();
    let seen: BTreeSet<(String, String)> = in_trace
        .iter()
        .map(|s| {
            let what = attribute(s, "event_type").or_else(|| attribute(s, "step")).or_else(|| attribute(s, "path"));
            (s.name.to_string(), what.unwrap_or_default())
        })
        .collect();
    for expected in [
        ("grpc", "/gridcase.intake.v1.IntakeService/FileCase"),
        ("file_case", ""),
        ("eventlog.append", "filed"),
        ("dispatcher.step", "registered"),
        ("eventlog.append", "registered"),
        ("dispatcher.step", "dispatched"),
        ("eventlog.append", "dispatched"),
        ("projection.apply", "filed"),
        ("projection.apply", "registered"),
        ("projection.apply", "dispatched"),
    ] {
        assert!(
            seen.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} is not in the trace: {seen:#?}"
        );
    }
    for applied in in_trace.iter().filter(|s| s.name == "projection.apply") {
        assert_eq!(attribute(applied, "township").as_deref(), Some("990101001"), "{applied:?}");
    }
    // The appends say what became of them.
    for append in in_trace.iter().filter(|s| s.name == "eventlog.append") {
        assert_eq!(attribute(append, "outcome").as_deref(), Some("stored"), "{append:?}");
        assert!(
            attribute(append, "sequence").is_some() && attribute(append, "township").as_deref() == Some("990101001")
        );
    }

    // No span, attribute or span event carries the resident's contact details.
    for span in &spans {
        let mut texts: Vec<String> = span.attributes.iter().map(|kv| kv.value.as_str().into_owned()).collect();
        texts.push(span.name.to_string());
        for event in span.events.iter() {
            texts.push(event.name.to_string());
            texts.extend(event.attributes.iter().map(|kv| kv.value.as_str().into_owned()));
        }
        for text in texts {
            assert!(!text.contains(PHONE) && !text.contains(NAME), "{} carries contact details: {text}", span.name);
        }
    }
    projection.stop().await.unwrap();
    dispatcher.stop().await.unwrap();
    intake.stop().await.unwrap();
}
