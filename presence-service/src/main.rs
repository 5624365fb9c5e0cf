//! The presence-service binary: reads its configuration from flags and the
//! environment, then serves until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_common::{Backends, Namespace, Secret, Shutdown};
use chat_presence_service::Config;
use chat_presence_service::store::{MemoryStore, PresenceStore, RedisStore};
use clap::Parser;

/// The service credential of a laptop set-up; never for production.
const DEV_SERVICE_TOKEN: &str = "insecure-dev-service-token";

#[derive(Debug, Parser)]
#[command(
    name = "presence-service",
    about = "Presence, typing and notifications of the chat system"
)]
struct Args {
    /// Address the gRPC server listens on.
    #[arg(long, env = "PRESENCE_LISTEN", default_value = "127.0.0.1:50053")]
    listen: SocketAddr,
    /// Credential every internal caller presents.
    #[arg(long, env = "SERVICE_TOKEN", default_value = DEV_SERVICE_TOKEN, hide_default_value = true, hide_env_values = true)]
    service_token: Secret,
    /// auth-service, which checks the access token of admin calls
    /// (`chat.presence.v1.AdminService`).
    #[arg(long, env = "AUTH_ADDR", default_value = chat_presence_service::config::DEFAULT_AUTH_ADDR)]
    auth_addr: String,
    /// Seconds a connection lives without a heartbeat.
    #[arg(long = "ttl-s", env = "PRESENCE_TTL_S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    ttl_s: u64,
    /// Redis holding presence, shared by every replica (e.g.
    /// `redis://redis:6379`). Unset: in memory, for one replica only.
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

/// The store named by the arguments: Redis when a URL is given, so that
/// replicas share presence and a dead gateway's users expire whichever
/// replica is alive; otherwise in memory.
async fn store(args: &Args) -> anyhow::Result<Arc<dyn PresenceStore>> {
    let Some(url) = &args.redis_url else {
        tracing::info!("presence store: in memory (set REDIS_URL to share it between replicas)");
        return Ok(Arc::new(MemoryStore::new()));
    };
    let store = RedisStore::connect(url, args.namespace.key_prefix())
        .await
        .context("cannot connect to the presence Redis (REDIS_URL)")?;
    // The address only: the URL may hold a password.
    tracing::info!(
        server = store.server(),
        prefix = store.prefix(),
        "presence store: redis"
    );
    Ok(Arc::new(store))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = chat_common::telemetry::init("presence-service");
    let args = Args::parse();
    // Before connecting to anything: a bad file fails the start at once.
    let grpc_tls = args.grpc_tls.load()?;
    let auth_tls = args.auth_tls.load()?;
    if args.service_token.expose() == DEV_SERVICE_TOKEN {
        tracing::warn!(
            "SERVICE_TOKEN is the insecure development default: any process that knows it \
             can call this service. Set SERVICE_TOKEN outside a laptop set-up."
        );
    }
    let store = store(&args).await?;
    let mut config = Config::new(
        args.service_token,
        Backends::connect(
            args.redis_url.as_deref(),
            args.amqp_url.as_deref(),
            &args.namespace,
        )
        .await?,
    );
    config.connection_ttl = Duration::from_secs(args.ttl_s);
    config.auth_addr = args.auth_addr;
    config.grpc_tls = grpc_tls;
    config.auth_tls = auth_tls;

    let shutdown = Shutdown::new();
    chat_common::shutdown::cancel_on_signal(shutdown.clone());
    chat_common::metrics::spawn_listener(args.metrics_listen, &shutdown).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (PRESENCE_LISTEN)", args.listen))?;
    let result = chat_presence_service::serve_with_store(config, store, listener, shutdown).await;
    // Whatever ended the process, the spans of its last moments go out.
    telemetry.shutdown().await;
    result
}
