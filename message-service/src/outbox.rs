//! The outbox relay: publishes committed outbox rows to the event bus in id
//! order and deletes each only after the bus accepted it (at-least-once;
//! consumers de-duplicate on `event_id`). Woken right after commits, polls
//! every second as a fallback, backs off on bus errors. At shutdown it
//! makes one last pass, so that the events of the last sends go out now
//! rather than at the next start. Each pass samples the outbox's backlog
//! and the age of its oldest row for `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chat_common::bus::{BusMessage, EventBus};
use chat_common::trace_context;
use chat_common::{ErrorChain, Shutdown};
use metrics::gauge;
use tokio::sync::Notify;
use tracing::Instrument as _;

use crate::metrics::{OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE};
use crate::store::Store;

const BATCH: i64 = 100;
const POLL: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the last pass at shutdown may take: the bus may be down, and
/// what is left stays in the outbox for the next start.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

pub struct Relay {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub wake: Arc<Notify>,
}

impl Relay {
    /// Runs until `shutdown`, then flushes what is waiting.
    pub async fn run(self, shutdown: Shutdown) {
        self.relay_until(&shutdown).await;
        match tokio::time::timeout(FINAL_FLUSH, self.drain()).await {
            Ok(Ok(())) => tracing::info!("outbox flushed"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "outbox not flushed at shutdown; it is relayed at the next start");
            }
            Err(_) => tracing::warn!(
                "outbox flush timed out at shutdown; the rest is relayed at the next start"
            ),
        }
    }

    async fn relay_until(&self, shutdown: &Shutdown) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let drained = self.drain().await;
            self.sample().await;
            match drained {
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

    /// Records the backlog gauges. Counted rather than inferred from the
    /// pass: other replicas' relays drain the same outbox.
    async fn sample(&self) {
        match self.store.outbox_stats().await {
            Ok((rows, oldest)) => {
                let age_ms = oldest.map_or(0, |created| chat_common::db::now_ms() - created);
                gauge!(OUTBOX_BACKLOG).set(rows as f64);
                gauge!(OUTBOX_OLDEST_AGE).set(age_ms.max(0) as f64 / 1000.0);
            }
            Err(error) => tracing::debug!(error = %ErrorChain(&error), "cannot sample the outbox"),
        }
    }

    /// Publishes every waiting row, oldest first.
    async fn drain(&self) -> Result<(), String> {
        loop {
            let rows = self
                .store
                .outbox_batch(BATCH)
                .await
                .map_err(|e| ErrorChain(&e).to_string())?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                // A child of the call that wrote the row, and the parent of
                // the consumers' spans: the event's hop in that call's trace.
                let span = tracing::info_span!(
                    "outbox.publish",
                    otel.kind = "producer",
                    event_id = %row.event_id,
                    routing_key = %row.routing_key,
                );
                trace_context::set_parent(&span, row.traceparent.as_deref());
                let message = BusMessage {
                    routing_key: row.routing_key,
                    event_id: row.event_id,
                    traceparent: span.in_scope(trace_context::current),
                    payload: Bytes::from(row.payload),
                };
                async {
                    self.bus.publish(message).await.map_err(|e| e.to_string())?;
                    self.store
                        .outbox_delete(row.id)
                        .await
                        .map_err(|e| ErrorChain(&e).to_string())
                }
                .instrument(span)
                .await?;
            }
        }
    }
}
