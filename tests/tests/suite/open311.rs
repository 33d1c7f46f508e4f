//! The Open311 gateway as a partner system meets it, over HTTP with
//! reqwest (a client we did not write): every endpoint and every error,
//! against real intake, dispatcher and projection on real NATS and
//! PostgreSQL.

use std::sync::Arc;

use sha2::Digest as _;

use gridcase_process::SystemTimeSource;
use gridcase_proto::cases::v1 as cases;
use gridcase_tests::identity::{fixmystreet, hotline};
use gridcase_tests::open311::TestOpen311;
use gridcase_tests::{
    Backends, Identity, TestDispatcher, TestIntake, TestProjection, eventually, stream_end, workspace_root,
};

struct Gateway {
    http: reqwest::Client,
    base: String,
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Gateway {
    async fn get(&self, path: &str) -> Answer {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.expect("GET");
        Self::answer(response).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        Self::answer(response).await
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Answer { status, content_type, body: response.text().await.expect("body") }
    }
}

/// The text of every `<name>` element, in order, its entities read back.
fn texts(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let unescape = |text: &str| {
        text.replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    xml.split(&open).skip(1).filter_map(|rest| rest.split_once(&close).map(|(text, _)| unescape(text))).collect()
}

/// A GeoReport error document with this HTTP status, naming these parameters.
fn assert_error(answer: &Answer, status: u16, naming: &[&str]) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(answer.body.contains("<errors><error><code>"), "{}", answer.body);
    let descriptions = texts(&answer.body, "description").join("\n");
    for name in naming {
        assert!(descriptions.contains(name), "{name} in: {descriptions}");
    }
}

/// Intake, a dispatcher and the query service on real NATS and
/// PostgreSQL, the gateway in front of them.
struct System {
    nats: gridcase_tests::NatsServer,
    _db: gridcase_tests::TestDatabase,
    intake: TestIntake,
    _dispatcher: TestDispatcher,
    projection: TestProjection,
    gateway: TestOpen311,
}

impl System {
    async fn start() -> Self {
        let Backends { nats, db, .. } = Backends::start().await;
        let intake = TestIntake::spawn(&nats.url()).await;
        let dispatcher =
            TestDispatcher::spawn_with(TestDispatcher::config(&nats.url()), Arc::new(SystemTimeSource)).await;
        let projection =
            TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(SystemTimeSource)).await;
        let gateway = TestOpen311::spawn(TestOpen311::config(&intake.endpoint(), &projection.endpoint())).await;
        Self { nats, _db: db, intake, _dispatcher: dispatcher, projection, gateway }
    }
}

fn centre() -> Identity {
    Identity::new("cc-01", "command_centre", "cc-990101001", "990101001")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_files_follows_and_comments_through_open311_and_every_refusal_is_a_4xx_document() {
    let System { nats, _db, intake, _dispatcher, projection, gateway } = System::start().await;
    let open311 = Gateway { http: reqwest::Client::new(), base: gateway.base() };
    let (fms, hotline) = (fixmystreet(), hotline());

    // The catalogue: every category, in Chinese, grouped by major category.
    let services = open311.get("services.xml").await;
    assert_eq!(services.status, 200);
    assert!(services.content_type.starts_with("text/xml"), "{}", services.content_type);
    let reference = gridcase_reference::Reference::load(&workspace_root().join("deploy/reference")).unwrap();
    let codes = texts(&services.body, "service_code");
    let expected: Vec<String> = reference.taxonomy.iter().map(|c| c.code.to_string()).collect();
    assert_eq!(codes, expected, "every category");
    assert!(codes.windows(2).all(|w| w[0] < w[1]), "in code order");
    assert!(services.body.contains("<service_name>暴露垃圾</service_name>"));
    assert!(services.body.contains("<groups><group>市容环境</group></groups>"));
    let json: serde_json::Value = serde_json::from_str(&open311.get("services.json").await.body).unwrap();
    assert_eq!(json.as_array().unwrap().len(), expected.len());
    let definition = open311.get("services/0101.xml?jurisdiction_id=990101").await;
    assert_eq!(definition.status, 200, "{}", definition.body);
    assert_eq!(texts(&definition.body, "code"), ["grid_code", "fixmystreet_id", "request_kind"]);
    assert!(definition.body.contains("<automated>server_set</automated>"));
    assert_eq!(texts(&definition.body, "key").len(), 6, "the six kinds of request");
    assert_error(&open311.get("services/9999.xml").await, 404, &["service_code"]);
    assert_error(&open311.get("services.xml?jurisdiction_id=990102").await, 404, &["jurisdiction_id"]);
    assert_error(&open311.get("services.html").await, 404, &["no such resource"]);
    assert_error(&open311.get("tokens/abc.xml").await, 404, &["token"]);

    // Filing: key, jurisdiction, every field's problem at once.
    let report = |reference: &'static str, description: &'static str| {
        vec![
            ("jurisdiction_id", "990101"),
            ("service_code", "0101"),
            ("lat", "30.2741"),
            ("long", "120.1551"),
            ("description", description),
            ("first_name", "王"),
            ("last_name", "秀英"),
            ("email", "wang.xiuying@example.org"),
            ("phone", "13812345678"),
            ("attribute[fixmystreet_id]", reference),
            ("attribute[request_kind]", "COMPLAINT"),
        ]
    };
    let with_key = |mut form: Vec<(&'static str, &'static str)>, key: &'static str| {
        form.push(("api_key", key));
        form
    };
    let fms_key: &'static str = Box::leak(fms.key.clone().into_boxed_str());
    let hotline_key: &'static str = Box::leak(hotline.key.clone().into_boxed_str());
    assert_error(&open311.post("requests.xml", &report("1001", "路边垃圾堆积")).await, 403, &["api_key"]);
    let forged: &'static str = Box::leak(gridcase_auth::apikey::compose("fms-test", &[1; 32]).into_boxed_str());
    assert_error(
        &open311.post("requests.xml", &with_key(report("1001", "路边垃圾堆积"), forged)).await,
        403,
        &["api_key"],
    );
    let not_a_key = with_key(report("1001", "路边垃圾堆积"), "wrong-key-000");
    assert_error(&open311.post("requests.xml", &not_a_key).await, 403, &["api_key: is not an API key"]);
    let unknown_county = vec![("jurisdiction_id", "990102"), ("api_key", fms_key)];
    assert_error(&open311.post("requests.xml", &unknown_county).await, 404, &["jurisdiction_id"]);
    let malformed = vec![("api_key", fms_key), ("service_code", "9999"), ("lat", "north"), ("long", "120.1")];
    assert_error(&open311.post("requests.xml", &malformed).await, 400, &["service_code", "lat"]);
    // What intake refuses comes back named as the client sent it.
    let mut bad_contact = with_key(report("1002", "路边垃圾堆积"), fms_key);
    bad_contact.retain(|(k, _)| *k != "email" && *k != "phone");
    bad_contact.extend([("email", "not-an-address"), ("phone", "12345")]);
    assert_error(&open311.post("requests.xml", &bad_contact).await, 400, &["email:", "phone:"]);
    // The hotline's key is for one township: a grid elsewhere is not its to file in.
    let mut elsewhere = with_key(report("h-1", "村道积水"), hotline_key);
    elsewhere.retain(|(k, _)| !matches!(*k, "lat" | "long"));
    elsewhere.extend([("lat", "30.2"), ("long", "120.1")]);
    assert_error(&open311.post("requests.xml", &elsewhere).await, 403, &["outside your territory"]);

    let filed = open311.post("requests.xml", &with_key(report("1001", "路边垃圾堆积，气味很大"), fms_key)).await;
    assert_eq!(filed.status, 201, "{}", filed.body);
    let id = texts(&filed.body, "service_request_id").pop().expect("an id");
    let again = open311.post("requests.xml", &with_key(report("1001", "路边垃圾堆积，气味很大"), fms_key)).await;
    assert_eq!((again.status, texts(&again.body, "service_request_id")), (200, vec![id.clone()]), "a retry");
    let changed = open311.post("requests.xml", &with_key(report("1001", "另一件事"), fms_key)).await;
    assert_error(&changed, 409, &["fixmystreet_id"]);
    // Without a reference of its own, the content is the request's identity.
    let mut anonymous = with_key(report("", "井盖缺失"), fms_key);
    anonymous.retain(|(k, _)| *k != "attribute[fixmystreet_id]");
    let first = open311.post("requests.json", &anonymous).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let second = open311.post("requests.json", &anonymous).await;
    let first: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    let second: serde_json::Value = serde_json::from_str(&second.body).unwrap();
    assert_eq!(first[0]["service_request_id"], second[0]["service_request_id"]);

    // The dispatcher registers and dispatches it; the read models follow.
    let history = gridcase_tests::lifecycle::client(intake.endpoint()).await;
    let centre = centre();
    eventually("the dispatcher dispatches the request", || {
        let mut history = history.clone();
        let request = centre.request(cases::GetHistoryRequest { case_id: id.clone() });
        async move {
            let events = history.get_history(request).await.unwrap().into_inner();
            events.events.iter().any(|e| e.r#type == "dispatched")
        }
    })
    .await;
    projection.caught_up_to(stream_end(&nats).await).await;

    // Read back by id: with the key, the partner's own request in full;
    // without, the public status only; another partner sees nothing.
    let own = open311.get(&format!("requests/{id}.xml?api_key={fms_key}")).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(texts(&own.body, "status"), ["open"]);
    assert_eq!(texts(&own.body, "description"), ["路边垃圾堆积，气味很大"]);
    assert_eq!(texts(&own.body, "lat"), ["30.274100"]);
    assert!(!texts(&own.body, "agency_responsible")[0].is_empty(), "{}", own.body);
    assert!(texts(&own.body, "requested_datetime")[0].ends_with("+08:00"));
    let public = open311.get(&format!("requests.xml?service_request_id={id}")).await;
    assert_eq!(texts(&public.body, "service_request_id"), std::slice::from_ref(&id), "{}", public.body);
    assert_eq!(texts(&public.body, "status_notes"), ["已派遣至处置单位，等待签收"]);
    for private in ["description", "lat", "long", "王", "example.org", "1381234"] {
        assert!(!public.body.contains(private), "{private} in the public status: {}", public.body);
    }
    let other = open311.get(&format!("requests/{id}.xml?api_key={hotline_key}")).await;
    assert_error(&other, 404, &["service_request_id"]);
    let listed = open311.get(&format!("requests.xml?api_key={fms_key}&status=open&service_code=0101")).await;
    assert!(texts(&listed.body, "service_request_id").contains(&id), "{}", listed.body);
    // A township's partner lists its own (none here), not a 403 for the county.
    let none = open311.get(&format!("requests.xml?api_key={hotline_key}")).await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert!(texts(&none.body, "service_request_id").is_empty(), "{}", none.body);
    assert_error(&open311.get(&format!("requests.xml?api_key={fms_key}&status=maybe")).await, 400, &["status"]);
    assert_error(&open311.get("requests.xml").await, 403, &["api_key"]);

    // The changes, in the last hours, in Open311's words and Beijing time.
    let window = {
        let now = jiff::Timestamp::now();
        let start = (now - jiff::SignedDuration::from_hours(2)).to_string();
        let end = (now + jiff::SignedDuration::from_mins(1)).to_string();
        format!("start_date={start}&end_date={end}")
    };
    let updates = open311.get(&format!("servicerequestupdates.xml?api_key={fms_key}&{window}")).await;
    assert_eq!(updates.status, 200, "{}", updates.body);
    let mine: Vec<&str> = updates.body.split("<request_update>").filter(|u| u.contains(&id)).collect();
    let statuses: Vec<String> = mine.iter().flat_map(|u| texts(u, "status")).collect();
    assert_eq!(statuses, ["OPEN", "INVESTIGATING", "ACTION_SCHEDULED"], "{}", updates.body);
    assert!(mine.iter().all(|u| texts(u, "updated_datetime")[0].ends_with("+08:00")));
    assert!(mine.iter().all(|u| texts(u, "fixmystreet_id") == ["1001"]));
    let ids: Vec<String> = mine.iter().flat_map(|u| texts(u, "update_id")).collect();
    let repeated = open311.get(&format!("servicerequestupdates.xml?api_key={fms_key}&{window}")).await;
    let repeated_ids: Vec<String> = repeated
        .body
        .split("<request_update>")
        .filter(|u| u.contains(&id))
        .flat_map(|u| texts(u, "update_id"))
        .collect();
    assert_eq!(ids, repeated_ids, "update ids are stable");
    let theirs = open311.get(&format!("servicerequestupdates.xml?api_key={hotline_key}&{window}")).await;
    assert!(!theirs.body.contains(&id), "{}", theirs.body);
    assert_error(&open311.get(&format!("servicerequestupdates.xml?{window}")).await, 403, &["api_key"]);
    let bad_window = open311.get(&format!("servicerequestupdates.xml?api_key={fms_key}&start_date=yesterday")).await;
    assert_error(&bad_window, 400, &["start_date"]);

    // A resident's comment: a note in the case's history, once however often
    // it is sent; the status the partner reports moves nothing.
    let comment = [
        ("api_key", fms_key),
        ("service_request_id", id.as_str()),
        ("update_id", "c-77"),
        ("status", "FIXED"),
        ("description", "还是很臭，请尽快处理"),
        ("updated_datetime", "2026-12-06T09:00:00+08:00"),
    ];
    let posted = open311.post("servicerequestupdates.xml", &comment).await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    let reposted = open311.post("servicerequestupdates.xml", &comment).await;
    assert_eq!(texts(&posted.body, "update_id"), texts(&reposted.body, "update_id"));
    let mut history = history.clone();
    let events = history
        .get_history(centre.request(cases::GetHistoryRequest { case_id: id.clone() }))
        .await
        .unwrap()
        .into_inner();
    let notes: Vec<&cases::HistoryEvent> = events.events.iter().filter(|e| e.r#type == "progress_added").collect();
    assert_eq!(notes.len(), 1, "one note for the retried comment");
    assert!(format!("{:?}", notes[0]).contains("还是很臭，请尽快处理"));
    let case =
        history.get_case(centre.request(cases::GetCaseRequest { case_id: id.clone() })).await.unwrap().into_inner();
    assert_eq!(
        case.state,
        gridcase_proto::common::v1::CaseState::Dispatched as i32,
        "the client's FIXED moved nothing"
    );
    let missing = [("api_key", fms_key), ("service_request_id", id.as_str())];
    assert_error(&open311.post("servicerequestupdates.xml", &missing).await, 400, &["update_id", "description"]);
    let not_theirs =
        [("api_key", hotline_key), ("service_request_id", id.as_str()), ("update_id", "x-1"), ("description", "看看")];
    assert_error(&open311.post("servicerequestupdates.xml", &not_theirs).await, 404, &["service_request_id"]);

    gateway.stop().await.unwrap();
}

/// Run one of the outside clients' scripts (tests/open311/) with the
/// interpreter `deploy/install-deps.sh --browser` prepared; its one JSON
/// line of what it saw.
async fn outside_client(script: &str, args: &[&str]) -> serde_json::Value {
    let python = workspace_root().join(".tools/open311-clients/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run deploy/install-deps.sh --browser (the Open311 clients' virtual environment)",
        python.display()
    );
    let output = tokio::process::Command::new(&python)
        .arg(workspace_root().join("tests/open311").join(script))
        .args(args)
        .output()
        .await
        .expect("run the client");
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{script} printed no JSON ({e})"))
}

/// The walk, by two Open311 client libraries nobody on this project
/// wrote, run unchanged: civicbot (JSON, every endpoint) and georeport (XML
/// reads). The scripts only report what the clients saw; judging it is here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_outside_open311_clients_walk_the_gateway() {
    let System { nats: _nats, _db, intake, _dispatcher, projection: _projection, gateway } = System::start().await;
    let fms = fixmystreet();
    let reference = gridcase_reference::Reference::load(&workspace_root().join("deploy/reference")).unwrap();
    let codes: Vec<String> = reference.taxonomy.iter().map(|c| c.code.to_string()).collect();

    let walk = outside_client("civicbot_walk.py", &[&gateway.base(), &fms.key, "7"]).await;
    assert_eq!(walk["service_codes"], serde_json::json!(codes));
    assert_eq!(walk["service_names"]["0201"], "路灯损坏");
    assert_eq!(walk["attribute_codes"], serde_json::json!(["grid_code", "fixmystreet_id", "request_kind"]));
    let id = walk["filed"][0]["service_request_id"].as_str().expect("an id").to_owned();
    assert_eq!(walk["filed_again"][0]["service_request_id"], id.as_str(), "a retry is the same request");
    assert_eq!(walk["by_id"]["service_request_id"], id.as_str());
    assert_eq!(walk["by_id"]["status"], "open");
    assert!(walk["by_id"]["requested_datetime"].as_str().unwrap().ends_with("+08:00"));
    assert_eq!(walk["listed"][0]["service_request_id"], id.as_str());
    let statuses: Vec<&str> =
        walk["updates"].as_array().unwrap().iter().map(|u| u["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["OPEN", "INVESTIGATING", "ACTION_SCHEDULED"], "{}", walk["updates"]);
    // Each update's time is its event's, in Beijing time, and no earlier than the filing.
    let filed_at = gridcase_open311::params::time(walk["by_id"]["requested_datetime"].as_str().unwrap()).unwrap();
    for update in walk["updates"].as_array().unwrap() {
        let text = update["updated_datetime"].as_str().unwrap();
        assert!(text.ends_with("+08:00"), "{text}");
        assert!(gridcase_open311::params::time(text).unwrap() >= filed_at, "{text}");
    }
    assert_eq!(walk["comment"][0]["update_id"], walk["comment_again"][0]["update_id"]);
    assert_eq!(walk["bad_key"]["status"], 403);
    assert_eq!(walk["unknown_jurisdiction"]["status"], 404);
    assert_eq!(walk["malformed"]["status"], 400);
    let problems = walk["malformed"]["body"].to_string();
    assert!(problems.contains("description:") && problems.contains("email:"), "{problems}");

    // The comment is one note in the case's history, written as the resident's.
    let mut cases = gridcase_tests::lifecycle::client(intake.endpoint()).await;
    let history = cases.get_history(centre().request(cases::GetHistoryRequest { case_id: id.clone() })).await.unwrap();
    let notes: Vec<String> =
        history.into_inner().events.iter().filter(|e| e.r#type == "progress_added").map(|e| format!("{e:?}")).collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("居民补充：灯杆在三号楼东侧") && notes[0].contains("PARTNER"), "{}", notes[0]);

    let reads = outside_client("georeport_reads.py", &[&gateway.base(), &id]).await;
    assert_eq!(reads["service_codes"], serde_json::json!(codes));
    assert_eq!(
        reads["definition"]["attribute_codes"],
        serde_json::json!(["grid_code", "fixmystreet_id", "request_kind"])
    );
    assert_eq!(reads["request"]["service_request_id"], id.as_str());
    assert_eq!(reads["request"]["status_notes"], "已派遣至处置单位，等待签收");
    assert_eq!(reads["requests"]["service_request_id"], id.as_str());
    assert_eq!(reads["unknown_service"], 404);
    gateway.stop().await.unwrap();
}

/// A partner's photos: uploaded in the request (multipart), checked by
/// intake as every upload is; a `media_url` fetched only from an allowed
/// origin, passed over otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_come_in_the_request_or_from_an_allowed_origin_only() {
    use axum::routing::get;
    let Backends { nats, db, .. } = Backends::start().await;
    let intake = TestIntake::spawn(&nats.url()).await;
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(SystemTimeSource)).await;
    // A partner's photo server, and another address nobody allowed.
    let photo = gridcase_tests::fixtures::jpeg(50_000);
    let served = photo.clone();
    let photos = axum::Router::new()
        .route("/p/1.jpg", get(move || async move { ([("content-type", "image/jpeg")], served.clone()) }))
        .route("/p/moved.jpg", get(|| async { axum::response::Redirect::temporary("/p/1.jpg") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, photos).await });
    let mut config = TestOpen311::config(&intake.endpoint(), &projection.endpoint());
    config.media_url_origins = vec![origin.clone()];
    let gateway = TestOpen311::spawn(config).await;
    let key = fixmystreet().key;
    let http = reqwest::Client::new();
    let fields = |reference: &str| {
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in [
            ("api_key", key.as_str()),
            ("service_code", "0201"),
            ("lat", "30.2741"),
            ("long", "120.1551"),
            ("description", "路灯不亮"),
            ("attribute[fixmystreet_id]", reference),
            ("attribute[request_kind]", "HELP"),
        ] {
            form = form.text(name.to_owned(), value.to_owned());
        }
        form
    };
    let post = |form: reqwest::multipart::Form| {
        let request = http.post(format!("{}requests.xml", gateway.base())).multipart(form);
        async move {
            let response = request.send().await.unwrap();
            Answer {
                status: response.status().as_u16(),
                content_type: String::new(),
                body: response.text().await.unwrap(),
            }
        }
    };
    let attachments = |id: String| {
        let mut cases = intake.endpoint();
        async move {
            let mut client = gridcase_tests::lifecycle::client(std::mem::take(&mut cases)).await;
            let case = client.get_history(centre().request(cases::GetHistoryRequest { case_id: id })).await.unwrap();
            let filed: serde_json::Value = serde_json::from_str(&case.into_inner().events[0].payload_json).unwrap();
            filed["attachments"].as_array().cloned().unwrap_or_default()
        }
    };
    let digest = hex::encode(sha2::Sha256::digest(&photo));

    // In the request: stored, checked against its bytes, named by the filing.
    let part = reqwest::multipart::Part::bytes(photo.clone()).file_name("lamp.jpg").mime_str("image/jpeg").unwrap();
    let filed = post(fields("m-1").part("photo1", part)).await;
    assert_eq!(filed.status, 201, "{}", filed.body);
    let id = texts(&filed.body, "service_request_id").pop().unwrap();
    let stored = attachments(id).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["sha256"], digest.as_str());
    // A "photo" whose bytes are not what it says is refused, named by its file.
    let lying = reqwest::multipart::Part::bytes(b"not a picture at all".to_vec())
        .file_name("lamp2.jpg")
        .mime_str("image/jpeg")
        .unwrap();
    assert_error(&post(fields("m-2").part("photo1", lying)).await, 400, &["media \"lamp2.jpg\""]);

    // By URL: from the allowed origin, the same bytes; a redirect is not
    // followed; any other origin is refused.
    let by_url = |reference: &'static str, url: String| fields(reference).text("media_url", url);
    let fetched = post(by_url("u-1", format!("{origin}/p/1.jpg"))).await;
    assert_eq!(fetched.status, 201, "{}", fetched.body);
    let stored = attachments(texts(&fetched.body, "service_request_id").pop().unwrap()).await;
    assert_eq!(stored[0]["sha256"], digest.as_str());
    assert_error(
        &post(by_url("u-2", format!("{origin}/p/moved.jpg"))).await,
        400,
        &["media_url: the host answered 307"],
    );
    assert_error(
        &post(by_url("u-3", "http://169.254.169.254/latest/meta-data".into())).await,
        400,
        &["media_url: only URLs of"],
    );
    gateway.stop().await.unwrap();

    // With no origin allowed (the default), a media_url is passed over: the
    // request is filed without it and nothing is fetched.
    let gateway = TestOpen311::spawn(TestOpen311::config(&intake.endpoint(), &projection.endpoint())).await;
    let request =
        http.post(format!("{}requests.xml", gateway.base())).multipart(by_url("u-4", format!("{origin}/p/1.jpg")));
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 201);
    let id = texts(&response.text().await.unwrap(), "service_request_id").pop().unwrap();
    assert!(attachments(id).await.is_empty());
    gateway.stop().await.unwrap();
}
