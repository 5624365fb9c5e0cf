//! gRPC over TLS: auth-service serving with `GRPC_TLS_CERT`/`GRPC_TLS_KEY`
//! (and `GRPC_TLS_CLIENT_CA`), clients configured as the gateway and the
//! other services are (`GRPC_TLS_CA`...), certificates made by throwaway
//! CAs at test time, and the binary refusing settings it cannot use.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use chat_common::grpc::{ClientTlsArgs, ServerTlsArgs};
use chat_common::identity::ServiceAuth;
use chat_common::{Secret, Shutdown};
use chat_proto::auth::v1::RegisterRequest;
use chat_proto::auth::v1::auth_service_client::AuthServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{JWT_SECRET, PASSWORD, SERVICE_TOKEN};

/// A certificate authority that exists only for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> anyhow::Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
        })
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses) and its key,
    /// both PEM, usable as a server's or a client's.
    fn issue(&self, names: &[&str]) -> anyhow::Result<(String, String)> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// PEM files in a directory that lives as long as the test.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> anyhow::Result<Files> {
        Ok(Files {
            dir: tempfile::tempdir()?,
        })
    }

    fn write(&self, name: &str, contents: &str) -> anyhow::Result<String> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents)?;
        Ok(path.display().to_string())
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A server certificate for `names` issued by `ca`, as server settings.
    fn server(&self, ca: &Ca, names: &[&str]) -> anyhow::Result<ServerTlsArgs> {
        let (cert, key) = ca.issue(names)?;
        Ok(ServerTlsArgs {
            grpc_tls_cert: Some(self.write("server.pem", &cert)?),
            grpc_tls_key: Some(self.write("server-key.pem", &key)?),
            grpc_tls_client_ca: None,
        })
    }

    /// Client settings trusting `ca`.
    fn client(&self, name: &str, ca: &Ca) -> anyhow::Result<ClientTlsArgs> {
        Ok(ClientTlsArgs {
            grpc_tls_ca: Some(self.write(&format!("{name}-ca.pem"), &ca.pem())?),
            ..ClientTlsArgs::default()
        })
    }
}

/// auth-service on port 0 with `tls`, on a fresh SQLite database.
struct TlsServer {
    addr: SocketAddr,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    async fn start(tls: &ServerTlsArgs) -> anyhow::Result<TlsServer> {
        let dir = tempfile::tempdir()?;
        let mut config = chat_auth_service::Config::new(
            chat_common::db::sqlite_url(dir.path(), "auth.db"),
            Secret::new(JWT_SECRET),
            Secret::new(SERVICE_TOKEN),
        );
        config.grpc_tls = tls.load()?;
        anyhow::ensure!(config.grpc_tls.is_some(), "TLS is not configured");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let task = tokio::spawn(chat_auth_service::serve(config, listener, shutdown.clone()));
        Ok(TlsServer {
            addr,
            shutdown,
            task,
            _dir: dir,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }
}

fn channel(addr: SocketAddr, tls: &ClientTlsArgs) -> anyhow::Result<Channel> {
    chat_common::grpc::channel_with_tls(&format!("http://{addr}"), tls.load()?.as_ref())
}

/// The server's overall health as `channel` gets it: the status, or the
/// failed call.
async fn health(channel: Channel) -> Result<i32, tonic::Status> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(response.into_inner().status)
}

/// Health over `channel` until it answers SERVING (the server migrates its
/// database first), for at most 20 s.
async fn until_serving(channel: &Channel) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match health(channel.clone()).await {
            Ok(status) if status == ServingStatus::Serving as i32 => return Ok(()),
            result => anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "not SERVING within 20 s: {result:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `code` is what tonic answers for a connection that failed
/// below gRPC: UNAVAILABLE when connecting fails, UNKNOWN or INTERNAL when
/// the peer drops the connection after it was set up, which depends on
/// whether the drop arrives before or after the request is written, and
/// CANCELLED when it arrives while the request is in flight.
fn transport_failure(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
    )
}

/// A failed call's status with the chain of its causes, where rustls says
/// why a handshake failed.
fn refusal(result: Result<i32, tonic::Status>) -> anyhow::Result<(Code, String)> {
    let status = match result {
        Ok(status) => anyhow::bail!("the call succeeded (health {status})"),
        Err(status) => status,
    };
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(&status);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    Ok((status.code(), text))
}

#[tokio::test]
async fn a_tls_client_trusting_the_ca_is_served_and_a_plaintext_one_is_not() -> anyhow::Result<()> {
    let files = Files::new()?;
    let ca = Ca::new("chat test CA")?;
    let server = TlsServer::start(&files.server(&ca, &["localhost", "127.0.0.1"])?).await?;
    let tls = channel(server.addr, &files.client("good", &ca)?)?;
    until_serving(&tls).await?;

    // A real call, with the service token as the credential inside TLS.
    let mut auth = AuthServiceClient::with_interceptor(
        tls.clone(),
        ServiceAuth::new(Secret::new(SERVICE_TOKEN))?,
    );
    let registered = auth
        .register(RegisterRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
            display_name: None,
        })
        .await?
        .into_inner();
    let user = registered.user.context("no user in the response")?;
    assert_eq!(user.username, "alice");
    // TLS does not replace the service token: without it, still refused.
    let unauthenticated = AuthServiceClient::new(tls)
        .register(RegisterRequest {
            username: "bob".into(),
            password: PASSWORD.into(),
            display_name: None,
        })
        .await
        .map(|_| ());
    assert_eq!(
        unauthenticated.err().map(|s| s.code()),
        Some(Code::Unauthenticated)
    );

    // Plaintext HTTP/2 to the TLS port never reaches a service.
    let plain = chat_common::grpc::channel(&format!("http://{}", server.addr))?;
    let (code, _) = refusal(health(plain).await)?;
    assert!(transport_failure(code), "{code:?}");
    assert!(transport_failure(code), "{code:?}");

    // An https:// address without a CA to verify it is refused up front.
    let https = chat_common::grpc::channel(&format!("https://{}", server.addr));
    assert_eq!(
        https.err().map(|e| e.to_string()),
        Some(format!(
            "https://{} is an https:// address but GRPC_TLS_CA is not set: give the CA \
             bundle its certificate chains to",
            server.addr
        ))
    );
    server.stop().await
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused() -> anyhow::Result<()> {
    let files = Files::new()?;
    let ca = Ca::new("chat test CA")?;
    let other = Ca::new("some other CA")?;
    let server = TlsServer::start(&files.server(&ca, &["localhost", "127.0.0.1"])?).await?;
    until_serving(&channel(server.addr, &files.client("good", &ca)?)?).await?;

    let wrong = channel(server.addr, &files.client("other", &other)?)?;
    let (code, reason) = refusal(health(wrong).await)?;
    assert!(transport_failure(code), "{code:?}");
    assert!(
        reason.contains("invalid peer certificate: UnknownIssuer"),
        "{reason}"
    );
    server.stop().await
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_unless_that_name_is_expected()
-> anyhow::Result<()> {
    let files = Files::new()?;
    let ca = Ca::new("chat test CA")?;
    // The certificate names the service, not the address dialled.
    let server = TlsServer::start(&files.server(&ca, &["auth-service.chat.svc"])?).await?;

    let by_address = channel(server.addr, &files.client("good", &ca)?)?;
    let (code, reason) = refusal(health(by_address).await)?;
    assert!(transport_failure(code), "{code:?}");
    assert!(
        reason.contains(
            "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; \
             certificate is only valid for DnsName(\"auth-service.chat.svc\")"
        ),
        "{reason}"
    );

    let by_name = ClientTlsArgs {
        grpc_tls_server_name: Some("auth-service.chat.svc".into()),
        ..files.client("good", &ca)?
    };
    until_serving(&channel(server.addr, &by_name)?).await?;
    server.stop().await
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_are_served() -> anyhow::Result<()> {
    let files = Files::new()?;
    let ca = Ca::new("chat test CA")?;
    let clients_ca = Ca::new("chat clients CA")?;
    let server = TlsServer::start(&ServerTlsArgs {
        grpc_tls_client_ca: Some(files.write("clients-ca.pem", &clients_ca.pem())?),
        ..files.server(&ca, &["127.0.0.1"])?
    })
    .await?;
    let (cert, key) = clients_ca.issue(&["gateway"])?;
    let with_cert = ClientTlsArgs {
        grpc_tls_client_cert: Some(files.write("client.pem", &cert)?),
        grpc_tls_client_key: Some(files.write("client-key.pem", &key)?),
        ..files.client("good", &ca)?
    };
    until_serving(&channel(server.addr, &with_cert)?).await?;

    // TLS 1.3 sends the server's refusal after the client's handshake
    // ends: it arrives as the connection's failure, or, when the request
    // is already in flight, as the connection closed under it (while
    // reading, or as a broken pipe while writing).
    let without = channel(server.addr, &files.client("good", &ca)?)?;
    let (code, reason) = refusal(health(without).await)?;
    assert!(transport_failure(code), "{code:?}");
    assert!(
        reason.contains("received fatal alert: CertificateRequired")
            || reason.ends_with("connection closed")
            || reason.ends_with("stream closed because of a broken pipe"),
        "{reason}"
    );

    let (cert, key) = ca.issue(&["gateway"])?;
    let foreign = ClientTlsArgs {
        grpc_tls_client_cert: Some(files.write("foreign.pem", &cert)?),
        grpc_tls_client_key: Some(files.write("foreign-key.pem", &key)?),
        ..files.client("good", &ca)?
    };
    let (code, reason) = refusal(health(channel(server.addr, &foreign)?).await)?;
    assert!(transport_failure(code), "{code:?}");
    assert!(
        reason.contains("received fatal alert: UnknownCA"),
        "{reason}"
    );
    server.stop().await
}

/// The auth-service binary with `env` (and nothing else of this process's
/// environment), a fresh SQLite database and a free port.
fn binary(dir: &tempfile::TempDir, port: u16, env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-service"));
    command
        .env_clear()
        .env("AUTH_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            chat_common::db::sqlite_url(dir.path(), "auth.db"),
        )
        .env("SERVICE_TOKEN", SERVICE_TOKEN)
        .env("JWT_SECRET", JWT_SECRET)
        .envs(env.iter().copied())
        .kill_on_drop(true);
    command
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test]
async fn the_binary_serves_tls_from_its_settings() -> anyhow::Result<()> {
    let files = Files::new()?;
    let ca = Ca::new("chat test CA")?;
    let server = files.server(&ca, &["127.0.0.1"])?;
    let (cert, key) = (
        server.grpc_tls_cert.context("no cert")?,
        server.grpc_tls_key.context("no key")?,
    );
    let port = free_port()?;
    let mut child = binary(
        &files.dir,
        port,
        &[("GRPC_TLS_CERT", &cert), ("GRPC_TLS_KEY", &key)],
    )
    .spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let served = until_serving(&channel(addr, &files.client("good", &ca)?)?).await;
    let plain = health(chat_common::grpc::channel(&format!("http://{addr}"))?).await;
    child.start_kill()?;
    child.wait().await?;
    served?;
    let (code, _) = refusal(plain)?;
    assert!(transport_failure(code), "{code:?}");
    Ok(())
}

/// What the binary prints when it refuses to start, after checking it
/// exited with a failure and did not panic.
async fn refused_start(env: &[(&str, &str)]) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        binary(&dir, free_port()?, env).output(),
    )
    .await
    .context("the binary did not exit")??;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(stderr)
}

#[tokio::test]
async fn the_binary_refuses_to_start_with_tls_settings_it_cannot_use() -> anyhow::Result<()> {
    let files = Files::new()?;
    let ca = Ca::new("chat test CA")?;
    let server = files.server(&ca, &["127.0.0.1"])?;
    let cert = server.grpc_tls_cert.context("no cert")?;
    let key = server.grpc_tls_key.context("no key")?;
    let missing = files.path("missing-key.pem");
    let garbage = files.write("garbage.pem", "not a certificate\n")?;
    let other_key = files.write("other-key.pem", &ca.issue(&["x"])?.1)?;

    let stderr = refused_start(&[("GRPC_TLS_CERT", &cert), ("GRPC_TLS_KEY", &missing)]).await?;
    assert!(
        stderr.contains(&format!("Error: GRPC_TLS_KEY: cannot read {missing}")),
        "{stderr}"
    );
    let stderr = refused_start(&[("GRPC_TLS_CERT", &cert)]).await?;
    assert!(
        stderr.contains("Error: GRPC_TLS_CERT is set but GRPC_TLS_KEY is not"),
        "{stderr}"
    );
    let stderr = refused_start(&[("GRPC_TLS_CERT", &garbage), ("GRPC_TLS_KEY", &key)]).await?;
    assert!(
        stderr.contains(&format!(
            "Error: GRPC_TLS_CERT: {garbage} holds no PEM certificate"
        )),
        "{stderr}"
    );
    let stderr = refused_start(&[("GRPC_TLS_CERT", &cert), ("GRPC_TLS_KEY", &garbage)]).await?;
    assert!(
        stderr.contains(&format!(
            "Error: GRPC_TLS_KEY: {garbage} holds no PEM private key"
        )),
        "{stderr}"
    );
    let stderr = refused_start(&[("GRPC_TLS_CERT", &cert), ("GRPC_TLS_KEY", &other_key)]).await?;
    assert!(
        stderr.contains(&format!(
            "Error: GRPC_TLS_CERT ({cert}) and GRPC_TLS_KEY ({other_key}) do not make a TLS identity"
        )),
        "{stderr}"
    );
    Ok(())
}
