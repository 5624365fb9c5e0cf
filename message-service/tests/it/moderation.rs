//! Moderate: every action and who may take it.

use chat_proto::ErrorCode;
use chat_proto::events::v1::{room_event, user_event};
use chat_proto::message::v1 as pb;
use chat_proto::message::v1::ModerationAction as A;

use crate::helpers::{Db, TestServer, code, user};
use crate::on_both_backends;

on_both_backends!(kick_and_ban, mute_and_unmute, roles_and_authorization);

async fn kick_and_ban(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(user);
    let room = api.public_room(&alice, &[&bob]).await?;
    let mut events = server.events().await?;
    events.watch_room(&room.id).await?;
    events.watch_user(&bob).await?;
    let ids = |members: Vec<pb::Member>| members.into_iter().map(|m| m.user_id).collect::<Vec<_>>();

    // Kick: out, told why, may come back.
    api.moderate(&alice, &room.id, A::Kick, &bob, None).await?;
    match events.room_event().await?.event {
        Some(room_event::Event::MemberLeft(left)) => assert_eq!(
            (left.user_id.as_str(), left.reason.as_str()),
            ("u-bob", "kicked")
        ),
        other => anyhow::bail!("expected member_left, got {other:?}"),
    }
    match events.user_event().await?.event {
        Some(user_event::Event::RoomRemoved(r)) => assert_eq!(
            (r.room.as_str(), r.reason.as_str()),
            (room.id.as_str(), "kicked")
        ),
        other => anyhow::bail!("expected room_removed, got {other:?}"),
    }
    assert_eq!(ids(api.members(&alice, &room.id).await?), ["u-alice"]);
    assert_eq!(
        code(api.moderate(&alice, &room.id, A::Kick, &bob, None).await),
        Some(ErrorCode::NotFound)
    );
    api.join(&bob, &room.id).await?;
    events.room_event().await?;
    events.user_event().await?;

    // Ban: out, told why, may not come back until unbanned.
    api.moderate(&alice, &room.id, A::Ban, &bob, None).await?;
    match events.room_event().await?.event {
        Some(room_event::Event::MemberLeft(left)) => assert_eq!(
            (left.user_id.as_str(), left.reason.as_str()),
            ("u-bob", "banned")
        ),
        other => anyhow::bail!("expected member_left, got {other:?}"),
    }
    match events.user_event().await?.event {
        Some(user_event::Event::RoomRemoved(r)) => assert_eq!(r.reason, "banned"),
        other => anyhow::bail!("expected room_removed, got {other:?}"),
    }
    assert_eq!(ids(api.members(&alice, &room.id).await?), ["u-alice"]);
    let join = pb::JoinRoomRequest {
        room: room.id.clone(),
    };
    assert_eq!(
        code(api.client.join_room(bob.request(join.clone())).await),
        Some(ErrorCode::Forbidden)
    );
    api.moderate(&alice, &room.id, A::Unban, &bob, None).await?;
    api.client.join_room(bob.request(join.clone())).await?;

    // A non-member may be banned, silently; the ban may expire.
    api.moderate(&alice, &room.id, A::Ban, &carol, Some(1))
        .await?;
    assert_eq!(
        code(api.client.join_room(carol.request(join.clone())).await),
        Some(ErrorCode::Forbidden)
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    api.client.join_room(carol.request(join)).await?;
    assert_eq!(
        ids(api.members(&alice, &room.id).await?),
        ["u-alice", "u-bob", "u-carol"]
    );
    assert_eq!(
        code(
            api.moderate(&alice, &room.id, A::Ban, &carol, Some(0))
                .await
        ),
        Some(ErrorCode::InvalidArgument)
    );
    server.stop().await
}

async fn mute_and_unmute(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob] = ["alice", "bob"].map(user);
    let room = api.public_room(&alice, &[&bob]).await?;
    let mut events = server.events().await?;
    events.watch_user(&bob).await?;

    api.moderate(&alice, &room.id, A::Mute, &bob, None).await?;
    match events.user_event().await?.event {
        Some(user_event::Event::Muted(m)) => {
            assert_eq!((m.room.as_str(), m.until), (room.id.as_str(), None))
        }
        other => anyhow::bail!("expected muted, got {other:?}"),
    }
    let bob_member = |members: Vec<pb::Member>| members.into_iter().find(|m| m.user_id == "u-bob");
    let listed = bob_member(api.members(&alice, &room.id).await?)
        .ok_or_else(|| anyhow::anyhow!("bob missing"))?;
    assert!(listed.muted_forever && listed.muted_until.is_none());
    assert_eq!(
        code(api.send(&bob, &room.id, "hi", "c").await),
        Some(ErrorCode::Muted)
    );

    api.moderate(&alice, &room.id, A::Unmute, &bob, None)
        .await?;
    match events.user_event().await?.event {
        Some(user_event::Event::Unmuted(u)) => assert_eq!(u.room, room.id),
        other => anyhow::bail!("expected unmuted, got {other:?}"),
    }
    let listed = bob_member(api.members(&alice, &room.id).await?)
        .ok_or_else(|| anyhow::anyhow!("bob missing"))?;
    assert!(!listed.muted_forever && listed.muted_until.is_none());
    api.send(&bob, &room.id, "hi", "c").await?;

    let before = chrono::Utc::now().timestamp();
    api.moderate(&alice, &room.id, A::Mute, &bob, Some(60))
        .await?;
    let until = match events.user_event().await?.event {
        Some(user_event::Event::Muted(m)) => m.until.ok_or_else(|| anyhow::anyhow!("no end"))?,
        other => anyhow::bail!("expected muted, got {other:?}"),
    };
    assert!(
        (before + 59..=before + 61).contains(&until.seconds),
        "{until:?}"
    );
    let listed = bob_member(api.members(&alice, &room.id).await?)
        .ok_or_else(|| anyhow::anyhow!("bob missing"))?;
    assert_eq!(
        (listed.muted_until, listed.muted_forever),
        (Some(until), false)
    );
    assert_eq!(
        code(
            api.moderate(&alice, &room.id, A::Mute, &bob, Some(-5))
                .await
        ),
        Some(ErrorCode::InvalidArgument)
    );
    server.stop().await
}

async fn roles_and_authorization(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob, carol, dave, erin] = ["alice", "bob", "carol", "dave", "erin"].map(user);
    let room = api.public_room(&alice, &[&bob, &carol, &dave]).await?;
    let r = room.id.as_str();

    // Members do not moderate.
    assert_eq!(
        code(api.moderate(&carol, r, A::Kick, &dave, None).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.moderate(&erin, r, A::Kick, &dave, None).await),
        Some(ErrorCode::Forbidden)
    );

    // The owner promotes; roles show in listings.
    api.moderate(&alice, r, A::Promote, &bob, None).await?;
    api.moderate(&alice, r, A::Promote, &dave, None).await?;
    let roles: Vec<i32> = api
        .members(&alice, r)
        .await?
        .iter()
        .map(|m| m.role)
        .collect();
    let (o, a, m) = (
        pb::Role::Owner as i32,
        pb::Role::Admin as i32,
        pb::Role::Member as i32,
    );
    assert_eq!(roles, [o, a, m, a]);

    // An admin moderates members, but not admins, not the owner, and
    // changes no roles.
    api.moderate(&bob, r, A::Mute, &carol, None).await?;
    api.moderate(&bob, r, A::Unmute, &carol, None).await?;
    assert_eq!(
        code(api.moderate(&bob, r, A::Kick, &dave, None).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.moderate(&bob, r, A::Kick, &alice, None).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.moderate(&bob, r, A::Promote, &carol, None).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.moderate(&bob, r, A::Demote, &dave, None).await),
        Some(ErrorCode::Forbidden)
    );
    // Nobody acts on themselves; the owner is never a target.
    assert_eq!(
        code(api.moderate(&alice, r, A::Mute, &alice, None).await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(api.moderate(&bob, r, A::Mute, &bob, None).await),
        Some(ErrorCode::InvalidArgument)
    );
    // Members-only actions on a non-member.
    for action in [A::Kick, A::Mute, A::Unmute, A::Promote, A::Demote] {
        assert_eq!(
            code(api.moderate(&alice, r, action, &erin, None).await),
            Some(ErrorCode::NotFound),
            "{action:?}"
        );
    }
    assert_eq!(
        code(api.moderate(&alice, r, A::Unspecified, &carol, None).await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(api.moderate(&alice, "nope", A::Kick, &carol, None).await),
        Some(ErrorCode::NotFound)
    );

    // The owner acts on admins and demotes.
    api.moderate(&alice, r, A::Demote, &dave, None).await?;
    api.moderate(&bob, r, A::Kick, &dave, None).await?;
    api.moderate(&alice, r, A::Kick, &bob, None).await?;
    let roles: Vec<(String, i32)> = api
        .members(&alice, r)
        .await?
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert_eq!(
        roles,
        [("u-alice".to_owned(), o), ("u-carol".to_owned(), m)]
    );
    server.stop().await
}
