//! The public protocol's JSON objects (PROTOCOL.md "Objects"), built from the
//! services' protobuf types. Every JSON shape a client sees is defined here.

use chat_proto::auth::v1 as auth;
use chat_proto::message::v1 as msg;
use chat_proto::presence::v1 as presence;
use serde_json::{Value, json};

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-22T13:40:00.123Z`.
pub fn time(t: Option<&prost_types::Timestamp>) -> Value {
    t.and_then(chat_proto::from_timestamp)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

pub fn user(u: &auth::User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "display_name": u.display_name,
        "created_at": time(u.created_at.as_ref()),
    })
}

pub fn room_kind(kind: i32) -> &'static str {
    match msg::RoomKind::try_from(kind) {
        Ok(msg::RoomKind::Dm) => "dm",
        _ => "group",
    }
}

pub fn visibility(v: i32) -> &'static str {
    match msg::Visibility::try_from(v) {
        Ok(msg::Visibility::Public) => "public",
        _ => "private",
    }
}

pub fn role(r: i32) -> &'static str {
    match msg::Role::try_from(r) {
        Ok(msg::Role::Owner) => "owner",
        Ok(msg::Role::Admin) => "admin",
        _ => "member",
    }
}

pub fn room(r: &msg::Room) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "kind": room_kind(r.kind),
        "visibility": visibility(r.visibility),
        "owner_id": r.owner_id,
        "created_at": time(r.created_at.as_ref()),
        "last_seq": r.last_seq,
    })
}

/// A room of the caller: the room plus their read position.
pub fn my_room(r: &msg::MyRoom) -> Value {
    let mut value = r.room.as_ref().map(room).unwrap_or_else(|| json!({}));
    if let Value::Object(fields) = &mut value {
        fields.insert("last_read_seq".into(), r.last_read_seq.into());
        fields.insert("unread".into(), r.unread.into());
        fields.insert("role".into(), role(r.role).into());
    }
    value
}

pub fn attachment(a: &msg::Attachment) -> Value {
    json!({
        "id": a.id,
        "filename": a.filename,
        "content_type": a.content_type,
        "size": a.size,
        "sha256": a.sha256,
    })
}

pub fn message_kind(kind: i32) -> &'static str {
    match msg::MessageKind::try_from(kind) {
        Ok(msg::MessageKind::File) => "file",
        Ok(msg::MessageKind::System) => "system",
        _ => "text",
    }
}

pub fn message(m: &msg::Message) -> Value {
    let mut value = json!({
        "id": m.id,
        "room": m.room,
        "seq": m.seq,
        "sender_id": m.sender_id,
        "sender_name": m.sender_name,
        "kind": message_kind(m.kind),
        "text": m.text,
        "client_msg_id": m.client_msg_id,
        "created_at": time(m.created_at.as_ref()),
        "deleted": m.deleted,
        "mentions": m.mentions,
    });
    if let Value::Object(fields) = &mut value {
        if let Some(a) = &m.attachment {
            fields.insert("attachment".into(), attachment(a));
        }
        if let Some(reply_to) = m.reply_to {
            fields.insert("reply_to".into(), reply_to.into());
        }
        if m.edited_at.is_some() {
            fields.insert("edited_at".into(), time(m.edited_at.as_ref()));
        }
    }
    value
}

pub fn messages(ms: &[msg::Message]) -> Value {
    Value::Array(ms.iter().map(message).collect())
}

pub fn status(s: i32) -> &'static str {
    match presence::Status::try_from(s) {
        Ok(presence::Status::Online) => "online",
        _ => "offline",
    }
}

pub fn user_presence(p: &presence::UserPresence) -> Value {
    json!({
        "user_id": p.user_id,
        "status": status(p.status),
        "last_seen": time(p.last_seen.as_ref()),
    })
}

pub fn notification_kind(kind: i32) -> &'static str {
    match presence::NotificationKind::try_from(kind) {
        Ok(presence::NotificationKind::Dm) => "dm",
        _ => "mention",
    }
}

/// The `notification` event (also the items of `ready.notifications`).
pub fn notification(n: &presence::Notification) -> Value {
    json!({
        "type": "notification",
        "kind": notification_kind(n.kind),
        "room": n.room,
        "seq": n.seq,
        "from": n.from,
        "from_name": n.from_name,
        "created_at": time(n.created_at.as_ref()),
    })
}
