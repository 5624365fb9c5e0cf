//! chatctl: the command-line client of the chat system's admin gRPC
//! services (`chat.auth.v1.AdminService`, `chat.message.v1.AdminService`,
//! `chat.presence.v1.AdminService`) and of every service's health.
//! `chatctl --help` lists the commands, the credentials and the exit codes.

mod cli;
mod client;
mod commands;
mod error;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::client::Clients;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match Clients::new(cli.global) {
        Ok(clients) => commands::run(&clients, cli.command).await,
        Err(failure) => Err(failure),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("chatctl: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

// The exit codes in `--help` are the ones `Failure::exit_code` returns.
#[cfg(test)]
mod tests {
    #[test]
    fn every_exit_code_is_documented() {
        for code in 0..=7 {
            assert!(
                crate::cli::EXIT_CODES.contains(&format!("\n  {code}  ")),
                "exit code {code} is not in the help"
            );
        }
    }
}
