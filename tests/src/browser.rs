//! The console in a real browser: [`TestWeb`] runs gridcase-web in-process
//! against the test's own intake and query services; [`Browser`] drives
//! Debian's headless Chromium through its chromedriver (WebDriver, with the
//! fantoccini client), and saves screenshots under target/screenshots/.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::net::TcpListener;

use crate::{Running, free_port, workspace_root};

/// The console running in this process.
pub struct TestWeb {
    pub addr: SocketAddr,
    running: Running,
}

impl TestWeb {
    pub fn config(intake: &str, query: &str) -> gridcase_web::Config {
        let mut config = gridcase_web::Config::defaults();
        config.intake_url = intake.to_owned();
        config.query_url = query.to_owned();
        config.no_metrics = true;
        config.shutdown_grace = Duration::from_secs(2);
        config
    }

    pub async fn spawn(config: gridcase_web::Config) -> Self {
        Self::spawn_on(config, TcpListener::bind("127.0.0.1:0").await.expect("bind")).await
    }

    /// On a given listener (a restarted console on the same address).
    pub async fn spawn_on(config: gridcase_web::Config, listener: TcpListener) -> Self {
        let app = gridcase_web::Application::build(config, listener).await.expect("the console builds");
        let addr = app.local_addr().expect("addr");
        Self { addr, running: Running::start(|shutdown| app.run(shutdown)) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.running.stop().await
    }
}

/// Headless Chromium, driven over WebDriver; chromedriver is stopped and
/// the browser closed on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Start chromedriver on a free port and open a browser window of
    /// 1600×1000 in Chinese. The test command installs both
    /// (deploy/install-deps.sh --browser).
    pub async fn start() -> Self {
        let port = free_port();
        // In a process group of its own, with the browser it starts: the
        // whole group goes when the test ends, however it ends.
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (deploy/install-deps.sh --browser installs Debian's chromium-driver)");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1600,1000", "--lang=zh-CN", "--force-device-scale-factor=1"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::new(connector.clone()).capabilities(capabilities.clone()).connect(&webdriver).await {
                Ok(client) => break client,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("chromedriver on port {port} gave no browser: {error}"),
            }
        };
        Self { client, driver }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The text of the first element `css` finds (waiting up to 10 s for it).
    pub async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.expect("element text")
    }

    /// The first element `css` finds, waiting up to 10 s for it.
    pub async fn element(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(error) => panic!("no {css} on {}: {error}", self.current_url().await),
        }
    }

    /// The current value of the form field `css`.
    pub async fn value(&self, css: &str) -> String {
        self.element(css).await.prop("value").await.expect("a value").unwrap_or_default()
    }

    /// Whether some element matches `css` now.
    pub async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    pub async fn current_url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default()
    }

    /// Type `text` into the field `css`, replacing what is there.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no field {css}: {e}"));
        field.clear().await.expect("clear the field");
        field.send_keys(text).await.expect("type into the field");
    }

    pub async fn click(&self, css: &str) {
        self.element(css).await.click().await.unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Choose `value` in the select box `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let select = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no select {css}: {e}"));
        select.select_by_value(value).await.unwrap_or_else(|e| panic!("choosing {value} in {css}: {e}"));
    }

    /// Save a screenshot of the window as target/screenshots/`name`.png; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = workspace_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Sign in through the console's development sign-in.
    pub async fn sign_in(&self, web: &TestWeb, subject: &str, role: &str, organisation: &str, territory: &str) {
        self.goto(&web.url("/signin")).await;
        self.fill("input[name=subject]", subject).await;
        self.select("select[name=role]", role).await;
        self.fill("input[name=organisation]", organisation).await;
        self.fill("input[name=territory]", territory).await;
        self.click("section.signin button[type=submit]").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.current_url().await.contains("/signin") {
            assert!(std::time::Instant::now() < deadline, "signing in as {role} did not leave the sign-in page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Close the browser and stop chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// SIGKILL to chromedriver's process group: it, the browser and every
    /// helper process the browser started.
    fn kill_all(&mut self) {
        let _ = Command::new("sh").arg("-c").arg(format!("kill -KILL -{}", self.driver.id())).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// An OpenID Connect provider for the console's sign-in: panva's
/// oidc-provider under Node.js (`tests/oidc/provider.mjs`; the test command
/// installs Node.js and the package), stopped on drop. It signs its access
/// tokens with a key it makes at start, whose public half it writes for the
/// services to trust.
pub struct IdentityProvider {
    pub issuer: String,
    /// `KID:RS256:PEM_FILE`, as the services' GRIDCASE_AUTH_KEYS takes it.
    pub service_key: String,
    process: Child,
    _dir: tempfile::TempDir,
}

impl IdentityProvider {
    /// Start it, registering the console's `redirect_uri`.
    pub fn start(redirect_uri: &str) -> Self {
        use std::io::BufRead as _;
        let dir = tempfile::tempdir().expect("a directory for the provider's key");
        let oidc = workspace_root().join("tests/oidc");
        assert!(
            oidc.join("node_modules/oidc-provider").exists(),
            "tests/oidc/node_modules is missing: deploy/install-deps.sh --browser installs it (npm ci)"
        );
        let mut process = Command::new("node")
            .arg(oidc.join("provider.mjs"))
            .args(["--redirect-uri", redirect_uri, "--out"])
            .arg(dir.path())
            .current_dir(&oidc)
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (deploy/install-deps.sh --browser installs Node.js)");
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(process.stdout.take().expect("stdout"));
        stdout.read_line(&mut line).expect("its first line");
        // Whatever it prints later goes nowhere, but must have somewhere to
        // go: a closed pipe would end the provider at its next write.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let ready: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("the provider did not start: {line:?}"));
        let field = |name: &str| ready[name].as_str().expect("a string").to_owned();
        let service_key = format!("{}:RS256:{}", field("kid"), field("key"));
        Self { issuer: field("issuer"), service_key, process, _dir: dir }
    }
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
