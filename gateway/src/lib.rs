//! The gateway: holds client WebSocket connections, serves the public HTTP
//! JSON API, and relays both to the services over gRPC. Room, user and
//! presence events arrive over pub/sub and fan out to local sockets.

pub mod api;
pub mod clients;
pub mod config;
pub mod conn;
pub mod error;
pub mod fanout;
pub mod hub;
pub mod state;
pub mod wire;

use std::sync::atomic::Ordering;

use axum::Router;
use chat_common::Shutdown;
use chat_common::identity::ServiceAuth;
use chat_common::pubsub::channels;
use chat_proto::presence::v1::{AddConnectionRequest, HeartbeatRequest};
use tokio::net::TcpListener;

pub use config::{Config, Limits};
pub use state::AppState;

use clients::Services;
use hub::Hub;

/// The HTTP router: `/api/v1`, `/ws`, `/healthz`, `/readyz`.
pub fn router(state: AppState) -> Router {
    api::router(state)
}

/// Serves the gateway on `listener` until `shutdown`, then closes every
/// socket with 1012 so clients reconnect elsewhere and resume.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let credential = ServiceAuth::new(config.service_token.clone())?;
    let services = Services::connect(
        &config.auth_addr,
        &config.message_addr,
        &config.presence_addr,
        credential,
    )?;
    let (subscriber, events) = config.backends.pubsub.subscriber().await?;
    let hub = Hub::new(subscriber);
    hub.subscribe_global(channels::PRESENCE).await;
    let state = AppState::new(config, services, hub);

    tokio::spawn(fanout::run(state.clone(), events));
    tokio::spawn(heartbeat(state.clone(), shutdown.clone()));

    tracing::info!(addr = %listener.local_addr()?, gateway = %state.config.gateway_id, "gateway listening");
    let app = router(state.clone());
    let stopping = {
        let state = state.clone();
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            state.draining.store(true, Ordering::Relaxed);
            for conn in state.hub.all() {
                conn.close(conn::close::RESTART);
            }
        }
    };
    axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(stopping)
        .await?;
    Ok(())
}

/// Keeps this gateway's connections alive in presence-service, and
/// re-registers any it has forgotten (it may have restarted).
async fn heartbeat(state: AppState, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(state.config.limits.presence_heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let conns = state.hub.all();
        if conns.is_empty() {
            continue;
        }
        let request = HeartbeatRequest {
            gateway_id: state.config.gateway_id.clone(),
            connection_ids: conns.iter().map(|c| c.session_id.clone()).collect(),
        };
        let mut presence = state.services.presence.clone();
        let unknown = match presence.heartbeat(request).await {
            Ok(reply) => reply.into_inner().unknown_connection_ids,
            Err(status) => {
                tracing::warn!(%status, "presence heartbeat failed");
                continue;
            }
        };
        for conn in conns.iter().filter(|c| unknown.contains(&c.session_id)) {
            let request = AddConnectionRequest {
                user_id: conn.user_id.clone(),
                connection_id: conn.session_id.clone(),
                gateway_id: state.config.gateway_id.clone(),
                room_ids: conn.rooms(),
            };
            match presence.add_connection(request).await {
                Ok(reply) => {
                    for notification in &reply.get_ref().notifications {
                        conn.send_json(&wire::notification(notification));
                    }
                }
                Err(status) => {
                    tracing::warn!(%status, "cannot re-register a connection with presence");
                }
            }
        }
    }
}
