//! `loadgen`: a load generator for the chat gateway. It speaks the client
//! protocol (PROTOCOL.md) as real clients do — register or log in over
//! HTTP, WebSocket with `Authorization: Bearer`, send, receive — and runs
//! the benchmark scenarios of BENCHMARKS.md, each bounded in count and
//! time, producing a [`Report`].

pub mod api;
pub mod cli;
pub mod net;
pub mod protocol;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod sys;
mod traffic;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

pub use cli::{Cli, Command};
pub use report::{Phase, Report};

use crate::api::{Api, User};
use crate::cli::Common;
use crate::net::{Connector, Gateway, SourceIps};

/// What makes the gateway restart in the `storm` scenario, run once every
/// client is ready. The binary builds one from `--restart-cmd`; a test can
/// restart an in-process system.
pub type Trigger = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Runs a scenario; `storm` restarts the gateway with `--restart-cmd`.
pub async fn run(command: Command) -> anyhow::Result<Report> {
    run_with_trigger(command, None).await
}

/// Runs a scenario; `storm` uses `trigger`, when given, to restart the
/// gateway instead of `--restart-cmd`.
pub async fn run_with_trigger(
    command: Command,
    trigger: Option<Trigger>,
) -> anyhow::Result<Report> {
    let nofile = sys::raise_nofile_limit();
    let started_at = chrono::Utc::now().to_rfc3339();
    let (scenario, parameters, phases) = match &command {
        Command::Idle(args) => (
            "idle",
            serde_json::to_value(args)?,
            scenario::idle::run(args).await?,
        ),
        Command::Fanout(args) => (
            "fanout",
            serde_json::to_value(args)?,
            scenario::fanout::run(args, false).await?,
        ),
        Command::E2e(args) => (
            "e2e",
            serde_json::to_value(args)?,
            scenario::fanout::run(args, true).await?,
        ),
        Command::Sends(args) => (
            "sends",
            serde_json::to_value(args)?,
            scenario::sends::run(args).await?,
        ),
        Command::History(args) => (
            "history",
            serde_json::to_value(args)?,
            scenario::history::run(args).await?,
        ),
        Command::Storm(args) => (
            "storm",
            serde_json::to_value(args)?,
            scenario::storm::run(args, trigger).await?,
        ),
    };
    Ok(Report {
        scenario: scenario.to_owned(),
        parameters,
        started_at,
        finished_at: chrono::Utc::now().to_rfc3339(),
        loadgen: report::LoadgenInfo {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            nofile,
            rss_bytes: sys::rss_bytes(std::process::id()).ok(),
        },
        phases,
    })
}

/// What every scenario sets up from the common flags: the HTTP client,
/// the WebSocket connector, and where its accounts and rooms come from.
pub(crate) struct Env {
    pub common: Common,
    pub api: Api,
    pub connector: Arc<Connector>,
    /// The gateways' HTTP base URLs, in --gateway order.
    pub bases: Vec<String>,
    pub step: Duration,
    /// Texts of this run start with it.
    pub tag: String,
}

impl Env {
    pub async fn new(common: &Common) -> anyhow::Result<Env> {
        if common.gateways.is_empty() {
            bail!("give at least one --gateway");
        }
        if !(common.step_timeout_s > 0.0 && common.step_timeout_s.is_finite()) {
            bail!("--step-timeout-s must be a positive number of seconds");
        }
        let step = Duration::from_secs_f64(common.step_timeout_s);
        let mut gateways = Vec::new();
        for url in &common.gateways {
            gateways.push(Gateway::resolve(url).await?);
        }
        let sources = common
            .source_ips
            .as_deref()
            .map(str::parse::<SourceIps>)
            .transpose()
            .context("--source-ips")?;
        let bases = gateways.iter().map(|g| g.http.clone()).collect();
        Ok(Env {
            api: Api::new(step, common.http_concurrency)?,
            connector: Arc::new(Connector::new(
                gateways,
                sources,
                common.connect_rate,
                step,
            )?),
            bases,
            step,
            tag: common.tag.clone().unwrap_or_else(protocol::new_tag),
            common: common.clone(),
        })
    }

    /// `count` accounts (registered or logged in), or dummy tokens with
    /// --raw-ws.
    pub async fn users(&self, count: usize) -> anyhow::Result<Vec<User>> {
        if self.common.raw_ws {
            return Ok((0..count)
                .map(|i| User {
                    id: format!("raw-{i}"),
                    token: format!("raw-{i}"),
                })
                .collect());
        }
        let prefix = match &self.common.user_prefix {
            Some(prefix) => prefix.clone(),
            // Unique per run; usernames are at most 32 characters.
            None => format!("{}_", &self.tag[..self.tag.len().min(12)]),
        };
        self.api
            .users(&self.bases, &prefix, count, self.common.http_concurrency)
            .await
            .context("setting up accounts")
    }

    /// A room all of `users` are members of: --room (joined), or a new
    /// public room of `users[0]`. With --raw-ws: --room, default "bench".
    pub async fn room(&self, users: &[User], name: &str) -> anyhow::Result<String> {
        if self.common.raw_ws {
            return Ok(self
                .common
                .room
                .clone()
                .unwrap_or_else(|| "bench".to_owned()));
        }
        let owner = users.first().context("a room needs at least one user")?;
        let room = match &self.common.room {
            Some(room) => room.clone(),
            None => {
                self.api
                    .create_room(&self.bases[0], owner, &format!("{name} {}", self.tag))
                    .await?
            }
        };
        self.api
            .join_all(&self.bases, users, &room, self.common.http_concurrency)
            .await
            .context("joining the room")?;
        Ok(room)
    }
}

/// A non-negative, finite number of seconds from a flag.
pub(crate) fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value >= 0.0 && value.is_finite()) {
        bail!("{flag} must be a non-negative number of seconds");
    }
    Ok(Duration::from_secs_f64(value))
}
