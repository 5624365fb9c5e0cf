use std::time::Duration;

use bytes::Bytes;
use chat_common::Namespace;
use chat_common::pubsub::{InProcessPubSub, PubSub, Subscriber, SubscriberEvent};
use chat_common::pubsub_redis::RedisPubSub;
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

const START_REDIS: &str = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
     --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log";

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique_prefix() -> String {
    format!("test-{}-", uuid::Uuid::new_v4().simple())
}

/// A pub/sub on the test Redis, or `None` (after a loud SKIP line) when
/// none is running, unless `CI` is set: there a missing Redis is a failure.
async fn redis(test: &str) -> anyhow::Result<Option<RedisPubSub>> {
    let url = redis_url();
    match RedisPubSub::connect(&url, &Namespace::none()).await {
        Ok(pubsub) => Ok(Some(pubsub)),
        Err(error) if std::env::var_os("CI").is_some() => anyhow::bail!(
            "{test}: {error}; start Redis with `{START_REDIS}` (or point REDIS_URL at one)"
        ),
        Err(error) => {
            eprintln!(
                "SKIP {test}: Redis not reachable ({error}) (set CI=1 to make this a failure; \
                 start it with `{START_REDIS}`)"
            );
            Ok(None)
        }
    }
}

/// Waits for `Resubscribed`, failing on anything else.
async fn resubscribed(rx: &mut mpsc::Receiver<SubscriberEvent>) -> anyhow::Result<()> {
    // Reconnecting waits 50-100 ms first; a second attempt up to 200 ms more.
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Err(_) => anyhow::bail!("no Resubscribed within 10 s of the connection drop"),
        Ok(Some(SubscriberEvent::Resubscribed)) => Ok(()),
        Ok(other) => anyhow::bail!("expected Resubscribed, got {other:?}"),
    }
}

#[tokio::test]
async fn redis_pubsub_meets_the_contract() -> anyhow::Result<()> {
    let Some(pubsub) = redis("redis_pubsub_meets_the_contract").await? else {
        return Ok(());
    };
    contract(&pubsub, &unique_prefix()).await
}

#[tokio::test]
async fn a_namespace_keeps_deployments_on_one_redis_apart() -> anyhow::Result<()> {
    let test = "a_namespace_keeps_deployments_on_one_redis_apart";
    let Some(plain) = redis(test).await? else {
        return Ok(());
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let namespace = Namespace::new(&format!("ns{}", &suffix[..12]))?;
    let namespaced = RedisPubSub::connect(&redis_url(), &namespace).await?;
    contract(&namespaced, "").await?;

    let room = format!("room:{suffix}");
    let (inside, mut inside_rx) = namespaced.subscriber().await?;
    let (outside, mut outside_rx) = plain.subscriber().await?;
    inside.subscribe(&room).await?;
    outside.subscribe(&room).await?;
    // On Redis the channel carries the namespace; subscribers do not see it.
    let (raw, mut raw_rx) = plain.subscriber().await?;
    raw.subscribe(&format!("{namespace}:{room}")).await?;

    namespaced.publish(&room, Bytes::from_static(b"in")).await?;
    assert_eq!(
        next_message(&mut inside_rx).await?,
        (room.clone(), Bytes::from_static(b"in"))
    );
    assert_eq!(
        next_message(&mut raw_rx).await?,
        (format!("{namespace}:{room}"), Bytes::from_static(b"in"))
    );
    nothing_more(&mut outside_rx).await?;

    plain.publish(&room, Bytes::from_static(b"out")).await?;
    assert_eq!(
        next_message(&mut outside_rx).await?,
        (room.clone(), Bytes::from_static(b"out"))
    );
    nothing_more(&mut inside_rx).await?;
    Ok(())
}

#[tokio::test]
async fn redis_pubsub_fails_fast_when_redis_is_unreachable() -> anyhow::Result<()> {
    // Port 1 on loopback: nothing listens there, the connection is refused.
    let started = std::time::Instant::now();
    let Err(error) = RedisPubSub::connect("redis://:hunter2@127.0.0.1:1", &Namespace::none()).await
    else {
        anyhow::bail!("connected to a port where nothing listens");
    };
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("hunter2"), "password leaked: {message}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Kills the subscriber's connection server-side with `CLIENT KILL ID`, the
/// id being the one the subscriber's own connection reported (`CLIENT ID`):
/// only this test's connection dies, however many other tests share the
/// server.
#[tokio::test]
async fn redis_subscriber_resubscribes_after_the_connection_drops() -> anyhow::Result<()> {
    let test = "redis_subscriber_resubscribes_after_the_connection_drops";
    let Some(pubsub) = redis(test).await? else {
        return Ok(());
    };
    let (subscriber, mut rx) = pubsub.redis_subscriber().await?;
    let Some(id) = subscriber.client_id() else {
        // A cluster (one connection per node) or a server refusing CLIENT ID.
        eprintln!("SKIP {test}: the subscriber's client id is unknown ({pubsub:?})");
        return Ok(());
    };
    let prefix = unique_prefix();
    let room = format!("{prefix}room:1");
    subscriber.subscribe(&room).await?;
    pubsub.publish(&room, Bytes::from_static(b"before")).await?;
    assert_eq!(
        next_message(&mut rx).await?.1,
        Bytes::from_static(b"before")
    );

    let mut admin = redis::Client::open(redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await?;
    assert_eq!(killed, 1, "CLIENT KILL ID {id}");

    resubscribed(&mut rx).await?;
    let new_id = subscriber.client_id();
    assert!(
        new_id.is_some() && new_id != Some(id),
        "{new_id:?} after killing {id}"
    );
    pubsub.publish(&room, Bytes::from_static(b"after")).await?;
    assert_eq!(
        next_message(&mut rx).await?,
        (room.clone(), Bytes::from_static(b"after"))
    );
    // Unsubscribing still works on the new connection.
    subscriber.unsubscribe(&room).await?;
    pubsub.publish(&room, Bytes::from_static(b"gone")).await?;
    nothing_more(&mut rx).await
}

/// Whether the server still lists the connection with this client id.
async fn connection_open(
    admin: &mut redis::aio::MultiplexedConnection,
    id: i64,
) -> anyhow::Result<bool> {
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("ID")
        .arg(id)
        .query_async(admin)
        .await?;
    Ok(!clients.trim().is_empty())
}

async fn connection_closes(
    admin: &mut redis::aio::MultiplexedConnection,
    id: i64,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while connection_open(admin, id).await? {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "connection {id} still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Dropping the handle, or only the event receiver, ends the subscriber's
/// task and closes its connection; nothing panics, and a subscribe on a
/// handle whose receiver is gone reports an error.
#[tokio::test]
async fn a_dropped_redis_subscriber_lets_go_of_its_connection() -> anyhow::Result<()> {
    let test = "a_dropped_redis_subscriber_lets_go_of_its_connection";
    let Some(pubsub) = redis(test).await? else {
        return Ok(());
    };
    let channel = format!("{}c", unique_prefix());
    let (subscriber, rx) = pubsub.redis_subscriber().await?;
    let Some(id) = subscriber.client_id() else {
        eprintln!("SKIP {test}: the subscriber's client id is unknown ({pubsub:?})");
        return Ok(());
    };
    let mut admin = redis::Client::open(redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    subscriber.subscribe(&channel).await?;
    assert!(connection_open(&mut admin, id).await?);
    drop(subscriber);
    connection_closes(&mut admin, id).await?;
    drop(rx);

    let (subscriber, rx) = pubsub.redis_subscriber().await?;
    let id = subscriber
        .client_id()
        .ok_or_else(|| anyhow::anyhow!("no client id"))?;
    subscriber.subscribe(&channel).await?;
    drop(rx);
    connection_closes(&mut admin, id).await?;
    assert!(subscriber.subscribe(&channel).await.is_err());
    pubsub.publish(&channel, Bytes::from_static(b"x")).await?;
    Ok(())
}

/// The contract, and a resubscription after the connections drop, on a
/// Redis Cluster with sharded pub/sub (Redis >= 7). Runs only when
/// `REDIS_CLUSTER_URL` is set, e.g. for a local three-node cluster:
///
/// ```sh
/// for p in 7000 7001 7002; do
///   mkdir -p /tmp/redis-cluster/$p
///   redis-server --daemonize yes --bind 127.0.0.1 --port $p --cluster-enabled yes \
///     --cluster-config-file /tmp/redis-cluster/$p/nodes.conf --save "" --appendonly no \
///     --dir /tmp/redis-cluster/$p --logfile /tmp/redis-cluster/$p/log
/// done
/// redis-cli --cluster create 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002 \
///   --cluster-replicas 0 --cluster-yes
/// REDIS_CLUSTER_URL=redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002 \
///   cargo nextest run -p chat-common redis_cluster
/// ```
///
/// The connection drop kills every sharded subscriber on every node, so
/// this test must not share its cluster with other subscribers.
#[tokio::test]
async fn redis_cluster_pubsub_meets_the_contract_and_resubscribes() -> anyhow::Result<()> {
    let test = "redis_cluster_pubsub_meets_the_contract_and_resubscribes";
    let Ok(url) = std::env::var("REDIS_CLUSTER_URL") else {
        eprintln!(
            "SKIP {test}: REDIS_CLUSTER_URL is not set (a comma-separated list of \
             redis://host:port nodes; see this test's doc comment to start a cluster)"
        );
        return Ok(());
    };
    let pubsub = RedisPubSub::connect(&url, &Namespace::none()).await?;
    let prefix = unique_prefix();
    contract(&pubsub, &prefix).await?;

    // Several channels, so that they spread over the shards.
    let rooms: Vec<String> = (0..6).map(|i| format!("{prefix}room:{i}")).collect();
    let (subscriber, mut rx) = pubsub.subscriber().await?;
    for room in &rooms {
        subscriber.subscribe(room).await?;
    }
    let mut killed = 0;
    for node in url.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let mut admin = redis::Client::open(node)?
            .get_multiplexed_async_connection()
            .await?;
        killed += redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async::<i64>(&mut admin)
            .await?;
    }
    assert!(killed > 0, "no sharded subscriber connection found to kill");
    resubscribed(&mut rx).await?;
    for room in &rooms {
        pubsub.publish(room, Bytes::from(room.clone())).await?;
        assert_eq!(
            next_message(&mut rx).await?,
            (room.clone(), Bytes::from(room.clone()))
        );
    }
    Ok(())
}

/// A Redis server of this test's own, on a free port, for outages that
/// must not disturb the shared server.
struct OwnRedis {
    port: u16,
    process: tokio::process::Child,
}

impl OwnRedis {
    /// `None` when no `redis-server` binary is installed.
    async fn start(port: u16) -> anyhow::Result<Option<OwnRedis>> {
        let spawned = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let process = match spawned {
            Ok(process) => process,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Some(OwnRedis { port, process }))
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.process.kill().await?;
        Ok(())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Redis goes away and comes back: publishing and subscribing fail
/// meanwhile (a channel subscribed during the outage stays wanted), then
/// the subscriber reconnects with back-off, subscribes every wanted channel
/// and reports `Resubscribed`.
#[tokio::test]
async fn redis_subscriber_survives_a_redis_restart() -> anyhow::Result<()> {
    let test = "redis_subscriber_survives_a_redis_restart";
    let port = free_port()?;
    let Some(server) = OwnRedis::start(port).await? else {
        eprintln!("SKIP {test}: no redis-server binary on PATH");
        return Ok(());
    };
    let pubsub = RedisPubSub::connect(
        &format!("redis://127.0.0.1:{}", server.port),
        &Namespace::none(),
    )
    .await?;
    let (subscriber, mut rx) = pubsub.subscriber().await?;
    subscriber.subscribe("room:1").await?;

    server.stop().await?;
    assert!(
        pubsub
            .publish("room:1", Bytes::from_static(b"lost"))
            .await
            .is_err()
    );
    assert!(subscriber.subscribe("room:2").await.is_err());
    // Let a few reconnect attempts fail, so the back-off grows.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let Some(_server) = OwnRedis::start(port).await? else {
        anyhow::bail!("redis-server vanished");
    };
    resubscribed(&mut rx).await?;
    for room in ["room:1", "room:2"] {
        // The publisher reconnects on its own; its first attempt may still
        // find the old connection broken.
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Err(e) = pubsub.publish(room, Bytes::from(room)).await {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "{e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            next_message(&mut rx).await?,
            (room.to_owned(), Bytes::from(room))
        );
    }
    Ok(())
}
