//! The embedded mode: all four parts of the system in one process, wired
//! over real gRPC on loopback (the gateway never calls a service's code),
//! storing in SQLite files under one data directory and spreading events
//! through in-process pub/sub and event bus.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_common::config::load_or_create_secret;
use chat_common::db::sqlite_url;
use chat_common::{Backends, Namespace, Shutdown};
use chat_presence_service::store::{MemoryStore, PresenceStore, RedisStore};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The embedded gateway's drain window. Short, unlike a replica's 10 s:
/// spreading reconnects only pays when other replicas take them, and this
/// process is the only one, so its clients can do nothing but wait for it
/// to come back; a long window would only delay the restart.
pub const EMBEDDED_DRAIN_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Options {
    /// Where the gateway serves HTTP and WebSocket.
    pub listen: String,
    /// SQLite databases and generated secrets live here.
    pub data_dir: PathBuf,
    /// The gateway's limits; its `drain_window` defaults to
    /// [`EMBEDDED_DRAIN_WINDOW`] here.
    pub gateway_limits: chat_gateway::Limits,
    pub recall_window: Duration,
    pub presence_ttl: Duration,
    /// Redis for pub/sub and presence; `None` keeps both in-process.
    pub redis_url: Option<String>,
    /// RabbitMQ for durable events; `None` keeps them in-process.
    pub amqp_url: Option<String>,
    /// The services' databases; `None` is a SQLite file in `data_dir`.
    /// They must differ: each service owns its schema and migrations.
    pub auth_database_url: Option<String>,
    pub message_database_url: Option<String>,
    /// This deployment's names on shared Redis and RabbitMQ servers.
    pub namespace: Namespace,
    /// Accounts that are admins (auth-service's `ADMIN_USERNAMES`).
    pub admin_usernames: Vec<String>,
    /// auth-service's failed-login limits.
    pub login_throttle: chat_auth_service::throttle::ThrottleConfig,
    /// The access-token key set; `None` signs with the secret generated
    /// in `data_dir` (`jwt-secret`) under its default key id.
    pub jwt_keys: Option<chat_common::token::KeySettings>,
}

impl Options {
    pub fn new(listen: impl Into<String>, data_dir: impl Into<PathBuf>) -> Options {
        Options {
            listen: listen.into(),
            data_dir: data_dir.into(),
            gateway_limits: chat_gateway::Limits {
                drain_window: EMBEDDED_DRAIN_WINDOW,
                ..chat_gateway::Limits::default()
            },
            recall_window: Duration::from_secs(120),
            presence_ttl: Duration::from_secs(30),
            redis_url: None,
            amqp_url: None,
            auth_database_url: None,
            message_database_url: None,
            namespace: Namespace::none(),
            admin_usernames: Vec::new(),
            login_throttle: chat_auth_service::throttle::ThrottleConfig::default(),
            jwt_keys: None,
        }
    }
}

/// A running system.
pub struct System {
    /// The gateway's HTTP and WebSocket address.
    pub addr: SocketAddr,
    pub auth_addr: SocketAddr,
    pub message_addr: SocketAddr,
    pub presence_addr: SocketAddr,
    /// The credential internal callers present.
    pub service_token: chat_common::Secret,
    shutdown: Shutdown,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl System {
    /// Stops every part and waits for them to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Runs until shutdown is requested or a part fails.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        while let Some(result) = self.tasks.join_next().await {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.shutdown.cancel();
                    return Err(e);
                }
                Err(e) => {
                    self.shutdown.cancel();
                    return Err(e).context("a part of the system panicked");
                }
            }
        }
        Ok(())
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }
}

async fn loopback() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Starts the system. Returns once every part listens; the first start on a
/// data directory creates its databases and secrets, later starts reuse them.
pub async fn start(options: Options, shutdown: Shutdown) -> anyhow::Result<System> {
    std::fs::create_dir_all(&options.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            options.data_dir.display()
        )
    })?;
    let jwt_keys = match &options.jwt_keys {
        Some(keys) => keys.clone(),
        None => load_or_create_secret(&options.data_dir.join("jwt-secret"))?.into(),
    };
    let service_token = load_or_create_secret(&options.data_dir.join("service-token"))?;
    let backends = Backends::connect(
        options.redis_url.as_deref(),
        options.amqp_url.as_deref(),
        &options.namespace,
    )
    .await?;
    let presence_store: Arc<dyn PresenceStore> = match &options.redis_url {
        Some(url) => Arc::new(RedisStore::connect(url, options.namespace.key_prefix()).await?),
        None => Arc::new(MemoryStore::default()),
    };

    let gateway_listener = TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = gateway_listener.local_addr()?;
    let (auth_listener, auth_addr) = loopback().await?;
    let (message_listener, message_addr) = loopback().await?;
    let (presence_listener, presence_addr) = loopback().await?;

    // The services stop once the gateway has drained, so that requests
    // and sockets it still serves meanwhile reach them.
    let services_shutdown = Shutdown::new();
    let mut tasks = JoinSet::new();
    let auth = chat_auth_service::Config {
        access_token_ttl_s: 900,
        refresh_token_ttl_s: 30 * 24 * 3600,
        admin_usernames: options.admin_usernames.clone(),
        login_throttle: options.login_throttle,
        pubsub: backends.pubsub.clone(),
        jwt_keys: jwt_keys.clone(),
        ..chat_auth_service::Config::new(
            options
                .auth_database_url
                .clone()
                .unwrap_or_else(|| sqlite_url(&options.data_dir, "auth.db")),
            jwt_keys.secret.clone(),
            service_token.clone(),
        )
    };
    tasks.spawn(chat_auth_service::serve(
        auth,
        auth_listener,
        services_shutdown.clone(),
    ));

    let message = chat_message_service::Config {
        database_url: options
            .message_database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&options.data_dir, "message.db")),
        service_token: service_token.clone(),
        backends: backends.clone(),
        recall_window: options.recall_window,
        max_text_chars: 4000,
        max_attachment_bytes: options.gateway_limits.max_attachment_bytes,
        auth_addr: format!("http://{auth_addr}"),
        grpc_tls: None,
        auth_tls: None,
    };
    tasks.spawn(chat_message_service::serve(
        message,
        message_listener,
        services_shutdown.clone(),
    ));

    let presence = chat_presence_service::Config {
        service_token: service_token.clone(),
        backends: backends.clone(),
        connection_ttl: options.presence_ttl,
        sweep_interval: Duration::from_secs(1),
        auth_addr: format!("http://{auth_addr}"),
        grpc_tls: None,
        auth_tls: None,
    };
    tasks.spawn(chat_presence_service::serve_with_store(
        presence,
        presence_store,
        presence_listener,
        services_shutdown.clone(),
    ));

    let gateway = chat_gateway::Config {
        gateway_id: "embedded".to_owned(),
        auth_addr: format!("http://{auth_addr}"),
        message_addr: format!("http://{message_addr}"),
        presence_addr: format!("http://{presence_addr}"),
        // In-process, over loopback only: nothing to protect in transit.
        grpc_tls: None,
        jwt_keys,
        service_token: service_token.clone(),
        backends,
        allowed_origins: Vec::new(),
        trust_forwarded_for: false,
        limits: options.gateway_limits.clone(),
    };
    let gateway = chat_gateway::serve(gateway, gateway_listener, shutdown.clone());
    tasks.spawn(async move {
        // Cancels when the gateway ends, however it ends.
        let _stop_services = services_shutdown.drop_guard();
        gateway.await
    });

    Ok(System {
        addr,
        auth_addr,
        message_addr,
        presence_addr,
        service_token,
        shutdown,
        tasks,
    })
}
