//! Direct-message rooms: one per pair of users.

use chat_common::identity::Identity;
use chat_proto::events::v1::{self as ev, user_event};
use chat_proto::message::v1 as pb;

use super::convert;
use crate::domain::{self, Role, RoomKind, Visibility, validate};
use crate::error::Error;
use crate::events;
use crate::state::State;
use crate::store::{MemberRecord, RoomRecord};

#[tracing::instrument(skip_all, fields(user = %who.user_id, other = %req.user_id))]
pub async fn open_direct(
    state: &State,
    who: &Identity,
    req: pb::OpenDirectRequest,
) -> Result<pb::OpenDirectResponse, Error> {
    let other = validate::user_id(&req.user_id)?;
    if other == who.user_id {
        return Err(Error::invalid("a direct-message room needs another user"));
    }
    if req.username.is_empty() {
        return Err(Error::invalid("username is required"));
    }
    let key = domain::dm_key(&who.user_id, other);

    let mut tx = state.store.begin().await?;
    if let Some(room) = tx.room_by_dm_key(&key).await? {
        return Ok(pb::OpenDirectResponse {
            room: Some(convert::room(&room)),
            created: false,
        });
    }
    let now = state.clock.now_ms();
    let room = RoomRecord {
        id: uuid::Uuid::now_v7().to_string(),
        name: domain::dm_name(&who.username, &req.username),
        kind: RoomKind::Dm,
        visibility: Visibility::Private,
        owner_id: who.user_id.clone(),
        created_at: now,
        last_seq: 0,
        dm_key: Some(key.clone()),
    };
    if !tx.insert_room(&room).await? {
        // Another replica opened the same pair meanwhile.
        drop(tx);
        let mut tx = state.store.begin().await?;
        let room = tx
            .room_by_dm_key(&key)
            .await?
            .ok_or_else(|| Error::Internal("dm room vanished after a conflict".into()))?;
        return Ok(pb::OpenDirectResponse {
            room: Some(convert::room(&room)),
            created: false,
        });
    }
    let other_display = if req.display_name.is_empty() {
        &req.username
    } else {
        &req.display_name
    };
    for (user_id, username, display_name) in [
        (
            who.user_id.as_str(),
            who.username.as_str(),
            who.display_name.as_str(),
        ),
        (other, req.username.as_str(), other_display.as_str()),
    ] {
        tx.insert_member(&MemberRecord {
            room_id: room.id.clone(),
            user_id: user_id.to_owned(),
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            role: Role::Member,
            joined_at: now,
            last_read_seq: 0,
            mute: None,
        })
        .await?;
    }
    tx.commit().await?;
    tracing::info!(room = %room.id, "direct-message room created");
    for user_id in [who.user_id.as_str(), other] {
        let added = user_event::Event::RoomAdded(ev::RoomAdded {
            room: room.id.clone(),
            last_seq: 0,
        });
        events::publish_user(&state.backends, user_id, added).await;
    }
    Ok(pb::OpenDirectResponse {
        room: Some(convert::room(&room)),
        created: true,
    })
}
