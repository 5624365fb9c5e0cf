//! The auth-service binary: configuration from flags and environment, then
//! `chat_auth_service::serve` until SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use anyhow::Context;
use chat_auth_service::Config;
use chat_auth_service::throttle::ThrottleConfig;
use chat_common::token::KeySettings;
use chat_common::{Backends, Namespace, Secret, Shutdown};
use clap::Parser;

/// The allocator: see `mimalloc` in the workspace Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEV_JWT_SECRET: &str = "insecure-dev-jwt-secret";
const DEV_SERVICE_TOKEN: &str = "insecure-dev-service-token";

#[derive(Debug, Parser)]
#[command(
    name = "auth-service",
    version,
    about = "Users, passwords and tokens of the chat system (gRPC)"
)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, env = "AUTH_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// `sqlite://PATH?mode=rwc` or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/auth.db?mode=rwc",
        // The URL may hold a password.
        hide_env_values = true
    )]
    database_url: String,
    /// HS256 key access tokens are signed with, shared with the gateway.
    #[arg(long, env = "JWT_SECRET", default_value = DEV_JWT_SECRET, hide_default_value = true, hide_env_values = true)]
    jwt_secret: Secret,
    /// The id of `JWT_SECRET` in tokens' `kid`; unset: derived from the
    /// secret. Set a new id with each new secret when rotating.
    #[arg(long, env = "JWT_KEY_ID")]
    jwt_key_id: Option<String>,
    /// Previous keys still accepted, never signed with: comma-separated
    /// `kid:secret` pairs. Keep one for an access-token lifetime after a
    /// rotation, then remove it.
    #[arg(
        long,
        env = "JWT_PREVIOUS_KEYS",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true
    )]
    jwt_previous_keys: Secret,
    /// Credential every internal caller must present.
    #[arg(long, env = "SERVICE_TOKEN", default_value = DEV_SERVICE_TOKEN, hide_default_value = true, hide_env_values = true)]
    service_token: Secret,
    /// Access token lifetime in seconds.
    #[arg(long, env = "ACCESS_TOKEN_TTL_S", default_value_t = chat_auth_service::config::DEFAULT_ACCESS_TOKEN_TTL_S)]
    access_token_ttl_s: i64,
    /// Refresh token lifetime in seconds.
    #[arg(long, env = "REFRESH_TOKEN_TTL_S", default_value_t = chat_auth_service::config::DEFAULT_REFRESH_TOKEN_TTL_S)]
    refresh_token_ttl_s: i64,
    /// Comma-separated usernames that get the admin role: existing accounts
    /// at start-up, new ones when they register. Register them before the
    /// gateway is reachable: whoever takes a listed name first is an admin.
    #[arg(long, env = "ADMIN_USERNAMES", value_delimiter = ',')]
    admin_usernames: Vec<String>,
    /// Failed logins per account name within the throttle window after
    /// which its logins are refused (429) until the window ends; 0: off.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_ACCOUNT", default_value_t = chat_auth_service::throttle::DEFAULT_MAX_FAILURES_PER_ACCOUNT)]
    login_max_failures_per_account: u32,
    /// Failed logins per client address (as the gateway reports it) within
    /// the throttle window after which its logins are refused; 0: off.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_ADDR", default_value_t = chat_auth_service::throttle::DEFAULT_MAX_FAILURES_PER_ADDR)]
    login_max_failures_per_addr: u32,
    /// Seconds from an account's or address's first failed login during
    /// which its failures count (and its lockout lasts).
    #[arg(long, env = "LOGIN_THROTTLE_WINDOW_S", default_value_t = chat_auth_service::throttle::DEFAULT_WINDOW.as_secs())]
    login_throttle_window_s: u64,
    /// Redis for publishing `disconnect` events to the gateways
    /// (`redis://host:6379`, or a comma-separated Redis Cluster node list);
    /// unset: none are published, and disabled users' sockets close only at
    /// the gateways' next re-validation.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Namespace of this deployment's names on a shared Redis (a-z, 0-9,
    /// '_', '-'); the same on every process of it.
    #[arg(long, env = "CHAT_NAMESPACE", default_value = "")]
    namespace: Namespace,
    /// Where to serve Prometheus `/metrics` (e.g. `127.0.0.1:9101`);
    /// unset serves none.
    #[arg(long, env = "METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    grpc_tls: chat_common::grpc::ServerTlsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = chat_common::telemetry::init("auth-service");
    // Before connecting to anything: a bad file fails the start at once.
    let grpc_tls = args.grpc_tls.load()?;

    if args.jwt_secret.expose() == DEV_JWT_SECRET {
        tracing::warn!(
            "JWT_SECRET is not set: using the INSECURE development key; anyone can forge access tokens. Set JWT_SECRET in production!"
        );
    }
    if args.service_token.expose() == DEV_SERVICE_TOKEN {
        tracing::warn!(
            "SERVICE_TOKEN is not set: using the INSECURE development credential. Set SERVICE_TOKEN in production!"
        );
    }

    if args.redis_url.as_deref().is_none_or(str::is_empty) {
        tracing::warn!(
            "REDIS_URL is not set: disabling a user closes their sockets only at the gateways' next re-validation"
        );
    }
    let pubsub = Backends::connect(args.redis_url.as_deref(), None, &args.namespace)
        .await?
        .pubsub;
    let config = Config {
        database_url: args.database_url,
        jwt_keys: KeySettings {
            secret: args.jwt_secret,
            key_id: args.jwt_key_id.filter(|id| !id.is_empty()),
            previous: KeySettings::parse_previous(&args.jwt_previous_keys)?,
        },
        service_token: args.service_token,
        access_token_ttl_s: args.access_token_ttl_s,
        refresh_token_ttl_s: args.refresh_token_ttl_s,
        admin_usernames: args.admin_usernames,
        login_throttle: ThrottleConfig {
            max_failures_per_account: args.login_max_failures_per_account,
            max_failures_per_addr: args.login_max_failures_per_addr,
            window: std::time::Duration::from_secs(args.login_throttle_window_s),
        },
        pubsub,
        grpc_tls,
    };
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (AUTH_LISTEN)", args.listen))?;
    let shutdown = Shutdown::new();
    chat_common::shutdown::cancel_on_signal(shutdown.clone());
    chat_common::metrics::spawn_listener(args.metrics_listen, &shutdown).await?;
    let result = chat_auth_service::serve(config, listener, shutdown).await;
    // Whatever ended the process, the spans of its last moments go out.
    telemetry.shutdown().await;
    result
}
