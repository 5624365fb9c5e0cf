//! Stored records to protobuf messages.

use chat_common::db::ms_to_datetime;
use chat_proto::message::v1 as pb;
use chat_proto::to_timestamp;
use prost_types::Timestamp;

use crate::domain::{MessageKind, Mute, Role, RoomKind, Visibility};
use crate::store::{AttachmentRecord, MemberRecord, MessageRecord, RoomRecord};

pub fn timestamp(ms: i64) -> Timestamp {
    to_timestamp(ms_to_datetime(ms))
}

pub fn room_kind(kind: RoomKind) -> pb::RoomKind {
    match kind {
        RoomKind::Group => pb::RoomKind::Group,
        RoomKind::Dm => pb::RoomKind::Dm,
    }
}

pub fn role(role: Role) -> pb::Role {
    match role {
        Role::Member => pb::Role::Member,
        Role::Admin => pb::Role::Admin,
        Role::Owner => pb::Role::Owner,
    }
}

pub fn room(room: &RoomRecord) -> pb::Room {
    pb::Room {
        id: room.id.clone(),
        name: room.name.clone(),
        kind: room_kind(room.kind).into(),
        visibility: match room.visibility {
            Visibility::Public => pb::Visibility::Public,
            Visibility::Private => pb::Visibility::Private,
        }
        .into(),
        owner_id: room.owner_id.clone(),
        created_at: Some(timestamp(room.created_at)),
        last_seq: room.last_seq,
    }
}

/// A member as listed; an expired mute shows as none.
pub fn member(member: &MemberRecord, now_ms: i64) -> pb::Member {
    let mute = member.mute.filter(|m| m.active_at(now_ms));
    pb::Member {
        user_id: member.user_id.clone(),
        username: member.username.clone(),
        role: role(member.role).into(),
        muted_until: match mute {
            Some(Mute::Until(until)) => Some(timestamp(until)),
            _ => None,
        },
        muted_forever: mute == Some(Mute::Forever),
        joined_at: Some(timestamp(member.joined_at)),
    }
}

pub fn attachment(attachment: &AttachmentRecord) -> pb::Attachment {
    pb::Attachment {
        id: attachment.id.clone(),
        room: attachment.room_id.clone(),
        filename: attachment.filename.clone(),
        content_type: attachment.content_type.clone(),
        size: attachment.size,
        sha256: attachment.sha256.clone(),
        uploader_id: attachment.uploader_id.clone(),
        created_at: Some(timestamp(attachment.created_at)),
    }
}

pub fn message(message: &MessageRecord) -> pb::Message {
    pb::Message {
        id: message.id.clone(),
        room: message.room_id.clone(),
        seq: message.seq,
        sender_id: message.sender_id.clone(),
        sender_name: message.sender_name.clone(),
        kind: match message.kind {
            MessageKind::Text => pb::MessageKind::Text,
            MessageKind::File => pb::MessageKind::File,
            MessageKind::System => pb::MessageKind::System,
        }
        .into(),
        text: message.text.clone(),
        attachment: message.attachment.as_ref().map(attachment),
        reply_to: message.reply_to,
        client_msg_id: message.client_msg_id.clone(),
        created_at: Some(timestamp(message.created_at)),
        edited_at: message.edited_at.map(timestamp),
        deleted: message.deleted,
        mentions: message.mentions.clone(),
    }
}
