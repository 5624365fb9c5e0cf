//! EditMessage and DeleteMessage: who, when, and the tombstone.

use std::time::Duration;

use chat_proto::ErrorCode;
use chat_proto::events::v1::room_event;
use chat_proto::message::v1 as pb;

use crate::helpers::{Db, TestServer, code, user};
use crate::on_both_backends;

on_both_backends!(
    editing_rules,
    deleting_leaves_a_tombstone,
    the_recall_window_binds_senders_only
);

fn edit(room: &str, seq: i64, text: &str) -> pb::EditMessageRequest {
    pb::EditMessageRequest {
        room: room.to_owned(),
        seq,
        text: text.to_owned(),
    }
}

fn delete(room: &str, seq: i64) -> pb::DeleteMessageRequest {
    pb::DeleteMessageRequest {
        room: room.to_owned(),
        seq,
    }
}

async fn editing_rules(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob] = ["alice", "bob"].map(user);
    let room = api.public_room(&alice, &[&bob]).await?;
    let original = api.send_ok(&bob, &room.id, "helo").await?;
    let mut events = server.events().await?;
    events.watch_room(&room.id).await?;

    let edited = api
        .client
        .edit_message(bob.request(edit(&room.id, 1, "hello @alice")))
        .await?
        .into_inner();
    assert_eq!(edited.text, "hello @alice");
    assert_eq!(edited.mentions, ["u-alice"]);
    assert!(edited.edited_at.is_some());
    assert_eq!(
        (edited.seq, &edited.id, &edited.created_at),
        (1, &original.id, &original.created_at)
    );
    match events.room_event().await?.event {
        Some(room_event::Event::MessageEdited(m)) => assert_eq!(m, edited),
        other => anyhow::bail!("expected message_edited, got {other:?}"),
    }
    let history = api.history(&alice, &room.id, None, None, 0).await?;
    assert_eq!(history.messages, [edited]);

    // Only the sender edits, and only with valid text.
    assert_eq!(
        code(
            api.client
                .edit_message(alice.request(edit(&room.id, 1, "x")))
                .await
        ),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(
            api.client
                .edit_message(bob.request(edit(&room.id, 1, "")))
                .await
        ),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(
            api.client
                .edit_message(bob.request(edit(&room.id, 1, &"a".repeat(4001))))
                .await
        ),
        Some(ErrorCode::TooLarge)
    );
    assert_eq!(
        code(
            api.client
                .edit_message(bob.request(edit(&room.id, 2, "x")))
                .await
        ),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(
            api.client
                .edit_message(bob.request(edit("nope", 1, "x")))
                .await
        ),
        Some(ErrorCode::NotFound)
    );
    events.assert_quiet().await?;
    server.stop().await
}

async fn deleting_leaves_a_tombstone(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(user);
    let room = api.public_room(&alice, &[&bob, &carol]).await?;
    api.send_ok(&bob, &room.id, "oops @carol").await?;
    api.send_ok(&bob, &room.id, "second").await?;
    let mut events = server.events().await?;
    events.watch_room(&room.id).await?;

    // Another member may not delete.
    assert_eq!(
        code(
            api.client
                .delete_message(carol.request(delete(&room.id, 1)))
                .await
        ),
        Some(ErrorCode::Forbidden)
    );

    let tombstone = api
        .client
        .delete_message(bob.request(delete(&room.id, 1)))
        .await?
        .into_inner();
    assert_eq!(
        (tombstone.seq, tombstone.text.as_str(), tombstone.deleted),
        (1, "", true)
    );
    assert!(tombstone.attachment.is_none() && tombstone.mentions.is_empty());
    assert_eq!(tombstone.sender_id, "u-bob");
    match events.room_event().await?.event {
        Some(room_event::Event::MessageDeleted(d)) => {
            assert_eq!((d.seq, d.deleted_by.as_str()), (1, "u-bob"))
        }
        other => anyhow::bail!("expected message_deleted, got {other:?}"),
    }
    // The seq stays, as a tombstone.
    let history = api.history(&alice, &room.id, None, None, 0).await?;
    assert_eq!(
        history.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(history.messages[0], tombstone);

    // Again: unchanged, no event. A tombstone cannot be edited.
    let again = api
        .client
        .delete_message(bob.request(delete(&room.id, 1)))
        .await?
        .into_inner();
    assert_eq!(again, tombstone);
    events.assert_quiet().await?;
    assert_eq!(
        code(
            api.client
                .edit_message(bob.request(edit(&room.id, 1, "back")))
                .await
        ),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(
            api.client
                .delete_message(bob.request(delete(&room.id, 9)))
                .await
        ),
        Some(ErrorCode::NotFound)
    );

    // The next message still gets the next seq.
    assert_eq!(api.send_ok(&alice, &room.id, "third").await?.seq, 3);
    server.stop().await
}

async fn the_recall_window_binds_senders_only(db: Db) -> anyhow::Result<()> {
    let server =
        TestServer::start_with(db, |c| c.recall_window = Duration::from_millis(300)).await?;
    let mut api = server.api().await?;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(user);
    let room = api.public_room(&alice, &[&bob, &carol]).await?;
    api.send_ok(&bob, &room.id, "one").await?;
    api.send_ok(&bob, &room.id, "two").await?;
    api.send_ok(&bob, &room.id, "three").await?;
    // Within the window the sender recalls.
    api.client
        .delete_message(bob.request(delete(&room.id, 1)))
        .await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // After it, the sender may not...
    assert_eq!(
        code(
            api.client
                .delete_message(bob.request(delete(&room.id, 2)))
                .await
        ),
        Some(ErrorCode::Forbidden)
    );
    // ...but the owner and admins may, any time.
    let deleted = api
        .client
        .delete_message(alice.request(delete(&room.id, 2)))
        .await?
        .into_inner();
    assert!(deleted.deleted);
    api.moderate(
        &alice,
        &room.id,
        pb::ModerationAction::Promote,
        &carol,
        None,
    )
    .await?;
    api.client
        .delete_message(carol.request(delete(&room.id, 3)))
        .await?;
    server.stop().await
}
