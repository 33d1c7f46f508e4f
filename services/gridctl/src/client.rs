use anyhow::Context as _;
use gridcase_proto::cases::v1::case_service_client::CaseServiceClient;
use gridcase_proto::intake::v1::intake_service_client::IntakeServiceClient;
use std::path::PathBuf;

use gridcase_proto::client::ClientTls;
use tonic::transport::Channel;

/// Where gridcase is and who is acting.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The intake service (IntakeService and CaseService).
    #[arg(long, global = true, env = "GRIDCTL_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,

    /// The query service (read models: overdue reports, ledgers).
    #[arg(long, global = true, env = "GRIDCTL_QUERY_ADDR", default_value = "http://127.0.0.1:50052")]
    pub query_addr: String,

    /// The bearer token to act with (from your identity provider, or
    /// `gridctl token` against a development server).
    #[arg(long, global = true, env = "GRIDCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// CA certificate (PEM) the services' TLS certificates are checked
    /// against. Set, gridctl speaks TLS (give https:// addresses).
    #[arg(long, global = true, env = "GRIDCTL_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM), for services that require one (with --tls-key).
    #[arg(long, global = true, env = "GRIDCTL_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "GRIDCTL_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

impl Connection {
    /// A channel to `addr` (named `flag` in errors), over TLS when a CA is set.
    async fn connect(&self, addr: &str, flag: &str, what: &str) -> anyhow::Result<Channel> {
        let tls = ClientTls { ca: self.tls_ca.clone(), cert: self.tls_cert.clone(), key: self.tls_key.clone() };
        let endpoint = gridcase_proto::client::endpoint(addr, flag, &tls)?;
        endpoint.connect().await.with_context(|| format!("cannot reach {what} at {addr}"))
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        self.connect(&self.addr, "--addr", "gridcase").await
    }

    pub async fn query(
        &self,
    ) -> anyhow::Result<gridcase_proto::query::v1::query_service_client::QueryServiceClient<Channel>> {
        let channel = self.connect(&self.query_addr, "--query-addr", "the query service").await?;
        Ok(gridcase_proto::query::v1::query_service_client::QueryServiceClient::new(channel))
    }

    pub async fn cases(&self) -> anyhow::Result<CaseServiceClient<Channel>> {
        Ok(CaseServiceClient::new(self.channel().await?))
    }

    pub async fn intake(&self) -> anyhow::Result<IntakeServiceClient<Channel>> {
        Ok(IntakeServiceClient::new(self.channel().await?))
    }

    /// A request carrying the caller's bearer token.
    pub fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let token = self.token.as_deref().context(
            "no token: pass --token or set GRIDCTL_TOKEN \
             (on a development server: export GRIDCTL_TOKEN=$(gridctl token --subject … --role … --org … --territory …))",
        )?;
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", token.trim()).parse().context("the token must be printable ASCII")?,
        );
        Ok(request)
    }
}
