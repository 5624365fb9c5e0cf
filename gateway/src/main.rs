//! The gateway binary: one replica of the WebSocket and HTTP front door.

use anyhow::Context;
use chat_common::token::KeySettings;
use chat_common::{Backends, Namespace, Secret, Shutdown};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "gateway", about = "Chat gateway: WebSocket and HTTP JSON API")]
struct Args {
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Unique name of this replica; defaults to a random one.
    #[arg(long, env = "GATEWAY_ID")]
    gateway_id: Option<String>,
    #[arg(long, env = "AUTH_ADDR", default_value = "http://127.0.0.1:50051")]
    auth_addr: String,
    #[arg(long, env = "MESSAGE_ADDR", default_value = "http://127.0.0.1:50052")]
    message_addr: String,
    #[arg(long, env = "PRESENCE_ADDR", default_value = "http://127.0.0.1:50053")]
    presence_addr: String,
    #[arg(
        long,
        env = "JWT_SECRET",
        default_value = "insecure-dev-jwt-secret",
        hide_env_values = true
    )]
    jwt_secret: Secret,
    /// The id of `JWT_SECRET` in tokens' `kid`, as auth-service has it;
    /// unset: derived from the secret.
    #[arg(long, env = "JWT_KEY_ID")]
    jwt_key_id: Option<String>,
    /// Previous keys still accepted, as auth-service has them:
    /// comma-separated `kid:secret` pairs.
    #[arg(
        long,
        env = "JWT_PREVIOUS_KEYS",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true
    )]
    jwt_previous_keys: Secret,
    #[arg(
        long,
        env = "SERVICE_TOKEN",
        default_value = "insecure-dev-service-token",
        hide_env_values = true
    )]
    service_token: Secret,
    /// Comma-separated origins allowed to open WebSockets besides the
    /// gateway's own; `*` allows any.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Take a client's address from the last `X-Forwarded-For` entry, as
    /// set by the proxy in front; only when every request passes through
    /// that proxy (else clients pick their own address).
    #[arg(long, env = "TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    trust_forwarded_for: bool,
    #[arg(long, env = "MAX_ATTACHMENT_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_attachment_bytes: u64,
    /// Redis for pub/sub (`redis://host:6379`, or a comma-separated list
    /// of nodes for a Redis Cluster); unset runs in-process, which only
    /// works when the services share this process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// How often connections' presence is refreshed; keep it well under
    /// presence-service's TTL (a third of it).
    #[arg(long, env = "PRESENCE_HEARTBEAT_MS", default_value_t = 10_000)]
    presence_heartbeat_ms: u64,
    /// Seconds over which open sockets are closed (1012) at SIGTERM, in
    /// batches; keep it well under the orchestrator's grace period (the
    /// process needs up to about 12 s more).
    #[arg(long, env = "DRAIN_WINDOW_S", default_value_t = 10.0)]
    drain_window_s: f64,
    /// Seconds between re-validations of connected users: sockets of users
    /// disabled meanwhile close (4003) at the latest after this long, even
    /// if the `disconnect` event was lost.
    #[arg(long, env = "REVALIDATE_INTERVAL_S", default_value_t = 30.0)]
    revalidate_interval_s: f64,
    /// Namespace of this deployment's names on shared Redis and RabbitMQ
    /// servers (a-z, 0-9, '_', '-'); the same on every process of it.
    #[arg(long, env = "CHAT_NAMESPACE", default_value = "")]
    namespace: Namespace,
    #[command(flatten)]
    connection_limits: chat_gateway::config::ConnectionLimitArgs,
    #[command(flatten)]
    grpc_tls: chat_common::grpc::ClientTlsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = chat_common::telemetry::init("gateway");
    let args = Args::parse();
    // Before connecting to anything: a bad file fails the start at once.
    let grpc_tls = args.grpc_tls.load()?;
    if args.jwt_secret.expose() == "insecure-dev-jwt-secret"
        || args.service_token.expose() == "insecure-dev-service-token"
    {
        tracing::warn!(
            "JWT_SECRET or SERVICE_TOKEN is the insecure development default; set both in production"
        );
    }
    let mut limits = chat_gateway::Limits {
        max_attachment_bytes: args.max_attachment_bytes,
        presence_heartbeat: std::time::Duration::from_millis(args.presence_heartbeat_ms.max(100)),
        drain_window: std::time::Duration::try_from_secs_f64(args.drain_window_s)
            .context("DRAIN_WINDOW_S must be a non-negative number of seconds")?,
        revalidate_interval: std::time::Duration::try_from_secs_f64(args.revalidate_interval_s)
            .ok()
            .filter(|d| !d.is_zero())
            .context("REVALIDATE_INTERVAL_S must be a positive number of seconds")?,
        ..chat_gateway::Limits::default()
    };
    args.connection_limits.apply(&mut limits)?;
    let config = chat_gateway::Config {
        gateway_id: args
            .gateway_id
            .unwrap_or_else(|| format!("gateway-{}", uuid::Uuid::new_v4().simple())),
        auth_addr: args.auth_addr,
        message_addr: args.message_addr,
        presence_addr: args.presence_addr,
        grpc_tls,
        jwt_keys: KeySettings {
            secret: args.jwt_secret,
            key_id: args.jwt_key_id.filter(|id| !id.is_empty()),
            previous: KeySettings::parse_previous(&args.jwt_previous_keys)?,
        },
        service_token: args.service_token,
        backends: Backends::connect(args.redis_url.as_deref(), None, &args.namespace).await?,
        allowed_origins: args.allowed_origins,
        trust_forwarded_for: args.trust_forwarded_for,
        limits,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let shutdown = Shutdown::new();
    chat_common::shutdown::cancel_on_signal(shutdown.clone());
    let result = chat_gateway::serve(config, listener, shutdown).await;
    // Whatever ended the process, the spans of its last moments go out.
    telemetry.shutdown().await;
    result
}
