//! The WebSocket protocol: authentication, `ready`, send/ack/message with
//! de-duplication and gap-free seq, history, typing, ping, join and leave
//! across a user's connections, resume.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Deployment, TestSystem, str_of};

async fn header_auth_gets_ready_with_rooms(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    let ws = t.ws(&alice).await?;
    let ready = &ws.ready;
    assert!(ready["session_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(ready["user"]["id"], alice.id.as_str());
    assert_eq!(ready["user"]["username"], "alice");
    assert_eq!(
        ready["rooms"],
        json!([{"id": room, "last_seq": 0, "last_read_seq": 0, "unread": 0}])
    );
    assert_eq!(ready["notifications"], json!([]));
    Ok(())
}

async fn first_frame_auth_gets_ready(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let mut ws = t.raw_ws().await?;
    ws.send(json!({"type": "auth", "token": alice.token}))
        .await?;
    let ready = ws.next().await?;
    assert_eq!(ready["type"], "ready");
    assert_eq!(ready["user"]["id"], alice.id.as_str());
    Ok(())
}

async fn a_bad_token_closes_with_4001(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let mut ws = t.raw_ws().await?;
    ws.send(json!({"type": "auth", "token": "not-a-token"}))
        .await?;
    assert_eq!(ws.closed().await?, 4001);

    let mut ws = t.raw_ws().await?;
    ws.send(json!({"type": "send", "room": "x", "text": "hi", "client_msg_id": "1"}))
        .await?;
    assert_eq!(ws.closed().await?, 4001, "a first frame that is not auth");

    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(t.ws_url())?;
    request
        .headers_mut()
        .insert("authorization", "Bearer garbage".parse()?);
    let (stream, _) = tokio_tungstenite::connect_async(request).await?;
    let mut ws = crate::support::Ws::from_stream(stream);
    assert_eq!(ws.closed().await?, 4001);
    Ok(())
}

async fn no_auth_within_the_timeout_closes_with_4001(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start_with(deployment, |o| {
        o.gateway_limits.auth_timeout = Duration::from_millis(300)
    })
    .await?;
    let mut ws = t.raw_ws().await?;
    assert_eq!(ws.closed().await?, 4001);
    Ok(())
}

async fn a_send_is_acked_and_reaches_every_member_connection(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut alice1 = t.ws(&alice).await?;
    let mut alice2 = t.ws(&alice).await?;
    let mut bob1 = t.ws(&bob).await?;

    let ack = alice1
        .request(json!({"type": "send", "room": room, "text": "hello @bob", "client_msg_id": "c1"}))
        .await?;
    assert_eq!(ack["type"], "ack");
    let message = &ack["message"];
    assert_eq!(message["room"], room.as_str());
    assert_eq!(message["seq"], 1);
    assert_eq!(message["sender_id"], alice.id.as_str());
    assert_eq!(message["sender_name"], "alice");
    assert_eq!(message["kind"], "text");
    assert_eq!(message["text"], "hello @bob");
    assert_eq!(message["client_msg_id"], "c1");
    assert_eq!(message["deleted"], false);
    assert!(
        message["created_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );

    for ws in [&mut alice1, &mut alice2, &mut bob1] {
        let event = ws.next_of("message").await?;
        assert_eq!(event["room"], room.as_str());
        assert_eq!(&event["message"], message);
    }
    Ok(())
}

async fn a_repeated_client_msg_id_acks_the_original_and_creates_nothing(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut a = t.ws(&alice).await?;
    let mut b = t.ws(&bob).await?;

    let first = a
        .request(json!({"type": "send", "room": room, "text": "once", "client_msg_id": "same"}))
        .await?;
    let again = a
        .request(json!({"type": "send", "room": room, "text": "twice?", "client_msg_id": "same"}))
        .await?;
    assert_eq!(again["message"], first["message"]);
    assert_eq!(b.next_of("message").await?["message"]["seq"], 1);
    b.assert_no("message").await?;

    // De-duplication is per sender: bob may use the same id.
    let bobs = b
        .request(json!({"type": "send", "room": room, "text": "mine", "client_msg_id": "same"}))
        .await?;
    assert_eq!(bobs["message"]["seq"], 2);
    Ok(())
}

async fn seq_is_gap_free_and_in_order_for_concurrent_senders(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let carol = t.register("carol").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    t.join(&carol, &room).await?;
    let mut watcher = t.ws(&carol).await?;
    let per_sender = 30;
    let mut senders = Vec::new();
    for user in [&alice, &bob] {
        let mut ws = t.ws(user).await?;
        let room = room.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..per_sender {
                ws.send(json!({"type": "send", "room": room, "text": format!("m{i}"), "client_msg_id": format!("c{i}")}))
                    .await?;
            }
            let mut acked = Vec::new();
            while acked.len() < per_sender {
                acked.push(ws.next_of("ack").await?["message"]["seq"].as_i64().unwrap_or(-1));
            }
            anyhow::Ok(acked)
        }));
    }
    for sender in senders {
        let acked = sender.await??;
        assert!(
            acked.windows(2).all(|w| w[0] < w[1]),
            "one connection's sends get increasing seq: {acked:?}"
        );
    }
    let mut seen = Vec::new();
    for _ in 0..2 * per_sender {
        seen.push(
            watcher.next_of("message").await?["message"]["seq"]
                .as_i64()
                .unwrap_or(-1),
        );
    }
    let expected: Vec<i64> = (1..=2 * per_sender as i64).collect();
    assert_eq!(seen, expected);
    Ok(())
}

async fn fill(
    t: &TestSystem,
    user: &crate::support::User,
    room: &str,
    n: usize,
) -> anyhow::Result<()> {
    let mut ws = t.ws(user).await?;
    for i in 1..=n {
        ws.request(json!({"type": "send", "room": room, "text": format!("m{i}"), "client_msg_id": format!("fill{i}")}))
            .await?;
    }
    Ok(())
}

fn seqs(messages: &Value) -> Vec<i64> {
    messages
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["seq"].as_i64())
        .collect()
}

async fn history_pages_exactly_over_websocket_and_http(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    fill(&t, &alice, &room, 12).await?;
    let mut ws = t.ws(&alice).await?;

    let latest = ws
        .request(json!({"type": "history", "room": room, "limit": 5}))
        .await?;
    assert_eq!(latest["type"], "history");
    assert_eq!(latest["room"], room.as_str());
    assert_eq!(seqs(&latest["messages"]), [8, 9, 10, 11, 12]);
    assert_eq!(latest["has_more"], true);
    let before = ws
        .request(json!({"type": "history", "room": room, "before": 3, "limit": 5}))
        .await?;
    assert_eq!(
        (seqs(&before["messages"]), &before["has_more"]),
        (vec![1, 2], &json!(false))
    );
    let after = ws
        .request(json!({"type": "history", "room": room, "after": 9, "limit": 2}))
        .await?;
    assert_eq!(
        (seqs(&after["messages"]), &after["has_more"]),
        (vec![10, 11], &json!(true))
    );
    let tail = ws
        .request(json!({"type": "history", "room": room, "after": 10, "limit": 2}))
        .await?;
    assert_eq!(
        (seqs(&tail["messages"]), &tail["has_more"]),
        (vec![11, 12], &json!(false))
    );

    let (status, body) = t
        .get(
            &format!("/rooms/{room}/messages?before=6&limit=3"),
            Some(&alice.token),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(
        (seqs(&body["messages"]), &body["has_more"]),
        (vec![3, 4, 5], &json!(true))
    );
    assert_eq!(body["messages"][0]["text"], "m3");
    let (_, body) = t
        .get(&format!("/rooms/{room}/messages"), Some(&alice.token))
        .await?;
    assert_eq!(seqs(&body["messages"]), (1..=12).collect::<Vec<i64>>());
    assert_eq!(body["has_more"], false);

    for query in ["limit=0", "limit=101", "before=3&after=1", "limit=abc"] {
        let (status, body) = t
            .get(
                &format!("/rooms/{room}/messages?{query}"),
                Some(&alice.token),
            )
            .await?;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_argument")),
            "{query}"
        );
    }
    Ok(())
}

async fn typing_reaches_the_others_in_the_room(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut a = t.ws(&alice).await?;
    let mut b = t.ws(&bob).await?;
    a.send(json!({"type": "typing", "room": room})).await?;
    let typing = b.next_of("typing").await?;
    assert_eq!(
        typing,
        json!({"type": "typing", "room": room, "user_id": alice.id, "username": "alice"})
    );
    a.assert_no("typing").await?;
    Ok(())
}

async fn ping_gets_pong_with_the_ref(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let mut ws = t.ws(&alice).await?;
    let pong = ws.request(json!({"type": "ping"})).await?;
    assert_eq!(pong, json!({"type": "pong", "ref": "r1"}));
    Ok(())
}

async fn joining_on_one_connection_updates_all_of_the_users_connections(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    let mut a = t.ws(&alice).await?;
    let mut b1 = t.ws(&bob).await?;
    let mut b2 = t.ws(&bob).await?;

    let ack = b1.request(json!({"type": "join", "room": room})).await?;
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["room"]["id"], room.as_str());
    let joined = a.next_of("member_joined").await?;
    assert_eq!(
        (&joined["room"], &joined["user_id"]),
        (&json!(room), &json!(bob.id))
    );
    let added = b2.next_of("room_added").await?;
    assert_eq!(added["room"], room.as_str());

    a.request(json!({"type": "send", "room": room, "text": "welcome", "client_msg_id": "w"}))
        .await?;
    assert_eq!(b1.next_of("message").await?["message"]["text"], "welcome");
    assert_eq!(b2.next_of("message").await?["message"]["text"], "welcome");

    let ack = b2.request(json!({"type": "leave", "room": room})).await?;
    assert_eq!(ack["type"], "ack");
    let removed = b1.next_of("room_removed").await?;
    assert_eq!(
        removed,
        json!({"type": "room_removed", "room": room, "reason": "left"})
    );
    let left = a.next_of("member_left").await?;
    assert_eq!(left["user_id"], bob.id.as_str());
    a.request(json!({"type": "send", "room": room, "text": "gone?", "client_msg_id": "g"}))
        .await?;
    b1.assert_no("message").await?;
    b2.assert_no("message").await?;
    Ok(())
}

async fn resume_replays_what_was_missed_in_order(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    fill(&t, &alice, &room, 5).await?;
    let mut b = t.ws(&bob).await?;
    assert_eq!(b.ready["rooms"][0]["last_seq"], 5);
    let mut refs = Vec::new();
    b.send(json!({"type": "resume", "rooms": {room.clone(): 2}, "ref": "res"}))
        .await?;
    loop {
        let frame = b.next().await?;
        if frame["type"] == "resumed" {
            assert_eq!(frame["ref"], "res");
            break;
        }
        assert_eq!(frame["type"], "message", "{frame}");
        refs.push(frame["message"]["seq"].as_i64().unwrap_or(-1));
    }
    assert_eq!(refs, [3, 4, 5]);
    let ack = b
        .request(json!({"type": "resume", "rooms": {"not-my-room": 0}}))
        .await?;
    assert_eq!(
        (ack["type"].as_str(), ack["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    assert_eq!(b.next_of("resumed").await?["ref"], "r1");
    let _ = str_of(&ack["message"])?;
    Ok(())
}

async fn a_client_away_for_1500_messages_gets_them_all_through_resume_and_history(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start_with(deployment, |o| {
        o.gateway_limits.frames_per_second = 1_000_000;
        o.gateway_limits.frame_burst = 1_000_000;
        o.gateway_limits.send_queue_frames = 4096;
    })
    .await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let total = 1500;
    let mut a = t.ws(&alice).await?;
    for i in 1..=total {
        a.send(json!({"type": "send", "room": room, "text": format!("m{i}"), "client_msg_id": format!("c{i}")})).await?;
    }
    for _ in 0..total {
        a.next_of("ack").await?;
    }

    let mut b = t.ws(&bob).await?;
    b.send(json!({"type": "resume", "rooms": {room.clone(): 0}, "ref": "res"}))
        .await?;
    let mut got = Vec::new();
    let truncated = loop {
        let frame = b.next().await?;
        match frame["type"].as_str() {
            Some("message") => got.push(frame["message"]["seq"].as_i64().unwrap_or(-1)),
            Some("resume_truncated") => break frame,
            other => anyhow::bail!("unexpected {other:?}: {frame}"),
        }
    };
    assert_eq!(
        truncated,
        json!({"type": "resume_truncated", "room": room, "next_seq": 1001})
    );
    assert_eq!(b.next().await?, json!({"type": "resumed", "ref": "res"}));
    assert_eq!(got, (1..=1000).collect::<Vec<i64>>());
    let mut after = 1000;
    loop {
        let page = b
            .request(json!({"type": "history", "room": room, "after": after, "limit": 100}))
            .await?;
        got.extend(seqs(&page["messages"]));
        after = *got.last().unwrap_or(&after);
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(got, (1..=total as i64).collect::<Vec<i64>>());
    Ok(())
}

/// A history page of 100 messages of 4,000 four-byte characters is a
/// frame of over 1.5 MB: it must reach the socket like any other.
async fn a_history_page_of_the_largest_messages_reaches_the_socket(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start_with(deployment, |o| {
        o.gateway_limits.frames_per_second = 1_000_000;
        o.gateway_limits.frame_burst = 1_000_000;
    })
    .await?;
    let alice = t.register("alice").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    let text = "\u{1F600}".repeat(4000);
    let mut ws = t.ws(&alice).await?;
    for i in 1..=100 {
        ws.send(
            json!({"type": "send", "room": room, "text": text, "client_msg_id": format!("big{i}")}),
        )
        .await?;
    }
    for _ in 0..100 {
        ws.next_of("ack").await?;
    }
    let page = ws
        .request(json!({"type": "history", "room": room, "limit": 100}))
        .await?;
    assert_eq!(page["type"], "history");
    assert_eq!(seqs(&page["messages"]), (1..=100).collect::<Vec<i64>>());
    assert!(
        page["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|m| m["text"] == text.as_str())
    );
    assert_eq!(page["has_more"], false);
    // The socket is still open.
    assert_eq!(ws.request(json!({"type": "ping"})).await?["type"], "pong");
    Ok(())
}

crate::on_both_deployments!(
    a_history_page_of_the_largest_messages_reaches_the_socket,
    a_client_away_for_1500_messages_gets_them_all_through_resume_and_history,
    header_auth_gets_ready_with_rooms,
    first_frame_auth_gets_ready,
    a_bad_token_closes_with_4001,
    no_auth_within_the_timeout_closes_with_4001,
    a_send_is_acked_and_reaches_every_member_connection,
    a_repeated_client_msg_id_acks_the_original_and_creates_nothing,
    seq_is_gap_free_and_in_order_for_concurrent_senders,
    history_pages_exactly_over_websocket_and_http,
    typing_reaches_the_others_in_the_room,
    ping_gets_pong_with_the_ref,
    joining_on_one_connection_updates_all_of_the_users_connections,
    resume_replays_what_was_missed_in_order,
);
