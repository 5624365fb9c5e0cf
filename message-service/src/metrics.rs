//! message-service's Prometheus series, beside the gRPC ones every
//! service records (see [`chat_common::metrics`]). Sampled by the outbox
//! relay each pass, so they lag by at most its poll interval.

use metrics::{Unit, describe_gauge, describe_histogram};

/// Outbox rows waiting to be relayed to the event bus.
pub const OUTBOX_BACKLOG: &str = "chat_message_outbox_backlog";
/// Age of the oldest waiting outbox row; 0 when the outbox is empty.
pub const OUTBOX_OLDEST_AGE: &str = "chat_message_outbox_oldest_age_seconds";

/// Sends committed together in one transaction (crate::sends).
pub const SEND_BATCH: &str = "chat_message_send_batch_sends";

/// Registers the descriptions; call after [`chat_common::metrics::install`].
pub fn describe() {
    describe_gauge!(
        OUTBOX_BACKLOG,
        Unit::Count,
        "Outbox rows waiting to be relayed to the event bus"
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest outbox row waiting to be relayed (0 when empty)"
    );
    describe_histogram!(
        SEND_BATCH,
        Unit::Count,
        "Sends committed together in one transaction (group commit)"
    );
}
