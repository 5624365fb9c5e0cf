//! The RabbitMQ backend of the event-bus port.
//!
//! Events go to the durable topic exchange [`EXCHANGE`] as persistent
//! messages on a channel in confirm mode, so [`EventBus::publish`] returns
//! only once the broker has taken responsibility (the outbox relay marks a
//! row sent only after that). Consumers use manual acks: a message is removed
//! from its queue only when the handler calls [`Delivery::ack`]; anything
//! unacked when a connection ends is delivered again, with `redelivered` set.
//! That is the at-least-once contract; consumers de-duplicate on
//! [`BusMessage::event_id`].
//!
//! Losing RabbitMQ must delay events, never lose or wedge them: publishing
//! fails fast with [`BusError::Unavailable`] (the outbox keeps the row and
//! retries), the next publish reconnects, and consumers reconnect on their
//! own with back-off.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::{Mutex, mpsc};

use crate::bus::{Acker, BusError, BusMessage, Delivery, EXCHANGE, EventBus, SCHEMA_VERSION};
use crate::namespace::Namespace;
use crate::trace_context::TRACEPARENT;

/// Upper bound on every wait for the broker (connecting, declaring, a
/// publisher confirm): a broker that accepts TCP but never answers must not
/// hang the outbox relay or a service's start-up.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Unacked messages the broker may push to one consumer. Bounds the memory
/// a slow consumer holds and is also the forwarding channel's capacity, so
/// the channel never holds more than the broker lets us have.
const PREFETCH: u16 = 64;

/// Consumer reconnect back-off: starts here, doubles per failed attempt...
const BACKOFF_START: Duration = Duration::from_millis(100);
/// ...up to this ceiling, so a returning broker is noticed within seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Content type of every payload: an encoded `chat.events.v1.ChatEvent`.
const CONTENT_TYPE: &str = "application/x-protobuf";

/// Header carrying [`SCHEMA_VERSION`], so a consumer can tell payload
/// versions apart without decoding.
pub const SCHEMA_VERSION_HEADER: &str = "x-schema-version";

/// Header repeating the event id, for tools that show headers but not the
/// `message_id` property.
pub const EVENT_ID_HEADER: &str = "x-event-id";

/// AMQP delivery mode 2: the broker writes the message to disk (in a durable
/// queue), so it survives a broker restart.
const PERSISTENT: u8 = 2;

/// The event bus on RabbitMQ. Cheap to share behind an `Arc`; publishes may
/// run concurrently on the one confirm-mode channel.
pub struct RabbitBus {
    /// The AMQP URL as configured. It may hold credentials: never log it or
    /// put it in an error; use [`RabbitBus::endpoint`] instead.
    url: String,
    /// `host:port (vhost …)` of the broker, without credentials, for messages.
    endpoint: String,
    /// Unique per bus; prefixes the names of its connections.
    name: String,
    /// [`EXCHANGE`] in the deployment's namespace.
    exchange: ShortString,
    namespace: Namespace,
    /// The publishing session; `None` after an error, so the next publish
    /// reconnects. Held only while (re)connecting, not during a publish.
    publisher: Mutex<Option<Arc<Session>>>,
}

/// One connection with one channel. Dropping the last handle closes the
/// connection (lapin closes on drop), which makes the broker requeue every
/// message still unacked on it.
/// lapin is built without a TLS feature, and with none it opens a plain
/// socket for `amqps://` too. Refuse rather than send credentials and
/// events unencrypted to a broker the operator asked to reach over TLS.
fn refuse_unencrypted_amqps(url: &str) -> Result<(), BusError> {
    if url.trim_start().to_ascii_lowercase().starts_with("amqps:") {
        return Err(BusError::Unavailable(
            "amqps:// is not supported by this build (no TLS to RabbitMQ): use amqp:// on a trusted network".into(),
        ));
    }
    Ok(())
}

struct Session {
    /// Kept only to hold the connection open as long as the channel is used.
    _connection: Connection,
    channel: Channel,
}

impl RabbitBus {
    /// Connects to the broker at `url` (e.g. `amqp://user:pass@host:5672/%2f`)
    /// and declares the exchange. Fails, within [`BROKER_TIMEOUT`], when the
    /// broker is unreachable, so a misconfigured service stops at start-up
    /// with a clear message instead of queueing events nowhere.
    ///
    /// The exchange and every queue are named in `namespace`.
    pub async fn connect(url: &str, namespace: &Namespace) -> Result<RabbitBus, BusError> {
        refuse_unencrypted_amqps(url)?;
        let endpoint = redacted_endpoint(url);
        let name = format!(
            "chat event bus {}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let exchange = short(&namespace.amqp(EXCHANGE), "exchange name")?;
        let session = open_session(url, &endpoint, &format!("{name} publisher"), &exchange).await?;
        enable_confirms(&session).await?;
        // Exported from the start at 0, so that `rate()` sees the first one
        // (installing first: this may run before the process's `serve`).
        crate::metrics::install();
        for role in ["publisher", "consumer"] {
            metrics::counter!(crate::metrics::RABBITMQ_RECONNECTS, "role" => role).increment(0);
        }
        Ok(RabbitBus {
            url: url.to_owned(),
            endpoint,
            name,
            exchange,
            namespace: namespace.clone(),
            publisher: Mutex::new(Some(Arc::new(session))),
        })
    }

    /// Where the broker is, without credentials: safe to log.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Unique name of this bus. Its connections carry it in their
    /// `connection_name` (`<name> publisher`, `<name> consumer of <queue>`),
    /// so the broker's connection list shows which process holds what.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the queue `queue` and the messages in it, returning how many
    /// messages were dropped. For tests and operations tooling: services
    /// never delete their queues. Stop consuming the queue first (drop the
    /// receiver), or its consumer re-declares it on reconnect.
    pub async fn delete_queue(&self, queue: &str) -> Result<u32, BusError> {
        let queue = short(&self.namespace.amqp(queue), "queue name")?;
        let session = self.admin_session().await?;
        bounded(
            "deleting the queue",
            session
                .channel
                .queue_delete(queue, QueueDeleteOptions::default()),
        )
        .await
    }

    /// Deletes the namespace's exchange, e.g. when a test's namespace is
    /// torn down. Publishing or consuming again declares it anew.
    pub async fn delete_exchange(&self) -> Result<(), BusError> {
        let session = self.admin_session().await?;
        bounded(
            "deleting the exchange",
            session
                .channel
                .exchange_delete(self.exchange.clone(), ExchangeDeleteOptions::default()),
        )
        .await
    }

    async fn admin_session(&self) -> Result<Session, BusError> {
        let name = format!("{} admin", self.name);
        open_session(&self.url, &self.endpoint, &name, &self.exchange).await
    }

    /// The publishing session, reconnecting if there is none or its channel
    /// is no longer usable (e.g. after a broker restart).
    async fn publisher(&self) -> Result<Arc<Session>, BusError> {
        let mut current = self.publisher.lock().await;
        if let Some(session) = current.as_ref()
            && session.channel.status().connected()
        {
            return Ok(session.clone());
        }
        *current = None;
        let name = format!("{} publisher", self.name);
        let session = open_session(&self.url, &self.endpoint, &name, &self.exchange).await?;
        enable_confirms(&session).await?;
        // `connect` opened the first session: every one opened here replaces
        // a lost one.
        metrics::counter!(crate::metrics::RABBITMQ_RECONNECTS, "role" => "publisher").increment(1);
        let session = Arc::new(session);
        *current = Some(session.clone());
        Ok(session)
    }

    /// Forgets `failed` so the next publish reconnects, unless another
    /// publish already replaced it.
    async fn discard(&self, failed: &Arc<Session>) {
        let mut current = self.publisher.lock().await;
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, failed)) {
            *current = None;
        }
    }

    async fn publish_on(&self, session: &Session, message: &BusMessage) -> Result<(), BusError> {
        let routing_key = short(&message.routing_key, "routing key")?;
        let event_id = short(&message.event_id, "event id")?;
        let mut headers = FieldTable::default();
        headers.insert(
            SCHEMA_VERSION_HEADER.into(),
            AMQPValue::LongInt(i32::try_from(SCHEMA_VERSION).unwrap_or(i32::MAX)),
        );
        headers.insert(
            EVENT_ID_HEADER.into(),
            AMQPValue::LongString(LongString::from(message.event_id.as_bytes().to_vec())),
        );
        if let Some(traceparent) = &message.traceparent {
            headers.insert(
                TRACEPARENT.into(),
                AMQPValue::LongString(LongString::from(traceparent.as_bytes().to_vec())),
            );
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_message_id(event_id)
            .with_content_type(CONTENT_TYPE.into())
            .with_headers(headers);
        let confirm = bounded(
            "publishing",
            session.channel.basic_publish(
                self.exchange.clone(),
                routing_key,
                // Not mandatory: an event nobody is bound for is not an
                // error, as with the in-process bus.
                BasicPublishOptions::default(),
                &message.payload,
                properties,
            ),
        )
        .await?;
        match bounded("waiting for the publisher confirm", confirm).await? {
            Confirmation::Ack(_) => Ok(()),
            Confirmation::Nack(_) => Err(BusError::Unavailable(format!(
                "RabbitMQ at {} refused event {} (nack)",
                self.endpoint, message.event_id
            ))),
            // Cannot happen on a confirm-mode channel; without a confirm we
            // do not know the broker has the message.
            Confirmation::NotRequested => Err(BusError::Unavailable(
                "publisher confirms are not enabled on the channel".to_owned(),
            )),
        }
    }
}

#[async_trait]
impl EventBus for RabbitBus {
    async fn publish(&self, message: BusMessage) -> Result<(), BusError> {
        let session = self.publisher().await?;
        let result = self.publish_on(&session, &message).await;
        if result.is_err() {
            // The channel may be dead or wedged (a confirm that timed out);
            // a fresh one costs little, so never reuse a channel that failed.
            self.discard(&session).await;
        }
        result
    }

    async fn consume(
        &self,
        queue: &str,
        bindings: &[&str],
    ) -> Result<mpsc::Receiver<Delivery>, BusError> {
        let subscription = Subscription {
            name: format!("{} consumer of {queue}", self.name),
            url: self.url.clone(),
            endpoint: self.endpoint.clone(),
            exchange: self.exchange.clone(),
            queue: short(&self.namespace.amqp(queue), "queue name")?,
            bindings: bindings
                .iter()
                .map(|b| short(b, "binding pattern"))
                .collect::<Result<_, _>>()?,
        };
        // The first attempt runs here so a bad queue (e.g. declared before
        // with other arguments) or an unreachable broker is the caller's
        // error, not a log line.
        let (session, consumer) = subscription.start().await?;
        let (tx, rx) = mpsc::channel(usize::from(PREFETCH));
        tokio::spawn(subscription.run(tx, Arc::new(session), consumer));
        Ok(rx)
    }
}

/// What a consumer task needs to (re)establish its consumer.
struct Subscription {
    /// Connection name.
    name: String,
    url: String,
    endpoint: String,
    exchange: ShortString,
    queue: ShortString,
    bindings: Vec<ShortString>,
}

impl Subscription {
    /// Opens a session, declares and binds the queue, and starts consuming.
    async fn start(&self) -> Result<(Session, lapin::Consumer), BusError> {
        let session = open_session(&self.url, &self.endpoint, &self.name, &self.exchange).await?;
        let channel = &session.channel;
        bounded(
            "declaring the queue",
            channel.queue_declare(
                self.queue.clone(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        for binding in &self.bindings {
            bounded(
                "binding the queue",
                channel.queue_bind(
                    self.queue.clone(),
                    self.exchange.clone(),
                    binding.clone(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
        }
        bounded(
            "setting the prefetch",
            channel.basic_qos(PREFETCH, BasicQosOptions::default()),
        )
        .await?;
        let consumer = bounded(
            "starting the consumer",
            channel.basic_consume(
                self.queue.clone(),
                // Empty: the broker picks a unique consumer tag.
                ShortString::default(),
                // Manual acks: no_ack stays false.
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok((session, consumer))
    }

    /// Forwards deliveries into `tx` until the receiver is dropped,
    /// re-establishing the consumer with back-off whenever it ends (broker
    /// gone, connection lost, consumer cancelled by the broker).
    async fn run(
        self,
        tx: mpsc::Sender<Delivery>,
        session: Arc<Session>,
        consumer: lapin::Consumer,
    ) {
        let mut current = Some((session, consumer));
        let mut delay = BACKOFF_START;
        loop {
            if let Some((session, consumer)) = current.take() {
                if self.forward(&tx, session, consumer).await == Forwarded::ReceiverGone {
                    return;
                }
                tracing::warn!(
                    queue = %self.queue,
                    endpoint = %self.endpoint,
                    "event bus consumer ended; reconnecting"
                );
            }
            tokio::select! {
                biased;
                () = tx.closed() => return,
                () = tokio::time::sleep(delay) => {}
            }
            match self.start().await {
                Ok((session, consumer)) => {
                    tracing::info!(queue = %self.queue, "event bus consumer re-established");
                    metrics::counter!(crate::metrics::RABBITMQ_RECONNECTS, "role" => "consumer")
                        .increment(1);
                    current = Some((Arc::new(session), consumer));
                    delay = BACKOFF_START;
                }
                Err(error) => {
                    delay = (delay * 2).min(BACKOFF_MAX);
                    tracing::warn!(
                        queue = %self.queue,
                        %error,
                        retry_in = ?delay,
                        "event bus consumer cannot reconnect"
                    );
                }
            }
        }
    }

    /// Forwards one consumer's deliveries until it ends or the receiver is
    /// dropped. Dropping `consumer` cancels it; the connection closes once
    /// the last delivery handed out (each holds the session) is settled or
    /// dropped, and the broker then requeues whatever is still unacked.
    async fn forward(
        &self,
        tx: &mpsc::Sender<Delivery>,
        session: Arc<Session>,
        mut consumer: lapin::Consumer,
    ) -> Forwarded {
        loop {
            let next = tokio::select! {
                biased;
                () = tx.closed() => return Forwarded::ReceiverGone,
                next = consumer.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => {
                    tracing::warn!(queue = %self.queue, %error, "event bus consumer failed");
                    return Forwarded::ConsumerEnded;
                }
                None => return Forwarded::ConsumerEnded,
            };
            let Some(event_id) = event_id_of(&delivery.properties) else {
                // Cannot be de-duplicated, so cannot be handled safely; not
                // requeued, or it would loop forever. Dead-lettered if the
                // queue has a dead-letter exchange.
                tracing::warn!(
                    queue = %self.queue,
                    routing_key = %delivery.routing_key,
                    "dropping event bus message without an event id"
                );
                let _ = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await;
                continue;
            };
            let message = BusMessage {
                routing_key: delivery.routing_key.to_string(),
                event_id,
                traceparent: header(&delivery.properties, TRACEPARENT),
                payload: Bytes::from(delivery.data),
            };
            let acker = RabbitAcker {
                acker: delivery.acker,
                _session: session.clone(),
            };
            let delivery = Delivery::new(message, delivery.redelivered, Box::new(acker));
            if tx.send(delivery).await.is_err() {
                return Forwarded::ReceiverGone;
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Forwarded {
    ReceiverGone,
    ConsumerEnded,
}

/// Settles one delivery. Holds its session so the connection stays open
/// until the handler is done with the message.
struct RabbitAcker {
    acker: lapin::Acker,
    _session: Arc<Session>,
}

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        settled(
            "ack",
            bounded("acking", self.acker.ack(BasicAckOptions::default())).await,
        )
    }

    async fn reject(self: Box<Self>) -> Result<(), BusError> {
        settled(
            "reject",
            bounded(
                "rejecting",
                self.acker.reject(BasicRejectOptions { requeue: true }),
            )
            .await,
        )
    }
}

/// `Ok(false)` from lapin means the channel already ended: the broker
/// requeues the message itself, but the caller must not think it settled.
fn settled(what: &str, result: Result<bool, BusError>) -> Result<(), BusError> {
    match result? {
        true => Ok(()),
        false => Err(BusError::Unavailable(format!(
            "{what} not sent: the channel closed; the message will be delivered again"
        ))),
    }
}

/// The event id of a delivery: the `message_id` property, else the
/// [`EVENT_ID_HEADER`] header.
fn event_id_of(properties: &BasicProperties) -> Option<String> {
    if let Some(id) = properties.message_id()
        && !id.as_str().is_empty()
    {
        return Some(id.to_string());
    }
    header(properties, EVENT_ID_HEADER)
}

/// A non-empty string header of a delivery.
fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    let value = properties.headers().as_ref()?.inner().get(name)?;
    let text = match value {
        AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok()?,
        AMQPValue::ShortString(s) => s.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// Connects and declares `exchange`, all within [`BROKER_TIMEOUT`].
/// `name` is shown in the broker's connection list, to tell ours apart.
async fn open_session(
    url: &str,
    endpoint: &str,
    name: &str,
    exchange: &ShortString,
) -> Result<Session, BusError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let connect = async {
        let connection = Connection::connect(url, properties)
            .await
            .map_err(|e| unavailable(endpoint, "connecting", &e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| unavailable(endpoint, "opening a channel", &e))?;
        channel
            .exchange_declare(
                exchange.clone(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| unavailable(endpoint, "declaring the exchange", &e))?;
        Ok(Session {
            _connection: connection,
            channel,
        })
    };
    match tokio::time::timeout(BROKER_TIMEOUT, connect).await {
        Ok(result) => result,
        Err(_) => Err(BusError::Unavailable(format!(
            "RabbitMQ not reachable at {endpoint}: no answer within {BROKER_TIMEOUT:?}"
        ))),
    }
}

async fn enable_confirms(session: &Session) -> Result<(), BusError> {
    bounded(
        "enabling publisher confirms",
        session
            .channel
            .confirm_select(ConfirmSelectOptions::default()),
    )
    .await
}

/// Awaits a broker operation for at most [`BROKER_TIMEOUT`].
async fn bounded<T>(
    what: &str,
    operation: impl Future<Output = lapin::Result<T>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(BROKER_TIMEOUT, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(BusError::Unavailable(format!("RabbitMQ {what}: {error}"))),
        Err(_) => Err(BusError::Unavailable(format!(
            "RabbitMQ {what}: no answer within {BROKER_TIMEOUT:?}"
        ))),
    }
}

fn unavailable(endpoint: &str, what: &str, error: &lapin::Error) -> BusError {
    BusError::Unavailable(format!(
        "RabbitMQ not reachable at {endpoint} ({what}): {error}"
    ))
}

/// AMQP short strings are at most 255 bytes; lapin's `From` panics beyond
/// that, so names from callers are checked here.
fn short(value: &str, what: &str) -> Result<ShortString, BusError> {
    ShortString::try_new(value)
        .map_err(|e| BusError::Unavailable(format!("invalid {what} for RabbitMQ: {e}")))
}

/// `host:port (vhost …)` of an AMQP URL, without user or password.
fn redacted_endpoint(url: &str) -> String {
    match url.parse::<AMQPUri>() {
        Ok(uri) => format!(
            "{}:{} (vhost {:?})",
            uri.authority.host, uri.authority.port, uri.vhost
        ),
        Err(_) => "<unparseable AMQP URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqps_is_refused_rather_than_sent_in_plaintext() {
        for url in ["amqps://guest:guest@127.0.0.1:5671/%2f", "AMQPS://broker"] {
            match refuse_unencrypted_amqps(url) {
                Err(BusError::Unavailable(message)) => {
                    assert!(
                        message.starts_with("amqps:// is not supported"),
                        "{message}"
                    )
                }
                Ok(()) => panic!("{url} was accepted"),
            }
        }
        assert!(refuse_unencrypted_amqps("amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
    }

    #[test]
    fn endpoint_hides_credentials() {
        let endpoint = redacted_endpoint("amqp://alice:s3cret@broker.example:5673/%2f");
        assert_eq!(endpoint, r#"broker.example:5673 (vhost "/")"#);
        assert!(!endpoint.contains("s3cret"));
        assert!(!redacted_endpoint("not a url").contains("not a url"));
    }

    #[test]
    fn event_id_comes_from_message_id_then_header() {
        let properties = BasicProperties::default().with_message_id("m1".into());
        assert_eq!(event_id_of(&properties).as_deref(), Some("m1"));

        let mut headers = FieldTable::default();
        headers.insert(
            EVENT_ID_HEADER.into(),
            AMQPValue::LongString(LongString::from(b"h1".to_vec())),
        );
        let properties = BasicProperties::default().with_headers(headers);
        assert_eq!(event_id_of(&properties).as_deref(), Some("h1"));

        assert_eq!(event_id_of(&BasicProperties::default()), None);
    }

    #[test]
    fn overlong_names_are_errors_not_panics() {
        assert!(short(&"x".repeat(256), "queue name").is_err());
        assert!(short("chat.presence", "queue name").is_ok());
    }
}
