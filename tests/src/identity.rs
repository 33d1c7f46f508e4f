//! Callers for tests: identities with real tokens, signed with the test
//! development secret that every service a test starts is configured with.

use std::path::PathBuf;
use std::sync::OnceLock;

use gridcase_auth::{DevIssuer, Principal, VerifierSettings};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

/// The development secret of the services tests start.
pub const TEST_DEV_SECRET: &str = "gridcase-tests-development-secret-do-not-use-elsewhere";

/// A file holding [`TEST_DEV_SECRET`]: one file shared by every test
/// process.
pub fn dev_secret_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| shared_file("gridcase-test-dev-secret", TEST_DEV_SECRET)).clone()
}

/// A file in the temporary directory holding `content`, readable by its
/// owner only, written (atomically, by rename) when missing or different.
fn shared_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(name);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
        let staged = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&staged, content).unwrap_or_else(|e| panic!("write {}: {e}", staged.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
        }
        std::fs::rename(&staged, &path).unwrap_or_else(|e| panic!("put {} in place: {e}", path.display()));
    }
    path
}

/// The master key file of the services tests start (one key, `test-1`).
pub const TEST_MASTER_KEYS: &str =
    "# gridcase tests only\ntest-1 5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f\n";

/// A file holding [`TEST_MASTER_KEYS`]; like [`dev_secret_file`], one file
/// shared by every test process.
pub fn master_key_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| shared_file("gridcase-test-master-keys", TEST_MASTER_KEYS)).clone()
}

/// The master keys of [`master_key_file`], for tests that open sealed data.
pub fn master_keys() -> std::sync::Arc<gridcase_envelope::sealing::MasterKeys> {
    std::sync::Arc::new(gridcase_envelope::sealing::MasterKeys::parse(TEST_MASTER_KEYS).expect("test master keys"))
}

/// The issuer of test tokens (the services' default issuer and audience).
pub fn issuer() -> DevIssuer {
    DevIssuer::new(TEST_DEV_SECRET.as_bytes(), &VerifierSettings::default())
}

/// Someone calling gridcase in a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
}

impl Identity {
    /// `role` as tokens name it (grid_worker, command_centre, …).
    pub fn new(subject: &str, role: &str, organisation: &str, territory: &str) -> Self {
        let principal = Principal::new(subject, role, organisation, territory).expect("a valid test identity");
        Self { principal }
    }

    pub fn subject(&self) -> &str {
        &self.principal.subject
    }

    /// A fresh token, valid for an hour from now.
    pub fn token(&self) -> String {
        issuer().mint(&self.principal, jiff::Timestamp::now(), 3600)
    }

    /// The `authorization` metadata value for [`Self::token`].
    pub fn bearer(&self) -> Bearer {
        Bearer::new(&self.token())
    }

    /// Add a token to an outgoing request.
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        self.bearer().attach(request);
    }

    /// Wrap a message in a request carrying a token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.attach(&mut request);
        request
    }
}

/// An interceptor adding one bearer token to every call of a client.
#[derive(Debug, Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    pub fn new(token: &str) -> Self {
        Self(format!("Bearer {token}").parse().expect("ASCII token"))
    }

    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        request.metadata_mut().insert("authorization", self.0.clone());
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.attach(&mut request);
        Ok(request)
    }
}

/// Partner systems of the services tests start, and their API keys.
pub struct Partner {
    pub subject: &'static str,
    pub territory: &'static str,
    /// The key the partner sends (`gck_<id>_<secret>`).
    pub key: String,
}

/// A FixMyStreet-like platform for the whole demo county.
pub fn fixmystreet() -> Partner {
    Partner {
        subject: "partner-fixmystreet",
        territory: "990101",
        key: gridcase_auth::apikey::compose("fms-test", &[0x5a; 32]),
    }
}

/// The 12345 hotline's platform, for one township only.
pub fn hotline() -> Partner {
    Partner {
        subject: "partner-12345",
        territory: "990101001",
        key: gridcase_auth::apikey::compose("hotline-test", &[0x3c; 32]),
    }
}

/// The partners' key file every service a test starts reads.
pub fn api_key_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let lines: String = [fixmystreet(), hotline()]
            .iter()
            .map(|p| {
                let id = p.key.trim_start_matches(gridcase_auth::apikey::PREFIX).split_once('_').unwrap().0;
                format!(
                    "{id} {} {} org-{} {}\n",
                    gridcase_auth::apikey::digest(&p.key),
                    p.subject,
                    p.subject,
                    p.territory
                )
            })
            .collect();
        shared_file("gridcase-test-api-keys", &format!("# gridcase tests only\n{lines}"))
    })
    .clone()
}
