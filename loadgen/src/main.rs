//! `loadgen`: see `loadgen --help` and BENCHMARKS.md.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = loadgen::Cli::parse();
    let out = cli.command.common().out.clone();
    let report = loadgen::run(cli.command).await?;
    if let Some(path) = &out {
        report
            .write_json(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", report.summary());
    Ok(())
}
