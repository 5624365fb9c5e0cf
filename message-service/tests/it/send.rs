//! SendMessage: seq, ack values, de-duplication, concurrency, limits,
//! membership, replies and mentions.

use chat_proto::ErrorCode;
use chat_proto::events::v1::room_event;
use chat_proto::message::v1 as pb;

use crate::helpers::{Db, TestServer, code, send_request, user};
use crate::on_both_backends;

on_both_backends!(
    sends_get_consecutive_seqs,
    a_repeated_client_msg_id_creates_nothing,
    concurrent_sends_are_gap_free_and_published_in_order,
    sends_committed_together_fail_alone,
    text_and_id_limits,
    only_members_send,
    reply_to_must_exist_in_the_room,
    mentions_resolve_to_members,
);

/// Two replicas on one database sent the same `client_msg_id` at once,
/// many times: each time one creates the message and the other answers
/// with it as a duplicate, whichever reads first (the loser's batch finds
/// the winner's row, or meets it at insert and is retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_on_a_client_msg_id_create_it_once() -> anyhow::Result<()> {
    let first = TestServer::start(Db::Postgres).await?;
    let second = first.replica().await?;
    let mut api = first.api().await?;
    let alice = user("alice");
    let room = api.public_room(&alice, &[]).await?;
    const ROUNDS: i64 = 30;
    for round in 1..=ROUNDS {
        let cmid = format!("r{round}");
        let mut calls = tokio::task::JoinSet::new();
        for server in [&first, &second] {
            let mut client = server.client()?;
            let request = send_request(&room.id, &format!("text {round}"), &cmid);
            let sender = alice.clone();
            calls.spawn(async move { client.send_message(sender.request(request)).await });
        }
        let mut replies = Vec::new();
        while let Some(call) = calls.join_next().await {
            replies.push(call??.into_inner());
        }
        replies.sort_by_key(|reply| reply.duplicate);
        let [created, duplicate] = replies.as_slice() else {
            anyhow::bail!("expected two replies, got {}", replies.len());
        };
        assert!(!created.duplicate && duplicate.duplicate, "round {round}");
        assert_eq!(created.message, duplicate.message, "round {round}");
        assert_eq!(created.message.as_ref().map(|m| m.seq), Some(round));
    }
    let history = api.history(&alice, &room.id, None, None, 0).await?;
    let mut seqs: Vec<i64> = history.messages.iter().map(|m| m.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=ROUNDS).collect::<Vec<_>>());
    second.stop().await?;
    first.stop().await
}

fn created(event: chat_proto::events::v1::RoomEvent) -> anyhow::Result<pb::Message> {
    match event.event {
        Some(room_event::Event::MessageCreated(message)) => Ok(message),
        other => anyhow::bail!("expected message_created, got {other:?}"),
    }
}

async fn sends_get_consecutive_seqs(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let (alice, bob) = (user("alice"), user("bob"));
    let room = api.public_room(&alice, &[&bob]).await?;
    let mut events = server.events().await?;
    events.watch_room(&room.id).await?;

    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        let cmid = format!("c{i}");
        let reply = api.send(&alice, &room.id, text, &cmid).await?;
        assert!(!reply.duplicate);
        let message = reply.message.ok_or_else(|| anyhow::anyhow!("no message"))?;
        assert_eq!(message.seq, i as i64 + 1);
        assert_eq!(message.room, room.id);
        assert_eq!(message.text, *text);
        assert_eq!(message.sender_id, "u-alice");
        assert_eq!(message.sender_name, "Alice");
        assert_eq!(message.kind, pb::MessageKind::Text as i32);
        assert_eq!(message.client_msg_id, cmid);
        assert!(message.created_at.is_some() && message.edited_at.is_none());
        assert!(!message.deleted && message.attachment.is_none() && message.reply_to.is_none());
        assert!(message.mentions.is_empty());
        assert!(!message.id.is_empty());
        // The live event carries exactly the acknowledged message.
        let event = events.room_event().await?;
        assert_eq!(event.room, room.id);
        assert_eq!(created(event)?, message);
    }
    let get = pb::GetRoomRequest {
        room: room.id.clone(),
    };
    assert_eq!(
        api.client
            .get_room(alice.request(get))
            .await?
            .into_inner()
            .last_seq,
        3
    );
    // The sender has read their own messages; bob has not.
    assert_eq!(api.my_rooms(&alice).await?[0].unread, 0);
    assert_eq!(api.my_rooms(&alice).await?[0].last_read_seq, 3);
    assert_eq!(api.my_rooms(&bob).await?[0].unread, 3);
    server.stop().await
}

async fn a_repeated_client_msg_id_creates_nothing(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut bus = server.bus().await?;
    let mut api = server.api().await?;
    let (alice, bob) = (user("alice"), user("bob"));
    let room = api.public_room(&alice, &[&bob]).await?;
    let mut events = server.events().await?;
    events.watch_room(&room.id).await?;
    assert_eq!(bus.next().await?.0.routing_key, "member.joined");

    let first = api.send(&alice, &room.id, "hello", "same").await?;
    assert!(!first.duplicate);
    created(events.room_event().await?)?;
    assert_eq!(bus.next().await?.0.routing_key, "message.created");

    // Even with another text, the original comes back and nothing happens.
    let again = api.send(&alice, &room.id, "hello again", "same").await?;
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    events.assert_quiet().await?;
    bus.assert_quiet().await?;

    // De-duplication is per sender: bob's "same" is a new message.
    let bobs = api.send(&bob, &room.id, "hi", "same").await?;
    assert!(!bobs.duplicate);
    assert_eq!(bobs.message.map(|m| m.seq), Some(2));
    let history = api.history(&alice, &room.id, None, None, 0).await?;
    assert_eq!(history.messages.len(), 2);
    server.stop().await
}

async fn concurrent_sends_are_gap_free_and_published_in_order(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let senders = ["alice", "bob", "carol", "dave", "erin"].map(user);
    let room = api
        .public_room(
            &senders[0],
            &[&senders[1], &senders[2], &senders[3], &senders[4]],
        )
        .await?;
    let mut events = server.events().await?;
    events.watch_room(&room.id).await?;

    let mut tasks = Vec::new();
    for sender in senders.clone() {
        let mut client = server.client()?;
        let room = room.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                let request =
                    send_request(&room, &format!("{} {i}", sender.username), &format!("m{i}"));
                let reply = client
                    .send_message(sender.request(request))
                    .await?
                    .into_inner();
                seqs.push(reply.message.map(|m| m.seq).unwrap_or_default());
            }
            anyhow::Ok(seqs)
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        let mine = task.await??;
        // One sender's sends get increasing seqs in the order sent.
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        seqs.extend(mine);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<i64>>());

    let mut published = Vec::new();
    for _ in 0..50 {
        published.push(created(events.room_event().await?)?.seq);
    }
    assert_eq!(published, (1..=50).collect::<Vec<i64>>());
    let history = api.history(&senders[0], &room.id, None, None, 100).await?;
    let stored: Vec<i64> = history.messages.iter().map(|m| m.seq).collect();
    assert_eq!(stored, (1..=50).collect::<Vec<i64>>());
    server.stop().await
}

/// Sends that arrive together share a transaction (group commit); in it
/// each one that is refused or repeats a `client_msg_id` is undone or
/// answered alone, and the others commit gap-free and publish in order.
async fn sends_committed_together_fail_alone(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let (alice, bob, mallory) = (user("alice"), user("bob"), user("mallory"));
    let room = api.public_room(&alice, &[&bob]).await?;
    let mut events = server.events().await?;
    events.watch_room(&room.id).await?;
    let batches_before = batch_metrics();

    // 40 sends of members, each client_msg_id twice (80 calls), and 10 of
    // a non-member, all at once.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40 {
        for _ in 0..2 {
            let sender = if i % 2 == 0 {
                alice.clone()
            } else {
                bob.clone()
            };
            let mut client = server.client()?;
            let request = send_request(&room.id, &format!("text {i}"), &format!("c{i}"));
            calls.spawn(async move {
                let reply = client.send_message(sender.request(request)).await;
                (format!("c{i}"), reply.map(tonic::Response::into_inner))
            });
        }
    }
    for i in 0..10 {
        let mut client = server.client()?;
        let request = send_request(&room.id, "let me in", &format!("m{i}"));
        let sender = mallory.clone();
        calls.spawn(async move {
            let reply = client.send_message(sender.request(request)).await;
            (format!("m{i}"), reply.map(tonic::Response::into_inner))
        });
    }
    let mut by_id: std::collections::BTreeMap<String, Vec<(bool, i64)>> = Default::default();
    let mut refused = 0;
    while let Some(call) = calls.join_next().await {
        let (id, reply) = call?;
        match reply {
            Ok(reply) => {
                let seq = reply.message.map(|m| m.seq).unwrap_or_default();
                by_id.entry(id).or_default().push((reply.duplicate, seq));
            }
            Err(status) => {
                assert!(id.starts_with('m'), "{id}: {status:?}");
                assert_eq!(code::<()>(Err(status)), Some(ErrorCode::Forbidden));
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 10);
    assert_eq!(by_id.len(), 40);
    let mut seqs = Vec::new();
    for (id, mut replies) in by_id {
        // One created it, the other got the same message back.
        replies.sort_unstable();
        assert_eq!(
            (replies.len(), replies[0].0, replies[1].0),
            (2, false, true),
            "{id}"
        );
        assert_eq!(replies[0].1, replies[1].1, "{id}");
        seqs.push(replies[0].1);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<i64>>());

    let mut published = Vec::new();
    for _ in 0..40 {
        published.push(created(events.room_event().await?)?.seq);
    }
    assert_eq!(published, (1..=40).collect::<Vec<i64>>());
    let history = api.history(&alice, &room.id, None, None, 100).await?;
    let stored: Vec<i64> = history.messages.iter().map(|m| m.seq).collect();
    assert_eq!(stored, (1..=40).collect::<Vec<i64>>());
    // Every call went through a batch, and at least one batch held more
    // than one send: fewer transactions than calls.
    let (batches, sends) = batch_metrics();
    assert_eq!(sends - batches_before.1, 90.0);
    assert!(
        batches - batches_before.0 < 90.0,
        "{} transactions for 90 sends",
        batches - batches_before.0
    );
    server.stop().await
}

/// The batch histogram's (count, sum): transactions and sends so far.
fn batch_metrics() -> (f64, f64) {
    let text = chat_common::metrics::render();
    let value = |suffix: &str| {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(&format!("chat_message_send_batch_sends_{suffix} "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    };
    (value("count"), value("sum"))
}

async fn text_and_id_limits(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let alice = user("alice");
    let room = api.public_room(&alice, &[]).await?;

    assert_eq!(
        code(api.send(&alice, &room.id, &"a".repeat(4001), "c1").await),
        Some(ErrorCode::TooLarge)
    );
    // Characters, not bytes: 4000 two-byte characters fit.
    let long = api.send(&alice, &room.id, &"é".repeat(4000), "c2").await?;
    assert_eq!(long.message.map(|m| m.seq), Some(1));
    assert_eq!(
        code(api.send(&alice, &room.id, "", "c3").await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(api.send(&alice, &room.id, " \n ", "c4").await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(api.send(&alice, &room.id, "hi", "").await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(api.send(&alice, &room.id, "hi", &"x".repeat(129)).await),
        Some(ErrorCode::InvalidArgument)
    );
    assert!(
        api.send(&alice, &room.id, "hi", &"x".repeat(128))
            .await
            .is_ok()
    );
    // Nothing rejected took a seq.
    let history = api.history(&alice, &room.id, None, None, 0).await?;
    assert_eq!(
        history.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2]
    );

    // A smaller configured limit applies.
    let small = TestServer::start_with(db, |c| c.max_text_chars = 5).await?;
    let mut api = small.api().await?;
    let room = api.public_room(&alice, &[]).await?;
    assert!(api.send(&alice, &room.id, "12345", "a").await.is_ok());
    assert_eq!(
        code(api.send(&alice, &room.id, "123456", "b").await),
        Some(ErrorCode::TooLarge)
    );
    small.stop().await?;
    server.stop().await
}

async fn only_members_send(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let (alice, bob) = (user("alice"), user("bob"));
    let room = api.public_room(&alice, &[]).await?;
    assert_eq!(
        code(api.send(&bob, &room.id, "hi", "c").await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(api.send(&bob, "nope", "hi", "c").await),
        Some(ErrorCode::NotFound)
    );

    // Muted: forbidden to speak with the `muted` code; a mute ends.
    api.join(&bob, &room.id).await?;
    api.moderate(&alice, &room.id, pb::ModerationAction::Mute, &bob, None)
        .await?;
    assert_eq!(
        code(api.send(&bob, &room.id, "hi", "c1").await),
        Some(ErrorCode::Muted)
    );
    api.moderate(&alice, &room.id, pb::ModerationAction::Unmute, &bob, None)
        .await?;
    assert!(api.send(&bob, &room.id, "hi", "c1").await.is_ok());
    api.moderate(&alice, &room.id, pb::ModerationAction::Mute, &bob, Some(1))
        .await?;
    assert_eq!(
        code(api.send(&bob, &room.id, "hi", "c2").await),
        Some(ErrorCode::Muted)
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(api.send(&bob, &room.id, "hi", "c2").await.is_ok());
    server.stop().await
}

async fn reply_to_must_exist_in_the_room(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let alice = user("alice");
    let room = api.public_room(&alice, &[]).await?;
    let other = api
        .create_room(&alice, "other", pb::Visibility::Public)
        .await?;
    api.send_ok(&alice, &room.id, "first").await?;
    api.send_ok(&alice, &other.id, "x").await?;
    api.send_ok(&alice, &other.id, "y").await?;

    let mut request = send_request(&room.id, "answer", "r1");
    request.reply_to = Some(1);
    let reply = api
        .client
        .send_message(alice.request(request))
        .await?
        .into_inner();
    let message = reply.message.ok_or_else(|| anyhow::anyhow!("no message"))?;
    assert_eq!((message.seq, message.reply_to), (2, Some(1)));

    for bad in [3, 0, -1] {
        let mut request = send_request(&room.id, "answer", "r2");
        request.reply_to = Some(bad);
        assert_eq!(
            code(api.client.send_message(alice.request(request)).await),
            Some(ErrorCode::InvalidArgument),
            "reply_to {bad}"
        );
    }
    server.stop().await
}

async fn mentions_resolve_to_members(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start(db).await?;
    let mut api = server.api().await?;
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(user);
    let room = api.public_room(&alice, &[&bob, &carol]).await?;
    let message = api
        .send_ok(
            &alice,
            &room.id,
            "hi @carol, @bob! and @dave, mail alice@bob.org @nobody",
        )
        .await?;
    // Members only, in membership order; dave is not a member.
    assert_eq!(message.mentions, ["u-bob", "u-carol"]);
    let _ = dave;
    let history = api.history(&bob, &room.id, None, None, 0).await?;
    assert_eq!(history.messages[0].mentions, ["u-bob", "u-carol"]);
    server.stop().await
}
