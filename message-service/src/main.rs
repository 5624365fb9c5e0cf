//! The message-service binary: configuration from flags and environment,
//! then [`chat_message_service::serve`] until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use chat_common::{Backends, Namespace, Secret, Shutdown, shutdown, telemetry};
use chat_message_service::Config;
use clap::Parser;

const DEV_SERVICE_TOKEN: &str = "insecure-dev-service-token";

#[derive(Debug, Parser)]
#[command(
    name = "message-service",
    about = "Rooms, messages, history, read positions and attachments"
)]
struct Args {
    /// Address of the gRPC server.
    #[arg(long, env = "MESSAGE_LISTEN", default_value = "127.0.0.1:50052")]
    listen: SocketAddr,
    /// `sqlite:...` or `postgres:...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/message.db?mode=rwc",
        // A PostgreSQL URL may carry a password.
        hide_env_values = true
    )]
    database_url: String,
    /// Credential shared by the services of one deployment.
    #[arg(long, env = "SERVICE_TOKEN", default_value = DEV_SERVICE_TOKEN, hide_env_values = true, hide_default_value = true)]
    service_token: Secret,
    /// auth-service, which checks the access token of admin calls
    /// (`chat.message.v1.AdminService`) and names the users they add.
    #[arg(long, env = "AUTH_ADDR", default_value = Config::DEFAULT_AUTH_ADDR)]
    auth_addr: String,
    /// How long a sender may recall their own message, in seconds.
    #[arg(long, env = "RECALL_WINDOW_S", default_value_t = 120)]
    recall_window_s: u64,
    /// Longest message text, in characters.
    #[arg(long, env = "MAX_TEXT_CHARS", default_value_t = Config::DEFAULT_MAX_TEXT_CHARS)]
    max_text_chars: usize,
    /// Largest attachment, in bytes.
    #[arg(long, env = "MAX_ATTACHMENT_BYTES", default_value_t = Config::DEFAULT_MAX_ATTACHMENT_BYTES)]
    max_attachment_bytes: u64,
    /// Redis for pub/sub (`redis://host:6379`, or a comma-separated list
    /// of nodes for a Redis Cluster); unset runs in-process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// RabbitMQ for durable events (`amqp://user:pass@host:5672/%2f`);
    /// unset runs in-process.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    amqp_url: Option<String>,
    /// Namespace of this deployment's names on shared Redis and RabbitMQ
    /// servers (a-z, 0-9, '_', '-'); the same on every process of it.
    #[arg(long, env = "CHAT_NAMESPACE", default_value = "")]
    namespace: Namespace,
    /// Where to serve Prometheus `/metrics` (e.g. `127.0.0.1:9101`);
    /// unset serves none.
    #[arg(long, env = "METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    grpc_tls: chat_common::grpc::ServerTlsArgs,
    #[command(flatten)]
    auth_tls: chat_common::grpc::ClientTlsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = telemetry::init("message-service");
    // Before connecting to anything: a bad file fails the start at once.
    let grpc_tls = args.grpc_tls.load()?;
    let auth_tls = args.auth_tls.load()?;
    if args.service_token.expose() == DEV_SERVICE_TOKEN {
        tracing::warn!(
            "SERVICE_TOKEN is the insecure development default: anyone who can reach this port can act as any user; \
             set SERVICE_TOKEN outside development"
        );
    }
    anyhow::ensure!(args.max_text_chars > 0, "MAX_TEXT_CHARS must be positive");
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (MESSAGE_LISTEN)", args.listen))?;
    let config = Config {
        database_url: args.database_url,
        service_token: args.service_token,
        backends: Backends::connect(
            args.redis_url.as_deref(),
            args.amqp_url.as_deref(),
            &args.namespace,
        )
        .await?,
        recall_window: Duration::from_secs(args.recall_window_s),
        max_text_chars: args.max_text_chars,
        max_attachment_bytes: args.max_attachment_bytes,
        auth_addr: args.auth_addr,
        grpc_tls,
        auth_tls,
    };
    let stop = Shutdown::new();
    shutdown::cancel_on_signal(stop.clone());
    chat_common::metrics::spawn_listener(args.metrics_listen, &stop).await?;
    let result = chat_message_service::serve(config, listener, stop).await;
    // Whatever ended the process, the spans of its last moments go out.
    telemetry.shutdown().await;
    result
}
