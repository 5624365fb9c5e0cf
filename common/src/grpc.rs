//! Serving a gRPC server the way every chat service does: the service's own
//! routes plus `grpc.health.v1` and reflection (v1 and v1alpha, since many
//! clients, Python grpcio-reflection and older grpcurl among them, speak
//! only v1alpha), until shutdown.
//!
//! Health follows the service's dependencies: each [`Probe`] is checked
//! every [`PROBE_INTERVAL`], and while any fails every name reports
//! NOT_SERVING, so load balancers and the gateway's `/readyz` stop sending
//! calls that could only fail. Once shutdown starts, health stays
//! NOT_SERVING while in-flight calls finish.
//!
//! TLS is optional on both ends and off by default. A server given a
//! certificate and key ([`ServerTlsArgs`]) serves TLS only; with a client
//! CA it also requires client certificates (mutual TLS). A client given a
//! CA bundle ([`ClientTlsArgs`]) speaks TLS to every address, verifying the
//! server's certificate and name. The service token stays the application
//! credential either way.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::Shutdown;

/// A TLS handshake taking longer than this fails: a peer that stalls it
/// must not hold a connection open indefinitely.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often dependencies are probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe that takes longer than this counts as failed: a dependency that
/// slow would time out the calls that need it anyway.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

type Check = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// A named check of one dependency the service cannot answer without
/// (its database, its Redis).
#[derive(Clone)]
pub struct Probe {
    pub name: &'static str,
    check: Arc<Check>,
}

impl Probe {
    pub fn new<F, Fut>(name: &'static str, check: F) -> Probe
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Probe {
            name,
            check: Arc::new(move || Box::pin(check())),
        }
    }

    async fn run(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, (self.check)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }
}

/// Serves `routes` with health and reflection on `listener` until
/// `shutdown` is cancelled, then finishes in-flight calls. Every name in
/// `service_names` (and the server as a whole, `""`) reports SERVING while
/// every probe passes, NOT_SERVING otherwise and from shutdown on. With
/// `tls`, every connection must complete a TLS handshake first; plaintext
/// ones are dropped.
pub async fn serve(
    listener: TcpListener,
    shutdown: Shutdown,
    mut routes: RoutesBuilder,
    service_names: &[&str],
    probes: Vec<Probe>,
    tls: Option<&ServerTls>,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    set_all(&reporter, service_names, ServingStatus::Serving).await;
    let reflection_v1 = reflection(service_names).build_v1()?;
    let reflection_v1alpha = reflection(service_names).build_v1alpha()?;
    routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let names: Vec<String> = service_names.iter().map(|s| (*s).to_owned()).collect();
    let stopping = {
        let shutdown = shutdown.clone();
        async move {
            watch_dependencies(&reporter, &names, &probes, &shutdown).await;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            set_all(&reporter, &names, ServingStatus::NotServing).await;
        }
    };
    crate::metrics::install();
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls.config.clone())
            .context("cannot set up gRPC TLS (GRPC_TLS_CERT, GRPC_TLS_KEY)")?;
    }
    server
        // h2 closes a connection (GOAWAY ENHANCE_YOUR_CALM,
        // "too_many_data_frames") when the small DATA frames it holds unread
        // exceed half the connection's receive window: with the default
        // 64 KiB window that is ~200 queued unary calls. A gateway whose
        // 19,000 clients reconnect at once queues thousands, and the
        // connection carrying all of them went down, failing every call
        // on it. A larger window raises that bound to ~50,000 calls.
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .layer(crate::metrics::GrpcMetricsLayer::server())
        .layer(crate::trace_context::TraceContextLayer)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming(listener), stopping)
        .await?;
    Ok(())
}

/// The HTTP/2 receive window of a whole connection to a gRPC server.
const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// The server's accepted connections, with TCP_NODELAY set: without it a
/// reply written in more than one piece (headers, data, trailers) waits for
/// the caller's delayed ACK, up to 40 ms. The builder's own `tcp_nodelay`
/// only applies to listeners it binds itself.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Probes the dependencies until shutdown, keeping health in step with
/// them; logs each change once.
async fn watch_dependencies(
    reporter: &HealthReporter,
    names: &[String],
    probes: &[Probe],
    shutdown: &Shutdown,
) {
    if probes.is_empty() {
        shutdown.cancelled().await;
        return;
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let results = futures::future::join_all(probes.iter().map(Probe::run)).await;
        let failures: Vec<String> = probes
            .iter()
            .zip(results)
            .filter_map(|(probe, result)| result.err().map(|e| format!("{}: {e}", probe.name)))
            .collect();
        let now_serving = failures.is_empty();
        if now_serving != serving {
            if now_serving {
                tracing::info!("dependencies reachable again: health SERVING");
            } else {
                tracing::warn!(failures = ?failures, "a dependency is down: health NOT_SERVING");
            }
            let status = if now_serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_all(reporter, &names, status).await;
            serving = now_serving;
        }
    }
}

/// Reflection of every chat proto (so any message type can be described),
/// listing only the services this server serves: the descriptor set holds
/// every service of the system, and a client listing one server must not be
/// told of another's.
fn reflection<'a>(service_names: &[&str]) -> tonic_reflection::server::Builder<'a> {
    let served = service_names.iter().map(|s| (*s).to_owned()).chain(
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
        .map(String::from),
    );
    served.fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(chat_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ),
        |builder, name| builder.with_service_name(name),
    )
}

async fn set_all(reporter: &HealthReporter, names: &[&str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

/// A lazily connecting plaintext channel to `addr` (`http://host:port`):
/// the first call connects, and a service that starts later is still
/// reached.
pub fn channel(addr: &str) -> anyhow::Result<Channel> {
    channel_with_tls(addr, None)
}

/// A lazily connecting channel to `addr`. With `tls`, calls go over TLS
/// whatever the scheme: an `http://` address is upgraded, since tonic
/// would otherwise speak plaintext to it despite the TLS settings. Without,
/// an `https://` address is refused: there is no CA to verify it with.
pub fn channel_with_tls(addr: &str, tls: Option<&ClientTls>) -> anyhow::Result<Channel> {
    let (scheme, rest) = addr
        .split_once("://")
        .with_context(|| format!("{addr:?} is not a URL (http://host:port)"))?;
    let endpoint = match (scheme, tls) {
        ("http", None) => Endpoint::from_shared(addr.to_owned())?,
        ("https", None) => anyhow::bail!(
            "{addr} is an https:// address but GRPC_TLS_CA is not set: \
             give the CA bundle its certificate chains to"
        ),
        ("http" | "https", Some(tls)) => Endpoint::from_shared(format!("https://{rest}"))?
            .tls_config(tls.config.clone())
            .with_context(|| format!("cannot set up TLS to {addr}"))?,
        _ => anyhow::bail!("{addr}: the scheme must be http:// or https://"),
    };
    Ok(endpoint
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_lazy())
}

/// The TLS settings of a gRPC server, as every service binary reads them
/// (flatten into its arguments). Each is a path to a PEM file; unset or
/// empty means not set.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// PEM certificate chain of the gRPC server; with GRPC_TLS_KEY it
    /// serves TLS only. Unset: plaintext.
    #[arg(long, env = "GRPC_TLS_CERT")]
    pub grpc_tls_cert: Option<String>,
    /// PEM private key of GRPC_TLS_CERT.
    #[arg(long, env = "GRPC_TLS_KEY")]
    pub grpc_tls_key: Option<String>,
    /// PEM CA bundle: when set, gRPC clients must present a certificate
    /// issued by it (mutual TLS).
    #[arg(long, env = "GRPC_TLS_CLIENT_CA")]
    pub grpc_tls_client_ca: Option<String>,
}

/// A gRPC server's TLS: its identity and, for mutual TLS, the CA of its
/// clients. Only made by [`ServerTlsArgs::load`], so every one has been
/// checked.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: ServerTlsConfig,
}

impl ServerTlsArgs {
    /// Reads and checks the files; `None` when TLS is not configured. An
    /// error names the setting at fault.
    pub fn load(&self) -> anyhow::Result<Option<ServerTls>> {
        let cert = setting(self.grpc_tls_cert.as_deref());
        let key = setting(self.grpc_tls_key.as_deref());
        let client_ca = setting(self.grpc_tls_client_ca.as_deref());
        let (cert, key) = match (cert, key) {
            (None, None) => {
                anyhow::ensure!(
                    client_ca.is_none(),
                    "GRPC_TLS_CLIENT_CA is set but GRPC_TLS_CERT and GRPC_TLS_KEY are not: \
                     requiring client certificates needs TLS"
                );
                return Ok(None);
            }
            (Some(_), None) => anyhow::bail!("GRPC_TLS_CERT is set but GRPC_TLS_KEY is not"),
            (None, Some(_)) => anyhow::bail!("GRPC_TLS_KEY is set but GRPC_TLS_CERT is not"),
            (Some(cert), Some(key)) => (cert, key),
        };
        let mut config = ServerTlsConfig::new()
            .identity(identity(("GRPC_TLS_CERT", cert), ("GRPC_TLS_KEY", key))?)
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        if let Some(path) = client_ca {
            config = config.client_ca_root(certificates("GRPC_TLS_CLIENT_CA", path)?);
        }
        // Building the acceptor is where rustls rejects a key that does not
        // belong to the certificate: fail now, naming the settings, rather
        // than when serving starts.
        Server::builder()
            .tls_config(config.clone())
            .map_err(|e| anyhow::anyhow!("{}", crate::ErrorChain(&e)))
            .with_context(|| {
                format!(
                    "GRPC_TLS_CERT ({cert}) and GRPC_TLS_KEY ({key}) do not make a TLS identity"
                )
            })?;
        Ok(Some(ServerTls { config }))
    }
}

/// The TLS settings of a gRPC client (the gateway, and services calling
/// auth-service). Each path is a PEM file; unset or empty means not set.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// PEM CA bundle the gRPC servers' certificates must chain to; when
    /// set, calls to the services use TLS (also to http:// addresses) and
    /// check each server's name. Unset: plaintext.
    #[arg(long, env = "GRPC_TLS_CA")]
    pub grpc_tls_ca: Option<String>,
    /// Name the servers' certificates must carry, instead of the host of
    /// each address (e.g. when the addresses are IPs).
    #[arg(long, env = "GRPC_TLS_SERVER_NAME")]
    pub grpc_tls_server_name: Option<String>,
    /// PEM certificate chain to present to servers that require client
    /// certificates (their GRPC_TLS_CLIENT_CA); with GRPC_TLS_CLIENT_KEY.
    #[arg(long, env = "GRPC_TLS_CLIENT_CERT")]
    pub grpc_tls_client_cert: Option<String>,
    /// PEM private key of GRPC_TLS_CLIENT_CERT.
    #[arg(long, env = "GRPC_TLS_CLIENT_KEY")]
    pub grpc_tls_client_key: Option<String>,
}

/// A gRPC client's TLS: the CA it trusts, an optional server name and an
/// optional client certificate. Only made by [`ClientTlsArgs::load`].
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: ClientTlsConfig,
}

impl ClientTlsArgs {
    /// Reads and checks the files; `None` when TLS is not configured. An
    /// error names the setting at fault.
    pub fn load(&self) -> anyhow::Result<Option<ClientTls>> {
        let server_name = setting(self.grpc_tls_server_name.as_deref());
        let client_cert = setting(self.grpc_tls_client_cert.as_deref());
        let client_key = setting(self.grpc_tls_client_key.as_deref());
        let Some(ca) = setting(self.grpc_tls_ca.as_deref()) else {
            for (name, value) in [
                ("GRPC_TLS_SERVER_NAME", server_name),
                ("GRPC_TLS_CLIENT_CERT", client_cert),
                ("GRPC_TLS_CLIENT_KEY", client_key),
            ] {
                anyhow::ensure!(
                    value.is_none(),
                    "{name} is set but GRPC_TLS_CA is not: TLS to the services needs the CA"
                );
            }
            return Ok(None);
        };
        let mut config = ClientTlsConfig::new()
            .ca_certificate(certificates("GRPC_TLS_CA", ca)?)
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        if let Some(name) = server_name {
            config = config.domain_name(name);
        }
        match (client_cert, client_key) {
            (None, None) => {}
            (Some(_), None) => {
                anyhow::bail!("GRPC_TLS_CLIENT_CERT is set but GRPC_TLS_CLIENT_KEY is not")
            }
            (None, Some(_)) => {
                anyhow::bail!("GRPC_TLS_CLIENT_KEY is set but GRPC_TLS_CLIENT_CERT is not")
            }
            (Some(cert), Some(key)) => {
                config = config.identity(identity(
                    ("GRPC_TLS_CLIENT_CERT", cert),
                    ("GRPC_TLS_CLIENT_KEY", key),
                )?);
            }
        }
        // As for the server: rustls checks the whole configuration (and the
        // server name's syntax) when the connector is built.
        Endpoint::from_static("https://localhost")
            .tls_config(config.clone())
            .map_err(|e| anyhow::anyhow!("{}", crate::ErrorChain(&e)))
            .context(
                "GRPC_TLS_CA, GRPC_TLS_SERVER_NAME, GRPC_TLS_CLIENT_CERT and \
                 GRPC_TLS_CLIENT_KEY do not make a TLS client configuration",
            )?;
        Ok(Some(ClientTls { config }))
    }
}

/// A setting's value, with empty meaning unset (as deployment files leave
/// optional settings).
fn setting(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn read(name: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{name}: cannot read {path}"))
}

/// The PEM certificates of the file `name` points at, refusing a file that
/// holds none.
fn certificates(name: &str, path: &str) -> anyhow::Result<Certificate> {
    let pem = read(name, path)?;
    let count = CertificateDer::pem_slice_iter(&pem)
        .try_fold(0usize, |n, cert| cert.map(|_| n + 1))
        .map_err(|e| anyhow::anyhow!("{name}: {path} is not valid PEM: {e}"))?;
    anyhow::ensure!(count > 0, "{name}: {path} holds no PEM certificate");
    Ok(Certificate::from_pem(pem))
}

/// A certificate chain and its private key, each from the file a setting
/// points at.
fn identity(
    (cert_name, cert_path): (&str, &str),
    (key_name, key_path): (&str, &str),
) -> anyhow::Result<Identity> {
    let cert = certificates(cert_name, cert_path)?;
    let key = read(key_name, key_path)?;
    PrivateKeyDer::from_pem_slice(&key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            anyhow::anyhow!("{key_name}: {key_path} holds no PEM private key")
        }
        e => anyhow::anyhow!("{key_name}: {key_path} is not a valid PEM private key: {e}"),
    })?;
    Ok(Identity::from_pem(cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
        match result {
            Ok(value) => format!("unexpectedly Ok({value:?})"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn accepted_connections_send_without_delay() -> anyhow::Result<()> {
        use futures::StreamExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await?;
        let server_side = accepted
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("the listener ended"))??;
        assert!(server_side.nodelay()?);
        Ok(())
    }

    /// A self-signed CA certificate in PEM, written to `dir`.
    fn ca_file(dir: &tempfile::TempDir) -> anyhow::Result<String> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, params.self_signed(&key)?.pem())?;
        Ok(path.display().to_string())
    }

    #[test]
    fn unset_or_empty_settings_mean_plaintext() -> anyhow::Result<()> {
        assert!(ServerTlsArgs::default().load()?.is_none());
        assert!(ClientTlsArgs::default().load()?.is_none());
        let empty = Some(String::new());
        let server = ServerTlsArgs {
            grpc_tls_cert: empty.clone(),
            grpc_tls_key: empty.clone(),
            grpc_tls_client_ca: empty.clone(),
        };
        assert!(server.load()?.is_none());
        let client = ClientTlsArgs {
            grpc_tls_ca: empty.clone(),
            grpc_tls_server_name: empty.clone(),
            grpc_tls_client_cert: empty.clone(),
            grpc_tls_client_key: empty,
        };
        assert!(client.load()?.is_none());
        Ok(())
    }

    #[test]
    fn incomplete_server_settings_name_what_is_missing() {
        let only = |cert: bool, key: bool, ca: bool| ServerTlsArgs {
            grpc_tls_cert: cert.then(|| "/cert.pem".to_owned()),
            grpc_tls_key: key.then(|| "/key.pem".to_owned()),
            grpc_tls_client_ca: ca.then(|| "/ca.pem".to_owned()),
        };
        assert_eq!(
            error(only(true, false, false).load()),
            "GRPC_TLS_CERT is set but GRPC_TLS_KEY is not"
        );
        assert_eq!(
            error(only(false, true, false).load()),
            "GRPC_TLS_KEY is set but GRPC_TLS_CERT is not"
        );
        assert_eq!(
            error(only(false, false, true).load()),
            "GRPC_TLS_CLIENT_CA is set but GRPC_TLS_CERT and GRPC_TLS_KEY are not: \
             requiring client certificates needs TLS"
        );
    }

    #[test]
    fn client_settings_without_a_ca_or_with_half_an_identity_are_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let ca = ca_file(&dir)?;
        let name_only = ClientTlsArgs {
            grpc_tls_server_name: Some("auth-service".into()),
            ..ClientTlsArgs::default()
        };
        assert_eq!(
            error(name_only.load()),
            "GRPC_TLS_SERVER_NAME is set but GRPC_TLS_CA is not: TLS to the services needs the CA"
        );
        let cert_only = ClientTlsArgs {
            grpc_tls_ca: Some(ca.clone()),
            grpc_tls_client_cert: Some(ca.clone()),
            ..ClientTlsArgs::default()
        };
        assert_eq!(
            error(cert_only.load()),
            "GRPC_TLS_CLIENT_CERT is set but GRPC_TLS_CLIENT_KEY is not"
        );
        let with_ca = ClientTlsArgs {
            grpc_tls_ca: Some(ca),
            ..ClientTlsArgs::default()
        };
        assert!(with_ca.load()?.is_some());
        Ok(())
    }

    #[test]
    fn unreadable_or_non_pem_ca_files_are_named() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("missing.pem").display().to_string();
        let args = |path: &str| ClientTlsArgs {
            grpc_tls_ca: Some(path.to_owned()),
            ..ClientTlsArgs::default()
        };
        assert_eq!(
            error(args(&missing).load()),
            format!("GRPC_TLS_CA: cannot read {missing}")
        );
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello\n")?;
        let garbage = garbage.display().to_string();
        assert_eq!(
            error(args(&garbage).load()),
            format!("GRPC_TLS_CA: {garbage} holds no PEM certificate")
        );
        Ok(())
    }

    #[test]
    fn addresses_need_a_known_scheme_and_https_needs_a_ca() {
        assert_eq!(
            error(channel("ftp://127.0.0.1:1")),
            "ftp://127.0.0.1:1: the scheme must be http:// or https://"
        );
        assert_eq!(
            error(channel("127.0.0.1:1")),
            "\"127.0.0.1:1\" is not a URL (http://host:port)"
        );
        assert_eq!(
            error(channel("https://auth-service:50051")),
            "https://auth-service:50051 is an https:// address but GRPC_TLS_CA is not set: \
             give the CA bundle its certificate chains to"
        );
    }
}
