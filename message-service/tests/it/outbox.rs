//! Durable events: outbox rows reach the event bus with the right routing
//! keys, payloads and recipients.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chat_common::Backends;
use chat_common::bus::{BusError, BusMessage, Delivery, EventBus, InProcessBus};
use chat_common::pubsub::InProcessPubSub;
use chat_proto::events::v1::chat_event;
use chat_proto::message::v1 as pb;
use tokio::sync::mpsc;

use crate::helpers::{Bus, Db, TestServer, user};
use crate::on_both_backends;

on_both_backends!(outbox_events_reach_the_bus);

async fn outbox_events_reach_the_bus(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut bus = server.bus().await?;
    let mut api = server.api().await?;
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(user);
    let room = api
        .create_room(&alice, "general", pb::Visibility::Public)
        .await?;
    let mut event_ids = HashSet::new();

    api.join(&bob, &room.id).await?;
    api.join(&carol, &room.id).await?;
    for expected in ["u-bob", "u-carol"] {
        let (message, event) = bus.next().await?;
        assert_eq!(message.routing_key, "member.joined");
        assert_eq!(message.event_id, event.event_id);
        assert!(event_ids.insert(event.event_id.clone()));
        assert_eq!(event.room, room.id);
        assert_eq!(event.room_kind, pb::RoomKind::Group as i32);
        assert!(event.occurred_at.is_some());
        match event.event {
            Some(chat_event::Event::MemberJoined(j)) => assert_eq!(j.user_id, expected),
            other => anyhow::bail!("expected member_joined, got {other:?}"),
        }
    }

    // Mentioned members are recipients; the sender never is.
    let sent = api
        .send_ok(&alice, &room.id, "@bob @alice @dave look")
        .await?;
    let (message, event) = bus.next().await?;
    assert_eq!(message.routing_key, "message.created");
    assert!(event_ids.insert(event.event_id.clone()));
    assert_eq!(event.recipient_ids, ["u-bob"]);
    match event.event {
        Some(chat_event::Event::MessageCreated(m)) => assert_eq!(m, sent),
        other => anyhow::bail!("expected message_created, got {other:?}"),
    }
    // No mentions in a group room: no recipients.
    api.send_ok(&bob, &room.id, "plain").await?;
    let (_, event) = bus.next().await?;
    assert!(event.recipient_ids.is_empty());

    let edit = pb::EditMessageRequest {
        room: room.id.clone(),
        seq: 1,
        text: "edited".into(),
    };
    api.client.edit_message(alice.request(edit)).await?;
    let (message, event) = bus.next().await?;
    assert_eq!(message.routing_key, "message.edited");
    assert!(
        matches!(event.event, Some(chat_event::Event::MessageEdited(m)) if m.text == "edited" && m.seq == 1)
    );

    let delete = pb::DeleteMessageRequest {
        room: room.id.clone(),
        seq: 2,
    };
    api.client.delete_message(alice.request(delete)).await?;
    let (message, event) = bus.next().await?;
    assert_eq!(message.routing_key, "message.deleted");
    match event.event {
        Some(chat_event::Event::MessageDeleted(d)) => {
            assert_eq!((d.seq, d.deleted_by.as_str()), (2, "u-alice"))
        }
        other => anyhow::bail!("expected message_deleted, got {other:?}"),
    }

    let leave = pb::LeaveRoomRequest {
        room: room.id.clone(),
    };
    api.client.leave_room(carol.request(leave)).await?;
    api.moderate(&alice, &room.id, pb::ModerationAction::Kick, &bob, None)
        .await?;
    for expected in [("u-carol", "left"), ("u-bob", "kicked")] {
        let (message, event) = bus.next().await?;
        assert_eq!(message.routing_key, "member.left");
        match event.event {
            Some(chat_event::Event::MemberLeft(l)) => {
                assert_eq!((l.user_id.as_str(), l.reason.as_str()), expected)
            }
            other => anyhow::bail!("expected member_left, got {other:?}"),
        }
    }

    // A dm: the other member is a recipient, with the room kind.
    let open = pb::OpenDirectRequest {
        user_id: dave.user_id.clone(),
        username: dave.username.clone(),
        display_name: dave.display_name.clone(),
    };
    let dm = api
        .client
        .open_direct(alice.request(open))
        .await?
        .into_inner()
        .room;
    let dm = dm.ok_or_else(|| anyhow::anyhow!("no room"))?;
    api.send_ok(&alice, &dm.id, "psst @dave @alice").await?;
    let (message, event) = bus.next().await?;
    assert_eq!(message.routing_key, "message.created");
    assert_eq!(event.room_kind, pb::RoomKind::Dm as i32);
    assert_eq!(event.recipient_ids, ["u-dave"]);
    bus.assert_quiet().await?;
    server.stop().await
}

/// An event bus that refuses the first `failures` publishes.
struct FlakyBus {
    inner: InProcessBus,
    failures: AtomicUsize,
    attempts: AtomicUsize,
}

#[async_trait::async_trait]
impl EventBus for FlakyBus {
    async fn publish(&self, message: BusMessage) -> Result<(), BusError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(BusError::Unavailable("broker down".into()));
        }
        self.inner.publish(message).await
    }

    async fn consume(
        &self,
        queue: &str,
        bindings: &[&str],
    ) -> Result<mpsc::Receiver<Delivery>, BusError> {
        self.inner.consume(queue, bindings).await
    }
}

fn flaky_backends(failures: usize) -> (Backends, Arc<FlakyBus>) {
    let bus = Arc::new(FlakyBus {
        inner: InProcessBus::new(),
        failures: AtomicUsize::new(failures),
        attempts: AtomicUsize::new(0),
    });
    let backends = Backends {
        pubsub: Arc::new(InProcessPubSub::new()),
        bus: bus.clone(),
        description: "flaky bus".into(),
    };
    (backends, bus)
}

#[tokio::test]
async fn the_relay_retries_until_the_bus_takes_each_event() -> anyhow::Result<()> {
    let (backends, flaky) = flaky_backends(3);
    let server = TestServer::start_with(Db::Sqlite, |c| c.backends = backends).await?;
    let mut bus = server.bus().await?;
    let mut api = server.api().await?;
    let alice = user("alice");
    let room = api
        .create_room(&alice, "general", pb::Visibility::Public)
        .await?;
    // The send succeeds although the bus is down: the event waits in the outbox.
    api.send_ok(&alice, &room.id, "one").await?;
    api.send_ok(&alice, &room.id, "two").await?;
    for seq in [1, 2] {
        let (message, event) = bus.next().await?;
        assert_eq!(message.routing_key, "message.created");
        assert!(matches!(event.event, Some(chat_event::Event::MessageCreated(m)) if m.seq == seq));
    }
    bus.assert_quiet().await?;
    // Three refusals, then one accepted publish per event, each deleted after.
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 5);
    server.stop().await
}

#[tokio::test]
async fn outbox_events_survive_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = chat_common::db::sqlite_url(dir.path(), "kept.db");
    let alice = user("alice");

    let (backends, _) = flaky_backends(usize::MAX);
    let first = TestServer::start_with(Db::Sqlite, |c| {
        c.database_url = url.clone();
        c.backends = backends;
    })
    .await?;
    let mut api = first.api().await?;
    let room = api
        .create_room(&alice, "general", pb::Visibility::Public)
        .await?;
    let sent = api.send_ok(&alice, &room.id, "kept").await?;
    first.stop().await?;

    // Listening before the new process starts: its relay drains at once.
    let backends = Backends::in_process();
    let mut bus = Bus::consume(&backends).await?;
    let second = TestServer::start_with(Db::Sqlite, |c| {
        c.database_url = url.clone();
        c.backends = backends;
    })
    .await?;
    // Delivered by the new process's relay (at the latest on its next poll).
    let (message, event) = bus.next().await?;
    assert_eq!(message.routing_key, "message.created");
    assert!(matches!(event.event, Some(chat_event::Event::MessageCreated(m)) if m == sent));
    bus.assert_quiet().await?;
    second.stop().await
}
