//! Turns pub/sub events into protocol frames for local connections. Each
//! event is encoded once and the same bytes are queued to every recipient.

use std::sync::Arc;
use std::time::SystemTime;

use chat_common::pubsub::{SubscriberEvent, channels};
use chat_proto::events::v1::{PresenceChanged, RoomEvent, UserEvent, room_event, user_event};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::conn::{Conn, Frame, close};
use crate::state::AppState;
use crate::wire;

/// Delivers events until the subscriber's stream ends.
pub async fn run(state: AppState, mut events: mpsc::Receiver<SubscriberEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            SubscriberEvent::Message { channel, payload } => {
                dispatch(&state, &channel, &payload).await;
            }
            SubscriberEvent::Resubscribed => {
                // Events published while the subscription was down are lost:
                // every client may have missed some and must resume.
                let frame = frame(json!({"type": "resync"}));
                for conn in state.hub.all() {
                    conn.send_frame(frame.clone());
                }
            }
        }
    }
}

fn frame(value: Value) -> Frame {
    Frame::new(&value)
}

async fn dispatch(state: &AppState, channel: &str, payload: &[u8]) {
    if let Some(room) = channel.strip_prefix("room:") {
        match RoomEvent::decode(payload) {
            Ok(event) => room_event(state, room, event),
            Err(error) => tracing::warn!(%channel, %error, "undecodable room event"),
        }
    } else if let Some(user_id) = channel.strip_prefix("user:") {
        match UserEvent::decode(payload) {
            Ok(event) => user_event(state, user_id, event).await,
            Err(error) => tracing::warn!(%channel, %error, "undecodable user event"),
        }
    } else if channel == channels::PRESENCE {
        match PresenceChanged::decode(payload) {
            Ok(event) => presence_changed(state, event),
            Err(error) => tracing::warn!(%channel, %error, "undecodable presence event"),
        }
    }
}

fn room_event(state: &AppState, room: &str, event: RoomEvent) {
    let Some(event) = event.event else {
        return;
    };
    let conns = state.hub.in_room(room);
    if conns.is_empty() {
        return;
    }
    match event {
        room_event::Event::MessageCreated(message) => {
            let seq = message.seq;
            let mut frame =
                frame(json!({"type": "message", "room": room, "message": wire::message(&message)}));
            frame.committed_at = message
                .created_at
                .and_then(|t| SystemTime::try_from(t).ok());
            for conn in conns {
                conn.deliver_message(room, seq, &frame);
            }
        }
        room_event::Event::MessageEdited(message) => {
            let frame = frame(
                json!({"type": "message_edited", "room": room, "message": wire::message(&message)}),
            );
            send_all(&conns, &frame);
        }
        room_event::Event::MessageDeleted(deleted) => {
            let frame = frame(json!({"type": "message_deleted", "room": room, "seq": deleted.seq}));
            send_all(&conns, &frame);
        }
        room_event::Event::MemberJoined(joined) => {
            let frame = frame(json!({
                "type": "member_joined", "room": room,
                "user_id": joined.user_id, "username": joined.username,
            }));
            send_all(&conns, &frame);
        }
        room_event::Event::MemberLeft(left) => {
            let frame = frame(json!({
                "type": "member_left", "room": room,
                "user_id": left.user_id, "reason": left.reason,
            }));
            send_all(&conns, &frame);
        }
        room_event::Event::Typing(typing) => {
            let frame = frame(json!({
                "type": "typing", "room": room,
                "user_id": typing.user_id, "username": typing.username,
            }));
            for conn in conns.iter().filter(|c| c.user_id != typing.user_id) {
                conn.send_frame(frame.clone());
            }
        }
        room_event::Event::Read(read) => {
            let frame = frame(json!({
                "type": "read", "room": room, "user_id": read.user_id, "seq": read.seq,
            }));
            for conn in conns
                .iter()
                .filter(|c| c.session_id != read.origin_connection_id)
            {
                conn.send_frame(frame.clone());
            }
        }
    }
}

fn send_all(conns: &[Arc<Conn>], frame: &Frame) {
    for conn in conns {
        conn.send_frame(frame.clone());
    }
}

async fn user_event(state: &AppState, user_id: &str, event: UserEvent) {
    let Some(event) = event.event else {
        return;
    };
    match event {
        user_event::Event::RoomAdded(added) => {
            let conns = state.hub.add_room_for_user(user_id, &added.room).await;
            let frame = frame(
                json!({"type": "room_added", "room": added.room, "last_seq": added.last_seq}),
            );
            send_all(&conns, &frame);
            if !conns.is_empty() {
                state.sync_presence_rooms(user_id);
            }
        }
        user_event::Event::RoomRemoved(removed) => {
            let conns = state.hub.remove_room_for_user(user_id, &removed.room).await;
            let frame = frame(
                json!({"type": "room_removed", "room": removed.room, "reason": removed.reason}),
            );
            send_all(&conns, &frame);
            if !conns.is_empty() {
                state.sync_presence_rooms(user_id);
            }
        }
        user_event::Event::Muted(muted) => {
            let frame = frame(
                json!({"type": "muted", "room": muted.room, "until": wire::time(muted.until.as_ref())}),
            );
            send_all(&state.hub.of_user(user_id), &frame);
        }
        user_event::Event::Unmuted(unmuted) => {
            let frame = frame(json!({"type": "unmuted", "room": unmuted.room}));
            send_all(&state.hub.of_user(user_id), &frame);
        }
        user_event::Event::Notification(notification) => {
            let frame = frame(wire::notification(&notification));
            send_all(&state.hub.of_user(user_id), &frame);
        }
        user_event::Event::Disconnect(disconnect) => {
            // The user's sessions changed: ask auth-service again.
            state.revocations.forget(user_id);
            let code = u16::try_from(disconnect.close_code).unwrap_or(close::FORBIDDEN);
            for conn in state.hub.of_user(user_id) {
                // No sessions named: every socket of the user.
                if disconnect.session_ids.is_empty()
                    || state
                        .revocations
                        .authenticated_with(conn.id, disconnect.session_ids.iter())
                {
                    conn.close(code);
                }
            }
        }
    }
}

fn presence_changed(state: &AppState, event: PresenceChanged) {
    let Some(presence) = event.presence else {
        return;
    };
    let frame = frame(json!({
        "type": "presence",
        "user_id": presence.user_id,
        "status": wire::status(presence.status),
        "last_seen": wire::time(presence.last_seen.as_ref()),
    }));
    for conn in state.hub.in_any_room(&event.room_ids) {
        if conn.user_id != presence.user_id {
            conn.send_frame(frame.clone());
        }
    }
}
