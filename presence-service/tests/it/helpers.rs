//! Starting the service on port 0 and observing what it publishes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use chat_common::bus::BusMessage;
use chat_common::identity::ServiceAuth;
use chat_common::pubsub::{Subscriber, SubscriberEvent};
use chat_common::{Backends, Secret, Shutdown};
use chat_presence_service::Config;
use chat_presence_service::store::{MemoryStore, PresenceStore};
use chat_proto::events::v1 as ev;
use chat_proto::message::v1::{Message, RoomKind};
use chat_proto::presence::v1 as pb;
use chat_proto::presence::v1::presence_service_client::PresenceServiceClient;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const TOKEN: &str = "test-service-token";
/// Longest a test waits for something that should happen.
pub const DEADLINE: Duration = Duration::from_secs(5);

pub type Client = PresenceServiceClient<InterceptedService<Channel, ServiceAuth>>;

pub struct TestServer {
    pub addr: SocketAddr,
    /// The buses the service runs on, to observe and feed it.
    pub backends: Backends,
    pub client: Client,
    pub channel: Channel,
    shutdown: Shutdown,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> anyhow::Result<TestServer> {
        TestServer::start_with(Duration::from_secs(30), Duration::from_secs(1)).await
    }

    pub async fn start_with(ttl: Duration, sweep: Duration) -> anyhow::Result<TestServer> {
        TestServer::start_with_store(
            ttl,
            sweep,
            Arc::new(MemoryStore::new()),
            Backends::in_process(),
        )
        .await
    }

    /// A replica on `store` and `backends`, which several replicas may share.
    pub async fn start_with_store(
        ttl: Duration,
        sweep: Duration,
        store: Arc<dyn PresenceStore>,
        backends: Backends,
    ) -> anyhow::Result<TestServer> {
        TestServer::start_configured(store, backends, |config| {
            config.connection_ttl = ttl;
            config.sweep_interval = sweep;
        })
        .await
    }

    /// A server on `store` and `backends` with `tweak` applied to the
    /// default configuration.
    pub async fn start_configured(
        store: Arc<dyn PresenceStore>,
        backends: Backends,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<TestServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut config = Config::new(Secret::new(TOKEN), backends.clone());
        tweak(&mut config);
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(chat_presence_service::serve_with_store(
            config,
            store,
            listener,
            shutdown.clone(),
        ));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await
            .context("connect to presence-service")?;
        let mut client = PresenceServiceClient::with_interceptor(
            channel.clone(),
            ServiceAuth::new(Secret::new(TOKEN))?,
        );
        // Answered only once serving, hence after the bus consumer subscribed.
        client
            .list_online(pb::ListOnlineRequest {})
            .await
            .context("first call")?;
        Ok(TestServer {
            addr,
            backends,
            client,
            channel,
            shutdown,
            handle: Some(handle),
        })
    }

    /// Cancels shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let handle = self.handle.take().context("already stopped")?;
        tokio::time::timeout(DEADLINE, handle)
            .await
            .context("serve did not return after shutdown")??
    }

    pub async fn connect(
        &self,
        user_id: &str,
        connection_id: &str,
        gateway_id: &str,
        room_ids: &[&str],
    ) -> anyhow::Result<pb::AddConnectionResponse> {
        let response = self
            .client
            .clone()
            .add_connection(pb::AddConnectionRequest {
                user_id: user_id.into(),
                connection_id: connection_id.into(),
                gateway_id: gateway_id.into(),
                room_ids: strings(room_ids),
            })
            .await?;
        Ok(response.into_inner())
    }

    pub async fn disconnect(
        &self,
        user_id: &str,
        connection_id: &str,
    ) -> anyhow::Result<pb::RemoveConnectionResponse> {
        let response = self
            .client
            .clone()
            .remove_connection(pb::RemoveConnectionRequest {
                user_id: user_id.into(),
                connection_id: connection_id.into(),
            })
            .await?;
        Ok(response.into_inner())
    }

    pub async fn presence(&self, user_ids: &[&str]) -> anyhow::Result<Vec<pb::UserPresence>> {
        let response = self
            .client
            .clone()
            .get_presence(pb::GetPresenceRequest {
                user_ids: strings(user_ids),
            })
            .await?;
        Ok(response.into_inner().users)
    }

    pub async fn heartbeat(&self, gateway_id: &str, ids: &[&str]) -> anyhow::Result<Vec<String>> {
        let response = self
            .client
            .clone()
            .heartbeat(pb::HeartbeatRequest {
                gateway_id: gateway_id.into(),
                connection_ids: strings(ids),
            })
            .await?;
        Ok(response.into_inner().unknown_connection_ids)
    }

    pub async fn notifications(
        &self,
        user_id: &str,
        include_delivered: bool,
    ) -> anyhow::Result<Vec<pb::Notification>> {
        let response = self
            .client
            .clone()
            .list_notifications(pb::ListNotificationsRequest {
                user_id: user_id.into(),
                include_delivered,
            })
            .await?;
        Ok(response.into_inner().notifications)
    }

    /// Publishes an event on the bus as the outbox relay would.
    pub async fn publish_event(&self, event: &ev::ChatEvent) -> anyhow::Result<()> {
        self.publish_raw(&event.event_id, Bytes::from(event.encode_to_vec()))
            .await
    }

    pub async fn publish_raw(&self, event_id: &str, payload: Bytes) -> anyhow::Result<()> {
        self.backends
            .bus
            .publish(BusMessage {
                routing_key: "message.created".into(),
                event_id: event_id.into(),
                traceparent: None,
                payload,
            })
            .await?;
        Ok(())
    }

    /// Waits until `user_id` has `count` notifications, delivered or not.
    pub async fn wait_for_notifications(
        &self,
        user_id: &str,
        count: usize,
    ) -> anyhow::Result<Vec<pb::Notification>> {
        eventually(|| async move {
            let all = self.notifications(user_id, true).await?;
            Ok((all.len() >= count).then_some(all))
        })
        .await
        .with_context(|| format!("{count} notifications for {user_id}"))
    }

    pub async fn subscribe(&self, channels: &[&str]) -> anyhow::Result<Subscription> {
        let (subscriber, rx) = self.backends.pubsub.subscriber().await?;
        for channel in channels {
            subscriber.subscribe(channel).await?;
        }
        Ok(Subscription {
            _subscriber: subscriber,
            rx,
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What a test hears on pub/sub channels.
pub struct Subscription {
    /// Kept alive: dropping it unsubscribes.
    _subscriber: Box<dyn Subscriber>,
    rx: mpsc::Receiver<SubscriberEvent>,
}

impl Subscription {
    /// The next message, decoded as `T`, with its channel.
    pub async fn next<T: prost::Message + Default>(&mut self) -> anyhow::Result<(String, T)> {
        loop {
            let event = tokio::time::timeout(DEADLINE, self.rx.recv())
                .await
                .context("no pub/sub message in time")?
                .context("subscription closed")?;
            if let SubscriberEvent::Message { channel, payload } = event {
                return Ok((channel.to_string(), T::decode(payload)?));
            }
        }
    }

    /// Fails if a message arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) -> anyhow::Result<()> {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Err(_) => Ok(()),
            Ok(None) => bail!("subscription closed"),
            Ok(Some(event)) => bail!("unexpected pub/sub message: {event:?}"),
        }
    }
}

/// Polls `check` until it yields a value, for at most [`DEADLINE`].
pub async fn eventually<T, F, Fut>(mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("condition not met within {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A `message.created` event as message-service publishes it.
pub struct Created<'a> {
    pub event_id: &'a str,
    pub room: &'a str,
    pub room_kind: RoomKind,
    pub seq: i64,
    pub sender_id: &'a str,
    pub sender_name: &'a str,
    pub recipient_ids: &'a [&'a str],
}

impl Created<'_> {
    pub fn event(&self) -> ev::ChatEvent {
        ev::ChatEvent {
            event_id: self.event_id.into(),
            occurred_at: Some(chat_proto::to_timestamp(chrono::Utc::now())),
            room: self.room.into(),
            event: Some(ev::chat_event::Event::MessageCreated(Message {
                id: format!("m-{}", self.event_id),
                room: self.room.into(),
                seq: self.seq,
                sender_id: self.sender_id.into(),
                sender_name: self.sender_name.into(),
                text: "hello @someone".into(),
                client_msg_id: format!("c-{}", self.event_id),
                created_at: Some(chat_proto::to_timestamp(chrono::Utc::now())),
                ..Message::default()
            })),
            recipient_ids: strings(self.recipient_ids),
            room_kind: self.room_kind.into(),
        }
    }
}

/// The notification fields the service cannot choose freely (all but `id`
/// and `created_at`), for exact comparison.
pub fn expected_notification(
    user_id: &str,
    kind: pb::NotificationKind,
    room: &str,
    seq: i64,
    from: &str,
    from_name: &str,
) -> pb::Notification {
    pb::Notification {
        id: String::new(),
        user_id: user_id.into(),
        kind: kind.into(),
        room: room.into(),
        seq,
        from: from.into(),
        from_name: from_name.into(),
        created_at: None,
    }
}

/// `n` without `id` and `created_at`, after checking those are well formed:
/// a UUIDv7 and a time within the last minute.
pub fn comparable(n: &pb::Notification) -> anyhow::Result<pb::Notification> {
    let id = uuid::Uuid::parse_str(&n.id).context("notification id is a UUID")?;
    anyhow::ensure!(
        id.get_version_num() == 7,
        "notification id is a UUIDv7: {id}"
    );
    let created = n
        .created_at
        .as_ref()
        .and_then(chat_proto::from_timestamp)
        .context("notification has created_at")?;
    let age = chrono::Utc::now() - created;
    anyhow::ensure!(
        age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::minutes(1),
        "created_at {created} is not recent"
    );
    Ok(pb::Notification {
        id: String::new(),
        created_at: None,
        ..n.clone()
    })
}
