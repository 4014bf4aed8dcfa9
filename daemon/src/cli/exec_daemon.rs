//! `tether exec --target ...` (no `--agent`): the session comes from the daemon, as the IDEs get
//! it. Ensure the daemon runs, `session.start` (the daemon starts or reuses the agent next to the
//! target), show its progress events, spawn the command with the returned env, and stop the
//! session when the command (and every child still connected) is done.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use jsonrpsee::{
    core::client::{ClientT, SubscriptionClientT},
    rpc_params,
    ws_client::{HeaderMap, HeaderValue, WsClient, WsClientBuilder},
};
use serde_json::json;

use crate::cli::config_flags::ConfigFlags;
use tether::{
    discovery::{self, DiscoveryInfo, Paths},
    server::api::{SessionEvent, SessionList, SessionStarted},
    session::launch::{check_preloadable, resolve_command, wait_forwarding_signals},
};

/// How long `session.start` may take over the wire: the agent's own start-up timeout is enforced
/// by the daemon, which then answers with the step it was waiting on.
const START_CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// What the daemon path needs from the command line.
pub struct DaemonExec {
    /// Config file (`-f`).
    pub config_file: Option<PathBuf>,
    /// Config overrides: `--target`, `-n`, `--context` and the rest, sent with `session.start`.
    pub flags: ConfigFlags,
    /// Layer library.
    pub layer: Option<PathBuf>,
    /// Command and args.
    pub command: Vec<OsString>,
    /// Progress on stderr.
    pub progress: bool,
}

/// The flags `session.start` takes in `overrides` (target, namespace and context go on top).
fn session_overrides(f: &ConfigFlags, cwd: &Path) -> serde_json::Value {
    json!({
        // The daemon has its own working directory.
        "kubeconfig": f.kubeconfig.as_deref().map(|p| absolute(cwd, p)),
        "agent_image": f.agent_image,
        "agent_namespace": f.agent_namespace,
        "incoming": f.incoming,
        "fs_mode": f.fs_mode,
        "no_env": f.no_env,
    })
}

async fn connect(info: &DiscoveryInfo) -> anyhow::Result<WsClient> {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", info.token))?,
    );
    WsClientBuilder::default()
        .set_headers(headers)
        .connection_timeout(Duration::from_secs(3))
        .request_timeout(START_CALL_TIMEOUT)
        .build(&info.address)
        .await
        .with_context(|| {
            format!(
                "exec: cannot connect to the tether daemon at {}",
                info.address
            )
        })
}

fn call_error(e: jsonrpsee::core::ClientError) -> anyhow::Error {
    match e {
        jsonrpsee::core::ClientError::Call(obj) => {
            let data = tether::server::error::error_data(&obj);
            let hint = data
                .and_then(|d| d.hint)
                .map(|h| format!("\n  help: {h}"))
                .unwrap_or_default();
            anyhow::anyhow!("{}{hint}", obj.message())
        }
        other => anyhow::anyhow!("exec: the daemon did not answer: {other}"),
    }
}

/// Runs the command through a daemon session; returns its exit code.
pub async fn run(args: DaemonExec) -> anyhow::Result<i32> {
    let Some(program) = args.command.first().cloned() else {
        bail!("exec: no command given");
    };
    let path = resolve_command(&program).map_err(|e| anyhow::anyhow!("{e}"))?;
    check_preloadable(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let layer = match &args.layer {
        Some(l) => Some(l.clone()),
        None => tether::session::launch::find_layer(None).ok(),
    };

    let paths = Paths::from_env().context("exec: cannot find the state dir")?;
    let exe = std::env::current_exe().context("exec: cannot find the tether executable")?;
    let info = discovery::ensure_daemon(&paths, &exe)
        .await
        .context("exec: cannot reach the tether daemon")?;
    let client = connect(&info).await?;
    let cwd = std::env::current_dir().context("exec: cannot read the working directory")?;
    let params = json!({
        "config": {
            "path": args.config_file.as_deref().map(|p| absolute(&cwd, p)),
            "cwd": cwd,
            "apply_env": false,
        },
        "target": args.flags.target,
        "namespace": args.flags.namespace,
        "context": args.flags.context,
        "overrides": session_overrides(&args.flags, &cwd),
        "program": path,
        "layer": layer,
        "linger_ms": 500,
    });
    let mut p = jsonrpsee::core::params::ObjectParams::new();
    if let serde_json::Value::Object(map) = params {
        for (k, v) in map {
            if !v.is_null() {
                let _ = p.insert(&k, v);
            }
        }
    }
    let bars = Progress::new(args.progress);
    // Follow the start's progress: the session is listed (state `starting`) as soon as the daemon
    // has it, and its events are replayed from the start on subscription.
    let follow = follow_start(&client, &path, &bars);
    let start = client.request::<SessionStarted, _>("session.start", p);
    tokio::pin!(start);
    tokio::pin!(follow);
    let started = loop {
        tokio::select! {
            r = &mut start => break r,
            _ = &mut follow => {}
        }
    };
    let started = match started {
        Ok(s) => s,
        Err(e) => {
            bars.finish_error();
            return Err(call_error(e));
        }
    };
    bars.finish_ok();
    for w in &started.warnings {
        eprintln!("tether: warning: {w}");
    }

    let mut cmd = tokio::process::Command::new(&path);
    std::os::unix::process::CommandExt::arg0(cmd.as_std_mut(), &program);
    cmd.args(&args.command[1..]);
    for (k, v) in &started.env {
        let v = if k == "LD_PRELOAD" {
            match std::env::var("LD_PRELOAD") {
                Ok(old) if !old.is_empty() => format!("{v}:{old}"),
                _ => v.clone(),
            }
        } else {
            v.clone()
        };
        cmd.env(k, v);
    }
    for k in &started.unset {
        cmd.env_remove(k);
    }
    let code = match cmd.spawn() {
        Ok(mut child) => wait_forwarding_signals(&mut child).await,
        Err(e) => {
            let _ = stop(&client, &started.id).await;
            bail!("exec: cannot start {}: {e}", path.display());
        }
    };
    // Children of the command may still be connected: wait for them (the session lists them).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        let list: Result<SessionList, _> = client.request("session.list", rpc_params![]).await;
        let busy = list.ok().is_some_and(|l| {
            l.sessions
                .iter()
                .any(|s| s.id == started.id && s.layers > 0)
        });
        if !busy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(&client, &started.id).await?;
    Ok(code)
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        cwd.join(p)
    }
}

async fn stop(client: &WsClient, id: &str) -> anyhow::Result<()> {
    let mut p = jsonrpsee::core::params::ObjectParams::new();
    let _ = p.insert("id", id);
    client
        .request::<serde_json::Value, _>("session.stop", p)
        .await
        .map(|_| ())
        .map_err(call_error)
}

/// Finds the starting session of this command and shows its events; runs until cancelled.
async fn follow_start(client: &WsClient, program: &Path, bars: &Progress) {
    let program = program.to_string_lossy().into_owned();
    let id = loop {
        let list: Result<SessionList, _> = client.request("session.list", rpc_params![]).await;
        if let Some(s) = list.ok().and_then(|l| {
            l.sessions.into_iter().rev().find(|s| {
                s.program.as_deref() == Some(program.as_str())
                    && s.state == tether::server::api::SessionState::Starting
            })
        }) {
            break s.id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut p = jsonrpsee::core::params::ObjectParams::new();
    let _ = p.insert("id", id);
    let Ok(mut sub) = client
        .subscribe::<SessionEvent, _>("session.events", p, "session.unwatch_events")
        .await
    else {
        return std::future::pending().await;
    };
    while let Some(Ok(ev)) = sub.next().await {
        match ev {
            SessionEvent::Progress {
                step,
                message,
                done,
            } => bars.step(&step, &message, done),
            SessionEvent::Warning { message } => {
                bars.println(&format!("tether: warning: {message}"))
            }
            SessionEvent::Ready | SessionEvent::Ended { .. } => break,
            _ => {}
        }
    }
    std::future::pending().await
}

/// Start-up progress on stderr: a spinner per step on a terminal (indicatif), else one line per
/// step change (logs, CI).
struct Progress {
    on: bool,
    multi: Option<indicatif::MultiProgress>,
    bars: std::sync::Mutex<Vec<(String, indicatif::ProgressBar)>>,
}

impl Progress {
    fn new(on: bool) -> Self {
        use std::io::IsTerminal as _;
        let multi = (on && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
        Self {
            on,
            multi,
            bars: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn step(&self, step: &str, message: &str, done: bool) {
        if !self.on {
            return;
        }
        let Some(multi) = &self.multi else {
            let mark = if done { "done" } else { "...." };
            eprintln!("tether: [{mark}] {step}: {message}");
            return;
        };
        let mut bars = self.bars.lock().expect("progress bars poisoned");
        let bar = match bars.iter().find(|(s, _)| s == step) {
            Some((_, b)) => b.clone(),
            None => {
                let b = multi.add(indicatif::ProgressBar::new_spinner());
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {prefix:>6} {msg} {elapsed}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                b.set_prefix(step.to_owned());
                b.enable_steady_tick(Duration::from_millis(100));
                bars.push((step.to_owned(), b.clone()));
                b
            }
        };
        if done {
            bar.finish_with_message(format!("✓ {message}"));
        } else {
            bar.set_message(message.to_owned());
        }
    }

    fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn finish_ok(&self) {
        for (_, b) in self.bars.lock().expect("progress bars poisoned").iter() {
            if !b.is_finished() {
                b.finish();
            }
        }
    }

    fn finish_error(&self) {
        for (_, b) in self.bars.lock().expect("progress bars poisoned").iter() {
            if !b.is_finished() {
                b.abandon_with_message(format!("✗ {}", b.message()));
            }
        }
    }
}
