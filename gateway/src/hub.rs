//! The gateway's local routing: which connections are in which room and
//! belong to which user, and the pub/sub subscriptions that follow them.
//! A room or user channel is subscribed while at least one local connection
//! needs it, and unsubscribed when the last one goes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chat_common::pubsub::{Subscriber, channels};

use crate::conn::{Conn, ConnId};

type Members = HashMap<ConnId, Arc<Conn>>;

#[derive(Default)]
struct Routes {
    rooms: HashMap<String, Members>,
    users: HashMap<String, Members>,
    conns: Members,
}

pub struct Hub {
    routes: RwLock<Routes>,
    /// Serialises subscription changes so that a subscribe and an
    /// unsubscribe of the same channel reach the backend in the order their
    /// table changes happened.
    changes: tokio::sync::Mutex<()>,
    subscriber: Box<dyn Subscriber>,
}

impl Hub {
    pub fn new(subscriber: Box<dyn Subscriber>) -> Hub {
        Hub {
            routes: RwLock::new(Routes::default()),
            changes: tokio::sync::Mutex::new(()),
            subscriber,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Routes> {
        self.routes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Routes> {
        self.routes.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn subscribe(&self, channel: String) {
        if let Err(error) = self.subscriber.subscribe(&channel).await {
            tracing::warn!(%channel, %error, "subscribe failed; retried on reconnect");
        }
    }

    async fn unsubscribe(&self, channel: String) {
        if let Err(error) = self.subscriber.unsubscribe(&channel).await {
            tracing::warn!(%channel, %error, "unsubscribe failed");
        }
    }

    /// Subscribes a channel every gateway needs whatever its connections.
    pub async fn subscribe_global(&self, channel: &str) {
        let _serial = self.changes.lock().await;
        self.subscribe(channel.to_owned()).await;
    }

    /// Adds a connection with its rooms; returns when its channels are
    /// subscribed.
    pub async fn register(&self, conn: Arc<Conn>, rooms: &[String]) {
        let _serial = self.changes.lock().await;
        let mut new_channels = Vec::new();
        {
            let mut routes = self.write();
            routes.conns.insert(conn.id, conn.clone());
            let of_user = routes.users.entry(conn.user_id.clone()).or_default();
            if of_user.is_empty() {
                new_channels.push(channels::user(&conn.user_id));
            }
            of_user.insert(conn.id, conn.clone());
            for room in rooms {
                conn.add_room(room);
                let in_room = routes.rooms.entry(room.clone()).or_default();
                if in_room.is_empty() {
                    new_channels.push(channels::room(room));
                }
                in_room.insert(conn.id, conn.clone());
            }
        }
        for channel in new_channels {
            self.subscribe(channel).await;
        }
    }

    pub async fn unregister(&self, conn: &Conn) {
        let _serial = self.changes.lock().await;
        let mut gone = Vec::new();
        {
            let mut routes = self.write();
            routes.conns.remove(&conn.id);
            if let Some(of_user) = routes.users.get_mut(&conn.user_id) {
                of_user.remove(&conn.id);
                if of_user.is_empty() {
                    routes.users.remove(&conn.user_id);
                    gone.push(channels::user(&conn.user_id));
                }
            }
            for room in conn.rooms() {
                if let Some(in_room) = routes.rooms.get_mut(&room) {
                    in_room.remove(&conn.id);
                    if in_room.is_empty() {
                        routes.rooms.remove(&room);
                        gone.push(channels::room(&room));
                    }
                }
            }
        }
        for channel in gone {
            self.unsubscribe(channel).await;
        }
    }

    /// Puts every local connection of `user_id` in `room`; returns the
    /// connections that were not in it yet.
    pub async fn add_room_for_user(&self, user_id: &str, room: &str) -> Vec<Arc<Conn>> {
        let _serial = self.changes.lock().await;
        let mut added = Vec::new();
        let subscribe = {
            let mut routes = self.write();
            let conns: Vec<Arc<Conn>> = routes
                .users
                .get(user_id)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            if conns.is_empty() {
                return added;
            }
            let in_room = routes.rooms.entry(room.to_owned()).or_default();
            let first = in_room.is_empty();
            for conn in conns {
                if conn.add_room(room) {
                    in_room.insert(conn.id, conn.clone());
                    added.push(conn);
                }
            }
            first
        };
        if subscribe {
            self.subscribe(channels::room(room)).await;
        }
        added
    }

    /// Takes every local connection of `user_id` out of `room`; returns the
    /// connections that were in it.
    pub async fn remove_room_for_user(&self, user_id: &str, room: &str) -> Vec<Arc<Conn>> {
        let _serial = self.changes.lock().await;
        let mut removed = Vec::new();
        let mut unsubscribe = false;
        {
            let mut routes = self.write();
            let conns: Vec<Arc<Conn>> = routes
                .users
                .get(user_id)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            if let Some(in_room) = routes.rooms.get_mut(room) {
                for conn in conns {
                    if conn.remove_room(room) {
                        in_room.remove(&conn.id);
                        removed.push(conn);
                    }
                }
                if in_room.is_empty() {
                    routes.rooms.remove(room);
                    unsubscribe = true;
                }
            }
        }
        if unsubscribe {
            self.unsubscribe(channels::room(room)).await;
        }
        removed
    }

    pub fn in_room(&self, room: &str) -> Vec<Arc<Conn>> {
        self.read()
            .rooms
            .get(room)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn of_user(&self, user_id: &str) -> Vec<Arc<Conn>> {
        self.read()
            .users
            .get(user_id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Connections in any of `rooms`, each once.
    pub fn in_any_room(&self, rooms: &[String]) -> Vec<Arc<Conn>> {
        let routes = self.read();
        let mut seen = HashMap::new();
        for room in rooms {
            if let Some(members) = routes.rooms.get(room) {
                for (id, conn) in members {
                    seen.entry(*id).or_insert_with(|| conn.clone());
                }
            }
        }
        seen.into_values().collect()
    }

    pub fn all(&self) -> Vec<Arc<Conn>> {
        self.read().conns.values().cloned().collect()
    }

    pub fn connection_count(&self) -> usize {
        self.read().conns.len()
    }
}
