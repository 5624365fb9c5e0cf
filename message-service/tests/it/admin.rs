//! `chat.message.v1.AdminService` against a real auth-service: who may call
//! it, what an admin may do in rooms they are not a member of, and `Watch`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use chat_common::identity::ServiceAuth;
use chat_common::{Secret, Shutdown};
use chat_proto::ErrorCode;
use chat_proto::auth::v1::auth_service_client::AuthServiceClient;
use chat_proto::auth::v1::{AuthResponse, RegisterRequest};
use chat_proto::events::v1::{RoomEvent, room_event};
use chat_proto::message::v1 as pb;
use chat_proto::message::v1::admin_service_client::AdminServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::helpers::{Api, Db, Identity, TOKEN, TestServer};
use chat_proto::AdminCredentials;

const WAIT: Duration = Duration::from_secs(5);

type AdminClient = AdminServiceClient<InterceptedService<Channel, AdminCredentials>>;

/// auth-service with `root` as bootstrap admin, and message-service asking
/// it; `root` (admin), `alice` and `bob` are registered.
struct World {
    message: TestServer,
    auth_addr: SocketAddr,
    auth_stop: Shutdown,
    root: AuthResponse,
    alice: AuthResponse,
    bob: AuthResponse,
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
        let message =
            TestServer::start_with(Db::Sqlite, |c| c.auth_addr = format!("http://{auth_addr}"))
                .await?;
        Ok(World {
            message,
            auth_addr,
            auth_stop,
            root: register(auth_addr, "root").await?,
            alice: register(auth_addr, "alice").await?,
            bob: register(auth_addr, "bob").await?,
            _auth_dir: dir,
        })
    }

    fn admin_with(&self, credentials: AdminCredentials) -> AdminClient {
        AdminServiceClient::with_interceptor(self.message.channel(), credentials)
    }

    fn admin_as(&self, who: &AuthResponse) -> AdminClient {
        self.admin_with(
            AdminCredentials::new(Some(TOKEN), Some(who.access_token.as_str()))
                .expect("test tokens are ASCII"),
        )
    }

    fn admin(&self) -> AdminClient {
        self.admin_as(&self.root)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.message.stop().await?;
        self.auth_stop.cancel();
        Ok(())
    }
}

/// Registers `name`, retrying while auth-service is still starting.
async fn register(addr: SocketAddr, name: &str) -> anyhow::Result<AuthResponse> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
    let mut client =
        AuthServiceClient::with_interceptor(channel, ServiceAuth::new(Secret::new(TOKEN))?);
    let deadline = tokio::time::Instant::now() + WAIT;
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

fn identity(who: &AuthResponse) -> anyhow::Result<Identity> {
    let user = who.user.as_ref().context("no user")?;
    Ok(Identity {
        user_id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
    })
}

fn refusal<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
) -> anyhow::Result<(Code, ErrorCode, String)> {
    match result {
        Ok(value) => anyhow::bail!("expected a refusal, got {value:?}"),
        Err(s) => Ok((s.code(), ErrorCode::from_status(&s), s.message().to_owned())),
    }
}

fn list_rooms() -> pb::ListRoomsRequest {
    pb::ListRoomsRequest {
        after: String::new(),
        limit: 0,
    }
}

#[tokio::test]
async fn only_an_admin_with_the_service_credential_is_served() -> anyhow::Result<()> {
    let world = World::start().await?;
    let no_service_token = world.admin_with(AdminCredentials::new(
        None,
        Some(world.root.access_token.as_str()),
    )?);
    assert_eq!(
        refusal(no_service_token.clone().list_rooms(list_rooms()).await)?,
        (
            Code::Unauthenticated,
            ErrorCode::Unauthorized,
            "missing or invalid service credential".into()
        )
    );
    let no_bearer = world.admin_with(AdminCredentials::new(Some(TOKEN), None)?);
    assert_eq!(
        refusal(no_bearer.clone().list_rooms(list_rooms()).await)?,
        (
            Code::Unauthenticated,
            ErrorCode::Unauthorized,
            chat_common::admin::NO_BEARER.into()
        )
    );
    let forged = world.admin_with(AdminCredentials::new(
        Some(TOKEN),
        Some("forged.token.value"),
    )?);
    assert_eq!(
        refusal(forged.clone().list_rooms(list_rooms()).await)?,
        (
            Code::Unauthenticated,
            ErrorCode::Unauthorized,
            "invalid access token".into()
        )
    );
    assert_eq!(
        refusal(world.admin_as(&world.alice).list_rooms(list_rooms()).await)?,
        (
            Code::PermissionDenied,
            ErrorCode::Forbidden,
            "the admin role is required".into()
        )
    );
    let rooms = world.admin().list_rooms(list_rooms()).await?.into_inner();
    assert_eq!(rooms, pb::ListRoomsResponse::default());
    world.stop().await
}

#[tokio::test]
async fn an_admin_reads_and_manages_rooms_without_being_a_member() -> anyhow::Result<()> {
    let world = World::start().await?;
    let (alice, bob) = (identity(&world.alice)?, identity(&world.bob)?);
    let mut api: Api = world.message.api().await?;
    let private = api
        .create_room(&alice, "secret plans", pb::Visibility::Private)
        .await?;
    api.send_ok(&alice, &private.id, "first").await?;
    api.send_ok(&alice, &private.id, "second").await?;
    let mut admin = world.admin();

    let listed = admin.list_rooms(list_rooms()).await?.into_inner();
    let summary = |room: &pb::Room, last_seq: i64, members: u32| pb::RoomSummary {
        room: Some(pb::Room {
            last_seq,
            ..room.clone()
        }),
        member_count: members,
    };
    assert_eq!(listed.rooms, [summary(&private, 2, 1)]);
    let shown = admin
        .get_room(pb::GetRoomRequest {
            room: private.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(shown, summary(&private, 2, 1));
    let history = admin
        .history(pb::HistoryRequest {
            room: private.id.clone(),
            before: None,
            after: None,
            limit: 0,
        })
        .await?
        .into_inner();
    let texts: Vec<&str> = history.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!((texts, history.has_more), (vec!["first", "second"], false));

    // Adding looks the user's names up in auth-service.
    let added = admin
        .add_member(pb::AdminAddMemberRequest {
            room: private.id.clone(),
            user_id: bob.user_id.clone(),
        })
        .await?
        .into_inner()
        .member
        .context("no member")?;
    assert_eq!(
        (
            added.user_id.as_str(),
            added.username.as_str(),
            added.role()
        ),
        (bob.user_id.as_str(), "bob", pb::Role::Member)
    );
    let again = admin
        .add_member(pb::AdminAddMemberRequest {
            room: private.id.clone(),
            user_id: bob.user_id.clone(),
        })
        .await;
    assert_eq!(
        refusal(again)?,
        (
            Code::AlreadyExists,
            ErrorCode::Conflict,
            "the user is already a member".into()
        )
    );
    let unknown = admin
        .add_member(pb::AdminAddMemberRequest {
            room: private.id.clone(),
            user_id: uuid::Uuid::now_v7().to_string(),
        })
        .await;
    assert_eq!(
        refusal(unknown)?,
        (Code::NotFound, ErrorCode::NotFound, "user not found".into())
    );
    let members = admin
        .list_members(pb::ListMembersRequest {
            room: private.id.clone(),
        })
        .await?
        .into_inner()
        .members;
    let listed: Vec<(&str, pb::Role)> = members
        .iter()
        .map(|m| (m.username.as_str(), m.role()))
        .collect();
    assert_eq!(
        listed,
        [("alice", pb::Role::Owner), ("bob", pb::Role::Member)]
    );

    // Moderation with the owner's power, but never on the owner.
    let moderate = |action: pb::ModerationAction, target: &Identity| pb::ModerateRequest {
        room: private.id.clone(),
        action: action.into(),
        user_id: target.user_id.clone(),
        duration_s: None,
    };
    admin
        .moderate(moderate(pb::ModerationAction::Promote, &bob))
        .await?;
    admin
        .moderate(moderate(pb::ModerationAction::Mute, &bob))
        .await?;
    let muted = api.send(&bob, &private.id, "hello", "m1").await;
    assert_eq!(
        muted.err().map(|s| ErrorCode::from_status(&s)),
        Some(ErrorCode::Muted)
    );
    assert_eq!(
        refusal(
            admin
                .moderate(moderate(pb::ModerationAction::Kick, &alice))
                .await
        )?,
        (
            Code::PermissionDenied,
            ErrorCode::Forbidden,
            "the owner cannot be moderated".into()
        )
    );
    admin
        .moderate(moderate(pb::ModerationAction::Kick, &bob))
        .await?;
    let members = api.members(&alice, &private.id).await?;
    assert_eq!(members.len(), 1);

    let missing = admin
        .get_room(pb::GetRoomRequest {
            room: "no-such-room".into(),
        })
        .await;
    assert_eq!(
        refusal(missing)?,
        (Code::NotFound, ErrorCode::NotFound, "room not found".into())
    );
    world.stop().await
}

#[tokio::test]
async fn an_admin_creates_rooms_for_themselves_or_another_owner() -> anyhow::Result<()> {
    let world = World::start().await?;
    let (root, alice) = (identity(&world.root)?, identity(&world.alice)?);
    let mut admin = world.admin();
    let own = admin
        .create_room(pb::AdminCreateRoomRequest {
            name: "ops".into(),
            visibility: pb::Visibility::Private.into(),
            owner_id: None,
        })
        .await?
        .into_inner();
    let room = own.room.clone().context("no room")?;
    assert_eq!(
        (
            room.name.as_str(),
            room.owner_id.as_str(),
            room.visibility(),
            own.member_count
        ),
        ("ops", root.user_id.as_str(), pb::Visibility::Private, 1)
    );
    let for_alice = admin
        .create_room(pb::AdminCreateRoomRequest {
            name: "alice's".into(),
            visibility: pb::Visibility::Public.into(),
            owner_id: Some(alice.user_id.clone()),
        })
        .await?
        .into_inner()
        .room
        .context("no room")?;
    assert_eq!(for_alice.owner_id, alice.user_id);
    let mine = world.message.api().await?.my_rooms(&alice).await?;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].role(), pb::Role::Owner);
    let ghost = admin
        .create_room(pb::AdminCreateRoomRequest {
            name: "x".into(),
            visibility: pb::Visibility::Public.into(),
            owner_id: Some("ghost".into()),
        })
        .await;
    assert_eq!(
        refusal(ghost)?,
        (Code::NotFound, ErrorCode::NotFound, "user not found".into())
    );

    // Pages of one room each, in creation order.
    let first = admin
        .list_rooms(pb::ListRoomsRequest {
            after: String::new(),
            limit: 1,
        })
        .await?
        .into_inner();
    assert_eq!(first.rooms.len(), 1);
    assert_eq!(first.next_after, room.id);
    let second = admin
        .list_rooms(pb::ListRoomsRequest {
            after: first.next_after.clone(),
            limit: 1,
        })
        .await?
        .into_inner();
    let ids: Vec<String> = second
        .rooms
        .iter()
        .filter_map(|r| r.room.as_ref().map(|r| r.id.clone()))
        .collect();
    assert_eq!(
        (ids, second.next_after),
        (vec![for_alice.id], String::new())
    );
    world.stop().await
}

async fn next_event(stream: &mut tonic::Streaming<RoomEvent>) -> anyhow::Result<room_event::Event> {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .context("no event in time")??
        .context("the stream ended")?
        .event
        .context("an empty event")
}

fn created_seq(event: &room_event::Event) -> Option<(i64, &str)> {
    match event {
        room_event::Event::MessageCreated(m) => Some((m.seq, m.text.as_str())),
        _ => None,
    }
}

#[tokio::test]
async fn watch_replays_then_follows_live_in_seq_order() -> anyhow::Result<()> {
    let world = World::start().await?;
    let alice = identity(&world.alice)?;
    let mut api = world.message.api().await?;
    let room = api
        .create_room(&alice, "watched", pb::Visibility::Private)
        .await?;
    for text in ["one", "two", "three"] {
        api.send_ok(&alice, &room.id, text).await?;
    }
    let mut stream = world
        .admin()
        .watch(pb::WatchRequest {
            room: room.id.clone(),
            after: Some(1),
        })
        .await?
        .into_inner();
    assert_eq!(
        created_seq(&next_event(&mut stream).await?),
        Some((2, "two"))
    );
    assert_eq!(
        created_seq(&next_event(&mut stream).await?),
        Some((3, "three"))
    );

    let four = api.send_ok(&alice, &room.id, "four").await?;
    assert_eq!(
        created_seq(&next_event(&mut stream).await?),
        Some((4, "four"))
    );
    let edit = pb::EditMessageRequest {
        room: room.id.clone(),
        seq: four.seq,
        text: "four!".into(),
    };
    api.client.edit_message(alice.request(edit)).await?;
    match next_event(&mut stream).await? {
        room_event::Event::MessageEdited(m) => assert_eq!((m.seq, m.text.as_str()), (4, "four!")),
        other => anyhow::bail!("expected an edit, got {other:?}"),
    }

    // Without `after`, only what happens from now on.
    let mut live = world
        .admin()
        .watch(pb::WatchRequest {
            room: room.id.clone(),
            after: None,
        })
        .await?
        .into_inner();
    api.send_ok(&alice, &room.id, "five").await?;
    assert_eq!(
        created_seq(&next_event(&mut live).await?),
        Some((5, "five"))
    );
    assert_eq!(
        created_seq(&next_event(&mut stream).await?),
        Some((5, "five"))
    );

    let unknown = world
        .admin()
        .watch(pb::WatchRequest {
            room: "no-such-room".into(),
            after: None,
        })
        .await;
    assert_eq!(
        refusal(unknown.map(|_| ()))?,
        (Code::NotFound, ErrorCode::NotFound, "room not found".into())
    );
    let refused = world
        .admin_as(&world.alice)
        .watch(pb::WatchRequest {
            room: room.id.clone(),
            after: None,
        })
        .await;
    assert_eq!(refusal(refused.map(|_| ()))?.0, Code::PermissionDenied);
    world.stop().await
}

#[tokio::test]
async fn an_open_watch_ends_when_the_server_stops() -> anyhow::Result<()> {
    let world = World::start().await?;
    let alice = identity(&world.alice)?;
    let room = world
        .message
        .api()
        .await?
        .create_room(&alice, "r", pb::Visibility::Public)
        .await?;
    let mut stream = world
        .admin()
        .watch(pb::WatchRequest {
            room: room.id,
            after: None,
        })
        .await?
        .into_inner();
    // Graceful shutdown waits for open calls: it must end the watch.
    let stopped = tokio::spawn(world.stop());
    let ended = tokio::time::timeout(WAIT, stream.message())
        .await
        .context("the watch did not end")?;
    let status = ended.err().context("expected the stream to fail")?;
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unavailable, "message-service is shutting down")
    );
    tokio::time::timeout(WAIT, stopped)
        .await
        .context("the server did not stop")???;
    Ok(())
}

#[tokio::test]
async fn admin_calls_are_unavailable_while_auth_service_is_down() -> anyhow::Result<()> {
    let world = World::start().await?;
    world.auth_stop.cancel();
    // Wait for auth-service to be gone.
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(world.auth_addr)
        .await
        .is_ok()
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "auth-service still up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        refusal(world.admin().list_rooms(list_rooms()).await)?,
        (
            Code::Unavailable,
            ErrorCode::Unavailable,
            "auth-service is unreachable; cannot check the admin token".into()
        )
    );
    world.stop().await
}

#[tokio::test]
async fn the_admin_service_reports_health() -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let server = TestServer::start(Db::Sqlite).await?;
    assert_eq!(
        chat_message_service::ADMIN_SERVICE_NAME,
        "chat.message.v1.AdminService"
    );
    let status = HealthClient::new(server.channel())
        .check(HealthCheckRequest {
            service: chat_message_service::ADMIN_SERVICE_NAME.into(),
        })
        .await?
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    server.stop().await
}
