//! The use cases behind every entry point (gRPC calls, the sweeper, the
//! bus consumer): they change the store and tell others over pub/sub.
//!
//! Live events are at-most-once: a failed presence or notification publish
//! is logged, never failed back to the caller, because the store change it
//! follows has happened and a retry would not publish it again.

use std::sync::Arc;

use bytes::Bytes;
use chat_common::pubsub::{PubSub, channels};
use chat_proto::events::v1::{self as events, chat_event, room_event, user_event};
use chat_proto::message::v1::{Message, RoomKind};
use chrono::{TimeDelta, Utc};
use prost::Message as _;
use uuid::Uuid;

use crate::api::convert;
use crate::domain::{
    ConnectionId, GatewayId, Notification, NotificationKind, Presence, RoomId, UserId, recipients,
};
use crate::error::Error;
use crate::store::{Connection, OnlineUser, PresenceStore, Recorded, Removal};

pub(crate) struct App {
    store: Arc<dyn PresenceStore>,
    pubsub: Arc<dyn PubSub>,
    ttl: TimeDelta,
}

pub(crate) struct Connected {
    pub presence: Presence,
    pub came_online: bool,
    pub notifications: Vec<Notification>,
}

pub(crate) struct Disconnected {
    pub presence: Presence,
    pub went_offline: bool,
}

/// What became of a bus event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    Processed,
    /// Processed before (redelivery).
    Duplicate,
    /// Not an event this service acts on.
    Ignored,
}

impl App {
    pub fn new(store: Arc<dyn PresenceStore>, pubsub: Arc<dyn PubSub>, ttl: TimeDelta) -> App {
        App { store, pubsub, ttl }
    }

    pub async fn add_connection(
        &self,
        user_id: UserId,
        connection_id: ConnectionId,
        gateway_id: GatewayId,
        room_ids: Vec<RoomId>,
    ) -> Result<Connected, Error> {
        let connection = Connection {
            id: connection_id,
            user_id: user_id.clone(),
            gateway_id,
            expires_at: Utc::now() + self.ttl,
        };
        let added = self
            .store
            .add_connection(connection, room_ids.clone())
            .await?;
        let presence = Presence::online(user_id.clone());
        if added.came_online {
            self.publish_presence(presence.clone(), room_ids).await;
        }
        // After registering: a notification recorded from now on finds the
        // user online and goes live, so none falls between the two.
        let notifications = self.store.take_pending(&user_id).await?;
        Ok(Connected {
            presence,
            came_online: added.came_online,
            notifications,
        })
    }

    /// Refreshes the gateway's connections; returns the unknown ones.
    pub async fn heartbeat(
        &self,
        gateway_id: GatewayId,
        connection_ids: Vec<ConnectionId>,
    ) -> Result<Vec<ConnectionId>, Error> {
        let expires_at = Utc::now() + self.ttl;
        Ok(self
            .store
            .refresh(&gateway_id, &connection_ids, expires_at)
            .await?)
    }

    pub async fn remove_connection(
        &self,
        user_id: UserId,
        connection_id: ConnectionId,
    ) -> Result<Disconnected, Error> {
        let removal = self
            .store
            .remove_connection(&user_id, &connection_id, Utc::now())
            .await?;
        match removal {
            Some(removal) => {
                let went_offline = removal.went_offline;
                let presence = self.after_removal(removal).await;
                Ok(Disconnected {
                    presence,
                    went_offline,
                })
            }
            None => {
                let presence = self.presence_of(user_id).await?;
                Ok(Disconnected {
                    presence,
                    went_offline: false,
                })
            }
        }
    }

    /// How many connections the store holds, on every gateway.
    pub async fn connection_count(&self) -> Result<u64, Error> {
        Ok(self.store.connection_count().await?)
    }

    /// Expires connections past their TTL; returns how many.
    pub async fn sweep(&self) -> Result<usize, Error> {
        let removals = self.store.sweep(Utc::now()).await?;
        let count = removals.len();
        for removal in removals {
            tracing::debug!(
                user_id = %removal.user_id,
                connection_id = %removal.connection_id,
                went_offline = removal.went_offline,
                "connection expired"
            );
            self.after_removal(removal).await;
        }
        Ok(count)
    }

    /// Tells the room when a removal took the user offline; returns the
    /// user's presence after it.
    async fn after_removal(&self, removal: Removal) -> Presence {
        if removal.went_offline {
            let presence = Presence::offline(removal.user_id, removal.last_seen);
            self.publish_presence(presence.clone(), removal.room_ids)
                .await;
            presence
        } else {
            Presence::online(removal.user_id)
        }
    }

    async fn presence_of(&self, user_id: UserId) -> Result<Presence, Error> {
        let found = self.store.presence(std::slice::from_ref(&user_id)).await?;
        Ok(found
            .into_iter()
            .next()
            .unwrap_or_else(|| Presence::offline(user_id, None)))
    }

    pub async fn presence(&self, user_ids: Vec<UserId>) -> Result<Vec<Presence>, Error> {
        Ok(self.store.presence(&user_ids).await?)
    }

    pub async fn typing(
        &self,
        room: RoomId,
        user_id: UserId,
        username: String,
    ) -> Result<(), Error> {
        let event = events::RoomEvent {
            room: room.to_string(),
            event: Some(room_event::Event::Typing(events::Typing {
                user_id: user_id.into(),
                username,
            })),
        };
        self.pubsub
            .publish(
                &channels::room(room.as_str()),
                Bytes::from(event.encode_to_vec()),
            )
            .await?;
        Ok(())
    }

    pub async fn set_rooms(&self, user_id: UserId, room_ids: Vec<RoomId>) -> Result<(), Error> {
        Ok(self.store.set_rooms(&user_id, room_ids).await?)
    }

    pub async fn list_online(&self) -> Result<Vec<OnlineUser>, Error> {
        Ok(self.store.online().await?)
    }

    pub async fn notifications(
        &self,
        user_id: UserId,
        include_delivered: bool,
    ) -> Result<Vec<Notification>, Error> {
        Ok(self
            .store
            .notifications(&user_id, include_delivered)
            .await?)
    }

    /// Handles one event from the bus: a created message notifies its
    /// recipients, once per `event_id` however often it is delivered.
    /// `fallback_event_id` (the bus message's) is used when the payload
    /// carries none.
    pub async fn handle_event(
        &self,
        event: events::ChatEvent,
        fallback_event_id: &str,
    ) -> Result<Handled, Error> {
        let is_dm = event.room_kind() == RoomKind::Dm;
        let Some(chat_event::Event::MessageCreated(message)) = event.event else {
            return Ok(Handled::Ignored);
        };
        let event_id = if event.event_id.is_empty() {
            fallback_event_id
        } else {
            event.event_id.as_str()
        };
        if event_id.is_empty() {
            tracing::warn!("event without an id, cannot be de-duplicated");
        } else if !self.store.claim_event(event_id).await? {
            return Ok(Handled::Duplicate);
        }
        let room = if message.room.is_empty() {
            &event.room
        } else {
            &message.room
        };
        let result = self
            .notify(room, &message, &event.recipient_ids, is_dm)
            .await;
        if let Err(error) = &result
            && !event_id.is_empty()
            && let Err(release) = self.store.release_event(event_id).await
        {
            tracing::error!(%error, %release, event_id, "cannot release a failed event");
        }
        result.map(|()| Handled::Processed)
    }

    async fn notify(
        &self,
        room: &str,
        message: &Message,
        recipient_ids: &[String],
        is_dm: bool,
    ) -> Result<(), Error> {
        let users = recipients(recipient_ids.iter().map(String::as_str), &message.sender_id);
        if users.is_empty() {
            return Ok(());
        }
        let Ok(room) = RoomId::parse(room) else {
            tracing::warn!(message_id = %message.id, "message event without a room, ignored");
            return Ok(());
        };
        let kind = NotificationKind::for_room(is_dm);
        for user_id in users {
            let notification = Notification {
                id: Uuid::now_v7(),
                user_id: user_id.clone(),
                kind,
                room: room.clone(),
                seq: message.seq,
                from: message.sender_id.clone(),
                from_name: message.sender_name.clone(),
                created_at: Utc::now(),
            };
            let recorded = self.store.record_notification(notification.clone()).await?;
            tracing::debug!(user_id = %user_id, room = %room, seq = message.seq, ?recorded, "notification");
            if recorded == Recorded::Live {
                self.publish_notification(notification).await;
            }
        }
        Ok(())
    }

    async fn publish_notification(&self, notification: Notification) {
        let channel = channels::user(notification.user_id.as_str());
        let event = events::UserEvent {
            user_id: notification.user_id.to_string(),
            event: Some(user_event::Event::Notification(convert::notification(
                notification,
            ))),
        };
        if let Err(error) = self
            .pubsub
            .publish(&channel, Bytes::from(event.encode_to_vec()))
            .await
        {
            tracing::warn!(%error, %channel, "live notification lost");
        }
    }

    async fn publish_presence(&self, presence: Presence, room_ids: Vec<RoomId>) {
        let user_id = presence.user_id.clone();
        let event = events::PresenceChanged {
            presence: Some(convert::presence(presence)),
            room_ids: room_ids.into_iter().map(String::from).collect(),
        };
        if let Err(error) = self
            .pubsub
            .publish(channels::PRESENCE, Bytes::from(event.encode_to_vec()))
            .await
        {
            tracing::warn!(%error, %user_id, "presence change not published");
        }
    }
}
