//! auth-service: users, password hashes (argon2id), short-lived access
//! tokens (JWT) and rotated, hashed refresh tokens, served over gRPC
//! (`chat.auth.v1.AuthService`), and the administration of users
//! (`chat.auth.v1.AdminService`, for admins only), with health and
//! reflection.
//!
//! Every call must carry the shared service credential; calls acting for a
//! user carry the user in metadata (see `chat_common::identity`).

pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod state;
pub mod store;
pub mod throttle;

use std::sync::Arc;

use anyhow::Context;
use chat_common::Shutdown;
use chat_common::identity::ServiceAuth;
use chat_proto::auth::v1::admin_service_server::{self, AdminServiceServer};
use chat_proto::auth::v1::auth_service_server::{self, AuthServiceServer};
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use tonic::service::interceptor::InterceptedService;

pub use config::Config;

use crate::api::{AdminApi, AuthApi};
use crate::domain::Role;
use crate::state::AppState;
use crate::store::{SqlUserStore, UserStore};

/// The gRPC service name, as health and reflection report it.
pub const SERVICE_NAME: &str = auth_service_server::SERVICE_NAME;

/// The admin gRPC service name, as health and reflection report it.
pub const ADMIN_SERVICE_NAME: &str = admin_service_server::SERVICE_NAME;

/// Gives the existing accounts named in `ADMIN_USERNAMES` the admin role;
/// names not registered yet become admins when they register.
async fn promote_bootstrap_admins(state: &AppState) -> anyhow::Result<()> {
    for username in state.admin_usernames.iter() {
        let found = state
            .store
            .credentials_by_username(username)
            .await
            .context("cannot look up the bootstrap admins (ADMIN_USERNAMES)")?;
        match found {
            Some((user, _hash)) if user.role != Role::Admin => {
                state
                    .store
                    .set_role(&user.id, Role::Admin)
                    .await
                    .context("cannot promote a bootstrap admin (ADMIN_USERNAMES)")?;
                tracing::info!(user_id = %user.id, username = username.as_str(), "bootstrap admin promoted");
            }
            Some(_) => {}
            None => tracing::warn!(
                username = username.as_str(),
                "ADMIN_USERNAMES names an account that does not exist yet: whoever registers it becomes an admin"
            ),
        }
    }
    Ok(())
}

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
    let state = AppState::new(store, &config)?;
    promote_bootstrap_admins(&state).await?;
    let api = AuthApi::new(state);
    let service_auth = ServiceAuth::new(config.service_token.clone())?;

    let mut routes = RoutesBuilder::default();
    routes.add_service(InterceptedService::new(
        AuthServiceServer::new(api.clone()),
        service_auth.server(),
    ));
    routes.add_service(InterceptedService::new(
        AdminServiceServer::new(AdminApi::new(api)),
        service_auth.server(),
    ));
    tracing::info!(
        addr = %listener.local_addr().context("listener has no local address")?,
        ?backend,
        "auth-service listening"
    );
    let served = chat_common::grpc::serve(
        listener,
        shutdown,
        routes,
        &[SERVICE_NAME, ADMIN_SERVICE_NAME],
        // Every call reads or writes the database.
        vec![chat_common::db::probe(pool.clone())],
        config.grpc_tls.as_ref(),
    )
    .await;
    pool.close().await;
    tracing::info!("auth-service stopped");
    served
}
