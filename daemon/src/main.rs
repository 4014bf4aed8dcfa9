//! The `tether` binary: parses the command line and dispatches to `cli/<subcommand>.rs`.
//!
//! Exit codes: 0 success; 1 failure (an invalid config, an unreachable cluster, ...); 2 usage
//! error (clap). Errors go to stderr as one `tether: context: cause` line.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run a local process as if inside a Kubernetes pod.
#[derive(Debug, Parser)]
#[command(name = "tether", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring up the test cluster and run a sample app as if inside its demo pod (needs root).
    Demo(cli::demo::DemoArgs),
    /// Check a config file and print its errors and warnings with line and column.
    VerifyConfig(cli::verify_config::VerifyConfigArgs),
    /// Print the config file's JSON Schema.
    Schema,
    /// Start, stop or inspect the per-user daemon.
    Daemon(cli::daemon::DaemonArgs),
    /// List the targets of a namespace.
    Ls(cli::ls::LsArgs),
    /// List the running daemon's sessions.
    Sessions(cli::sessions::SessionsArgs),
    /// Run a command as if inside the target pod (through a running agent: --agent ADDR).
    Exec(cli::exec::ExecArgs),
    /// Serve the language server for config files on stdin/stdout (for editors).
    Lsp,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cli::demo::run(args),
        Command::VerifyConfig(args) => cli::verify_config::run(args),
        Command::Schema => cli::schema::run(),
        Command::Daemon(args) => block_on(cli::daemon::run(args)),
        Command::Ls(args) => block_on(cli::ls::run(args)),
        Command::Sessions(args) => block_on(cli::sessions::run(args)),
        Command::Exec(args) => block_on(cli::exec::run(args)),
        Command::Lsp => block_on(cli::lsp::run()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs an async subcommand on a multi-threaded runtime (only those subcommands pay for one).
fn block_on(
    f: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?
        .block_on(f)
}
