//! `tether exec [-f CONFIG] [--target T] [-n NS] -- CMD ARGS...`: runs a command as if inside the
//! target pod. Without `--agent` the session comes from the daemon, which starts (or reuses) the
//! agent next to the target, as for the IDEs (`exec_daemon.rs`). With `--agent ADDR [--token T]`
//! it talks to an agent that already runs (the direct form, for tests and demos; the daemon reuses
//! the same code path in [`tether::session::launch`]).
//!
//! Exit code: the command's own, or 128 + the signal that killed it; 1 when tether itself fails
//! (bad config, static executable, unreachable agent); 2 for usage errors.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tether::agent_link::LinkOptions;
use tether::session::launch::{self, ExecOptions};
use tether::session::{ListenKind, SessionOptions};
use tether_config::{EnvMap, load, resolve_config_path};

use super::config_flags::ConfigFlags;

#[path = "exec_daemon.rs"]
mod daemon_path;

/// `tether exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Config file. Default: `$TETHER_CONFIG_FILE`, then `.tether/tether.{json,toml,yaml}`, then
    /// `.mirrord/mirrord.{json,toml,yaml}` in this directory or the nearest parent having one.
    #[arg(short = 'f', long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Address (`HOST:PORT`) of a running tether-agent next to the target.
    #[arg(long, value_name = "ADDR")]
    pub agent: Option<String>,
    /// The agent's session token.
    #[arg(
        long,
        env = "TETHER_AGENT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// No start-up progress on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Serve the session on 127.0.0.1 TCP instead of a private unix socket.
    #[arg(long)]
    pub tcp_session: bool,
    /// The layer library. Default: `$TETHER_LAYER_PATH`, then `libtether_layer.so` next to this
    /// binary.
    #[arg(long, value_name = "FILE")]
    pub layer: Option<PathBuf>,
    #[command(flatten)]
    pub flags: ConfigFlags,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Runs `tether exec`.
pub async fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();

    let Some(agent_addr) = args.agent.clone() else {
        // No agent given: the daemon starts (or reuses) one next to the target.
        if args.tcp_session {
            anyhow::bail!(
                "exec: --tcp-session applies to --agent sessions only\n  help: a daemon session serves its layers itself"
            );
        }
        let code = daemon_path::run(daemon_path::DaemonExec {
            config_file: args.config_file,
            flags: args.flags.clone(),
            layer: args.layer,
            command: args.command,
            progress: !args.quiet,
        })
        .await?;
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    };
    let Some(token) = args.token.clone() else {
        anyhow::bail!("exec: no agent token\n  help: pass --token or set TETHER_AGENT_TOKEN");
    };

    let env: EnvMap = std::env::vars().collect();
    let cwd = std::env::current_dir().context("exec: cannot read the working directory")?;
    let source = resolve_config_path(&cwd, args.config_file.as_deref(), &env);
    let verified = match load(source.path(), &env, &args.flags.overrides()) {
        Ok(v) => v,
        Err(errs) => {
            for d in errs.errors.iter().chain(&errs.warnings) {
                eprintln!("tether: {d}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    for w in &verified.warnings {
        eprintln!("tether: {w}");
    }
    let cfg = &verified.config;

    let opts = ExecOptions {
        agent_addr,
        agent_token: token,
        command: args.command,
        options: SessionOptions::from_config(cfg),
        env: cfg.feature.env.clone(),
        layer: args.layer,
        listen: if args.tcp_session {
            ListenKind::Tcp
        } else {
            ListenKind::Unix
        },
        linger: Duration::from_millis(500),
        link: LinkOptions::default(),
    };
    let code = launch::exec(opts).await?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
