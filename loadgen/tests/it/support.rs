//! The embedded chat system on port 0, with a per-connection frame rate
//! high enough for the senders of the scenarios.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use chat::{Options, System};
use chat_common::Shutdown;
use clap::Parser;

pub struct Running {
    pub system: System,
    pub dir: tempfile::TempDir,
    pub url: String,
}

pub fn options(listen: &str, dir: &std::path::Path) -> Options {
    let mut options = Options::new(listen, dir);
    // Senders here send faster than a person's 20 frames per second.
    options.gateway_limits.frames_per_second = 1000;
    options.gateway_limits.frame_burst = 1000;
    options
}

pub async fn start() -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let system = chat::start(options("127.0.0.1:0", dir.path()), Shutdown::new()).await?;
    let url = format!("http://{}", system.addr);
    wait_ready(system.addr).await?;
    Ok(Running { system, dir, url })
}

pub async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..500 {
        let ready = http.get(format!("http://{addr}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the gateway at {addr} did not become ready")
}

/// Parses a loadgen command line, as the binary would.
pub fn command(args: &[&str]) -> anyhow::Result<loadgen::Command> {
    let argv = std::iter::once("loadgen").chain(args.iter().copied());
    Ok(loadgen::Cli::try_parse_from(argv)
        .context("loadgen flags")?
        .command)
}
