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
pub mod metrics;
pub mod revocation;
pub mod state;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use chat_common::Shutdown;
use chat_common::identity::ServiceAuth;
use chat_common::pubsub::channels;
use chat_proto::presence::v1::{AddConnectionRequest, HeartbeatRequest};
use tokio::net::TcpListener;

pub use config::{Config, Limits};
pub use state::AppState;

use clients::Services;
use hub::Hub;
use revocation::Account;

/// The HTTP router: `/api/v1`, `/ws`, `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: AppState) -> Router {
    api::router(state)
}

/// How long after the drain window in-flight HTTP requests and the last
/// sockets' close handshakes (a writer's `close_timeout`, then the wait for
/// the client's close reply, then the presence call) may take before the
/// gateway stops anyway. With the default 10 s window the process is gone
/// within about 22 s, inside the 30 s grace period it is given.
const WIND_DOWN: Duration = Duration::from_secs(12);

/// Serves the gateway on `listener` until `shutdown`, then drains: from
/// the signal on `/readyz` answers 503 and upgrades are refused, open
/// sockets are closed with 1012 (so their clients reconnect elsewhere and
/// resume) in batches over `limits.drain_window`, while HTTP requests are
/// still served; then the listener closes, in-flight requests finish and
/// the sockets complete their close handshakes.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    config.jwt_keys.validate()?;
    chat_common::metrics::install();
    metrics::describe();
    let credential = ServiceAuth::new(config.service_token.clone())?;
    let services = Services::connect(
        &config.auth_addr,
        &config.message_addr,
        &config.presence_addr,
        config.grpc_tls.as_ref(),
        credential,
    )?;
    let (subscriber, events) = config.backends.pubsub.subscriber().await?;
    let hub = Hub::new(subscriber);
    hub.subscribe_global(channels::PRESENCE).await;
    let state = AppState::new(config, services, hub);

    tokio::spawn(fanout::run(state.clone(), events));
    tokio::spawn(heartbeat(state.clone(), shutdown.clone()));
    tokio::spawn(revalidate(state.clone(), shutdown.clone()));

    tracing::info!(addr = %listener.local_addr()?, gateway = %state.config.gateway_id, "gateway listening");
    let app = router(state.clone());
    let drained = Shutdown::new();
    let stopping = {
        let state = state.clone();
        let shutdown = shutdown.clone();
        let drained = drained.clone();
        async move {
            shutdown.cancelled().await;
            state.draining.store(true, Ordering::Relaxed);
            let window = state.config.limits.drain_window;
            tracing::info!(
                connections = state.hub.connection_count(),
                ?window,
                "draining"
            );
            drain_sockets(&state.hub, window).await;
            drained.cancel();
        }
    };
    let deadline = async {
        drained.cancelled().await;
        tokio::time::sleep(WIND_DOWN).await;
    };
    tokio::pin!(deadline);
    // Frames are small and latency-bound: without TCP_NODELAY, Nagle's
    // algorithm holds a reply back until the client's delayed ACK (~40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a client socket");
        }
    });
    // The peer address is the client's address for the login throttle.
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopping)
    .into_future();
    tokio::select! {
        result = server => result?,
        () = &mut deadline => {
            tracing::warn!("in-flight HTTP requests outlived the drain; stopping without them");
            return Ok(());
        }
    }
    state.sockets.close();
    tokio::select! {
        () = state.sockets.wait() => tracing::info!("gateway drained"),
        () = &mut deadline => tracing::warn!("some sockets did not finish closing in time"),
    }
    Ok(())
}

/// Closes every open socket with 1012, in batches spread evenly over
/// `window`: closed all at once, every client of this replica would
/// reconnect to the others, and resume, in the same instant.
async fn drain_sockets(hub: &Hub, window: Duration) {
    /// Batches go out this often, so each stays a small share.
    const TICK: Duration = Duration::from_millis(100);
    let close_open = |share_of: usize| {
        let open: Vec<_> = hub.all().into_iter().filter(|c| !c.is_closing()).collect();
        // Rounded, so that a few sockets spread over the window too rather
        // than all going at its start or its end.
        let batch = (open.len() + share_of / 2) / share_of;
        for conn in open.into_iter().take(batch) {
            conn.close(conn::close::RESTART);
        }
    };
    if window.is_zero() {
        close_open(1);
        return;
    }
    let ticks = u32::try_from(window.as_millis() / TICK.as_millis())
        .unwrap_or(u32::MAX)
        .max(1);
    let mut tick = tokio::time::interval(window / ticks);
    // Each tick closes its share of what is still open, so sockets opened
    // meanwhile are spread too and the last tick closes the rest.
    for left in (1..=ticks).rev() {
        tick.tick().await;
        close_open(left as usize);
    }
}

/// Users per `GetRevokedSessions` call: auth-service's limit.
const REVALIDATE_BATCH: usize = 1000;

/// Every `revalidate_interval`, looks up the users of this gateway's
/// sockets and closes those of disabled users with 4003, and of users that
/// no longer exist or sessions that were revoked with 4001.
/// auth-service's `disconnect` events do this at once; this catches the
/// ones pub/sub lost (it is at-most-once). While auth-service cannot
/// answer, sockets stay open: an outage must not sign every user out.
async fn revalidate(state: AppState, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(state.config.limits.revalidate_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Sockets were just checked at their handshake.
    tick.reset();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let mut user_ids: Vec<String> = state.hub.all().iter().map(|c| c.user_id.clone()).collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        for batch in user_ids.chunks(REVALIDATE_BATCH) {
            let answer = match revocation::fetch(&state, batch).await {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::warn!(error = %error.message, "cannot re-validate connected users");
                    break;
                }
            };
            for (user_id, account) in &answer {
                let revoked = match &**account {
                    Account::Known { user, revoked } if !user.disabled => revoked,
                    Account::Known { .. } => {
                        close_user(&state, user_id, conn::close::FORBIDDEN);
                        continue;
                    }
                    Account::Unknown => {
                        close_user(&state, user_id, conn::close::UNAUTHORIZED);
                        continue;
                    }
                };
                if revoked.is_empty() {
                    continue;
                }
                for conn in state.hub.of_user(user_id) {
                    if state
                        .revocations
                        .authenticated_with(conn.id, revoked.iter())
                    {
                        tracing::info!(user_id = %user_id, "closing a socket of a revoked session");
                        conn.close(conn::close::UNAUTHORIZED);
                    }
                }
            }
        }
    }
}

/// Closes every socket of a user who is no longer allowed on.
fn close_user(state: &AppState, user_id: &str, code: u16) {
    for conn in state.hub.of_user(user_id) {
        tracing::info!(user_id = %user_id, code, "closing the socket of a user no longer allowed");
        conn.close(code);
    }
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
