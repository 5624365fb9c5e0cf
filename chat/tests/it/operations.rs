//! Health, readiness, the gRPC health service of every service, and a
//! restart on the same data directory.

use serde_json::json;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{Deployment, TestSystem};

#[tokio::test]
async fn healthz_and_readyz_answer() -> anyhow::Result<()> {
    let t = TestSystem::start(Deployment::Embedded).await?;
    let health: serde_json::Value = t
        .http
        .get(format!("{}/healthz", t.base))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(health, json!({"status": "ok"}));
    let response = t.http.get(format!("{}/readyz", t.base)).send().await?;
    assert_eq!(response.status(), 200);
    let ready: serde_json::Value = response.json().await?;
    assert_eq!(
        ready,
        json!({"status": "ready", "services": {"auth-service": "serving", "message-service": "serving", "presence-service": "serving"}})
    );
    Ok(())
}

#[tokio::test]
async fn every_grpc_service_reports_serving() -> anyhow::Result<()> {
    let t = TestSystem::start(Deployment::Embedded).await?;
    let system = t.system()?;
    let services = [
        (system.auth_addr, "chat.auth.v1.AuthService"),
        (system.message_addr, "chat.message.v1.MessageService"),
        (system.presence_addr, "chat.presence.v1.PresenceService"),
    ];
    for (addr, name) in services {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let mut client = HealthClient::new(channel);
        for service in ["", name] {
            let reply = client
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await?;
            assert_eq!(
                reply.get_ref().status,
                ServingStatus::Serving as i32,
                "{name} {service:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_restart_on_the_same_data_keeps_users_rooms_messages_and_tokens() -> anyhow::Result<()> {
    let t = TestSystem::start(Deployment::Embedded).await?;
    let alice = t.register("alice").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    let mut ws = t.ws(&alice).await?;
    ws.request(json!({"type": "send", "room": room, "text": "still here", "client_msg_id": "1"}))
        .await?;
    drop(ws);
    let dir = t.stop().await?;

    let t = TestSystem::start_in(dir, |_| {}).await?;
    let (status, body) = t
        .get(&format!("/rooms/{room}/messages"), Some(&alice.token))
        .await?;
    assert_eq!(status, 200, "the old access token is still valid: {body}");
    assert_eq!(body["messages"][0]["text"], "still here");
    assert_eq!(body["messages"][0]["seq"], 1);
    let (status, _) = t
        .post(
            "/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await?;
    assert_eq!(status, 200);
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1012() -> anyhow::Result<()> {
    let t = TestSystem::start(Deployment::Embedded).await?;
    let alice = t.register("alice").await?;
    let mut ws = t.ws(&alice).await?;
    let stopping = tokio::spawn(t.stop());
    assert_eq!(ws.closed().await?, 1012);
    drop(ws);
    stopping.await??;
    Ok(())
}

#[tokio::test]
async fn a_draining_gateway_is_unready_refuses_upgrades_and_still_answers_http()
-> anyhow::Result<()> {
    // A window long enough to look at the gateway while it drains.
    let t = TestSystem::start_with(Deployment::Embedded, |o| {
        o.gateway_limits.drain_window = std::time::Duration::from_secs(3);
    })
    .await?;
    let alice = t.register("alice").await?;
    let mut ws = t.ws(&alice).await?;
    t.system()?.shutdown_handle().cancel();

    let deadline = tokio::time::Instant::now() + crate::support::WAIT;
    let response = loop {
        let response = t.http.get(format!("{}/readyz", t.base)).send().await?;
        if response.status() != 200 || tokio::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.json::<serde_json::Value>().await?,
        json!({"status": "draining"})
    );
    match tokio_tungstenite::connect_async(t.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => anyhow::bail!("upgrade while draining: {other:?}"),
    }
    // The API still answers while the sockets drain.
    let (status, _) = t.get("/rooms", Some(&alice.token)).await?;
    assert_eq!(status, 200);

    assert_eq!(ws.closed().await?, 1012);
    drop(ws);
    t.stop().await?;
    Ok(())
}
