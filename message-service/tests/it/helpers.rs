//! Starting the service, clients, identities, event observers.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chat_common::bus::BusMessage;
pub use chat_common::identity::Identity;
use chat_common::identity::ServiceAuth;
use chat_common::pubsub::{Subscriber, SubscriberEvent, channels};
use chat_common::{Backends, Secret, Shutdown};
use chat_message_service::Config;
use chat_proto::ErrorCode;
use chat_proto::events::v1::{ChatEvent, RoomEvent, UserEvent};
use chat_proto::message::v1 as pb;
use chat_proto::message::v1::message_service_client::MessageServiceClient;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const TOKEN: &str = "test-service-token";
const WAIT: Duration = Duration::from_secs(5);

pub type Client = MessageServiceClient<InterceptedService<Channel, ServiceAuth>>;

/// Which SQL backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Generates `mod NAME { sqlite, postgres }` tests calling `NAME(Db)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name($crate::helpers::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::$name($crate::helpers::Db::Postgres).await
            }
        }
    )*};
}

/// The PostgreSQL server tests create their databases on.
fn postgres_admin_url() -> String {
    std::env::var("MESSAGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A running service with its own database.
pub struct TestServer {
    pub backends: Backends,
    shutdown: Shutdown,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    channel: Channel,
    _dir: tempfile::TempDir,
    /// The database URL, for [`TestServer::replica`].
    url: String,
    /// The PostgreSQL database this server created and drops when stopped.
    postgres_db: Option<String>,
}

impl TestServer {
    pub async fn start(db: Db) -> anyhow::Result<TestServer> {
        TestServer::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: Db, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<TestServer> {
        let dir = tempfile::tempdir()?;
        let (url, postgres_db) = match db {
            Db::Sqlite => (chat_common::db::sqlite_url(dir.path(), "message.db"), None),
            Db::Postgres => {
                let name = format!("msgtest_{}", uuid::Uuid::new_v4().simple());
                admin_execute(&format!("CREATE DATABASE {name}")).await?;
                (format!("{}/{name}", postgres_admin_url()), Some(name))
            }
        };
        TestServer::launch(dir, url, postgres_db, tweak).await
    }

    /// A second server on this one's database, as another replica would be
    /// (its own in-process buses). The database stays with this server.
    pub async fn replica(&self) -> anyhow::Result<TestServer> {
        TestServer::launch(tempfile::tempdir()?, self.url.clone(), None, |_| {}).await
    }

    async fn launch(
        dir: tempfile::TempDir,
        url: String,
        postgres_db: Option<String>,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<TestServer> {
        let mut config = Config::new(url.clone(), Secret::new(TOKEN), Backends::in_process());
        tweak(&mut config);
        // The tweak may bring its own database or buses.
        let backends = config.backends.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(chat_message_service::serve(
            config,
            listener,
            shutdown.clone(),
        ));
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
        let server = TestServer {
            backends,
            shutdown,
            handle: Some(handle),
            channel,
            _dir: dir,
            url,
            postgres_db,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Waits until the server answers (migrations done).
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let request = tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            };
            if health.check(request).await.is_ok() {
                return Ok(());
            }
            if let Some(handle) = &self.handle
                && handle.is_finished()
            {
                anyhow::bail!("the server stopped during start-up");
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A client presenting the service credential.
    pub fn client(&self) -> anyhow::Result<Client> {
        let auth = ServiceAuth::new(Secret::new(TOKEN))?;
        Ok(MessageServiceClient::with_interceptor(
            self.channel.clone(),
            auth,
        ))
    }

    pub async fn api(&self) -> anyhow::Result<Api> {
        Ok(Api {
            client: self.client()?,
        })
    }

    /// Observes room and user channels.
    pub async fn events(&self) -> anyhow::Result<Events> {
        let (subscriber, rx) = self.backends.pubsub.subscriber().await?;
        Ok(Events { subscriber, rx })
    }

    /// Consumes every event the outbox relay publishes from now on.
    pub async fn bus(&self) -> anyhow::Result<Bus> {
        Bus::consume(&self.backends).await
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await??;
        }
        if let Some(name) = self.postgres_db.take() {
            admin_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
        }
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn admin_execute(statement: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let url = format!("{}/postgres", postgres_admin_url());
    let mut conn = sqlx::PgConnection::connect(&url).await.with_context(|| {
        format!("cannot reach PostgreSQL at {url} (set MESSAGE_TEST_POSTGRES_URL)")
    })?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// A test user: id `u-NAME`, username `NAME`, display name `NAME` capitalised.
pub fn user(name: &str) -> Identity {
    let mut display: Vec<char> = name.chars().collect();
    if let Some(first) = display.first_mut() {
        *first = first.to_ascii_uppercase();
    }
    Identity {
        user_id: format!("u-{name}"),
        username: name.to_owned(),
        display_name: display.into_iter().collect(),
    }
}

/// The protocol error code of a failed call (`None` when it succeeded).
pub fn code<T>(result: Result<T, tonic::Status>) -> Option<ErrorCode> {
    result.err().map(|s| ErrorCode::from_status(&s))
}

/// Short-hands for the calls tests set up with.
pub struct Api {
    pub client: Client,
}

impl Api {
    pub async fn create_room(
        &mut self,
        who: &Identity,
        name: &str,
        visibility: pb::Visibility,
    ) -> anyhow::Result<pb::Room> {
        let request = pb::CreateRoomRequest {
            name: name.to_owned(),
            visibility: visibility.into(),
        };
        Ok(self
            .client
            .create_room(who.request(request))
            .await?
            .into_inner())
    }

    pub async fn public_room(
        &mut self,
        owner: &Identity,
        members: &[&Identity],
    ) -> anyhow::Result<pb::Room> {
        let room = self
            .create_room(owner, "lobby", pb::Visibility::Public)
            .await?;
        for member in members {
            self.join(member, &room.id).await?;
        }
        Ok(room)
    }

    pub async fn join(&mut self, who: &Identity, room: &str) -> anyhow::Result<pb::Room> {
        let request = pb::JoinRoomRequest {
            room: room.to_owned(),
        };
        Ok(self
            .client
            .join_room(who.request(request))
            .await?
            .into_inner())
    }

    pub async fn send(
        &mut self,
        who: &Identity,
        room: &str,
        text: &str,
        client_msg_id: &str,
    ) -> Result<pb::SendMessageResponse, tonic::Status> {
        let request = send_request(room, text, client_msg_id);
        Ok(self
            .client
            .send_message(who.request(request))
            .await?
            .into_inner())
    }

    pub async fn send_ok(
        &mut self,
        who: &Identity,
        room: &str,
        text: &str,
    ) -> anyhow::Result<pb::Message> {
        let cmid = uuid::Uuid::new_v4().to_string();
        self.send(who, room, text, &cmid)
            .await?
            .message
            .context("no message in the reply")
    }

    pub async fn moderate(
        &mut self,
        who: &Identity,
        room: &str,
        action: pb::ModerationAction,
        target: &Identity,
        duration_s: Option<i64>,
    ) -> Result<pb::ModerateResponse, tonic::Status> {
        let request = pb::ModerateRequest {
            room: room.to_owned(),
            action: action.into(),
            user_id: target.user_id.clone(),
            duration_s,
        };
        Ok(self
            .client
            .moderate(who.request(request))
            .await?
            .into_inner())
    }

    pub async fn members(
        &mut self,
        who: &Identity,
        room: &str,
    ) -> Result<Vec<pb::Member>, tonic::Status> {
        let request = pb::ListMembersRequest {
            room: room.to_owned(),
        };
        Ok(self
            .client
            .list_members(who.request(request))
            .await?
            .into_inner()
            .members)
    }

    pub async fn my_rooms(&mut self, who: &Identity) -> anyhow::Result<Vec<pb::MyRoom>> {
        Ok(self
            .client
            .list_my_rooms(who.request(pb::ListMyRoomsRequest {}))
            .await?
            .into_inner()
            .rooms)
    }

    pub async fn history(
        &mut self,
        who: &Identity,
        room: &str,
        before: Option<i64>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<pb::HistoryResponse, tonic::Status> {
        let request = pb::HistoryRequest {
            room: room.to_owned(),
            before,
            after,
            limit,
        };
        Ok(self
            .client
            .history(who.request(request))
            .await?
            .into_inner())
    }
}

pub fn send_request(room: &str, text: &str, client_msg_id: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        room: room.to_owned(),
        text: text.to_owned(),
        client_msg_id: client_msg_id.to_owned(),
        reply_to: None,
        attachment_id: None,
    }
}

/// A pub/sub subscriber for tests.
pub struct Events {
    subscriber: Box<dyn Subscriber>,
    rx: mpsc::Receiver<SubscriberEvent>,
}

impl Events {
    pub async fn watch_room(&self, room: &str) -> anyhow::Result<()> {
        Ok(self.subscriber.subscribe(&channels::room(room)).await?)
    }

    pub async fn watch_user(&self, who: &Identity) -> anyhow::Result<()> {
        Ok(self
            .subscriber
            .subscribe(&channels::user(&who.user_id))
            .await?)
    }

    async fn next_raw(&mut self) -> anyhow::Result<(String, Bytes)> {
        loop {
            match tokio::time::timeout(WAIT, self.rx.recv()).await {
                Err(_) => anyhow::bail!("no event within {WAIT:?}"),
                Ok(None) => anyhow::bail!("subscriber closed"),
                Ok(Some(SubscriberEvent::Message { channel, payload })) => {
                    return Ok((channel.to_string(), payload));
                }
                Ok(Some(SubscriberEvent::Resubscribed)) => {}
            }
        }
    }

    pub async fn room_event(&mut self) -> anyhow::Result<RoomEvent> {
        let (channel, payload) = self.next_raw().await?;
        anyhow::ensure!(
            channel.starts_with("room:"),
            "expected a room event, got one on {channel}"
        );
        Ok(RoomEvent::decode(payload)?)
    }

    pub async fn user_event(&mut self) -> anyhow::Result<UserEvent> {
        let (channel, payload) = self.next_raw().await?;
        anyhow::ensure!(
            channel.starts_with("user:"),
            "expected a user event, got one on {channel}"
        );
        Ok(UserEvent::decode(payload)?)
    }

    /// Asserts that nothing arrives for a while.
    pub async fn assert_quiet(&mut self) -> anyhow::Result<()> {
        match tokio::time::timeout(Duration::from_millis(200), self.rx.recv()).await {
            Err(_) => Ok(()),
            Ok(event) => anyhow::bail!("unexpected event {event:?}"),
        }
    }
}

/// A consumer of the event bus.
pub struct Bus {
    rx: mpsc::Receiver<chat_common::bus::Delivery>,
}

impl Bus {
    /// Consumes every event published on `backends` from now on.
    pub async fn consume(backends: &Backends) -> anyhow::Result<Bus> {
        let rx = backends.bus.consume("test", &["#"]).await?;
        Ok(Bus { rx })
    }

    pub async fn next(&mut self) -> anyhow::Result<(BusMessage, ChatEvent)> {
        let delivery = tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .context("no bus event in time")?
            .context("bus closed")?;
        let message = delivery.message.clone();
        delivery.ack().await?;
        let event = ChatEvent::decode(message.payload.clone())?;
        Ok((message, event))
    }

    pub async fn assert_quiet(&mut self) -> anyhow::Result<()> {
        match tokio::time::timeout(Duration::from_millis(300), self.rx.recv()).await {
            Err(_) => Ok(()),
            Ok(delivery) => anyhow::bail!("unexpected bus event {:?}", delivery.map(|d| d.message)),
        }
    }
}
