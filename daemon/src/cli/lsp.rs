//! `tether lsp`: the language server for config files, on stdin/stdout (see `tether::lsp`).
//!
//! Logs go to stderr (editors show them in the server's output panel), never to stdout, which
//! carries the protocol. `RUST_LOG` sets the level (default `warn`).

use std::process::ExitCode;

/// Serves until the client sends `exit` or closes stdin.
pub async fn run() -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Another subscriber already set (never in this binary) is not worth failing over.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    tether::lsp::run_stdio().await;
    // A read of stdin may still be pending on a blocking thread (the client need not close it
    // after `exit`); the runtime would wait for it forever. Everything is written by now.
    std::process::exit(0)
}
