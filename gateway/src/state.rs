//! State shared by every request and connection of one gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chat_common::token::TokenKeys;
use chat_proto::presence::v1::SetRoomsRequest;
use tokio_util::task::TaskTracker;

use crate::clients::Services;
use crate::config::Config;
use crate::hub::Hub;
use crate::revocation::Revocations;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub services: Services,
    pub keys: TokenKeys,
    pub hub: Hub,
    /// Revoked sign-in sessions, and the session of each open socket.
    pub revocations: Revocations,
    /// Set when shutting down: `/readyz` fails and upgrades are refused.
    pub draining: AtomicBool,
    /// The tasks of upgraded WebSockets, which the HTTP server no longer
    /// tracks: shutdown waits for them to finish their close handshake.
    pub sockets: TaskTracker,
    next_conn_id: AtomicU64,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, services: Services, hub: Hub) -> AppState {
        let keys = TokenKeys::from_settings(&config.jwt_keys);
        AppState(Arc::new(Inner {
            config,
            services,
            keys,
            hub,
            revocations: Revocations::default(),
            draining: AtomicBool::new(false),
            sockets: TaskTracker::new(),
            next_conn_id: AtomicU64::new(1),
        }))
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Tells presence-service the rooms whose members hear about this
    /// user's presence, after the user's rooms changed. Best effort.
    pub fn sync_presence_rooms(&self, user_id: &str) {
        let Some(conn) = self.hub.of_user(user_id).into_iter().next() else {
            return;
        };
        let request = SetRoomsRequest {
            user_id: user_id.to_owned(),
            room_ids: conn.rooms(),
        };
        let mut presence = self.services.presence.clone();
        tokio::spawn(async move {
            if let Err(status) = presence.set_rooms(request).await {
                tracing::warn!(%status, "cannot update presence rooms");
            }
        });
    }
}
