//! The in-memory presence store: one process, nothing survives a restart.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Added, Connection, OnlineUser, PresenceStore, Recorded, Removal, StoreError};
use crate::domain::{ConnectionId, GatewayId, Notification, Presence, RoomId, UserId};

/// Notifications kept per user; past it delivered ones go first, then the
/// oldest pending ones.
pub const MAX_NOTIFICATIONS_PER_USER: usize = 1000;

/// Processed event ids remembered by default. Redelivery happens within
/// moments of the first delivery, so recent ids are all that matter.
pub const DEFAULT_EVENT_CAPACITY: usize = 100_000;

pub struct MemoryStore {
    inner: Mutex<Inner>,
    event_capacity: usize,
}

#[derive(Default)]
struct Inner {
    connections: HashMap<ConnectionId, Entry>,
    /// Connections per user; a user is present iff online.
    by_user: BTreeMap<UserId, HashSet<ConnectionId>>,
    rooms: HashMap<UserId, Vec<RoomId>>,
    last_seen: HashMap<UserId, DateTime<Utc>>,
    notifications: HashMap<UserId, VecDeque<Stored>>,
    events: HashSet<String>,
    /// Claim order of `events`, for forgetting the oldest.
    event_order: VecDeque<String>,
}

struct Entry {
    user_id: UserId,
    gateway_id: GatewayId,
    expires_at: DateTime<Utc>,
}

struct Stored {
    notification: Notification,
    delivered: bool,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::with_event_capacity(DEFAULT_EVENT_CAPACITY)
    }

    /// A store remembering at most `capacity` processed event ids.
    pub fn with_event_capacity(capacity: usize) -> MemoryStore {
        MemoryStore {
            inner: Mutex::default(),
            event_capacity: capacity.max(1),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic mid-update of plain maps; they
        // are still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn is_online(&self, user_id: &UserId) -> bool {
        self.by_user.get(user_id).is_some_and(|c| !c.is_empty())
    }

    fn remove(&mut self, connection_id: &ConnectionId, now: DateTime<Utc>) -> Option<Removal> {
        let entry = self.connections.remove(connection_id)?;
        let user_id = entry.user_id;
        let went_offline = match self.by_user.get_mut(&user_id) {
            Some(connections) => {
                connections.remove(connection_id);
                connections.is_empty()
            }
            None => true,
        };
        let (last_seen, room_ids) = if went_offline {
            self.by_user.remove(&user_id);
            self.last_seen.insert(user_id.clone(), now);
            (Some(now), self.rooms.remove(&user_id).unwrap_or_default())
        } else {
            (None, self.rooms.get(&user_id).cloned().unwrap_or_default())
        };
        Some(Removal {
            connection_id: connection_id.clone(),
            user_id,
            went_offline,
            last_seen,
            room_ids,
        })
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn connection_count(&self) -> Result<u64, StoreError> {
        Ok(self.inner().connections.len() as u64)
    }

    async fn add_connection(
        &self,
        connection: Connection,
        room_ids: Vec<RoomId>,
    ) -> Result<Added, StoreError> {
        let mut inner = self.inner();
        if let Some(entry) = inner.connections.get_mut(&connection.id) {
            if entry.user_id != connection.user_id {
                return Err(StoreError::ConnectionTaken(connection.id));
            }
            entry.gateway_id = connection.gateway_id;
            entry.expires_at = connection.expires_at;
            inner.rooms.insert(connection.user_id, room_ids);
            return Ok(Added { came_online: false });
        }
        let came_online = !inner.is_online(&connection.user_id);
        inner
            .by_user
            .entry(connection.user_id.clone())
            .or_default()
            .insert(connection.id.clone());
        inner.rooms.insert(connection.user_id.clone(), room_ids);
        inner.connections.insert(
            connection.id,
            Entry {
                user_id: connection.user_id,
                gateway_id: connection.gateway_id,
                expires_at: connection.expires_at,
            },
        );
        Ok(Added { came_online })
    }

    async fn refresh(
        &self,
        gateway_id: &GatewayId,
        connection_ids: &[ConnectionId],
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let mut inner = self.inner();
        let mut unknown = Vec::new();
        for id in connection_ids {
            match inner.connections.get_mut(id) {
                Some(entry) if entry.gateway_id == *gateway_id => entry.expires_at = expires_at,
                _ => unknown.push(id.clone()),
            }
        }
        Ok(unknown)
    }

    async fn remove_connection(
        &self,
        user_id: &UserId,
        connection_id: &ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<Option<Removal>, StoreError> {
        let mut inner = self.inner();
        let owned = inner
            .connections
            .get(connection_id)
            .is_some_and(|e| e.user_id == *user_id);
        Ok(if owned {
            inner.remove(connection_id, now)
        } else {
            None
        })
    }

    async fn sweep(&self, now: DateTime<Utc>) -> Result<Vec<Removal>, StoreError> {
        let mut inner = self.inner();
        let expired: Vec<ConnectionId> = inner
            .connections
            .iter()
            .filter(|(_, e)| e.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        Ok(expired
            .iter()
            .filter_map(|id| inner.remove(id, now))
            .collect())
    }

    async fn presence(&self, user_ids: &[UserId]) -> Result<Vec<Presence>, StoreError> {
        let inner = self.inner();
        Ok(user_ids
            .iter()
            .map(|user_id| {
                if inner.is_online(user_id) {
                    Presence::online(user_id.clone())
                } else {
                    Presence::offline(user_id.clone(), inner.last_seen.get(user_id).copied())
                }
            })
            .collect())
    }

    async fn set_rooms(&self, user_id: &UserId, room_ids: Vec<RoomId>) -> Result<(), StoreError> {
        self.inner().rooms.insert(user_id.clone(), room_ids);
        Ok(())
    }

    async fn rooms(&self, user_id: &UserId) -> Result<Vec<RoomId>, StoreError> {
        Ok(self.inner().rooms.get(user_id).cloned().unwrap_or_default())
    }

    async fn online(&self) -> Result<Vec<OnlineUser>, StoreError> {
        let inner = self.inner();
        Ok(inner
            .by_user
            .iter()
            .filter(|(_, connections)| !connections.is_empty())
            .map(|(user_id, connections)| {
                let mut gateways: BTreeMap<&GatewayId, u32> = BTreeMap::new();
                for entry in connections.iter().filter_map(|c| inner.connections.get(c)) {
                    *gateways.entry(&entry.gateway_id).or_default() += 1;
                }
                OnlineUser {
                    user_id: user_id.clone(),
                    gateways: gateways
                        .into_iter()
                        .map(|(gateway, n)| (gateway.clone(), n))
                        .collect(),
                    connections: u32::try_from(connections.len()).unwrap_or(u32::MAX),
                }
            })
            .collect())
    }

    async fn record_notification(
        &self,
        notification: Notification,
    ) -> Result<Recorded, StoreError> {
        let mut inner = self.inner();
        let delivered = inner.is_online(&notification.user_id);
        let list = inner
            .notifications
            .entry(notification.user_id.clone())
            .or_default();
        if list.len() >= MAX_NOTIFICATIONS_PER_USER {
            match list.iter().position(|s| s.delivered) {
                Some(i) => {
                    list.remove(i);
                }
                None => {
                    tracing::warn!(
                        user_id = %notification.user_id,
                        "too many pending notifications, dropping the oldest"
                    );
                    list.pop_front();
                }
            }
        }
        list.push_back(Stored {
            notification,
            delivered,
        });
        Ok(if delivered {
            Recorded::Live
        } else {
            Recorded::Pending
        })
    }

    async fn take_pending(&self, user_id: &UserId) -> Result<Vec<Notification>, StoreError> {
        let mut inner = self.inner();
        let Some(list) = inner.notifications.get_mut(user_id) else {
            return Ok(Vec::new());
        };
        Ok(list
            .iter_mut()
            .filter(|s| !s.delivered)
            .map(|s| {
                s.delivered = true;
                s.notification.clone()
            })
            .collect())
    }

    async fn notifications(
        &self,
        user_id: &UserId,
        include_delivered: bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let inner = self.inner();
        Ok(inner
            .notifications
            .get(user_id)
            .map(|list| {
                list.iter()
                    .filter(|s| include_delivered || !s.delivered)
                    .map(|s| s.notification.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn claim_event(&self, event_id: &str) -> Result<bool, StoreError> {
        let mut inner = self.inner();
        if !inner.events.insert(event_id.to_owned()) {
            return Ok(false);
        }
        inner.event_order.push_back(event_id.to_owned());
        while inner.event_order.len() > self.event_capacity {
            if let Some(oldest) = inner.event_order.pop_front() {
                inner.events.remove(&oldest);
            }
        }
        Ok(true)
    }

    async fn release_event(&self, event_id: &str) -> Result<(), StoreError> {
        let mut inner = self.inner();
        if inner.events.remove(event_id) {
            // Rare (only after a failure), so a linear scan is fine.
            inner.event_order.retain(|e| e != event_id);
        }
        Ok(())
    }
}
