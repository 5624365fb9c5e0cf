//! presence-service's Prometheus series, beside the gRPC ones every
//! service records (see [`chat_common::metrics`]).

use metrics::{Unit, describe_gauge};

/// Connections registered in the presence store, sampled by the sweeper.
/// Replicas sharing a Redis store all report the same total: aggregate it
/// with `max`, not `sum`.
pub const CONNECTIONS: &str = "chat_presence_connections";

/// Registers the descriptions; call after [`chat_common::metrics::install`].
pub fn describe() {
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "Connections registered in the presence store (every gateway's), sampled each sweep"
    );
}
