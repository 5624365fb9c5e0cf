//! Test harness: the whole system on port 0 in a temporary data directory,
//! driven by a real HTTP client and real WebSocket clients, in one of two
//! deployments (see [`Deployment`]).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use chat::{Options, System};
use chat_common::bus_rabbitmq::RabbitBus;
use chat_common::{Backends, Namespace, Shutdown};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a test listens to conclude that nothing more arrives.
pub const QUIET: Duration = Duration::from_millis(400);

/// Where a feature test runs. [`on_both_deployments!`] runs a case on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// The embedded product mode: SQLite, in-process pub/sub and event bus,
    /// one gateway.
    Embedded,
    /// The distributed backends: PostgreSQL, Redis (pub/sub and presence)
    /// and RabbitMQ, with two gateway replicas. Requests and sockets
    /// alternate between the replicas, so members of a room, and the
    /// sockets of one user, sit on different ones. Each system has its own
    /// databases and namespace, so tests run concurrently on shared servers.
    Replicated,
}

/// Runs each listed case, an `async fn(Deployment) -> anyhow::Result<()>`
/// of the calling module, as two tests: `embedded::<case>` and
/// `replicated::<case>`.
#[macro_export]
macro_rules! on_both_deployments {
    ($($case:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $case() -> anyhow::Result<()> {
                    super::$case($crate::support::Deployment::Embedded).await
                }
            )+
        }
        mod replicated {
            $(
                #[tokio::test]
                async fn $case() -> anyhow::Result<()> {
                    $crate::support::replicated(stringify!($case), super::$case).await
                }
            )+
        }
    };
}

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Which of PostgreSQL, Redis and RabbitMQ do not answer on their ports.
pub fn servers_missing() -> Vec<&'static str> {
    [("PostgreSQL", 5432), ("Redis", 6379), ("RabbitMQ", 5672)]
        .into_iter()
        .filter(|(_, port)| std::net::TcpStream::connect(("127.0.0.1", *port)).is_err())
        .map(|(name, _)| name)
        .collect()
}

/// Runs `case` on the replicated deployment, then removes what its systems
/// left on the shared servers, whether it passed or not. Without the
/// servers it is skipped loudly, or fails when `CI` is set.
pub async fn replicated<F, Fut>(name: &str, case: F) -> anyhow::Result<()>
where
    F: FnOnce(Deployment) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let missing = servers_missing();
    if !missing.is_empty() {
        if std::env::var_os("CI").is_some() {
            bail!("{missing:?} not reachable on 127.0.0.1; start them as .ci/run does");
        }
        eprintln!(
            "SKIP replicated::{name}: {missing:?} not reachable (set CI=1 to make this a failure)"
        );
        return Ok(());
    }
    let result = case(Deployment::Replicated).await;
    let leftovers = std::mem::take(&mut *LEFTOVERS.lock().unwrap_or_else(|e| e.into_inner()));
    for leftover in leftovers {
        if let Err(error) = leftover.remove().await {
            eprintln!("could not clean up after {name}: {error:#}");
        }
    }
    result
}

/// What a replicated system creates on the shared servers.
struct Leftover {
    namespace: Namespace,
    databases: Vec<String>,
}

/// The leftovers of this test's replicated systems; each test runs in its
/// own process under nextest, and in its own namespace anyway.
static LEFTOVERS: Mutex<Vec<Leftover>> = Mutex::new(Vec::new());

impl Leftover {
    async fn remove(self) -> anyhow::Result<()> {
        // The system's tasks were aborted when the case dropped it; let its
        // event-bus consumers see that before their queues go.
        tokio::time::sleep(Duration::from_millis(100)).await;
        remove_from_servers(&self.namespace, &self.databases).await
    }
}

/// Removes a stopped deployment's queue, exchange, Redis keys and
/// databases from the shared servers.
pub async fn remove_from_servers(
    namespace: &Namespace,
    databases: &[String],
) -> anyhow::Result<()> {
    let bus = RabbitBus::connect(&amqp_url(), namespace).await?;
    bus.delete_queue(chat_presence_service::NOTIFICATION_QUEUE)
        .await?;
    bus.delete_exchange().await?;

    let client = redis::Client::open(redis_url())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", namespace.key_prefix()))
        .query_async(&mut redis)
        .await?;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<i64>(&mut redis)
            .await?;
    }

    let mut postgres = sqlx::PgConnection::connect(&format!("{POSTGRES_URL}/postgres")).await?;
    for database in databases {
        // The names are generated here, never input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        )))
        .execute(&mut postgres)
        .await?;
    }
    Ok(())
}

pub struct TestSystem {
    pub system: Option<System>,
    /// Gateway replicas beyond the system's own.
    replicas: JoinSet<anyhow::Result<()>>,
    pub api: Api,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestSystem {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A client of the gateways: their HTTP API and WebSocket.
pub struct Api {
    /// The first gateway.
    pub base: String,
    /// Every gateway; requests and sockets take turns.
    bases: Vec<String>,
    turn: AtomicUsize,
    pub http: reqwest::Client,
}

pub struct User {
    pub id: String,
    pub token: String,
    pub refresh: String,
}

impl TestSystem {
    pub async fn start(deployment: Deployment) -> anyhow::Result<TestSystem> {
        TestSystem::start_with(deployment, |_| {}).await
    }

    pub async fn start_with(
        deployment: Deployment,
        configure: impl FnOnce(&mut Options),
    ) -> anyhow::Result<TestSystem> {
        let dir = tempfile::tempdir()?;
        match deployment {
            Deployment::Embedded => TestSystem::start_in(dir, configure).await,
            Deployment::Replicated => TestSystem::start_replicated(dir, configure).await,
        }
    }

    /// Starts the embedded system on an existing data directory (to test
    /// restarts).
    pub async fn start_in(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut Options),
    ) -> anyhow::Result<TestSystem> {
        let mut options = Options::new("127.0.0.1:0", dir.path());
        configure(&mut options);
        let system = chat::start(options, Shutdown::new()).await?;
        let api = Api::new(vec![format!("http://{}", system.addr)])?;
        api.wait_ready().await?;
        Ok(TestSystem {
            system: Some(system),
            replicas: JoinSet::new(),
            api,
            dir,
        })
    }

    async fn start_replicated(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut Options),
    ) -> anyhow::Result<TestSystem> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let namespace = Namespace::new(&format!("t{suffix}"))?;
        let databases = vec![
            format!("chat_t{suffix}_auth"),
            format!("chat_t{suffix}_message"),
        ];
        LEFTOVERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Leftover {
                namespace: namespace.clone(),
                databases: databases.clone(),
            });
        let mut postgres = sqlx::PgConnection::connect(&format!("{POSTGRES_URL}/postgres")).await?;
        for database in &databases {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
                .execute(&mut postgres)
                .await?;
        }
        postgres.close().await?;

        let mut options = Options::new("127.0.0.1:0", dir.path());
        configure(&mut options);
        options.redis_url = Some(redis_url());
        options.amqp_url = Some(amqp_url());
        options.auth_database_url = Some(format!("{POSTGRES_URL}/{}", databases[0]));
        options.message_database_url = Some(format!("{POSTGRES_URL}/{}", databases[1]));
        options.namespace = namespace.clone();
        let shutdown = Shutdown::new();
        let system = chat::start(options.clone(), shutdown.clone()).await?;

        // A second gateway on the same services, meeting the first only
        // through Redis, as replicas in separate processes do.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let replica_addr = listener.local_addr()?;
        let config = chat_gateway::Config {
            gateway_id: "replica-2".to_owned(),
            auth_addr: format!("http://{}", system.auth_addr),
            message_addr: format!("http://{}", system.message_addr),
            presence_addr: format!("http://{}", system.presence_addr),
            grpc_tls: None,
            jwt_keys: options.jwt_keys.clone().map_or_else(
                || {
                    chat_common::config::load_or_create_secret(&dir.path().join("jwt-secret"))
                        .map(Into::into)
                },
                Ok,
            )?,
            service_token: system.service_token.clone(),
            backends: Backends::connect(Some(&redis_url()), None, &namespace).await?,
            allowed_origins: Vec::new(),
            trust_forwarded_for: false,
            limits: options.gateway_limits.clone(),
        };
        let mut replicas = JoinSet::new();
        replicas.spawn(chat_gateway::serve(config, listener, shutdown));

        let api = Api::new(vec![
            format!("http://{}", system.addr),
            format!("http://{replica_addr}"),
        ])?;
        api.wait_ready().await?;
        Ok(TestSystem {
            system: Some(system),
            replicas,
            api,
            dir,
        })
    }

    pub fn system(&self) -> anyhow::Result<&System> {
        self.system.as_ref().context("system stopped")
    }

    /// Stops the system and hands back its data directory.
    pub async fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        if let Some(system) = self.system.take() {
            system.stop().await?;
        }
        while let Some(result) = self.replicas.join_next().await {
            result??;
        }
        Ok(self.dir)
    }
}

impl Api {
    pub fn new(bases: Vec<String>) -> anyhow::Result<Api> {
        Ok(Api {
            base: bases.first().context("no gateway")?.clone(),
            bases,
            turn: AtomicUsize::new(0),
            http: reqwest::Client::builder().timeout(WAIT).build()?,
        })
    }

    /// The gateway whose turn it is.
    fn next_base(&self) -> &str {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        &self.bases[turn % self.bases.len()]
    }

    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        for base in &self.bases {
            loop {
                let response = self.http.get(format!("{base}/readyz")).send().await;
                if response.is_ok_and(|r| r.status() == 200) {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("{base} did not become ready");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// An API URL on the gateway whose turn it is.
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.next_base(), path)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        Ok((status, value))
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn register(&self, username: &str) -> anyhow::Result<User> {
        let (status, body) = self
            .post(
                "/auth/register",
                None,
                json!({"username": username, "password": "correct horse"}),
            )
            .await?;
        if status != 201 {
            bail!("register {username}: {status} {body}");
        }
        Ok(User {
            id: str_of(&body["user"]["id"])?,
            token: str_of(&body["access_token"])?,
            refresh: str_of(&body["refresh_token"])?,
        })
    }

    /// Creates a room owned by `owner`; returns its id.
    pub async fn room(&self, owner: &User, name: &str, visibility: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .post(
                "/rooms",
                Some(&owner.token),
                json!({"name": name, "visibility": visibility}),
            )
            .await?;
        if status != 201 {
            bail!("create room: {status} {body}");
        }
        str_of(&body["room"]["id"])
    }

    pub async fn join(&self, user: &User, room: &str) -> anyhow::Result<()> {
        let (status, body) = self
            .post(&format!("/rooms/{room}/join"), Some(&user.token), json!({}))
            .await?;
        if status != 200 {
            bail!("join: {status} {body}");
        }
        Ok(())
    }

    /// The WebSocket URL of the gateway whose turn it is.
    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.next_base().replacen("http", "ws", 1))
    }

    /// A WebSocket authenticated by header, past its `ready`.
    pub async fn ws(&self, user: &User) -> anyhow::Result<Ws> {
        let mut request = self.ws_url().into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {}", user.token).parse()?);
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        let mut ws = Ws {
            stream,
            buffer: VecDeque::new(),
            next_ref: 0,
            ready: Value::Null,
        };
        ws.ready = ws.next_of("ready").await?;
        Ok(ws)
    }

    /// An authenticated WebSocket whose socket has the smallest receive
    /// buffer the kernel allows, for a client that stops reading: the
    /// gateway's writes back up soon instead of after megabytes.
    pub async fn ws_with_small_receive_buffer(&self, user: &User) -> anyhow::Result<Ws> {
        let url = self.ws_url();
        let addr: std::net::SocketAddr = url
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .parse()?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let stream = socket.connect(addr).await?;
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {}", user.token).parse()?);
        let (stream, _) =
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await?;
        let mut ws = Ws::from_stream(stream);
        ws.ready = ws.next_of("ready").await?;
        Ok(ws)
    }

    /// A WebSocket with no authentication yet.
    pub async fn raw_ws(&self) -> anyhow::Result<Ws> {
        let (stream, _) = tokio_tungstenite::connect_async(self.ws_url()).await?;
        Ok(Ws {
            stream,
            buffer: VecDeque::new(),
            next_ref: 0,
            ready: Value::Null,
        })
    }
}

pub fn str_of(v: &Value) -> anyhow::Result<String> {
    v.as_str()
        .map(str::to_owned)
        .with_context(|| format!("expected a string, got {v}"))
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for another kind, in arrival order.
    buffer: VecDeque<Value>,
    next_ref: u64,
    pub ready: Value,
}

impl Ws {
    pub fn from_stream(stream: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Ws {
        Ws {
            stream,
            buffer: VecDeque::new(),
            next_ref: 0,
            ready: Value::Null,
        }
    }

    pub async fn send(&mut self, frame: Value) -> anyhow::Result<()> {
        self.stream.send(Message::text(frame.to_string())).await?;
        Ok(())
    }

    pub async fn send_raw(&mut self, text: &str) -> anyhow::Result<()> {
        self.stream.send(Message::text(text.to_owned())).await?;
        Ok(())
    }

    /// The next JSON frame from the socket (control frames skipped).
    async fn read(&mut self, wait: Duration) -> anyhow::Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await;
            match next {
                Err(_) => return Ok(None),
                Ok(None) => bail!("the socket closed"),
                Ok(Some(Err(e))) => bail!("socket error: {e}"),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Ok(Some(serde_json::from_str(t.as_str())?));
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    bail!(
                        "the socket closed with {:?}",
                        frame.map(|f| u16::from(f.code))
                    )
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next message as it came off the socket, close frames included
    /// (buffered frames first).
    pub async fn next_raw(&mut self) -> anyhow::Result<Message> {
        if let Some(v) = self.buffer.pop_front() {
            return Ok(Message::text(v.to_string()));
        }
        match tokio::time::timeout(WAIT, self.stream.next()).await {
            Err(_) => bail!("nothing arrived"),
            Ok(None) => bail!("the socket ended without a close frame"),
            Ok(Some(message)) => Ok(message?),
        }
    }

    /// The next frame, buffered ones first.
    pub async fn next(&mut self) -> anyhow::Result<Value> {
        if let Some(v) = self.buffer.pop_front() {
            return Ok(v);
        }
        self.read(WAIT).await?.context("no frame arrived")
    }

    /// The next frame matching `pred`; other frames stay buffered.
    pub async fn next_where(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        if let Some(i) = self.buffer.iter().position(&pred) {
            return self.buffer.remove(i).context("buffer");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(v) = self.read(left).await? else {
                bail!("no {what} arrived; buffered: {:?}", self.buffer);
            };
            if pred(&v) {
                return Ok(v);
            }
            self.buffer.push_back(v);
        }
    }

    pub async fn next_of(&mut self, kind: &str) -> anyhow::Result<Value> {
        self.next_where(kind, |v| v["type"] == kind).await
    }

    /// Sends `frame` with a fresh `ref` and returns the reply echoing it.
    pub async fn request(&mut self, mut frame: Value) -> anyhow::Result<Value> {
        self.next_ref += 1;
        let reference = format!("r{}", self.next_ref);
        frame["ref"] = json!(reference);
        self.send(frame).await?;
        self.next_where("reply", |v| v["ref"] == reference.as_str())
            .await
    }

    /// Fails if a frame of `kind` is buffered or arrives within [`QUIET`].
    pub async fn assert_no(&mut self, kind: &str) -> anyhow::Result<()> {
        if let Some(v) = self.buffer.iter().find(|v| v["type"] == kind) {
            bail!("unexpected {kind}: {v}");
        }
        let deadline = tokio::time::Instant::now() + QUIET;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await? {
                None => return Ok(()),
                Some(v) if v["type"] == kind => bail!("unexpected {kind}: {v}"),
                Some(v) => self.buffer.push_back(v),
            }
        }
    }

    /// Waits for the server to close the socket; returns the close code.
    pub async fn closed(&mut self) -> anyhow::Result<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => bail!("the socket did not close"),
                Ok(None) => bail!("the socket ended without a close frame"),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Ok(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => bail!("socket error before close: {e}"),
            }
        }
    }

    pub async fn close(mut self) -> anyhow::Result<()> {
        self.stream
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await?;
        // Read until the server's close reply.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.stream.next()).await {}
        Ok(())
    }
}
