//! Disabling a user, changing a password, logging out (one session or
//! everywhere) and reusing a refresh token end the sessions concerned:
//! their access tokens are refused by HTTP calls and new sockets on every
//! gateway, and their open sockets close, at once through the `disconnect`
//! user event auth-service publishes, and through each gateway's periodic
//! re-validation when that event is lost.

use std::time::Duration;

use anyhow::Context;
use chat_common::Backends;
use chat_proto::AdminCredentials;
use chat_proto::auth::v1::SetDisabledRequest;
use chat_proto::auth::v1::admin_service_client::AdminServiceClient;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Api, Deployment, TestSystem, User, Ws, str_of};
use crate::tokens::login;

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
    // And by HTTP on every gateway.
    assert_eq!(me_statuses(&t, &alice.token).await?, [401, 401]);
    Ok(())
}

/// `GET /me` twice: on each gateway of a replicated system.
async fn me_statuses(api: &Api, token: &str) -> anyhow::Result<[u16; 2]> {
    let (first, _) = api.get("/me", Some(token)).await?;
    let (second, _) = api.get("/me", Some(token)).await?;
    Ok([first, second])
}

async fn logout(api: &Api, user: &User, everywhere: bool) -> anyhow::Result<(u16, String)> {
    let (status, body) = api
        .post(
            "/auth/logout",
            None,
            json!({"refresh_token": user.refresh, "everywhere": everywhere}),
        )
        .await?;
    Ok((
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ))
}

async fn logout_ends_that_sessions_tokens_and_sockets_only(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let phone = t.register("alice").await?;
    let laptop = login(&t, "alice").await?;
    let mut phone_sockets = [t.ws(&phone).await?, t.ws(&phone).await?];
    let mut laptop_socket = t.ws(&laptop).await?;
    // Each gateway has looked the session up, and cached it as live.
    assert_eq!(me_statuses(&t, &phone.token).await?, [200, 200]);

    assert_eq!(logout(&t, &phone, false).await?, (204, String::new()));
    for socket in &mut phone_sockets {
        assert_eq!(socket.closed().await?, 4001);
    }
    let pong = laptop_socket.request(json!({"type": "ping"})).await?;
    assert_eq!(pong["type"], "pong");
    // The closes show every gateway heard of the logout.
    assert_eq!(me_statuses(&t, &phone.token).await?, [401, 401]);
    let (_, body) = t.get("/me", Some(&phone.token)).await?;
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(refused_ws(&t, &phone.token).await?, 4001);
    assert_eq!(refused_ws(&t, &phone.token).await?, 4001);
    assert_eq!(me_statuses(&t, &laptop.token).await?, [200, 200]);
    Ok(())
}

async fn logout_everywhere_ends_every_session(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let phone = t.register("alice").await?;
    let laptop = login(&t, "alice").await?;
    let bob = t.register("bob").await?;
    let mut sockets = [t.ws(&phone).await?, t.ws(&laptop).await?];
    let mut bystander = t.ws(&bob).await?;

    // A spent refresh token (as a thief may replay) cannot do it, nor a
    // made-up one, and neither changes anything.
    let (status, body) = t
        .post(
            "/auth/refresh",
            None,
            json!({"refresh_token": phone.refresh}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let spent = phone.refresh.clone();
    let phone = User {
        token: str_of(&body["access_token"])?,
        refresh: str_of(&body["refresh_token"])?,
        ..phone
    };
    let tablet = login(&t, "alice").await?;
    for refresh in [spent, "never issued".to_owned()] {
        let attempt = User {
            refresh,
            ..login(&t, "bob").await?
        };
        assert_eq!(
            logout(&t, &attempt, true).await?,
            (401, "unauthorized".to_owned())
        );
    }
    assert_eq!(me_statuses(&t, &phone.token).await?, [200, 200]);

    assert_eq!(logout(&t, &laptop, true).await?, (204, String::new()));
    for socket in &mut sockets {
        assert_eq!(socket.closed().await?, 4001);
    }
    let pong = bystander.request(json!({"type": "ping"})).await?;
    assert_eq!(pong["type"], "pong");
    for user in [&phone, &laptop, &tablet] {
        assert_eq!(me_statuses(&t, &user.token).await?, [401, 401]);
        assert_eq!(refused_ws(&t, &user.token).await?, 4001);
    }
    let (status, _) = t
        .post(
            "/auth/refresh",
            None,
            json!({"refresh_token": phone.refresh}),
        )
        .await?;
    assert_eq!(status, 401);
    // Signing in again starts afresh.
    let again = login(&t, "alice").await?;
    assert_eq!(me_statuses(&t, &again.token).await?, [200, 200]);
    assert_eq!(me_statuses(&t, &bob.token).await?, [200, 200]);
    Ok(())
}

async fn refresh_token_reuse_ends_the_session(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let other = login(&t, "alice").await?;
    let mut socket = t.ws(&alice).await?;
    let mut other_socket = t.ws(&other).await?;
    let (status, body) = t
        .post(
            "/auth/refresh",
            None,
            json!({"refresh_token": alice.refresh}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let rotated = str_of(&body["access_token"])?;
    // The spent token again: a thief or the victim; either way the
    // session ends.
    let (status, _) = t
        .post(
            "/auth/refresh",
            None,
            json!({"refresh_token": alice.refresh}),
        )
        .await?;
    assert_eq!(status, 401);
    assert_eq!(socket.closed().await?, 4001);
    let pong = other_socket.request(json!({"type": "ping"})).await?;
    assert_eq!(pong["type"], "pong");
    assert_eq!(me_statuses(&t, &rotated).await?, [401, 401]);
    assert_eq!(me_statuses(&t, &alice.token).await?, [401, 401]);
    assert_eq!(me_statuses(&t, &other.token).await?, [200, 200]);
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
    // The old access token is refused everywhere, though unexpired.
    assert_eq!(me_statuses(&t, &alice.token).await?, [401, 401]);
    assert_eq!(refused_ws(&t, &alice.token).await?, 4001);
    assert_eq!(refused_ws(&t, &alice.token).await?, 4001);
    let relogged = User {
        refresh: String::new(),
        ..login_with(&t, "alice", "battery staple").await?
    };
    assert_eq!(me_statuses(&t, &relogged.token).await?, [200, 200]);
    Ok(())
}

async fn login_with(api: &Api, username: &str, password: &str) -> anyhow::Result<User> {
    let (status, body) = api
        .post(
            "/auth/login",
            None,
            json!({"username": username, "password": password}),
        )
        .await?;
    anyhow::ensure!(status == 200, "login {username}: {status} {body}");
    Ok(User {
        id: str_of(&body["user"]["id"])?,
        token: str_of(&body["access_token"])?,
        refresh: str_of(&body["refresh_token"])?,
    })
}

/// A gateway of `t`'s system that hears none of auth-service's events
/// (its own in-process pub/sub) and re-validates every 200 ms.
struct DeafGateway {
    api: Api,
    shutdown: chat_common::Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl DeafGateway {
    async fn start(t: &TestSystem) -> anyhow::Result<DeafGateway> {
        let system = t.system()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let deaf_addr = listener.local_addr()?;
        let config = chat_gateway::Config {
            gateway_id: "deaf".to_owned(),
            auth_addr: format!("http://{}", system.auth_addr),
            message_addr: format!("http://{}", system.message_addr),
            presence_addr: format!("http://{}", system.presence_addr),
            grpc_tls: None,
            jwt_keys: chat_common::config::load_or_create_secret(&t.dir.path().join("jwt-secret"))?
                .into(),
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
        let task = tokio::spawn(chat_gateway::serve(config, listener, shutdown.clone()));
        let api = Api::new(vec![format!("http://{deaf_addr}")])?;
        api.wait_ready().await?;
        Ok(DeafGateway {
            api,
            shutdown,
            task,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("the extra gateway panicked")?
    }
}

/// A gateway that hears none of auth-service's events still closes a
/// disabled user's socket, at its re-validation.
async fn revalidation_closes_sockets_whose_event_was_lost() -> anyhow::Result<()> {
    let (t, root) = start_with_admin(Deployment::Embedded).await?;
    let alice = t.register("alice").await?;
    let deaf = DeafGateway::start(&t).await?;

    let mut socket = deaf.api.ws(&alice).await?;
    disable(&t, &root, &alice.id).await?;
    assert_eq!(socket.closed().await?, 4003);

    // Gone, so the gateway does not wait for its close reply.
    drop(socket);
    deaf.stop().await
}

/// A gateway that missed a logout's event ends the session at its
/// re-validation, and one started after the logout never accepts it.
async fn gateways_that_missed_a_logout_still_end_the_session() -> anyhow::Result<()> {
    let t = TestSystem::start(Deployment::Embedded).await?;
    let phone = t.register("alice").await?;
    let laptop = login(&t, "alice").await?;
    let deaf = DeafGateway::start(&t).await?;
    let mut phone_socket = deaf.api.ws(&phone).await?;
    let mut laptop_socket = deaf.api.ws(&laptop).await?;
    let (status, _) = deaf.api.get("/me", Some(&phone.token)).await?;
    assert_eq!(status, 200);

    assert_eq!(logout(&t, &phone, false).await?, (204, String::new()));
    assert_eq!(phone_socket.closed().await?, 4001);
    let pong = laptop_socket.request(json!({"type": "ping"})).await?;
    assert_eq!(pong["type"], "pong");
    // Re-validation refreshed what the gateway knows of the user.
    let (status, _) = deaf.api.get("/me", Some(&phone.token)).await?;
    assert_eq!(status, 401);

    let restarted = DeafGateway::start(&t).await?;
    let (status, _) = restarted.api.get("/me", Some(&phone.token)).await?;
    assert_eq!(status, 401);
    assert_eq!(refused_ws(&restarted.api, &phone.token).await?, 4001);
    let (status, _) = restarted.api.get("/me", Some(&laptop.token)).await?;
    assert_eq!(status, 200);

    drop(phone_socket);
    drop(laptop_socket);
    restarted.stop().await?;
    deaf.stop().await
}

#[tokio::test]
async fn embedded_revalidation_closes_sockets_whose_event_was_lost() -> anyhow::Result<()> {
    revalidation_closes_sockets_whose_event_was_lost().await
}

#[tokio::test]
async fn embedded_gateways_that_missed_a_logout_still_end_the_session() -> anyhow::Result<()> {
    gateways_that_missed_a_logout_still_end_the_session().await
}

crate::on_both_deployments!(
    disabling_a_user_closes_every_socket_with_4003,
    a_password_change_closes_the_users_sockets_with_4001,
    logout_ends_that_sessions_tokens_and_sockets_only,
    logout_everywhere_ends_every_session,
    refresh_token_reuse_ends_the_session,
);
