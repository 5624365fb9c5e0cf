//! The presence store port: connections with an expiry, each user's rooms,
//! last seen, notifications and the processed-event set. Held as
//! `Arc<dyn PresenceStore>`; the in-memory backend serves one process, the
//! Redis backend ([`RedisStore`]: an expiry index of connections, a
//! last-seen hash, a notification list per user, `SET NX` event ids) serves
//! any number of replicas sharing one Redis.
//!
//! Every method is one atomic step, so replicas sharing a store agree on who
//! came online and who went offline.
//!
//! Liveness: a connection counts from `add_connection` until it is removed,
//! either by `remove_connection` or by `sweep` once its `expires_at` has
//! passed. Between expiry and the next sweep it still counts (and a
//! heartbeat revives it); this keeps "came online" and "went offline"
//! strictly paired.

mod memory;
mod redis;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{ConnectionId, GatewayId, Notification, Presence, RoomId, UserId};

pub use self::memory::MemoryStore;
pub use self::redis::{EVENT_TTL, RedisStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("presence store unavailable: {0}")]
    Unavailable(String),
    #[error("connection {0} belongs to another user")]
    ConnectionTaken(ConnectionId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: ConnectionId,
    pub user_id: UserId,
    pub gateway_id: GatewayId,
    pub expires_at: DateTime<Utc>,
}

/// Result of registering a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The user had no connection before this one.
    pub came_online: bool,
}

/// A connection that was removed or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub connection_id: ConnectionId,
    pub user_id: UserId,
    /// It was the user's last connection.
    pub went_offline: bool,
    /// Set when `went_offline`: the time recorded as last seen.
    pub last_seen: Option<DateTime<Utc>>,
    /// The user's rooms at removal, for telling their members.
    pub room_ids: Vec<RoomId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineUser {
    pub user_id: UserId,
    /// The gateways holding the user's connections, sorted, each once,
    /// with the number of the user's connections on it.
    pub gateways: Vec<(GatewayId, u32)>,
    /// On all gateways together.
    pub connections: u32,
}

/// Where a recorded notification went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The user is online: stored as delivered, to be published live.
    Live,
    /// The user is offline: stored as pending, delivered at the next
    /// `take_pending`.
    Pending,
}

#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Registers a connection (or re-registers it for the same user,
    /// refreshing its expiry) and replaces the user's rooms with `room_ids`.
    /// `ConnectionTaken` if the id is registered to another user.
    async fn add_connection(
        &self,
        connection: Connection,
        room_ids: Vec<RoomId>,
    ) -> Result<Added, StoreError>;

    /// Moves the expiry of those of `connection_ids` registered on
    /// `gateway_id` to `expires_at`; returns the others, in request order.
    async fn refresh(
        &self,
        gateway_id: &GatewayId,
        connection_ids: &[ConnectionId],
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError>;

    /// Removes a connection of `user_id`; `None` if no such connection.
    /// When it was the user's last, records `now` as last seen and forgets
    /// the user's rooms.
    async fn remove_connection(
        &self,
        user_id: &UserId,
        connection_id: &ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<Option<Removal>, StoreError>;

    /// Removes every connection whose expiry is at or before `now`, exactly
    /// as `remove_connection` would.
    async fn sweep(&self, now: DateTime<Utc>) -> Result<Vec<Removal>, StoreError>;

    /// Presence of each user, in request order.
    async fn presence(&self, user_ids: &[UserId]) -> Result<Vec<Presence>, StoreError>;

    /// Replaces the rooms whose members hear of the user's presence.
    async fn set_rooms(&self, user_id: &UserId, room_ids: Vec<RoomId>) -> Result<(), StoreError>;

    /// The user's rooms (empty while offline).
    async fn rooms(&self, user_id: &UserId) -> Result<Vec<RoomId>, StoreError>;

    /// Users with at least one connection, sorted by user id.
    async fn online(&self) -> Result<Vec<OnlineUser>, StoreError>;

    /// Stores a notification: as delivered when its user is online, else as
    /// pending. One atomic step, so a user coming online meanwhile either
    /// takes it with `take_pending` or is online for the live delivery.
    async fn record_notification(&self, notification: Notification)
    -> Result<Recorded, StoreError>;

    /// The user's pending notifications, oldest first, marked delivered:
    /// each is returned by one call only.
    async fn take_pending(&self, user_id: &UserId) -> Result<Vec<Notification>, StoreError>;

    /// The user's notifications, oldest first: pending ones only unless
    /// `include_delivered`.
    async fn notifications(
        &self,
        user_id: &UserId,
        include_delivered: bool,
    ) -> Result<Vec<Notification>, StoreError>;

    /// Claims a bus event for processing: `true` the first time, `false` if
    /// it was claimed before. The set is bounded: only recent ids are kept.
    async fn claim_event(&self, event_id: &str) -> Result<bool, StoreError>;

    /// Gives up a claim after failing to process the event, so that its
    /// redelivery is processed.
    async fn release_event(&self, event_id: &str) -> Result<(), StoreError>;

    /// How many connections are registered (expired ones until swept),
    /// on every gateway: the presence-connections gauge.
    async fn connection_count(&self) -> Result<u64, StoreError>;

    /// Checks that the store's server answers (the health probe). A store
    /// held in this process always does.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
