//! `tether sessions`: the running daemon's sessions. Never starts a daemon: none running means
//! no sessions.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use tether::{
    discovery::{self, Found, Paths},
    server::api::{SessionList, SessionState},
};

/// `tether sessions`.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Print the `session.list` result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `tether sessions`.
pub async fn run(args: SessionsArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env().context("cannot find the state dir")?;
    let list = match discovery::find(&paths).await? {
        Found::Live(info, _) => {
            let client = discovery::connect(&info).await?;
            discovery::call::<SessionList>(&client, "session.list", serde_json::json!({})).await?
        }
        Found::Stale(..) | Found::Missing => SessionList {
            sessions: Vec::new(),
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.sessions.is_empty() {
        println!("tether: no sessions");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<32} {:<16} {:<10} {:>6}  PROGRAM",
        "ID", "TARGET", "NAMESPACE", "STATE", "LAYERS"
    );
    for s in &list.sessions {
        let state = match s.state {
            SessionState::Starting => "starting",
            SessionState::Ready => "ready",
            SessionState::Lingering => "lingering",
            SessionState::Ended => "ended",
        };
        println!(
            "{:<16} {:<32} {:<16} {:<10} {:>6}  {}",
            s.id,
            s.target,
            s.namespace.as_deref().unwrap_or("-"),
            state,
            s.layers,
            s.program.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}
