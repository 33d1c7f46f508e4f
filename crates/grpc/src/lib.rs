//! The gRPC edge every gridcase server shares: the server skeleton
//! ([`server`]: the authentication and metrics layers, a span per call,
//! health, reflection, draining, TLS), who the caller is and what they may
//! do ([`auth`]), failures as gRPC statuses with machine-readable details
//! ([`status`]), the gRPC metrics ([`metrics`]) and a caller's trace
//! continued ([`trace`]).

pub mod auth;
pub mod metrics;
pub mod server;
pub mod status;
pub mod trace;

pub use auth::{Access, AuthArgs, AuthLayer, Authenticator};
pub use server::{GrpcServer, GrpcWebArgs, ServerTlsArgs};
pub use status::Violations;
