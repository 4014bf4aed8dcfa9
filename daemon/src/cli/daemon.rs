//! `tether daemon start|stop|status`: the per-user daemon's lifecycle.
//!
//! Exit codes: 0 on success (including "already running" for `start` and "not running" for
//! `stop`), 3 from `status` when no daemon runs, 1 on errors.

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tether::{
    discovery::{self, Found, Paths},
    server::{self, DaemonOptions, RunOutcome, api::ShutdownResult},
};

/// `tether daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DaemonCommand,
}

/// `tether daemon` subcommands.
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Start the daemon unless one is running (detached, logging to the state dir).
    Start(StartArgs),
    /// Stop the running daemon and wait until it exits.
    Stop,
    /// Say whether a daemon runs, and where.
    Status(StatusArgs),
}

/// `tether daemon start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Run in this process instead of detaching (logs go to the log file, and to stderr when it
    /// is a terminal).
    #[arg(long)]
    pub foreground: bool,
}

/// `tether daemon status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print `daemon.info` as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `tether daemon ...`. Needs a multi-threaded tokio runtime.
pub async fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env().context("cannot find the state dir")?;
    match args.command {
        DaemonCommand::Start(a) if a.foreground => start_foreground(&paths).await,
        DaemonCommand::Start(_) => start_detached(&paths).await,
        DaemonCommand::Stop => stop(&paths).await,
        DaemonCommand::Status(a) => status(&paths, a.json).await,
    }
}

async fn start_detached(paths: &Paths) -> anyhow::Result<ExitCode> {
    if let Found::Live(info, _) = discovery::find(paths).await? {
        println!(
            "tether: daemon already running (pid {}, {})",
            info.pid, info.address
        );
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe().context("cannot find the tether executable")?;
    let (info, daemon) = discovery::spawn_daemon(paths, &exe)
        .await
        .context("cannot start the daemon")?;
    let log = daemon
        .log_file
        .map(|p| format!(", log {}", p.display()))
        .unwrap_or_default();
    println!(
        "tether: daemon running (pid {}, {}{log})",
        info.pid, info.address
    );
    Ok(ExitCode::SUCCESS)
}

/// Logs to the daemon's log file, and to stderr when it is a terminal.
fn init_daemon_logging(paths: &Paths) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    use tracing_subscriber::{
        EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
    };
    let path = paths.log_file();
    discovery::rotate_log(&path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    let filter =
        || EnvFilter::try_from_env("TETHER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let file_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .with_filter(filter());
    let stderr_layer = std::io::stderr().is_terminal().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    if tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .try_init()
        .is_err()
    {
        // The CLI already set a subscriber; keep it rather than fail.
        tracing::warn!(
            "logging was already set up; the daemon logs there instead of {}",
            path.display()
        );
    }
    Ok(())
}

async fn start_foreground(paths: &Paths) -> anyhow::Result<ExitCode> {
    paths
        .create_dirs()
        .with_context(|| format!("cannot create {}", paths.state_dir.display()))?;
    init_daemon_logging(paths)?;
    let options = DaemonOptions {
        log_file: Some(paths.log_file()),
        ..Default::default()
    };
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail in a fresh process");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let outcome = server::run_daemon(paths, options, stop, |info| {
        println!(
            "tether: daemon running (pid {}, {})",
            info.pid, info.address
        );
    })
    .await?;
    if let RunOutcome::AlreadyRunning(info) = outcome {
        println!(
            "tether: daemon already running (pid {}, {})",
            info.pid, info.address
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn stop(paths: &Paths) -> anyhow::Result<ExitCode> {
    match discovery::find(paths).await? {
        Found::Live(info, _) => {
            let client = discovery::connect(&info).await?;
            let r: ShutdownResult =
                discovery::call(&client, "daemon.shutdown", serde_json::json!({})).await?;
            drop(client);
            if !discovery::wait_exit(info.pid, Duration::from_secs(15)).await {
                anyhow::bail!(
                    "daemon (pid {}) did not exit within 15s\n  help: kill it with `kill {}`",
                    info.pid,
                    info.pid
                );
            }
            let ended = if r.sessions_ended > 0 {
                format!(", {} session(s) ended", r.sessions_ended)
            } else {
                String::new()
            };
            println!("tether: daemon stopped (pid {}{ended})", info.pid);
        }
        Found::Stale(info, why) => {
            // Holding the lock makes this process the only writer of the file.
            if let Some(_lock) = discovery::try_lock(paths)? {
                discovery::remove_if_ours(&paths.discovery_file(), info.pid);
            }
            println!("tether: daemon not running ({why}); removed its stale discovery file");
        }
        Found::Missing => println!("tether: daemon not running"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(paths: &Paths, json: bool) -> anyhow::Result<ExitCode> {
    let (text, code) = match discovery::find(paths).await? {
        Found::Live(_, daemon) if json => {
            (format!("{}\n", serde_json::to_string_pretty(&daemon)?), 0)
        }
        Found::Live(info, daemon) => {
            let mut t = String::from("tether: daemon running\n");
            t += &format!("  pid      {}\n", daemon.pid);
            t += &format!("  version  {}\n", daemon.version);
            t += &format!("  address  {}\n", info.address);
            t += &format!("  uptime   {}s\n", daemon.uptime_ms / 1000);
            if let Some(log) = &daemon.log_file {
                t += &format!("  log      {}\n", log.display());
            }
            t += &format!("  file     {}\n", paths.discovery_file().display());
            (t, 0)
        }
        Found::Stale(_, why) => (format!("tether: daemon not running ({why})\n"), 3),
        Found::Missing => ("tether: daemon not running\n".to_owned(), 3),
    };
    super::ls::print_stdout(&text)?;
    Ok(ExitCode::from(code))
}
