//! chatctl against services that serve gRPC over mutual TLS only: three
//! health-only servers (the services' own serving code) with certificates
//! from a CA made at test time.

use std::process::Stdio;

use chat_common::Shutdown;
use chat_common::grpc::ServerTlsArgs;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tonic::service::RoutesBuilder;

const NAMES: [[&str; 2]; 3] = [
    ["chat.auth.v1.AuthService", "chat.auth.v1.AdminService"],
    [
        "chat.message.v1.MessageService",
        "chat.message.v1.AdminService",
    ],
    [
        "chat.presence.v1.PresenceService",
        "chat.presence.v1.AdminService",
    ],
];

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate,
    /// as PEM files.
    fn new() -> anyhow::Result<Pki> {
        let dir = tempfile::tempdir()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        std::fs::write(dir.path().join("ca.pem"), ca.pem())?;
        for (name, san) in [("server", "127.0.0.1"), ("client", "chatctl")] {
            let mut params = CertificateParams::new(vec![san.to_owned()])?;
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem())?;
            std::fs::write(
                dir.path().join(format!("{name}-key.pem")),
                key.serialize_pem(),
            )?;
        }
        Ok(Pki { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// chatctl with the three addresses and nothing else from this process's
/// environment.
fn chatctl(addrs: &[String], args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatctl"));
    command
        .env_clear()
        .env("AUTH_ADDR", &addrs[0])
        .env("MESSAGE_ADDR", &addrs[1])
        .env("PRESENCE_ADDR", &addrs[2])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn health_over_mutual_tls_needs_the_ca_and_a_client_certificate() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let tls = ServerTlsArgs {
        grpc_tls_cert: Some(pki.path("server.pem")),
        grpc_tls_key: Some(pki.path("server-key.pem")),
        grpc_tls_client_ca: Some(pki.path("ca.pem")),
    }
    .load()?;
    let shutdown = Shutdown::new();
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for names in NAMES {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(format!("http://{}", listener.local_addr()?));
        let (shutdown, tls) = (shutdown.clone(), tls.clone());
        servers.push(tokio::spawn(async move {
            chat_common::grpc::serve(
                listener,
                shutdown,
                RoutesBuilder::default(),
                &names,
                Vec::new(),
                tls.as_ref(),
            )
            .await
        }));
    }

    let full = [
        ("GRPC_TLS_CA", pki.path("ca.pem")),
        ("GRPC_TLS_CLIENT_CERT", pki.path("client.pem")),
        ("GRPC_TLS_CLIENT_KEY", pki.path("client-key.pem")),
    ];
    let served = chatctl(&addrs, &["health", "--json"])
        .envs(full.clone())
        .output()
        .await?;
    let stdout = String::from_utf8(served.stdout)?;
    assert_eq!(served.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.matches("\"SERVING\"").count(), 9, "{stdout}");

    // Plaintext, and TLS without a client certificate: every service
    // unreachable (exit code 3).
    for env in [&full[..0], &full[..1]] {
        let refused = chatctl(&addrs, &["health"])
            .envs(env.iter().cloned())
            .output()
            .await?;
        let stdout = String::from_utf8(refused.stdout)?;
        assert_eq!(refused.status.code(), Some(3), "{env:?}: {stdout}");
        assert_eq!(
            stdout.matches("UNREACHABLE").count(),
            3,
            "{env:?}: {stdout}"
        );
    }

    // A CA file that is not there is a usage error naming the setting.
    let missing = pki.path("missing.pem");
    let unusable = chatctl(&addrs, &["health"])
        .env("GRPC_TLS_CA", &missing)
        .output()
        .await?;
    assert_eq!(unusable.status.code(), Some(2));
    let stderr = String::from_utf8(unusable.stderr)?;
    assert!(
        stderr.contains(&format!("GRPC_TLS_CA: cannot read {missing}")),
        "{stderr}"
    );

    shutdown.cancel();
    for server in servers {
        server.await??;
    }
    Ok(())
}
