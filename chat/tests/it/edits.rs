//! Edit and recall: sender-only edits, recall within the window, owner and
//! admin deletes at any time, tombstones keep their seq.

use std::time::Duration;

use serde_json::json;

use crate::support::{Deployment, TestSystem};

async fn the_sender_edits_and_members_see_it(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut a = t.ws(&alice).await?;
    let mut b = t.ws(&bob).await?;
    a.request(json!({"type": "send", "room": room, "text": "helo", "client_msg_id": "1"}))
        .await?;

    let ack = a
        .request(json!({"type": "edit", "room": room, "seq": 1, "text": "hello"}))
        .await?;
    assert_eq!(ack["type"], "ack");
    assert_eq!(
        (&ack["message"]["text"], &ack["message"]["seq"]),
        (&json!("hello"), &json!(1))
    );
    assert!(
        ack["message"]["edited_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    let edited = b.next_of("message_edited").await?;
    assert_eq!(edited["room"], room.as_str());
    assert_eq!(edited["message"], ack["message"]);

    let error = b
        .request(json!({"type": "edit", "room": room, "seq": 1, "text": "mine now"}))
        .await?;
    assert_eq!(error["code"], "forbidden");
    let error = a
        .request(json!({"type": "edit", "room": room, "seq": 99, "text": "?"}))
        .await?;
    assert_eq!(error["code"], "not_found");
    Ok(())
}

async fn a_recalled_message_stays_as_a_tombstone(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut a = t.ws(&alice).await?;
    let mut b = t.ws(&bob).await?;
    for i in 1..=2 {
        b.request(json!({"type": "send", "room": room, "text": format!("b{i}"), "client_msg_id": i.to_string()})).await?;
    }

    let error = a
        .request(json!({"type": "edit", "room": room, "seq": 1, "text": "x"}))
        .await?;
    assert_eq!(
        error["code"], "forbidden",
        "even the owner cannot edit another's message"
    );
    let ack = b
        .request(json!({"type": "delete", "room": room, "seq": 1}))
        .await?;
    assert_eq!(ack["type"], "ack");
    assert_eq!(
        (&ack["message"]["deleted"], &ack["message"]["text"]),
        (&json!(true), &json!(""))
    );
    assert_eq!(
        a.next_of("message_deleted").await?,
        json!({"type": "message_deleted", "room": room, "seq": 1})
    );
    // The owner may delete anyone's message at any time.
    a.request(json!({"type": "delete", "room": room, "seq": 2}))
        .await?;
    // Every member connection hears of both, the recalling sender's included.
    assert_eq!(b.next_of("message_deleted").await?["seq"], 1);
    assert_eq!(b.next_of("message_deleted").await?["seq"], 2);

    let (_, body) = t
        .get(&format!("/rooms/{room}/messages"), Some(&alice.token))
        .await?;
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(messages.len(), 2);
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(
            (&m["seq"], &m["deleted"], &m["text"]),
            (&json!(i + 1), &json!(true), &json!(""))
        );
    }
    let ack = b
        .request(json!({"type": "send", "room": room, "text": "next", "client_msg_id": "3"}))
        .await?;
    assert_eq!(ack["message"]["seq"], 3, "deleted seqs are never reused");
    Ok(())
}

async fn recall_ends_with_the_window_and_others_cannot_recall(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start_with(deployment, |o| o.recall_window = Duration::from_millis(300))
        .await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let carol = t.register("carol").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    t.join(&carol, &room).await?;
    let mut b = t.ws(&bob).await?;
    let mut c = t.ws(&carol).await?;
    b.request(json!({"type": "send", "room": room, "text": "oops", "client_msg_id": "1"}))
        .await?;
    let error = c
        .request(json!({"type": "delete", "room": room, "seq": 1}))
        .await?;
    assert_eq!(
        error["code"], "forbidden",
        "a member cannot recall another's message"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let error = b
        .request(json!({"type": "delete", "room": room, "seq": 1}))
        .await?;
    assert_eq!(error["code"], "forbidden", "past the recall window");
    Ok(())
}

async fn replies_point_into_the_same_room_and_mentions_resolve(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    let other = t.room(&alice, "other", "public").await?;
    t.join(&bob, &room).await?;
    let mut a = t.ws(&alice).await?;
    a.request(json!({"type": "send", "room": room, "text": "question", "client_msg_id": "1"}))
        .await?;
    let ack = a
        .request(json!({"type": "send", "room": room, "text": "@bob see above, @nobody", "client_msg_id": "2", "reply_to": 1}))
        .await?;
    assert_eq!(ack["message"]["reply_to"], 1);
    assert_eq!(ack["message"]["mentions"], json!([bob.id]));
    let error = a
        .request(json!({"type": "send", "room": other, "text": "wrong room", "client_msg_id": "3", "reply_to": 2}))
        .await?;
    assert_eq!(error["code"], "invalid_argument");
    Ok(())
}

crate::on_both_deployments!(
    the_sender_edits_and_members_see_it,
    a_recalled_message_stays_as_a_tombstone,
    recall_ends_with_the_window_and_others_cannot_recall,
    replies_point_into_the_same_room_and_mentions_resolve,
);
