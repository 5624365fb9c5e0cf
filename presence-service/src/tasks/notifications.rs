//! Consumes `message.created` events from the bus and notifies their
//! recipients: live when online, stored for the next connection otherwise.

use std::sync::Arc;
use std::time::Duration;

use chat_common::Shutdown;
use chat_common::bus::{BusError, Delivery, EventBus};
use chat_common::trace_context;
use chat_proto::events::v1::ChatEvent;
use prost::Message as _;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::app::App;

/// The durable queue of this service on the bus.
pub const QUEUE: &str = "presence.notifications";
pub const BINDINGS: &[&str] = &["message.created"];

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Pause before handing back an event that failed for a transient reason,
/// so a broker that redelivers at once does not spin.
const RETRY_DELAY: Duration = Duration::from_secs(1);

pub(crate) type Subscription = Result<mpsc::Receiver<Delivery>, BusError>;

pub(crate) async fn subscribe(bus: &dyn EventBus) -> Subscription {
    bus.consume(QUEUE, BINDINGS).await
}

/// Runs the consumer from `first` (the subscription made at start-up) and
/// subscribes again, with back-off, whenever the bus fails.
pub(crate) async fn run(
    app: Arc<App>,
    bus: Arc<dyn EventBus>,
    first: Subscription,
    shutdown: Shutdown,
) {
    let mut backoff = MIN_BACKOFF;
    let mut subscription = first;
    loop {
        match subscription {
            Ok(mut deliveries) => loop {
                let delivery = tokio::select! {
                    () = shutdown.cancelled() => return,
                    delivery = deliveries.recv() => delivery,
                };
                let Some(delivery) = delivery else {
                    tracing::warn!(queue = QUEUE, "bus subscription ended");
                    break;
                };
                backoff = MIN_BACKOFF;
                let span = tracing::info_span!(
                    "notifications.handle",
                    otel.kind = "consumer",
                    event_id = %delivery.message.event_id,
                    routing_key = %delivery.message.routing_key,
                );
                // A child of the publisher's span: the handling belongs to
                // the trace of the send that caused the event.
                trace_context::set_parent(&span, delivery.message.traceparent.as_deref());
                handle(&app, delivery, &shutdown).instrument(span).await;
            },
            Err(error) => {
                tracing::warn!(%error, queue = QUEUE, ?backoff, "cannot consume from the bus");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        subscription = subscribe(bus.as_ref()).await;
    }
}

async fn handle(app: &App, delivery: Delivery, shutdown: &Shutdown) {
    let event = match ChatEvent::decode(delivery.message.payload.clone()) {
        Ok(event) => event,
        Err(error) => {
            // A poison message: redelivering it would fail the same way.
            tracing::warn!(%error, "undecodable event dropped");
            ack(delivery).await;
            return;
        }
    };
    let fallback_id = delivery.message.event_id.clone();
    match app.handle_event(event, &fallback_id).await {
        Ok(handled) => {
            tracing::debug!(?handled, "event handled");
            ack(delivery).await;
        }
        Err(error) => {
            tracing::error!(%error, "event not handled, handing it back");
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
            if let Err(error) = delivery.reject().await {
                tracing::warn!(%error, "cannot hand the event back");
            }
        }
    }
}

async fn ack(delivery: Delivery) {
    if let Err(error) = delivery.ack().await {
        // Not fatal: the event comes again and is de-duplicated.
        tracing::warn!(%error, "cannot ack the event");
    }
}
