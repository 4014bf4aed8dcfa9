//! `tether sessions`: the running daemon's sessions. Never starts a daemon: none running means
//! no sessions.

use std::process::ExitCode;

use super::ls::print_stdout;
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
        print_stdout(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.sessions.is_empty() {
        print_stdout("tether: no sessions\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "{:<16} {:<32} {:<16} {:<10} {:>6}  PROGRAM\n",
        "ID", "TARGET", "NAMESPACE", "STATE", "LAYERS"
    );
    for s in &list.sessions {
        let state = match s.state {
            SessionState::Starting => "starting",
            SessionState::Ready => "ready",
            SessionState::Lingering => "lingering",
            SessionState::Ended => "ended",
        };
        out.push_str(&format!(
            "{:<16} {:<32} {:<16} {:<10} {:>6}  {}\n",
            s.id,
            s.target,
            s.namespace.as_deref().unwrap_or("-"),
            state,
            s.layers,
            s.program.as_deref().unwrap_or("-")
        ));
    }
    print_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
