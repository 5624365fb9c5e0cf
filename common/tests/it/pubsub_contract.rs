use std::time::Duration;

use bytes::Bytes;
use chat_common::pubsub::{InProcessPubSub, PubSub, SubscriberEvent};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

async fn next_message(rx: &mut mpsc::Receiver<SubscriberEvent>) -> anyhow::Result<(String, Bytes)> {
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await? {
            Some(SubscriberEvent::Message { channel, payload }) => {
                return Ok((channel.to_string(), payload));
            }
            Some(SubscriberEvent::Resubscribed) => continue,
            None => anyhow::bail!("subscriber closed"),
        }
    }
}

async fn nothing_more(rx: &mut mpsc::Receiver<SubscriberEvent>) -> anyhow::Result<()> {
    match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
        Err(_) => Ok(()),
        Ok(event) => anyhow::bail!("unexpected event {event:?}"),
    }
}

/// What every pub/sub backend must do. `prefix` keeps channels of
/// concurrent runs on a shared server apart.
pub async fn contract(pubsub: &dyn PubSub, prefix: &str) -> anyhow::Result<()> {
    let room = format!("{prefix}room:1");
    let other = format!("{prefix}room:2");
    let (a, mut a_rx) = pubsub.subscriber().await?;
    let (b, mut b_rx) = pubsub.subscriber().await?;
    a.subscribe(&room).await?;
    b.subscribe(&room).await?;
    b.subscribe(&other).await?;

    // Every subscriber of a channel gets each message, in publish order.
    for i in 0..3 {
        pubsub.publish(&room, Bytes::from(format!("m{i}"))).await?;
    }
    for rx in [&mut a_rx, &mut b_rx] {
        for i in 0..3 {
            assert_eq!(
                next_message(rx).await?,
                (room.clone(), Bytes::from(format!("m{i}")))
            );
        }
    }
    // Only subscribers of a channel get it.
    pubsub.publish(&other, Bytes::from_static(b"x")).await?;
    assert_eq!(
        next_message(&mut b_rx).await?,
        (other.clone(), Bytes::from_static(b"x"))
    );
    nothing_more(&mut a_rx).await?;

    // After unsubscribing, nothing more arrives.
    a.unsubscribe(&room).await?;
    pubsub.publish(&room, Bytes::from_static(b"after")).await?;
    assert_eq!(
        next_message(&mut b_rx).await?.1,
        Bytes::from_static(b"after")
    );
    nothing_more(&mut a_rx).await?;

    // Publishing to a channel nobody hears is fine.
    pubsub
        .publish(&format!("{prefix}nobody"), Bytes::from_static(b"?"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn in_process_pubsub_meets_the_contract() -> anyhow::Result<()> {
    contract(&InProcessPubSub::new(), "").await
}

#[tokio::test]
async fn a_dropped_in_process_subscriber_is_forgotten() -> anyhow::Result<()> {
    let pubsub = InProcessPubSub::new();
    let (sub, rx) = pubsub.subscriber().await?;
    sub.subscribe("c").await?;
    drop(sub);
    drop(rx);
    pubsub.publish("c", Bytes::from_static(b"x")).await?;
    Ok(())
}
