//! Every service's metrics endpoint, on the service binaries as shipped
//! (processes of their own: the metrics recorder is process-wide): every
//! documented metric answers from the first scrape, and the figures move
//! with a filing. The dispatcher's own step counters are checked in
//! dispatcher_metrics.rs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridcase_domain::CaseId;
use gridcase_tests::fixtures::{as_worker, filing, intake_client};
use gridcase_tests::{NatsServer, TestDatabase, identity, service_binaries, workspace_root};

use gridcase_tests::scrape_metrics as scrape;

/// Scrape until `ready` holds for the page (bounded).
async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    ready: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(page) = scrape(addr).await
            && ready(&page)
        {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen on {addr} within 30 s; last page {:?}",
            scrape(addr).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A service binary running as its own process; killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(binary: &str, env: &[(&str, String)]) -> Process {
    let root = workspace_root();
    let child = Command::new(service_binaries().join(binary))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("GRIDCASE_REFERENCE_DIR", root.join("deploy/reference"))
        .env("GRIDCASE_POLICY", root.join("deploy/policy/policy.toml"))
        .env("GRIDCASE_CALENDAR_DIR", root.join("deploy/calendar"))
        .env("GRIDCASE_AUTH_DEV_SECRET_FILE", identity::dev_secret_file())
        .env("GRIDCASE_MASTER_KEY_FILE", identity::master_key_file())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    Process(child)
}

fn has(page: &BTreeMap<String, f64>, name: &str) -> bool {
    page.keys().any(|key| key == name || key.starts_with(&format!("{name}{{")) || key.starts_with(&format!("{name}_")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_exports_its_documented_metrics_from_the_first_scrape_and_they_move() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await;
    let (intake_addr, intake_metrics) = (free_addr(), free_addr());
    let (query_addr, projection_metrics) = (free_addr(), free_addr());
    let (dispatcher_addr, dispatcher_metrics) = (free_addr(), free_addr());
    let _intake = spawn(
        "gridcase-intake",
        &[
            ("GRIDCASE_NATS_URL", nats.url()),
            ("GRIDCASE_INTAKE_ADDR", intake_addr.to_string()),
            ("GRIDCASE_INTAKE_METRICS_ADDR", intake_metrics.to_string()),
        ],
    );
    let first_intake = scrape_until(intake_metrics, "the intake's metrics", |_| true).await;
    let _projection = spawn(
        "gridcase-projection",
        &[
            ("GRIDCASE_NATS_URL", nats.url()),
            ("GRIDCASE_DATABASE_URL", db.url.clone()),
            ("GRIDCASE_QUERY_ADDR", query_addr.to_string()),
            ("GRIDCASE_PROJECTION_METRICS_ADDR", projection_metrics.to_string()),
            ("GRIDCASE_CASES_METRICS_INTERVAL", "200ms".to_owned()),
        ],
    );
    let first_projection = scrape_until(projection_metrics, "the projection's metrics", |_| true).await;
    let _dispatcher = spawn(
        "gridcase-dispatcher",
        &[
            ("GRIDCASE_NATS_URL", nats.url()),
            ("GRIDCASE_DISPATCHER_ADDR", dispatcher_addr.to_string()),
            ("GRIDCASE_DISPATCHER_METRICS_ADDR", dispatcher_metrics.to_string()),
        ],
    );
    let first_dispatcher = scrape_until(dispatcher_metrics, "the dispatcher's metrics", |_| true).await;

    // Every documented metric, from the first scrape.
    let common = [
        "gridcase_nats_connected",
        "gridcase_appends_total{outcome=\"stored\"}",
        "gridcase_appends_total{outcome=\"unavailable\"}",
        "gridcase_attachment_bytes_total",
        "gridcase_key_create_duration_seconds_count{stored=\"batch\"}",
    ];
    for name in common.iter().chain(&[
        "gridcase_grpc_requests_total{method=\"/gridcase.intake.v1.IntakeService/FileCase\",code=\"OK\"}",
        "gridcase_grpc_requests_total{method=\"/gridcase.cases.v1.CaseService/Dispatch\",code=\"OK\"}",
    ]) {
        assert!(has(&first_intake, name), "intake: {name} missing from {first_intake:?}");
    }
    for name in common.iter().chain(&[
        "gridcase_grpc_requests_total{method=\"/gridcase.query.v1.QueryService/OverdueReport\",code=\"OK\"}",
        "gridcase_projection_lag_events",
        "gridcase_projection_lag_seconds",
        "gridcase_projection_position",
        "gridcase_projection_writer",
        "gridcase_projection_batch_events",
        "gridcase_rebuild_events_done",
        "gridcase_export_rows_total{export=\"cases\"}",
        "gridcase_grpc_request_duration_seconds_bucket{method=\"/gridcase.query.v1.QueryService/ListCases\",le=\"0.001\"}",
        "gridcase_append_duration_seconds_count{outcome=\"stored\"}",
    ]) {
        assert!(has(&first_projection, name), "projection: {name} missing from {first_projection:?}");
    }
    for name in common.iter().chain(&[
        "gridcase_dispatcher_pending_messages",
        "gridcase_dispatcher_lag_seconds",
        "gridcase_dispatcher_conflicts_total",
        "gridcase_calendar_missing",
        "gridcase_calendar_days_left",
    ]) {
        assert!(has(&first_dispatcher, name), "dispatcher: {name} missing from {first_dispatcher:?}");
    }

    // A filing moves them: the intake's call and append, the dispatcher's
    // two appends, the projection's position and its open cases.
    let mut client = intake_client(format!("http://{intake_addr}")).await;
    let case_id = CaseId::new_v7();
    gridcase_tests::eventually("intake to take the filing", || {
        let mut client = client.clone();
        async move { client.file_case(as_worker(filing(case_id))).await.is_ok() }
    })
    .await;
    let intake_page = scrape_until(intake_metrics, "a filing counted", |page| {
        page.get("gridcase_grpc_requests_total{method=\"/gridcase.intake.v1.IntakeService/FileCase\",code=\"OK\"}")
            >= Some(&1.0)
    })
    .await;
    assert_eq!(intake_page.get("gridcase_appends_total{outcome=\"stored\"}"), Some(&1.0));
    assert_eq!(intake_page.get("gridcase_nats_connected"), Some(&1.0));
    scrape_until(dispatcher_metrics, "the dispatcher's steps appended", |page| {
        page.get("gridcase_appends_total{outcome=\"stored\"}") >= Some(&2.0)
    })
    .await;
    let projection_page = scrape_until(projection_metrics, "the projection caught up and counted the case", |page| {
        page.get("gridcase_projection_position") >= Some(&3.0)
            && page.get("gridcase_projection_writer") == Some(&1.0)
            && page.get("gridcase_projection_lag_events") == Some(&0.0)
            && page.get("gridcase_cases_open{township=\"990101001\"}") == Some(&1.0)
    })
    .await;
    assert_eq!(projection_page.get("gridcase_cases_overdue{township=\"990101001\"}"), Some(&0.0));

    // A rebuild says how far it has got, of how many events.
    let rebuild = Command::new(service_binaries().join("gridcase-projection"))
        .arg("rebuild")
        .env("GRIDCASE_NATS_URL", nats.url())
        .env("GRIDCASE_DATABASE_URL", &db.url)
        .env("GRIDCASE_PROJECTION_METRICS_ADDR", free_addr().to_string())
        .env("GRIDCASE_REFERENCE_DIR", workspace_root().join("deploy/reference"))
        .env("GRIDCASE_POLICY", workspace_root().join("deploy/policy/policy.toml"))
        .env("GRIDCASE_CALENDAR_DIR", workspace_root().join("deploy/calendar"))
        .env("GRIDCASE_AUTH_DEV_SECRET_FILE", identity::dev_secret_file())
        .env("GRIDCASE_MASTER_KEY_FILE", identity::master_key_file())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&rebuild.stderr).into_owned() + &String::from_utf8_lossy(&rebuild.stdout);
    assert!(rebuild.status.success(), "{log}");
    assert!(
        log.lines()
            .any(|line| line.contains("rebuild progress") && line.contains("done=3") && line.contains("total=3")),
        "{log}"
    );

    // What the shipped alerts and dashboard query, the services export.
    let pages = [&intake_page, &projection_page, &scrape(dispatcher_metrics).await.unwrap()];
    for file in ["deploy/prometheus/alerts.yml", "deploy/grafana/gridcase.json"] {
        let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
        let names: std::collections::BTreeSet<&str> = text
            .match_indices("gridcase_")
            .map(|(at, _)| {
                let rest = &text[at..];
                &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
            })
            .filter(|name| name.len() > "gridcase_".len())
            .collect();
        assert!(names.len() > 5, "{file}: found only {names:?}");
        for name in names {
            let base = name.strip_suffix("_bucket").unwrap_or(name);
            assert!(pages.iter().any(|page| has(page, base)), "{file} uses {name}, which no service exports");
        }
    }
    // Refusals are counted by code: no token at all is UNAUTHENTICATED.
    let refused = client.file_case(tonic::Request::new(filing(CaseId::new_v7()))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    scrape_until(intake_metrics, "the refusal counted by code", |page| {
        page.get(
            "gridcase_grpc_requests_total{method=\"/gridcase.intake.v1.IntakeService/FileCase\",code=\"UNAUTHENTICATED\"}",
        ) == Some(&1.0)
    })
    .await;
}

/// One HTTP/1.1 request with hyper's client: the status, and the response
/// body as a stream (a live feed stays open while it is kept).
async fn http_request(addr: SocketAddr, path: &str, cookie: Option<&str>) -> (u16, hyper::body::Incoming) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::get(path).header(http::header::HOST, addr.to_string());
    if let Some(cookie) = cookie {
        request = request.header(http::header::COOKIE, cookie);
    }
    let response =
        sender.send_request(request.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap()).await.unwrap();
    (response.status().as_u16(), response.into_body())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_exports_requests_by_route_live_connections_and_events_relayed() {
    use http_body_util::BodyExt as _;
    let nats = NatsServer::start();
    let db = TestDatabase::create().await;
    let (intake_addr, query_addr) = (free_addr(), free_addr());
    let (web_addr, web_metrics) = (free_addr(), free_addr());
    let nats_url = nats.url();
    let _intake = spawn(
        "gridcase-intake",
        &[
            ("GRIDCASE_NATS_URL", nats_url.clone()),
            ("GRIDCASE_INTAKE_ADDR", intake_addr.to_string()),
            ("GRIDCASE_INTAKE_NO_METRICS", "1".into()),
        ],
    );
    let _projection = spawn(
        "gridcase-projection",
        &[
            ("GRIDCASE_NATS_URL", nats_url),
            ("GRIDCASE_DATABASE_URL", db.url.clone()),
            ("GRIDCASE_QUERY_ADDR", query_addr.to_string()),
            ("GRIDCASE_PROJECTION_NO_METRICS", "1".into()),
        ],
    );
    let _web = spawn(
        "gridcase-web",
        &[
            ("GRIDCASE_WEB_ADDR", web_addr.to_string()),
            ("GRIDCASE_WEB_METRICS_ADDR", web_metrics.to_string()),
            ("GRIDCASE_WEB_INTAKE_URL", format!("http://{intake_addr}")),
            ("GRIDCASE_WEB_QUERY_URL", format!("http://{query_addr}")),
        ],
    );
    // From the first scrape: nothing open, nothing relayed.
    let first = scrape_until(web_metrics, "the console's metrics", |_| true).await;
    assert_eq!(first.get("gridcase_web_live_connections"), Some(&0.0), "{first:?}");
    assert_eq!(first.get("gridcase_web_events_relayed_total"), Some(&0.0), "{first:?}");

    // A request is counted by its route's pattern, never by the ids in it.
    gridcase_tests::eventually("the console to answer", || async move {
        tokio::net::TcpStream::connect(web_addr).await.is_ok()
    })
    .await;
    assert_eq!(http_request(web_addr, "/healthz", None).await.0, 200);
    let cookie = format!("gridcase_session={}", gridcase_tests::lifecycle::centre().token());
    let case_id = CaseId::new_v7();
    let (status, _) = http_request(web_addr, &format!("/cases/{case_id}"), Some(&cookie)).await;
    assert_eq!(status, 404, "a case nobody filed");
    let page = scrape_until(web_metrics, "the requests counted", |page| {
        page.get("gridcase_web_requests_total{route=\"/healthz\",status=\"200\"}") == Some(&1.0)
            && page.get("gridcase_web_requests_total{route=\"/cases/{case_id}\",status=\"404\"}") == Some(&1.0)
    })
    .await;
    assert!(has(&page, "gridcase_web_request_duration_seconds"), "{page:?}");
    assert!(!page.keys().any(|key| key.contains(&case_id.to_string())), "an id in a label: {page:?}");

    // A board's live feed is one connection; each change it relays counts.
    let (status, mut feed) = http_request(web_addr, "/live?township=990101001", Some(&cookie)).await;
    assert_eq!(status, 200);
    scrape_until(web_metrics, "the live connection", |page| page.get("gridcase_web_live_connections") == Some(&1.0))
        .await;
    let mut client = intake_client(format!("http://{intake_addr}")).await;
    client.file_case(as_worker(filing(case_id))).await.expect("filed");
    // Read the feed until the filing's change arrives.
    let mut seen = String::new();
    while !seen.contains("event: change") {
        let frame =
            tokio::time::timeout(Duration::from_secs(30), feed.frame()).await.expect("a change").unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    scrape_until(web_metrics, "the relayed change", |page| page.get("gridcase_web_events_relayed_total") >= Some(&1.0))
        .await;
    drop(feed);
    scrape_until(web_metrics, "the closed connection", |page| page.get("gridcase_web_live_connections") == Some(&0.0))
        .await;
}

/// The Open311 gateway's metrics and logs, on the binary as shipped: a
/// filing with a resident's name, phone and e-mail is counted by route and
/// status, and neither its page nor its log holds any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open311_gateway_counts_requests_and_its_metrics_and_logs_hold_no_resident_details() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await;
    let (intake_addr, query_addr) = (free_addr(), free_addr());
    let (gateway_addr, gateway_metrics) = (free_addr(), free_addr());
    let keys = ("GRIDCASE_AUTH_API_KEYS_FILE", identity::api_key_file().to_string_lossy().into_owned());
    let _intake = spawn(
        "gridcase-intake",
        &[
            ("GRIDCASE_NATS_URL", nats.url()),
            ("GRIDCASE_INTAKE_ADDR", intake_addr.to_string()),
            ("GRIDCASE_INTAKE_NO_METRICS", "1".into()),
            keys.clone(),
        ],
    );
    let _projection = spawn(
        "gridcase-projection",
        &[
            ("GRIDCASE_NATS_URL", nats.url()),
            ("GRIDCASE_DATABASE_URL", db.url.clone()),
            ("GRIDCASE_QUERY_ADDR", query_addr.to_string()),
            ("GRIDCASE_PROJECTION_NO_METRICS", "1".into()),
            keys,
        ],
    );
    let log = tempfile::NamedTempFile::new().unwrap();
    let root = workspace_root();
    let _gateway = Process(
        Command::new(service_binaries().join("gridcase-open311"))
            .env("GRIDCASE_OPEN311_ADDR", gateway_addr.to_string())
            .env("GRIDCASE_OPEN311_METRICS_ADDR", gateway_metrics.to_string())
            .env("GRIDCASE_OPEN311_INTAKE_URL", format!("http://{intake_addr}"))
            .env("GRIDCASE_OPEN311_QUERY_URL", format!("http://{query_addr}"))
            .env("GRIDCASE_REFERENCE_DIR", root.join("deploy/reference"))
            .env("RUST_LOG", "debug")
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("starting gridcase-open311"),
    );
    let first = scrape_until(gateway_metrics, "the gateway's metrics", |_| true).await;
    assert_eq!(first.get("gridcase_open311_filed_total{replayed=\"false\"}"), Some(&0.0), "{first:?}");
    assert_eq!(first.get("gridcase_open311_media_urls_ignored_total"), Some(&0.0), "{first:?}");

    let (name, phone, email) = ("王秀英", "13812345678", "wang.xiuying@example.org");
    let key = identity::fixmystreet().key;
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("api_key", key.as_str()),
            ("service_code", "0201"),
            ("lat", "30.2741"),
            ("long", "120.1551"),
            ("description", "路灯不亮"),
            ("first_name", "王"),
            ("last_name", "秀英"),
            ("phone", phone),
            ("email", email),
            ("media_url", "http://169.254.169.254/latest/meta-data"),
            ("attribute[request_kind]", "HELP"),
        ])
        .finish();
    let http = reqwest::Client::new();
    let post = |body: String| http.post(format!("http://{gateway_addr}/requests.xml")).body(body).send();
    gridcase_tests::eventually("the gateway to file", || {
        let form = form.clone();
        let post = &post;
        async move { post(form).await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let refused = post(format!("api_key={key}&service_code=0201&phone=12345&email={email}")).await.unwrap();
    assert_eq!(refused.status(), 400);
    let page = scrape_until(gateway_metrics, "the filing counted", |page| {
        page.get("gridcase_open311_filed_total{replayed=\"false\"}") == Some(&1.0)
            && page.get("gridcase_open311_refused_total{code=\"400\"}") == Some(&1.0)
            && page.get("gridcase_open311_media_urls_ignored_total") == Some(&1.0)
    })
    .await;
    assert!(
        page.keys().any(|k| k.starts_with("gridcase_open311_requests_total{method=\"POST\",route=\"/{file}\"")),
        "{page:?}"
    );
    let text = format!("{page:?}");
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(!logged.is_empty(), "the gateway logged (at debug)");
    for (what, detail) in [("name", name), ("phone", phone), ("e-mail", email), ("key", key.as_str())] {
        assert!(!text.contains(detail), "the resident's {what} on the metrics page");
        assert!(!logged.contains(detail), "the {what} in the gateway's log");
    }
}
