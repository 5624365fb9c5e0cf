//! The outbox relay: publishes committed outbox rows to the event bus in id
//! order and deletes each only after the bus accepted it (at-least-once;
//! consumers de-duplicate on `event_id`). Woken right after commits, polls
//! every second as a fallback, backs off on bus errors.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chat_common::Shutdown;
use chat_common::bus::{BusMessage, EventBus};
use tokio::sync::Notify;

use crate::error::Chain;
use crate::store::Store;

const BATCH: i64 = 100;
const POLL: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Relay {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub wake: Arc<Notify>,
}

impl Relay {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.drain().await {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(POLL) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "outbox relay failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Publishes every waiting row, oldest first.
    async fn drain(&self) -> Result<(), String> {
        loop {
            let rows = self
                .store
                .outbox_batch(BATCH)
                .await
                .map_err(|e| Chain(&e).to_string())?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                let message = BusMessage {
                    routing_key: row.routing_key,
                    event_id: row.event_id,
                    payload: Bytes::from(row.payload),
                };
                self.bus.publish(message).await.map_err(|e| e.to_string())?;
                self.store
                    .outbox_delete(row.id)
                    .await
                    .map_err(|e| Chain(&e).to_string())?;
            }
        }
    }
}
