//! Test harness: the whole embedded system (`chat::start`) in-process on
//! port 0 with `root` as bootstrap admin, users registered over the
//! gateway's HTTP API, and the `chatctl` binary run as a subprocess against
//! the services' gRPC addresses.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use chat::{Options, System};
use chat_common::Shutdown;
use chat_common::identity::{Identity, ServiceAuth};
use chat_proto::message::v1 as pb;
use chat_proto::message::v1::message_service_client::MessageServiceClient;
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const PASSWORD: &str = "correct horse";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestSystem {
    pub system: System,
    pub http: reqwest::Client,
    pub base: String,
    /// `root`, the bootstrap admin.
    pub root: User,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub token: String,
}

impl User {
    pub fn identity(&self) -> Identity {
        Identity {
            user_id: self.id.clone(),
            username: self.username.clone(),
            display_name: self.username.clone(),
        }
    }
}

/// What a finished chatctl run printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout of a successful run.
    pub fn ok(self) -> anyhow::Result<String> {
        if self.code != Some(0) {
            bail!("chatctl failed: {self:?}");
        }
        Ok(self.stdout)
    }

    pub fn json(self) -> anyhow::Result<Value> {
        let stdout = self.ok()?;
        serde_json::from_str(&stdout).with_context(|| format!("not JSON: {stdout}"))
    }
}

impl TestSystem {
    pub async fn start() -> anyhow::Result<TestSystem> {
        let dir = tempfile::tempdir()?;
        let mut options = Options::new("127.0.0.1:0", dir.path());
        options.admin_usernames = vec!["root".into()];
        let system = chat::start(options, Shutdown::new()).await?;
        let base = format!("http://{}", system.addr);
        let http = reqwest::Client::builder().timeout(WAIT).build()?;
        wait_ready(&http, &base).await?;
        let root = register(&http, &base, "root").await?;
        Ok(TestSystem {
            system,
            http,
            base,
            root,
            _dir: dir,
        })
    }

    pub async fn register(&self, username: &str) -> anyhow::Result<User> {
        register(&self.http, &self.base, username).await
    }

    /// A chatctl command with nothing from the test's environment but the
    /// services' addresses, the service token and root's access token.
    pub fn chatctl(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatctl"));
        command
            .env_clear()
            .env("AUTH_ADDR", format!("http://{}", self.system.auth_addr))
            .env(
                "MESSAGE_ADDR",
                format!("http://{}", self.system.message_addr),
            )
            .env(
                "PRESENCE_ADDR",
                format!("http://{}", self.system.presence_addr),
            )
            .env("SERVICE_TOKEN", self.system.service_token.expose())
            .env("CHATCTL_TOKEN", &self.root.token)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs chatctl as root (by access token) to the end.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Run> {
        run(self.chatctl(args)).await
    }

    /// A message-service client acting for users, as the gateway is.
    pub fn messages(
        &self,
    ) -> anyhow::Result<MessageServiceClient<InterceptedService<Channel, ServiceAuth>>> {
        let channel = chat_common::grpc::channel(&format!("http://{}", self.system.message_addr))?;
        Ok(MessageServiceClient::with_interceptor(
            channel,
            ServiceAuth::new(self.system.service_token.clone())?,
        ))
    }

    /// Sends `text` to `room` as `who`; returns the message.
    pub async fn send(&self, who: &User, room: &str, text: &str) -> anyhow::Result<pb::Message> {
        let request = pb::SendMessageRequest {
            room: room.into(),
            text: text.into(),
            client_msg_id: uuid::Uuid::new_v4().to_string(),
            reply_to: None,
            attachment_id: None,
        };
        self.messages()?
            .send_message(who.identity().request(request))
            .await?
            .into_inner()
            .message
            .context("no message in the reply")
    }

    /// Creates a room owned by `owner` over the gateway; returns its id.
    pub async fn room(&self, owner: &User, name: &str, visibility: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .post(
                "/rooms",
                Some(&owner.token),
                json!({"name": name, "visibility": visibility}),
            )
            .await?;
        anyhow::ensure!(status == 201, "create room: {status} {body}");
        str_of(&body["room"]["id"])
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        post(&self.http, &self.base, path, token, body).await
    }
}

pub async fn run(mut command: tokio::process::Command) -> anyhow::Result<Run> {
    let output = tokio::time::timeout(WAIT * 2, command.output())
        .await
        .context("chatctl did not finish")??;
    Ok(Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout)?,
        stderr: String::from_utf8(output.stderr)?,
    })
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = http.get(format!("{base}/readyz")).send().await;
        if response.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{base} did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let mut request = http.post(format!("{base}/api/v1{path}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
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

async fn register(http: &reqwest::Client, base: &str, username: &str) -> anyhow::Result<User> {
    let (status, body) = post(
        http,
        base,
        "/auth/register",
        None,
        json!({"username": username, "password": PASSWORD}),
    )
    .await?;
    anyhow::ensure!(status == 201, "register {username}: {status} {body}");
    Ok(User {
        id: str_of(&body["user"]["id"])?,
        username: username.to_owned(),
        token: str_of(&body["access_token"])?,
    })
}

pub fn str_of(v: &Value) -> anyhow::Result<String> {
    v.as_str()
        .map(str::to_owned)
        .with_context(|| format!("expected a string, got {v}"))
}

/// An address where nothing listens: a port just freed.
pub async fn closed_addr() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("http://{addr}"))
}

/// Asserts `text` matches `pattern` where each `*` stands for a run of
/// non-space characters (ids and times the test does not know).
pub fn assert_like(text: &str, pattern: &str) {
    let mut rest = text;
    let parts: Vec<&str> = pattern.split('*').collect();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            assert!(
                rest.starts_with(part),
                "{text:?}\ndoes not start like\n{pattern:?}"
            );
            rest = &rest[part.len()..];
            continue;
        }
        let wild = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
        let (skipped, after) = rest.split_at(wild);
        assert!(
            !skipped.is_empty(),
            "{text:?}\ndoes not match\n{pattern:?} at *{part:?}"
        );
        assert!(
            after.starts_with(part),
            "{text:?}\ndoes not match\n{pattern:?} at *{part:?}"
        );
        rest = &after[part.len()..];
    }
    assert!(rest.is_empty(), "{text:?}\nhas more than\n{pattern:?}");
}
