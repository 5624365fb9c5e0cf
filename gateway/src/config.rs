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

/// The client connection limits a deployment may change
/// (PROTOCOL.md: "Defaults (all configurable)"); both the gateway binary
/// and the embedded `chat` read them.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionLimitArgs {
    /// Largest WebSocket frame or message a client may send, in bytes;
    /// larger ones close the connection with 1009.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = Limits::default().max_frame_bytes)]
    pub max_frame_bytes: usize,
    /// Frames a connection may send per second on average...
    #[arg(long, env = "FRAMES_PER_SECOND", default_value_t = Limits::default().frames_per_second)]
    pub frames_per_second: u32,
    /// ...and at once after being quiet; beyond them frames are answered
    /// with `rate_limited`.
    #[arg(long, env = "FRAME_BURST", default_value_t = Limits::default().frame_burst)]
    pub frame_burst: u32,
    /// Seconds between the server's pings.
    #[arg(long, env = "PING_INTERVAL_S", default_value_t = Limits::default().ping_interval.as_secs_f64())]
    pub ping_interval_s: f64,
    /// Seconds of silence (no frame, no pong) after which a connection is
    /// closed; more than the ping interval.
    #[arg(long, env = "IDLE_TIMEOUT_S", default_value_t = Limits::default().idle_timeout.as_secs_f64())]
    pub idle_timeout_s: f64,
}

/// Frames smaller than this could not carry the protocol's own frames.
const MIN_FRAME_BYTES: usize = 1024;
/// Beyond this a single client could make the gateway hold large buffers.
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

impl ConnectionLimitArgs {
    /// Sets these limits in `limits`, refusing values that cannot work.
    pub fn apply(&self, limits: &mut Limits) -> anyhow::Result<()> {
        use anyhow::Context as _;
        anyhow::ensure!(
            (MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&self.max_frame_bytes),
            "MAX_FRAME_BYTES must be between {MIN_FRAME_BYTES} and {MAX_FRAME_BYTES}"
        );
        anyhow::ensure!(
            self.frames_per_second > 0 && self.frame_burst > 0,
            "FRAMES_PER_SECOND and FRAME_BURST must be positive"
        );
        let seconds = |value: f64, name: &str| {
            Duration::try_from_secs_f64(value)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| format!("{name} must be a positive number of seconds"))
        };
        let ping_interval = seconds(self.ping_interval_s, "PING_INTERVAL_S")?;
        let idle_timeout = seconds(self.idle_timeout_s, "IDLE_TIMEOUT_S")?;
        anyhow::ensure!(
            idle_timeout > ping_interval,
            "IDLE_TIMEOUT_S must be longer than PING_INTERVAL_S, or idle clients that answer pings are closed"
        );
        limits.max_frame_bytes = self.max_frame_bytes;
        limits.frames_per_second = self.frames_per_second;
        limits.frame_burst = self.frame_burst;
        limits.ping_interval = ping_interval;
        limits.idle_timeout = idle_timeout;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        limits: ConnectionLimitArgs,
    }

    fn applied(args: &[&str]) -> anyhow::Result<Limits> {
        let args = Args::try_parse_from(std::iter::once("gateway").chain(args.iter().copied()))?;
        let mut limits = Limits::default();
        args.limits.apply(&mut limits)?;
        Ok(limits)
    }

    #[test]
    fn connection_limits_default_to_the_protocol_and_can_be_changed() -> anyhow::Result<()> {
        let defaults = applied(&[])?;
        assert_eq!(
            (
                defaults.max_frame_bytes,
                defaults.frames_per_second,
                defaults.frame_burst,
                defaults.ping_interval,
                defaults.idle_timeout
            ),
            (
                65536,
                20,
                40,
                Duration::from_secs(20),
                Duration::from_secs(40)
            )
        );
        let changed = applied(&[
            "--max-frame-bytes=1048576",
            "--frames-per-second=5",
            "--frame-burst=7",
            "--ping-interval-s=2.5",
            "--idle-timeout-s=6",
        ])?;
        assert_eq!(
            (
                changed.max_frame_bytes,
                changed.frames_per_second,
                changed.frame_burst,
                changed.ping_interval,
                changed.idle_timeout
            ),
            (
                1048576,
                5,
                7,
                Duration::from_millis(2500),
                Duration::from_secs(6)
            )
        );
        Ok(())
    }

    #[test]
    fn connection_limits_that_cannot_work_are_refused() {
        for (args, message) in [
            (
                &["--max-frame-bytes=100"][..],
                "MAX_FRAME_BYTES must be between 1024 and 67108864",
            ),
            (
                &["--max-frame-bytes=67108865"],
                "MAX_FRAME_BYTES must be between 1024 and 67108864",
            ),
            (
                &["--frames-per-second=0"],
                "FRAMES_PER_SECOND and FRAME_BURST must be positive",
            ),
            (
                &["--frame-burst=0"],
                "FRAMES_PER_SECOND and FRAME_BURST must be positive",
            ),
            (
                &["--ping-interval-s=0"],
                "PING_INTERVAL_S must be a positive number of seconds",
            ),
            (
                &["--idle-timeout-s=-1"],
                "IDLE_TIMEOUT_S must be a positive number of seconds",
            ),
            (
                &["--ping-interval-s=30", "--idle-timeout-s=30"],
                "IDLE_TIMEOUT_S must be longer than PING_INTERVAL_S, or idle clients that answer pings are closed",
            ),
        ] {
            let error = applied(args).err().map(|e| e.to_string());
            assert_eq!(error.as_deref(), Some(message), "{args:?}");
        }
    }
}
