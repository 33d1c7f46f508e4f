//! Who is calling. Until authentication lands (its own issue), the caller
//! states their identity in gRPC metadata; the interceptor parses it once and
//! every handler reads it from the request's extensions. The actor of every
//! event comes from here, so replacing these headers by a verified token
//! changes this module only.

use gridcase_domain::{OrgCode, Role};
use tonic::{Request, Status};

pub const PERSON_HEADER: &str = "x-gridcase-person";
pub const ROLE_HEADER: &str = "x-gridcase-role";
pub const ORGANISATION_HEADER: &str = "x-gridcase-organisation";

/// The identity a request acts under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub person: String,
    pub role: Role,
    pub organisation: OrgCode,
}

impl Caller {
    /// Add this identity to an outgoing request (clients and tests).
    pub fn attach<T>(&self, request: &mut Request<T>) {
        let metadata = request.metadata_mut();
        metadata.insert(PERSON_HEADER, self.person.parse().expect("ascii person id"));
        metadata.insert(ROLE_HEADER, self.role.as_str().parse().expect("ascii role"));
        metadata.insert(ORGANISATION_HEADER, self.organisation.as_str().parse().expect("ascii org code"));
    }

    /// The caller a handler runs for; set by [`interceptor`].
    pub fn of<T>(request: &Request<T>) -> Result<&Caller, Status> {
        request.extensions().get::<Caller>().ok_or_else(|| Status::unauthenticated("no caller identity"))
    }
}

fn valid_person(person: &str) -> bool {
    (1..=64).contains(&person.len())
        && person.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

/// A tonic interceptor that parses the caller's identity or refuses the call
/// with UNAUTHENTICATED naming the missing or malformed header.
#[allow(clippy::result_large_err)]
pub fn interceptor(mut request: Request<()>) -> Result<Request<()>, Status> {
    let header = |name: &str| -> Result<String, Status> {
        let value = request
            .metadata()
            .get(name)
            .ok_or_else(|| Status::unauthenticated(format!("metadata {name} is required")))?;
        value.to_str().map(str::to_owned).map_err(|_| Status::unauthenticated(format!("metadata {name} must be ASCII")))
    };
    let person = header(PERSON_HEADER)?;
    if !valid_person(&person) {
        return Err(Status::unauthenticated(format!("metadata {PERSON_HEADER} must be 1-64 letters, digits or -_.:@")));
    }
    let role = Role::parse(&header(ROLE_HEADER)?).ok_or_else(|| {
        Status::unauthenticated(format!(
            "metadata {ROLE_HEADER} must be one of GRID_WORKER, GRID_LEADER, HANDLING_UNIT, COMMAND_CENTRE, COUNTY_OFFICE, SYSTEM"
        ))
    })?;
    let organisation = OrgCode::parse(&header(ORGANISATION_HEADER)?)
        .map_err(|e| Status::unauthenticated(format!("metadata {ORGANISATION_HEADER} {e}")))?;
    request.extensions_mut().insert(Caller { person, role, organisation });
    Ok(request)
}
