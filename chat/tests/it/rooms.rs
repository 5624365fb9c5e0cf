//! Rooms over HTTP: create, list, discover, join, leave, members.

use serde_json::json;

use crate::support::{Deployment, TestSystem};

async fn a_created_room_belongs_to_its_creator(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let (status, body) = t
        .post(
            "/rooms",
            Some(&alice.token),
            json!({"name": "general", "visibility": "public"}),
        )
        .await?;
    assert_eq!(status, 201);
    let room = &body["room"];
    assert_eq!(room["name"], "general");
    assert_eq!(room["kind"], "group");
    assert_eq!(room["visibility"], "public");
    assert_eq!(room["owner_id"], alice.id.as_str());
    assert_eq!(room["last_seq"], 0);

    let (status, body) = t.get("/rooms", Some(&alice.token)).await?;
    assert_eq!(status, 200);
    let rooms = body["rooms"].as_array().cloned().unwrap_or_default();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0]["id"], room["id"]);
    assert_eq!(rooms[0]["last_read_seq"], 0);
    assert_eq!(rooms[0]["unread"], 0);
    Ok(())
}

async fn bad_room_bodies_are_refused(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    for body in [
        json!({"name": "x", "visibility": "secret"}),
        json!({"name": "", "visibility": "public"}),
        json!({"visibility": "public"}),
    ] {
        let (status, reply) = t.post("/rooms", Some(&alice.token), body.clone()).await?;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some("invalid_argument")),
            "{body}"
        );
    }
    let (status, _) = t
        .post("/rooms", None, json!({"name": "x", "visibility": "public"}))
        .await?;
    assert_eq!(status, 401);
    Ok(())
}

async fn only_public_rooms_are_discoverable_and_joinable(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let public = t.room(&alice, "lobby", "public").await?;
    let private = t.room(&alice, "secret", "private").await?;

    let (status, body) = t.get("/rooms/public", Some(&bob.token)).await?;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [public.as_str()]);

    let (status, body) = t
        .post(
            &format!("/rooms/{public}/join"),
            Some(&bob.token),
            json!({}),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(body["room"]["id"], public.as_str());
    let (status, body) = t
        .post(
            &format!("/rooms/{private}/join"),
            Some(&bob.token),
            json!({}),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, body) = t
        .post(
            "/rooms/00000000-0000-0000-0000-000000000000/join",
            Some(&bob.token),
            json!({}),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    Ok(())
}

async fn members_are_listed_with_roles_and_leaving_removes(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;

    let (status, body) = t
        .get(&format!("/rooms/{room}/members"), Some(&bob.token))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(
        body["members"],
        json!([
            {"user_id": alice.id, "username": "alice", "role": "owner", "status": "offline"},
            {"user_id": bob.id, "username": "bob", "role": "member", "status": "offline"},
        ])
    );

    let (status, _) = t
        .post(&format!("/rooms/{room}/leave"), Some(&bob.token), json!({}))
        .await?;
    assert_eq!(status, 204);
    let (_, body) = t.get("/rooms", Some(&bob.token)).await?;
    assert_eq!(body["rooms"], json!([]));
    let (_, body) = t
        .get(&format!("/rooms/{room}/members"), Some(&alice.token))
        .await?;
    assert_eq!(body["members"].as_array().map(Vec::len), Some(1));
    Ok(())
}

async fn private_room_members_are_hidden_from_outsiders(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "secret", "private").await?;
    let (status, body) = t
        .get(&format!("/rooms/{room}/members"), Some(&bob.token))
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    Ok(())
}

crate::on_both_deployments!(
    a_created_room_belongs_to_its_creator,
    bad_room_bodies_are_refused,
    only_public_rooms_are_discoverable_and_joinable,
    members_are_listed_with_roles_and_leaving_removes,
    private_room_members_are_hidden_from_outsiders,
);
