//! Starting a server on port 0 with a fresh database, and a client for it.

use std::net::SocketAddr;

use anyhow::Context;
use chat_auth_service::Config;
use chat_auth_service::store::{SqlUserStore, migrations};
use chat_common::identity::{Identity, ServiceAuth};
use chat_common::{Secret, Shutdown};
use chat_proto::AdminCredentials;
use chat_proto::ErrorCode;
use chat_proto::auth::v1::admin_service_client::AdminServiceClient;
use chat_proto::auth::v1::auth_service_client::AuthServiceClient;
use chat_proto::auth::v1::{AuthResponse, RegisterRequest};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const SERVICE_TOKEN: &str = "test-service-token";
pub const JWT_SECRET: &str = "test-jwt-secret";
pub const PASSWORD: &str = "correct horse battery";

pub type Client = AuthServiceClient<InterceptedService<Channel, ServiceAuth>>;
pub type AdminClient = AdminServiceClient<InterceptedService<Channel, AdminCredentials>>;

pub struct TestServer {
    pub addr: SocketAddr,
    pub client: Client,
    pub database_url: String,
    shutdown: Shutdown,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Held so the database outlives the server.
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> anyhow::Result<TestServer> {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> anyhow::Result<TestServer> {
        let dir = tempfile::tempdir()?;
        let database_url = chat_common::db::sqlite_url(dir.path(), "auth.db");
        let mut config = Config::new(
            database_url,
            Secret::new(JWT_SECRET),
            Secret::new(SERVICE_TOKEN),
        );
        adjust(&mut config);
        // The one `adjust` left, so that `store` opens the server's own.
        let database_url = config.database_url.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let task = tokio::spawn(chat_auth_service::serve(config, listener, shutdown.clone()));
        let task = wait_until_serving(addr, task).await?;
        let client = AuthServiceClient::with_interceptor(
            channel(addr)?,
            ServiceAuth::new(Secret::new(SERVICE_TOKEN))?,
        );
        Ok(TestServer {
            addr,
            client,
            database_url,
            shutdown,
            task: Some(task),
            _dir: dir,
        })
    }

    /// An admin-service client presenting the service credential and
    /// `access_token` as bearer.
    pub fn admin(&self, access_token: &str) -> anyhow::Result<AdminClient> {
        self.admin_with(AdminCredentials::new(
            Some(SERVICE_TOKEN),
            Some(access_token),
        )?)
    }

    pub fn admin_with(&self, credentials: AdminCredentials) -> anyhow::Result<AdminClient> {
        Ok(AdminServiceClient::with_interceptor(
            channel(self.addr)?,
            credentials,
        ))
    }

    /// A channel without the service credential.
    pub fn channel(&self) -> anyhow::Result<Channel> {
        channel(self.addr)
    }

    /// A second handle on the server's database, for what no RPC does
    /// (disabling a user).
    pub async fn store(&self) -> anyhow::Result<SqlUserStore> {
        let (pool, _) = chat_common::db::connect(&self.database_url, &migrations()).await?;
        Ok(SqlUserStore::new(pool))
    }

    pub async fn register(&self, username: &str) -> anyhow::Result<AuthResponse> {
        let response = self
            .client
            .clone()
            .register(RegisterRequest {
                username: username.into(),
                password: PASSWORD.into(),
                display_name: None,
            })
            .await
            .with_context(|| format!("registering {username}"))?;
        Ok(response.into_inner())
    }

    /// Stops the server and checks it ended cleanly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Waits for the health service to answer SERVING, so that the database
/// is migrated before a test opens a second handle on it.
async fn wait_until_serving(
    addr: SocketAddr,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let mut health = HealthClient::new(channel(addr)?);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if task.is_finished() {
            task.await??;
            anyhow::bail!("the server stopped before serving");
        }
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
            return Ok(task);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the server did not become ready within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    chat_common::grpc::channel(&format!("http://{addr}"))
}

/// The acting-user identity of a signed-in user.
pub fn identity_of(auth: &AuthResponse) -> anyhow::Result<Identity> {
    let user = auth.user.as_ref().context("no user in the response")?;
    Ok(Identity {
        user_id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
    })
}

/// The gRPC code and protocol code of a failed call.
pub fn codes<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
) -> anyhow::Result<(tonic::Code, ErrorCode)> {
    match result {
        Ok(value) => anyhow::bail!("expected an error, got {value:?}"),
        Err(status) => Ok((status.code(), ErrorCode::from_status(&status))),
    }
}
