//! CreateRoom, GetRoom, ListMyRooms, ListPublicRooms, JoinRoom, LeaveRoom,
//! ListMembers, AddMember.

use chat_proto::ErrorCode;
use chat_proto::events::v1::{room_event, user_event};
use chat_proto::message::v1 as pb;

use crate::helpers::{Db, TestServer, code, user};
use crate::on_both_backends;

on_both_backends!(
    create_get_and_list_rooms,
    join_and_leave,
    owner_leaving_passes_ownership,
    member_listing_rules,
    add_member_rules,
);

async fn create_get_and_list_rooms(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let (alice, bob) = (user("alice"), user("bob"));

    let general = api
        .create_room(&alice, "  General  ", pb::Visibility::Public)
        .await?;
    assert_eq!(general.name, "General");
    assert_eq!(general.kind, pb::RoomKind::Group as i32);
    assert_eq!(general.visibility, pb::Visibility::Public as i32);
    assert_eq!(general.owner_id, alice.user_id);
    assert_eq!(general.last_seq, 0);
    assert!(general.created_at.is_some());
    let secret = api
        .create_room(&alice, "secret", pb::Visibility::Private)
        .await?;
    let random = api
        .create_room(&bob, "random", pb::Visibility::Public)
        .await?;

    // Invalid input.
    let unspecified = pb::CreateRoomRequest {
        name: "x".into(),
        visibility: pb::Visibility::Unspecified.into(),
    };
    assert_eq!(
        code(api.client.create_room(alice.request(unspecified)).await),
        Some(ErrorCode::InvalidArgument)
    );
    for name in ["", "   ", &"n".repeat(101)] {
        let request = pb::CreateRoomRequest {
            name: name.to_owned(),
            visibility: pb::Visibility::Public.into(),
        };
        assert_eq!(
            code(api.client.create_room(alice.request(request)).await),
            Some(ErrorCode::InvalidArgument)
        );
    }
    let hundred = api
        .create_room(&alice, &"é".repeat(100), pb::Visibility::Private)
        .await?;
    assert_eq!(hundred.name.chars().count(), 100);

    // GetRoom: public to anyone, private to members only.
    let get = |room: &str| pb::GetRoomRequest {
        room: room.to_owned(),
    };
    assert_eq!(
        api.client
            .get_room(bob.request(get(&general.id)))
            .await?
            .into_inner(),
        general
    );
    assert_eq!(
        api.client
            .get_room(alice.request(get(&secret.id)))
            .await?
            .into_inner(),
        secret
    );
    assert_eq!(
        code(api.client.get_room(bob.request(get(&secret.id))).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.client.get_room(bob.request(get("nope"))).await),
        Some(ErrorCode::NotFound)
    );

    // ListMyRooms: by creation time, with role and read position.
    let mine = api.my_rooms(&alice).await?;
    let ids: Vec<&str> = mine
        .iter()
        .filter_map(|r| r.room.as_ref())
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [general.id.as_str(), secret.id.as_str(), hundred.id.as_str()]
    );
    assert!(
        mine.iter()
            .all(|r| r.role == pb::Role::Owner as i32 && r.unread == 0 && r.last_read_seq == 0)
    );
    let bobs = api.my_rooms(&bob).await?;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].room.as_ref(), Some(&random));

    // ListPublicRooms: public group rooms, newest first, limited.
    let public = |limit| pb::ListPublicRoomsRequest { limit };
    let rooms = api
        .client
        .list_public_rooms(bob.request(public(0)))
        .await?
        .into_inner()
        .rooms;
    assert_eq!(rooms, [random.clone(), general.clone()]);
    let rooms = api
        .client
        .list_public_rooms(bob.request(public(1)))
        .await?
        .into_inner()
        .rooms;
    assert_eq!(rooms, [random]);
    assert_eq!(
        code(api.client.list_public_rooms(bob.request(public(201))).await),
        Some(ErrorCode::InvalidArgument)
    );
    server.stop().await
}

async fn join_and_leave(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let (alice, bob) = (user("alice"), user("bob"));
    let room = api
        .create_room(&alice, "general", pb::Visibility::Public)
        .await?;
    let private = api
        .create_room(&alice, "private", pb::Visibility::Private)
        .await?;
    api.send_ok(&alice, &room.id, "one").await?;
    api.send_ok(&alice, &room.id, "two").await?;

    let mut events = server.events().await?;
    events.watch_room(&room.id).await?;
    events.watch_user(&bob).await?;

    let joined = api.join(&bob, &room.id).await?;
    assert_eq!(joined.id, room.id);
    assert_eq!(joined.last_seq, 2);
    let event = events.room_event().await?;
    assert_eq!(event.room, room.id);
    match event.event {
        Some(room_event::Event::MemberJoined(j)) => {
            assert_eq!((j.user_id.as_str(), j.username.as_str()), ("u-bob", "bob"));
        }
        other => anyhow::bail!("expected member_joined, got {other:?}"),
    }
    let event = events.user_event().await?;
    assert_eq!(event.user_id, bob.user_id);
    match event.event {
        Some(user_event::Event::RoomAdded(added)) => {
            assert_eq!((added.room.as_str(), added.last_seq), (room.id.as_str(), 2));
        }
        other => anyhow::bail!("expected room_added, got {other:?}"),
    }
    // A newcomer has nothing unread.
    let mine = api.my_rooms(&bob).await?;
    assert_eq!(
        (mine[0].last_read_seq, mine[0].unread, mine[0].role),
        (2, 0, pb::Role::Member as i32)
    );

    // Joining again changes nothing and announces nothing.
    assert_eq!(api.join(&bob, &room.id).await?.id, room.id);
    events.assert_quiet().await?;

    // Private rooms and unknown rooms cannot be joined.
    let join = |room: &str| pb::JoinRoomRequest {
        room: room.to_owned(),
    };
    assert_eq!(
        code(api.client.join_room(bob.request(join(&private.id))).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.client.join_room(bob.request(join("nope"))).await),
        Some(ErrorCode::NotFound)
    );

    // Leaving.
    let leave = |room: &str| pb::LeaveRoomRequest {
        room: room.to_owned(),
    };
    api.client.leave_room(bob.request(leave(&room.id))).await?;
    match events.room_event().await?.event {
        Some(room_event::Event::MemberLeft(left)) => {
            assert_eq!(
                (left.user_id.as_str(), left.reason.as_str()),
                ("u-bob", "left")
            );
        }
        other => anyhow::bail!("expected member_left, got {other:?}"),
    }
    match events.user_event().await?.event {
        Some(user_event::Event::RoomRemoved(removed)) => {
            assert_eq!(
                (removed.room.as_str(), removed.reason.as_str()),
                (room.id.as_str(), "left")
            );
        }
        other => anyhow::bail!("expected room_removed, got {other:?}"),
    }
    assert!(api.my_rooms(&bob).await?.is_empty());
    assert_eq!(
        code(api.client.leave_room(bob.request(leave(&room.id))).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(api.client.leave_room(bob.request(leave("nope"))).await),
        Some(ErrorCode::NotFound)
    );
    server.stop().await
}

async fn owner_leaving_passes_ownership(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(user);
    let room = api.public_room(&alice, &[&bob, &carol, &dave]).await?;
    api.moderate(
        &alice,
        &room.id,
        pb::ModerationAction::Promote,
        &carol,
        None,
    )
    .await?;

    let leave = pb::LeaveRoomRequest {
        room: room.id.clone(),
    };
    api.client.leave_room(alice.request(leave.clone())).await?;
    // The oldest admin (carol) wins over the older member (bob).
    let get = pb::GetRoomRequest {
        room: room.id.clone(),
    };
    assert_eq!(
        api.client
            .get_room(bob.request(get.clone()))
            .await?
            .into_inner()
            .owner_id,
        carol.user_id
    );
    let members = api.members(&bob, &room.id).await?;
    let roles: Vec<(&str, i32)> = members
        .iter()
        .map(|m| (m.user_id.as_str(), m.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("u-bob", pb::Role::Member as i32),
            ("u-carol", pb::Role::Owner as i32),
            ("u-dave", pb::Role::Member as i32)
        ]
    );

    // Without admins, the oldest member.
    api.client.leave_room(carol.request(leave)).await?;
    assert_eq!(
        api.client
            .get_room(dave.request(get))
            .await?
            .into_inner()
            .owner_id,
        bob.user_id
    );
    let roles: Vec<i32> = api
        .members(&bob, &room.id)
        .await?
        .iter()
        .map(|m| m.role)
        .collect();
    assert_eq!(roles, [pb::Role::Owner as i32, pb::Role::Member as i32]);
    server.stop().await
}

async fn member_listing_rules(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(user);
    let public = api.public_room(&alice, &[&bob]).await?;
    let private = api
        .create_room(&alice, "private", pb::Visibility::Private)
        .await?;

    // A public room's members: anyone; in join order, with roles.
    let members = api.members(&carol, &public.id).await?;
    let listed: Vec<(&str, &str, i32)> = members
        .iter()
        .map(|m| (m.user_id.as_str(), m.username.as_str(), m.role))
        .collect();
    assert_eq!(
        listed,
        [
            ("u-alice", "alice", pb::Role::Owner as i32),
            ("u-bob", "bob", pb::Role::Member as i32)
        ]
    );
    assert!(
        members
            .iter()
            .all(|m| m.joined_at.is_some() && m.muted_until.is_none() && !m.muted_forever)
    );
    let joined = |m: &pb::Member| m.joined_at.as_ref().map(|t| (t.seconds, t.nanos));
    assert!(joined(&members[0]) < joined(&members[1]));

    // A private room's: members only.
    assert_eq!(
        code(api.members(&carol, &private.id).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(api.members(&alice, &private.id).await?.len(), 1);
    assert_eq!(
        code(api.members(&carol, "nope").await),
        Some(ErrorCode::NotFound)
    );
    server.stop().await
}

async fn add_member_rules(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(user);
    let room = api
        .create_room(&alice, "private", pb::Visibility::Private)
        .await?;
    let mut events = server.events().await?;
    events.watch_room(&room.id).await?;
    events.watch_user(&bob).await?;

    let add = |who: &crate::helpers::Identity| pb::AddMemberRequest {
        room: room.id.clone(),
        user_id: who.user_id.clone(),
        username: who.username.clone(),
        display_name: who.display_name.clone(),
    };
    let member = api
        .client
        .add_member(alice.request(add(&bob)))
        .await?
        .into_inner()
        .member;
    let member = member.ok_or_else(|| anyhow::anyhow!("no member"))?;
    assert_eq!(
        (member.user_id.as_str(), member.username.as_str()),
        ("u-bob", "bob")
    );
    assert_eq!(member.role, pb::Role::Member as i32);
    assert!(
        matches!(events.room_event().await?.event, Some(room_event::Event::MemberJoined(j)) if j.user_id == "u-bob")
    );
    assert!(
        matches!(events.user_event().await?.event, Some(user_event::Event::RoomAdded(a)) if a.room == room.id)
    );

    // Bob is in: he sees the room now.
    let get = pb::GetRoomRequest {
        room: room.id.clone(),
    };
    api.client.get_room(bob.request(get)).await?;

    assert_eq!(
        code(api.client.add_member(alice.request(add(&bob))).await),
        Some(ErrorCode::Conflict)
    );
    assert_eq!(
        code(api.client.add_member(bob.request(add(&carol))).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.client.add_member(dave.request(add(&carol))).await),
        Some(ErrorCode::Forbidden)
    );

    // An admin may add; a banned user may not be added.
    api.moderate(&alice, &room.id, pb::ModerationAction::Promote, &bob, None)
        .await?;
    api.moderate(&alice, &room.id, pb::ModerationAction::Ban, &dave, None)
        .await?;
    assert_eq!(
        code(api.client.add_member(bob.request(add(&dave))).await),
        Some(ErrorCode::Forbidden)
    );
    api.client.add_member(bob.request(add(&carol))).await?;
    let ids: Vec<String> = api
        .members(&alice, &room.id)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(ids, ["u-alice", "u-bob", "u-carol"]);

    // Not into a dm room.
    let dm = api
        .client
        .open_direct(alice.request(pb::OpenDirectRequest {
            user_id: bob.user_id.clone(),
            username: bob.username.clone(),
            display_name: bob.display_name.clone(),
        }))
        .await?
        .into_inner()
        .room
        .ok_or_else(|| anyhow::anyhow!("no room"))?;
    let mut to_dm = add(&carol);
    to_dm.room = dm.id;
    assert_eq!(
        code(api.client.add_member(alice.request(to_dm)).await),
        Some(ErrorCode::Forbidden)
    );
    server.stop().await
}
