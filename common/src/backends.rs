//! The buses a process runs on, chosen once at start-up and handed to every
//! service in it. The embedded mode shares one in-process pair between all
//! four services of the process; the distributed mode connects to Redis and
//! RabbitMQ by URL.

use std::sync::Arc;

use crate::bus::{EventBus, InProcessBus};
use crate::pubsub::{InProcessPubSub, PubSub};

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

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}
