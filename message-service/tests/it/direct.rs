//! OpenDirect: one dm room per pair, private to the pair.

use chat_proto::ErrorCode;
use chat_proto::events::v1::user_event;
use chat_proto::message::v1 as pb;

use crate::helpers::{Db, Identity, TestServer, code, user};
use crate::on_both_backends;

on_both_backends!(direct_rooms_are_per_pair_and_private);

fn open(with: &Identity) -> pb::OpenDirectRequest {
    pb::OpenDirectRequest {
        user_id: with.user_id.clone(),
        username: with.username.clone(),
        display_name: with.display_name.clone(),
    }
}

async fn direct_rooms_are_per_pair_and_private(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(user);
    let mut events = server.events().await?;
    events.watch_user(&alice).await?;
    events.watch_user(&bob).await?;

    // Opened by bob, so the names sort regardless of who opens.
    let first = api
        .client
        .open_direct(bob.request(open(&alice)))
        .await?
        .into_inner();
    assert!(first.created);
    let room = first.room.ok_or_else(|| anyhow::anyhow!("no room"))?;
    assert_eq!(room.kind, pb::RoomKind::Dm as i32);
    assert_eq!(room.visibility, pb::Visibility::Private as i32);
    assert_eq!(room.name, "alice & bob");
    assert_eq!(room.owner_id, bob.user_id);
    let mut added = Vec::new();
    for _ in 0..2 {
        let event = events.user_event().await?;
        match event.event {
            Some(user_event::Event::RoomAdded(a)) => {
                added.push((event.user_id, a.room, a.last_seq))
            }
            other => anyhow::bail!("expected room_added, got {other:?}"),
        }
    }
    added.sort();
    assert_eq!(
        added,
        [
            ("u-alice".into(), room.id.clone(), 0),
            ("u-bob".into(), room.id.clone(), 0)
        ]
    );

    // The same pair, either way round, gets the same room.
    let again = api
        .client
        .open_direct(alice.request(open(&bob)))
        .await?
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.room.as_ref(), Some(&room));
    let again = api
        .client
        .open_direct(bob.request(open(&alice)))
        .await?
        .into_inner();
    assert!(!again.created);
    events.assert_quiet().await?;

    let members = api.members(&alice, &room.id).await?;
    let listed: Vec<(&str, i32)> = members
        .iter()
        .map(|m| (m.user_id.as_str(), m.role))
        .collect();
    let mut listed = listed;
    listed.sort();
    assert_eq!(
        listed,
        [
            ("u-alice", pb::Role::Member as i32),
            ("u-bob", pb::Role::Member as i32)
        ]
    );

    // Both talk; a third user sees nothing and cannot get in.
    api.send_ok(&alice, &room.id, "hi bob").await?;
    api.send_ok(&bob, &room.id, "hi alice").await?;
    assert_eq!(
        api.history(&bob, &room.id, None, None, 0)
            .await?
            .messages
            .len(),
        2
    );
    assert_eq!(
        code(api.history(&carol, &room.id, None, None, 0).await),
        Some(ErrorCode::Forbidden)
    );
    let join = pb::JoinRoomRequest {
        room: room.id.clone(),
    };
    assert_eq!(
        code(api.client.join_room(carol.request(join)).await),
        Some(ErrorCode::Forbidden)
    );
    let get = pb::GetRoomRequest {
        room: room.id.clone(),
    };
    assert_eq!(
        code(api.client.get_room(carol.request(get)).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.members(&carol, &room.id).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.send(&carol, &room.id, "let me in", "c").await),
        Some(ErrorCode::Forbidden)
    );
    // Nobody leaves or moderates a dm.
    let leave = pb::LeaveRoomRequest {
        room: room.id.clone(),
    };
    assert_eq!(
        code(api.client.leave_room(alice.request(leave)).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(
            api.moderate(&bob, &room.id, pb::ModerationAction::Kick, &alice, None)
                .await
        ),
        Some(ErrorCode::Forbidden)
    );
    // Not with yourself.
    assert_eq!(
        code(api.client.open_direct(alice.request(open(&alice))).await),
        Some(ErrorCode::InvalidArgument)
    );
    // A different pair, a different room.
    let other = api
        .client
        .open_direct(alice.request(open(&carol)))
        .await?
        .into_inner();
    assert!(other.created);
    assert_ne!(other.room.map(|r| r.id), Some(room.id));
    server.stop().await
}
