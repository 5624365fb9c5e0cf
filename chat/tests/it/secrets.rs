//! No secret reaches the logs: the `chat` binary runs with every debug log
//! on, as JSON, through a session touching every credential (register,
//! login, refresh, WebSocket, send, upload, password change, logout), and
//! its whole output must name none of them.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use crate::support::{Api, User, str_of};

/// Appends every line of `stream` to `log`; the first line naming the HTTP
/// address goes to `addr` too.
fn capture(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<String>>,
    mut addr: Option<oneshot::Sender<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.trim().strip_prefix("HTTP API:")
                && let Some(tx) = addr.take()
            {
                let _ = tx.send(rest.trim().trim_end_matches("/api/v1").to_owned());
            }
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.push_str(&line);
            log.push('\n');
        }
    })
}

/// Drives one user's whole session; returns every secret it saw.
async fn session(api: &Api) -> anyhow::Result<Vec<String>> {
    let mut secrets = vec!["correct horse".to_owned(), "battery staple".to_owned()];
    let alice = api.register("alice").await?;
    secrets.extend([alice.token.clone(), alice.refresh.clone()]);

    let (status, login) = api
        .post(
            "/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await?;
    anyhow::ensure!(status == 200, "login: {status} {login}");
    let refresh = str_of(&login["refresh_token"])?;
    let (status, pair) = api
        .post("/auth/refresh", None, json!({"refresh_token": refresh}))
        .await?;
    anyhow::ensure!(status == 200, "refresh: {status} {pair}");
    secrets.extend([
        str_of(&login["access_token"])?,
        refresh,
        str_of(&pair["access_token"])?,
        str_of(&pair["refresh_token"])?,
    ]);
    // A failed login carries a password too.
    api.post(
        "/auth/login",
        None,
        json!({"username": "alice", "password": "wrong horse 42"}),
    )
    .await?;
    secrets.push("wrong horse 42".to_owned());

    let room = api.room(&alice, "general", "public").await?;
    let mut ws = api.ws(&alice).await?;
    let ack = ws
        .request(json!({"type": "send", "room": room, "text": "hello", "client_msg_id": "m1"}))
        .await?;
    anyhow::ensure!(ack["type"] == "ack", "send: {ack}");
    // First-frame authentication too.
    let mut by_frame = api.raw_ws().await?;
    by_frame
        .send(json!({"type": "auth", "token": alice.token}))
        .await?;
    by_frame.next_of("ready").await?;

    let response = api
        .http
        .post(api.url(&format!("/rooms/{room}/attachments?filename=a.txt")))
        .bearer_auth(&alice.token)
        .header("content-type", "text/plain")
        .body("attached")
        .send()
        .await?;
    anyhow::ensure!(response.status() == 201, "upload: {}", response.status());

    let (status, _) = api
        .post(
            "/auth/password",
            Some(&alice.token),
            json!({"old_password": "correct horse", "new_password": "battery staple"}),
        )
        .await?;
    anyhow::ensure!(status == 204, "password change: {status}");
    let latest = User {
        id: alice.id.clone(),
        token: str_of(&pair["access_token"])?,
        refresh: str_of(&pair["refresh_token"])?,
    };
    api.post(
        "/auth/logout",
        None,
        json!({"refresh_token": latest.refresh}),
    )
    .await?;
    Ok(secrets)
}

#[tokio::test]
async fn a_full_session_logs_no_secret() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .env("CHAT_LISTEN", "127.0.0.1:0")
        .env("CHAT_DATA_DIR", dir.path())
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .env("DRAIN_WINDOW_S", "0")
        .env_remove("REDIS_URL")
        .env_remove("AMQP_URL")
        .env_remove("AUTH_DATABASE_URL")
        .env_remove("MESSAGE_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let log = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = oneshot::channel();
    let readers = [
        capture(
            child.stdout.take().context("no stdout")?,
            log.clone(),
            Some(addr_tx),
        ),
        capture(child.stderr.take().context("no stderr")?, log.clone(), None),
    ];
    let base = tokio::time::timeout(Duration::from_secs(30), addr_rx)
        .await
        .context("chat did not print its address")??;
    let api = Api::new(vec![base])?;
    api.wait_ready().await?;

    let mut secrets = session(&api).await?;

    let pid = child.id().context("chat already exited")?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "cannot signal chat");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .context("chat did not stop")??;
    anyhow::ensure!(exit.success(), "chat exited with {exit}");
    for reader in readers {
        reader.await?;
    }

    secrets.push(
        std::fs::read_to_string(dir.path().join("jwt-secret"))?
            .trim()
            .to_owned(),
    );
    secrets.push(
        std::fs::read_to_string(dir.path().join("service-token"))?
            .trim()
            .to_owned(),
    );
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    anyhow::ensure!(
        log.contains("\"level\":\"DEBUG\""),
        "debug logs were not captured:\n{log}"
    );
    for secret in &secrets {
        anyhow::ensure!(!secret.is_empty(), "an empty secret would match anything");
        // A JWT's signature alone would leak enough to replay it.
        let needles = [secret.as_str(), secret.rsplit('.').next().unwrap_or(secret)];
        for needle in needles {
            if let Some(at) = log.find(needle) {
                let line_start = log[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = log[at..].find('\n').map_or(log.len(), |i| at + i);
                bail!("a secret is in the logs: {}", &log[line_start..line_end]);
            }
        }
    }
    Ok(())
}
