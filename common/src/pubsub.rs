//! The pub/sub port: live, at-most-once fan-out between services and gateway
//! replicas. Backends: in-process (embedded mode) and Redis (distributed).
//!
//! A publisher publishes bytes to a channel. A subscriber owns a set of
//! channels it adds to and removes from as its connections come and go; the
//! backend keeps that set across reconnects and reports
//! [`SubscriberEvent::Resubscribed`] after one, because messages published
//! meanwhile are lost and clients must be told to `resume`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Channel names, one place for all of them.
pub mod channels {
    /// Events of one room (`chat.events.v1.RoomEvent`).
    pub fn room(room_id: &str) -> String {
        format!("room:{room_id}")
    }

    /// Events for every live connection of one user (`chat.events.v1.UserEvent`).
    pub fn user(user_id: &str) -> String {
        format!("user:{user_id}")
    }

    /// Presence changes (`chat.events.v1.PresenceChanged`).
    pub const PRESENCE: &str = "presence";
}

/// How many undelivered events a subscriber may have queued before further
/// ones are dropped (live delivery is at-most-once; clients repair gaps with
/// `resume`).
pub const SUBSCRIBER_QUEUE: usize = 65_536;

#[derive(Debug, Clone)]
pub enum SubscriberEvent {
    Message {
        channel: Arc<str>,
        payload: Bytes,
    },
    /// The backend lost its connection and has subscribed every channel
    /// again; anything published in between was lost.
    Resubscribed,
}

#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    #[error("pub/sub backend unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PubSub: Send + Sync + 'static {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), PubSubError>;

    /// A new subscriber with an empty channel set, and the receiver of its
    /// events.
    async fn subscriber(
        &self,
    ) -> Result<(Box<dyn Subscriber>, mpsc::Receiver<SubscriberEvent>), PubSubError>;
}

#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Adds a channel; returns once the backend receives its messages. On
    /// error the channel stays wanted and is subscribed on reconnect.
    async fn subscribe(&self, channel: &str) -> Result<(), PubSubError>;
    async fn unsubscribe(&self, channel: &str) -> Result<(), PubSubError>;
}

/// Pub/sub within one process.
#[derive(Clone, Default)]
pub struct InProcessPubSub {
    registry: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    channels: HashMap<String, HashSet<u64>>,
    subscribers: HashMap<u64, mpsc::Sender<SubscriberEvent>>,
}

impl InProcessPubSub {
    pub fn new() -> InProcessPubSub {
        InProcessPubSub::default()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain maps; the maps are still usable.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl PubSub for InProcessPubSub {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), PubSubError> {
        let registry = self.registry();
        let Some(ids) = registry.channels.get(channel) else {
            return Ok(());
        };
        let channel: Arc<str> = Arc::from(channel);
        for id in ids {
            if let Some(tx) = registry.subscribers.get(id) {
                let event = SubscriberEvent::Message {
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                if tx.try_send(event).is_err() {
                    tracing::warn!(%channel, "subscriber queue full, event dropped");
                }
            }
        }
        Ok(())
    }

    async fn subscriber(
        &self,
    ) -> Result<(Box<dyn Subscriber>, mpsc::Receiver<SubscriberEvent>), PubSubError> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let mut registry = self.registry();
        registry.next_id += 1;
        let id = registry.next_id;
        registry.subscribers.insert(id, tx);
        let subscriber = InProcessSubscriber {
            id,
            pubsub: self.clone(),
        };
        Ok((Box::new(subscriber), rx))
    }
}

struct InProcessSubscriber {
    id: u64,
    pubsub: InProcessPubSub,
}

#[async_trait]
impl Subscriber for InProcessSubscriber {
    async fn subscribe(&self, channel: &str) -> Result<(), PubSubError> {
        let mut registry = self.pubsub.registry();
        registry
            .channels
            .entry(channel.to_owned())
            .or_default()
            .insert(self.id);
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), PubSubError> {
        let mut registry = self.pubsub.registry();
        if let Some(ids) = registry.channels.get_mut(channel) {
            ids.remove(&self.id);
            if ids.is_empty() {
                registry.channels.remove(channel);
            }
        }
        Ok(())
    }
}

impl Drop for InProcessSubscriber {
    fn drop(&mut self) {
        let mut registry = self.pubsub.registry();
        registry.subscribers.remove(&self.id);
        registry.channels.retain(|_, ids| {
            ids.remove(&self.id);
            !ids.is_empty()
        });
    }
}
