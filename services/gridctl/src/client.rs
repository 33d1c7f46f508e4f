use anyhow::Context as _;
use gridcase_proto::cases::v1::case_service_client::CaseServiceClient;
use gridcase_proto::intake::v1::intake_service_client::IntakeServiceClient;
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
}

impl Connection {
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        tonic::transport::Endpoint::from_shared(self.addr.clone())
            .with_context(|| format!("--addr {}", self.addr))?
            .connect()
            .await
            .with_context(|| format!("cannot reach gridcase at {}", self.addr))
    }

    pub async fn query(
        &self,
    ) -> anyhow::Result<gridcase_proto::query::v1::query_service_client::QueryServiceClient<Channel>> {
        let channel = tonic::transport::Endpoint::from_shared(self.query_addr.clone())
            .with_context(|| format!("--query-addr {}", self.query_addr))?
            .connect()
            .await
            .with_context(|| format!("cannot reach the query service at {}", self.query_addr))?;
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
