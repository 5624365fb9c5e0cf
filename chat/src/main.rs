//! `chat`: the whole system in one process, on SQLite. `cargo run --release`
//! at the repository root starts it.

use std::path::PathBuf;

use chat_common::Shutdown;
use clap::Parser;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chat_common::telemetry::init("chat");
    let args = Args::parse();
    let shutdown = Shutdown::new();
    chat_common::shutdown::cancel_on_signal(shutdown.clone());
    let mut system = chat::start(chat::Options::new(args.listen, &args.data_dir), shutdown).await?;
    let addr = system.addr;
    println!("chat is running, data in {}", args.data_dir.display());
    println!("  web and HTTP API: http://{addr}/api/v1");
    println!("  WebSocket:        ws://{addr}/ws");
    println!("  health:           http://{addr}/healthz");
    println!("Ctrl-C to stop.");
    system.wait().await
}
