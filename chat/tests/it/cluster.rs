//! The distributed topology as separate processes, started by
//! `scripts/cluster`: auth-, message- and presence-service and gateway
//! replicas, on the shared PostgreSQL, Redis and RabbitMQ or on private
//! instances of them ([`OwnRedis`], [`OwnPostgres`], [`OwnRabbit`]) that a
//! test may stop, pause and restart without disturbing other tests.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_common::Namespace;
use chat_common::bus_rabbitmq::RabbitBus;

use crate::support::{Api, servers_missing};

/// Short, so that presence settles quickly after a gateway dies.
pub const PRESENCE_TTL_S: u64 = 3;

pub const SHARED_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379";
pub const SHARED_AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// True when the test must be skipped for want of PostgreSQL, Redis and
/// RabbitMQ, or of one of `binaries`; an error when `CI` is set.
pub fn skip_without(test: &str, binaries: &[&str]) -> anyhow::Result<bool> {
    let mut missing: Vec<String> = servers_missing()
        .into_iter()
        .map(|s| format!("{s} on 127.0.0.1"))
        .collect();
    for binary in binaries {
        // Looked up rather than run: `rabbitmq-server --version` would start
        // a node.
        let found = Command::new("which")
            .arg(binary)
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push((*binary).to_owned());
        }
    }
    if missing.is_empty() {
        return Ok(false);
    }
    if std::env::var_os("CI").is_some() {
        bail!("{test}: {missing:?} missing; start and install them as .ci/run does (see STACK.md)");
    }
    eprintln!("SKIP {test}: {missing:?} missing (set CI=1 to make this a failure)");
    Ok(true)
}

/// A port nothing listens on now (the kernel hands out ephemeral ports at
/// random, so it is very unlikely to be taken before the cluster binds it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The first of two free consecutive ports, for the two gateways.
fn free_consecutive_ports() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = first.local_addr()?.port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no two free consecutive ports")
}

/// Sends `signal` (`KILL`, `TERM`, `STOP`, `CONT`) to process `pid`.
pub fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// The pid of the process listening on 127.0.0.1:`port`, from `ss`.
fn listener_pid(port: u16) -> Option<u32> {
    let output = Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (_, rest) = text.split_once("pid=")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Waits until `port` is held by a process `ours` accepts (given its pid).
/// A port found free may be taken by another program before our server
/// binds it; then the server fails to start while a readiness probe would
/// be answered by the other program, so owning the port is what counts.
fn wait_until_held(
    what: &str,
    port: u16,
    wait: Duration,
    ours: impl Fn(u32) -> bool,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match listener_pid(port) {
            Some(pid) if ours(pid) => return Ok(()),
            Some(pid) if std::time::Instant::now() > deadline - wait / 2 => {
                bail!("port {port} meant for {what} is held by another process ({pid})")
            }
            _ => {}
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on {port} within {wait:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where the cluster's services find their servers.
#[derive(Debug, Clone)]
pub struct Servers {
    pub postgres: String,
    pub redis: String,
    pub amqp: String,
}

impl Default for Servers {
    fn default() -> Servers {
        Servers {
            postgres: SHARED_POSTGRES.to_owned(),
            redis: SHARED_REDIS.to_owned(),
            amqp: SHARED_AMQP.to_owned(),
        }
    }
}

pub struct Cluster {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    pub gateways: Vec<Api>,
    pub servers: Servers,
    databases: [String; 2],
    pub namespace: Namespace,
    /// Gateways started by the test itself ([`Cluster::start_gateway`]),
    /// by number, so that it sees how they exit.
    own: std::sync::Mutex<Vec<(usize, tokio::process::Child)>>,
}

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

impl Cluster {
    /// Two gateways on the shared servers.
    pub async fn up() -> anyhow::Result<Cluster> {
        Cluster::up_with(Servers::default()).await
    }

    pub async fn up_with(servers: Servers) -> anyhow::Result<Cluster> {
        Cluster::up_with_env(servers, Vec::new()).await
    }

    /// With `extra` settings of `scripts/cluster` (e.g. `GRPC_TLS=1`).
    pub async fn up_with_env(
        servers: Servers,
        extra: Vec<(String, String)>,
    ) -> anyhow::Result<Cluster> {
        // A port found free may be taken by another test's process before
        // the cluster binds it (scripts/cluster checks that each process
        // holds its own ports): more tries with fresh ports (a failed
        // attempt's processes and databases go with its `Drop`).
        let mut attempt = 1;
        loop {
            match Cluster::start(servers.clone(), extra.clone()).await {
                Ok(cluster) => return Ok(cluster),
                Err(error) if attempt < 3 => {
                    eprintln!("the cluster did not start, trying again: {error:#}");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn start(servers: Servers, extra: Vec<(String, String)>) -> anyhow::Result<Cluster> {
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let namespace = Namespace::new(&format!("test{suffix}"))?;
        let base_port = free_consecutive_ports()?;
        let [auth_port, message_port, presence_port] = [free_port()?, free_port()?, free_port()?];
        let metrics_ports = [free_port()?, free_port()?, free_port()?];
        let dir = tempfile::tempdir()?;
        let databases = [
            format!("chat_auth_{suffix}"),
            format!("chat_message_{suffix}"),
        ];
        let mut env = vec![
            ("CLUSTER_DIR".to_owned(), dir.path().display().to_string()),
            ("GATEWAYS".to_owned(), "2".to_owned()),
            ("BASE_PORT".to_owned(), base_port.to_string()),
            ("AUTH_PORT".to_owned(), auth_port.to_string()),
            ("MESSAGE_PORT".to_owned(), message_port.to_string()),
            ("PRESENCE_PORT".to_owned(), presence_port.to_string()),
            ("AUTH_METRICS_PORT".to_owned(), metrics_ports[0].to_string()),
            (
                "MESSAGE_METRICS_PORT".to_owned(),
                metrics_ports[1].to_string(),
            ),
            (
                "PRESENCE_METRICS_PORT".to_owned(),
                metrics_ports[2].to_string(),
            ),
            ("PRESENCE_TTL_S".to_owned(), PRESENCE_TTL_S.to_string()),
            ("AUTH_DATABASE".to_owned(), databases[0].clone()),
            ("MESSAGE_DATABASE".to_owned(), databases[1].clone()),
            ("CHAT_NAMESPACE".to_owned(), namespace.to_string()),
            ("DATABASE_BASE_URL".to_owned(), servers.postgres.clone()),
            ("REDIS_URL".to_owned(), servers.redis.clone()),
            ("AMQP_URL".to_owned(), servers.amqp.clone()),
        ];
        env.extend(extra);
        let output = tokio::process::Command::new(script())
            .arg("up")
            .envs(env.clone())
            .output()
            .await?;
        let mut cluster = Cluster {
            dir,
            env,
            gateways: Vec::new(),
            servers,
            databases,
            namespace,
            own: std::sync::Mutex::new(Vec::new()),
        };
        if !output.status.success() {
            bail!(
                "scripts/cluster up failed: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                cluster.logs()
            );
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if let Some(url) = line
                .strip_prefix("gateway ")
                .and_then(|l| l.split_whitespace().nth(1))
            {
                cluster.gateways.push(Api::new(vec![url.to_owned()])?);
            }
        }
        anyhow::ensure!(
            cluster.gateways.len() == 2,
            "expected two gateways: {output:?}"
        );
        Ok(cluster)
    }

    /// The first and last lines of each process's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in [
            "auth-service",
            "message-service",
            "presence-service",
            "gateway-1",
            "gateway-2",
            "gateway-3",
        ] {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            // The first lines hold start-up errors, the last ones the end.
            let lines: Vec<&str> = log.lines().collect();
            let shown = if lines.len() <= 25 {
                lines.join("\n")
            } else {
                format!(
                    "{}\n...\n{}",
                    lines[..10].join("\n"),
                    lines[lines.len() - 15..].join("\n")
                )
            };
            out.push_str(&format!("--- {name}\n{shown}\n"));
        }
        out
    }

    /// Copies the processes' logs to a directory under the target
    /// directory that outlives the test, and names it.
    pub fn keep_logs(&self) -> anyhow::Result<std::path::PathBuf> {
        let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("cluster-logs")
            .join(self.namespace.to_string());
        std::fs::create_dir_all(&kept)?;
        for entry in std::fs::read_dir(self.dir.path())? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log")
                && let Some(name) = path.file_name()
            {
                std::fs::copy(&path, kept.join(name))?;
            }
        }
        Ok(kept)
    }

    /// The pid of `process` (`gateway-1`, `message-service`, ...) as
    /// `scripts/cluster` started it.
    pub fn pid(&self, process: &str) -> anyhow::Result<u32> {
        let pid = std::fs::read_to_string(self.dir.path().join(format!("{process}.pid")))?;
        pid.trim()
            .parse()
            .with_context(|| format!("bad pid file of {process}: {pid:?}"))
    }

    pub fn kill_gateway(&self, n: usize) -> anyhow::Result<()> {
        signal(self.pid(&format!("gateway-{n}"))?, "KILL")
    }

    /// A setting the cluster was started with.
    pub fn setting(&self, key: &str) -> anyhow::Result<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .with_context(|| format!("no {key} in the cluster's settings"))
    }

    /// The service token the cluster's processes share.
    pub fn service_token(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(
            self.dir.path().join("service-token"),
        )?)
    }

    /// The URL of message-service's database.
    pub fn message_database_url(&self) -> String {
        format!("{}/{}", self.servers.postgres, self.databases[1])
    }

    /// Starts gateway replica `n` as a child of the test, configured as
    /// `scripts/cluster` configures its gateways (the binary it built, the
    /// secrets it generated) and with `drain_window_s`.
    pub async fn start_gateway(&self, n: usize, drain_window_s: &str) -> anyhow::Result<Api> {
        // The test binary is target/<profile>/deps/it-*; the script built
        // the gateway into target/<profile>.
        let bins = std::env::current_exe()?
            .parent()
            .and_then(std::path::Path::parent)
            .context("no target directory")?
            .to_owned();
        let secret = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        let port = free_port()?;
        let log = std::fs::File::create(self.dir.path().join(format!("gateway-{n}.log")))?;
        let service = |key: &str| -> anyhow::Result<String> {
            Ok(format!("http://127.0.0.1:{}", self.setting(key)?))
        };
        let child = tokio::process::Command::new(bins.join("gateway"))
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("GATEWAY_ID", format!("gateway-{n}"))
            .env("AUTH_ADDR", service("AUTH_PORT")?)
            .env("MESSAGE_ADDR", service("MESSAGE_PORT")?)
            .env("PRESENCE_ADDR", service("PRESENCE_PORT")?)
            .env("JWT_SECRET", secret("jwt-secret")?)
            .env("SERVICE_TOKEN", secret("service-token")?)
            .env("REDIS_URL", &self.servers.redis)
            .env("CHAT_NAMESPACE", self.namespace.to_string())
            .env(
                "PRESENCE_HEARTBEAT_MS",
                (PRESENCE_TTL_S * 1000 / 3).to_string(),
            )
            .env("DRAIN_WINDOW_S", drain_window_s)
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the gateway binary")?;
        let pid = child.id();
        self.own
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((n, child));
        let held = tokio::task::spawn_blocking(move || {
            wait_until_held("gateway", port, Duration::from_secs(30), |p| Some(p) == pid)
        });
        held.await??;
        let api = Api::new(vec![format!("http://127.0.0.1:{port}")])?;
        api.wait_ready().await?;
        Ok(api)
    }

    /// Sends SIGTERM to gateway `n` of [`Cluster::start_gateway`]; hands
    /// back the process to wait for.
    pub fn terminate_gateway(&self, n: usize) -> anyhow::Result<tokio::process::Child> {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        let i = own
            .iter()
            .position(|(m, _)| *m == n)
            .with_context(|| format!("gateway {n} was not started by the test"))?;
        let (_, child) = own.swap_remove(i);
        let pid = child.id().context("gateway already exited")?;
        signal(pid, "TERM")?;
        Ok(child)
    }

    /// Stops the processes, then removes what they left on the shared
    /// servers (private ones go with their directories).
    pub async fn down(self) -> anyhow::Result<()> {
        self.stop_processes();
        if self.servers.amqp == SHARED_AMQP {
            let bus = RabbitBus::connect(SHARED_AMQP, &self.namespace).await?;
            bus.delete_queue(chat_presence_service::NOTIFICATION_QUEUE)
                .await?;
            bus.delete_exchange().await?;
        }
        if self.servers.redis == SHARED_REDIS {
            let client = redis::Client::open(SHARED_REDIS)?;
            let mut redis = client.get_multiplexed_async_connection().await?;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.namespace.key_prefix()))
                .query_async(&mut redis)
                .await?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(keys)
                    .query_async::<i64>(&mut redis)
                    .await?;
            }
        }
        // The databases are dropped by `Drop`.
        Ok(())
    }

    fn stop_processes(&self) {
        let _ = Command::new(script())
            .arg("down")
            .envs(self.env.clone())
            .output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_processes();
        if self.servers.postgres == SHARED_POSTGRES {
            for db in &self.databases {
                let _ = Command::new("psql")
                    .args([
                        &format!("{SHARED_POSTGRES}/postgres"),
                        "-qc",
                        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                    ])
                    .output();
            }
        }
    }
}

/// A `redis-server` of the test's own, so it can be stopped, paused and
/// started without disturbing other tests.
pub struct OwnRedis {
    pub port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    pub fn start(port: u16) -> anyhow::Result<OwnRedis> {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("redis-server not found")?;
        let pid = child.id();
        // Dropped on failure: the server is killed.
        let redis = OwnRedis { port, child };
        wait_until_held("redis-server", port, Duration::from_secs(10), |p| p == pid)?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        // A paused server does not die of SIGKILL until it is continued.
        let _ = signal(self.child.id(), "CONT");
        self.stop();
    }
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL cluster of the test's own in a temporary directory, run as
/// the `postgres` OS user with trust authentication on a free port.
pub struct OwnPostgres {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl OwnPostgres {
    pub fn pg_ctl() -> String {
        format!("{PG_BIN}/pg_ctl")
    }

    fn as_postgres(program: &str, args: &[&str]) -> anyhow::Result<()> {
        let output = Command::new("runuser")
            .args(["-u", "postgres", "--", program])
            .args(args)
            .output()
            .with_context(|| format!("cannot run {program} as postgres"))?;
        anyhow::ensure!(
            output.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    pub fn init() -> anyhow::Result<OwnPostgres> {
        let dir = tempfile::tempdir()?;
        let status = Command::new("chown")
            .args(["postgres", &dir.path().display().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "chown postgres failed");
        let data = dir.path().join("data").display().to_string();
        OwnPostgres::as_postgres(
            &format!("{PG_BIN}/initdb"),
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let postgres = OwnPostgres {
            port: free_port()?,
            dir,
        };
        postgres.start()?;
        Ok(postgres)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub fn start(&self) -> anyhow::Result<()> {
        let root = self.dir.path().display().to_string();
        // Durability across a power cut is not under test: fsync off.
        let options = format!(
            "-p {} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        OwnPostgres::as_postgres(
            &OwnPostgres::pg_ctl(),
            &[
                "-D",
                &format!("{root}/data"),
                "-l",
                &format!("{root}/log"),
                "-w",
                "-o",
                &options,
                "start",
            ],
        )
    }

    /// A fast shutdown: open sessions are ended, as in a restart for
    /// maintenance.
    pub fn stop(&self) -> anyhow::Result<()> {
        let root = self.dir.path().display().to_string();
        OwnPostgres::as_postgres(
            &OwnPostgres::pg_ctl(),
            &["-D", &format!("{root}/data"), "-m", "fast", "-w", "stop"],
        )
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let root = self.dir.path().display().to_string();
        let _ = OwnPostgres::as_postgres(
            &OwnPostgres::pg_ctl(),
            &[
                "-D",
                &format!("{root}/data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

/// A RabbitMQ node of the test's own (guest over loopback, no plugins), its
/// data in a temporary directory, so it can be stopped and started again
/// with its durable exchanges and queues.
pub struct OwnRabbit {
    pub port: u16,
    dist_port: u16,
    node: String,
    dir: tempfile::TempDir,
    running: bool,
}

impl OwnRabbit {
    pub fn start() -> anyhow::Result<OwnRabbit> {
        let dir = tempfile::tempdir()?;
        for sub in ["mnesia", "log"] {
            std::fs::create_dir(dir.path().join(sub))?;
        }
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n")?;
        // rabbitmq-server runs as the rabbitmq user.
        let status = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq", &dir.path().display().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "chown rabbitmq failed");
        let mut rabbit = OwnRabbit {
            port: free_port()?,
            dist_port: free_port()?,
            node: format!(
                "test{}@localhost",
                &uuid::Uuid::new_v4().simple().to_string()[..10]
            ),
            dir,
            running: false,
        };
        rabbit.restart()?;
        Ok(rabbit)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the node (again) and waits until it takes AMQP connections.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let root = self.dir.path();
        let log = std::fs::File::create(root.join("server.out"))?;
        Command::new("rabbitmq-server")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", root.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", root.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                root.join("enabled_plugins"),
            )
            // Not the machine's own configuration.
            .env("RABBITMQ_CONFIG_FILE", root.join("none"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", root.join("none.config"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("rabbitmq-server not found")?;
        self.running = true;
        // rabbitmq-server is a script; the listener is the node's Erlang VM,
        // which inherited the node name set here.
        let node = format!("RABBITMQ_NODENAME={}", self.node);
        let ours = move |pid: u32| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| String::from_utf8_lossy(&environ).contains(&node))
        };
        wait_until_held("rabbitmq-server", self.port, Duration::from_secs(60), ours)
            .with_context(|| std::fs::read_to_string(root.join("server.out")).unwrap_or_default())
    }

    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.running = false;
        let output = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "rabbitmqctl stop: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }
}

impl Drop for OwnRabbit {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop();
        }
    }
}
