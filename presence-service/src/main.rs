//! The presence-service binary: reads its configuration from flags and the
//! environment, then serves until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use chat_common::{Backends, Secret, Shutdown};
use chat_presence_service::Config;
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
    /// Seconds a connection lives without a heartbeat.
    #[arg(long = "ttl-s", env = "PRESENCE_TTL_S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    ttl_s: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chat_common::telemetry::init("presence-service");
    let args = Args::parse();
    if args.service_token.expose() == DEV_SERVICE_TOKEN {
        tracing::warn!(
            "SERVICE_TOKEN is the insecure development default: any process that knows it \
             can call this service. Set SERVICE_TOKEN outside a laptop set-up."
        );
    }
    let mut config = Config::new(args.service_token, Backends::in_process());
    config.connection_ttl = Duration::from_secs(args.ttl_s);

    let shutdown = Shutdown::new();
    chat_common::shutdown::cancel_on_signal(shutdown.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (PRESENCE_LISTEN)", args.listen))?;
    chat_presence_service::serve(config, listener, shutdown).await
}
