//! Mentions and direct messages from the event bus: live to online users,
//! stored for offline ones and delivered once on their next connection.

use std::time::Duration;

use bytes::Bytes;
use chat_common::pubsub::channels;
use chat_proto::events::v1 as ev;
use chat_proto::message::v1::RoomKind;
use chat_proto::presence::v1 as pb;
use prost::Message as _;

use crate::helpers::{Created, TestServer, comparable, expected_notification};

fn dm<'a>(event_id: &'a str, seq: i64, to: &'a [&'a str]) -> Created<'a> {
    Created {
        event_id,
        room: "dm-ab",
        room_kind: RoomKind::Dm,
        seq,
        sender_id: "alice",
        sender_name: "Alice Ünicode",
        recipient_ids: to,
    }
}

#[tokio::test]
async fn an_offline_recipient_gets_stored_notifications_once_oldest_first() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mention = Created {
        event_id: "e-mention",
        room: "general",
        room_kind: RoomKind::Group,
        seq: 5,
        sender_id: "carol",
        sender_name: "Carol",
        recipient_ids: &["bob", "dave"],
    };
    server.publish_event(&mention.event()).await?;
    server
        .publish_event(&dm("e-dm", 6, &["bob"]).event())
        .await?;

    let stored = server.wait_for_notifications("bob", 2).await?;
    let expected = [
        expected_notification(
            "bob",
            pb::NotificationKind::Mention,
            "general",
            5,
            "carol",
            "Carol",
        ),
        expected_notification(
            "bob",
            pb::NotificationKind::Dm,
            "dm-ab",
            6,
            "alice",
            "Alice Ünicode",
        ),
    ];
    let got: Vec<pb::Notification> = stored.iter().map(comparable).collect::<Result<_, _>>()?;
    assert_eq!(got, expected);
    assert_eq!(server.notifications("bob", false).await?, stored);
    assert_eq!(server.wait_for_notifications("dave", 1).await?.len(), 1);

    let connected = server.connect("bob", "c1", "gw-1", &[]).await?;
    assert!(connected.came_online);
    assert_eq!(connected.notifications, stored);

    // Delivered once: neither another connection nor a reconnection gets
    // them again.
    let second = server.connect("bob", "c2", "gw-1", &[]).await?;
    assert!(second.notifications.is_empty());
    server.disconnect("bob", "c1").await?;
    server.disconnect("bob", "c2").await?;
    assert!(
        server
            .connect("bob", "c3", "gw-1", &[])
            .await?
            .notifications
            .is_empty()
    );

    assert!(server.notifications("bob", false).await?.is_empty());
    assert_eq!(server.notifications("bob", true).await?, stored);
    Ok(())
}

#[tokio::test]
async fn an_online_recipient_gets_a_live_user_event() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.connect("bob", "c1", "gw-1", &[]).await?;
    let mut live = server.subscribe(&[&channels::user("bob")]).await?;

    server
        .publish_event(&dm("e-live", 9, &["bob"]).event())
        .await?;
    let (channel, event) = live.next::<ev::UserEvent>().await?;
    assert_eq!(channel, "user:bob");
    assert_eq!(event.user_id, "bob");
    let Some(ev::user_event::Event::Notification(notification)) = event.event else {
        anyhow::bail!("not a notification: {event:?}");
    };
    assert_eq!(
        comparable(&notification)?,
        expected_notification(
            "bob",
            pb::NotificationKind::Dm,
            "dm-ab",
            9,
            "alice",
            "Alice Ünicode"
        )
    );

    // Delivered live, so nothing is pending, and the next connection gets
    // nothing.
    assert!(server.notifications("bob", false).await?.is_empty());
    assert_eq!(server.notifications("bob", true).await?, [notification]);
    assert!(
        server
            .connect("bob", "c2", "gw-2", &[])
            .await?
            .notifications
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn a_redelivered_event_notifies_once() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.connect("carol", "c1", "gw-1", &[]).await?;
    let mut live = server.subscribe(&[&channels::user("carol")]).await?;

    let offline = dm("e-twice", 1, &["bob"]).event();
    let online = dm("e-twice-live", 2, &["carol"]).event();
    for _ in 0..2 {
        server.publish_event(&offline).await?;
        server.publish_event(&online).await?;
    }
    // The consumer is sequential: once this later event is processed, both
    // copies of each earlier one have been.
    server
        .publish_event(&dm("e-marker", 3, &["dave"]).event())
        .await?;
    server.wait_for_notifications("dave", 1).await?;

    assert_eq!(server.notifications("bob", true).await?.len(), 1);
    assert_eq!(server.notifications("carol", true).await?.len(), 1);
    let (_, first) = live.next::<ev::UserEvent>().await?;
    assert!(matches!(
        first.event,
        Some(ev::user_event::Event::Notification(ref n)) if n.seq == 2
    ));
    live.expect_silence(Duration::from_millis(100)).await?;
    Ok(())
}

#[tokio::test]
async fn a_bad_payload_does_not_stop_the_consumer() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    // Field 1 with wire type 7, which does not exist.
    let garbage = Bytes::from_static(b"\x0f\xff\xff");
    assert!(ev::ChatEvent::decode(garbage.clone()).is_err());
    server.publish_raw("e-garbage", garbage).await?;
    server.publish_raw("e-empty", Bytes::new()).await?;

    server
        .publish_event(&dm("e-after", 7, &["bob"]).event())
        .await?;
    let stored = server.wait_for_notifications("bob", 1).await?;
    assert_eq!(stored.iter().map(|n| n.seq).collect::<Vec<_>>(), [7]);
    Ok(())
}

#[tokio::test]
async fn only_message_recipients_other_than_the_sender_are_notified() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let self_mention = Created {
        event_id: "e-self",
        room: "general",
        room_kind: RoomKind::Group,
        seq: 1,
        sender_id: "alice",
        sender_name: "Alice",
        recipient_ids: &["alice", "bob", "bob"],
    };
    server.publish_event(&self_mention.event()).await?;
    let joined = ev::ChatEvent {
        event_id: "e-joined".into(),
        room: "general".into(),
        event: Some(ev::chat_event::Event::MemberJoined(ev::MemberJoined {
            user_id: "carol".into(),
            username: "carol".into(),
        })),
        recipient_ids: vec!["carol".into()],
        ..Default::default()
    };
    server.publish_event(&joined).await?;
    server
        .publish_event(&dm("e-marker", 2, &["dave"]).event())
        .await?;
    server.wait_for_notifications("dave", 1).await?;

    assert!(server.notifications("alice", true).await?.is_empty());
    assert!(server.notifications("carol", true).await?.is_empty());
    let bob = server.notifications("bob", true).await?;
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].kind, i32::from(pb::NotificationKind::Mention));
    Ok(())
}
