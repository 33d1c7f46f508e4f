//! The services the console calls, as the signed-in user: every request
//! carries their bearer token, so the services decide what they may see
//! and do. A refusal comes back as a [`Refusal`] in words a person reads.

use gridcase_proto::auth::v1::auth_service_client::AuthServiceClient;
use gridcase_proto::cases::v1::case_service_client::CaseServiceClient;
use gridcase_proto::query::v1::query_service_client::QueryServiceClient;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use crate::config::Config;
use crate::i18n::Lang;

/// Clients of the intake service (cases, sign-in) and the query service
/// (reads, the live watch). Channels connect on first use and reconnect by
/// themselves, so the console starts, and stays up, while a service is away.
#[derive(Clone)]
pub struct Upstream {
    pub cases: CaseServiceClient<Channel>,
    pub auth: AuthServiceClient<Channel>,
    pub query: QueryServiceClient<Channel>,
    intake_channel: Channel,
    query_channel: Channel,
}

impl Upstream {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let tls = config.upstream_tls();
        let intake = gridcase_proto::client::endpoint(&config.intake_url, "--intake-url", &tls)?.connect_lazy();
        let query = gridcase_proto::client::endpoint(&config.query_url, "--query-url", &tls)?.connect_lazy();
        Ok(Self {
            cases: CaseServiceClient::new(intake.clone()),
            auth: AuthServiceClient::new(intake.clone()),
            query: QueryServiceClient::new(query.clone()),
            intake_channel: intake,
            query_channel: query,
        })
    }

    pub fn intake_channel(&self) -> Channel {
        self.intake_channel.clone()
    }

    pub fn query_channel(&self) -> Channel {
        self.query_channel.clone()
    }
}

/// `message` as a request of the user whose bearer token is `token`.
pub fn as_user<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = MetadataValue::try_from(format!("Bearer {token}")) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Why a service refused, for a person: a sentence, and the fields at fault.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
    /// (field, what is wrong), from google.rpc.BadRequest.
    pub fields: Vec<(String, String)>,
}

impl Refusal {
    pub fn from_status(status: &tonic::Status, lang: Lang) -> Self {
        let fields = status
            .get_details_bad_request()
            .map(|bad| bad.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
            .unwrap_or_default();
        let rule = status
            .get_details_precondition_failure()
            .map(|failure| failure.violations.into_iter().map(|v| v.description).collect::<Vec<_>>().join("; "));
        let message = match status.code() {
            Code::Aborted => lang.t("conflict").to_owned(),
            Code::NotFound => lang.t("not_found").to_owned(),
            Code::PermissionDenied => format!("{} ({})", lang.t("forbidden"), status.message()),
            Code::Unavailable | Code::DeadlineExceeded => lang.t("unavailable").to_owned(),
            Code::InvalidArgument => lang.t("invalid").to_owned(),
            Code::FailedPrecondition => rule.filter(|r| !r.is_empty()).unwrap_or_else(|| status.message().to_owned()),
            Code::Unauthenticated => lang.t("session_expired").to_owned(),
            _ => status.message().to_owned(),
        };
        Self { code: status.code(), message, fields }
    }

    /// The HTTP status a page answering with this refusal has.
    pub fn http_status(&self) -> http::StatusCode {
        use http::StatusCode as H;
        match self.code {
            Code::InvalidArgument => H::UNPROCESSABLE_ENTITY,
            Code::NotFound => H::NOT_FOUND,
            Code::PermissionDenied => H::FORBIDDEN,
            Code::Aborted | Code::FailedPrecondition | Code::AlreadyExists => H::CONFLICT,
            Code::Unauthenticated => H::UNAUTHORIZED,
            Code::Unavailable | Code::DeadlineExceeded => H::SERVICE_UNAVAILABLE,
            _ => H::BAD_GATEWAY,
        }
    }
}
