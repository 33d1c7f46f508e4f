//! A resident's phone number and name, followed through every output
//! channel of a full scenario (intake, dispatcher, projection, real NATS and
//! PostgreSQL): in full only where a role that calls back reads the case,
//! masked everywhere else, and never in the logs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gridcase_domain::CaseId;
use gridcase_process::SystemTimeSource;
use gridcase_proto::cases::v1 as cases_api;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as intake_api;
use gridcase_proto::query::v1 as query_api;
use gridcase_tests::fixtures::{filing, intake_client};
use gridcase_tests::identity::fixmystreet;
use gridcase_tests::lifecycle::{self, context};
use gridcase_tests::open311::TestOpen311;
use gridcase_tests::{
    Identity, NatsServer, TestDatabase, TestDispatcher, TestIntake, TestProjection, query_client, stream_end,
};
use sqlx::Row;

const PHONE: &str = "13812345678";
const MASKED: &str = "138****5678";
const NAME: &str = "王秀英";
const EMAIL: &str = "wang.xiuying@example.org";

/// Every log line of this test process, as the services wrote them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// No full phone number nor name in `text`, whatever channel it came from.
fn assert_no_personal_data(channel: &str, text: &str) {
    assert!(!text.contains(PHONE), "{channel} shows the full phone number: {text}");
    assert!(!text.contains(NAME), "{channel} shows the resident's name: {text}");
    assert!(!text.contains(EMAIL), "{channel} shows the resident's e-mail address: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_residents_contact_details_are_masked_in_every_channel_and_never_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter("debug,gridcase=trace")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber of this test process");

    let nats = NatsServer::start();
    let db = TestDatabase::create().await;
    let intake = TestIntake::spawn(&nats.url()).await;
    let dispatcher = TestDispatcher::spawn_with(TestDispatcher::config(&nats.url()), Arc::new(SystemTimeSource)).await;
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(SystemTimeSource)).await;

    let worker = Identity::new("gw-0042", "grid_worker", "cc-990101001", "990101001001001");
    let centre = Identity::new("cc-op-1", "command_centre", "cc-990101001", "990101001");
    let unit = Identity::new("wy-07", "handling_unit", "unit.property.990101001", "unit.property.990101001");
    let county = Identity::new("audit-1", "county_auditor", "co-990101", "990101");
    let leader = Identity::new("gl-0001", "grid_leader", "cc-990101001", "990101001001001");
    let mut query = query_client(projection.endpoint(), &centre).await;
    let mut county_query = query_client(projection.endpoint(), &county).await;

    // The centre's wall screen is on before anything happens.
    let mut watch = query
        .watch_cases(query_api::WatchCasesRequest { township: "990101001".into(), after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();

    // A report with the resident's details; and one whose phone is malformed
    // around the real number (the refusal must not echo it into the logs).
    let mut intake_client = intake_client(intake.endpoint()).await;
    let contact = |phone: &str| {
        Some(intake_api::ResidentContact { name: NAME.into(), phone: phone.into(), ..Default::default() })
    };
    let bad =
        intake_api::FileCaseRequest { resident_contact: contact(&format!("{PHONE}999")), ..filing(CaseId::new_v7()) };
    let refused = intake_client.file_case(worker.request(bad)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_no_personal_data("the refusal of a malformed phone", &format!("{refused:?}"));
    let case_id = CaseId::new_v7();
    let report = intake_api::FileCaseRequest {
        category_code: "0204".into(),
        resident_contact: contact(PHONE),
        ..filing(case_id)
    };
    intake_client.file_case(worker.request(report)).await.unwrap();

    // The dispatcher registers and dispatches it by policy; the unit works it, the centre closes it.
    let mut cases = lifecycle::client(intake.endpoint()).await;
    let get = |who: &Identity| cases_api::GetCaseRequest { case_id: case_id.to_string() }.with(who);
    gridcase_tests::eventually("the case to be dispatched by policy", || {
        let (mut cases, request) = (cases.clone(), get(&centre));
        async move { cases.get_case(request).await.unwrap().into_inner().state == common::CaseState::Dispatched as i32 }
    })
    .await;
    cases.acknowledge(unit.request(cases_api::AcknowledgeRequest { context: context(case_id) })).await.unwrap();
    cases
        .resolve(unit.request(cases_api::ResolveRequest {
            context: context(case_id),
            summary: "已联系居民, 已修复".into(),
            evidence: vec![],
        }))
        .await
        .unwrap();
    cases
        .verify(centre.request(cases_api::VerifyRequest {
            context: context(case_id),
            passed: true,
            reason: String::new(),
        }))
        .await
        .unwrap();
    projection.caught_up_to(stream_end(&nats).await).await;

    // In full for those who call the resident back, masked for the county.
    for who in [&worker, &leader, &unit, &centre] {
        let contact = cases.get_case(get(who)).await.unwrap().into_inner().resident_contact.unwrap();
        assert_eq!((contact.phone.as_str(), contact.name.as_str(), contact.masked), (PHONE, NAME, false), "{who:?}");
    }
    let audit_view = cases.get_case(get(&county)).await.unwrap().into_inner();
    let contact = audit_view.resident_contact.clone().unwrap();
    assert_eq!((contact.phone.as_str(), contact.masked), (MASKED, true));
    assert_no_personal_data("the county's GetCase", &format!("{audit_view:?}"));

    // A history is an audit view: masked for everyone, the centre included.
    let history = cases
        .get_history(cases_api::GetHistoryRequest { case_id: case_id.to_string() }.with(&centre))
        .await
        .unwrap()
        .into_inner();
    // The filing shows the contact masked, never its sealed form.
    let filed: serde_json::Value = serde_json::from_str(&history.events[0].payload_json).unwrap();
    let shown = &filed["resident_contact"];
    assert_eq!(shown["phone"], MASKED, "{filed}");
    assert!(shown["name"].as_str().is_some_and(|name| name.starts_with('王') && name.contains('*')), "{filed}");
    assert!(!history.events[0].payload_json.contains("ciphertext"), "{filed}");
    assert_no_personal_data("GetHistory", &format!("{history:?}"));

    // The read models: the masked number, nothing more.
    let record = query.get_case(query_api::GetCaseRequest { case_id: case_id.to_string() }).await.unwrap().into_inner();
    assert_eq!(record.contact_phone_masked, MASKED);
    assert_no_personal_data("Query.GetCase", &format!("{record:?}"));
    let record = county_query.get_case(query_api::GetCaseRequest { case_id: case_id.to_string() }).await.unwrap();
    assert_no_personal_data("the county's Query.GetCase", &format!("{record:?}"));
    let audit = county_query
        .get_case_history(query_api::GetCaseHistoryRequest { case_id: case_id.to_string() })
        .await
        .unwrap()
        .into_inner();
    assert!(audit.chain_verified);
    assert_no_personal_data("Query.GetCaseHistory", &format!("{audit:?}"));
    let listed = query.list_cases(query_api::ListCasesRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.cases.len(), 1);
    assert_no_personal_data("ListCases", &format!("{listed:?}"));
    let overdue = county_query.overdue_report(query_api::OverdueReportRequest::default()).await.unwrap();
    assert_no_personal_data("OverdueReport", &format!("{overdue:?}"));

    // Exports and ledgers, in both formats.
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()).date().to_string();
    for format in [query_api::ExportFormat::Csv, query_api::ExportFormat::Xlsx] {
        let filter = query_api::ListCasesRequest::default();
        let cases_export = collect(
            county_query
                .export_cases(query_api::ExportCasesRequest { filter: Some(filter), format: format as i32 })
                .await
                .unwrap()
                .into_inner(),
        )
        .await;
        let ledger = query_api::LedgerRequest {
            org_kind: "worker".into(),
            org: String::new(),
            from_day: today.clone(),
            to_day: today.clone(),
            period: query_api::Period::Day as i32,
        };
        let ledger_rows = query.ledger(ledger.clone()).await.unwrap().into_inner();
        assert_no_personal_data("Ledger", &format!("{ledger_rows:?}"));
        let ledger_export = collect(
            query
                .export_ledger(query_api::ExportLedgerRequest { ledger: Some(ledger), format: format as i32 })
                .await
                .unwrap()
                .into_inner(),
        )
        .await;
        for (name, bytes) in [("ExportCases", cases_export), ("ExportLedger", ledger_export)] {
            let text = match format {
                query_api::ExportFormat::Xlsx => xlsx_text(bytes),
                _ => String::from_utf8(bytes).unwrap(),
            };
            assert!(text.contains(&case_id.to_string()) || name == "ExportLedger", "{name} holds the case: {text}");
            assert_no_personal_data(&format!("{name} {format:?}"), &text);
            if name == "ExportCases" {
                assert!(text.contains("on file"), "the export says details are on file: {text}");
            }
        }
    }

    // The wall screen saw every event of the case, and no contact details.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let change = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap().unwrap().unwrap();
        seen.push(format!("{change:?}"));
    }
    assert!(seen.iter().all(|c| c.contains(&case_id.to_string())), "{seen:?}");
    assert_no_personal_data("WatchCases", &seen.join("\n"));

    // Nowhere in the read-model database.
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'read' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&projection.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert!(tables.len() >= 4, "{tables:?}");
    for table in &tables {
        let rows: Vec<String> =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT to_jsonb(t)::text FROM read.{table} t")))
                .fetch_all(&projection.pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
        assert_no_personal_data(&format!("table read.{table}"), &rows.join("\n"));
    }
    // Sealed details: the read model keeps their ciphertext, no masked copy.
    let sealed_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM read.cases WHERE contact_state = 'given' AND contact_sealed IS NOT NULL",
    )
    .fetch_one(&projection.pool)
    .await
    .unwrap();
    assert_eq!(sealed_rows, 1);

    // Erasure (PIPL): not by a grid worker, not without a reason; by the centre.
    let erase = |reason: &str| cases_api::EraseResidentDataRequest { context: context(case_id), reason: reason.into() };
    let denied = cases.erase_resident_data(worker.request(erase("居民申请"))).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let no_reason = cases.erase_resident_data(centre.request(erase(" "))).await.unwrap_err();
    assert_eq!(no_reason.code(), tonic::Code::InvalidArgument, "{no_reason:?}");
    let erased = cases.erase_resident_data(centre.request(erase("居民申请删除个人信息"))).await.unwrap().into_inner();
    assert_eq!(erased.event_type, "resident_data_erased");
    let again = cases.erase_resident_data(centre.request(cases_api::EraseResidentDataRequest {
        context: Some(cases_api::CommandContext { command_id: "erase-again".into(), ..context(case_id).unwrap() }),
        reason: "再次".into(),
    }));
    let again = again.await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(again.message().contains("RESIDENT_DATA_ALREADY_ERASED"), "{again:?}");

    // Every read shows them erased, for every role; the history still verifies.
    for who in [&worker, &leader, &unit, &centre, &county] {
        let contact = cases.get_case(get(who)).await.unwrap().into_inner().resident_contact.unwrap();
        assert_eq!((contact.phone.as_str(), contact.name.as_str(), contact.erased), ("", "", true), "{who:?}");
    }
    let history = cases
        .get_history(cases_api::GetHistoryRequest { case_id: case_id.to_string() }.with(&county))
        .await
        .unwrap()
        .into_inner();
    assert!(history.chain_verified, "{}", history.chain_problem);
    let last = history.events.last().unwrap();
    assert_eq!(
        (last.r#type.as_str(), last.actor.as_ref().unwrap().person.as_str()),
        ("resident_data_erased", "cc-op-1")
    );
    assert_eq!(last.reason, "居民申请删除个人信息");
    let filed: serde_json::Value = serde_json::from_str(&history.events[0].payload_json).unwrap();
    assert_eq!(filed["resident_contact"], serde_json::json!({ "erased": true }), "{filed}");
    projection.caught_up_to(stream_end(&nats).await).await;
    let record = county_query.get_case(query_api::GetCaseRequest { case_id: case_id.to_string() }).await.unwrap();
    let record = record.into_inner();
    assert_eq!((record.contact_phone_masked.as_str(), record.contact_erased), ("", true));
    let audit = county_query
        .get_case_history(query_api::GetCaseHistoryRequest { case_id: case_id.to_string() })
        .await
        .unwrap()
        .into_inner();
    assert!(audit.chain_verified);
    let (state, sealed): (String, Option<String>) =
        sqlx::query_as("SELECT contact_state, contact_sealed FROM read.cases WHERE case_id = $1")
            .bind(case_id.as_uuid())
            .fetch_one(&projection.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), sealed), ("erased", None));
    // The case export says so.
    let export = county_query
        .export_cases(query_api::ExportCasesRequest {
            filter: Some(query_api::ListCasesRequest::default()),
            format: query_api::ExportFormat::Csv as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let export = String::from_utf8(collect(export).await).unwrap();
    let line = export.lines().find(|line| line.contains(&case_id.to_string())).expect("the case in the export");
    assert!(line.ends_with(",erased"), "{line}");

    // The partners' channel: details a partner sends through Open311 are
    // sealed as intake seals a worker's, shown in full only to those who
    // call back, never in the gateway's answers, and erasable alike.
    let gateway = TestOpen311::spawn(TestOpen311::config(&intake.endpoint(), &projection.endpoint())).await;
    let key = fixmystreet().key;
    let http = reqwest::Client::new();
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("api_key", key.as_str()),
            ("service_code", "0204"),
            ("lat", "30.2741"),
            ("long", "120.1551"),
            ("description", "楼顶漏水，住户请求维修"),
            ("first_name", "王"),
            ("last_name", "秀英"),
            ("email", EMAIL),
            ("phone", PHONE),
            ("attribute[fixmystreet_id]", "pd-1"),
            ("attribute[request_kind]", "HELP"),
        ])
        .finish();
    let filed = http
        .post(format!("{}requests.xml", gateway.base()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(filed.status(), 201);
    let filed = filed.text().await.unwrap();
    assert_no_personal_data("the gateway's answer to a filing", &filed);
    let partner_case: CaseId = filed
        .split("<service_request_id>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .and_then(|id| id.parse().ok())
        .expect("the request's id");
    let get_partner = |who: &Identity| cases_api::GetCaseRequest { case_id: partner_case.to_string() }.with(who);
    gridcase_tests::eventually("the partner's request to be dispatched", || {
        let (mut cases, request) = (cases.clone(), get_partner(&centre));
        async move { cases.get_case(request).await.unwrap().into_inner().state == common::CaseState::Dispatched as i32 }
    })
    .await;
    let contact = cases.get_case(get_partner(&centre)).await.unwrap().into_inner().resident_contact.unwrap();
    assert_eq!((contact.name.as_str(), contact.phone.as_str(), contact.email.as_str()), (NAME, PHONE, EMAIL));
    let contact = cases.get_case(get_partner(&county)).await.unwrap().into_inner().resident_contact.unwrap();
    assert_eq!((contact.phone.as_str(), contact.email.as_str()), (MASKED, "w***@example.org"));
    projection.caught_up_to(stream_end(&nats).await).await;
    let window = format!(
        "start_date={}&end_date={}",
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
        jiff::Timestamp::now() + jiff::SignedDuration::from_mins(1)
    );
    for path in [
        format!("requests/{partner_case}.xml?api_key={key}"),
        format!("requests.json?service_request_id={partner_case}"),
        format!("requests.xml?api_key={key}"),
        format!("servicerequestupdates.xml?api_key={key}&{window}"),
    ] {
        let answer = http.get(format!("{}{path}", gateway.base())).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        let text = answer.text().await.unwrap();
        assert!(text.contains(&partner_case.to_string()), "{path}: {text}");
        assert_no_personal_data(&format!("the gateway's {path}"), &text);
    }
    let erase_partner = cases_api::EraseResidentDataRequest {
        context: context(partner_case),
        reason: "居民通过合作平台申请删除个人信息".into(),
    };
    cases.erase_resident_data(centre.request(erase_partner)).await.unwrap();
    let contact = cases.get_case(get_partner(&centre)).await.unwrap().into_inner().resident_contact.unwrap();
    assert_eq!((contact.email.as_str(), contact.erased), ("", true));
    gateway.stop().await.unwrap();
    projection.caught_up_to(stream_end(&nats).await).await;

    // The key is gone from the key store: the bucket holds only the
    // erasure's marker for the case, and the message that held the key is
    // no longer in the stream.
    let js = async_nats::jetstream::new(nats.client().await);
    let keys_stream = js.get_stream("KV_gridcase-keys").await.unwrap();
    let key_subject = format!("$KV.gridcase-keys.{case_id}");
    let last_key_message = keys_stream.get_last_raw_message_by_subject(&key_subject).await.unwrap();
    let marker = last_key_message.headers.get("KV-Operation").map(|v| v.as_str().to_owned());
    assert_eq!(marker.as_deref(), Some("DEL"), "{last_key_message:?}");
    assert!(keys_stream.get_raw_message(1).await.is_err(), "the key's message is still stored");
    let partner_key = keys_stream.get_last_raw_message_by_subject(&format!("$KV.gridcase-keys.{partner_case}")).await;
    let marker = partner_key.unwrap().headers.get("KV-Operation").map(|v| v.as_str().to_owned());
    assert_eq!(marker.as_deref(), Some("DEL"), "the partner's case's key is erased too");
    // No clear text in any message of the case stream, the attachment
    // stream or the key bucket.
    for stream_name in ["GRIDCASE_CASES", "GRIDCASE_ATTACHMENTS", "KV_gridcase-keys"] {
        let mut stream = js.get_stream(stream_name).await.unwrap();
        let info = stream.info().await.unwrap().clone();
        let mut scanned = 0;
        for sequence in info.state.first_sequence..=info.state.last_sequence {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                assert_no_personal_data(
                    &format!("{stream_name} message {sequence}"),
                    &String::from_utf8_lossy(&message.payload),
                );
                scanned += 1;
            }
        }
        assert!(scanned > 0 || stream_name != "GRIDCASE_CASES", "{stream_name}: nothing scanned");
    }

    projection.stop().await.unwrap();
    dispatcher.stop().await.unwrap();
    intake.stop().await.unwrap();

    // Nor in the dispatcher's snapshot (saved as it stopped).
    let mut objects_scanned = 0;
    for bucket in ["gridcase-dispatcher"] {
        let Ok(store) = js.get_object_store(bucket).await else { continue };
        let mut list = store.list().await.unwrap();
        while let Some(object) = list.next().await {
            let object = object.unwrap();
            if object.deleted {
                continue;
            }
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut store.get(&object.name).await.unwrap(), &mut bytes)
                .await
                .unwrap();
            assert_no_personal_data(&format!("object {bucket}/{}", object.name), &String::from_utf8_lossy(&bytes));
            objects_scanned += 1;
        }
    }
    assert!(objects_scanned > 0, "the dispatcher's snapshot was scanned");

    // A rebuild from the log after the erasure works and ends where the
    // live read models are: the case erased, every ledger the same.
    let admin = gridcase_projection::store::connect(&db.url, "public", 1).await.unwrap();
    let read_models = async || -> Vec<String> {
        let cases = "SELECT concat_ws('|', case_id, state, contact_state, contact_sealed) \
                     FROM read.cases ORDER BY case_id";
        let ledgers = "SELECT row_to_json(l)::text AS j FROM read.ledger_daily l ORDER BY j";
        let mut rows: Vec<String> = sqlx::query_scalar(cases).fetch_all(&admin).await.unwrap();
        rows.extend(sqlx::query_scalar::<_, String>(ledgers).fetch_all(&admin).await.unwrap());
        rows
    };
    let live = read_models().await;
    assert!(live.iter().any(|row| row.contains(&format!("{case_id}|CLOSED|erased"))), "{live:?}");
    let log = gridcase_eventlog::EventLog::open(nats.client().await, gridcase_eventlog::StreamSettings::default())
        .await
        .unwrap();
    let options = gridcase_projection::rebuild::Options::default();
    let built = gridcase_projection::rebuild::build(&db.url, "read_rebuild", &log, &options).await.unwrap();
    built.pool.close().await;
    gridcase_projection::rebuild::swap(&db.url, "read_rebuild", "read").await.unwrap();
    assert_eq!(read_models().await, live, "the rebuilt read models differ from the live ones");
    admin.close().await;

    // Never in the logs, nor the tokens that carried the callers.
    let logged = logs.text();
    assert!(logged.contains(&case_id.to_string()), "the logs did capture the scenario");
    assert!(logged.lines().count() > 50, "{} lines", logged.lines().count());
    assert_no_personal_data("the logs", &logged);
    assert!(!logged.contains(&worker.token()[..40]), "a token header appears in the logs");
    assert!(!logged.to_lowercase().contains("bearer ey"), "a bearer token appears in the logs");
}

trait With: Sized {
    fn with(self, who: &Identity) -> tonic::Request<Self>;
}

impl<T> With for T {
    fn with(self, who: &Identity) -> tonic::Request<Self> {
        who.request(self)
    }
}

async fn collect(mut chunks: tonic::Streaming<query_api::ExportChunk>) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.next().await {
        bytes.extend(chunk.unwrap().data);
    }
    bytes
}

/// Every cell of the first sheet, one row a line.
fn xlsx_text(bytes: Vec<u8>) -> String {
    use calamine::Reader;
    let mut workbook: calamine::Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
    let sheet = workbook.worksheet_range_at(0).unwrap().unwrap();
    sheet
        .rows()
        .map(|row| row.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Intake records an erasure and stops before destroying the key (a crash
/// between the two): the dispatcher, reading the erasure, destroys it.
#[tokio::test]
async fn the_dispatcher_finishes_an_erasure_whose_key_intake_did_not_destroy() {
    use gridcase_domain::{ActorRole, Command, Text};
    use gridcase_eventlog::{EventLog, KeyState, KeyStore, StreamSettings};
    use gridcase_tests::act;

    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let worker = Identity::new("gw-0042", "grid_worker", "cc-990101001", "990101001001001");
    let case_id = CaseId::new_v7();
    let report = intake_api::FileCaseRequest {
        resident_contact: Some(intake_api::ResidentContact {
            name: NAME.into(),
            phone: PHONE.into(),
            ..Default::default()
        }),
        ..filing(case_id)
    };
    intake_client(intake.endpoint()).await.file_case(worker.request(report)).await.unwrap();
    intake.stop().await.unwrap();

    // The erasure's event, as intake appends it, and nothing else.
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();
    let subject = act::subject("990101001001001", case_id);
    let erase = Command::EraseResidentData { reason: Text::reason("居民申请删除").unwrap() };
    act::command(&log, &subject, erase, ActorRole::CommandCentre, "cc-990101001", jiff::Timestamp::now())
        .await
        .unwrap();
    let keys =
        KeyStore::open(log.context(), "gridcase-keys", 1, Some(gridcase_tests::identity::master_keys())).await.unwrap();
    assert!(matches!(keys.key(&case_id).await.unwrap(), KeyState::Present(_)), "the key is still there");

    let dispatcher = TestDispatcher::spawn_with(TestDispatcher::config(&nats.url()), Arc::new(SystemTimeSource)).await;
    gridcase_tests::eventually("the dispatcher to destroy the key", || async {
        matches!(keys.key(&case_id).await.unwrap(), KeyState::Erased)
    })
    .await;
    dispatcher.stop().await.unwrap();
}

/// `[retention] contact_days = 30`: two dispatchers (both active, as on a
/// cluster), an injected clock. Nothing is erased a second before the day;
/// at it, exactly one erasure is recorded and the key is destroyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_policy_erases_contact_details_once_when_their_day_comes() {
    use gridcase_process::ManualTimeSource;
    use gridcase_tests::lifecycle::{centre, unit};

    let dir = tempfile::tempdir().unwrap();
    let shipped = gridcase_tests::workspace_root().join("deploy/policy/policy.toml");
    let policy = dir.path().join("policy.toml");
    let text = std::fs::read_to_string(&shipped).unwrap();
    std::fs::write(&policy, format!("{text}\n[retention]\ncontact_days = 30\n")).unwrap();

    let nats = NatsServer::start();
    let clock = ManualTimeSource::new("2026-03-02T01:00:00Z".parse().unwrap()); // Monday 09:00 in Beijing
    let intake = TestIntake::spawn_with(TestIntake::config(&nats.url()), Arc::new(clock.clone())).await;
    let mut dispatchers = Vec::new();
    for _ in 0..2 {
        let mut config = TestDispatcher::config(&nats.url());
        config.rules.policy = policy.clone();
        dispatchers.push(TestDispatcher::spawn_with(config, Arc::new(clock.clone())).await);
    }
    let worker = Identity::new("gw-0042", "grid_worker", "cc-990101001", "990101001001001");
    let case_id = CaseId::new_v7();
    let report = intake_api::FileCaseRequest {
        resident_contact: Some(intake_api::ResidentContact {
            name: NAME.into(),
            phone: PHONE.into(),
            ..Default::default()
        }),
        ..gridcase_tests::fixtures::filing_at(case_id, "0101", gridcase_process::TimeSource::now(&clock))
    };
    intake_client(intake.endpoint()).await.file_case(worker.request(report)).await.unwrap();

    let mut cases = lifecycle::client(intake.endpoint()).await;
    let get = || centre().request(cases_api::GetCaseRequest { case_id: case_id.to_string() });
    gridcase_tests::eventually("the case to be dispatched by policy", || {
        let mut cases = cases.clone();
        async move { cases.get_case(get()).await.unwrap().into_inner().state == common::CaseState::Dispatched as i32 }
    })
    .await;
    let view = cases.get_case(get()).await.unwrap().into_inner();
    let unit = unit(&view.unit);
    cases.acknowledge(unit.request(cases_api::AcknowledgeRequest { context: context(case_id) })).await.unwrap();
    let summary = "已修复".to_owned();
    let resolve = cases_api::ResolveRequest { context: context(case_id), summary, evidence: vec![] };
    cases.resolve(unit.request(resolve)).await.unwrap();
    let verify = cases_api::VerifyRequest { context: context(case_id), passed: true, reason: String::new() };
    cases.verify(centre().request(verify)).await.unwrap();
    clock.set("2026-03-03T02:00:00Z".parse().unwrap());
    let feedback = cases_api::RecordFeedbackRequest {
        context: context(case_id),
        feedback: common::Feedback::Satisfied as i32,
        comment: String::new(),
    };
    cases.record_feedback(centre().request(feedback)).await.unwrap();

    let erasures = |history: &cases_api::History| {
        history
            .events
            .iter()
            .filter(|e| e.r#type == "resident_data_erased")
            .map(|e| e.reason.clone())
            .collect::<Vec<_>>()
    };
    let history = || cases_api::GetHistoryRequest { case_id: case_id.to_string() };
    let due: jiff::Timestamp = "2026-04-02T02:00:00Z".parse().unwrap(); // 30 days after the feedback
    clock.set(due - jiff::SignedDuration::from_secs(1));
    for dispatcher in &mut dispatchers {
        dispatcher.settled_at(due - jiff::SignedDuration::from_secs(1), &nats).await;
    }
    let before = cases.get_history(centre().request(history())).await.unwrap().into_inner();
    assert!(erasures(&before).is_empty(), "erased before its day: {:?}", erasures(&before));
    let contact = cases.get_case(get()).await.unwrap().into_inner().resident_contact.unwrap();
    assert_eq!((contact.phone.as_str(), contact.erased), (PHONE, false));

    clock.set(due);
    for dispatcher in &mut dispatchers {
        dispatcher.settled_at(due, &nats).await;
    }
    let after = cases.get_history(centre().request(history())).await.unwrap().into_inner();
    let erased = erasures(&after);
    assert_eq!(erased.len(), 1, "exactly one erasure: {erased:?}");
    assert!(erased[0].contains("30"), "{erased:?}");
    assert!(after.chain_verified, "{}", after.chain_problem);
    let contact = cases.get_case(get()).await.unwrap().into_inner().resident_contact.unwrap();
    assert_eq!((contact.phone.as_str(), contact.name.as_str(), contact.erased), ("", "", true));
    let log = gridcase_eventlog::EventLog::open(nats.client().await, Default::default()).await.unwrap();
    let keys = gridcase_eventlog::KeyStore::open(log.context(), "gridcase-keys", 1, None).await.unwrap();
    assert!(matches!(keys.key(&case_id).await, Ok(gridcase_eventlog::KeyState::Erased)));
    for dispatcher in dispatchers {
        dispatcher.stop().await.unwrap();
    }
}

/// Rotating the master key: a new key first in the file, `gridctl keys
/// rewrap`, and the old key can go; every data key still opens what it sealed.
#[tokio::test]
async fn the_master_key_rotates_with_gridctl_and_the_old_key_can_then_be_destroyed() {
    use gridcase_domain::{PersonName, PhoneNumber, ResidentContact};
    use gridcase_envelope::sealing::{MasterKeys, open_contact, seal_contact};
    use gridcase_eventlog::{EventLog, KeyState, KeyStore, StreamSettings};

    let nats = NatsServer::start();
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();
    let old = gridcase_tests::identity::master_keys();
    let store = KeyStore::open(log.context(), "gridcase-keys", 1, Some(old)).await.unwrap();
    let contact = ResidentContact {
        name: Some(PersonName::parse(NAME).unwrap()),
        phone: Some(PhoneNumber::parse(PHONE).unwrap()),
        email: None,
    };
    let mut sealed = Vec::new();
    for _ in 0..3 {
        let case_id = CaseId::new_v7();
        let key = store.key_for_new_case(&case_id).await.unwrap();
        sealed.push((case_id, seal_contact(&key, &case_id, &contact).unwrap()));
    }

    let gridctl = |args: &[&str]| {
        let output = std::process::Command::new(gridcase_tests::service_binaries().join("gridctl"))
            .args(args)
            .env_remove("GRIDCASE_MASTER_KEY_FILE")
            .output()
            .unwrap();
        assert!(output.status.success(), "gridctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let new_line = gridctl(&["master-key", "new", "k2026-12"]);
    assert!(new_line.starts_with("k2026-12 ") && new_line.trim().len() == "k2026-12 ".len() + 64, "{new_line}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("master-keys");
    std::fs::write(&file, format!("{new_line}{}", gridcase_tests::identity::TEST_MASTER_KEYS)).unwrap();
    let rewrap = |file: &std::path::Path| {
        let out = gridctl(&[
            "--json",
            "keys",
            "rewrap",
            "--nats-url",
            &nats.url(),
            "--master-key-file",
            file.to_str().unwrap(),
        ]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let first = rewrap(&file);
    assert_eq!((first["rewrapped"].as_u64(), first["already_current"].as_u64()), (Some(3), Some(0)), "{first}");
    let again = rewrap(&file);
    assert_eq!((again["rewrapped"].as_u64(), again["already_current"].as_u64()), (Some(0), Some(3)), "{again}");

    // Only the new key left: every contact still opens.
    let only_new = std::sync::Arc::new(MasterKeys::parse(&new_line).unwrap());
    let rotated = KeyStore::open(log.context(), "gridcase-keys", 1, Some(only_new)).await.unwrap();
    for (case_id, sealed) in &sealed {
        let KeyState::Present(key) = rotated.key(case_id).await.unwrap() else { panic!("no key for {case_id}") };
        assert_eq!(open_contact(&key, case_id, sealed).unwrap(), contact);
    }
}

/// `gridctl --json log reseal` of `nats`'s case stream into
/// GRIDCASE_CASES_SEALED, with the tests' master key and `more` arguments.
async fn gridctl_reseal(nats: &NatsServer, more: &[&str]) -> std::process::Output {
    tokio::process::Command::new(gridcase_tests::service_binaries().join("gridctl"))
        .args(["--json", "log", "reseal", "--nats-url", &nats.url(), "--to-stream", "GRIDCASE_CASES_SEALED"])
        .arg("--master-key-file")
        .arg(gridcase_tests::identity::master_key_file())
        .args(more)
        .output()
        .await
        .unwrap()
}

/// History written before sealing: `gridctl log reseal` copies the stream
/// into a new one with the contact details sealed and the chains re-chained,
/// verified before and after; intake then runs on the new stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseal_copies_history_from_before_sealing_into_a_stream_without_clear_text() {
    use gridcase_domain::{
        ActorRole, CategoryCode, Command, Contact, Event, Filing, GridCode, Location, PersonName, PhoneNumber,
        ResidentContact, Text, Tier,
    };
    use gridcase_envelope::sealing::open_contact;
    use gridcase_envelope::verify_history;
    use gridcase_eventlog::{EventLog, KeyState, KeyStore, StreamSettings};
    use gridcase_tests::act;

    let nats = NatsServer::start();
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();
    let now = jiff::Timestamp::now();
    let clear = ResidentContact {
        name: Some(PersonName::parse(NAME).unwrap()),
        phone: Some(PhoneNumber::parse(PHONE).unwrap()),
        email: None,
    };
    let file = |case_id: CaseId, contact: Option<Contact>| {
        Command::File(Filing {
            case_id,
            grid: GridCode::parse("990101001001001").unwrap(),
            category: CategoryCode::parse("0201").unwrap(),
            description: Text::reason("路灯不亮").unwrap(),
            location: Location::from_degrees(30.27, 120.15, None).unwrap(),
            reported_at: now,
            severity_hint: None,
            contact,
            attachments: vec![],
            outside_grid: None,
            channel: Default::default(),
            request_kind: None,
            reference: None,
        })
    };
    let subject = |case_id| act::subject("990101001001001", case_id);
    let run = async |case_id, command, role| {
        act::command(&log, &subject(case_id), command, role, "cc-990101001", now).await.unwrap()
    };
    // As the version before sealing wrote them.
    let (old, plain, erased) = (CaseId::new_v7(), CaseId::new_v7(), CaseId::new_v7());
    run(old, file(old, Some(Contact::Clear(clear.clone()))), ActorRole::GridWorker).await;
    run(plain, file(plain, None), ActorRole::GridWorker).await;
    run(old, Command::Register { tier: Tier::Normal, note: None, policy: None }, ActorRole::CommandCentre).await;
    run(erased, file(erased, Some(Contact::Clear(clear.clone()))), ActorRole::GridWorker).await;
    let progress = Command::AddProgress { note: Text::reason("已联系居民").unwrap(), attachments: vec![] };
    run(old, progress, ActorRole::CommandCentre).await;
    run(plain, Command::Register { tier: Tier::Normal, note: None, policy: None }, ActorRole::CommandCentre).await;
    let erase = Command::EraseResidentData { reason: Text::reason("居民申请").unwrap() };
    run(erased, erase, ActorRole::CommandCentre).await;
    let keys =
        KeyStore::open(log.context(), "gridcase-keys", 1, Some(gridcase_tests::identity::master_keys())).await.unwrap();
    // No erasure marker in the key store (as if intake stopped before it
    // destroyed the key): the reseal goes by the erasure event.

    let reseal = async |more: &[&str]| {
        let output = gridctl_reseal(&nats, more).await;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let delete_retired = async || {
        let output = tokio::process::Command::new(gridcase_tests::service_binaries().join("gridctl"))
            .args(["log", "delete-retired", "--nats-url", &nats.url(), "--stream", "GRIDCASE_CASES_SEALED"])
            .args(["--retired", "GRIDCASE_CASES"])
            .output()
            .await
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (deleted, said) = delete_retired().await;
    assert!(!deleted && said.contains("is not retired"), "a stream in use is never deleted: {said}");

    // A run that stops part way (here after 4 messages: the old case's
    // filing sealed, its registration re-chained), then one that goes on.
    let part = reseal(&["--max-messages", "4"]).await;
    assert_eq!((part["messages"].as_u64(), part["complete"].as_bool()), (Some(4), Some(false)), "{part}");
    let (deleted, said) = delete_retired().await;
    assert!(!deleted && said.contains("finish the reseal first"), "nor one whose copy is not complete: {said}");
    let counts = reseal(&[]).await;
    assert_eq!(counts["resumed"], 4, "{counts}");
    assert_eq!(counts["complete"], true, "{counts}");
    assert_eq!(counts["messages"], 7, "{counts}");
    assert_eq!(counts["contacts_sealed"], 2, "{counts}");
    assert_eq!(counts["rechained"], 5, "the old case's 3 events and the erased case's 2: {counts}");
    assert_eq!(counts["cases"], 3, "{counts}");

    // The new stream: same sequences and subjects, no clear text; every
    // chain verifies; the untouched case is byte for byte the same.
    let js = async_nats::jetstream::new(nats.client().await);
    let old_stream = js.get_stream("GRIDCASE_CASES").await.unwrap();
    let new_stream = js.get_stream("GRIDCASE_CASES_SEALED").await.unwrap();
    let mut clear_in_old = 0;
    for sequence in 1..=7 {
        let (before, after) =
            (old_stream.get_raw_message(sequence).await.unwrap(), new_stream.get_raw_message(sequence).await.unwrap());
        assert_eq!(before.subject, after.subject);
        assert_no_personal_data(&format!("new stream message {sequence}"), &String::from_utf8_lossy(&after.payload));
        clear_in_old += usize::from(String::from_utf8_lossy(&before.payload).contains(PHONE));
        if before.subject.ends_with(&plain.to_string()) {
            assert_eq!(before.payload, after.payload, "a case without details is copied as it was");
        }
    }
    assert_eq!(clear_in_old, 2, "the old stream keeps its messages");
    let retired = js.get_stream("GRIDCASE_CASES").await.unwrap().cached_info().config.subjects.clone();
    assert_eq!(retired, ["gridcase.retired.GRIDCASE_CASES.>"], "the old stream takes no new event");
    let settings = StreamSettings { stream_name: "GRIDCASE_CASES_SEALED".into(), ..StreamSettings::default() };
    let sealed_log = EventLog::open(nats.client().await, settings).await.unwrap();
    for case_id in [old, plain, erased] {
        let history = sealed_log.history(&subject(case_id)).await.unwrap();
        verify_history(&history).unwrap_or_else(|e| panic!("case {case_id}: {e}"));
    }
    let history = sealed_log.history(&subject(old)).await.unwrap();
    assert_eq!(history.len(), 3);
    let Event::Filed(filing) = history[0].event.decode().unwrap() else { panic!("not a filing") };
    let Some(Contact::Sealed(sealed)) = filing.contact else { panic!("not sealed: {:?}", filing.contact) };
    let KeyState::Present(key) = keys.key(&old).await.unwrap() else { panic!("no key") };
    assert_eq!(open_contact(&key, &old, &sealed).unwrap(), clear);
    assert!(matches!(keys.key(&erased).await.unwrap(), KeyState::Erased), "an erased case gets no key back");

    // Intake on the new stream: the details show, and the chain goes on.
    let mut config = TestIntake::config(&nats.url());
    config.common.stream = "GRIDCASE_CASES_SEALED".into();
    let intake = TestIntake::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let mut cases = lifecycle::client(intake.endpoint()).await;
    let centre = gridcase_tests::lifecycle::centre();
    let view = cases.get_case(centre.request(cases_api::GetCaseRequest { case_id: old.to_string() })).await.unwrap();
    let contact = view.into_inner().resident_contact.unwrap();
    assert_eq!((contact.phone.as_str(), contact.name.as_str()), (PHONE, NAME));
    let note =
        cases_api::AddProgressRequest { context: context(old), note: "再次联系".into(), attachments: vec![] };
    cases.add_progress(centre.request(note)).await.unwrap();
    let history = cases.get_history(centre.request(cases_api::GetHistoryRequest { case_id: old.to_string() })).await;
    let history = history.unwrap().into_inner();
    assert!(history.chain_verified, "{}", history.chain_problem);
    assert_eq!(history.events.len(), 4);
    intake.stop().await.unwrap();
}

/// The deployment deploy/up.sh runs, with its own run directory, NATS and
/// database; stopped (deploy/down.sh) when dropped.
struct LocalDeployment {
    run: tempfile::TempDir,
    env: Vec<(String, String)>,
    intake: String,
    query: String,
}

impl LocalDeployment {
    fn new(database_url: &str) -> Self {
        let run = tempfile::Builder::new().prefix("gridcase-local-").tempdir().unwrap();
        // Free ports, held together so that no two are the same.
        let held: Vec<std::net::TcpListener> =
            (0..9).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let port = |i: usize| held[i].local_addr().unwrap().port();
        let addr = |i: usize| format!("127.0.0.1:{}", port(i));
        let env = vec![
            ("GRIDCASE_RUN_DIR", run.path().display().to_string()),
            ("GRIDCASE_SKIP_INSTALL", "1".into()),
            ("GRIDCASE_BIN_DIR", gridcase_tests::service_binaries().display().to_string()),
            ("GRIDCASE_NATS_SERVER", gridcase_tests::nats::nats_server_binary().display().to_string()),
            ("GRIDCASE_NATS_PORT", port(0).to_string()),
            ("GRIDCASE_INTAKE_ADDR", addr(1)),
            ("GRIDCASE_QUERY_ADDR", addr(2)),
            ("GRIDCASE_DISPATCHER_ADDR", addr(3)),
            ("GRIDCASE_DISPATCHER_METRICS_ADDR", addr(4)),
            ("GRIDCASE_INTAKE_METRICS_ADDR", addr(5)),
            ("GRIDCASE_PROJECTION_METRICS_ADDR", addr(6)),
            ("GRIDCASE_WEB_ADDR", addr(7)),
            ("GRIDCASE_WEB_METRICS_ADDR", addr(8)),
            ("GRIDCASE_DATABASE_URL", database_url.to_owned()),
            ("GRIDCASE_AUTH_DEV_SECRET_FILE", gridcase_tests::identity::dev_secret_file().display().to_string()),
        ];
        let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let (intake, query) = (format!("http://{}", addr(1)), format!("http://{}", addr(2)));
        drop(held);
        Self { run, env, intake, query }
    }

    fn nats_url(&self) -> String {
        let port = &self.env.iter().find(|(k, _)| k == "GRIDCASE_NATS_PORT").unwrap().1;
        format!("nats://127.0.0.1:{port}")
    }

    /// Run deploy/`script` with `args` (and `more` environment): whether it
    /// succeeded, and its output.
    async fn try_run(&self, script: &str, args: &[&str], more: &[(&str, &str)]) -> (bool, String) {
        let output = tokio::process::Command::new(gridcase_tests::workspace_root().join("deploy").join(script))
            .args(args)
            .envs(self.env.iter().cloned())
            .env_remove("GRIDCASE_STREAM")
            .env_remove("GRIDCASE_DISPATCHER_SNAPSHOT_BUCKET")
            .env_remove("GRIDCASE_MASTER_KEY_FILE")
            .envs(more.iter().copied())
            .output()
            .await
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    /// Run deploy/`script` with `args`; its output, or a panic with it and
    /// the services' logs if it failed.
    async fn run(&self, script: &str, args: &[&str]) -> String {
        let (succeeded, text) = self.try_run(script, args, &[]).await;
        if !succeeded {
            let mut logs = String::new();
            for name in ["intake", "projection", "dispatcher"] {
                let log = std::fs::read_to_string(self.run.path().join(format!("logs/{name}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                logs += &format!("--- {name}\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            panic!("deploy/{script} {args:?} failed:\n{text}\n{logs}");
        }
        text
    }

    fn stream_env(&self) -> String {
        std::fs::read_to_string(self.run.path().join("stream.env")).unwrap_or_default()
    }
}

impl Drop for LocalDeployment {
    fn drop(&mut self) {
        let _ = std::process::Command::new(gridcase_tests::workspace_root().join("deploy/down.sh"))
            .envs(self.env.iter().cloned())
            .output();
    }
}

/// Every message of `stream` as text.
async fn every_message(js: &async_nats::jetstream::Context, stream: &str) -> Vec<String> {
    let mut stream = js.get_stream(stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut texts = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        texts.push(String::from_utf8_lossy(&message.payload).into_owned());
    }
    texts
}

/// Waits until `case_id` is dispatched (the dispatcher has done its part).
async fn dispatched(cases: &mut lifecycle::Client, case_id: CaseId) {
    let centre = lifecycle::centre();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = cases.get_case(centre.request(cases_api::GetCaseRequest { case_id: case_id.to_string() })).await;
        if view.as_ref().is_ok_and(|v| v.get_ref().state == common::CaseState::Dispatched as i32) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "case {case_id} not dispatched: {view:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The operator procedure for history written before sealing, scripted:
/// deploy/reseal.sh moves a running deploy/up.sh deployment onto a resealed
/// stream (services stopped, stream copied and verified, read models
/// rebuilt, services started on the new stream), and with --delete-old
/// deletes the old stream; every service works on the new stream after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reseal_script_moves_a_running_deployment_onto_a_sealed_stream() {
    use gridcase_domain::{
        ActorRole, CategoryCode, Command, Contact, Filing, GridCode, Location, PersonName, PhoneNumber,
        ResidentContact, Text,
    };
    use gridcase_eventlog::{EventLog, StreamSettings};
    use gridcase_tests::act;

    let db = TestDatabase::create().await;
    let deployment = LocalDeployment::new(&db.url);
    let up = deployment.run("up.sh", &[]).await;
    assert!(up.contains("gridcase is up") && up.contains("GRIDCASE_CASES"), "{up}");

    // A case filed by the version before sealing: contact details in clear.
    let client = async_nats::connect(deployment.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let log = EventLog::open(client.clone(), StreamSettings::default()).await.unwrap();
    let old = CaseId::new_v7();
    let clear = ResidentContact {
        name: Some(PersonName::parse(NAME).unwrap()),
        phone: Some(PhoneNumber::parse(PHONE).unwrap()),
        email: None,
    };
    let before_sealing = Command::File(Filing {
        case_id: old,
        grid: GridCode::parse("990101001001001").unwrap(),
        category: CategoryCode::parse("0204").unwrap(),
        description: Text::reason("楼道漏水").unwrap(),
        location: Location::from_degrees(30.27, 120.15, None).unwrap(),
        reported_at: jiff::Timestamp::now(),
        severity_hint: None,
        contact: Some(Contact::Clear(clear.clone())),
        attachments: vec![],
        outside_grid: None,
        channel: Default::default(),
        request_kind: None,
        reference: None,
    });
    let subject = act::subject("990101001001001", old);
    act::command(&log, &subject, before_sealing, ActorRole::GridWorker, "cc-990101001", jiff::Timestamp::now())
        .await
        .unwrap();
    let mut cases = lifecycle::client(deployment.intake.clone()).await;
    dispatched(&mut cases, old).await;
    // The query service masks details recorded in clear too (from the
    // filing's redacted envelope: the read model has no column for them).
    let auditor = Identity::new("audit-1", "county_auditor", "co-990101", "990101");
    let query = query_client(deployment.query.clone(), &auditor).await;
    gridcase_tests::eventually("the query service to show the clear filing's number masked", || {
        let mut query = query.clone();
        async move {
            let record = query.get_case(query_api::GetCaseRequest { case_id: old.to_string() }).await;
            record.is_ok_and(|r| r.into_inner().contact_phone_masked == MASKED)
        }
    })
    .await;
    let before = every_message(&js, "GRIDCASE_CASES").await;
    assert!(before.iter().any(|text| text.contains(PHONE)), "the old filing holds the number in clear");

    // A reseal that fails part way (here: no master key file, found only
    // once the old stream is verified and has given up its subjects): the
    // services stay stopped, up.sh refuses to start them on either stream,
    // and running reseal.sh again finishes the job.
    let missing = deployment.run.path().join("no-such-key-file").display().to_string();
    let (succeeded, said) =
        deployment.try_run("reseal.sh", &[], &[("GRIDCASE_MASTER_KEY_FILE", missing.as_str())]).await;
    assert!(!succeeded && said.contains("run this again"), "{said}");
    assert!(deployment.stream_env().contains("GRIDCASE_RESEAL_PHASE=copying"), "{}", deployment.stream_env());
    let (succeeded, said) = deployment.try_run("up.sh", &[], &[]).await;
    assert!(!succeeded && said.contains("run deploy/reseal.sh to finish it"), "{said}");
    let said = deployment.run("reseal.sh", &[]).await;
    assert!(said.contains("the services run on GRIDCASE_CASES_SEALED"), "{said}");
    let state = deployment.stream_env();
    assert!(state.contains("GRIDCASE_RESEAL_TO=GRIDCASE_CASES_SEALED") && state.contains("PHASE=switched"), "{state}");

    // The new stream: every message copied, none in clear; the old one
    // keeps its messages until it is deleted.
    let after = every_message(&js, "GRIDCASE_CASES_SEALED").await;
    assert_eq!(after.len(), before.len());
    for (sequence, text) in after.iter().enumerate() {
        assert_no_personal_data(&format!("new stream message {}", sequence + 1), text);
    }
    assert_eq!(every_message(&js, "GRIDCASE_CASES").await, before);

    // The services run on it: the details open for the centre, masked for
    // the county and in the rebuilt read models; the chain verifies and
    // goes on; a new case is filed, dispatched and projected.
    let mut cases = lifecycle::client(deployment.intake.clone()).await;
    let get = |who: &Identity| cases_api::GetCaseRequest { case_id: old.to_string() }.with(who);
    let centre = lifecycle::centre();
    let county = Identity::new("audit-1", "county_auditor", "co-990101", "990101");
    let contact = cases.get_case(get(&centre)).await.unwrap().into_inner().resident_contact.unwrap();
    assert_eq!((contact.phone.as_str(), contact.name.as_str()), (PHONE, NAME));
    let contact = cases.get_case(get(&county)).await.unwrap().into_inner().resident_contact.unwrap();
    assert_eq!((contact.phone.as_str(), contact.masked), (MASKED, true));
    let history = cases.get_history(cases_api::GetHistoryRequest { case_id: old.to_string() }.with(&centre)).await;
    let history = history.unwrap().into_inner();
    assert!(history.chain_verified, "{}", history.chain_problem);
    let mut query = query_client(deployment.query.clone(), &county).await;
    let record = query.get_case(query_api::GetCaseRequest { case_id: old.to_string() }).await.unwrap().into_inner();
    assert_eq!(record.contact_phone_masked, MASKED);
    // The read models were rebuilt from the new stream: their history holds
    // its hashes (the old case's events were chained anew).
    let audit = query.get_case_history(query_api::GetCaseHistoryRequest { case_id: old.to_string() }).await;
    let audit: Vec<String> = audit.unwrap().into_inner().events.into_iter().map(|e| e.hash).collect();
    let now_in_log: Vec<String> = history.events.iter().map(|e| e.hash.clone()).collect();
    assert_eq!(audit, now_in_log, "the read models hold the new stream's hashes");
    assert!(!before.iter().any(|text| text.contains(&format!("\"{}\"", audit[0]))), "the chain was made anew");

    let new = CaseId::new_v7();
    let mut intake = intake_client(deployment.intake.clone()).await;
    let report = intake_api::FileCaseRequest {
        category_code: "0204".into(),
        resident_contact: Some(intake_api::ResidentContact {
            name: NAME.into(),
            phone: PHONE.into(),
            ..Default::default()
        }),
        ..filing(new)
    };
    intake.file_case(gridcase_tests::fixtures::as_worker(report)).await.unwrap();
    dispatched(&mut cases, new).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while query.get_case(query_api::GetCaseRequest { case_id: new.to_string() }).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the new case is not projected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for text in every_message(&js, "GRIDCASE_CASES_SEALED").await {
        assert_no_personal_data("the new stream", &text);
    }

    // --delete-old: the old stream and its snapshot bucket are gone; the
    // services go on. Run again: nothing left to do.
    let said = deployment.run("reseal.sh", &["--delete-old"]).await;
    assert!(said.contains("are deleted"), "{said}");
    assert!(js.get_stream("GRIDCASE_CASES").await.is_err(), "the old stream is deleted");
    assert!(js.get_stream("OBJ_gridcase-dispatcher").await.is_err(), "the old snapshot bucket is deleted");
    assert!(deployment.stream_env().contains("PHASE=deleted"));
    let contact = cases.get_case(get(&centre)).await.unwrap().into_inner().resident_contact.unwrap();
    assert_eq!(contact.phone, PHONE);
    let said = deployment.run("reseal.sh", &[]).await;
    assert!(said.contains("are deleted"), "{said}");
    client.drain().await.ok();
}

/// New keys are group-committed: many filings at once get their keys
/// stored in atomic batches; a retried filing among them (its key stored
/// already), the same new case twice, and an erased case make their batch
/// go one key at a time: the retry gets its key back, both calls for one
/// case get one key, the erased case none. Every key reads back as the one
/// its caller got. (One thread: every call is queued before the batches
/// go, so what makes up a batch does not depend on timing.)
#[tokio::test(flavor = "current_thread")]
async fn new_keys_are_stored_in_batches_and_a_retry_among_them_gets_its_own_key_back() {
    use gridcase_domain::{PhoneNumber, ResidentContact};
    use gridcase_envelope::sealing::{DataKey, open_contact, seal_contact};
    use gridcase_eventlog::{KeyState, KeyStore, KeyStoreError};

    // Two keys are the same if what one seals the other opens.
    let contact = ResidentContact { name: None, phone: Some(PhoneNumber::parse(PHONE).unwrap()), email: None };
    let same = |a: &DataKey, b: &DataKey, case_id: &CaseId| {
        open_contact(b, case_id, &seal_contact(a, case_id, &contact).unwrap()).is_ok_and(|opened| opened == contact)
    };
    let nats = NatsServer::start();
    let context = async_nats::jetstream::new(nats.client().await);
    let keys =
        KeyStore::open(&context, "gridcase-keys", 1, Some(gridcase_tests::identity::master_keys())).await.unwrap();
    let make = async |cases: &[CaseId]| {
        futures::future::join_all(cases.iter().map(|case_id| {
            let keys = keys.clone();
            let case_id = *case_id;
            async move { (case_id, keys.key_for_new_case(&case_id).await) }
        }))
        .await
    };
    let reads_back = async |case_id: CaseId, key: &DataKey| {
        let KeyState::Present(stored) = keys.key(&case_id).await.unwrap() else { panic!("no key for {case_id}") };
        assert!(same(key, &stored, &case_id), "case {case_id} reads back the key it got");
    };
    let batched = async || {
        let mut stream = context.get_stream("KV_gridcase-keys").await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut batched = 0;
        for sequence in 1..=last {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                batched += usize::from(message.headers.get(async_nats::header::NATS_BATCH_ID).is_some());
            }
        }
        batched
    };

    // 300 new cases at once: two batches (256 and 44).
    let cases: Vec<CaseId> = (0..300).map(|_| CaseId::new_v7()).collect();
    for (case_id, key) in make(&cases).await {
        reads_back(case_id, &key.unwrap_or_else(|e| panic!("case {case_id}: {e}"))).await;
    }
    assert_eq!(batched().await, 300, "every key was stored in a batch");

    // The same new case twice among new ones (a retry while the first is
    // in flight): both calls get the one key stored.
    let mut cases: Vec<CaseId> = (0..100).map(|_| CaseId::new_v7()).collect();
    let twice = cases[60];
    cases.insert(61, twice);
    let mut got_twice = Vec::new();
    for (case_id, key) in make(&cases).await {
        let key = key.unwrap_or_else(|e| panic!("case {case_id}: {e}"));
        reads_back(case_id, &key).await;
        if case_id == twice {
            got_twice.push(key);
        }
    }
    assert_eq!(got_twice.len(), 2);
    assert!(same(&got_twice[0], &got_twice[1], &twice), "both calls for one case got the same key");

    // A retry and an erased case among new ones: their batch is refused
    // and goes one key at a time.
    let (retried, erased) = (cases[7], CaseId::new_v7());
    let KeyState::Present(first) = keys.key(&retried).await.unwrap() else { panic!("no key") };
    keys.erase(&erased).await.unwrap();
    let mut cases: Vec<CaseId> = (0..100).map(|_| CaseId::new_v7()).collect();
    cases.insert(30, retried);
    cases.insert(10, erased);
    for (case_id, key) in make(&cases).await {
        if case_id == erased {
            assert!(matches!(key, Err(KeyStoreError::Erased)), "an erased case gets no key: {key:?}");
            continue;
        }
        let key = key.unwrap_or_else(|e| panic!("case {case_id}: {e}"));
        reads_back(case_id, &key).await;
        if case_id == retried {
            assert!(same(&key, &first, &case_id), "a retry gets the key made the first time");
        }
    }
}

/// A reseal resumed after something else wrote to the new stream (it owns
/// the case subjects once the old stream is retired) refuses to go on
/// rather than take that event for a copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_reseal_refuses_a_new_stream_that_something_else_wrote_to() {
    use gridcase_domain::{ActorRole, Command, Contact, PersonName, PhoneNumber, ResidentContact, Tier};
    use gridcase_eventlog::{EventLog, StreamSettings};
    use gridcase_tests::act;

    let nats = NatsServer::start();
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();
    let clear = ResidentContact {
        name: Some(PersonName::parse(NAME).unwrap()),
        phone: Some(PhoneNumber::parse(PHONE).unwrap()),
        email: None,
    };
    let case_id = CaseId::new_v7();
    let subject = act::subject("990101001001001", case_id);
    let now = jiff::Timestamp::now();
    let Command::File(mut filing) = gridcase_tests::scenario::filing(case_id, "990101001001001", "0201", now) else {
        unreachable!()
    };
    filing.contact = Some(Contact::Clear(clear));
    act::command(&log, &subject, Command::File(filing), ActorRole::GridWorker, "cc-990101001", now).await.unwrap();
    let register = || Command::Register { tier: Tier::Normal, note: None, policy: None };
    act::command(&log, &subject, register(), ActorRole::CommandCentre, "cc-990101001", now).await.unwrap();
    assert!(gridctl_reseal(&nats, &["--max-messages", "1"]).await.status.success());

    // Another writer on the new stream: an event of the same case and type
    // where the copy of the registration belongs.
    let settings = StreamSettings { stream_name: "GRIDCASE_CASES_SEALED".into(), ..StreamSettings::default() };
    let sealed_log = EventLog::open(nats.client().await, settings).await.unwrap();
    act::command(&sealed_log, &subject, register(), ActorRole::CommandCentre, "cc-990101001", now).await.unwrap();
    let output = gridctl_reseal(&nats, &[]).await;
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && said.contains("something else wrote to the new stream"), "{said}");
}
