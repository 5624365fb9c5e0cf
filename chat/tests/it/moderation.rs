//! Roles and moderation: kick, ban, mute, promote, and who may do what.

use serde_json::{Value, json};

use crate::support::{Deployment, TestSystem, User};

async fn moderate(
    t: &TestSystem,
    by: &User,
    room: &str,
    action: &str,
    target: &User,
    duration: Option<i64>,
) -> anyhow::Result<(u16, Value)> {
    let mut body = json!({"action": action, "user_id": target.id});
    if let Some(d) = duration {
        body["duration_s"] = json!(d);
    }
    t.post(&format!("/rooms/{room}/moderation"), Some(&by.token), body)
        .await
}

async fn a_kicked_users_sockets_stop_receiving_the_room_at_once(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let carol = t.register("carol").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    t.join(&carol, &room).await?;
    let mut a = t.ws(&alice).await?;
    let mut b1 = t.ws(&bob).await?;
    let mut b2 = t.ws(&bob).await?;
    let mut c = t.ws(&carol).await?;

    assert_eq!(
        moderate(&t, &alice, &room, "kick", &bob, None).await?.0,
        204
    );
    for b in [&mut b1, &mut b2] {
        assert_eq!(
            b.next_of("room_removed").await?,
            json!({"type": "room_removed", "room": room, "reason": "kicked"})
        );
    }
    let left = c.next_of("member_left").await?;
    assert_eq!(
        (&left["user_id"], &left["reason"]),
        (&json!(bob.id), &json!("kicked"))
    );

    a.request(
        json!({"type": "send", "room": room, "text": "after the kick", "client_msg_id": "k"}),
    )
    .await?;
    a.send(json!({"type": "typing", "room": room})).await?;
    assert_eq!(
        c.next_of("message").await?["message"]["text"],
        "after the kick"
    );
    for b in [&mut b1, &mut b2] {
        b.assert_no("message").await?;
        b.assert_no("typing").await?;
    }
    let error = b1
        .request(json!({"type": "send", "room": room, "text": "x", "client_msg_id": "x"}))
        .await?;
    assert_eq!(error["code"], "forbidden");
    // A kick is not a ban: bob may come back.
    t.join(&bob, &room).await?;
    Ok(())
}

async fn a_banned_user_cannot_rejoin_until_unbanned(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut b = t.ws(&bob).await?;
    assert_eq!(moderate(&t, &alice, &room, "ban", &bob, None).await?.0, 204);
    assert_eq!(b.next_of("room_removed").await?["reason"], "banned");
    let (status, body) = t
        .post(&format!("/rooms/{room}/join"), Some(&bob.token), json!({}))
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let error = b.request(json!({"type": "join", "room": room})).await?;
    assert_eq!(error["code"], "forbidden");
    assert_eq!(
        moderate(&t, &alice, &room, "unban", &bob, None).await?.0,
        204
    );
    t.join(&bob, &room).await?;
    Ok(())
}

async fn a_muted_user_cannot_send_until_unmuted(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut b = t.ws(&bob).await?;
    assert_eq!(
        moderate(&t, &alice, &room, "mute", &bob, Some(3600))
            .await?
            .0,
        204
    );
    let muted = b.next_of("muted").await?;
    assert_eq!(muted["room"], room.as_str());
    assert!(muted["until"].as_str().is_some_and(|s| s.ends_with('Z')));
    let error = b
        .request(json!({"type": "send", "room": room, "text": "hello?", "client_msg_id": "m1"}))
        .await?;
    assert_eq!(error["code"], "muted");

    assert_eq!(
        moderate(&t, &alice, &room, "unmute", &bob, None).await?.0,
        204
    );
    assert_eq!(
        b.next_of("unmuted").await?,
        json!({"type": "unmuted", "room": room})
    );
    let ack = b
        .request(json!({"type": "send", "room": room, "text": "back", "client_msg_id": "m2"}))
        .await?;
    assert_eq!(ack["message"]["seq"], 1);

    assert_eq!(
        moderate(&t, &alice, &room, "mute", &bob, None).await?.0,
        204
    );
    assert_eq!(
        b.next_of("muted").await?["until"],
        Value::Null,
        "a mute without duration lasts until undone"
    );
    Ok(())
}

async fn only_owners_and_admins_moderate_and_nobody_moderates_the_owner(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let carol = t.register("carol").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    t.join(&carol, &room).await?;

    let (status, body) = moderate(&t, &bob, &room, "kick", &carol, None).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "a member"
    );
    assert_eq!(
        moderate(&t, &alice, &room, "promote", &bob, None).await?.0,
        204
    );
    let (_, members) = t
        .get(&format!("/rooms/{room}/members"), Some(&alice.token))
        .await?;
    assert_eq!(members["members"][1]["role"], "admin");
    let (status, body) = moderate(&t, &bob, &room, "kick", &alice, None).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "the owner"
    );
    assert_eq!(
        moderate(&t, &bob, &room, "mute", &carol, Some(60)).await?.0,
        204,
        "an admin moderates"
    );
    assert_eq!(
        moderate(&t, &alice, &room, "demote", &bob, None).await?.0,
        204
    );
    let (status, _) = moderate(&t, &bob, &room, "unmute", &carol, None).await?;
    assert_eq!(status, 403, "demoted back to member");

    let (status, body) = t
        .post(
            &format!("/rooms/{room}/moderation"),
            Some(&alice.token),
            json!({"action": "smite", "user_id": bob.id}),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    Ok(())
}

async fn private_rooms_are_entered_only_by_being_added(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let carol = t.register("carol").await?;
    let room = t.room(&alice, "secret", "private").await?;
    let mut b = t.ws(&bob).await?;

    let (status, _) = t
        .post(
            &format!("/rooms/{room}/members"),
            Some(&carol.token),
            json!({"user_id": bob.id}),
        )
        .await?;
    assert_eq!(status, 403, "a non-member cannot add");
    let (status, body) = t
        .post(
            &format!("/rooms/{room}/members"),
            Some(&alice.token),
            json!({"user_id": bob.id}),
        )
        .await?;
    assert_eq!(status, 201);
    assert_eq!(body["member"]["user_id"], bob.id.as_str());
    assert_eq!(b.next_of("room_added").await?["room"], room.as_str());
    let (status, _) = t
        .get(&format!("/rooms/{room}/messages"), Some(&bob.token))
        .await?;
    assert_eq!(status, 200);
    let (status, body) = t
        .post(
            &format!("/rooms/{room}/members"),
            Some(&alice.token),
            json!({"user_id": bob.id}),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    Ok(())
}

async fn an_owner_who_leaves_hands_the_room_to_the_oldest_admin(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let carol = t.register("carol").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    t.join(&carol, &room).await?;
    assert_eq!(
        moderate(&t, &alice, &room, "promote", &carol, None)
            .await?
            .0,
        204
    );
    assert_eq!(
        t.post(
            &format!("/rooms/{room}/leave"),
            Some(&alice.token),
            json!({})
        )
        .await?
        .0,
        204
    );
    let (_, body) = t.get(&format!("/rooms/{room}"), Some(&bob.token)).await?;
    assert_eq!(body["room"]["owner_id"], carol.id.as_str());
    Ok(())
}

crate::on_both_deployments!(
    a_kicked_users_sockets_stop_receiving_the_room_at_once,
    a_banned_user_cannot_rejoin_until_unbanned,
    a_muted_user_cannot_send_until_unmuted,
    only_owners_and_admins_moderate_and_nobody_moderates_the_owner,
    private_rooms_are_entered_only_by_being_added,
    an_owner_who_leaves_hands_the_room_to_the_oldest_admin,
);
