//! The buses a process runs on, chosen once at start-up and handed to every
//! service in it. The embedded mode shares one in-process pair between all
//! four services of the process; the distributed mode connects to Redis and
//! RabbitMQ by URL.

use std::sync::Arc;

use anyhow::Context;

use crate::bus::{EventBus, InProcessBus};
use crate::bus_rabbitmq::RabbitBus;
use crate::namespace::Namespace;
use crate::pubsub::{InProcessPubSub, PubSub};
use crate::pubsub_redis::RedisPubSub;

#[derive(Clone)]
pub struct Backends {
    pub pubsub: Arc<dyn PubSub>,
    pub bus: Arc<dyn EventBus>,
    /// Human-readable description for logs, e.g. "in-process".
    pub description: String,
}

impl Backends {
    pub fn in_process() -> Backends {
        Backends {
            pubsub: Arc::new(InProcessPubSub::new()),
            bus: Arc::new(InProcessBus::new()),
            description: "pubsub=in-process bus=in-process".to_owned(),
        }
    }
}

impl Backends {
    /// The backends named by `REDIS_URL` and `AMQP_URL`: each one unset
    /// (or empty) runs in-process, which only makes sense when every part
    /// of the system shares this process. Names on the servers are in
    /// `namespace`.
    pub async fn connect(
        redis_url: Option<&str>,
        amqp_url: Option<&str>,
        namespace: &Namespace,
    ) -> anyhow::Result<Backends> {
        let redis_url = redis_url.filter(|u| !u.is_empty());
        let amqp_url = amqp_url.filter(|u| !u.is_empty());
        let (pubsub, pubsub_kind): (Arc<dyn PubSub>, &str) = match redis_url {
            Some(url) => (
                Arc::new(
                    RedisPubSub::connect(url, namespace)
                        .await
                        .context("cannot connect to Redis (REDIS_URL)")?,
                ),
                "redis",
            ),
            None => (Arc::new(InProcessPubSub::new()), "in-process"),
        };
        let (bus, bus_kind): (Arc<dyn EventBus>, &str) = match amqp_url {
            Some(url) => (
                Arc::new(
                    RabbitBus::connect(url, namespace)
                        .await
                        .context("cannot connect to RabbitMQ (AMQP_URL)")?,
                ),
                "rabbitmq",
            ),
            None => (Arc::new(InProcessBus::new()), "in-process"),
        };
        let description = match namespace.as_str() {
            "" => format!("pubsub={pubsub_kind} bus={bus_kind}"),
            ns => format!("pubsub={pubsub_kind} bus={bus_kind} namespace={ns}"),
        };
        Ok(Backends {
            pubsub,
            bus,
            description,
        })
    }
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}
