//! `chatctl presence who` and `chatctl notifications list`.

use std::time::Duration;

use anyhow::Context;
use chat_common::identity::ServiceAuth;
use chat_proto::message::v1 as msg;
use chat_proto::presence::v1 as pb;
use chat_proto::presence::v1::presence_service_client::PresenceServiceClient;
use serde_json::{Value, json};

use crate::support::{TestSystem, User, WAIT, assert_like};

/// Registers a connection of `user` on `gateway`, as a gateway does.
async fn connect(
    sys: &TestSystem,
    user: &User,
    connection: &str,
    gateway: &str,
) -> anyhow::Result<()> {
    let channel = chat_common::grpc::channel(&format!("http://{}", sys.system.presence_addr))?;
    let mut presence = PresenceServiceClient::with_interceptor(
        channel,
        ServiceAuth::new(sys.system.service_token.clone())?,
    );
    presence
        .add_connection(pb::AddConnectionRequest {
            user_id: user.id.clone(),
            connection_id: connection.into(),
            gateway_id: gateway.into(),
            room_ids: vec![],
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn who_lists_online_users_per_gateway() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let empty = sys.run(&["presence", "who"]).await?.ok()?;
    assert_eq!(empty, "GATEWAY  USERNAME  USER_ID  CONNECTIONS\n");

    let alice = sys.register("alice").await?;
    let bob = sys.register("bob").await?;
    connect(&sys, &alice, "c1", "gw-2").await?;
    connect(&sys, &alice, "c2", "gw-1").await?;
    connect(&sys, &alice, "c3", "gw-2").await?;
    connect(&sys, &bob, "c4", "gw-1").await?;

    let table = sys.run(&["presence", "who"]).await?.ok()?;
    assert_eq!(
        table,
        format!(
            "GATEWAY  USERNAME  USER_ID                               CONNECTIONS\n\
             gw-1     alice     {a}  1\n\
             gw-1     bob       {b}  1\n\
             gw-2     alice     {a}  2\n",
            a = alice.id,
            b = bob.id
        )
    );
    let json = sys.run(&["--json", "presence", "who"]).await?.json()?;
    let users = json["users"].as_array().context("users")?;
    let alice_json = users
        .iter()
        .find(|u| u["user_id"] == json!(alice.id))
        .context("alice")?;
    assert_eq!(
        alice_json,
        &json!({
            "user_id": alice.id,
            "username": "alice",
            "connections": 3,
            "gateways": [
                {"gateway_id": "gw-1", "connections": 1},
                {"gateway_id": "gw-2", "connections": 2},
            ],
        })
    );
    Ok(())
}

#[tokio::test]
async fn notifications_of_an_offline_user_are_listed() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let alice = sys.register("alice").await?;
    let bob = sys.register("bob").await?;
    let direct = msg::OpenDirectRequest {
        user_id: bob.id.clone(),
        username: "bob".into(),
        display_name: "bob".into(),
    };
    let room = sys
        .messages()?
        .open_direct(alice.identity().request(direct))
        .await?
        .into_inner()
        .room
        .context("no room")?;
    sys.send(&alice, &room.id, "psst").await?;

    // The notification travels through the outbox and the event bus.
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed: Value = loop {
        let json = sys
            .run(&["--json", "notifications", "list", "bob"])
            .await?
            .json()?;
        if json["notifications"]
            .as_array()
            .is_some_and(|n| !n.is_empty())
        {
            break json;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no notification");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let n = &listed["notifications"][0];
    assert_eq!(
        json!({"user_id": n["user_id"], "kind": n["kind"], "room": n["room"], "seq": n["seq"],
               "from": n["from"], "from_name": n["from_name"]}),
        json!({"user_id": bob.id, "kind": "dm", "room": room.id, "seq": 1,
               "from": alice.id, "from_name": "alice"})
    );
    let table = sys.run(&["notifications", "list", &bob.id]).await?.ok()?;
    assert_like(
        &table,
        &format!(
            "CREATED               KIND  ROOM                                  SEQ  FROM\n\
             *  dm    {}  1    alice\n",
            room.id
        ),
    );
    let none = sys
        .run(&["notifications", "list", "alice", "--all"])
        .await?
        .ok()?;
    assert_eq!(none, "CREATED  KIND  ROOM  SEQ  FROM\n");
    Ok(())
}
