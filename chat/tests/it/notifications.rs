//! Notifications for mentions and direct messages: live when online,
//! stored and delivered once in the next `ready` when offline.

use std::time::Duration;

use chat_common::identity::ServiceAuth;
use chat_proto::presence::v1::ListNotificationsRequest;
use chat_proto::presence::v1::presence_service_client::PresenceServiceClient;
use serde_json::json;

use crate::support::{Deployment, TestSystem, User, str_of};

/// Waits until presence-service holds a pending notification for `user`
/// (events travel through the outbox and the event bus asynchronously).
async fn pending(t: &TestSystem, user: &User) -> anyhow::Result<()> {
    let system = t.system()?;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", system.presence_addr))?
            .connect()
            .await?;
    let mut client = PresenceServiceClient::with_interceptor(
        channel,
        ServiceAuth::new(system.service_token.clone())?,
    );
    let deadline = tokio::time::Instant::now() + crate::support::WAIT;
    loop {
        let request = ListNotificationsRequest {
            user_id: user.id.clone(),
            include_delivered: false,
        };
        if !client
            .list_notifications(request)
            .await?
            .get_ref()
            .notifications
            .is_empty()
        {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no notification was stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn an_offline_user_gets_a_mention_once_in_the_next_ready(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut a = t.ws(&alice).await?;
    a.request(json!({"type": "send", "room": room, "text": "hey @bob", "client_msg_id": "1"}))
        .await?;
    pending(&t, &bob).await?;

    let b = t.ws(&bob).await?;
    let notifications = b.ready["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(notifications.len(), 1);
    let n = &notifications[0];
    assert_eq!(
        (
            &n["type"],
            &n["kind"],
            &n["room"],
            &n["seq"],
            &n["from"],
            &n["from_name"]
        ),
        (
            &json!("notification"),
            &json!("mention"),
            &json!(room),
            &json!(1),
            &json!(alice.id),
            &json!("alice")
        )
    );
    let again = t.ws(&bob).await?;
    assert_eq!(again.ready["notifications"], json!([]), "delivered once");
    Ok(())
}

async fn an_online_user_gets_notifications_live(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let (_, body) = t
        .post("/dms", Some(&alice.token), json!({"user_id": bob.id}))
        .await?;
    let room = str_of(&body["room"]["id"])?;
    let mut a = t.ws(&alice).await?;
    let mut b = t.ws(&bob).await?;
    a.request(json!({"type": "send", "room": room, "text": "direct", "client_msg_id": "1"}))
        .await?;
    let n = b.next_of("notification").await?;
    assert_eq!(
        (&n["kind"], &n["room"], &n["seq"], &n["from"]),
        (&json!("dm"), &json!(room), &json!(1), &json!(alice.id))
    );
    a.assert_no("notification").await?;
    Ok(())
}

crate::on_both_deployments!(
    an_offline_user_gets_a_mention_once_in_the_next_ready,
    an_online_user_gets_notifications_live,
);
