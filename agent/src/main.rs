//! tether-agent: serves the agent protocol from inside a target pod's namespaces.
//!
//! Code map:
//! - [`target`]: the target process (PID, liveness through a pidfd, root dir, hostname) and
//!   [`runtime`] resolution of a container id to that PID (containerd, CRI-O, Docker, test node).
//! - [`netns`]: a thread parked in the target's network namespace that creates sockets there.
//! - [`server`] and [`session`]: the TCP listener, the hello handshake, one task per session
//!   that dispatches requests concurrently, the idle TTL.
//! - [`env`], [`files`], [`dns`], [`outgoing`]: the operations.
//! - [`incoming`]: port subscriptions (iptables REDIRECT, mirror, steal), shared by all sessions.
//!
//! **Architecture invariant:** every path the agent touches is resolved inside the target's root
//! ([`files::resolve`]), and every socket it opens on a session's behalf is created in the
//! target's network namespace ([`netns::NetNs`]). The token never appears in argv or logs.

mod dns;
mod env;
mod errors;
mod files;
mod incoming;
mod netns;
mod outgoing;
mod runtime;
mod server;
mod session;
mod target;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use crate::runtime::RuntimeKind;

/// Environment variable that carries the session token (never a command-line argument, which
/// any user on the node could read from /proc).
pub const TOKEN_ENV: &str = "TETHER_AGENT_TOKEN";

/// Serves tether sessions from inside a target pod's namespaces.
#[derive(Debug, Parser)]
#[command(name = "tether-agent", version)]
struct Cli {
    /// PID of the target process, as the agent sees it.
    #[arg(
        long,
        required_unless_present = "container_id",
        conflicts_with = "container_id"
    )]
    target_pid: Option<u32>,
    /// Container id of the target, optionally prefixed with its runtime
    /// (`containerd://..`, `cri-o://..`, `docker://..`, `tether-test://..`).
    #[arg(long)]
    container_id: Option<String>,
    /// Container runtime to ask for the container's PID.
    #[arg(long, value_enum, default_value = "auto")]
    runtime: RuntimeKind,
    /// Address to serve the agent protocol on.
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Exit after this many seconds without any session (0: never).
    #[arg(long, default_value_t = 60)]
    ttl: u64,
    /// Id of this agent, used in names it creates (iptables chains). Random by default.
    #[arg(long)]
    agent_id: Option<String>,
}

fn main() -> std::process::ExitCode {
    // `tether-agent guard ...`: the process incoming traffic starts to remove its iptables rules
    // once the agent is gone (see `incoming::guard`); it needs no token and no runtime.
    if std::env::args_os().nth(1).is_some_and(|a| a == "guard") {
        return incoming::guard::main(std::env::args_os().skip(2));
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TETHER_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
    // SAFETY: no other thread exists yet (the runtime is built below), so nothing reads the
    // environment concurrently. Removing the token keeps it out of every child's environment.
    unsafe { std::env::remove_var(TOKEN_ENV) };
    let Some(token) = token else {
        eprintln!(
            "tether-agent: no session token: {TOKEN_ENV} is unset or empty\n  help: start the agent with {TOKEN_ENV} set to the session token"
        );
        return std::process::ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tether-agent")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether-agent: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli, token)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tether-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, token: String) -> anyhow::Result<()> {
    let pid = match (cli.target_pid, &cli.container_id) {
        (Some(pid), _) => pid,
        (None, Some(id)) => runtime::container_pid(cli.runtime, id)
            .await
            .with_context(|| format!("cannot find the PID of container {id}"))?,
        (None, None) => bail!("give --target-pid or --container-id"),
    };
    let target = Arc::new(
        target::Target::open(pid).with_context(|| format!("cannot use target process {pid}"))?,
    );
    let agent_id = cli.agent_id.unwrap_or_else(random_agent_id);
    tracing::info!(
        pid,
        agent_id,
        hostname = target.hostname(),
        root = %target.root_path().display(),
        netns = %target.netns().path().display(),
        "target found"
    );
    let incoming = Arc::new(
        incoming::Incoming::new(target.clone(), agent_id.clone())
            .map_err(|e| anyhow::anyhow!("cannot set up incoming traffic: {e}"))?,
    );
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let addr = listener.local_addr().context("listener address")?;
    {
        // The one line parents parse; flushed before anything else can happen.
        let mut out = std::io::stdout().lock();
        writeln!(out, "tether-agent listening on {addr}").context("write to stdout")?;
        out.flush().context("flush stdout")?;
    }
    let shared = Arc::new(server::Shared::new(target, incoming, token));
    server::serve(listener, shared, Duration::from_secs(cli.ttl)).await;
    tracing::info!("idle for {}s with no session, exiting", cli.ttl);
    Ok(())
}

fn random_agent_id() -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random();
    format!("{n:08x}")
}
