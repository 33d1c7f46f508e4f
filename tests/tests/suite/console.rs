//! The command centre's console in a real browser (Debian's headless
//! Chromium, driven over WebDriver) against real services: intake and query
//! on their own NATS server and database, the console in front of them.
//! Screenshots of each page are saved under target/screenshots/.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridcase_domain::CaseId;
use gridcase_process::{ManualTimeSource, TimeSource as _};
use gridcase_proto::cases::v1 as cases_api;
use gridcase_proto::intake::v1 as intake_api;
use gridcase_tests::fixtures::{filing_at, intake_client, worker};
use gridcase_tests::lifecycle::{self, centre};
use gridcase_tests::{Backends, Browser, Identity, TestIntake, TestProjection, TestWeb, eventually, eventually_within};

const UNIT: &str = "unit.utilities.990101";
const DISPATCHED: &str = "article.case[data-state=CASE_STATE_DISPATCHED]";

/// Monday 2026-12-07 10:00 in Beijing: inside working hours.
fn monday_morning() -> jiff::Timestamp {
    "2026-12-07T02:00:00Z".parse().unwrap()
}

struct Console {
    backends: Backends,
    clock: Arc<ManualTimeSource>,
    intake: TestIntake,
    projection: Option<TestProjection>,
    web: Option<TestWeb>,
}

impl Console {
    async fn start() -> Self {
        let backends = Backends::start().await;
        let clock = Arc::new(ManualTimeSource::new(monday_morning()));
        let intake = TestIntake::spawn_with(TestIntake::config(&backends.nats.url()), clock.clone()).await;
        let projection =
            TestProjection::spawn_with(TestProjection::config(&backends.nats.url(), &backends.db.url), clock.clone())
                .await;
        let web = TestWeb::spawn(TestWeb::config(&intake.endpoint(), &projection.endpoint())).await;
        Self { backends, clock, intake, projection: Some(projection), web: Some(web) }
    }

    fn web(&self) -> &TestWeb {
        self.web.as_ref().expect("the console runs")
    }

    /// A case filed and registered, and the operator signed in on its page.
    async fn operator_at_a_registered_case(&self, browser: &Browser, description: &str) -> CaseId {
        let case_id = self.file(description).await;
        self.register(case_id).await;
        browser.sign_in(self.web(), "operator-1", "command_centre", "cc-990101001", "990101001").await;
        browser.goto(&self.web().url(&format!("/cases/{case_id}"))).await;
        let registered = "article.case[data-state=CASE_STATE_REGISTERED]";
        wait_for(browser, "the registered case", Duration::from_secs(5), registered).await;
        case_id
    }

    async fn stop_console(&mut self) -> std::net::SocketAddr {
        let old = self.web.take().expect("the console runs");
        let addr = old.addr;
        old.stop().await.expect("the console stops");
        addr
    }

    async fn start_console_on(&mut self, addr: std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("the console's address again");
        let query = format!("http://{}", self.projection.as_ref().expect("the query service runs").addr);
        let config = TestWeb::config(&self.intake.endpoint(), &query);
        self.web = Some(TestWeb::spawn_on(config, listener).await);
    }

    /// File a case as the grid worker, with a resident's contact; its id.
    async fn file(&self, description: &str) -> CaseId {
        self.file_at(description, None).await
    }

    /// The same, from `location` (latitude, longitude) rather than inside the grid.
    async fn file_at(&self, description: &str, location: Option<(f64, f64)>) -> CaseId {
        let case_id = CaseId::new_v7();
        let mut report = intake_api::FileCaseRequest {
            description: description.into(),
            resident_contact: Some(intake_api::ResidentContact {
                name: "王小明".into(),
                phone: "13812345678".into(),
                ..Default::default()
            }),
            ..filing_at(case_id, "0201", self.clock.now())
        };
        if let Some((latitude, longitude)) = location {
            report.location =
                Some(gridcase_proto::common::v1::Location { latitude, longitude, address: String::new() });
        }
        intake_client(self.intake.endpoint()).await.file_case(worker().request(report)).await.expect("filed");
        case_id
    }

    async fn command_centre_dispatches(&self, who: &Identity, case_id: CaseId, unit: &str) {
        let context = lifecycle::context(case_id);
        let request = cases_api::DispatchRequest { context, unit: unit.into() };
        lifecycle::client(self.intake.endpoint())
            .await
            .dispatch(lifecycle::request(who, request))
            .await
            .expect("dispatched");
    }

    async fn register(&self, case_id: CaseId) {
        let request = cases_api::RegisterRequest { context: lifecycle::context(case_id), tier: 0, note: String::new() };
        lifecycle::client(self.intake.endpoint())
            .await
            .register(lifecycle::request(&centre(), request))
            .await
            .expect("registered");
    }
}

/// Wait for `css` to be on the page; on failure, the page's screenshot and
/// source are kept for the reader.
async fn wait_for(browser: &Browser, what: &str, patience: Duration, css: &str) {
    let deadline = Instant::now() + patience;
    while !browser.has(css).await {
        if Instant::now() >= deadline {
            let shot = browser.screenshot("failed").await;
            let source = browser.client.source().await.unwrap_or_default();
            panic!(
                "waited {patience:?} for {what} ({css}) on {}; screenshot {}; the page:\n{source}",
                browser.current_url().await,
                shot.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_sees_a_filing_arrive_live_dispatches_it_and_watches_it_turn_overdue() {
    let console = Console::start().await;
    let browser = Browser::start().await;
    let web = console.web();

    // Signed out, every page leads to the sign-in.
    browser.goto(&web.url("/desk")).await;
    assert!(browser.current_url().await.contains("/signin?next=%2Fdesk"), "{}", browser.current_url().await);

    browser.sign_in(web, "operator-1", "command_centre", "cc-990101001", "990101001").await;
    wait_for(&browser, "the board's live feed to connect", Duration::from_secs(10), "body[data-live=on]").await;
    assert_eq!(browser.text("#count-open").await, "0");
    // The township's map: its four grids and two micro-grids, no cases yet.
    assert_eq!(browser.client.find_all(fantoccini::Locator::Css("svg#grid-map path.grid")).await.unwrap().len(), 6);
    assert_eq!(
        browser.client.find_all(fantoccini::Locator::Css("svg#grid-map path.micro-grid")).await.unwrap().len(),
        2
    );
    assert!(!browser.has("#map-cases circle").await);

    // A filing through the gRPC intake appears on the board without a reload.
    let description = "<script>document.title='pwned'</script> 东门路12号路灯不亮 <b>夜间</b>";
    let filed = Instant::now();
    let case_id = console.file(description).await;
    let row = format!("#feed li[data-case='{case_id}'][data-type=filed]");
    wait_for(&browser, "the filing on the board", Duration::from_secs(2), &row).await;
    eprintln!("the filing was on the board {:?} after intake acknowledged it", filed.elapsed());
    // The count follows the read models: however long they take on a busy machine.
    eventually("the open count to reach 1", || async { browser.text("#count-open").await == "1" }).await;
    // …and on the map, as a point awaiting the centre, redrawn without a reload.
    let point = format!("#map-cases a[data-case='{case_id}'] circle.pending");
    wait_for(&browser, "the filing on the map", Duration::from_secs(5), &point).await;
    assert!(!browser.has(&format!("{point}.outside")).await, "filed inside its grid");
    browser.screenshot("board").await;

    // The case page: the description is text, markup and all (once the
    // read models, a moment behind the log, hold the case).
    eventually_within("the case in the read models", Duration::from_secs(10), || async {
        browser.goto(&web.url(&format!("/cases/{case_id}"))).await;
        browser.has("dd.description").await
    })
    .await;
    assert_eq!(browser.text("dd.description").await, description);
    assert!(!browser.has("dd.description script").await && !browser.has("dd.description b").await);
    assert_ne!(browser.client.title().await.unwrap(), "pwned");
    // The command centre sees the contact in full (it calls residents back).
    assert_eq!(browser.text("dd.contact").await, "王小明 13812345678");
    // Where it was filed, on its village's map.
    assert_eq!(browser.text("dd.location").await, "30.274100, 120.155100");
    assert!(browser.has(&format!("section.case-map a[data-case='{case_id}'] circle.focus")).await);

    // Register, then dispatch, from the page.
    browser.click("form[data-action=register] button").await;
    wait_for(
        &browser,
        "the case registered",
        Duration::from_secs(10),
        "article.case[data-state=CASE_STATE_REGISTERED]",
    )
    .await;
    // The policy's units are offered, the route's first (street lights: the utilities).
    let offered = browser.element("datalist#offered-units option").await.attr("value").await.unwrap();
    assert_eq!(offered.as_deref(), Some(UNIT));
    browser.fill("form[data-action=dispatch] input[name=unit]", UNIT).await;
    browser.click("form[data-action=dispatch] button").await;
    wait_for(&browser, "the case dispatched", Duration::from_secs(10), DISPATCHED).await;
    assert_eq!(browser.text("dd.unit").await, UNIT);
    let acknowledge_due = browser.text("section.deadlines tr[data-clock='2'] td.due").await;
    assert!(
        acknowledge_due.ends_with("+08:00"),
        "deadlines are shown in Beijing time with the zone: {acknowledge_due}"
    );
    // The remaining time, in working hours (the read models catch up a moment later).
    eventually_within("the remaining working time", Duration::from_secs(10), || async {
        browser.goto(&web.url(&format!("/cases/{case_id}"))).await;
        browser.text("section.deadlines tr[data-clock='2'] td.remaining").await.contains("工作小时")
    })
    .await;
    assert!(browser.text("p.chain").await.contains("记录完整"));
    browser.screenshot("case").await;

    // Before that, the desk's due-soon view has it, with the clock that is next due.
    browser.goto(&web.url("/desk?view=soon")).await;
    let soon = format!("tr[data-case='{case_id}'] td.next-due");
    wait_for(&browser, "the case due soon", Duration::from_secs(5), &soon).await;
    assert!(browser.text(&soon).await.starts_with("签收"), "{}", browser.text(&soon).await);
    assert!(!browser.has("tr.overdue").await, "nothing is overdue yet");

    // Two working days later the acknowledgement is overdue: on the desk…
    console.clock.advance(jiff::SignedDuration::from_hours(48));
    browser.goto(&web.url("/desk")).await;
    wait_for(
        &browser,
        "the case on the overdue desk",
        Duration::from_secs(5),
        &format!("tr.overdue[data-case='{case_id}']"),
    )
    .await;
    browser.screenshot("desk").await;
    // …and on the board, live: the next change refreshes its counts.
    browser.goto(&web.url("/")).await;
    wait_for(&browser, "the live feed", Duration::from_secs(10), "body[data-live=on]").await;
    let before = browser.text("#count-overdue").await;
    assert_eq!(before, "1", "a fresh board counts the overdue case");
    // The villages ranked for today and for this month (the month's filings
    // are the village's two so far).
    assert!(browser.has("section#ranking-today").await);
    let month = browser.text("section#ranking-month tbody tr:first-child").await;
    assert!(month.starts_with("990101001001 1"), "{month}");
    assert!(browser.has(&format!("#map-cases a[data-case='{case_id}'] circle.handling.overdue")).await);
    // A filing from 5 km away (in 青石镇), naming a grid of this township:
    // kept, on the map's edge, flagged.
    let second = console.file_at("垃圾桶满溢", Some((30.2, 120.1))).await;
    wait_for(&browser, "the second filing", Duration::from_secs(5), &format!("#feed li[data-case='{second}']")).await;
    // The count follows the read models: however long they take on a busy machine.
    eventually("the open count to reach 2", || async { browser.text("#count-open").await == "2" }).await;
    assert_eq!(browser.text("#count-overdue").await, "1");
    let astray = format!("#map-cases a[data-case='{second}'] circle.outside.off-map");
    wait_for(&browser, "the flagged filing on the map's edge", Duration::from_secs(5), &astray).await;
    browser.screenshot("board-map").await;
    browser.goto(&web.url(&format!("/cases/{second}"))).await;
    eventually_within("the flag on the case page", Duration::from_secs(10), || async {
        browser.goto(&web.url(&format!("/cases/{second}"))).await;
        browser.has("dd.location span.outside-grid").await
    })
    .await;
    assert!(browser.text("dd.location span.outside-grid").await.starts_with("位置超出网格"));

    // The handling unit sees the case in its queue and may acknowledge it.
    browser.sign_in(web, "utilities-1", "handling_unit", UNIT, UNIT).await;
    browser.goto(&web.url("/desk")).await;
    wait_for(&browser, "the unit's queue", Duration::from_secs(5), &format!("tr[data-case='{case_id}']")).await;
    assert!(!browser.has(&format!("tr[data-case='{second}']")).await, "not yet the unit's case");
    browser.goto(&web.url(&format!("/cases/{case_id}"))).await;
    assert!(browser.has("form[data-action=acknowledge]").await);
    assert!(!browser.has("form[data-action=dispatch]").await);

    // A county auditor: the contact masked, no buttons.
    browser.sign_in(web, "auditor-1", "county_auditor", "county-990101", "990101").await;
    browser.goto(&web.url(&format!("/cases/{case_id}"))).await;
    let contact = browser.text("dd.contact").await;
    assert!(contact.contains("138****5678") && !contact.contains("13812345678"), "{contact}");
    wait_for(&browser, "no buttons for the auditor", Duration::from_secs(5), "section.actions p.no-actions").await;
    assert!(!browser.has("form.action").await, "an auditor's case page has no buttons");

    // The ledger page renders the query service's rows.
    browser.goto(&web.url("/ledger?kind=village&period=total&from=2026-12-01&to=2026-12-31")).await;
    let village = browser.text("table.ledger-rows tbody tr:first-child").await;
    assert!(village.starts_with("990101001001 total 2 1 0"), "village 990101001001: 2 filed, 1 registered: {village}");
    // The trend of the last 30 days, one point a day.
    let line = browser.element("figure.trend polyline.closure").await;
    let points = line.attr("points").await.expect("an attribute").expect("points");
    assert_eq!(points.split(' ').count(), 30, "{points}");
    browser.screenshot("ledger").await;

    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_operator_s_dispatch_shows_the_conflict_and_bad_input_is_shown_beside_its_field() {
    let console = Console::start().await;
    let browser = Browser::start().await;
    let case_id = console.operator_at_a_registered_case(&browser, "井盖松动").await;

    // A malformed unit code: refused, the message beside the field, what was typed kept.
    browser.fill("form[data-action=dispatch] input[name=unit]", "no such unit").await;
    browser.click("form[data-action=dispatch] button").await;
    wait_for(&browser, "the refusal", Duration::from_secs(5), "div.notice.refused[data-code=InvalidArgument]").await;
    assert!(
        browser.has("form[data-action=dispatch] label.invalid span.field-error").await,
        "the problem beside the field"
    );
    assert_eq!(browser.value("form[data-action=dispatch] input[name=unit]").await, "no such unit");

    // Meanwhile another operator dispatches the case.
    let other = Identity::new("operator-2", "command_centre", "cc-990101001", "990101001");
    console.command_centre_dispatches(&other, case_id, UNIT).await;

    // The page still shows it registered; dispatching now is refused in words.
    browser.fill("form[data-action=dispatch] input[name=unit]", UNIT).await;
    browser.click("form[data-action=dispatch] button").await;
    wait_for(&browser, "the conflict", Duration::from_secs(5), "div.notice.refused[data-code=Aborted]").await;
    assert!(browser.text("div.notice.refused").await.contains("另一位操作员刚刚处理了此案件"));
    // …and the page now shows the case as it stands.
    assert!(browser.has(DISPATCHED).await);
    browser.close().await;
}

/// The sequences the board's feed shows.
async fn feed_sequences(browser: &Browser) -> Vec<u64> {
    let items = browser.client.find_all(fantoccini::Locator::Css("#feed li")).await.expect("the feed");
    let mut sequences = Vec::new();
    for item in items {
        let sequence = item.attr("data-sequence").await.expect("an attribute").expect("a sequence");
        sequences.push(sequence.parse().expect("a number"));
    }
    sequences
}

#[tokio::test(flavor = "multi_thread")]
async fn the_board_reconnects_after_the_query_service_and_the_console_restart_and_misses_nothing() {
    let mut console = Console::start().await;
    let browser = Browser::start().await;
    browser.sign_in(console.web(), "operator-1", "command_centre", "cc-990101001", "990101001").await;
    wait_for(&browser, "the live feed", Duration::from_secs(10), "body[data-live=on]").await;
    let mut filed = vec![console.file("第一件").await];
    wait_for(&browser, "the first filing", Duration::from_secs(5), &format!("#feed li[data-case='{}']", filed[0]))
        .await;

    // The query service stops: the board notices; cases are filed meanwhile;
    // it comes back on its address.
    let projection = console.projection.take().expect("running");
    let query_addr = projection.addr;
    projection.stop().await.expect("the query service stops");
    wait_for(&browser, "the board to notice", Duration::from_secs(10), "body[data-live=off]").await;
    filed.push(console.file("第二件").await);
    filed.push(console.file("第三件").await);
    let listener = tokio::net::TcpListener::bind(query_addr).await.expect("the query service's address again");
    let config = TestProjection::config(&console.backends.nats.url(), &console.backends.db.url);
    console.projection = Some(TestProjection::spawn_on(config, listener, console.clock.clone()).await);
    for case in &filed[1..] {
        wait_for(
            &browser,
            "a filing made while the query service was away",
            Duration::from_secs(15),
            &format!("#feed li[data-case='{case}']"),
        )
        .await;
    }

    // The console itself restarts (a deployment, or the instance the browser
    // was on lost): the page reconnects to it and resumes.
    let web_addr = console.stop_console().await;
    wait_for(&browser, "the board to notice", Duration::from_secs(10), "body[data-live=off]").await;
    filed.push(console.file("第四件").await);
    console.start_console_on(web_addr).await;
    wait_for(
        &browser,
        "the filing made while the console was away",
        Duration::from_secs(15),
        &format!("#feed li[data-case='{}']", filed[3]),
    )
    .await;
    // Once more a change after both restarts, live.
    filed.push(console.file("第五件").await);
    wait_for(
        &browser,
        "a filing after the restarts",
        Duration::from_secs(5),
        &format!("#feed li[data-case='{}']", filed[4]),
    )
    .await;

    // The feed equals the log: every stored event once, none twice.
    let end = gridcase_tests::stream_end(&console.backends.nats).await;
    let mut shown = feed_sequences(&browser).await;
    shown.sort_unstable();
    assert_eq!(shown, (1..=end).collect::<Vec<_>>(), "the board shows each event of the log once");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_sent_after_the_session_expired_is_kept_through_sign_in_and_sent_once() {
    let console = Console::start().await;
    let browser = Browser::start().await;
    console.operator_at_a_registered_case(&browser, "路面塌陷").await;
    browser.fill("form[data-action=dispatch] input[name=unit]", UNIT).await;

    // While the operator types, their token runs out.
    let operator = Identity::new("operator-1", "command_centre", "cc-990101001", "990101001");
    let expired = gridcase_tests::identity::issuer().mint(
        &operator.principal,
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2),
        3600,
    );
    browser.client.delete_cookie("gridcase_session").await.expect("the session cookie goes");
    let cookie = fantoccini::cookies::Cookie::parse(format!(
        "gridcase_session={expired}; Path=/; Domain=127.0.0.1; SameSite=Strict; HttpOnly"
    ))
    .expect("a cookie");
    browser.client.add_cookie(cookie).await.expect("the expired session");
    browser.click("form[data-action=dispatch] button").await;

    // Sign-in, saying why, with what was typed carried along…
    wait_for(&browser, "the sign-in page", Duration::from_secs(5), "section.signin input[name='carry.unit']").await;
    assert!(browser.text("section.signin div.notice").await.contains("登录已过期"));
    assert_eq!(browser.value("section.signin input[name='carry.unit']").await, UNIT);
    browser.fill("section.signin input[name=subject]", "operator-1").await;
    browser.fill("section.signin input[name=organisation]", "cc-990101001").await;
    browser.fill("section.signin input[name=territory]", "990101001").await;
    browser.click("section.signin button[type=submit]").await;

    // …and offered again, filled in; sent, it dispatches the case once.
    wait_for(&browser, "the kept form", Duration::from_secs(5), "main form input[name=unit]").await;
    assert_eq!(browser.value("main form input[name=unit]").await, UNIT);
    browser.click("main form button[type=submit]").await;
    wait_for(&browser, "the case dispatched", Duration::from_secs(10), DISPATCHED).await;
    // The history comes from the read models, a moment behind the log.
    let page = browser.current_url().await;
    let dispatched = || async {
        let rows = browser.client.find_all(fantoccini::Locator::Css("section.history tr[data-type=dispatched]")).await;
        rows.expect("the history").len()
    };
    eventually_within("the dispatch in the history", Duration::from_secs(10), || async {
        browser.goto(&page).await;
        dispatched().await > 0
    })
    .await;
    assert_eq!(dispatched().await, 1, "dispatched once");
    browser.close().await;
}

/// Run `body` (an async function body) in the page; what it returns.
async fn in_page(browser: &Browser, body: &str) -> serde_json::Value {
    let script = format!("return (async () => {{ {body} }})();");
    browser.client.execute(&script, vec![]).await.expect("the script runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_s_photo_shows_as_a_thumbnail_opens_whole_and_is_reached_only_through_its_case() {
    let console = Console::start().await;
    let browser = Browser::start().await;
    let web = console.web();
    let photo = gridcase_tests::fixtures::photo_png(1200, 800);
    let uploaded = gridcase_tests::fixtures::upload(console.intake.endpoint(), "image/png", &photo).await;
    let case_id = CaseId::new_v7();
    let report = intake_api::FileCaseRequest {
        attachments: vec![uploaded.clone()],
        ..filing_at(case_id, "0201", console.clock.now())
    };
    intake_client(console.intake.endpoint()).await.file_case(worker().request(report)).await.expect("filed");
    let plain = console.file("没有照片的上报").await;

    browser.sign_in(web, "operator-1", "command_centre", "cc-990101001", "990101001").await;
    eventually_within("the photo on the case page", Duration::from_secs(10), || async {
        browser.goto(&web.url(&format!("/cases/{case_id}"))).await;
        browser.has("section.photos figure.photo img").await
    })
    .await;
    // The thumbnail decoded in the browser: 320 wide, the photo's shape kept.
    let size = in_page(
        &browser,
        "const img = document.querySelector('figure.photo img'); \
         if (!img.complete) await new Promise(r => img.addEventListener('load', r)); \
         return [img.naturalWidth, img.naturalHeight];",
    )
    .await;
    assert_eq!(size, serde_json::json!([320, 213]));
    browser.screenshot("case-photos").await;

    // The whole photo, byte for byte (its SHA-256, computed by the browser).
    let href = format!("/cases/{case_id}/attachments/{}", uploaded.sha256);
    let digest = |path: String| {
        let browser = &browser;
        async move {
            in_page(
                browser,
                &format!(
                    "const r = await fetch('{path}'); if (!r.ok) return r.status; \
                     const d = new Uint8Array(await crypto.subtle.digest('SHA-256', await r.arrayBuffer())); \
                     return [r.headers.get('content-type'), Array.from(d, b => b.toString(16).padStart(2, '0')).join('')];"
                ),
            )
            .await
        }
    };
    assert_eq!(digest(href.clone()).await, serde_json::json!(["image/png", uploaded.sha256]));
    // The same digest through a case that does not carry it: not found.
    assert_eq!(digest(format!("/cases/{plain}/attachments/{}", uploaded.sha256)).await, serde_json::json!(404));
    // Another township's operator: not found either, the page and the photo.
    browser.sign_in(web, "operator-2", "command_centre", "cc-990101201", "990101201").await;
    assert_eq!(digest(href).await, serde_json::json!(404));
    assert_eq!(
        digest(format!("/cases/{case_id}/attachments/{}/thumbnail", uploaded.sha256)).await,
        serde_json::json!(404)
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_signs_in_at_the_identity_provider_with_pkce_and_a_forged_way_back_is_refused() {
    // The console's address first: the provider registers its way back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_addr = listener.local_addr().unwrap();
    let provider = gridcase_tests::IdentityProvider::start(&format!("http://{web_addr}/signin/oidc/callback"));
    // The services trust the provider's key and issuer (and nothing else).
    let backends = Backends::start().await;
    let mut intake_config = TestIntake::config(&backends.nats.url());
    intake_config.auth.keys = vec![provider.service_key.clone()];
    intake_config.auth.issuer = provider.issuer.clone();
    intake_config.auth.dev_secret_file = None;
    let intake = TestIntake::spawn_with(intake_config, Arc::new(gridcase_process::SystemTimeSource)).await;
    let mut query_config = TestProjection::config(&backends.nats.url(), &backends.db.url);
    query_config.auth.keys = vec![provider.service_key.clone()];
    query_config.auth.issuer = provider.issuer.clone();
    query_config.auth.dev_secret_file = None;
    let projection = TestProjection::spawn_with(query_config, Arc::new(gridcase_process::SystemTimeSource)).await;
    let mut config = TestWeb::config(&intake.endpoint(), &projection.endpoint());
    config.oidc_issuer = Some(provider.issuer.clone());
    let web = TestWeb::spawn_on(config, listener).await;
    let browser = Browser::start().await;

    // A way back this browser did not start is refused.
    browser.goto(&web.url("/signin")).await;
    browser.click("form.oidc button").await;
    wait_for(&browser, "the provider's login page", Duration::from_secs(10), "input[name=login]").await;
    assert!(browser.current_url().await.starts_with(&provider.issuer), "{}", browser.current_url().await);
    browser.goto(&web.url("/signin/oidc/callback?code=stolen&state=forged")).await;
    assert!(browser.text("div.notice.refused").await.contains("不是本浏览器发起"));

    // Signing in there brings the operator back signed in, on the board.
    browser.click("form.oidc button").await;
    wait_for(&browser, "the provider's login page", Duration::from_secs(10), "input[name=login]").await;
    browser.fill("input[name=login]", "operator-1").await;
    browser.fill("input[name=password]", "any").await;
    browser.click("button[type=submit]").await;
    // The provider asks to consent to the console's scopes once.
    wait_for(&browser, "the consent page", Duration::from_secs(10), "input[name=prompt][value=consent]").await;
    browser.click("button[type=submit]").await;
    wait_for(&browser, "the board, signed in", Duration::from_secs(10), "body[data-live=on]").await;
    let who = browser.text("header.top .who").await;
    assert!(who.contains("operator-1") && who.contains("990101001"), "{who}");
    // The session is the provider's access token: the services take it.
    assert_eq!(browser.text("#count-open").await, "0");
    let url = browser.current_url().await;
    assert!(url.starts_with(&web.url("/")) && !url.contains("callback"), "{url}");
    browser.screenshot("signed-in-oidc").await;
    browser.close().await;
    drop(provider);
}

/// A resident's request in the console: its kind and channel on the case
/// page, the answer given through the partner system from there, the
/// callback recorded after closure, and the ledger's rates by kind.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_answers_a_resident_and_records_the_callback_in_the_console() {
    let console = Console::start().await;
    let browser = Browser::start().await;
    // The partner files a complaint with its key.
    let case_id = CaseId::new_v7();
    let mut request = filing_at(case_id, "0201", console.clock.now());
    request.request_kind = gridcase_proto::common::v1::RequestKind::Complaint as i32;
    let mut filing = tonic::Request::new(request);
    gridcase_tests::identity::Bearer::new(&gridcase_tests::identity::fixmystreet().key).attach(&mut filing);
    intake_client(console.intake.endpoint()).await.file_case(filing).await.expect("filed");
    console.register(case_id).await;

    browser.sign_in(console.web(), "operator-1", "command_centre", "cc-990101001", "990101001").await;
    browser.goto(&console.web().url(&format!("/cases/{case_id}"))).await;
    wait_for(&browser, "the case", Duration::from_secs(5), "article.case[data-state=CASE_STATE_REGISTERED]").await;
    wait_for(&browser, "its kind", Duration::from_secs(5), "dd.request-kind").await;
    assert_eq!(browser.text("dd.request-kind").await, "投诉");
    assert!(browser.text("dd.channel").await.contains("合作平台"), "{}", browser.text("dd.channel").await);
    assert!(!browser.has("form[data-action=callback]").await, "no callback before closure");

    // Answer through the partner system.
    browser.select("form[data-action=reply] select[name=method]", "REPLY_METHOD_PARTNER").await;
    browser.fill("form[data-action=reply] input[name=reason]", "您反映的路灯已报修，三日内修复").await;
    browser.click("form[data-action=reply] button").await;
    wait_for(&browser, "the answer recorded", Duration::from_secs(5), "div.notice.ok").await;
    assert!(browser.text("div.notice.ok").await.contains("答复"));
    browser.screenshot("resident-replied").await;

    // Dispatched, worked, verified: the callback form is offered.
    console.command_centre_dispatches(&centre(), case_id, UNIT).await;
    let unit = Identity::new("staff-1", "handling_unit", UNIT, UNIT);
    let mut cases = lifecycle::client(console.intake.endpoint()).await;
    let context = || lifecycle::context(case_id);
    cases.acknowledge(unit.request(cases_api::AcknowledgeRequest { context: context() })).await.unwrap();
    let resolve = cases_api::ResolveRequest { context: context(), summary: "已修复".into(), evidence: vec![] };
    cases.resolve(unit.request(resolve)).await.unwrap();
    let verify = cases_api::VerifyRequest { context: context(), passed: true, reason: String::new() };
    cases.verify(centre().request(verify)).await.unwrap();
    browser.goto(&console.web().url(&format!("/cases/{case_id}"))).await;
    wait_for(&browser, "the closed case", Duration::from_secs(5), "article.case[data-state=CASE_STATE_CLOSED]").await;
    browser.select("form[data-action=callback] select[name=outcome]", "FEEDBACK_BASICALLY_SATISFIED").await;
    browser.click("form[data-action=callback] button").await;
    wait_for(&browser, "the callback recorded", Duration::from_secs(5), "div.notice.ok").await;
    assert!(browser.text("div.notice.ok").await.contains("回访"));
    assert!(!browser.has("form[data-action=callback]").await, "reached: no second callback offered");

    // The ledger by kind of request: one callback due and done, satisfied.
    console.projection.as_ref().unwrap().caught_up_to(gridcase_tests::stream_end(&console.backends.nats).await).await;
    browser.goto(&console.web().url("/ledger?kind=kind&period=total&from=2026-12-01&to=2026-12-31")).await;
    wait_for(&browser, "the ledger", Duration::from_secs(5), "table.ledger-rows tbody tr").await;
    let row = browser.text("table.ledger-rows tbody tr").await;
    assert!(row.contains("投诉"), "{row}");
    assert!(browser.text("td.satisfaction-rate").await.starts_with("100.0%"), "{row}");
    browser.screenshot("ledger-by-kind").await;
    browser.close().await;
}
