//! Calling gridcase's gRPC services: an endpoint for an address, over TLS
//! when a CA certificate is given (with a client certificate for services
//! that require one). gridctl and the web console connect the same way.

use std::path::PathBuf;

use anyhow::Context as _;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// TLS towards the services: the CA their certificates are checked
/// against, and optionally a client certificate and its key.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// An endpoint for `addr` (named `flag` in errors), over TLS when a CA is
/// set (give https:// addresses then). Connect it at once (`connect`) or on
/// first use (`connect_lazy`).
pub fn endpoint(addr: &str, flag: &str, tls: &ClientTls) -> anyhow::Result<Endpoint> {
    let mut endpoint = Endpoint::from_shared(addr.to_owned()).with_context(|| format!("{flag} {addr}"))?;
    if let Some(ca) = &tls.ca {
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(config).with_context(|| format!("TLS for {addr}"))?;
    }
    Ok(endpoint)
}
