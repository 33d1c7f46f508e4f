//! A PostgreSQL server of a test's own (own data directory, own port), so a
//! test can crash it (`kill -9` of the whole server) and start it again. The
//! machine's PostgreSQL binaries are used (`deploy/install-deps.sh` installs
//! them); when the tests run as root the server runs as the `postgres` user,
//! which PostgreSQL requires.

use crate::free_port;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct OwnPostgres {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    as_postgres: bool,
    child: Option<Child>,
}

/// The newest installed PostgreSQL's binaries (`$GRIDCASE_PG_BIN` first).
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GRIDCASE_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL installed under /usr/lib/postgresql (run deploy/install-deps.sh) or GRIDCASE_PG_BIN set")
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server binary").1
}

impl OwnPostgres {
    /// initdb a fresh cluster (superuser `gridcase`, trust on loopback) and start it.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("gridcase-pg-").tempdir().expect("temp dir");
        let as_postgres = std::fs::metadata("/proc/self").expect("/proc/self").uid() == 0;
        if as_postgres {
            let status = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().expect("chown");
            assert!(status.success(), "chown of the test cluster's directory");
        }
        let mut server = Self { bin, dir, port: free_port(), as_postgres, child: None };
        let data = server.data_dir();
        let output = server
            .command("initdb")
            .args(["-U", "gridcase", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        server.launch();
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command of the server's binaries, as the user the server runs as.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("setpriv");
            command.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// A URL of the server's `postgres` database, as the superuser.
    pub fn url(&self) -> String {
        format!("postgres://gridcase@127.0.0.1:{}/postgres", self.port)
    }

    fn launch(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("postgres.log"))
                .expect("log file");
            let mut child = self
                .command("postgres")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .arg("-k")
                .arg(self.dir.path())
                .stdout(Stdio::null())
                .stderr(log)
                // Its own process group, so a crash takes every backend with it.
                .process_group(0)
                .spawn()
                .expect("postgres starts");
            if self.wait_ready(&mut child, deadline) {
                self.child = Some(child);
                return;
            }
            // Right after a crash the old server's shared memory can still be
            // held for a moment: try again.
            assert!(Instant::now() < deadline, "postgres did not start: {}", self.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_ready(&self, child: &mut Child, deadline: Instant) -> bool {
        loop {
            if child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Crash the server: SIGKILL to the postmaster and every backend.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The shell's own kill (no procps needed) signals the whole group.
            let _ = Command::new("sh").arg("-c").arg(format!("kill -KILL -{}", child.id())).status();
            let _ = child.kill(); // the postmaster at least, should the group signal have failed
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port and data (crash recovery runs).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.kill();
    }
}
