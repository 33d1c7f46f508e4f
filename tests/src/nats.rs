use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A nats-server of our own: own port, own store directory, fsync before
/// every acknowledgement. Killed and removed on drop.
pub struct NatsServer {
    binary: PathBuf,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    /// With the shipped users and permissions: each user's public key.
    users: Vec<(&'static str, String)>,
    /// A store kept after the server stops (the benchmarks' data sets).
    store: Option<PathBuf>,
}

/// The NATS users of the shipped `deploy/nats/permissions.conf`: the daily
/// ones, the break-glass `steward` and the `backup` account's.
pub const NATS_USERS: [&str; 6] = ["intake", "dispatcher", "projection", "operator", "steward", "backup"];

/// The nats-server binary to test against: `$GRIDCASE_NATS_SERVER`, else the
/// one `deploy/install-deps.sh` installs under `.tools/`, else `nats-server`
/// on PATH. It must be 2.12 or newer.
pub fn nats_server_binary() -> PathBuf {
    let candidates = [
        std::env::var_os("GRIDCASE_NATS_SERVER").map(PathBuf::from),
        Some(crate::workspace_root().join(".tools/nats/bin/nats-server")),
        Some(PathBuf::from("nats-server")),
    ];
    for candidate in candidates.into_iter().flatten() {
        if let Some(version) = version_of(&candidate) {
            if gridcase_eventlog::log::server_supported(&version) {
                return candidate;
            }
            eprintln!("skipping {} ({version}): gridcase needs nats-server 2.12 or newer", candidate.display());
        }
    }
    panic!(
        "no nats-server 2.12+ found: run deploy/install-deps.sh (installs it under .tools/) or set GRIDCASE_NATS_SERVER"
    );
}

fn version_of(binary: &Path) -> Option<String> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "nats-server: v2.14.6"
    text.split_whitespace().last().map(|v| v.trim_start_matches('v').to_owned())
}

impl NatsServer {
    /// Start a fresh server on a free port.
    pub fn start() -> Self {
        let binary = nats_server_binary();
        let dir = tempfile::Builder::new().prefix("gridcase-nats-").tempdir().expect("temp dir");
        let mut server = Self { binary, dir, port: 0, child: None, users: Vec::new(), store: None };
        server.launch();
        server
    }

    /// Start a server on a store directory of the caller's, which outlives
    /// it (a benchmark's data set, written once and measured many times).
    pub fn start_with_store(store: &Path) -> Self {
        let binary = nats_server_binary();
        let dir = tempfile::Builder::new().prefix("gridcase-nats-").tempdir().expect("temp dir");
        std::fs::create_dir_all(store).expect("the store directory");
        let mut server =
            Self { binary, dir, port: 0, child: None, users: Vec::new(), store: Some(store.to_path_buf()) };
        server.launch();
        server
    }

    /// Start a fresh server with the shipped users and permissions
    /// (`deploy/nats/permissions.conf`): a key pair per user, the seeds in
    /// files ([`NatsServer::credentials`]), no anonymous access.
    /// [`NatsServer::client`] connects as the operator.
    pub fn start_secured() -> Self {
        let binary = nats_server_binary();
        let dir = tempfile::Builder::new().prefix("gridcase-nats-").tempdir().expect("temp dir");
        std::fs::copy(
            crate::workspace_root().join("deploy/nats/permissions.conf"),
            dir.path().join("permissions.conf"),
        )
        .expect("copy the shipped permissions");
        let users = NATS_USERS
            .iter()
            .map(|user| {
                let pair = nkeys::KeyPair::new_user();
                std::fs::write(dir.path().join(format!("{user}.nk")), pair.seed().expect("seed")).expect("seed file");
                (*user, pair.public_key())
            })
            .collect();
        let mut server = Self { binary, dir, port: 0, child: None, users, store: None };
        server.launch();
        server
    }

    /// The seed file of one of [`NATS_USERS`] on a secured server.
    pub fn credentials(&self, user: &str) -> PathBuf {
        assert!(self.users.iter().any(|(name, _)| *name == user), "no NATS user {user} on this server");
        self.dir.path().join(format!("{user}.nk"))
    }

    /// Connect as one of [`NATS_USERS`] on a secured server.
    pub async fn connect_as(&self, user: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
        let seed = std::fs::read_to_string(self.credentials(user)).expect("seed file");
        async_nats::ConnectOptions::with_nkey(seed.trim().to_owned()).connect(self.url()).await
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id while it runs (for the benchmarks' CPU figures).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(|| self.dir.path().join("jetstream"))
    }

    fn launch(&mut self) {
        let ports_dir = self.dir.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).expect("ports dir");
        let port = if self.port == 0 { "-1".to_owned() } else { self.port.to_string() };
        let mut config = format!(
            "listen: \"127.0.0.1:{port}\"\nports_file_dir: {ports:?}\njetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n",
            ports = ports_dir.display().to_string(),
            store = self.store_dir().display().to_string(),
        );
        if !self.users.is_empty() {
            config.push_str("include permissions.conf\n");
        }
        let config_path = self.dir.path().join("nats-server.conf");
        std::fs::write(&config_path, config).expect("write nats config");
        let log = std::fs::File::create(self.dir.path().join("nats-server.log")).expect("log file");
        let mut command = Command::new(&self.binary);
        for (user, public) in &self.users {
            command.env(format!("GRIDCASE_NKEY_{}", user.to_uppercase()), public);
        }
        let child = command
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.port = self.wait_for_port(&ports_dir);
    }

    /// nats-server writes the port it bound into `ports_file_dir`.
    fn wait_for_port(&mut self, ports_dir: &Path) -> u16 {
        // A store of the caller's may hold a large data set to recover first.
        let patience = if self.store.is_some() { Duration::from_secs(1800) } else { Duration::from_secs(20) };
        let deadline = Instant::now() + patience;
        loop {
            let found = std::fs::read_dir(ports_dir).ok().and_then(|entries| {
                entries.flatten().find_map(|entry| {
                    let text = std::fs::read_to_string(entry.path()).ok()?;
                    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
                    let url = json["nats"][0].as_str()?;
                    url.rsplit(':').next()?.parse::<u16>().ok()
                })
            });
            if let Some(port) = found {
                return port;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default();
                panic!("nats-server exited with {status} on start:\n{log}");
            }
            assert!(Instant::now() < deadline, "nats-server did not report its port within {patience:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill the server at once (a crash: no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the server as SIGTERM does (it writes its indexes), waiting for it.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// A client of the server (as the operator on a secured one).
    pub async fn client(&self) -> async_nats::Client {
        if self.users.is_empty() {
            async_nats::connect(self.url()).await.expect("connect to test nats")
        } else {
            self.connect_as("operator").await.expect("connect to test nats as the operator")
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if self.store.is_some() {
            // A data set kept for later: stop cleanly, so the next start
            // need not rebuild the store's indexes.
            self.terminate();
        }
        self.kill();
    }
}
