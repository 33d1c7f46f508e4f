//! TLS on the gRPC listeners: with a certificate configured, intake speaks
//! only TLS (a plain-text client is refused), requires a client certificate
//! from its CA when one is configured (mutual TLS for service-to-service
//! calls), and `gridctl` reaches it over TLS. Certificates are made for the
//! test (rcgen), a CA, a server and a client.

use std::path::PathBuf;
use std::sync::Arc;

use gridcase_process::SystemTimeSource;
use gridcase_proto::auth::v1::WhoAmIRequest;
use gridcase_proto::auth::v1::auth_service_client::AuthServiceClient;
use gridcase_tests::fixtures::worker;
use gridcase_tests::{NatsServer, TestIntake, service_binaries};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for localhost and 127.0.0.1, a client certificate.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "gridcase test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        write("ca.pem", &ca_cert.pem());
        let issuer = Issuer::new(ca_params, ca_key);
        for (name, sans) in [
            ("server", vec!["localhost".to_owned(), "127.0.0.1".to_owned()]),
            ("client", vec!["gridcase-dispatcher".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans).unwrap().signed_by(&key, &issuer).unwrap();
            write(&format!("{name}.pem"), &cert.pem());
            write(&format!("{name}-key.pem"), &key.serialize_pem());
        }
        // A client certificate from a CA the server does not trust.
        let stranger_key = KeyPair::generate().unwrap();
        let stranger = CertificateParams::new(vec!["stranger".to_owned()]).unwrap().self_signed(&stranger_key).unwrap();
        write("stranger.pem", &stranger.pem());
        write("stranger-key.pem", &stranger_key.serialize_pem());
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

async fn who_am_i(channel: Channel) -> Result<String, tonic::Status> {
    let mut client = AuthServiceClient::new(channel);
    let answer = client.who_am_i(worker().request(WhoAmIRequest {})).await?;
    Ok(answer.into_inner().subject)
}

async fn tls_channel(pki: &Pki, url: &str, client: Option<&str>) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.read("ca.pem")));
    if let Some(name) = client {
        tls = tls.identity(Identity::from_pem(pki.read(&format!("{name}.pem")), pki.read(&format!("{name}-key.pem"))));
    }
    Endpoint::from_shared(url.to_owned()).unwrap().tls_config(tls)?.connect().await
}

#[tokio::test]
async fn with_a_certificate_intake_speaks_only_tls_and_checks_client_certificates() {
    let pki = Pki::new();
    let nats = NatsServer::start();
    let mut config = TestIntake::config(&nats.url());
    config.tls.tls_cert = Some(pki.path("server.pem"));
    config.tls.tls_key = Some(pki.path("server-key.pem"));
    config.tls.tls_client_ca = Some(pki.path("ca.pem"));
    let intake = TestIntake::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let port = intake.addr.port();

    // Plain text: refused (the connection fails, or the call does).
    let plain = match Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await {
        Ok(channel) => who_am_i(channel).await.err().map(|e| e.to_string()),
        Err(error) => Some(error.to_string()),
    };
    assert!(plain.is_some(), "a plain-text call was served");

    // TLS without a client certificate, or with one from another CA: refused.
    for client in [None, Some("stranger")] {
        let refused = match tls_channel(&pki, &format!("https://localhost:{port}"), client).await {
            Ok(channel) => who_am_i(channel).await.err().map(|e| e.to_string()),
            Err(error) => Some(error.to_string()),
        };
        assert!(refused.is_some(), "served a client with {client:?}");
    }

    // TLS with the CA's client certificate, by name and by address.
    for host in ["localhost", "127.0.0.1"] {
        let channel = tls_channel(&pki, &format!("https://{host}:{port}"), Some("client")).await.unwrap();
        assert_eq!(who_am_i(channel).await.unwrap(), "gw-0042");
    }

    // gridctl over TLS, with and without its client certificate.
    // (A child process awaited without blocking the runtime intake serves on.)
    let gridctl = async |with_client_cert: bool| {
        let mut command = tokio::process::Command::new(service_binaries().join("gridctl"));
        command
            .args(["--addr", &format!("https://localhost:{port}"), "--tls-ca"])
            .arg(pki.path("ca.pem"))
            .arg("whoami")
            .env("GRIDCTL_TOKEN", worker().token());
        if with_client_cert {
            command.arg("--tls-cert").arg(pki.path("client.pem")).arg("--tls-key").arg(pki.path("client-key.pem"));
        }
        command.output().await.unwrap()
    };
    let served = gridctl(true).await;
    assert!(served.status.success(), "{}", String::from_utf8_lossy(&served.stderr));
    assert!(String::from_utf8_lossy(&served.stdout).contains("gw-0042"), "{}", String::from_utf8_lossy(&served.stdout));
    assert!(!gridctl(false).await.status.success(), "gridctl without a client certificate was served");
    intake.stop().await.unwrap();
}

#[test]
fn a_key_without_a_certificate_is_refused_at_the_command_line() {
    let output = std::process::Command::new(service_binaries().join("gridcase-intake"))
        .args(["--tls-key", "/nonexistent/key.pem"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--tls-cert"), "{stderr}");
}

/// One HTTPS request with hyper's client over rustls, trusting `ca`:
/// the status, the headers, or the connection's failure.
async fn https_get(
    addr: std::net::SocketAddr,
    path: &str,
    ca: Option<&[u8]>,
) -> Result<(u16, http::HeaderMap), String> {
    use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for cert in CertificateDer::pem_slice_iter(ca) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, format!("localhost:{}", addr.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    Ok((response.status().as_u16(), response.headers().clone()))
}

#[tokio::test]
async fn with_a_certificate_the_console_speaks_only_https_with_secure_cookies_and_strict_transport() {
    let pki = Pki::new();
    let mut config = gridcase_tests::TestWeb::config("http://127.0.0.1:9", "http://127.0.0.1:9");
    config.tls_cert = Some(pki.path("server.pem"));
    config.tls_key = Some(pki.path("server-key.pem"));
    let web = gridcase_tests::TestWeb::spawn(config).await;
    let ca = pki.read("ca.pem");

    // The sign-in page, over HTTPS, tells the browser to keep to HTTPS.
    let (status, headers) = https_get(web.addr, "/signin", Some(&ca)).await.expect("HTTPS");
    assert_eq!(status, 200);
    assert_eq!(headers.get("strict-transport-security").unwrap(), "max-age=31536000");
    // Its cookies are sent over HTTPS only.
    let (status, headers) = https_get(web.addr, "/lang?to=en", Some(&ca)).await.expect("HTTPS");
    assert_eq!(status, 303);
    let cookie = headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");

    // A client that does not trust the certificate's CA is refused; so is plain HTTP.
    let refused = https_get(web.addr, "/signin", None).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer") || refused.contains("certificate"), "{refused}");
    let mut plain = tokio::net::TcpStream::connect(web.addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    plain.write_all(b"GET /signin HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "plain HTTP answered: {}", String::from_utf8_lossy(&answer));

    // Stopped, the address is free for the next start.
    let addr = web.addr;
    web.stop().await.unwrap();
    tokio::net::TcpListener::bind(addr).await.expect("the console's address is free again");
}
