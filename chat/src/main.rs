//! `chat`: the whole system in one process, on SQLite. `cargo run --release`
//! at the repository root starts it.

use std::path::PathBuf;

use anyhow::Context;
use chat_common::{Namespace, Shutdown};
use clap::Parser;

/// The allocator: see `mimalloc` in the workspace Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "chat",
    about = "The chat system in one process (SQLite, no servers needed)"
)]
struct Args {
    /// Address for HTTP and WebSocket clients.
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where databases and generated secrets are kept.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Redis for pub/sub and presence (`redis://host:6379`); unset keeps
    /// them in this process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// RabbitMQ for durable events; unset keeps them in this process.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    amqp_url: Option<String>,
    /// auth-service's database (`sqlite:` or `postgres:`); default a
    /// SQLite file in the data directory.
    #[arg(long, env = "AUTH_DATABASE_URL", hide_env_values = true)]
    auth_database_url: Option<String>,
    /// message-service's database; must differ from auth-service's.
    #[arg(long, env = "MESSAGE_DATABASE_URL", hide_env_values = true)]
    message_database_url: Option<String>,
    /// Namespace of this deployment's names on shared Redis and RabbitMQ
    /// servers (a-z, 0-9, '_', '-').
    #[arg(long, env = "CHAT_NAMESPACE", default_value = "")]
    namespace: Namespace,
    /// Comma-separated usernames that are admins (chatctl and the admin
    /// gRPC services): existing accounts at start-up, new ones when they
    /// register.
    #[arg(long, env = "ADMIN_USERNAMES", value_delimiter = ',')]
    admin_usernames: Vec<String>,
    /// Seconds over which open sockets are closed (1012) at shutdown;
    /// short by default, as no other replica takes the clients meanwhile.
    #[arg(long, env = "DRAIN_WINDOW_S", default_value_t = chat::EMBEDDED_DRAIN_WINDOW.as_secs_f64())]
    drain_window_s: f64,
    #[command(flatten)]
    connection_limits: chat_gateway::config::ConnectionLimitArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = chat_common::telemetry::init("chat");
    let args = Args::parse();
    let shutdown = Shutdown::new();
    chat_common::shutdown::cancel_on_signal(shutdown.clone());
    let mut options = chat::Options {
        redis_url: args.redis_url,
        amqp_url: args.amqp_url,
        auth_database_url: args.auth_database_url,
        message_database_url: args.message_database_url,
        namespace: args.namespace,
        admin_usernames: args.admin_usernames,
        ..chat::Options::new(args.listen, &args.data_dir)
    };
    options.gateway_limits.drain_window =
        std::time::Duration::try_from_secs_f64(args.drain_window_s)
            .context("DRAIN_WINDOW_S must be a non-negative number of seconds")?;
    args.connection_limits.apply(&mut options.gateway_limits)?;
    let mut system = chat::start(options, shutdown).await?;
    let addr = system.addr;
    println!("chat is running, data in {}", args.data_dir.display());
    println!("  HTTP API:  http://{addr}/api/v1");
    println!("  WebSocket: ws://{addr}/ws");
    println!("  health:    http://{addr}/healthz");
    // Internal tools (chatctl, grpcurl) reach the services here, with the
    // service token kept in the data directory.
    println!(
        "  gRPC:      AUTH_ADDR=http://{} MESSAGE_ADDR=http://{} PRESENCE_ADDR=http://{}",
        system.auth_addr, system.message_addr, system.presence_addr
    );
    println!(
        "  service token: {}",
        args.data_dir.join("service-token").display()
    );
    println!("Ctrl-C to stop.");
    let result = system.wait().await;
    // Whatever ended the process, the spans of its last moments go out.
    telemetry.shutdown().await;
    result
}
