//! The `disconnect` user events auth-service publishes, so that gateways
//! close a user's sockets at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_common::pubsub::{InProcessPubSub, PubSub, SubscriberEvent, channels};
use chat_proto::auth::v1::{ChangePasswordRequest, SetDisabledRequest};
use chat_proto::events::v1::{ForceDisconnect, UserEvent, user_event};
use prost::Message as _;
use tokio::sync::mpsc;

use crate::helpers::{PASSWORD, TestServer, identity_of};

/// The next disconnect published on the subscribed channels.
async fn next_disconnect(
    events: &mut mpsc::Receiver<SubscriberEvent>,
) -> anyhow::Result<(String, ForceDisconnect)> {
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .context("no event published")?
        .context("subscriber gone")?;
    let SubscriberEvent::Message { channel, payload } = event else {
        anyhow::bail!("unexpected {event:?}");
    };
    let decoded = UserEvent::decode(payload)?;
    match decoded.event {
        Some(user_event::Event::Disconnect(disconnect)) => Ok((channel.to_string(), disconnect)),
        other => anyhow::bail!("not a disconnect: {other:?}"),
    }
}

#[tokio::test]
async fn disabling_and_password_changes_publish_disconnects() -> anyhow::Result<()> {
    let pubsub = Arc::new(InProcessPubSub::new());
    let server = TestServer::start_with(|c| {
        c.admin_usernames = vec!["root".into()];
        c.pubsub = pubsub.clone();
    })
    .await?;
    let root = server.register("root").await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let alice_id = identity_of(&alice)?.user_id;
    let bob_identity = identity_of(&bob)?;
    let (subscriber, mut events) = pubsub.subscriber().await?;
    subscriber.subscribe(&channels::user(&alice_id)).await?;
    subscriber
        .subscribe(&channels::user(&bob_identity.user_id))
        .await?;

    server
        .admin(&root.access_token)?
        .set_disabled(SetDisabledRequest {
            user: "alice".into(),
            disabled: true,
        })
        .await?;
    let (channel, disconnect) = next_disconnect(&mut events).await?;
    assert_eq!(channel, channels::user(&alice_id));
    assert_eq!(disconnect.close_code, 4003);

    server
        .client
        .clone()
        .change_password(bob_identity.request(ChangePasswordRequest {
            old_password: PASSWORD.into(),
            new_password: "battery staple".into(),
        }))
        .await?;
    let (channel, disconnect) = next_disconnect(&mut events).await?;
    assert_eq!(channel, channels::user(&bob_identity.user_id));
    assert_eq!(disconnect.close_code, 4001);

    // Re-enabling publishes nothing.
    server
        .admin(&root.access_token)?
        .set_disabled(SetDisabledRequest {
            user: "alice".into(),
            disabled: false,
        })
        .await?;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), events.recv())
            .await
            .is_err()
    );
    Ok(())
}
