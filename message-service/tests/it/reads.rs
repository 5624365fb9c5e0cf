//! MarkRead: clamped, never backwards, unread counts, read events.

use chat_proto::ErrorCode;
use chat_proto::events::v1::room_event;
use chat_proto::message::v1 as pb;

use crate::helpers::{Db, TestServer, code, user};
use crate::on_both_backends;

on_both_backends!(read_positions_only_move_forward);

async fn read_positions_only_move_forward(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(user);
    let room = api.public_room(&alice, &[&bob]).await?;
    for i in 0..5 {
        api.send_ok(&alice, &room.id, &format!("m{i}")).await?;
    }
    let mine = api.my_rooms(&bob).await?;
    assert_eq!((mine[0].last_read_seq, mine[0].unread), (0, 5));

    let mut events = server.events().await?;
    events.watch_room(&room.id).await?;
    let mark = |seq: i64, origin: &str| pb::MarkReadRequest {
        room: room.id.clone(),
        seq,
        origin_connection_id: origin.to_owned(),
    };

    let reply = api
        .client
        .mark_read(bob.request(mark(3, "conn-1")))
        .await?
        .into_inner();
    assert_eq!((reply.last_read_seq, reply.moved), (3, true));
    let event = events.room_event().await?;
    assert_eq!(event.room, room.id);
    match event.event {
        Some(room_event::Event::Read(read)) => {
            assert_eq!(
                (
                    read.user_id.as_str(),
                    read.seq,
                    read.origin_connection_id.as_str()
                ),
                ("u-bob", 3, "conn-1")
            );
        }
        other => anyhow::bail!("expected read, got {other:?}"),
    }
    let mine = api.my_rooms(&bob).await?;
    assert_eq!((mine[0].last_read_seq, mine[0].unread), (3, 2));

    // Backwards or in place: nothing moves, nothing is published.
    for seq in [2, 3, -1] {
        let reply = api
            .client
            .mark_read(bob.request(mark(seq, "")))
            .await?
            .into_inner();
        assert_eq!((reply.last_read_seq, reply.moved), (3, false));
    }
    events.assert_quiet().await?;

    // Beyond the end: clamped to last_seq.
    let reply = api
        .client
        .mark_read(bob.request(mark(99, "")))
        .await?
        .into_inner();
    assert_eq!((reply.last_read_seq, reply.moved), (5, true));
    match events.room_event().await?.event {
        Some(room_event::Event::Read(read)) => {
            assert_eq!((read.seq, read.origin_connection_id.as_str()), (5, ""))
        }
        other => anyhow::bail!("expected read, got {other:?}"),
    }
    let mine = api.my_rooms(&bob).await?;
    assert_eq!((mine[0].last_read_seq, mine[0].unread), (5, 0));
    let reply = api
        .client
        .mark_read(bob.request(mark(99, "")))
        .await?
        .into_inner();
    assert_eq!((reply.last_read_seq, reply.moved), (5, false));

    // Members only.
    assert_eq!(
        code(api.client.mark_read(carol.request(mark(1, ""))).await),
        Some(ErrorCode::Forbidden)
    );
    let mut unknown = mark(1, "");
    unknown.room = "nope".into();
    assert_eq!(
        code(api.client.mark_read(carol.request(unknown)).await),
        Some(ErrorCode::NotFound)
    );
    server.stop().await
}
