//! The event-bus port: durable, at-least-once events between services.
//! Backends: in-process (embedded mode) and RabbitMQ (distributed: topic
//! exchange [`EXCHANGE`], publisher confirms, manual acks).
//!
//! Consumers must de-duplicate on [`BusMessage::event_id`]: a broker may
//! deliver an event again after a consumer crash or a lost ack.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// The topic exchange every chat event is published to.
pub const EXCHANGE: &str = "chat.events";

/// Version of the payload schema (`chat.events.v1.ChatEvent`), sent as the
/// `x-schema-version` header.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// e.g. `message.created`.
    pub routing_key: String,
    /// Unique per event; the de-duplication key.
    pub event_id: String,
    /// The W3C trace context of the publishing span (an AMQP header on
    /// RabbitMQ), so the consumer's span joins the trace of the action
    /// that caused the event.
    pub traceparent: Option<String>,
    /// An encoded `chat.events.v1.ChatEvent`.
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Returns once the broker has taken responsibility for the message.
    async fn publish(&self, message: BusMessage) -> Result<(), BusError>;

    /// Consumes the durable queue `queue`, bound to every routing-key
    /// pattern in `bindings` (`*` one word, `#` any number of words).
    async fn consume(
        &self,
        queue: &str,
        bindings: &[&str],
    ) -> Result<mpsc::Receiver<Delivery>, BusError>;
}

/// One delivered message; settle it with [`Delivery::ack`] once handled, or
/// it is delivered again.
pub struct Delivery {
    pub message: BusMessage,
    pub redelivered: bool,
    acker: Box<dyn Acker>,
}

impl Delivery {
    pub fn new(message: BusMessage, redelivered: bool, acker: Box<dyn Acker>) -> Delivery {
        Delivery {
            message,
            redelivered,
            acker,
        }
    }

    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    /// Hands the message back to be delivered again.
    pub async fn reject(self) -> Result<(), BusError> {
        self.acker.reject().await
    }
}

#[async_trait]
pub trait Acker: Send {
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    async fn reject(self: Box<Self>) -> Result<(), BusError>;
}

/// Whether a topic routing key matches a binding pattern, with AMQP's
/// rules: words separated by `.`, `*` matches one word, `#` zero or more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| go(rest, &key[skip..])),
            Some((word, rest)) => match key.split_first() {
                Some((k, key_rest)) => (*word == "*" || word == k) && go(rest, key_rest),
                None => false,
            },
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    go(&pattern, &key)
}

/// An event bus within one process. Messages for queues without a consumer
/// are dropped, as a broker drops messages no queue is bound for.
#[derive(Clone, Default)]
pub struct InProcessBus {
    queues: Arc<Mutex<Vec<Queue>>>,
}

struct Queue {
    name: String,
    bindings: Vec<String>,
    tx: mpsc::Sender<Delivery>,
}

/// Deliveries a consumer may have in hand before `publish` waits.
const QUEUE_CAPACITY: usize = 4096;

impl InProcessBus {
    pub fn new() -> InProcessBus {
        InProcessBus::default()
    }
}

struct NoopAcker;

#[async_trait]
impl Acker for NoopAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }
    async fn reject(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, message: BusMessage) -> Result<(), BusError> {
        let targets: Vec<mpsc::Sender<Delivery>> = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            queues.retain(|q| !q.tx.is_closed());
            queues
                .iter()
                .filter(|q| {
                    q.bindings
                        .iter()
                        .any(|b| topic_matches(b, &message.routing_key))
                })
                .map(|q| q.tx.clone())
                .collect()
        };
        for tx in targets {
            let delivery = Delivery::new(message.clone(), false, Box::new(NoopAcker));
            // A consumer that went away mid-publish simply misses it.
            let _ = tx.send(delivery).await;
        }
        Ok(())
    }

    async fn consume(
        &self,
        queue: &str,
        bindings: &[&str],
    ) -> Result<mpsc::Receiver<Delivery>, BusError> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.retain(|q| q.name != queue);
        queues.push(Queue {
            name: queue.to_owned(),
            bindings: bindings.iter().map(|b| (*b).to_owned()).collect(),
            tx,
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_follow_amqp_rules() {
        let cases = [
            ("message.created", "message.created", true),
            ("message.*", "message.created", true),
            ("message.*", "message", false),
            ("message.*", "message.created.extra", false),
            ("#", "member.joined", true),
            ("message.#", "message", true),
            ("message.#", "message.a.b", true),
            ("*.joined", "member.joined", true),
            ("*.joined", "member.left", false),
            ("#.left", "member.left", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(topic_matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }
}
