//! The Open311 gateway in-process, in front of a test's intake and query
//! services.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::{Running, workspace_root};

pub struct TestOpen311 {
    pub addr: SocketAddr,
    running: Running,
}

impl TestOpen311 {
    pub fn config(intake: &str, query: &str) -> gridcase_open311::Config {
        let mut config = gridcase_open311::Config::defaults();
        config.intake_url = intake.to_owned();
        config.query_url = query.to_owned();
        config.reference_dir = workspace_root().join("deploy/reference");
        config.no_metrics = true;
        config.shutdown_grace = Duration::from_secs(2);
        config
    }

    pub async fn spawn(config: gridcase_open311::Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let app = gridcase_open311::Application::build(config, listener).await.expect("the gateway builds");
        let addr = app.local_addr().expect("addr");
        Self { addr, running: Running::start(|shutdown| app.run(shutdown)) }
    }

    /// The endpoint, as Open311 clients are configured with it.
    pub fn base(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.running.stop().await
    }
}
