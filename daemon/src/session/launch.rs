//! Running a command inside a session: what `tether exec` does, split into steps the daemon reuses
//! (checks before launch, the debuggee's env, spawning with signals forwarded, the exit status).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tether_protocol::agent::{Request, Response};
use tether_protocol::session_env;
use thiserror::Error;

use tether_config::{EnvConfig, EnvFileError};

use super::env::{EnvChanges, env_changes};
use super::{ListenKind, LocalContext, Session, SessionOptions, SessionParams, new_session_id};
use crate::agent_link::{
    AgentClient, ConnectError, DialError, LinkOptions, Redial, RequestError, Transport,
};

/// File name of the layer library.
pub const LAYER_FILE: &str = "libtether_layer.so";
/// Overrides where the layer library is looked for.
pub const LAYER_PATH_ENV: &str = "TETHER_LAYER_PATH";

/// Why a command cannot run in a session.
#[derive(Debug, Error)]
pub enum LaunchError {
    /// The command is not a file and not on `PATH`.
    #[error("cannot run {name}: not found on PATH\n  help: give a path or check the spelling")]
    CommandNotFound {
        /// The command as given.
        name: String,
    },
    /// The executable is statically linked, so `LD_PRELOAD` cannot load the layer into it.
    #[error("cannot run {}: it is statically linked, so LD_PRELOAD cannot load tether's layer into it\n  help: run a dynamically linked build (for Go: CGO_ENABLED=1; for Rust/C: drop `-static` / the musl target)", path.display())]
    StaticBinary {
        /// The file checked (the interpreter, for a script).
        path: PathBuf,
    },
    /// Reading the executable failed.
    #[error("cannot read {}: {cause}", path.display())]
    ReadExecutable {
        /// The file.
        path: PathBuf,
        /// Why (in the message).
        cause: std::io::Error,
    },
    /// The layer library is missing.
    #[error("tether's layer library is not at {}\n  help: build it (`cargo build -p tether-layer`) or set {LAYER_PATH_ENV} to its path", path.display())]
    LayerMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Connecting to the agent failed.
    #[error(transparent)]
    Agent(#[from] ConnectError),
    /// Fetching the pod's env failed.
    #[error("cannot fetch the pod's environment: {0}\n  help: check the agent's log")]
    Env(RequestError),
    /// `feature.env.env_file` could not be read.
    #[error("{0}\n  help: fix or remove `feature.env.env_file`")]
    EnvFile(EnvFileError),
    /// The session router could not start.
    #[error("cannot start the session router: {0}")]
    Router(std::io::Error),
    /// Spawning the command failed.
    #[error("cannot start {}: {cause}", path.display())]
    Spawn {
        /// The program.
        path: PathBuf,
        /// Why (in the message).
        cause: std::io::Error,
    },
}

/// Finds `name` as `execvp` would: a path if it has a slash, else the first executable on
/// `PATH`.
pub fn resolve_command(name: &OsStr) -> Result<PathBuf, LaunchError> {
    let p = Path::new(name);
    if name.as_encoded_bytes().contains(&b'/') {
        return if p.exists() {
            Ok(p.to_path_buf())
        } else {
            Err(LaunchError::CommandNotFound {
                name: p.display().to_string(),
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(p);
        if is_executable(&cand) {
            return Ok(cand);
        }
    }
    Err(LaunchError::CommandNotFound {
        name: p.display().to_string(),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What the kernel would run for a file, as far as preloading goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutableKind {
    /// An ELF with a program interpreter (`PT_INTERP`): the dynamic loader honours `LD_PRELOAD`.
    Dynamic,
    /// An ELF without one (static, static-pie): nothing loads the layer.
    Static,
    /// A `#!` script run by this interpreter.
    Script(PathBuf),
    /// Something else (left to the kernel to reject or run through a shell).
    Other,
}

const PT_INTERP: u32 = 3;

/// Reads just enough of `path` to classify it.
pub fn executable_kind(path: &Path) -> std::io::Result<ExecutableKind> {
    let mut f = std::fs::File::open(path)?;
    let mut head = [0u8; 256];
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = &head[..n];
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        return Ok(match line.split_whitespace().next() {
            Some(interp) => ExecutableKind::Script(PathBuf::from(interp)),
            None => ExecutableKind::Other,
        });
    }
    if head.len() < 0x40 || &head[..4] != b"\x7fELF" {
        return Ok(ExecutableKind::Other);
    }
    let is64 = head[4] == 2;
    let le = head[5] != 2;
    let u16_at = |o: usize| {
        let b = [head[o], head[o + 1]];
        if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let u32_at = |b: &[u8], o: usize| {
        let b: [u8; 4] = b[o..o + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let (phoff, phentsize, phnum) = if is64 {
        let b: [u8; 8] = head[0x20..0x28].try_into().expect("8 bytes");
        let off = if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        };
        (off, u16_at(0x36), u16_at(0x38))
    } else {
        (u32_at(head, 0x1c) as u64, u16_at(0x2a), u16_at(0x2c))
    };
    if phentsize < 4 || phnum == 0 {
        return Ok(ExecutableKind::Static);
    }
    let mut table = vec![0u8; phentsize as usize * phnum as usize];
    f.seek(SeekFrom::Start(phoff))?;
    f.read_exact(&mut table)?;
    let has_interp = table
        .chunks_exact(phentsize as usize)
        .any(|ph| u32_at(ph, 0) == PT_INTERP);
    Ok(if has_interp {
        ExecutableKind::Dynamic
    } else {
        ExecutableKind::Static
    })
}

/// Refuses executables the layer cannot be preloaded into. Follows `#!` interpreters.
pub fn check_preloadable(path: &Path) -> Result<(), LaunchError> {
    let mut cur = path.to_path_buf();
    for _ in 0..4 {
        let kind = executable_kind(&cur).map_err(|cause| LaunchError::ReadExecutable {
            path: cur.clone(),
            cause,
        })?;
        match kind {
            ExecutableKind::Static => return Err(LaunchError::StaticBinary { path: cur }),
            ExecutableKind::Script(interp) => cur = interp,
            ExecutableKind::Dynamic | ExecutableKind::Other => return Ok(()),
        }
    }
    Ok(())
}

/// Where the layer library is: `explicit`, else `$TETHER_LAYER_PATH`, else next to the running
/// `tether` binary (the same cargo target dir in development).
pub fn find_layer(explicit: Option<&Path>) -> Result<PathBuf, LaunchError> {
    let candidate = match explicit {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os(LAYER_PATH_ENV) {
            Some(p) => PathBuf::from(p),
            None => {
                let exe = std::env::current_exe().unwrap_or_default();
                let dir = exe.parent().unwrap_or(Path::new("."));
                let here = dir.join(LAYER_FILE);
                // Test binaries live in target/<profile>/deps.
                match (here.exists(), dir.file_name() == Some(OsStr::new("deps"))) {
                    (false, true) => dir.parent().unwrap_or(dir).join(LAYER_FILE),
                    _ => here,
                }
            }
        },
    };
    if !candidate.is_file() {
        return Err(LaunchError::LayerMissing { path: candidate });
    }
    Ok(std::path::absolute(&candidate).unwrap_or(candidate))
}

/// Fetches the pod's env through the agent.
pub async fn fetch_pod_env(agent: &AgentClient) -> Result<Vec<(String, String)>, LaunchError> {
    match agent.request(Request::Env).await {
        Ok(Response::Env(vars)) => Ok(vars),
        Ok(other) => Err(LaunchError::Env(RequestError::Remote(
            tether_protocol::RemoteError::new(libc::EPROTO, format!("unexpected answer {other:?}")),
        ))),
        Err(e) => Err(LaunchError::Env(e)),
    }
}

/// The variables to add to (or, with `None`, remove from) the debuggee's environment: the
/// filtered pod env, the session variables, and `LD_PRELOAD` with the layer first.
pub fn debuggee_env(
    session: &Session,
    pod: &EnvChanges,
    layer: &Path,
    current_preload: Option<&OsStr>,
) -> Vec<(String, Option<OsString>)> {
    let mut out: Vec<(String, Option<OsString>)> = Vec::new();
    for k in &pod.remove {
        out.push((k.clone(), None));
    }
    for (k, v) in &pod.set {
        out.push((k.clone(), Some(v.into())));
    }
    for (k, v) in session.env() {
        out.push((k, Some(v.into())));
    }
    let mut preload = layer.as_os_str().to_owned();
    if let Some(cur) = current_preload.filter(|c| !c.is_empty()) {
        preload.push(":");
        preload.push(cur);
    }
    out.push((session_env::LD_PRELOAD.into(), Some(preload)));
    out
}

/// Options of [`exec`].
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Agent address (`HOST:PORT`).
    pub agent_addr: String,
    /// The agent's token.
    pub agent_token: String,
    /// Program and arguments.
    pub command: Vec<OsString>,
    /// From the config.
    pub options: SessionOptions,
    /// `feature.env`.
    pub env: EnvConfig,
    /// The layer library; `None` finds it with [`find_layer`].
    pub layer: Option<PathBuf>,
    /// Router listener kind.
    pub listen: ListenKind,
    /// How long the session outlives its last layer connection.
    pub linger: Duration,
    /// Agent link tuning.
    pub link: LinkOptions,
}

/// Re-establishes a dropped link to an agent at a fixed address (`--agent`, often a
/// `kubectl port-forward`): a refused connection means nothing listens there any more, so the
/// agent is gone and hooked calls fail at once instead of after every attempt.
pub fn direct_redial(addr: &str) -> Redial {
    let addr = addr.to_owned();
    let dial = move || {
        let addr = addr.clone();
        Box::pin(async move {
            match tokio::net::TcpStream::connect(&addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let (r, w) = s.into_split();
                    Ok(Transport {
                        reader: Box::new(r),
                        writer: Box::new(w),
                        peer: addr,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(
                    DialError::AgentGone(format!("nothing listens at {addr} any more")),
                ),
                Err(e) => Err(DialError::Failed(format!("cannot reach {addr}: {e}"))),
            }
        }) as futures::future::BoxFuture<'static, _>
    };
    Redial::new(std::sync::Arc::new(dial))
}

/// Runs `command` in a session with the agent at `agent_addr`; returns the exit code to exit
/// with (the child's, or 128 + the signal that killed it).
pub async fn exec(opts: ExecOptions) -> Result<i32, LaunchError> {
    let Some(program) = opts.command.first() else {
        return Err(LaunchError::CommandNotFound {
            name: String::new(),
        });
    };
    let path = resolve_command(program)?;
    check_preloadable(&path)?;
    let layer = find_layer(opts.layer.as_deref())?;

    let session_id = new_session_id();
    let link = LinkOptions {
        session_id: session_id.clone(),
        ..opts.link.clone()
    };
    let (agent, events) = AgentClient::connect(&opts.agent_addr, &opts.agent_token, link).await?;
    agent.set_redial(direct_redial(&opts.agent_addr));
    tracing::info!(
        agent = %agent.hello().agent,
        target_pid = agent.hello().target.pid,
        "connected to the agent"
    );
    let pod_env = if opts.env.is_disabled() {
        Vec::new()
    } else {
        fetch_pod_env(&agent).await?
    };
    let changes = env_changes(&opts.env, &pod_env).map_err(LaunchError::EnvFile)?;
    let exe = std::fs::canonicalize(&path).ok();
    let session = Session::start(
        agent,
        events,
        SessionParams {
            id: session_id,
            options: opts.options.clone(),
            local: LocalContext::current(exe),
            listen: opts.listen,
        },
    )
    .await
    .map_err(LaunchError::Router)?;

    let mut cmd = tokio::process::Command::new(&path);
    cmd.arg0(program).args(&opts.command[1..]);
    let preload = std::env::var_os(session_env::LD_PRELOAD);
    for (k, v) in debuggee_env(&session, &changes, &layer, preload.as_deref()) {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.spawn().map_err(|cause| LaunchError::Spawn {
        path: path.clone(),
        cause,
    })?;
    let code = wait_forwarding_signals(&mut child).await;
    // The child's own children may still be connected; the session ends when they are gone, or
    // when the user asks tether itself to stop.
    if session.connections() > 0 {
        tracing::info!(
            "the command exited; waiting for its {} remaining layer connection(s)",
            session.connections()
        );
    }
    tokio::select! {
        _ = session.wait_idle(opts.linger) => {}
        _ = stop_requested() => tracing::info!("stopping the session on request"),
    }
    session.shutdown().await;
    Ok(code)
}

/// Waits for `child`, forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT to it. SIGINT and SIGQUIT
/// from the terminal already reach the child (same foreground process group), so those are
/// forwarded only when they did not come from it.
pub async fn wait_forwarding_signals(child: &mut tokio::process::Child) -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    let pid = child.id().map(|p| p as libc::pid_t);
    let mut sigs = Vec::new();
    for (kind, num, from_tty) in [
        (SignalKind::interrupt(), libc::SIGINT, true),
        (SignalKind::terminate(), libc::SIGTERM, false),
        (SignalKind::hangup(), libc::SIGHUP, false),
        (SignalKind::quit(), libc::SIGQUIT, true),
    ] {
        if let Ok(s) = signal(kind) {
            sigs.push((s, num, from_tty));
        }
    }
    let status = loop {
        let any_signal =
            futures::future::select_all(sigs.iter_mut().map(|(s, num, tty)| {
                Box::pin(async move { s.recv().await.map(|_| (*num, *tty)) })
            }));
        tokio::select! {
            st = child.wait() => break st,
            (got, _, _) = any_signal => {
                if let (Some((num, tty)), Some(pid)) = (got, pid)
                    && !(tty && in_foreground_group())
                {
                    // SAFETY: kill has no memory effects; pid is our child's.
                    unsafe { libc::kill(pid, num) };
                }
            }
        }
    };
    match status {
        Ok(st) => st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
        Err(e) => {
            tracing::error!("waiting for the command failed: {e}");
            1
        }
    }
}

/// Resolves on SIGINT or SIGTERM (tokio keeps its handlers installed once registered, so without
/// this a lingering session would ignore Ctrl-C).
async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Whether this process is in the terminal's foreground process group (so a terminal signal
/// reached the whole group, the child included).
fn in_foreground_group() -> bool {
    // SAFETY: plain syscalls without pointers.
    unsafe {
        let fg = libc::tcgetpgrp(libc::STDIN_FILENO);
        fg != -1 && fg == libc::getpgrp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_binaries_are_dynamic() {
        let sh = resolve_command(OsStr::new("sh")).unwrap();
        check_preloadable(&sh).unwrap();
        assert_eq!(
            executable_kind(Path::new("/bin/ls")).unwrap(),
            ExecutableKind::Dynamic
        );
    }

    #[test]
    fn scripts_follow_their_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh -e\necho hi\n").unwrap();
        assert_eq!(
            executable_kind(&script).unwrap(),
            ExecutableKind::Script("/bin/sh".into())
        );
        check_preloadable(&script).unwrap();
    }

    #[test]
    fn missing_command_is_named() {
        let e = resolve_command(OsStr::new("no-such-command-xyz")).unwrap_err();
        assert!(e.to_string().contains("no-such-command-xyz"), "{e}");
    }
}
