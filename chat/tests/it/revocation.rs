//! Disabling a user and changing a password reach open sockets: at once
//! through the `disconnect` user event auth-service publishes, and through
//! each gateway's periodic re-validation when that event is lost.

use std::time::Duration;

use anyhow::Context;
use chat_common::Backends;
use chat_proto::AdminCredentials;
use chat_proto::auth::v1::SetDisabledRequest;
use chat_proto::auth::v1::admin_service_client::AdminServiceClient;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Api, Deployment, TestSystem, User, Ws};

async fn start_with_admin(deployment: Deployment) -> anyhow::Result<(TestSystem, User)> {
    let t = TestSystem::start_with(deployment, |options| {
        options.admin_usernames = vec!["root".into()];
    })
    .await?;
    let root = t.register("root").await?;
    Ok((t, root))
}

/// `chatctl users disable`, as chatctl calls it.
async fn disable(t: &TestSystem, admin: &User, user_id: &str) -> anyhow::Result<()> {
    let system = t.system()?;
    let credentials =
        AdminCredentials::new(Some(system.service_token.expose()), Some(&admin.token))?;
    let channel = chat_common::grpc::channel(&format!("http://{}", system.auth_addr))?;
    let reply = AdminServiceClient::with_interceptor(channel, credentials)
        .set_disabled(SetDisabledRequest {
            user: user_id.to_owned(),
            disabled: true,
        })
        .await?;
    anyhow::ensure!(
        reply.get_ref().disabled,
        "not disabled: {:?}",
        reply.get_ref()
    );
    Ok(())
}

/// A WebSocket authenticated by header that the gateway is expected to
/// refuse; returns its close code.
async fn refused_ws(api: &Api, token: &str) -> anyhow::Result<u16> {
    let mut request = api.ws_url().into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (stream, _) = tokio_tungstenite::connect_async(request).await?;
    Ws::from_stream(stream).closed().await
}

async fn disabling_a_user_closes_every_socket_with_4003(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let (t, root) = start_with_admin(deployment).await?;
    let alice = t.register("alice").await?;
    // Replicated: sockets take turns, so these sit on both gateways.
    let mut first = t.ws(&alice).await?;
    let mut second = t.ws(&alice).await?;
    let mut bystander = t.ws(&root).await?;

    disable(&t, &root, &alice.id).await?;
    assert_eq!(first.closed().await?, 4003);
    assert_eq!(second.closed().await?, 4003);
    // Nobody else's socket closes.
    let pong = bystander.request(json!({"type": "ping"})).await?;
    assert_eq!(pong["type"], "pong");

    // The old access token is still unexpired, but is refused at the
    // handshake on every gateway.
    assert_eq!(refused_ws(&t, &alice.token).await?, 4003);
    assert_eq!(refused_ws(&t, &alice.token).await?, 4003);
    Ok(())
}

async fn a_password_change_closes_the_users_sockets_with_4001(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let mut first = t.ws(&alice).await?;
    let mut second = t.ws(&alice).await?;
    let mut bystander = t.ws(&bob).await?;

    let (status, _) = t
        .post(
            "/auth/password",
            Some(&alice.token),
            json!({"old_password": "correct horse", "new_password": "battery staple"}),
        )
        .await?;
    assert_eq!(status, 204);
    assert_eq!(first.closed().await?, 4001);
    assert_eq!(second.closed().await?, 4001);
    let pong = bystander.request(json!({"type": "ping"})).await?;
    assert_eq!(pong["type"], "pong");
    Ok(())
}

/// A gateway that hears none of auth-service's events (its own in-process
/// pub/sub) still closes a disabled user's socket, at its re-validation.
async fn revalidation_closes_sockets_whose_event_was_lost() -> anyhow::Result<()> {
    let (t, root) = start_with_admin(Deployment::Embedded).await?;
    let alice = t.register("alice").await?;
    let system = t.system()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let deaf_addr = listener.local_addr()?;
    let config = chat_gateway::Config {
        gateway_id: "deaf".to_owned(),
        auth_addr: format!("http://{}", system.auth_addr),
        message_addr: format!("http://{}", system.message_addr),
        presence_addr: format!("http://{}", system.presence_addr),
        jwt_secret: chat_common::config::load_or_create_secret(&t.dir.path().join("jwt-secret"))?,
        service_token: system.service_token.clone(),
        backends: Backends::in_process(),
        allowed_origins: Vec::new(),
        trust_forwarded_for: false,
        limits: chat_gateway::Limits {
            revalidate_interval: Duration::from_millis(200),
            drain_window: Duration::ZERO,
            ..chat_gateway::Limits::default()
        },
    };
    let shutdown = chat_common::Shutdown::new();
    let gateway = tokio::spawn(chat_gateway::serve(config, listener, shutdown.clone()));
    let deaf = Api::new(vec![format!("http://{deaf_addr}")])?;
    deaf.wait_ready().await?;

    let mut socket = deaf.ws(&alice).await?;
    disable(&t, &root, &alice.id).await?;
    assert_eq!(socket.closed().await?, 4003);

    // Gone, so the gateway does not wait for its close reply.
    drop(socket);
    shutdown.cancel();
    gateway.await.context("the extra gateway panicked")??;
    Ok(())
}

#[tokio::test]
async fn embedded_revalidation_closes_sockets_whose_event_was_lost() -> anyhow::Result<()> {
    revalidation_closes_sockets_whose_event_was_lost().await
}

crate::on_both_deployments!(
    disabling_a_user_closes_every_socket_with_4003,
    a_password_change_closes_the_users_sockets_with_4001,
);
