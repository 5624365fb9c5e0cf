//! The distributed topology: auth-, message- and presence-service and two
//! gateway replicas as separate processes (started by `scripts/cluster`) on
//! PostgreSQL, Redis and RabbitMQ.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_common::Namespace;
use chat_common::bus::EventBus;
use chat_common::bus_rabbitmq::RabbitBus;
use chat_proto::events::v1::{ChatEvent, chat_event};
use prost::Message as _;
use serde_json::json;

use crate::support::{Api, Ws, servers_missing};

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PRESENCE_TTL_S: u64 = 3;

struct Cluster {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    gateways: Vec<Api>,
    databases: [String; 2],
    namespace: Namespace,
    /// Gateways started by the test itself ([`Cluster::start_gateway`]),
    /// by number, so that it sees how they exit.
    own: std::sync::Mutex<Vec<(usize, tokio::process::Child)>>,
}

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

/// A port nothing listens on now (the kernel hands out ephemeral ports at
/// random, so it is very unlikely to be taken before the cluster binds it).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The first of two free consecutive ports, for the two gateways.
fn free_consecutive_ports() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = first.local_addr()?.port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no two free consecutive ports")
}

impl Cluster {
    async fn up() -> anyhow::Result<Cluster> {
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let namespace = Namespace::new(&format!("test{suffix}"))?;
        let base_port = free_consecutive_ports()?;
        let [auth_port, message_port, presence_port] = [free_port()?, free_port()?, free_port()?];
        let metrics_ports = [free_port()?, free_port()?, free_port()?];
        let dir = tempfile::tempdir()?;
        let databases = [
            format!("chat_auth_{suffix}"),
            format!("chat_message_{suffix}"),
        ];
        let env = vec![
            ("CLUSTER_DIR".to_owned(), dir.path().display().to_string()),
            ("GATEWAYS".to_owned(), "2".to_owned()),
            ("BASE_PORT".to_owned(), base_port.to_string()),
            ("AUTH_PORT".to_owned(), auth_port.to_string()),
            ("MESSAGE_PORT".to_owned(), message_port.to_string()),
            ("PRESENCE_PORT".to_owned(), presence_port.to_string()),
            ("AUTH_METRICS_PORT".to_owned(), metrics_ports[0].to_string()),
            (
                "MESSAGE_METRICS_PORT".to_owned(),
                metrics_ports[1].to_string(),
            ),
            (
                "PRESENCE_METRICS_PORT".to_owned(),
                metrics_ports[2].to_string(),
            ),
            ("PRESENCE_TTL_S".to_owned(), PRESENCE_TTL_S.to_string()),
            ("AUTH_DATABASE".to_owned(), databases[0].clone()),
            ("MESSAGE_DATABASE".to_owned(), databases[1].clone()),
            ("CHAT_NAMESPACE".to_owned(), namespace.to_string()),
        ];
        let output = tokio::process::Command::new(script())
            .arg("up")
            .envs(env.clone())
            .output()
            .await?;
        let mut cluster = Cluster {
            dir,
            env,
            gateways: Vec::new(),
            databases,
            namespace,
            own: std::sync::Mutex::new(Vec::new()),
        };
        if !output.status.success() {
            bail!(
                "scripts/cluster up failed: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                cluster.logs()
            );
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if let Some(url) = line
                .strip_prefix("gateway ")
                .and_then(|l| l.split_whitespace().nth(1))
            {
                cluster.gateways.push(Api::new(vec![url.to_owned()])?);
            }
        }
        anyhow::ensure!(
            cluster.gateways.len() == 2,
            "expected two gateways: {output:?}"
        );
        Ok(cluster)
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for name in [
            "auth-service",
            "message-service",
            "presence-service",
            "gateway-1",
            "gateway-2",
            "gateway-3",
        ] {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            // The first lines hold start-up errors, the last ones the end.
            let lines: Vec<&str> = log.lines().collect();
            let shown = if lines.len() <= 25 {
                lines.join("\n")
            } else {
                format!(
                    "{}\n...\n{}",
                    lines[..10].join("\n"),
                    lines[lines.len() - 15..].join("\n")
                )
            };
            out.push_str(&format!("--- {name}\n{shown}\n"));
        }
        out
    }

    fn kill_gateway(&self, n: usize) -> anyhow::Result<()> {
        let pid = std::fs::read_to_string(self.dir.path().join(format!("gateway-{n}.pid")))?;
        let status = Command::new("kill").args(["-KILL", pid.trim()]).status()?;
        anyhow::ensure!(status.success(), "kill failed");
        Ok(())
    }

    /// A setting the cluster was started with.
    fn setting(&self, key: &str) -> anyhow::Result<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .with_context(|| format!("no {key} in the cluster's settings"))
    }

    /// Starts gateway replica `n` as a child of the test, configured as
    /// `scripts/cluster` configures its gateways (the binary it built, the
    /// secrets it generated) and with `drain_window_s`.
    async fn start_gateway(&self, n: usize, drain_window_s: &str) -> anyhow::Result<Api> {
        // The test binary is target/<profile>/deps/it-*; the script built
        // the gateway into target/<profile>.
        let bins = std::env::current_exe()?
            .parent()
            .and_then(std::path::Path::parent)
            .context("no target directory")?
            .to_owned();
        let secret = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        let port = free_port()?;
        let log = std::fs::File::create(self.dir.path().join(format!("gateway-{n}.log")))?;
        let service = |key: &str| -> anyhow::Result<String> {
            Ok(format!("http://127.0.0.1:{}", self.setting(key)?))
        };
        let child = tokio::process::Command::new(bins.join("gateway"))
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("GATEWAY_ID", format!("gateway-{n}"))
            .env("AUTH_ADDR", service("AUTH_PORT")?)
            .env("MESSAGE_ADDR", service("MESSAGE_PORT")?)
            .env("PRESENCE_ADDR", service("PRESENCE_PORT")?)
            .env("JWT_SECRET", secret("jwt-secret")?)
            .env("SERVICE_TOKEN", secret("service-token")?)
            .env("REDIS_URL", "redis://127.0.0.1:6379")
            .env("CHAT_NAMESPACE", self.namespace.to_string())
            .env(
                "PRESENCE_HEARTBEAT_MS",
                (PRESENCE_TTL_S * 1000 / 3).to_string(),
            )
            .env("DRAIN_WINDOW_S", drain_window_s)
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the gateway binary")?;
        self.own
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((n, child));
        let api = Api::new(vec![format!("http://127.0.0.1:{port}")])?;
        api.wait_ready().await?;
        Ok(api)
    }

    /// Sends SIGTERM to gateway `n` of [`Cluster::start_gateway`]; hands
    /// back the process to wait for.
    fn terminate_gateway(&self, n: usize) -> anyhow::Result<tokio::process::Child> {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        let i = own
            .iter()
            .position(|(m, _)| *m == n)
            .with_context(|| format!("gateway {n} was not started by the test"))?;
        let (_, child) = own.swap_remove(i);
        let pid = child.id().context("gateway already exited")?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(child)
    }
}

impl Cluster {
    /// Stops the processes, then removes what they left on the shared
    /// servers.
    async fn down(self) -> anyhow::Result<()> {
        self.stop_processes();
        crate::support::remove_from_servers(&self.namespace, &self.databases).await
    }

    fn stop_processes(&self) {
        let _ = Command::new(script())
            .arg("down")
            .envs(self.env.clone())
            .output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_processes();
        for db in &self.databases {
            let _ = Command::new("psql")
                .args([
                    "postgres://postgres@127.0.0.1:5432/postgres",
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {db}"),
                ])
                .output();
        }
    }
}

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
    let missing = servers_missing();
    if !missing.is_empty() {
        if std::env::var_os("CI").is_some() {
            bail!(
                "{missing:?} not reachable on 127.0.0.1; start them as .ci/run does (see STACK.md)"
            );
        }
        eprintln!(
            "SKIP two_gateway_replicas_on_postgres_redis_and_rabbitmq: {missing:?} not reachable (set CI=1 to make this a failure)"
        );
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
    let bus = RabbitBus::connect(AMQP_URL, &cluster.namespace).await?;
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

/// True when the test must be skipped for want of PostgreSQL, Redis and
/// RabbitMQ; an error when `CI` is set.
fn skip_without_servers(test: &str) -> anyhow::Result<bool> {
    let missing = servers_missing();
    if missing.is_empty() {
        return Ok(false);
    }
    if std::env::var_os("CI").is_some() {
        bail!("{missing:?} not reachable on 127.0.0.1; start them as .ci/run does (see STACK.md)");
    }
    eprintln!("SKIP {test}: {missing:?} not reachable (set CI=1 to make this a failure)");
    Ok(true)
}

#[tokio::test]
async fn a_terminated_gateway_drains_with_1012_and_its_clients_resume_elsewhere()
-> anyhow::Result<()> {
    if skip_without_servers(
        "a_terminated_gateway_drains_with_1012_and_its_clients_resume_elsewhere",
    )? {
        return Ok(());
    }
    let cluster = Cluster::up().await?;
    let result = drain_scenario(&cluster).await;
    if result.is_err() {
        eprintln!("{}", cluster.logs());
    }
    cluster.down().await?;
    result
}

/// What a client socket saw until the gateway closed it.
struct Closed {
    code: Option<u16>,
    /// `message` seqs received.
    seqs: Vec<i64>,
    /// Seqs of the sends acknowledged to this client.
    acked: Vec<i64>,
    /// The `client_msg_id` of a send whose ack the close cut off.
    unacked: Option<String>,
}

/// Reads `ws` until its close frame. When `sender` is set, also sends a
/// message every 60 ms (within the rate limit) with `client_msg_id`s
/// `{sender}-{i}`, each after the previous one's ack.
async fn until_closed(
    mut ws: crate::support::Ws,
    room: String,
    sender: Option<String>,
) -> anyhow::Result<Closed> {
    use tokio_tungstenite::tungstenite::Message;
    let mut closed = Closed {
        code: None,
        seqs: Vec::new(),
        acked: Vec::new(),
        unacked: None,
    };
    let mut pending: Option<String> = None;
    let mut next = 0;
    loop {
        if pending.is_none()
            && let Some(sender) = &sender
        {
            tokio::time::sleep(Duration::from_millis(60)).await;
            next += 1;
            let id = format!("{sender}-{next}");
            let frame =
                json!({"type": "send", "room": room, "text": id, "client_msg_id": id, "ref": id});
            if ws.send(frame).await.is_err() {
                closed.unacked = Some(id);
                return Ok(closed);
            }
            pending = Some(id);
        }
        match ws.next_raw().await? {
            Message::Text(text) => {
                let frame: serde_json::Value = serde_json::from_str(text.as_str())?;
                if frame["type"] == "message" {
                    closed
                        .seqs
                        .push(frame["message"]["seq"].as_i64().unwrap_or(-1));
                } else if pending.is_some()
                    && frame["ref"] == pending.as_deref().unwrap_or_default()
                {
                    anyhow::ensure!(frame["type"] == "ack", "send failed: {frame}");
                    closed
                        .acked
                        .push(frame["message"]["seq"].as_i64().unwrap_or(-1));
                    pending = None;
                }
            }
            Message::Close(frame) => {
                closed.code = frame.map(|f| u16::from(f.code));
                closed.unacked = pending;
                return Ok(closed);
            }
            _ => {}
        }
    }
}

async fn drain_scenario(cluster: &Cluster) -> anyhow::Result<()> {
    let g3 = cluster.start_gateway(3, "2").await?;
    let g1 = &cluster.gateways[0];
    let alice = g1.register("alice").await?;
    let bob = g1.register("bob").await?;
    let carol = g1.register("carol").await?;
    let room = g1.room(&alice, "lobby", "public").await?;
    g1.join(&bob, &room).await?;
    g1.join(&carol, &room).await?;
    let mut watcher = g1.ws(&carol).await?;

    // Sockets on gateway 3: bob and carol listen, and alice, once they are
    // all connected (so each hears every message from seq 1), sends all
    // along.
    let mut listener_sockets = Vec::new();
    let mut listeners = Vec::new();
    for i in 0..6 {
        let user = if i % 2 == 0 { &bob } else { &carol };
        listeners.push(user);
        listener_sockets.push(g3.ws(user).await?);
    }
    let mut sockets = vec![tokio::spawn(until_closed(
        g3.ws(&alice).await?,
        room.clone(),
        Some("a".to_owned()),
    ))];
    for socket in listener_sockets {
        sockets.push(tokio::spawn(until_closed(socket, room.clone(), None)));
    }
    // Some traffic before the signal, more during the drain.
    let before = message_seqs(&mut watcher, 5).await?;
    assert_eq!(before, vec![1, 2, 3, 4, 5]);

    let mut gateway = cluster.terminate_gateway(3)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let readyz = loop {
        let response = g3.http.get(format!("{}/readyz", g3.base)).send().await?;
        if response.status() != 200 || tokio::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(readyz.status(), 503, "readyz while draining");
    match tokio_tungstenite::connect_async(g3.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503, "upgrade while draining");
        }
        other => bail!("upgrade while draining: {other:?}"),
    }

    let mut closed = Vec::new();
    for socket in sockets {
        closed.push(socket.await??);
    }
    // Every socket got 1012: a close frame read from a socket was written
    // by the process before it exited (after, there is none to write it).
    let codes: Vec<Option<u16>> = closed.iter().map(|c| c.code).collect();
    assert_eq!(codes, vec![Some(1012); 7]);
    let status = tokio::time::timeout(Duration::from_secs(30), gateway.wait())
        .await
        .context("the gateway did not exit within 30 s of SIGTERM")??;
    assert!(status.success(), "gateway exit status {status}");

    // alice reconnects to gateway 1 and retries the send the close cut
    // off (sends are idempotent on client_msg_id).
    let sender = &closed[0];
    let mut acked = sender.acked.clone();
    assert!(acked.len() >= 5, "acked before the drain: {acked:?}");
    let mut a = g1.ws(&alice).await?;
    if let Some(id) = &sender.unacked {
        let ack = a
            .request(json!({"type": "send", "room": room, "text": id, "client_msg_id": id}))
            .await?;
        assert_eq!(ack["type"], "ack", "retry: {ack}");
        acked.push(ack["message"]["seq"].as_i64().unwrap_or(-1));
    }
    let last = acked.iter().copied().max().unwrap_or(0);
    assert_eq!(acked, (1..=last).collect::<Vec<i64>>(), "acked seqs");
    // Nothing acked is lost: the watcher on gateway 1 saw every one live.
    let live: Vec<i64> = before
        .into_iter()
        .chain(message_seqs(&mut watcher, usize::try_from(last - 5)?).await?)
        .collect();
    assert_eq!(live, (1..=last).collect::<Vec<i64>>());

    // Each listener resumes on gateway 1 from what it had: with the
    // replay, it holds every message, in order, once.
    for (user, seen) in listeners.iter().zip(&closed[1..]) {
        let mut ws = g1.ws(user).await?;
        let from = seen.seqs.last().copied().unwrap_or(0);
        ws.send(json!({"type": "resume", "rooms": {room.clone(): from}, "ref": "res"}))
            .await?;
        let mut all = seen.seqs.clone();
        loop {
            let frame = ws
                .next_where("resume frames", |v| {
                    v["type"] == "message" || v["type"] == "resumed"
                })
                .await?;
            if frame["type"] == "resumed" {
                break;
            }
            all.push(frame["message"]["seq"].as_i64().unwrap_or(-1));
        }
        assert_eq!(all, (1..=last).collect::<Vec<i64>>());
    }
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
    if skip_without_servers("auth_service_health_follows_its_database")? {
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

/// A `redis-server` of the test's own, so it can be stopped and started
/// without disturbing other tests.
struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    fn start(port: u16) -> anyhow::Result<OwnRedis> {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("redis-server not found")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(OwnRedis { port, child })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
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
