//! The binary with `METRICS_LISTEN`: after a gRPC call, `/metrics` on the
//! metrics port holds the call's latency series. Runs the real binary, so
//! the flag's wiring is what is tested; both ports are 0 and read back from
//! its JSON log.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use chat_message_service::SERVICE_NAME;
use chat_proto::message::v1 as pb;
use chat_proto::message::v1::message_service_client::MessageServiceClient;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::helpers::{TOKEN, user};

/// The address logged with `message` (e.g. "metrics listening").
fn logged_addr(line: &str, message: &str) -> Option<String> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &entry["fields"];
    (fields["message"] == message).then(|| fields["addr"].as_str().map(str::to_owned))?
}

async fn get_metrics(addr: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    anyhow::ensure!(response.starts_with("HTTP/1.1 200"), "{response}");
    Ok(response)
}

#[tokio::test]
async fn metrics_listen_serves_grpc_latency_after_a_call() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_message-service"))
        .env_clear()
        .env("MESSAGE_LISTEN", "127.0.0.1:0")
        .env("METRICS_LISTEN", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            chat_common::db::sqlite_url(dir.path(), "message.db"),
        )
        .env("SERVICE_TOKEN", TOKEN)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let (grpc, metrics) = tokio::time::timeout(Duration::from_secs(20), async {
        let (mut grpc, mut metrics): (Option<String>, Option<String>) = (None, None);
        loop {
            if let (Some(grpc), Some(metrics)) = (&grpc, &metrics) {
                return anyhow::Ok((grpc.clone(), metrics.clone()));
            }
            let line = lines.next_line().await?.context("the service exited")?;
            grpc = grpc.or_else(|| logged_addr(&line, "message-service listening"));
            metrics = metrics.or_else(|| logged_addr(&line, "metrics listening"));
        }
    })
    .await
    .context("the service did not log its addresses")??;
    // Keep reading the log, so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
        .connect()
        .await?;
    let auth = chat_common::identity::ServiceAuth::new(chat_common::Secret::new(TOKEN))?;
    let mut client = MessageServiceClient::with_interceptor(channel, auth);
    client
        .list_my_rooms(user("alice").request(pb::ListMyRoomsRequest {}))
        .await?;

    let text = get_metrics(&metrics).await?;
    let series = format!(
        "chat_grpc_server_duration_seconds_count{{service=\"{SERVICE_NAME}\",method=\"ListMyRooms\",code=\"OK\"}} 1"
    );
    assert!(text.contains(&series), "no {series} in:\n{text}");
    assert!(text.contains("# TYPE chat_grpc_server_duration_seconds histogram"));
    assert!(text.contains("# TYPE chat_message_outbox_backlog gauge"));
    child.kill().await?;
    Ok(())
}
