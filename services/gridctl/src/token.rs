//! `gridctl token` (a development token from a server that has a
//! development secret) and `gridctl whoami` (who the server takes you for).

use std::time::Duration;

use gridcase_proto::auth::v1 as api;
use gridcase_proto::auth::v1::auth_service_client::AuthServiceClient;
use serde_json::json;

use crate::client::Connection;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// DEVELOPMENT ONLY: get a signed token for an identity from a server
    /// started with --auth-dev-secret-file (deploy/up.sh does). Production
    /// servers refuse; their tokens come from the identity provider.
    /// Prints the token: `export GRIDCTL_TOKEN=$(gridctl token …)`.
    Token {
        /// Who acts (a staff id, recorded on every event).
        #[arg(long)]
        subject: String,
        /// grid_worker, grid_leader, handling_unit, command_centre, county_auditor or admin.
        #[arg(long)]
        role: String,
        /// The organisation acted for (e.g. cc-990101001, unit.property.990101001).
        #[arg(long)]
        org: String,
        /// A grid (15/17 digits) for grid workers and leaders, a township (9) for a
        /// command centre, a county (6) for county auditors and admins, the unit id
        /// for a handling unit.
        #[arg(long)]
        territory: String,
        /// How long the token lives (at most the server's maximum, 12h by default).
        #[arg(long, default_value = "8h", value_parser = parse_duration)]
        lifetime: Duration,
    },
    /// Who the server takes the current token for.
    Whoami,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text.parse().map_err(|e| format!("{text:?} is not a duration like 8h: {e}"))?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} must not be negative"))
}

pub async fn run(command: Command, connection: &Connection, json: bool) -> anyhow::Result<()> {
    let mut client = AuthServiceClient::new(connection.channel().await?);
    match command {
        Command::Token { subject, role, org, territory, lifetime } => {
            let response = client
                .issue_dev_token(api::IssueDevTokenRequest {
                    subject,
                    role,
                    organisation: org,
                    territory,
                    lifetime_seconds: u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX),
                })
                .await
                .map_err(output::refusal)?
                .into_inner();
            if json {
                let expires = response.expires_at.map(|t| t.seconds).unwrap_or_default();
                println!("{}", json!({ "token": response.token, "expires_at_unix": expires }));
            } else {
                println!("{}", response.token);
            }
        }
        Command::Whoami => {
            let caller = client
                .who_am_i(connection.request(api::WhoAmIRequest {})?)
                .await
                .map_err(output::refusal)?
                .into_inner();
            if json {
                println!(
                    "{}",
                    json!({ "subject": caller.subject, "role": caller.role, "organisation": caller.organisation, "territory": caller.territory })
                );
            } else {
                println!(
                    "{} ({}) of {}, territory {}",
                    caller.subject, caller.role, caller.organisation, caller.territory
                );
            }
        }
    }
    Ok(())
}
