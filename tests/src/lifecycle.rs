//! Driving the lifecycle API as people in different roles.

use gridcase_domain::CaseId;
use gridcase_proto::cases::v1 as api;
use gridcase_proto::cases::v1::case_service_client::CaseServiceClient;
use tonic::transport::Channel;

use crate::Identity;

pub type Client = CaseServiceClient<Channel>;

pub async fn client(endpoint: String) -> Client {
    CaseServiceClient::connect(endpoint).await.expect("connect to the case service")
}

/// The command centre of 城关街道 (township 990101001).
pub fn centre() -> Identity {
    Identity::new("command_centre-01", "command_centre", "cc-990101001", "990101001")
}

/// A handling unit: its territory is itself.
pub fn unit(code: &str) -> Identity {
    Identity::new("handling_unit-01", "handling_unit", code, code)
}

pub fn request<T>(who: &Identity, message: T) -> tonic::Request<T> {
    who.request(message)
}

/// A context with a fresh command id.
pub fn context(case_id: CaseId) -> Option<api::CommandContext> {
    Some(api::CommandContext {
        case_id: case_id.to_string(),
        command_id: uuid::Uuid::now_v7().to_string(),
        expected_version: None,
    })
}
