use std::time::Duration;

use bytes::Bytes;
use chat_common::bus::{BusMessage, EventBus, InProcessBus};

const WAIT: Duration = Duration::from_secs(5);

fn event(key: &str, id: &str) -> BusMessage {
    BusMessage {
        routing_key: key.to_owned(),
        event_id: id.to_owned(),
        payload: Bytes::from(format!("payload of {id}")),
    }
}

/// What every event bus must do. `prefix` keeps queues of concurrent runs
/// on a shared broker apart.
pub async fn contract(bus: &dyn EventBus, prefix: &str) -> anyhow::Result<()> {
    let mut messages = bus
        .consume(&format!("{prefix}messages"), &["message.*"])
        .await?;
    let mut everything = bus.consume(&format!("{prefix}all"), &["#"]).await?;

    bus.publish(event("message.created", "e1")).await?;
    bus.publish(event("member.joined", "e2")).await?;
    bus.publish(event("message.deleted", "e3")).await?;

    for expected in ["e1", "e3"] {
        let delivery = tokio::time::timeout(WAIT, messages.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        assert_eq!(delivery.message.event_id, expected);
        assert_eq!(
            delivery.message.payload,
            Bytes::from(format!("payload of {expected}"))
        );
        delivery.ack().await?;
    }
    for expected in ["e1", "e2", "e3"] {
        let delivery = tokio::time::timeout(WAIT, everything.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        assert_eq!(delivery.message.event_id, expected);
        delivery.ack().await?;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), messages.recv())
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn in_process_bus_meets_the_contract() -> anyhow::Result<()> {
    contract(&InProcessBus::new(), "").await
}
