//! auth-service: users, password hashes (argon2id), short-lived access
//! tokens (JWT) and rotated, hashed refresh tokens, served over gRPC
//! (`chat.auth.v1.AuthService`) with health and reflection.
//!
//! Every call must carry the shared service credential; calls acting for a
//! user carry the user in metadata (see `chat_common::identity`).

pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod state;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use chat_common::Shutdown;
use chat_common::identity::ServiceAuth;
use chat_proto::auth::v1::auth_service_server::{self, AuthServiceServer};
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use tonic::service::interceptor::InterceptedService;

pub use config::Config;

use crate::api::AuthApi;
use crate::state::AppState;
use crate::store::{SqlUserStore, UserStore};

/// The gRPC service name, as health and reflection report it.
pub const SERVICE_NAME: &str = auth_service_server::SERVICE_NAME;

/// Connects to and migrates the database, then serves the auth service,
/// health and reflection on `listener` until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    config.validate()?;
    let (pool, backend) = chat_common::db::connect(&config.database_url, &store::migrations())
        .await
        .with_context(|| {
            format!(
                "cannot open the auth database {}",
                config::redact_url(&config.database_url)
            )
        })?;
    let store: Arc<dyn UserStore> = Arc::new(SqlUserStore::new(pool.clone()));
    let api = AuthApi::new(AppState::new(store, &config));
    let service_auth = ServiceAuth::new(config.service_token.clone())?;

    let mut routes = RoutesBuilder::default();
    routes.add_service(InterceptedService::new(
        AuthServiceServer::new(api),
        service_auth.server(),
    ));
    tracing::info!(
        addr = %listener.local_addr().context("listener has no local address")?,
        ?backend,
        "auth-service listening"
    );
    let served = chat_common::grpc::serve(listener, shutdown, routes, &[SERVICE_NAME]).await;
    pool.close().await;
    tracing::info!("auth-service stopped");
    served
}
