//! Conversions between domain types and their protobuf messages.

use chat_proto::presence::v1 as pb;

use crate::domain::{InvalidId, Notification, NotificationKind, Presence, RoomId, Status, UserId};
use crate::store::OnlineUser;

pub fn presence(p: Presence) -> pb::UserPresence {
    pb::UserPresence {
        user_id: p.user_id.into(),
        status: match p.status {
            Status::Online => pb::Status::Online,
            Status::Offline => pb::Status::Offline,
        }
        .into(),
        last_seen: p.last_seen.map(chat_proto::to_timestamp),
    }
}

pub fn notification(n: Notification) -> pb::Notification {
    pb::Notification {
        id: n.id.to_string(),
        user_id: n.user_id.into(),
        kind: match n.kind {
            NotificationKind::Mention => pb::NotificationKind::Mention,
            NotificationKind::Dm => pb::NotificationKind::Dm,
        }
        .into(),
        room: n.room.into(),
        seq: n.seq,
        from: n.from,
        from_name: n.from_name,
        created_at: Some(chat_proto::to_timestamp(n.created_at)),
    }
}

pub fn online_user(u: OnlineUser) -> pb::OnlineUser {
    pb::OnlineUser {
        user_id: u.user_id.into(),
        gateway_ids: u.gateways.iter().map(|(g, _)| g.to_string()).collect(),
        connections: u.connections,
        gateways: u
            .gateways
            .into_iter()
            .map(|(gateway_id, connections)| pb::GatewayConnections {
                gateway_id: gateway_id.into(),
                connections,
            })
            .collect(),
    }
}

pub fn user_ids(ids: Vec<String>) -> Result<Vec<UserId>, InvalidId> {
    ids.into_iter().map(UserId::parse).collect()
}

pub fn room_ids(ids: Vec<String>) -> Result<Vec<RoomId>, InvalidId> {
    ids.into_iter().map(RoomId::parse).collect()
}
