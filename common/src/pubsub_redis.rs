//! The Redis backend of the pub/sub port, for the distributed mode.
//!
//! # Which Redis
//!
//! [`RedisPubSub::connect`] takes the value of `REDIS_URL`:
//!
//! - One URL (`redis://[user:password@]host:port[/db]`): a single Redis
//!   server (or a primary behind a failover proxy). Publishing uses
//!   `PUBLISH`, subscribers `SUBSCRIBE`.
//! - A comma-separated list of node URLs
//!   (`redis://10.0.0.1:7000,redis://10.0.0.2:7000,...`): a Redis Cluster,
//!   the list being the seed nodes. Publishing uses `SPUBLISH`, subscribers
//!   `SSUBSCRIBE` (sharded pub/sub, Redis 7 or newer), so each message only
//!   travels to the shard owning its channel instead of to every node. A
//!   cluster with one seed node is written with a trailing comma
//!   (`redis://10.0.0.1:7000,`).
//!
//! Every connection speaks RESP3 whatever the URL says (`?protocol=` is
//! overridden): subscribers receive messages as RESP3 pushes on a connection
//! that can still answer ordinary commands (`PING`, `CLIENT ID`), which is
//! what lets them health-check themselves. So Redis 6 or newer is needed.
//!
//! # Delivery
//!
//! Live delivery is at-most-once, as the port promises: messages published
//! while a subscriber reconnects are lost, and the subscriber reports
//! [`SubscriberEvent::Resubscribed`] once every wanted channel is subscribed
//! again, so that clients `resume` and repair the gap from the database.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushInfo,
    PushKind, RedisError, Value,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::namespace::Namespace;
use crate::pubsub::{PubSub, PubSubError, SUBSCRIBER_QUEUE, Subscriber, SubscriberEvent};

/// How long establishing one connection may take. Short, so that a service
/// pointed at an unreachable Redis fails at start within seconds instead of
/// hanging, and so that one reconnect attempt cannot stall a subscriber.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one command may wait for its reply. A publish is on the path of
/// a user's send (after commit), so it must not hang when Redis does.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The most a publish may take in all, reconnect attempts included: the
/// caller is answering a user's send, and live fan-out is best effort.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// How often an idle subscriber pings its connection. A connection that
/// died without a TCP reset (host gone, network partition) delivers
/// nothing and reports nothing; only a command that times out reveals it.
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(15);

/// Reconnect back-off of a subscriber: starts here, doubles per failed
/// attempt, and is capped at [`BACKOFF_MAX`]; each wait is jittered so that
/// many gateway replicas do not stampede a Redis that just came back.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How many SUBSCRIBE commands a reconnecting subscriber keeps in flight, so
/// that resubscribing thousands of rooms takes a few round trips, not
/// thousands.
const RESUBSCRIBE_CONCURRENCY: usize = 64;

/// How many subscribe/unsubscribe requests may wait for a subscriber's task.
const COMMAND_QUEUE: usize = 256;

/// Pub/sub over Redis (one server, or a Redis Cluster with sharded pub/sub).
///
/// Publishing goes through one shared, self-reconnecting connection; each
/// [`PubSub::subscriber`] gets its own connection and task (see
/// [`RedisSubscriber`]).
pub struct RedisPubSub {
    target: Target,
    publisher: Publisher,
    /// The URL(s) with any password masked: safe for logs and `Debug`.
    description: Arc<str>,
    /// The deployment's namespace, before every channel name on Redis.
    channel_prefix: Arc<str>,
}

/// Where to connect; cloned into every subscriber task, which opens its own
/// connections from it.
#[derive(Clone)]
enum Target {
    Single(Client),
    Cluster(Vec<ConnectionInfo>),
}

enum Publisher {
    /// Reconnects by itself; a publish during an outage fails fast.
    Single(ConnectionManager),
    /// Reconnects to nodes and follows slot moves by itself.
    Cluster(ClusterConnection),
}

impl fmt::Debug for RedisPubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.target {
            Target::Single(_) => "single",
            Target::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisPubSub")
            .field("mode", &mode)
            .field("url", &self.description)
            .finish_non_exhaustive()
    }
}

impl RedisPubSub {
    /// Connects to the Redis named by `url` (see the module documentation
    /// for the URL rules) and checks that it answers, so that a
    /// misconfigured or unreachable Redis stops a service at start with a
    /// clear message instead of surfacing later as lost live events.
    /// Channels are named on Redis with `namespace`'s prefix, which
    /// subscribers never see.
    pub async fn connect(url: &str, namespace: &Namespace) -> Result<RedisPubSub, PubSubError> {
        let (target, description) = parse_target(url)?;
        let unreachable = |e: RedisError| {
            PubSubError::Unavailable(format!(
                "cannot connect to Redis at {description} (RESP3, Redis >= 6 needed): {e}"
            ))
        };
        let publisher = match &target {
            Target::Single(client) => {
                // Few quick retries: a publish must fail fast while Redis is
                // down (durability does not depend on it), and the next
                // publish triggers the next reconnect anyway.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                let manager = ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map_err(unreachable)?;
                Publisher::Single(manager)
            }
            Target::Cluster(nodes) => {
                let connection = cluster_builder(nodes)
                    .build()
                    .map_err(unreachable)?
                    .get_async_connection()
                    .await
                    .map_err(unreachable)?;
                Publisher::Cluster(connection)
            }
        };
        tracing::info!(redis = %description, "connected to Redis pub/sub");
        Ok(RedisPubSub {
            target,
            publisher,
            description,
            channel_prefix: Arc::from(namespace.channel_prefix()),
        })
    }

    /// Like [`PubSub::subscriber`], with the concrete subscriber type (which
    /// can tell its server-side client id).
    pub async fn redis_subscriber(
        &self,
    ) -> Result<(RedisSubscriber, mpsc::Receiver<SubscriberEvent>), PubSubError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        // Connect before returning, so that a subscriber is only handed out
        // when Redis is reachable; later outages are the task's business.
        let (connection, client_id) = open(&self.target, push_tx).await.map_err(|e| {
            PubSubError::Unavailable(format!(
                "cannot open a subscriber connection to Redis at {}: {e}",
                self.description
            ))
        })?;
        let (events_tx, events_rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        // Exported from the start at 0, so that `rate()` sees the first one
        // (installing first: this may run before the process's `serve`).
        crate::metrics::install();
        metrics::counter!(crate::metrics::REDIS_PUBSUB_RECONNECTS).increment(0);
        let shared_client_id = Arc::new(AtomicI64::new(client_id.unwrap_or(0)));
        let task = SubscriberTask {
            target: self.target.clone(),
            description: self.description.clone(),
            commands: commands_rx,
            events: events_tx,
            connection: Some(connection),
            pushes: push_rx,
            wanted: HashSet::new(),
            awaiting_unsubscribe: HashMap::new(),
            client_id: shared_client_id.clone(),
            channel_prefix: self.channel_prefix.clone(),
            backoff: BACKOFF_MIN,
            next_tick: Instant::now() + HEALTH_CHECK_EVERY,
            resubscribed_pending: false,
        };
        tokio::spawn(task.run());
        let subscriber = RedisSubscriber {
            commands: commands_tx,
            client_id: shared_client_id,
            channel_prefix: self.channel_prefix.clone(),
        };
        Ok((subscriber, events_rx))
    }
}

#[async_trait]
impl PubSub for RedisPubSub {
    /// Publishes with `PUBLISH` (single server) or `SPUBLISH` (cluster). An
    /// error means this event misses live fan-out; the message itself is
    /// already committed, so callers log it and carry on.
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), PubSubError> {
        let channel = &format!("{}{channel}", self.channel_prefix);
        let publish = async {
            match &self.publisher {
                Publisher::Single(manager) => {
                    let mut manager = manager.clone();
                    redis::cmd("PUBLISH")
                        .arg(channel)
                        .arg(payload.as_ref())
                        .query_async::<i64>(&mut manager)
                        .await
                }
                Publisher::Cluster(connection) => {
                    let mut connection = connection.clone();
                    redis::cmd("SPUBLISH")
                        .arg(channel)
                        .arg(payload.as_ref())
                        .query_async::<i64>(&mut connection)
                        .await
                }
            }
        };
        let failed = |why: String| {
            PubSubError::Unavailable(format!(
                "publish to {channel} on Redis at {} failed: {why}",
                self.description
            ))
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(_receivers)) => Ok(()),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed(format!("no answer within {PUBLISH_TIMEOUT:?}"))),
        }
    }

    async fn subscriber(
        &self,
    ) -> Result<(Box<dyn Subscriber>, mpsc::Receiver<SubscriberEvent>), PubSubError> {
        let (subscriber, events) = self.redis_subscriber().await?;
        Ok((Box::new(subscriber), events))
    }
}

/// The handle of one subscriber: its task owns a dedicated connection and
/// the set of wanted channels, and ends when this handle is dropped.
#[derive(Debug)]
pub struct RedisSubscriber {
    commands: mpsc::Sender<Command>,
    client_id: Arc<AtomicI64>,
    channel_prefix: Arc<str>,
}

impl RedisSubscriber {
    /// The server-side id (`CLIENT ID`) of the subscriber's current
    /// connection to a single Redis server, for matching it in `CLIENT LIST`
    /// or `CLIENT KILL ID`. `None` while disconnected, on a cluster (one
    /// connection per node), or when the server refused to tell.
    pub fn client_id(&self) -> Option<i64> {
        match self.client_id.load(Ordering::Relaxed) {
            id if id > 0 => Some(id),
            _ => None,
        }
    }

    async fn request(&self, command: impl FnOnce(Reply) -> Command) -> Result<(), PubSubError> {
        let gone = || PubSubError::Unavailable("Redis subscriber task has ended".to_owned());
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands
            .send(command(reply_tx))
            .await
            .map_err(|_| gone())?;
        reply_rx.await.map_err(|_| gone())?
    }
}

#[async_trait]
impl Subscriber for RedisSubscriber {
    /// Returns once Redis confirmed the subscription. On error (Redis
    /// unreachable, connection broken) the channel stays wanted: the task
    /// reconnects, subscribes it with all others and then reports
    /// [`SubscriberEvent::Resubscribed`].
    async fn subscribe(&self, channel: &str) -> Result<(), PubSubError> {
        let channel = format!("{}{channel}", self.channel_prefix);
        self.request(|reply| Command::Subscribe(channel, reply))
            .await
    }

    /// Stops delivery at once (messages still in flight from Redis for this
    /// channel are discarded). An error only means Redis could not be told;
    /// the channel is no longer wanted either way and is not subscribed
    /// again on reconnect.
    async fn unsubscribe(&self, channel: &str) -> Result<(), PubSubError> {
        let channel = format!("{}{channel}", self.channel_prefix);
        self.request(|reply| Command::Unsubscribe(channel, reply))
            .await
    }
}

type Reply = oneshot::Sender<Result<(), PubSubError>>;

enum Command {
    Subscribe(String, Reply),
    Unsubscribe(String, Reply),
}

/// A subscriber's connection. On a cluster, one `ClusterConnection` holds a
/// connection per node and routes each sharded (un)subscribe to the node
/// owning the channel's slot.
#[derive(Clone)]
enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn subscribe(&mut self, channel: &str) -> Result<(), RedisError> {
        match self {
            Connection::Single(c) => c.subscribe(channel).await,
            Connection::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), RedisError> {
        match self {
            Connection::Single(c) => c.unsubscribe(channel).await,
            Connection::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }

    /// How many channels the server holds subscribed for this connection
    /// (`sub=` of `CLIENT INFO`); `None` on a cluster, or where the server
    /// refuses `CLIENT INFO` (some proxies do).
    async fn subscription_count(&mut self) -> Result<Option<usize>, RedisError> {
        let Connection::Single(c) = self else {
            return Ok(None);
        };
        match redis::cmd("CLIENT")
            .arg("INFO")
            .query_async::<String>(c)
            .await
        {
            Ok(info) => Ok(info
                .split_ascii_whitespace()
                .find_map(|field| field.strip_prefix("sub="))
                .and_then(|n| n.parse().ok())),
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => Err(e),
            Err(_) => Ok(None),
        }
    }

    async fn ping(&mut self) -> Result<(), RedisError> {
        let ping = redis::cmd("PING");
        match self {
            Connection::Single(c) => ping.query_async::<Value>(c).await.map(drop),
            // Routed to every primary by the cluster client.
            Connection::Cluster(c) => ping.query_async::<Value>(c).await.map(drop),
        }
    }
}

/// Opens a subscriber connection whose pushes (messages, confirmations and
/// the library's disconnection notice) go to `pushes`, and asks a single
/// server for the connection's client id.
async fn open(
    target: &Target,
    pushes: mpsc::UnboundedSender<PushInfo>,
) -> Result<(Connection, Option<i64>), RedisError> {
    match target {
        Target::Single(client) => {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_push_sender(pushes);
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            // Diagnostics only: some proxies refuse CLIENT commands.
            let client_id = redis::cmd("CLIENT")
                .arg("ID")
                .query_async::<i64>(&mut connection)
                .await
                .ok();
            Ok((Connection::Single(connection), client_id))
        }
        Target::Cluster(nodes) => {
            let connection = cluster_builder(nodes)
                .push_sender(pushes)
                .build()?
                .get_async_connection()
                .await?;
            Ok((Connection::Cluster(connection), None))
        }
    }
}

fn cluster_builder(nodes: &[ConnectionInfo]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(nodes.to_vec())
        .use_protocol(ProtocolVersion::RESP3)
        .tcp_settings(tcp_settings())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        // The cluster client's own retries (redirects, reconnects) are
        // bounded so that a publish fails in seconds, not minutes.
        .retries(3)
}

/// The task behind one [`RedisSubscriber`]. The wanted set is the truth;
/// the connection is a disposable copy of it: on any sign of trouble the
/// connection is dropped and a new one subscribes every wanted channel.
struct SubscriberTask {
    target: Target,
    description: Arc<str>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<SubscriberEvent>,
    /// `None` while waiting to reconnect.
    connection: Option<Connection>,
    /// Pushes of the current connection only: each connection gets a fresh
    /// channel, so late pushes of a dropped connection are never read.
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    wanted: HashSet<String>,
    /// Unsubscribe confirmations still to come on the current connection,
    /// per channel, to tell them from the server dropping a wanted channel
    /// on its own (a cluster does that when a slot moves).
    awaiting_unsubscribe: HashMap<String, u32>,
    client_id: Arc<AtomicI64>,
    /// Stripped from channel names before delivery.
    channel_prefix: Arc<str>,
    backoff: Duration,
    /// Next health check when connected, next reconnect attempt otherwise.
    next_tick: Instant,
    /// `Resubscribed` could not be queued yet (queue full); it goes before
    /// any further message.
    resubscribed_pending: bool,
}

enum Step {
    Command(Command),
    Push(PushInfo),
    Tick,
    Stop,
}

impl SubscriberTask {
    async fn run(mut self) {
        loop {
            let step = tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => Step::Command(command),
                    // The handle was dropped.
                    None => Step::Stop,
                },
                Some(push) = self.pushes.recv() => Step::Push(push),
                () = tokio::time::sleep_until(self.next_tick) => Step::Tick,
                // Nobody reads the events any more.
                () = self.events.closed() => Step::Stop,
            };
            match step {
                Step::Command(Command::Subscribe(channel, reply)) => {
                    let result = self.subscribe(channel).await;
                    let _ = reply.send(result);
                }
                Step::Command(Command::Unsubscribe(channel, reply)) => {
                    let result = self.unsubscribe(channel).await;
                    let _ = reply.send(result);
                }
                Step::Push(push) => self.on_push(push),
                Step::Tick if self.connection.is_some() => self.health_check().await,
                Step::Tick => self.reconnect().await,
                Step::Stop => break,
            }
        }
        tracing::debug!(redis = %self.description, "Redis subscriber stopped");
    }

    async fn subscribe(&mut self, channel: String) -> Result<(), PubSubError> {
        // Wanted first: whatever happens next, a reconnect subscribes it.
        self.wanted.insert(channel.clone());
        let Some(connection) = self.connection.as_mut() else {
            return Err(PubSubError::Unavailable(format!(
                "not connected to Redis at {}; {channel} will be subscribed on reconnect",
                self.description
            )));
        };
        match connection.subscribe(&channel).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Without a confirmation we cannot know whether the server
                // holds the subscription: start over on a new connection.
                let message = format!("subscribing {channel} failed: {e}");
                self.connection_lost(&message);
                Err(PubSubError::Unavailable(format!(
                    "{message}; it will be subscribed on reconnect"
                )))
            }
        }
    }

    async fn unsubscribe(&mut self, channel: String) -> Result<(), PubSubError> {
        self.wanted.remove(&channel);
        let Some(connection) = self.connection.as_mut() else {
            // The next connection will simply not subscribe it.
            return Ok(());
        };
        *self
            .awaiting_unsubscribe
            .entry(channel.clone())
            .or_default() += 1;
        match connection.unsubscribe(&channel).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let message = format!("unsubscribing {channel} failed: {e}");
                self.connection_lost(&message);
                Err(PubSubError::Unavailable(message))
            }
        }
    }

    fn on_push(&mut self, push: PushInfo) {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let mut data = push.data.into_iter();
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                else {
                    tracing::warn!(redis = %self.description, "malformed pub/sub message ignored");
                    return;
                };
                let Ok(channel) = String::from_utf8(channel) else {
                    tracing::warn!(redis = %self.description, "message on a non-UTF-8 channel ignored");
                    return;
                };
                // Messages already on their way when the channel was
                // unsubscribed must not reach the consumer.
                if !self.wanted.contains(&channel) {
                    return;
                }
                let unprefixed = channel
                    .strip_prefix(&*self.channel_prefix)
                    .unwrap_or(&channel);
                self.deliver(SubscriberEvent::Message {
                    channel: Arc::from(unprefixed),
                    payload: Bytes::from(payload),
                });
            }
            PushKind::Disconnection => self.connection_lost("connection closed"),
            PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                let Some(Value::BulkString(channel)) = push.data.first() else {
                    return;
                };
                let channel = String::from_utf8_lossy(channel).into_owned();
                match self.awaiting_unsubscribe.get_mut(&channel) {
                    Some(count) if *count > 1 => *count -= 1,
                    Some(_) => {
                        self.awaiting_unsubscribe.remove(&channel);
                    }
                    // Not asked for: the server dropped the subscription
                    // (a cluster slot moved to another node).
                    None if self.wanted.contains(&channel) => {
                        self.connection_lost(&format!(
                            "server dropped the subscription of {channel}"
                        ));
                    }
                    None => {}
                }
            }
            // Confirmations of our own subscribes, and kinds we never ask for.
            _ => {}
        }
    }

    /// Queues an event for the consumer without ever waiting for it: a full
    /// queue drops the event (at-most-once; clients see the `seq` gap and
    /// resume), a closed one is noticed by the main loop.
    fn deliver(&mut self, event: SubscriberEvent) {
        if !self.flush_resubscribed() {
            tracing::warn!(redis = %self.description, "subscriber queue full, event dropped");
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            tracing::warn!(redis = %self.description, "subscriber queue full, event dropped");
        }
    }

    /// Queues a pending `Resubscribed`; false if the queue is still full.
    fn flush_resubscribed(&mut self) -> bool {
        if !self.resubscribed_pending {
            return true;
        }
        match self.events.try_send(SubscriberEvent::Resubscribed) {
            Err(mpsc::error::TrySendError::Full(_)) => false,
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {
                self.resubscribed_pending = false;
                true
            }
        }
    }

    async fn health_check(&mut self) {
        self.flush_resubscribed();
        self.next_tick = Instant::now() + HEALTH_CHECK_EVERY;
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        if let Err(e) = connection.ping().await {
            self.connection_lost(&format!("health check failed: {e}"));
            return;
        }
        // Commands run one at a time in this task, so with no unsubscribe
        // confirmation outstanding the server must hold exactly the wanted
        // channels. A connection that lost some (whatever the cause) starts
        // over: reconnecting subscribes them all and tells the consumer to
        // resync.
        if !self.awaiting_unsubscribe.is_empty() {
            return;
        }
        match connection.subscription_count().await {
            Ok(Some(held)) if held != self.wanted.len() => self.connection_lost(&format!(
                "the server holds {held} of the {} subscribed channels",
                self.wanted.len()
            )),
            Ok(_) => {}
            Err(e) => self.connection_lost(&format!("health check failed: {e}")),
        }
    }

    /// Drops the connection and schedules a reconnect. Idempotent: a
    /// disconnection notice after a failed command changes nothing.
    fn connection_lost(&mut self, why: &str) {
        if self.connection.take().is_none() {
            return;
        }
        tracing::warn!(
            redis = %self.description,
            channels = self.wanted.len(),
            "Redis subscriber connection lost ({why}); reconnecting"
        );
        self.client_id.store(0, Ordering::Relaxed);
        // A channel with no sender: nothing more is read from the old
        // connection.
        self.pushes = mpsc::unbounded_channel().1;
        self.awaiting_unsubscribe.clear();
        self.backoff = BACKOFF_MIN;
        self.next_tick = Instant::now() + jitter(self.backoff);
    }

    /// One reconnect attempt: a new connection that subscribes every wanted
    /// channel, then `Resubscribed`. On failure the next attempt waits twice
    /// as long (capped).
    async fn reconnect(&mut self) {
        match self.open_and_subscribe_all().await {
            Ok((connection, pushes, client_id)) => {
                tracing::info!(
                    redis = %self.description,
                    channels = self.wanted.len(),
                    "Redis subscriber reconnected and resubscribed"
                );
                metrics::counter!(crate::metrics::REDIS_PUBSUB_RECONNECTS).increment(1);
                self.connection = Some(connection);
                self.pushes = pushes;
                self.client_id
                    .store(client_id.unwrap_or(0), Ordering::Relaxed);
                self.backoff = BACKOFF_MIN;
                self.next_tick = Instant::now() + HEALTH_CHECK_EVERY;
                // Before any message of the new connection.
                self.resubscribed_pending = true;
                self.flush_resubscribed();
            }
            Err(e) => {
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                let wait = jitter(self.backoff);
                tracing::warn!(
                    redis = %self.description,
                    retry_in_ms = wait.as_millis() as u64,
                    "Redis subscriber reconnect failed: {e}"
                );
                self.next_tick = Instant::now() + wait;
            }
        }
    }

    async fn open_and_subscribe_all(
        &self,
    ) -> Result<(Connection, mpsc::UnboundedReceiver<PushInfo>, Option<i64>), RedisError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let (connection, client_id) = open(&self.target, push_tx).await?;
        // Owned names and connections: the futures must not borrow the
        // task (its future has to stay `Send` for every lifetime).
        let subscribes = self.wanted.iter().map(|channel| {
            let mut connection = connection.clone();
            let channel = channel.clone();
            async move { connection.subscribe(&channel).await }
        });
        futures::stream::iter(subscribes.collect::<Vec<_>>())
            .buffer_unordered(RESUBSCRIBE_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        // Every subscribe was confirmed; make sure the server agrees before
        // calling the connection good, or a channel could stay silent.
        let mut check = connection.clone();
        if let Some(held) = check.subscription_count().await?
            && held != self.wanted.len()
        {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "resubscribing incomplete",
                format!(
                    "the server holds {held} of the {} channels subscribed",
                    self.wanted.len()
                ),
            )));
        }
        Ok((connection, push_rx, client_id))
    }
}

/// A wait between half and all of `base`, so that subscribers that lost
/// Redis together do not all come back in the same instant.
fn jitter(base: Duration) -> Duration {
    base.mul_f64(rand::random_range(0.5..=1.0))
}

/// Parses `REDIS_URL` into a target and a description safe to log.
fn parse_target(url: &str) -> Result<(Target, Arc<str>), PubSubError> {
    let url = url.trim();
    if url.contains(',') {
        let nodes: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .collect();
        if nodes.is_empty() {
            return Err(PubSubError::Unavailable(
                "the Redis Cluster URL list names no node".to_owned(),
            ));
        }
        let description: Vec<String> = nodes.iter().map(|node| redact(node)).collect();
        let infos = nodes
            .iter()
            .zip(&description)
            .map(|(node, shown)| {
                node.into_connection_info()
                    .map(resp3)
                    .map_err(|e| invalid_url(shown, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            Target::Cluster(infos),
            Arc::from(format!("cluster {}", description.join(","))),
        ))
    } else {
        let description = redact(url);
        let info = url
            .into_connection_info()
            .map_err(|e| invalid_url(&description, e))?;
        let client = Client::open(resp3(info)).map_err(|e| invalid_url(&description, e))?;
        Ok((Target::Single(client), Arc::from(description)))
    }
}

fn invalid_url(shown: &str, e: RedisError) -> PubSubError {
    PubSubError::Unavailable(format!("invalid Redis URL {shown}: {e}"))
}

/// TCP settings for every Redis connection of the system. TCP_NODELAY:
/// commands are small writes, often several in flight, and Nagle's
/// algorithm would hold one back until the server's delayed ACK of the
/// previous (up to 40 ms on Linux), a delay every fan-out would carry.
pub fn tcp_settings() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

fn resp3(info: ConnectionInfo) -> ConnectionInfo {
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    info.set_redis_settings(settings)
        .set_tcp_settings(tcp_settings())
}

/// The URL without its password or query (which may carry one, as in
/// `redis+unix:///sock?pass=...`), for logs and errors.
fn redact(url: &str) -> String {
    let Some(mut parsed) = redis::parse_redis_url(url) else {
        return "<unparsable Redis URL>".to_owned();
    };
    if parsed.password().is_some() {
        // Cannot fail: a URL that has a password can have another one.
        let _ = parsed.set_password(Some("***"));
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_show_a_password() {
        assert_eq!(
            redact("redis://user:s3cret@localhost:6379/2"),
            "redis://user:***@localhost:6379/2"
        );
        assert_eq!(
            redact("redis+unix:///run/redis.sock?pass=s3cret"),
            "redis+unix:///run/redis.sock"
        );
        assert_eq!(redact("not a url s3cret"), "<unparsable Redis URL>");
    }

    #[test]
    fn a_comma_separated_list_is_a_cluster() -> Result<(), PubSubError> {
        let (target, description) =
            parse_target("redis://:pw@10.0.0.1:7000, redis://:pw@10.0.0.2:7000")?;
        assert!(matches!(target, Target::Cluster(ref nodes) if nodes.len() == 2));
        assert!(!description.contains("pw@"));
        let (target, _) = parse_target("redis://10.0.0.1:7000,")?;
        assert!(matches!(target, Target::Cluster(ref nodes) if nodes.len() == 1));
        let (target, _) = parse_target("redis://127.0.0.1:6379")?;
        assert!(matches!(target, Target::Single(_)));
        assert!(parse_target(",").is_err());
        Ok(())
    }
}
