//! Command-line flags: one subcommand per scenario, every size, rate and
//! duration a flag with a small default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for the chat gateway: real clients (HTTP + WebSocket) running benchmark scenarios"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// N authenticated idle connections; the gateway's RSS before and after.
    Idle(IdleArgs),
    /// One room of M members, P senders at rate R: deliveries/s and
    /// send-to-receive latency.
    Fanout(FanoutArgs),
    /// Acked sends/s into many rooms, then into one hot room.
    Sends(SendsArgs),
    /// Fill a room, then time history pages over HTTP and WebSocket.
    History(HistoryArgs),
    /// K clients; when the gateway restarts, all reconnect and resume.
    Storm(StormArgs),
    /// Fanout with the members spread over several gateways (repeat
    /// --gateway).
    E2e(FanoutArgs),
}

impl Command {
    pub fn common(&self) -> &Common {
        match self {
            Command::Idle(a) => &a.common,
            Command::Fanout(a) | Command::E2e(a) => &a.common,
            Command::Sends(a) => &a.common,
            Command::History(a) => &a.common,
            Command::Storm(a) => &a.common,
        }
    }
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct Common {
    /// Gateway base URL; repeat for several gateways, clients take turns.
    #[arg(long = "gateway", default_value = "http://127.0.0.1:8080")]
    pub gateways: Vec<String>,
    /// Source addresses for client sockets, e.g. 127.0.0.1-127.0.0.8 or a
    /// comma-separated list; default: the kernel picks.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// New WebSocket connections per second (0: no limit).
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    /// Write the JSON results here.
    #[arg(long)]
    #[serde(skip)]
    pub out: Option<PathBuf>,
    /// Skip the HTTP API: connect with a dummy token to a server that takes
    /// any (the Node baseline) and use --room as the room id.
    #[arg(long)]
    pub raw_ws: bool,
    /// Room id to use instead of creating one (with --raw-ws: "bench").
    #[arg(long)]
    pub room: Option<String>,
    /// Usernames are <prefix><i>; default a fresh random prefix. Existing
    /// users are logged in.
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// HTTP set-up requests in flight at once (registration is an argon2
    /// hash each).
    #[arg(long, default_value_t = 4)]
    pub http_concurrency: usize,
    /// Seconds any one network step (HTTP call, connect, ready) may take.
    #[arg(long, default_value_t = 15.0)]
    pub step_timeout_s: f64,
    /// Tag the texts of this run carry; default a fresh random one.
    #[arg(long)]
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Distinct accounts the connections share (a user may hold many).
    #[arg(long, default_value_t = 50)]
    pub users: usize,
    /// Seconds to hold the connections open once all are ready.
    #[arg(long, default_value_t = 5.0)]
    pub hold_s: f64,
    /// The gateway process whose RSS is read (/proc/<pid>/status).
    #[arg(long)]
    pub gateway_pid: Option<u32>,
}

/// What fanout, e2e and each phase of sends share.
#[derive(Debug, Clone, Args, Serialize)]
pub struct TrafficArgs {
    /// Messages each sender sends per second (the server allows 20 frames
    /// per second per connection by default, burst 40).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Messages each sender sends, at most.
    #[arg(long, default_value_t = 100)]
    pub messages: u64,
    /// Seconds senders may send for, at most.
    #[arg(long, default_value_t = 60.0)]
    pub duration_s: f64,
    /// Seconds to wait for acks and deliveries after the last send.
    #[arg(long, default_value_t = 10.0)]
    pub drain_s: f64,
    /// Bytes of each message text (padded).
    #[arg(long, default_value_t = 64)]
    pub text_bytes: usize,
    /// Sends a sender may have unacknowledged; at the cap it skips ticks.
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Member connections of the room (each its own account).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// How many of the members send.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct SendsArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Sender connections (each its own account, each also a receiver).
    #[arg(long, default_value_t = 50)]
    pub senders: usize,
    /// Rooms of the many-rooms phase; senders are spread over them.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Skip the many-rooms phase.
    #[arg(long)]
    pub hot_only: bool,
    /// Skip the hot-room phase.
    #[arg(long)]
    pub many_only: bool,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub common: Common,
    /// Messages to add to the room before measuring (0 with --room for a
    /// room filled otherwise, e.g. by SQL).
    #[arg(long, default_value_t = 1000)]
    pub fill: u64,
    /// Concurrent sender connections for the fill.
    #[arg(long, default_value_t = 20)]
    pub fill_senders: usize,
    /// Messages per second of each fill sender (server limit 20).
    #[arg(long, default_value_t = 15.0)]
    pub fill_rate: f64,
    /// History requests per transport.
    #[arg(long, default_value_t = 200)]
    pub queries: u64,
    /// Requests in flight at once per transport (one per WebSocket).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Page size (1-100).
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// History requests per second of each WebSocket (server limit 20).
    #[arg(long, default_value_t = 15.0)]
    pub ws_rate: f64,
    /// Seconds the measurement may take, at most.
    #[arg(long, default_value_t = 120.0)]
    pub duration_s: f64,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: Common,
    /// Client connections.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Distinct accounts the clients share.
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// Shell command run once every client is ready, that restarts the
    /// gateway; without it, restart the gateway by hand meanwhile.
    #[arg(long)]
    pub restart_cmd: Option<String>,
    /// Seconds to wait for the gateway to close the connections.
    #[arg(long, default_value_t = 60.0)]
    pub signal_timeout_s: f64,
    /// Seconds a client may take from its disconnect to `resumed`.
    #[arg(long, default_value_t = 60.0)]
    pub reconnect_timeout_s: f64,
    /// First back-off ceiling; doubles per failed attempt (full jitter).
    #[arg(long, default_value_t = 100)]
    pub backoff_base_ms: u64,
    #[arg(long, default_value_t = 5000)]
    pub backoff_max_ms: u64,
    /// Reconnect attempts per client before it counts as failed.
    #[arg(long, default_value_t = 50)]
    pub max_attempts: u32,
}
