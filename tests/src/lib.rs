//! Test support: real servers, started per test, removed on drop.
//!
//! * [`NatsServer`] starts its own `nats-server` (2.12 or newer) on a free
//!   port with its own store directory and `sync_interval: always`, exactly
//!   as `deploy/nats/nats-server.conf` configures production.
//! * [`TestIntake`] runs the intake service in-process on `127.0.0.1:0`.

pub mod browser;
pub mod gate;
pub mod identity;
pub mod lifecycle;
pub mod nats;
pub mod open311;
pub mod postgres;
pub mod scenario;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use gridcase_intake::{Application, Config};
use gridcase_process::shutdown::ShutdownTrigger;
use gridcase_process::{Shutdown, SystemTimeSource, TimeSource};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use browser::{Browser, IdentityProvider, TestWeb};
pub use identity::Identity;
pub use nats::NatsServer;
pub use postgres::OwnPostgres;
pub use scenario::{given, given_case};

/// What most integration tests start from: their own nats-server, their
/// own database, the event log opened on that server.
pub struct Backends {
    pub nats: NatsServer,
    pub db: TestDatabase,
    pub log: gridcase_eventlog::EventLog,
}

impl Backends {
    pub async fn start() -> Self {
        let nats = NatsServer::start();
        let db = TestDatabase::create().await;
        let settings = gridcase_eventlog::StreamSettings::default();
        let log = gridcase_eventlog::EventLog::open(nats.client().await, settings).await.expect("the event log opens");
        Self { nats, db, log }
    }
}

/// Append `body` to `subject` past gridcase, as another writer would (a
/// newer version, a script): a plain JetStream publish expecting the
/// subject's last sequence to be `expected`. Its stream sequence.
pub async fn append_foreign(
    nats: &NatsServer,
    subject: &gridcase_envelope::CaseSubject,
    body: &[u8],
    expected: u64,
) -> u64 {
    use async_nats::jetstream::message::PublishMessage;
    let js = async_nats::jetstream::new(nats.client().await);
    let message = PublishMessage::build().payload(body.to_vec().into()).expected_last_subject_sequence(expected);
    let ack = js.send_publish(subject.to_string(), message).await.expect("publish").await.expect("stored");
    ack.sequence
}

/// A Prometheus metrics page (`GET /metrics` on `addr`) as `name{labels}` →
/// value; `None` while nothing answers there.
pub async fn scrape_metrics(addr: SocketAddr) -> Option<std::collections::BTreeMap<String, f64>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.ok()?;
    let mut page = String::new();
    stream.read_to_string(&mut page).await.ok()?;
    let body = page.split_once("\r\n\r\n")?.1;
    Some(
        body.lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| line.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(f64::NAN))))
            .collect(),
    )
}

/// A port nothing listens on now (for servers started as processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Where the service binaries are (`GRIDCASE_BIN_DIR`, else target/debug);
/// tests that run them as processes need them built first (`cargo build
/// --bins`; deploy/test.sh does).
pub fn service_binaries() -> PathBuf {
    let dir = std::env::var_os("GRIDCASE_BIN_DIR").map_or_else(|| workspace_root().join("target/debug"), PathBuf::from);
    for binary in ["gridcase-intake", "gridcase-dispatcher", "gridcase-projection", "gridcase-web", "gridctl"] {
        assert!(
            dir.join(binary).exists(),
            "{} is missing: build the service binaries first (cargo build --bins; deploy/test.sh does)",
            dir.join(binary).display()
        );
    }
    dir
}

/// The workspace root (for deploy/ files).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

/// A service task running in this process: stopped as SIGTERM would, or
/// aborted as a crash would; asked to stop when dropped.
struct Running {
    trigger: Option<ShutdownTrigger>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    fn start<F>(run: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (trigger, shutdown) = Shutdown::new();
        Self { trigger: Some(trigger), task: Some(tokio::spawn(run(shutdown))) }
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(trigger) = self.trigger.take() {
            trigger.trigger();
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }

    fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(trigger) = self.trigger.take() {
            trigger.trigger();
        }
    }
}

/// An intake service running in this process.
pub struct TestIntake {
    pub addr: SocketAddr,
    running: Running,
}

impl TestIntake {
    /// The configuration a test starts from: the shipped demo reference data,
    /// the given NATS server, short timeouts.
    pub fn config(nats_url: &str) -> Config {
        let mut config = Config::defaults();
        config.common.nats_url = nats_url.to_owned();
        config.reference_dir = workspace_root().join("deploy/reference");
        config.rules.policy = workspace_root().join("deploy/policy/policy.toml");
        config.rules.calendar_dir = workspace_root().join("deploy/calendar");
        config.common.publish_timeout = std::time::Duration::from_secs(2);
        config.common.shutdown_grace = std::time::Duration::from_secs(5);
        config.auth.dev_secret_file = Some(identity::dev_secret_file());
        config.auth.api_keys_file = Some(identity::api_key_file());
        config.keys.master_key_file = Some(identity::master_key_file());
        // The metrics recorder is process-wide: tests of the endpoint run the binaries.
        config.no_metrics = true;
        config
    }

    pub async fn spawn(nats_url: &str) -> Self {
        Self::spawn_with(Self::config(nats_url), Arc::new(SystemTimeSource)).await
    }

    pub async fn spawn_with(config: Config, clock: Arc<dyn TimeSource>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let app = Application::build(config, listener, clock).await.expect("intake builds");
        let addr = app.local_addr().expect("local addr");
        Self { addr, running: Running::start(|shutdown| app.run(shutdown)) }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Ask the service to stop, as SIGTERM would, and wait until it has.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.running.stop().await
    }
}

pub mod fixtures;

/// A dispatcher running in this process.
pub struct TestDispatcher {
    pub health_addr: SocketAddr,
    idle: tokio::sync::watch::Receiver<gridcase_dispatcher::service::Idle>,
    snapshots: tokio::sync::watch::Receiver<gridcase_dispatcher::service::Snapshots>,
    running: Running,
}

impl TestDispatcher {
    /// The shipped policy, calendar and reference data; no metrics endpoint;
    /// a fast tick so an advanced test clock is noticed quickly.
    pub fn config(nats_url: &str) -> gridcase_dispatcher::Config {
        let mut config = gridcase_dispatcher::Config::defaults();
        config.common.nats_url = nats_url.to_owned();
        config.rules.policy = workspace_root().join("deploy/policy/policy.toml");
        config.rules.calendar_dir = workspace_root().join("deploy/calendar");
        config.reference_dir = workspace_root().join("deploy/reference");
        config.no_metrics = true;
        config.tick = std::time::Duration::from_millis(20);
        config.common.publish_timeout = std::time::Duration::from_secs(2);
        config
    }

    pub async fn spawn_with(config: gridcase_dispatcher::Config, clock: Arc<dyn TimeSource>) -> Self {
        Self::try_spawn_with(config, clock).await.expect("dispatcher builds")
    }

    pub async fn try_spawn_with(
        config: gridcase_dispatcher::Config,
        clock: Arc<dyn TimeSource>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let app = gridcase_dispatcher::Application::build(config, listener, clock).await?;
        let health_addr = app.health_addr()?;
        let idle = app.idle();
        let snapshots = app.snapshots();
        Ok(Self { health_addr, idle, snapshots, running: Running::start(|shutdown| app.run(shutdown)) })
    }

    /// Where this instance resumed from, and what its last saved snapshot covers.
    pub fn snapshots(&self) -> gridcase_dispatcher::service::Snapshots {
        *self.snapshots.borrow()
    }

    /// Wait until the dispatcher, its clock at `at` or later, has taken
    /// every step due for every event in the stream and has nothing in
    /// flight. A test that then finds no new event knows none was due: it
    /// asserts that nothing happened without guessing how long to wait.
    pub async fn settled_at(&mut self, at: jiff::Timestamp, nats: &NatsServer) {
        self.settled_within(at, nats, std::time::Duration::from_secs(20)).await
    }

    /// [`Self::settled_at`], waiting up to `patience` (a benchmark's large data set).
    pub async fn settled_within(&mut self, at: jiff::Timestamp, nats: &NatsServer, patience: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let end = stream_end(nats).await;
            tokio::time::timeout_at(
                deadline,
                self.idle.wait_for(|idle| idle.at.is_some_and(|seen| seen >= at) && idle.sequence >= end),
            )
            .await
            .unwrap_or_else(|_| panic!("the dispatcher did not settle at {at} (stream end {end}) within {patience:?}"))
            .expect("the dispatcher is running");
            // Settled at the end as it was; if that end has not moved since
            // (no step of its own landed meanwhile), it is final.
            if stream_end(nats).await == end {
                return;
            }
        }
    }

    /// Stop as SIGTERM would and wait until it has.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.running.stop().await
    }

    /// Stop at once, as a crash would: the task is aborted mid-step.
    pub fn kill(mut self) {
        self.running.kill();
    }
}

/// Acting on cases straight through the case store, as the services do:
/// load the case, decide, commit after its head.
pub mod act {
    use gridcase_domain::{ActorRole, CaseId, Command, Event, GridCode};
    use gridcase_envelope::Head;
    use gridcase_envelope::schema::Actor;
    use gridcase_envelope::{CaseSubject, StoredEvent};
    use gridcase_eventlog::EventLog;
    use gridcase_eventlog::store::{CaseStore, Committed, Provenance};
    use jiff::Timestamp;

    pub fn subject(grid: &str, case_id: CaseId) -> CaseSubject {
        CaseSubject::for_grid(&GridCode::parse(grid).expect("grid"), &case_id)
    }

    /// The decoded history of a case.
    pub async fn events(log: &EventLog, subject: &CaseSubject) -> Vec<(StoredEvent, Event)> {
        log.history(subject)
            .await
            .expect("history")
            .into_iter()
            .map(|p| {
                let event = p.event.decode().expect("decodable");
                (p.event, event)
            })
            .collect()
    }

    /// `role` in `organisation` does `command` on the case at `now`.
    pub async fn command(
        log: &EventLog,
        subject: &CaseSubject,
        command: Command,
        role: ActorRole,
        organisation: &str,
        now: Timestamp,
    ) -> anyhow::Result<u64> {
        let store = CaseStore::new(log.clone());
        let case_id = subject.case_id();
        let (head, state) = match store.load_subject(case_id, subject.clone()).await? {
            Some(loaded) => (loaded.head, Some(loaded.case)),
            None => (Head::new_case(case_id, subject.clone()), None),
        };
        let event = gridcase_domain::decide(state.as_ref(), &command, now)?;
        let provenance = Provenance {
            event_id: uuid::Uuid::now_v7(),
            occurred_at: now,
            actor: Actor { person: format!("{role}-1").to_lowercase(), role, organisation: organisation.into() },
            command_id: None,
        };
        match store.commit(&head, &event, provenance).await? {
            Committed::Stored(positioned) => Ok(positioned.stream_sequence),
            Committed::AlreadyStored(sequence) => Ok(sequence),
        }
    }
}

/// A database of its own for one test, on the PostgreSQL the machine runs
/// (`GRIDCASE_TEST_DATABASE_URL`, default the role and database
/// `deploy/install-deps.sh` creates); dropped afterwards.
pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin_url = std::env::var("GRIDCASE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://gridcase:gridcase@127.0.0.1:5432/gridcase".into());
        let name = format!("gridcase_test_{}", uuid::Uuid::new_v4().simple());
        let admin = gridcase_projection::store::connect(&admin_url, "public", 1)
            .await
            .expect("PostgreSQL reachable (run deploy/install-deps.sh)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').expect("database URL with a database name");
        Self { url: format!("{base}/{name}"), admin_url, name }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Dropping needs async IO: do it on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                if let Ok(admin) = gridcase_projection::store::connect(&admin_url, "public", 1).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// The projection and query service running in this process.
pub struct TestProjection {
    pub addr: SocketAddr,
    pub pool: sqlx::PgPool,
    running: Running,
}

impl TestProjection {
    pub fn config(nats_url: &str, database_url: &str) -> gridcase_projection::Config {
        let mut config = gridcase_projection::Config::defaults();
        config.common.nats_url = nats_url.to_owned();
        config.database_url = database_url.to_owned();
        config.rules.policy = workspace_root().join("deploy/policy/policy.toml");
        config.rules.calendar_dir = workspace_root().join("deploy/calendar");
        config.reference_dir = workspace_root().join("deploy/reference");
        config.common.shutdown_grace = std::time::Duration::from_secs(5);
        config.database_connections = 4;
        config.auth.dev_secret_file = Some(identity::dev_secret_file());
        config.auth.api_keys_file = Some(identity::api_key_file());
        config.keys.master_key_file = Some(identity::master_key_file());
        config.no_metrics = true;
        config
    }

    pub async fn spawn_with(config: gridcase_projection::Config, clock: Arc<dyn TimeSource>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::spawn_on(config, listener, clock).await
    }

    /// On a given listener (a restarted service on the address its clients know).
    pub async fn spawn_on(
        config: gridcase_projection::Config,
        listener: TcpListener,
        clock: Arc<dyn TimeSource>,
    ) -> Self {
        let app =
            gridcase_projection::service::Application::build(config, listener, clock).await.expect("projection builds");
        let addr = app.local_addr().expect("addr");
        let pool = app.pool().clone();
        Self { addr, pool, running: Running::start(|shutdown| app.run(shutdown)) }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Wait (bounded) until the read models reflect the stream up to `sequence`.
    pub async fn caught_up_to(&self, sequence: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (position, _) = gridcase_projection::store::position(&self.pool).await.expect("position");
            if position >= sequence {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "projection stuck at {position}, wanted {sequence}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.running.stop().await
    }

    /// Stop at once, as a crash would.
    pub fn kill(mut self) {
        self.running.kill();
    }
}

/// A query-service client whose every call carries `who`'s token.
pub type QueryClient = gridcase_proto::query::v1::query_service_client::QueryServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, identity::Bearer>,
>;

pub async fn query_client(endpoint: String, who: &Identity) -> QueryClient {
    let channel =
        tonic::transport::Endpoint::from_shared(endpoint).expect("endpoint").connect().await.expect("connect");
    gridcase_proto::query::v1::query_service_client::QueryServiceClient::with_interceptor(channel, who.bearer())
}

/// Wait until `condition` holds, looking again every 20 ms; after 30 s the
/// test fails naming `what` it waited for. The one way tests wait for
/// something they can observe (never a fixed sleep).
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, std::time::Duration::from_secs(30), condition).await
}

/// [`eventually`], waiting up to `patience` (what a server does on a
/// schedule of its own, such as a mirror's retries).
pub async fn eventually_within<F, Fut>(what: &str, patience: std::time::Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "waited {patience:?} for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether the gRPC health service at `endpoint` says `service` ("" for the
/// whole server) is SERVING.
pub async fn serving(endpoint: &str, service: &str) -> bool {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let Ok(channel) = tonic::transport::Endpoint::from_shared(endpoint.to_owned()).expect("endpoint").connect().await
    else {
        return false;
    };
    match HealthClient::new(channel).check(HealthCheckRequest { service: service.to_owned() }).await {
        Ok(answer) => answer.into_inner().status == ServingStatus::Serving as i32,
        Err(_) => false,
    }
}

/// The last sequence of the case stream.
pub async fn stream_end(nats: &NatsServer) -> u64 {
    let js = async_nats::jetstream::new(nats.client().await);
    let mut stream = js.get_stream("GRIDCASE_CASES").await.expect("stream");
    stream.info().await.expect("info").state.last_sequence
}
