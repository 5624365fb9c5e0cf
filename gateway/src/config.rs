//! Gateway configuration. Defaults follow PROTOCOL.md and work on a laptop.

use std::time::Duration;

use chat_common::grpc::ClientTls;
use chat_common::token::KeySettings;
use chat_common::{Backends, Secret};

#[derive(Debug, Clone)]
pub struct Config {
    /// Unique per replica; presence records which gateway holds a connection.
    pub gateway_id: String,
    pub auth_addr: String,
    pub message_addr: String,
    pub presence_addr: String,
    /// TLS of the calls to the three services (`GRPC_TLS_CA`...); `None`:
    /// plaintext.
    pub grpc_tls: Option<ClientTls>,
    /// The keys access tokens are verified with: auth-service's signing
    /// key and the previous keys it still accepts.
    pub jwt_keys: KeySettings,
    pub service_token: Secret,
    pub backends: Backends,
    /// Extra origins allowed to open WebSockets besides the gateway's own
    /// host; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Whether a client's address is the last `X-Forwarded-For` entry
    /// (appended by the trusted proxy in front) instead of the socket's
    /// peer. Only for a gateway reachable solely through such a proxy:
    /// otherwise clients would choose their own address and escape the
    /// per-address login throttle.
    pub trust_forwarded_for: bool,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub frames_per_second: u32,
    pub frame_burst: u32,
    /// Rejected frames within [`Limits::abuse_window`] that close the
    /// connection with 1008.
    pub abuse_rejections: u32,
    pub abuse_window: Duration,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub auth_timeout: Duration,
    /// Frames a connection may have queued before it counts as too slow.
    pub send_queue_frames: usize,
    /// How long a closing connection's close frame may take to go out (to
    /// a client that stopped reading, it never does) before the socket is
    /// dropped.
    pub close_timeout: Duration,
    pub max_attachment_bytes: u64,
    /// How often the gateway refreshes its connections' presence TTL.
    pub presence_heartbeat: Duration,
    /// At shutdown, open sockets are closed with 1012 in batches spread
    /// over this long, so their clients reconnect to the other replicas
    /// gradually instead of all in the same instant.
    pub drain_window: Duration,
    /// How often the users of open sockets are looked up again, closing
    /// those of disabled users (4003): the safety net behind the
    /// `disconnect` events, which pub/sub may lose.
    pub revalidate_interval: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_bytes: 64 * 1024,
            frames_per_second: 20,
            frame_burst: 40,
            abuse_rejections: 100,
            abuse_window: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(40),
            auth_timeout: Duration::from_secs(10),
            send_queue_frames: 1024,
            close_timeout: Duration::from_secs(5),
            max_attachment_bytes: 10 * 1024 * 1024,
            presence_heartbeat: Duration::from_secs(10),
            drain_window: Duration::from_secs(10),
            revalidate_interval: Duration::from_secs(30),
        }
    }
}
