//! Direct messages: one room per pair, closed to everyone else.

use serde_json::json;

use crate::support::{Deployment, TestSystem, str_of};

async fn a_pair_always_gets_the_same_dm_room(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let (status, body) = t
        .post("/dms", Some(&alice.token), json!({"user_id": bob.id}))
        .await?;
    assert_eq!(status, 201);
    let room = &body["room"];
    assert_eq!(room["kind"], "dm");
    assert_eq!(room["visibility"], "private");
    assert_eq!(room["name"], "alice & bob");

    let (status, again) = t
        .post("/dms", Some(&alice.token), json!({"user_id": bob.id}))
        .await?;
    assert_eq!((status, &again["room"]["id"]), (200, &room["id"]));
    let (status, other_side) = t
        .post("/dms", Some(&bob.token), json!({"user_id": alice.id}))
        .await?;
    assert_eq!((status, &other_side["room"]["id"]), (200, &room["id"]));

    let (status, body) = t
        .post("/dms", Some(&alice.token), json!({"user_id": alice.id}))
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (status, body) = t
        .post(
            "/dms",
            Some(&alice.token),
            json!({"user_id": "00000000-0000-0000-0000-000000000000"}),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    Ok(())
}

async fn a_third_person_can_never_read_or_join_a_dm(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let eve = t.register("eve").await?;
    let (_, body) = t
        .post("/dms", Some(&alice.token), json!({"user_id": bob.id}))
        .await?;
    let room = str_of(&body["room"]["id"])?;
    let mut a = t.ws(&alice).await?;
    a.request(json!({"type": "send", "room": room, "text": "secret", "client_msg_id": "1"}))
        .await?;

    for (status, body) in [
        t.get(&format!("/rooms/{room}/messages"), Some(&eve.token))
            .await?,
        t.post(&format!("/rooms/{room}/join"), Some(&eve.token), json!({}))
            .await?,
        t.get(&format!("/rooms/{room}/members"), Some(&eve.token))
            .await?,
    ] {
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{body}"
        );
    }
    let mut e = t.ws(&eve).await?;
    let error = e
        .request(json!({"type": "send", "room": room, "text": "hi", "client_msg_id": "x"}))
        .await?;
    assert_eq!(error["code"], "forbidden");
    let error = e
        .request(json!({"type": "resume", "rooms": {room.clone(): 0}}))
        .await?;
    assert_eq!(error["code"], "forbidden");

    let (status, body) = t
        .post(&format!("/rooms/{room}/leave"), Some(&bob.token), json!({}))
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "leaving a dm"
    );
    Ok(())
}

async fn both_sides_see_a_new_dm_live(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let mut b = t.ws(&bob).await?;
    let (_, body) = t
        .post("/dms", Some(&alice.token), json!({"user_id": bob.id}))
        .await?;
    let room = str_of(&body["room"]["id"])?;
    assert_eq!(b.next_of("room_added").await?["room"], room.as_str());
    let mut a = t.ws(&alice).await?;
    a.request(json!({"type": "send", "room": room, "text": "psst", "client_msg_id": "1"}))
        .await?;
    assert_eq!(b.next_of("message").await?["message"]["text"], "psst");
    Ok(())
}

crate::on_both_deployments!(
    a_pair_always_gets_the_same_dm_room,
    a_third_person_can_never_read_or_join_a_dm,
    both_sides_see_a_new_dm_live,
);
