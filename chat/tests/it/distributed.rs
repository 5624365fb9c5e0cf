//! The distributed topology: auth-, message- and presence-service and two
//! gateway replicas as separate processes (started by `scripts/cluster`) on
//! PostgreSQL, Redis and RabbitMQ.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_common::bus::EventBus;
use chat_common::bus_rabbitmq::RabbitBus;
use chat_proto::events::v1::{ChatEvent, chat_event};
use prost::Message as _;
use serde_json::json;

use crate::cluster::{Cluster, OwnRedis, SHARED_AMQP, free_port, skip_without};
use crate::support::Ws;

async fn message_seqs(ws: &mut Ws, n: usize) -> anyhow::Result<Vec<i64>> {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        seqs.push(
            ws.next_of("message").await?["message"]["seq"]
                .as_i64()
                .unwrap_or(-1),
        );
    }
    Ok(seqs)
}

#[tokio::test]
async fn two_gateway_replicas_on_postgres_redis_and_rabbitmq() -> anyhow::Result<()> {
    if skip_without("two_gateway_replicas_on_postgres_redis_and_rabbitmq", &[])? {
        return Ok(());
    }
    let cluster = Cluster::up().await?;
    let result = scenario(&cluster).await;
    if result.is_err() {
        eprintln!("{}", cluster.logs());
    }
    cluster.down().await?;
    result
}

async fn scenario(cluster: &Cluster) -> anyhow::Result<()> {
    let (g1, g2) = (&cluster.gateways[0], &cluster.gateways[1]);
    let alice = g1.register("alice").await?;
    let bob = g2.register("bob").await?;
    let carol = g2.register("carol").await?;
    let dave = g1.register("dave").await?;
    let erin = g1.register("erin").await?;
    let room = g1.room(&alice, "lobby", "public").await?;
    for (gateway, user) in [(g2, &bob), (g2, &carol), (g1, &dave), (g1, &erin)] {
        gateway.join(user, &room).await?;
    }

    // Presence and typing cross replicas.
    let mut a = g1.ws(&alice).await?;
    let mut b = g2.ws(&bob).await?;
    let online = a
        .next_where("bob online", |v| {
            v["type"] == "presence" && v["user_id"] == bob.id.as_str()
        })
        .await?;
    assert_eq!(online["status"], "online");
    b.send(json!({"type": "typing", "room": room})).await?;
    assert_eq!(a.next_of("typing").await?["user_id"], bob.id.as_str());

    // A queue of our own on chat.events sees every message once.
    let bus = RabbitBus::connect(SHARED_AMQP, &cluster.namespace).await?;
    let queue = format!("test.events.{}", uuid::Uuid::new_v4().simple());
    let mut events = bus.consume(&queue, &["message.created"]).await?;

    // A burst of 1,000 messages from senders on both replicas.
    let mut watcher_g2 = g2.ws(&carol).await?;
    let mut watcher_g1 = g1.ws(&dave).await?;
    let mut senders = Vec::new();
    for i in 0..25 {
        let (gateway, user) = if i % 2 == 0 { (g1, &alice) } else { (g2, &bob) };
        let mut ws = gateway.ws(user).await?;
        let room = room.clone();
        senders.push(tokio::spawn(async move {
            for j in 0..40 {
                let ack = ws
                    .request(json!({"type": "send", "room": room, "text": format!("burst {i}.{j}"), "client_msg_id": format!("burst-{i}-{j}")}))
                    .await?;
                anyhow::ensure!(ack["type"] == "ack", "send failed: {ack}");
            }
            anyhow::Ok(())
        }));
    }
    for sender in senders {
        sender.await??;
    }
    let expected: Vec<i64> = (1..=1000).collect();
    assert_eq!(
        message_seqs(&mut watcher_g2, 1000).await?,
        expected,
        "carol on gateway 2"
    );
    assert_eq!(
        message_seqs(&mut watcher_g1, 1000).await?,
        expected,
        "dave on gateway 1"
    );
    watcher_g1.assert_no("message").await?;

    let mut seen_events = HashSet::new();
    let mut seqs = BTreeMap::new();
    while seqs.len() < 1000 {
        let delivery = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .context("events stopped arriving")?
            .context("consumer closed")?;
        let event = ChatEvent::decode(delivery.message.payload.clone())?;
        let fresh = seen_events.insert(delivery.message.event_id.clone());
        delivery.ack().await?;
        if !fresh || event.room != room {
            continue;
        }
        if let Some(chat_event::Event::MessageCreated(m)) = event.event {
            *seqs.entry(m.seq).or_insert(0) += 1;
        }
    }
    assert_eq!(seqs.keys().copied().collect::<Vec<i64>>(), expected);
    assert!(seqs.values().all(|n| *n == 1), "one event per message");
    drop(events);
    bus.delete_queue(&queue).await?;

    // erin was never online: a mention reaches her in her next ready.
    a.request(
        json!({"type": "send", "room": room, "text": "@erin look", "client_msg_id": "mention"}),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let notification = loop {
        let e = g2.ws(&erin).await?;
        if let Some(n) = e.ready["notifications"]
            .as_array()
            .and_then(|n| n.first())
            .cloned()
        {
            break n;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no notification for erin"
        );
        e.close().await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (
            &notification["kind"],
            &notification["seq"],
            &notification["from"]
        ),
        (&json!("mention"), &json!(1001), &json!(alice.id))
    );

    // Gateway 2 dies: bob goes offline for alice within the TTL, then
    // reconnects to gateway 1 and resumes every message he missed.
    let bob_last = message_seqs(&mut b, 1001)
        .await?
        .last()
        .copied()
        .unwrap_or(0);
    assert_eq!(bob_last, 1001);
    cluster.kill_gateway(2)?;
    let offline = a
        .next_where("bob offline", |v| {
            v["type"] == "presence" && v["user_id"] == bob.id.as_str() && v["status"] == "offline"
        })
        .await?;
    assert!(offline["last_seen"].is_string());
    for i in 0..5 {
        a.request(json!({"type": "send", "room": room, "text": format!("while away {i}"), "client_msg_id": format!("away-{i}")}))
            .await?;
    }
    let mut b = g1.ws(&bob).await?;
    b.send(json!({"type": "resume", "rooms": {room.clone(): bob_last}, "ref": "res"}))
        .await?;
    let mut resumed = Vec::new();
    loop {
        let frame = b
            .next_where("resume frames", |v| {
                v["type"] == "message" || v["type"] == "resumed"
            })
            .await?;
        if frame["type"] == "resumed" {
            break;
        }
        resumed.push(frame["message"]["seq"].as_i64().unwrap_or(-1));
    }
    assert_eq!(resumed, (1002..=1006).collect::<Vec<i64>>());
    Ok(())
}

/// Polls the gRPC health of the whole server at `addr` until it is
/// `expected`.
async fn wait_for_health(
    addr: std::net::SocketAddr,
    expected: tonic_health::pb::health_check_response::ServingStatus,
) -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
    let mut client = HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|reply| reply.get_ref().status);
        if status.as_ref().is_ok_and(|s| *s == expected as i32) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "health of {addr} never became {expected:?}; last {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn auth_service_health_follows_its_database() -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    if skip_without("auth_service_health_follows_its_database", &[])? {
        return Ok(());
    }
    let database = format!(
        "chat_health_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let psql = |sql: String| -> anyhow::Result<()> {
        let output = Command::new("psql").args([admin, "-qc", &sql]).output()?;
        anyhow::ensure!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    };
    psql(format!("CREATE DATABASE {database}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = chat_auth_service::Config {
        refresh_token_ttl_s: 3600,
        ..chat_auth_service::Config::new(
            format!("postgres://postgres@127.0.0.1:5432/{database}"),
            chat_common::Secret::generate(),
            chat_common::Secret::generate(),
        )
    };
    let shutdown = chat_common::Shutdown::new();
    let server = tokio::spawn(chat_auth_service::serve(config, listener, shutdown.clone()));
    let result = async {
        wait_for_health(addr, ServingStatus::Serving).await?;
        psql(format!("DROP DATABASE {database} WITH (FORCE)"))?;
        wait_for_health(addr, ServingStatus::NotServing).await?;
        psql(format!("CREATE DATABASE {database}"))?;
        wait_for_health(addr, ServingStatus::Serving).await
    }
    .await;
    shutdown.cancel();
    let served = server.await?;
    let _ = psql(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
    result?;
    served
}

#[tokio::test]
async fn clients_are_told_to_resume_when_the_gateway_loses_redis() -> anyhow::Result<()> {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var_os("CI").is_some() {
            bail!("redis-server is not installed");
        }
        eprintln!(
            "SKIP clients_are_told_to_resume_when_the_gateway_loses_redis: no redis-server (set CI=1 to make this a failure)"
        );
        return Ok(());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut redis = OwnRedis::start(port)?;
    let t = crate::support::TestSystem::start_with(crate::support::Deployment::Embedded, |o| {
        o.redis_url = Some(format!("redis://127.0.0.1:{port}"))
    })
    .await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut a = t.ws(&alice).await?;
    let mut b = t.ws(&bob).await?;
    a.request(json!({"type": "send", "room": room, "text": "before", "client_msg_id": "1"}))
        .await?;
    assert_eq!(b.next_of("message").await?["message"]["seq"], 1);

    redis.stop();
    // Sends still commit while Redis is down; only live fan-out stops.
    let ack = a
        .request(json!({"type": "send", "room": room, "text": "during", "client_msg_id": "2"}))
        .await?;
    assert_eq!(ack["message"]["seq"], 2);
    let _redis = OwnRedis::start(redis.port)?;

    assert_eq!(b.next_of("resync").await?, json!({"type": "resync"}));
    let resumed = b
        .request(json!({"type": "resume", "rooms": {room.clone(): 1}}))
        .await?;
    let missed = b.next_of("message").await?;
    assert_eq!(
        (&missed["message"]["seq"], &missed["message"]["text"]),
        (&json!(2), &json!("during"))
    );
    assert_eq!(resumed["type"], "resumed");
    a.request(json!({"type": "send", "room": room, "text": "after", "client_msg_id": "3"}))
        .await?;
    assert_eq!(
        b.next_of("message").await?["message"]["seq"],
        3,
        "live fan-out is back"
    );
    Ok(())
}

#[tokio::test]
async fn presence_service_health_follows_its_redis() -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var_os("CI").is_some() {
            bail!("redis-server is not installed");
        }
        eprintln!(
            "SKIP presence_service_health_follows_its_redis: no redis-server (set CI=1 to make this a failure)"
        );
        return Ok(());
    }
    let port = free_port()?;
    let mut redis = OwnRedis::start(port)?;
    let store = chat_presence_service::store::RedisStore::connect(
        &format!("redis://127.0.0.1:{port}"),
        "health:",
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = chat_presence_service::Config::new(
        chat_common::Secret::generate(),
        chat_common::Backends::in_process(),
    );
    let shutdown = chat_common::Shutdown::new();
    let server = tokio::spawn(chat_presence_service::serve_with_store(
        config,
        std::sync::Arc::new(store),
        listener,
        shutdown.clone(),
    ));
    wait_for_health(addr, ServingStatus::Serving).await?;
    redis.stop();
    wait_for_health(addr, ServingStatus::NotServing).await?;
    let _redis = OwnRedis::start(port)?;
    wait_for_health(addr, ServingStatus::Serving).await?;
    shutdown.cancel();
    server.await?
}
