//! message-service: rooms, membership and roles, direct-message rooms,
//! messages with a gap-free per-room `seq`, edits, recalls, read positions,
//! attachments and moderation, served as `chat.message.v1.MessageService`,
//! and their administration across every room, for admins only, as
//! `chat.message.v1.AdminService`.
//!
//! A send commits the message and an outbox row in one transaction, then
//! publishes the live event on `room:{id}`; a relay task moves outbox rows
//! to the event bus.

pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod metrics;
pub mod outbox;
pub mod sends;
pub mod state;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use chat_common::Shutdown;
use chat_common::admin::AdminGuard;
use chat_common::db::{self, Migrations};
use chat_common::identity::ServiceAuth;
use chat_proto::message::v1::admin_service_server::{self, AdminServiceServer};
use chat_proto::message::v1::message_service_server::MessageServiceServer;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::service::RoutesBuilder;
use tonic::service::interceptor::InterceptedService;

pub use config::Config;

use crate::api::MessageApi;
use crate::api::admin::AdminApi;
use crate::sends::SendQueue;
use crate::state::{Clock, Limits, RoomLocks, State};
use crate::store::sql::{SqlAttachmentStore, SqlStore};

/// The gRPC service name, as reported by health and reflection.
pub const SERVICE_NAME: &str = "chat.message.v1.MessageService";
/// The admin gRPC service name, as reported by health and reflection.
pub const ADMIN_SERVICE_NAME: &str = admin_service_server::SERVICE_NAME;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// The schema of this service, one migration set per backend.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// Serves the message service on `listener` until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    chat_common::metrics::install();
    metrics::describe();
    let service_auth =
        ServiceAuth::new(config.service_token.clone()).context("invalid SERVICE_TOKEN")?;
    let (pool, backend) = db::connect(&config.database_url, &MIGRATIONS).await?;
    let store = Arc::new(SqlStore::new(pool.clone()));
    let outbox_wake = Arc::new(Notify::new());
    let (sends, send_workers) = SendQueue::new(match backend {
        // One writer at a time: more workers would only wait for it.
        db::Backend::Sqlite => 1,
        // Half the pool's connections, the rest for reads and other calls.
        db::Backend::Postgres => db::POSTGRES_CONNECTIONS / 2,
    });
    let state = Arc::new(State {
        store: store.clone(),
        attachments: Arc::new(SqlAttachmentStore::new(pool.clone())),
        backends: config.backends.clone(),
        limits: Limits {
            recall_window_ms: i64::try_from(config.recall_window.as_millis()).unwrap_or(i64::MAX),
            max_text_chars: config.max_text_chars,
            max_attachment_bytes: config.max_attachment_bytes,
        },
        room_locks: RoomLocks::new(),
        sends,
        outbox_wake: outbox_wake.clone(),
        clock: Clock::default(),
    });

    // Not a child of `shutdown`: the relay outlives the gRPC server, so
    // that events committed by the last in-flight calls are published
    // before the process exits.
    let relay_stop = Shutdown::new();
    let relay = outbox::Relay {
        store,
        bus: config.backends.bus.clone(),
        wake: outbox_wake,
    };
    let relay = tokio::spawn(relay.run(relay_stop.clone()));
    // Stopped after the gRPC server, whose last calls may still send.
    let send_stop = Shutdown::new();
    let mut send_workers = send_workers.spawn(state.clone(), send_stop.clone());

    let admin_guard = AdminGuard::new(
        &config.auth_addr,
        config.auth_tls.as_ref(),
        service_auth.clone(),
    )
    .context("invalid auth-service address (AUTH_ADDR)")?;
    let mut routes = RoutesBuilder::default();
    routes.add_service(InterceptedService::new(
        MessageServiceServer::new(MessageApi::new(state.clone())),
        service_auth.server(),
    ));
    routes.add_service(InterceptedService::new(
        AdminServiceServer::new(AdminApi::new(state, admin_guard, shutdown.child_token())),
        service_auth.server(),
    ));
    tracing::info!(
        addr = %listener.local_addr().context("listener has no address")?,
        database = ?backend,
        backends = %config.backends.description,
        "message-service listening"
    );
    let served = chat_common::grpc::serve(
        listener,
        shutdown,
        routes,
        &[SERVICE_NAME, ADMIN_SERVICE_NAME],
        // The database only. RabbitMQ is deliberately not a readiness
        // dependency: a send commits its event to the outbox, which the
        // relay publishes once RabbitMQ is back, so sends keep working
        // while it is down. Redis neither: losing it only pauses live
        // fan-out, which clients recover with `resume`.
        vec![db::probe(pool.clone())],
        config.grpc_tls.as_ref(),
    )
    .await;
    send_stop.cancel();
    while let Some(result) = send_workers.join_next().await {
        if let Err(error) = result {
            tracing::error!(%error, "send worker task failed");
        }
    }
    relay_stop.cancel();
    if let Err(error) = relay.await {
        tracing::error!(%error, "outbox relay task failed");
    }
    pool.close().await;
    served
}
