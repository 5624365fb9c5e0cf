use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use chat_common::Namespace;
use chat_common::bus::{BusMessage, Delivery, EXCHANGE, EventBus, InProcessBus, SCHEMA_VERSION};
use chat_common::bus_rabbitmq::RabbitBus;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn event(key: &str, id: &str) -> BusMessage {
    BusMessage {
        routing_key: key.to_owned(),
        event_id: id.to_owned(),
        // Carried as it is, so a consumer's span joins the publisher's trace.
        traceparent: Some(TRACEPARENT.to_owned()),
        payload: Bytes::from(format!("payload of {id}")),
    }
}

/// The next delivery whose event id is in `ours`. On a shared broker other
/// tests publish to the same exchange and a `#` binding sees their events
/// too: those are acked (so the test queue drains) and skipped.
async fn next_own(
    rx: &mut mpsc::Receiver<Delivery>,
    ours: &HashSet<String>,
    wait: Duration,
) -> anyhow::Result<Option<Delivery>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let delivery = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return Ok(None),
            Ok(None) => anyhow::bail!("delivery channel closed"),
            Ok(Some(delivery)) => delivery,
        };
        if ours.contains(&delivery.message.event_id) {
            return Ok(Some(delivery));
        }
        delivery.ack().await?;
    }
}

/// What every event bus must do. `prefix` keeps queues, routing keys and
/// event ids of concurrent runs on a shared broker apart (it must not
/// contain `.`, `*` or `#`).
pub async fn contract(bus: &dyn EventBus, prefix: &str) -> anyhow::Result<()> {
    // The prefix goes into the first word of every routing key, so other
    // tests' `message.*` queues never see these events; only `#` bindings do.
    let key = |k: &str| format!("{prefix}{k}");
    let id = |i: &str| format!("{prefix}{i}");
    let ours: HashSet<String> = ["e1", "e2", "e3"].into_iter().map(id).collect();

    let mut messages = bus
        .consume(&format!("{prefix}messages"), &[&key("message.*")])
        .await?;
    let mut everything = bus.consume(&format!("{prefix}all"), &["#"]).await?;

    bus.publish(event(&key("message.created"), &id("e1")))
        .await?;
    bus.publish(event(&key("member.joined"), &id("e2"))).await?;
    bus.publish(event(&key("message.deleted"), &id("e3")))
        .await?;

    for expected in ["e1", "e3"] {
        let delivery = next_own(&mut messages, &ours, WAIT)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{expected} not delivered to `message.*`"))?;
        assert_eq!(delivery.message.event_id, id(expected));
        assert_eq!(
            delivery.message.payload,
            Bytes::from(format!("payload of {}", id(expected)))
        );
        assert_eq!(delivery.message.traceparent.as_deref(), Some(TRACEPARENT));
        delivery.ack().await?;
    }
    for expected in ["e1", "e2", "e3"] {
        let delivery = next_own(&mut everything, &ours, WAIT)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{expected} not delivered to `#`"))?;
        assert_eq!(delivery.message.event_id, id(expected));
        delivery.ack().await?;
    }
    if let Some(extra) = next_own(&mut messages, &ours, Duration::from_millis(200)).await? {
        panic!(
            "`message.*` also got {} ({})",
            extra.message.event_id, extra.message.routing_key
        );
    }
    Ok(())
}

#[tokio::test]
async fn in_process_bus_meets_the_contract() -> anyhow::Result<()> {
    contract(&InProcessBus::new(), "").await
}

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A bus on the test broker, or `None` (after a loud SKIP line) when none
/// is running, unless `CI` is set: there a missing broker is a failure.
async fn rabbit(test: &str) -> anyhow::Result<Option<RabbitBus>> {
    match RabbitBus::connect(&amqp_url(), &Namespace::none()).await {
        Ok(bus) => Ok(Some(bus)),
        Err(error) if std::env::var_os("CI").is_some() => anyhow::bail!(
            "{test}: {error}; start RabbitMQ with `rabbitmq-server -detached` \
             (or point AMQP_URL at one)"
        ),
        Err(error) => {
            eprintln!(
                "SKIP {test}: {error} (set CI=1 to make this a failure; \
                 start it with `rabbitmq-server -detached`)"
            );
            Ok(None)
        }
    }
}

fn unique_prefix() -> String {
    format!("test-{}-", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn rabbitmq_bus_meets_the_contract() -> anyhow::Result<()> {
    let Some(bus) = rabbit("rabbitmq_bus_meets_the_contract").await? else {
        return Ok(());
    };
    let prefix = unique_prefix();
    let result = contract(&bus, &prefix).await;
    // The contract dropped its receivers; give the consumer tasks a moment
    // to stop so they do not re-declare the queues after the delete.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for queue in ["messages", "all"] {
        bus.delete_queue(&format!("{prefix}{queue}")).await?;
    }
    result
}

#[tokio::test]
async fn a_namespace_keeps_deployments_on_one_broker_apart() -> anyhow::Result<()> {
    let test = "a_namespace_keeps_deployments_on_one_broker_apart";
    let Some(plain) = rabbit(test).await? else {
        return Ok(());
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let namespace = Namespace::new(&format!("ns{}", &suffix[..12]))?;
    let namespaced = RabbitBus::connect(&amqp_url(), &namespace).await?;
    let queue = format!("q{suffix}");
    let key = format!("k{suffix}.created");
    let result = async {
        let mut inside = namespaced.consume(&queue, &[&key]).await?;
        let mut outside = plain.consume(&queue, &[&key]).await?;
        let inside_id = format!("in-{suffix}");
        let outside_id = format!("out-{suffix}");
        let ours = HashSet::from([inside_id.clone(), outside_id.clone()]);
        namespaced.publish(event(&key, &inside_id)).await?;
        plain.publish(event(&key, &outside_id)).await?;
        for (rx, expected) in [(&mut inside, &inside_id), (&mut outside, &outside_id)] {
            let delivery = next_own(rx, &ours, WAIT)
                .await?
                .ok_or_else(|| anyhow::anyhow!("{expected} not delivered"))?;
            assert_eq!(&delivery.message.event_id, expected);
            delivery.ack().await?;
            assert!(
                next_own(rx, &ours, Duration::from_millis(300))
                    .await?
                    .is_none(),
                "an event crossed namespaces"
            );
        }
        anyhow::Ok(())
    }
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    namespaced.delete_queue(&queue).await?;
    plain.delete_queue(&queue).await?;
    namespaced.delete_exchange().await?;
    result
}

#[tokio::test]
async fn rabbitmq_redelivers_unacked_messages() -> anyhow::Result<()> {
    let Some(bus) = rabbit("rabbitmq_redelivers_unacked_messages").await? else {
        return Ok(());
    };
    let prefix = unique_prefix();
    let queue = format!("{prefix}redelivery");
    let key = format!("{prefix}message.created");
    let id = format!("{prefix}e1");
    let ours = HashSet::from([id.clone()]);

    let result = async {
        let mut rx = bus.consume(&queue, &[&key]).await?;
        bus.publish(event(&key, &id)).await?;
        let first = next_own(&mut rx, &ours, WAIT)
            .await?
            .ok_or_else(|| anyhow::anyhow!("not delivered"))?;
        assert!(!first.redelivered);
        // A consumer that dies mid-handling: neither ack nor reject.
        drop(first);
        drop(rx);

        let mut rx = bus.consume(&queue, &[&key]).await?;
        let again = next_own(&mut rx, &ours, WAIT)
            .await?
            .ok_or_else(|| anyhow::anyhow!("unacked message not delivered again"))?;
        assert_eq!(again.message.event_id, id);
        assert!(again.redelivered, "second delivery is marked redelivered");
        again.ack().await?;
        anyhow::Ok(())
    }
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.delete_queue(&queue).await?;
    result
}

#[tokio::test]
async fn rabbitmq_messages_carry_the_schema_version_header() -> anyhow::Result<()> {
    use lapin::options::{BasicAckOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};

    let Some(bus) = rabbit("rabbitmq_messages_carry_the_schema_version_header").await? else {
        return Ok(());
    };
    let prefix = unique_prefix();
    let key = format!("{prefix}message.created");
    let id = format!("{prefix}e1");

    // A queue of our own, exclusive to this connection: gone when it closes.
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            format!("{prefix}raw").into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            EXCHANGE.into(),
            key.clone().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    bus.publish(event(&key, &id)).await?;

    let deadline = tokio::time::Instant::now() + WAIT;
    let message = loop {
        if let Some(message) = channel
            .basic_get(queue.name().clone(), BasicGetOptions::default())
            .await?
        {
            break message;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "published message not routed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let properties = &message.delivery.properties;
    assert_eq!(
        properties.message_id().as_ref().map(|m| m.as_str()),
        Some(id.as_str())
    );
    assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
    assert_eq!(
        properties.content_type().as_ref().map(|c| c.as_str()),
        Some("application/x-protobuf")
    );
    let headers = properties
        .headers()
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no headers"))?;
    let version = match headers.inner().get("x-schema-version") {
        Some(AMQPValue::ShortShortUInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortUInt(v)) => i64::from(*v),
        Some(AMQPValue::LongUInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortShortInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortInt(v)) => i64::from(*v),
        Some(AMQPValue::LongInt(v)) => i64::from(*v),
        Some(AMQPValue::LongLongInt(v)) => *v,
        other => anyhow::bail!("x-schema-version is {other:?}"),
    };
    assert_eq!(version, i64::from(SCHEMA_VERSION));
    assert_eq!(version, 1);
    match headers.inner().get("x-event-id") {
        Some(AMQPValue::LongString(s)) => assert_eq!(s.as_bytes(), id.as_bytes()),
        other => anyhow::bail!("x-event-id is {other:?}"),
    }
    message.delivery.ack(BasicAckOptions::default()).await?;
    connection.close(200, "done".into()).await?;
    Ok(())
}

/// Publishes fresh events to `key` until one arrives on `rx`: the consumer
/// may still be reconnecting, and a queue that was gone drops what it missed.
async fn publish_until_delivered(
    bus: &RabbitBus,
    rx: &mut mpsc::Receiver<Delivery>,
    key: &str,
    prefix: &str,
) -> anyhow::Result<Delivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for attempt in 0.. {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "consumer did not come back"
        );
        let id = format!("{prefix}probe{attempt}");
        bus.publish(event(key, &id)).await?;
        let mut ours = HashSet::from([id]);
        // Earlier probes may arrive late; any of them proves the point.
        ours.extend((0..attempt).map(|a| format!("{prefix}probe{a}")));
        if let Some(delivery) = next_own(rx, &ours, Duration::from_millis(300)).await? {
            return Ok(delivery);
        }
    }
    unreachable!()
}

#[tokio::test]
async fn rabbitmq_consumer_comes_back_after_its_queue_is_deleted() -> anyhow::Result<()> {
    let Some(bus) = rabbit("rabbitmq_consumer_comes_back_after_its_queue_is_deleted").await? else {
        return Ok(());
    };
    let prefix = unique_prefix();
    let queue = format!("{prefix}deleted");
    let key = format!("{prefix}message.created");
    let result = async {
        let mut rx = bus.consume(&queue, &[&key]).await?;
        // The broker cancels the consumer; it must re-declare and go on.
        bus.delete_queue(&queue).await?;
        let delivery = publish_until_delivered(&bus, &mut rx, &key, &prefix).await?;
        delivery.ack().await?;
        anyhow::Ok(())
    }
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.delete_queue(&queue).await?;
    result
}

/// Closes, broker side, every connection whose client properties mention
/// `fragment`. `None` when `rabbitmqctl` cannot be used here.
async fn close_connections_mentioning(fragment: &str) -> Option<usize> {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut closed = 0;
    for line in listing.lines().filter(|l| l.contains(fragment)) {
        let pid = line.split('\t').next()?;
        let status = tokio::process::Command::new("rabbitmqctl")
            .args([
                "-q",
                "close_connection",
                pid,
                "test: simulated connection loss",
            ])
            .status()
            .await
            .ok()?;
        if status.success() {
            closed += 1;
        }
    }
    Some(closed)
}

#[tokio::test]
async fn rabbitmq_publisher_and_consumer_survive_a_lost_connection() -> anyhow::Result<()> {
    const TEST: &str = "rabbitmq_publisher_and_consumer_survive_a_lost_connection";
    let Some(bus) = rabbit(TEST).await? else {
        return Ok(());
    };
    let prefix = unique_prefix();
    let queue = format!("{prefix}lost");
    let key = format!("{prefix}message.created");
    let id = format!("{prefix}e1");
    let ours = HashSet::from([id.clone()]);
    let result = async {
        let mut rx = bus.consume(&queue, &[&key]).await?;
        bus.publish(event(&key, &id)).await?;
        let unacked = next_own(&mut rx, &ours, WAIT)
            .await?
            .ok_or_else(|| anyhow::anyhow!("not delivered"))?;

        // Publisher and consumer connections both carry the bus's name.
        match close_connections_mentioning(bus.name()).await {
            Some(n) if n >= 2 => {}
            other => {
                eprintln!(
                    "SKIP {TEST}: cannot close connections with rabbitmqctl \
                     (closed {other:?}; is the broker local?)"
                );
                unacked.ack().await.ok();
                return anyhow::Ok(());
            }
        }
        // The broker requeues the unacked message; acking it on the dead
        // channel is an error, not a silent success.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(unacked.ack().await.is_err(), "ack on a closed channel");

        // The consumer reconnects and gets the message again.
        let again = next_own(&mut rx, &ours, Duration::from_secs(15))
            .await?
            .ok_or_else(|| anyhow::anyhow!("not redelivered after reconnect"))?;
        assert!(again.redelivered);
        again.ack().await?;

        // The next publish reconnects by itself.
        let id2 = format!("{prefix}e2");
        bus.publish(event(&key, &id2)).await?;
        let delivery = next_own(&mut rx, &HashSet::from([id2]), WAIT)
            .await?
            .ok_or_else(|| anyhow::anyhow!("publish after reconnect not delivered"))?;
        delivery.ack().await?;
        anyhow::Ok(())
    }
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.delete_queue(&queue).await?;
    result
}
