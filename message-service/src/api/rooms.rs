//! Rooms and membership: create, read, list, join, leave, list and add
//! members.

use chat_common::identity::Identity;
use chat_proto::events::v1::{self as ev, chat_event, room_event, user_event};
use chat_proto::message::v1 as pb;

use super::{Authority, convert, load_room, require_member};
use crate::domain::validate::{self, RoomName};
use crate::domain::{Role, RoomKind, Visibility, ban_active, roles};
use crate::error::Error;
use crate::events::{self, Live};
use crate::state::State;
use crate::store::{MemberRecord, RoomRecord, StoreTx};

const DEFAULT_PUBLIC_LIMIT: u32 = 100;
const MAX_PUBLIC_LIMIT: u32 = 200;

fn new_member(
    room: &RoomRecord,
    user_id: &str,
    username: &str,
    display_name: &str,
    role: Role,
    now: i64,
) -> MemberRecord {
    MemberRecord {
        room_id: room.id.clone(),
        user_id: user_id.to_owned(),
        username: username.to_owned(),
        display_name: if display_name.is_empty() {
            username
        } else {
            display_name
        }
        .to_owned(),
        role,
        joined_at: now,
        // A newcomer has nothing unread.
        last_read_seq: room.last_seq,
        mute: None,
    }
}

/// Anyone may see a public group room; other rooms only their members.
async fn require_visible(
    tx: &mut dyn StoreTx,
    room: &RoomRecord,
    user_id: &str,
) -> Result<(), Error> {
    if room.kind == RoomKind::Group && room.visibility == Visibility::Public {
        return Ok(());
    }
    require_member(tx, &room.id, user_id).await.map(|_| ())
}

#[tracing::instrument(skip_all, fields(user = %who.user_id))]
pub async fn create_room(
    state: &State,
    who: &Identity,
    req: pb::CreateRoomRequest,
) -> Result<pb::Room, Error> {
    let name = RoomName::parse(&req.name)?;
    let visibility = match pb::Visibility::try_from(req.visibility) {
        Ok(pb::Visibility::Public) => Visibility::Public,
        Ok(pb::Visibility::Private) => Visibility::Private,
        _ => return Err(Error::invalid("visibility must be public or private")),
    };
    let now = state.clock.now_ms();
    let room = RoomRecord {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.into_inner(),
        kind: RoomKind::Group,
        visibility,
        owner_id: who.user_id.clone(),
        created_at: now,
        last_seq: 0,
        dm_key: None,
    };
    let owner = new_member(
        &room,
        &who.user_id,
        &who.username,
        &who.display_name,
        Role::Owner,
        now,
    );
    let mut tx = state.store.begin().await?;
    if !tx.insert_room(&room).await? {
        return Err(Error::Internal("room id collision".into()));
    }
    tx.insert_member(&owner).await?;
    tx.commit().await?;
    tracing::info!(room = %room.id, "room created");
    // The creator's other connections learn of the room like after a join.
    let added = user_event::Event::RoomAdded(ev::RoomAdded {
        room: room.id.clone(),
        last_seq: 0,
    });
    events::publish_user(&state.backends, &who.user_id, added).await;
    Ok(convert::room(&room))
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id))]
pub async fn get_room(
    state: &State,
    who: &Identity,
    req: pb::GetRoomRequest,
) -> Result<pb::Room, Error> {
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    require_visible(tx.as_mut(), &room, &who.user_id).await?;
    Ok(convert::room(&room))
}

#[tracing::instrument(skip_all, fields(user = %who.user_id))]
pub async fn list_my_rooms(
    state: &State,
    who: &Identity,
    _req: pb::ListMyRoomsRequest,
) -> Result<pb::ListMyRoomsResponse, Error> {
    let mut tx = state.store.begin().await?;
    let rooms = tx.rooms_of(&who.user_id).await?;
    let rooms = rooms
        .iter()
        .map(|(room, member)| pb::MyRoom {
            room: Some(convert::room(room)),
            last_read_seq: member.last_read_seq,
            unread: (room.last_seq - member.last_read_seq).max(0),
            role: convert::role(member.role).into(),
        })
        .collect();
    Ok(pb::ListMyRoomsResponse { rooms })
}

#[tracing::instrument(skip_all, fields(user = %who.user_id))]
pub async fn list_public_rooms(
    state: &State,
    who: &Identity,
    req: pb::ListPublicRoomsRequest,
) -> Result<pb::ListPublicRoomsResponse, Error> {
    let limit = match req.limit {
        0 => DEFAULT_PUBLIC_LIMIT,
        l if l > MAX_PUBLIC_LIMIT => return Err(Error::invalid("limit must be 1 to 200")),
        l => l,
    };
    let mut tx = state.store.begin().await?;
    let rooms = tx.public_rooms(i64::from(limit)).await?;
    Ok(pb::ListPublicRoomsResponse {
        rooms: rooms.iter().map(convert::room).collect(),
    })
}

/// Inserts `member` and queues what a join announces: `member_joined` to
/// the room, `room_added` to the user, `member.joined` on the bus. False
/// when the user already was a member.
async fn admit(
    tx: &mut dyn StoreTx,
    room: &RoomRecord,
    member: &MemberRecord,
    now: i64,
    live: &mut Vec<Live>,
) -> Result<bool, Error> {
    if !tx.insert_member(member).await? {
        return Ok(false);
    }
    let joined = ev::MemberJoined {
        user_id: member.user_id.clone(),
        username: member.username.clone(),
    };
    tx.insert_outbox(&events::outbox_row(
        room,
        chat_event::Event::MemberJoined(joined.clone()),
        Vec::new(),
        now,
    ))
    .await?;
    live.push(Live::Room(room_event::Event::MemberJoined(joined)));
    live.push(Live::User(
        member.user_id.clone(),
        user_event::Event::RoomAdded(ev::RoomAdded {
            room: room.id.clone(),
            last_seq: room.last_seq,
        }),
    ));
    Ok(true)
}

/// A ban that still holds; an expired one is removed on the way.
async fn check_not_banned(
    tx: &mut dyn StoreTx,
    room_id: &str,
    user_id: &str,
    now: i64,
) -> Result<(), Error> {
    if let Some(ban) = tx.ban(room_id, user_id).await? {
        if ban_active(ban.until, now) {
            return Err(Error::forbidden("the user is banned from this room"));
        }
        tx.delete_ban(room_id, user_id).await?;
    }
    Ok(())
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id))]
pub async fn join_room(
    state: &State,
    who: &Identity,
    req: pb::JoinRoomRequest,
) -> Result<pb::Room, Error> {
    let _order = state.room_locks.lock(&req.room).await;
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    if tx.member(&room.id, &who.user_id).await?.is_some() {
        return Ok(convert::room(&room));
    }
    if room.kind != RoomKind::Group || room.visibility != Visibility::Public {
        return Err(Error::forbidden("only public group rooms can be joined"));
    }
    check_not_banned(tx.as_mut(), &room.id, &who.user_id, now).await?;
    let member = new_member(
        &room,
        &who.user_id,
        &who.username,
        &who.display_name,
        Role::Member,
        now,
    );
    let mut live = Vec::new();
    let joined = admit(tx.as_mut(), &room, &member, now, &mut live).await?;
    tx.commit().await?;
    if joined {
        state.outbox_wake.notify_one();
        events::publish_all(&state.backends, &room.id, live).await;
    }
    Ok(convert::room(&room))
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id))]
pub async fn leave_room(
    state: &State,
    who: &Identity,
    req: pb::LeaveRoomRequest,
) -> Result<pb::LeaveRoomResponse, Error> {
    let _order = state.room_locks.lock(&req.room).await;
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    if room.kind == RoomKind::Dm {
        return Err(Error::forbidden("a direct-message room cannot be left"));
    }
    let member = tx
        .member(&room.id, &who.user_id)
        .await?
        .ok_or_else(|| Error::not_found("you are not a member of this room"))?;
    let mut live = Vec::new();
    remove_member(tx.as_mut(), &room, &member.user_id, "left", now, &mut live).await?;
    if member.role == Role::Owner {
        let rest = tx.members(&room.id).await?;
        let successor = roles::successor(
            rest.iter().map(|m| (m.user_id.as_str(), m.role)),
            &who.user_id,
        );
        if let Some(successor) = successor {
            tx.set_role(&room.id, successor, Role::Owner).await?;
            tx.set_owner(&room.id, successor).await?;
            tracing::info!(room = %room.id, new_owner = %successor, "ownership passed on");
        }
    }
    tx.commit().await?;
    state.outbox_wake.notify_one();
    events::publish_all(&state.backends, &room.id, live).await;
    Ok(pb::LeaveRoomResponse {})
}

/// Deletes a membership and queues what a departure announces:
/// `member_left` to the room, `room_removed` to the user, `member.left` on
/// the bus, all with `reason` ("left", "kicked" or "banned").
pub(crate) async fn remove_member(
    tx: &mut dyn StoreTx,
    room: &RoomRecord,
    user_id: &str,
    reason: &str,
    now: i64,
    live: &mut Vec<Live>,
) -> Result<(), Error> {
    tx.delete_member(&room.id, user_id).await?;
    let left = ev::MemberLeft {
        user_id: user_id.to_owned(),
        reason: reason.to_owned(),
    };
    tx.insert_outbox(&events::outbox_row(
        room,
        chat_event::Event::MemberLeft(left.clone()),
        Vec::new(),
        now,
    ))
    .await?;
    live.push(Live::Room(room_event::Event::MemberLeft(left)));
    live.push(Live::User(
        user_id.to_owned(),
        user_event::Event::RoomRemoved(ev::RoomRemoved {
            room: room.id.clone(),
            reason: reason.to_owned(),
        }),
    ));
    Ok(())
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id))]
pub async fn list_members(
    state: &State,
    who: &Identity,
    req: pb::ListMembersRequest,
) -> Result<pb::ListMembersResponse, Error> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    require_visible(tx.as_mut(), &room, &who.user_id).await?;
    let members = tx.members(&room.id).await?;
    Ok(pb::ListMembersResponse {
        members: members.iter().map(|m| convert::member(m, now)).collect(),
    })
}

pub async fn add_member(
    state: &State,
    who: &Identity,
    req: pb::AddMemberRequest,
) -> Result<pb::AddMemberResponse, Error> {
    add_member_as(state, who, Authority::Member, req).await
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id, target = %req.user_id, ?authority))]
pub(crate) async fn add_member_as(
    state: &State,
    who: &Identity,
    authority: Authority,
    req: pb::AddMemberRequest,
) -> Result<pb::AddMemberResponse, Error> {
    let target = validate::user_id(&req.user_id)?;
    if req.username.is_empty() {
        return Err(Error::invalid("username is required"));
    }
    let _order = state.room_locks.lock(&req.room).await;
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    if authority == Authority::Member {
        let actor = require_member(tx.as_mut(), &room.id, &who.user_id).await?;
        if !actor.role.is_moderator() {
            return Err(Error::forbidden(
                "only the owner or an admin may add members",
            ));
        }
    }
    if room.kind != RoomKind::Group {
        return Err(Error::forbidden("members can only be added to group rooms"));
    }
    check_not_banned(tx.as_mut(), &room.id, target, now).await?;
    let member = new_member(
        &room,
        target,
        &req.username,
        &req.display_name,
        Role::Member,
        now,
    );
    let mut live = Vec::new();
    if !admit(tx.as_mut(), &room, &member, now, &mut live).await? {
        return Err(Error::Conflict("the user is already a member".into()));
    }
    tx.commit().await?;
    state.outbox_wake.notify_one();
    events::publish_all(&state.backends, &room.id, live).await;
    Ok(pb::AddMemberResponse {
        member: Some(convert::member(&member, now)),
    })
}
