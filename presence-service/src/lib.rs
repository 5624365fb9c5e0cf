//! presence-service: who is online on which gateway, last seen, typing, and
//! notifications of mentions and direct messages (live to online users,
//! stored for offline ones until their next connection).
//!
//! A library with a thin `main.rs`: [`serve`] runs the gRPC services
//! `chat.presence.v1.PresenceService` and, for admins,
//! `chat.presence.v1.AdminService` (with health and reflection), the
//! sweeper expiring connections whose gateway stopped sending heartbeats,
//! and the consumer of `message.created` bus events.

mod api;
mod app;
pub mod config;
pub mod domain;
mod error;
pub mod metrics;
pub mod store;
mod tasks;

use std::sync::Arc;

use anyhow::Context;
use chat_common::Shutdown;
use chat_common::admin::AdminGuard;
use chat_common::identity::ServiceAuth;
use chat_proto::presence::v1::admin_service_server::{self, AdminServiceServer};
use chat_proto::presence::v1::presence_service_server::PresenceServiceServer;
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use tonic::service::interceptor::InterceptedService;

pub use config::Config;
pub use error::Error;
pub use tasks::notifications::QUEUE as NOTIFICATION_QUEUE;

use crate::store::{MemoryStore, PresenceStore};

/// The gRPC service name, as health and reflection report it.
pub const SERVICE_NAME: &str = "chat.presence.v1.PresenceService";
/// The admin gRPC service name, as health and reflection report it.
pub const ADMIN_SERVICE_NAME: &str = admin_service_server::SERVICE_NAME;

/// Serves presence with the in-memory store on `listener` until `shutdown`
/// is cancelled; the background tasks stop with it.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    serve_with_store(config, Arc::new(MemoryStore::new()), listener, shutdown).await
}

/// [`serve`] with a given store backend.
pub async fn serve_with_store(
    config: Config,
    store: Arc<dyn PresenceStore>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    chat_common::metrics::install();
    metrics::describe();
    config
        .validate()
        .context("invalid presence-service configuration")?;
    let service_auth =
        ServiceAuth::new(config.service_token.clone()).context("invalid service token")?;
    let ttl = chrono::TimeDelta::from_std(config.connection_ttl)
        .context("connection_ttl is too large")?;
    // Every call reads or writes the store; pub/sub and the event bus are
    // not readiness dependencies: without them live events and
    // notifications pause and resume, but calls still answer.
    let probes = vec![chat_common::grpc::Probe::new("presence store", {
        let store = store.clone();
        move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        }
    })];
    let app = Arc::new(app::App::new(store, config.backends.pubsub.clone(), ttl));

    // Stops the tasks however this function ends, dropped included.
    let tasks_shutdown = shutdown.child_token();
    let _stop_tasks = tasks_shutdown.clone().drop_guard();
    // Subscribe before answering any call, so that events published once
    // the service is reachable are consumed; a failure here is retried by
    // the consumer.
    let first = tasks::notifications::subscribe(config.backends.bus.as_ref()).await;
    let consumer = tokio::spawn(tasks::notifications::run(
        app.clone(),
        config.backends.bus.clone(),
        first,
        tasks_shutdown.clone(),
    ));
    let sweeper = tokio::spawn(tasks::sweeper::run(
        app.clone(),
        config.sweep_interval,
        tasks_shutdown.clone(),
    ));

    let admin_guard = AdminGuard::new(
        &config.auth_addr,
        config.auth_tls.as_ref(),
        service_auth.clone(),
    )
    .context("invalid auth-service address (AUTH_ADDR)")?;
    let mut routes = RoutesBuilder::default();
    routes.add_service(InterceptedService::new(
        PresenceServiceServer::new(api::grpc::PresenceApi::new(app.clone())),
        service_auth.server(),
    ));
    routes.add_service(InterceptedService::new(
        AdminServiceServer::new(api::admin::AdminApi::new(app, admin_guard)),
        service_auth.server(),
    ));
    tracing::info!(
        addr = ?listener.local_addr().ok(),
        backends = %config.backends.description,
        ttl_ms = config.connection_ttl.as_millis(),
        "presence-service listening"
    );
    let served = chat_common::grpc::serve(
        listener,
        shutdown,
        routes,
        &[SERVICE_NAME, ADMIN_SERVICE_NAME],
        probes,
        config.grpc_tls.as_ref(),
    )
    .await;

    tasks_shutdown.cancel();
    for task in [consumer, sweeper] {
        if let Err(error) = task.await {
            tracing::error!(%error, "presence background task failed");
        }
    }
    served
}
