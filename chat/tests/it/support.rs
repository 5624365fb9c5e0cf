//! Test harness: the whole embedded system on port 0 in a temporary data
//! directory, driven by a real HTTP client and real WebSocket clients.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, bail};
use chat::{Options, System};
use chat_common::Shutdown;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a test listens to conclude that nothing more arrives.
pub const QUIET: Duration = Duration::from_millis(400);

pub struct TestSystem {
    pub system: Option<System>,
    pub api: Api,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestSystem {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A client of one gateway: its HTTP API and WebSocket.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

pub struct User {
    pub id: String,
    pub token: String,
    pub refresh: String,
}

impl TestSystem {
    pub async fn start() -> anyhow::Result<TestSystem> {
        TestSystem::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Options)) -> anyhow::Result<TestSystem> {
        let dir = tempfile::tempdir()?;
        TestSystem::start_in(dir, configure).await
    }

    /// Starts on an existing data directory (to test restarts).
    pub async fn start_in(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut Options),
    ) -> anyhow::Result<TestSystem> {
        let mut options = Options::new("127.0.0.1:0", dir.path());
        configure(&mut options);
        let system = chat::start(options, Shutdown::new()).await?;
        let api = Api::new(format!("http://{}", system.addr))?;
        api.wait_ready().await?;
        Ok(TestSystem {
            system: Some(system),
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
        Ok(self.dir)
    }
}

impl Api {
    pub fn new(base: String) -> anyhow::Result<Api> {
        Ok(Api {
            base,
            http: reqwest::Client::builder().timeout(WAIT).build()?,
        })
    }

    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let response = self.http.get(format!("{}/readyz", self.base)).send().await;
            if response.is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} did not become ready", self.base);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.base, path)
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

    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.base.replacen("http", "ws", 1))
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
