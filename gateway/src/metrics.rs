//! The gateway's Prometheus series (served at `/metrics`, see
//! [`chat_common::metrics`]). Labels are bounded: frame types are mapped
//! to a fixed list, close codes are the protocol's few.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Open WebSockets (from upgrade to the end of the close handshake).
pub const CONNECTIONS: &str = "chat_gateway_connections";
/// WebSockets upgraded.
pub const CONNECTS: &str = "chat_gateway_connects_total";
/// WebSockets ended, by the `code` the gateway closed with (1000 when the
/// client closed first).
pub const DISCONNECTS: &str = "chat_gateway_disconnects_total";
/// Client frames handled, by `type`: `unknown` for a type the protocol
/// lacks, `invalid` for frames without one (not JSON, binary). Frames the
/// rate limit refused are counted in [`RATE_LIMITED`] only.
pub const FRAMES_IN: &str = "chat_gateway_frames_in_total";
/// Frames written to sockets, by `type`.
pub const FRAMES_OUT: &str = "chat_gateway_frames_out_total";
/// `send` frames acknowledged (the message is committed).
pub const SENDS_ACKED: &str = "chat_gateway_sends_acked_total";
/// From a message's commit (its `created_at`) to its live event's write to
/// a socket.
pub const FANOUT_LATENCY: &str = "chat_gateway_fanout_latency_seconds";
/// Connections closed with 1013 because their send queue was full.
pub const QUEUE_OVERFLOWS: &str = "chat_gateway_queue_overflows_total";
/// Client frames refused by the per-connection rate limit.
pub const RATE_LIMITED: &str = "chat_gateway_rate_limited_total";

/// Registers the descriptions; call after [`chat_common::metrics::install`].
pub fn describe() {
    describe_gauge!(CONNECTIONS, "Open WebSocket connections");
    describe_counter!(CONNECTS, "WebSocket connections upgraded");
    describe_counter!(
        DISCONNECTS,
        "WebSocket connections ended, by the close code the gateway sent"
    );
    describe_counter!(FRAMES_IN, "Client frames handled, by type");
    describe_counter!(FRAMES_OUT, "Frames written to clients, by type");
    describe_counter!(SENDS_ACKED, "Messages sent over WebSocket and acknowledged");
    describe_histogram!(
        FANOUT_LATENCY,
        Unit::Seconds,
        "Time from a message's commit to the write of its live event to a socket"
    );
    describe_counter!(
        QUEUE_OVERFLOWS,
        "Connections closed with 1013 because their send queue overflowed"
    );
    describe_counter!(RATE_LIMITED, "Client frames refused by the rate limit");
}

/// Counts one client frame of `kind`, under its own name when it is a
/// frame type of the protocol, else `unknown` (the client chose the text).
pub fn frame_in(kind: &str) {
    const KNOWN: &[&str] = &[
        "auth", "send", "edit", "delete", "history", "resume", "typing", "read", "join", "leave",
        "presence", "ping",
    ];
    let kind = KNOWN
        .iter()
        .copied()
        .find(|k| *k == kind)
        .unwrap_or("unknown");
    metrics::counter!(FRAMES_IN, "type" => kind).increment(1);
}

/// Counts one client frame that could not be handled at all (not JSON, no
/// `type`, binary).
pub fn frame_in_invalid() {
    metrics::counter!(FRAMES_IN, "type" => "invalid").increment(1);
}
