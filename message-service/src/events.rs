//! Publishing what happened: live events on pub/sub after commit (at most
//! once; a failure is logged, never fails the call, since the change is
//! durable and clients repair through `resume`), and durable events as
//! outbox rows written inside the transaction.

use bytes::Bytes;
use chat_common::Backends;
use chat_common::pubsub::channels;
use chat_proto::events::v1::{self as ev, chat_event, room_event, user_event};
use prost::Message as _;

use crate::api::convert;
use crate::store::{OutboxRow, RoomRecord};

/// Publishes a `RoomEvent` on `room:{id}`.
#[tracing::instrument(level = "debug", skip_all, fields(room = %room_id))]
pub async fn publish_room(backends: &Backends, room_id: &str, event: room_event::Event) {
    let payload = ev::RoomEvent {
        room: room_id.to_owned(),
        event: Some(event),
    }
    .encode_to_vec();
    let channel = channels::room(room_id);
    if let Err(error) = backends
        .pubsub
        .publish(&channel, Bytes::from(payload))
        .await
    {
        tracing::warn!(%error, %channel, "cannot publish room event");
    }
}

/// Publishes a `UserEvent` on `user:{id}`.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user_id))]
pub async fn publish_user(backends: &Backends, user_id: &str, event: user_event::Event) {
    let payload = ev::UserEvent {
        user_id: user_id.to_owned(),
        event: Some(event),
    }
    .encode_to_vec();
    let channel = channels::user(user_id);
    if let Err(error) = backends
        .pubsub
        .publish(&channel, Bytes::from(payload))
        .await
    {
        tracing::warn!(%error, %channel, "cannot publish user event");
    }
}

pub fn routing_key(event: &chat_event::Event) -> &'static str {
    match event {
        chat_event::Event::MessageCreated(_) => "message.created",
        chat_event::Event::MessageEdited(_) => "message.edited",
        chat_event::Event::MessageDeleted(_) => "message.deleted",
        chat_event::Event::MemberJoined(_) => "member.joined",
        chat_event::Event::MemberLeft(_) => "member.left",
    }
}

/// The outbox row of a durable `ChatEvent` about `room`.
pub fn outbox_row(
    room: &RoomRecord,
    event: chat_event::Event,
    recipient_ids: Vec<String>,
    now_ms: i64,
) -> OutboxRow {
    let event_id = uuid::Uuid::now_v7().to_string();
    let routing_key = routing_key(&event).to_owned();
    let payload = ev::ChatEvent {
        event_id: event_id.clone(),
        occurred_at: Some(convert::timestamp(now_ms)),
        room: room.id.clone(),
        event: Some(event),
        recipient_ids,
        room_kind: convert::room_kind(room.kind).into(),
    }
    .encode_to_vec();
    OutboxRow {
        id: 0,
        event_id,
        routing_key,
        payload,
        created_at: now_ms,
        traceparent: chat_common::trace_context::current(),
    }
}

/// A live event to publish once the transaction has committed. Short-lived
/// and few per call, so the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Live {
    Room(room_event::Event),
    User(String, user_event::Event),
}

/// Publishes `events` in order: room events on the room's channel, user
/// events on each user's channel.
pub async fn publish_all(backends: &Backends, room_id: &str, events: Vec<Live>) {
    for event in events {
        match event {
            Live::Room(event) => publish_room(backends, room_id, event).await,
            Live::User(user_id, event) => publish_user(backends, &user_id, event).await,
        }
    }
}
