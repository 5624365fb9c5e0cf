//! `chat.presence.v1.AdminService` against a real auth-service: who may
//! call it and what it answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_common::identity::ServiceAuth;
use chat_common::{Backends, Secret, Shutdown};
use chat_presence_service::store::MemoryStore;
use chat_proto::ErrorCode;
use chat_proto::auth::v1::auth_service_client::AuthServiceClient;
use chat_proto::auth::v1::{AuthResponse, RegisterRequest};
use chat_proto::presence::v1 as pb;
use chat_proto::presence::v1::admin_service_client::AdminServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::helpers::{Created, TOKEN, TestServer, comparable, expected_notification, strings};
use chat_proto::AdminCredentials;

type AdminClient = AdminServiceClient<InterceptedService<Channel, AdminCredentials>>;

/// auth-service with `root` as bootstrap admin and presence-service asking
/// it; `root` and `alice` registered.
struct World {
    presence: TestServer,
    auth_stop: Shutdown,
    root: AuthResponse,
    alice: AuthResponse,
    _auth_dir: tempfile::TempDir,
}

impl World {
    async fn start() -> anyhow::Result<World> {
        let dir = tempfile::tempdir()?;
        let mut config = chat_auth_service::Config::new(
            chat_common::db::sqlite_url(dir.path(), "auth.db"),
            Secret::new("test-jwt-secret"),
            Secret::new(TOKEN),
        );
        config.admin_usernames = vec!["root".into()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let auth_addr = listener.local_addr()?;
        let auth_stop = Shutdown::new();
        tokio::spawn(chat_auth_service::serve(
            config,
            listener,
            auth_stop.clone(),
        ));
        let presence = TestServer::start_configured(
            Arc::new(MemoryStore::new()),
            Backends::in_process(),
            |c| c.auth_addr = format!("http://{auth_addr}"),
        )
        .await?;
        Ok(World {
            presence,
            auth_stop,
            root: register(auth_addr, "root").await?,
            alice: register(auth_addr, "alice").await?,
            _auth_dir: dir,
        })
    }

    fn admin_with(&self, credentials: AdminCredentials) -> AdminClient {
        AdminServiceClient::with_interceptor(self.presence.channel.clone(), credentials)
    }

    fn admin_as(&self, who: &AuthResponse) -> AdminClient {
        self.admin_with(
            AdminCredentials::new(Some(TOKEN), Some(who.access_token.as_str()))
                .expect("test tokens are ASCII"),
        )
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.presence.stop().await?;
        self.auth_stop.cancel();
        Ok(())
    }
}

/// Registers `name`, retrying while auth-service is still starting.
async fn register(addr: SocketAddr, name: &str) -> anyhow::Result<AuthResponse> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
    let mut client =
        AuthServiceClient::with_interceptor(channel, ServiceAuth::new(Secret::new(TOKEN))?);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let request = RegisterRequest {
            username: name.into(),
            password: "correct horse".into(),
            display_name: None,
        };
        match client.register(request).await {
            Ok(reply) => return Ok(reply.into_inner()),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => return Err(status).with_context(|| format!("registering {name}")),
        }
    }
}

fn refusal<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
) -> anyhow::Result<(Code, ErrorCode, String)> {
    match result {
        Ok(value) => anyhow::bail!("expected a refusal, got {value:?}"),
        Err(s) => Ok((s.code(), ErrorCode::from_status(&s), s.message().to_owned())),
    }
}

#[tokio::test]
async fn only_an_admin_with_the_service_credential_is_served() -> anyhow::Result<()> {
    let world = World::start().await?;
    world.presence.connect("u1", "c1", "gw-b", &[]).await?;
    world.presence.connect("u1", "c2", "gw-a", &[]).await?;
    world.presence.connect("u1", "c3", "gw-b", &[]).await?;

    let no_service_token = world.admin_with(AdminCredentials::new(
        None,
        Some(world.root.access_token.as_str()),
    )?);
    assert_eq!(
        refusal(
            no_service_token
                .clone()
                .list_online(pb::ListOnlineRequest {})
                .await
        )?,
        (
            Code::Unauthenticated,
            ErrorCode::Unauthorized,
            "missing or invalid service credential".into()
        )
    );
    let no_bearer = world.admin_with(AdminCredentials::new(Some(TOKEN), None)?);
    assert_eq!(
        refusal(
            no_bearer
                .clone()
                .list_online(pb::ListOnlineRequest {})
                .await
        )?,
        (
            Code::Unauthenticated,
            ErrorCode::Unauthorized,
            chat_common::admin::NO_BEARER.into()
        )
    );
    let normal = world
        .admin_as(&world.alice)
        .list_notifications(pb::ListNotificationsRequest {
            user_id: "u1".into(),
            include_delivered: true,
        })
        .await;
    assert_eq!(
        refusal(normal)?,
        (
            Code::PermissionDenied,
            ErrorCode::Forbidden,
            "the admin role is required".into()
        )
    );

    let online = world
        .admin_as(&world.root)
        .list_online(pb::ListOnlineRequest {})
        .await?
        .into_inner()
        .users;
    assert_eq!(
        online,
        [pb::OnlineUser {
            user_id: "u1".into(),
            gateway_ids: strings(&["gw-a", "gw-b"]),
            connections: 3,
            gateways: vec![
                pb::GatewayConnections {
                    gateway_id: "gw-a".into(),
                    connections: 1,
                },
                pb::GatewayConnections {
                    gateway_id: "gw-b".into(),
                    connections: 2,
                },
            ],
        }]
    );
    world.stop().await
}

#[tokio::test]
async fn an_admin_lists_a_users_notifications() -> anyhow::Result<()> {
    let world = World::start().await?;
    let event = Created {
        event_id: "e1",
        room: "r1",
        room_kind: chat_proto::message::v1::RoomKind::Dm,
        seq: 7,
        sender_id: "u-sender",
        sender_name: "Sender",
        recipient_ids: &["u-offline"],
    }
    .event();
    world.presence.publish_event(&event).await?;
    world
        .presence
        .wait_for_notifications("u-offline", 1)
        .await?;

    let mut admin = world.admin_as(&world.root);
    let pending = admin
        .list_notifications(pb::ListNotificationsRequest {
            user_id: "u-offline".into(),
            include_delivered: false,
        })
        .await?
        .into_inner()
        .notifications;
    let pending: Vec<pb::Notification> =
        pending.iter().map(comparable).collect::<Result<_, _>>()?;
    assert_eq!(
        pending,
        [expected_notification(
            "u-offline",
            pb::NotificationKind::Dm,
            "r1",
            7,
            "u-sender",
            "Sender"
        )]
    );
    let invalid = admin
        .list_notifications(pb::ListNotificationsRequest {
            user_id: String::new(),
            include_delivered: false,
        })
        .await;
    assert_eq!(
        refusal(invalid)?,
        (
            Code::InvalidArgument,
            ErrorCode::InvalidArgument,
            "user_id must be 1 to 256 bytes long".into()
        )
    );
    world.stop().await
}

#[tokio::test]
async fn the_admin_service_reports_health() -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let server = TestServer::start().await?;
    assert_eq!(
        chat_presence_service::ADMIN_SERVICE_NAME,
        "chat.presence.v1.AdminService"
    );
    let status = HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: chat_presence_service::ADMIN_SERVICE_NAME.into(),
        })
        .await?
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    server.stop().await
}
