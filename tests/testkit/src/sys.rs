//! Host plumbing: preflight checks, running `ip`/`iptables`, process liveness, namespace scans,
//! safe removal of state directories.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

/// Absolute path of `ip`, or `"ip"` if it was not found (preflight reports that).
pub(crate) fn ip_bin() -> &'static Path {
    static IP: OnceLock<PathBuf> = OnceLock::new();
    IP.get_or_init(|| find_in_path("ip").unwrap_or_else(|| PathBuf::from("ip")))
}

/// Absolute path of `iptables`, or `"iptables"`.
pub(crate) fn iptables_bin() -> &'static Path {
    static IPT: OnceLock<PathBuf> = OnceLock::new();
    IPT.get_or_init(|| find_in_path("iptables").unwrap_or_else(|| PathBuf::from("iptables")))
}

/// Checks once per process that we run as root and that `ip` is installed.
pub(crate) fn preflight() -> Result<()> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    // Errors are not Clone; keep the check result and rebuild the error on each call.
    let res = CHECK.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(format!("root:{euid}"));
        }
        if find_in_path("ip").is_none() {
            return Err("tool:ip".into());
        }
        Ok(())
    });
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.starts_with("root:") => Err(Error::NotRoot {
            euid: e[5..].parse().unwrap_or(u32::MAX),
        }),
        Err(_) => Err(Error::MissingTool {
            tool: "ip",
            package: "iproute2",
        }),
    }
}

/// Checks that `iptables` is installed (only services need it).
pub(crate) fn require_iptables() -> Result<()> {
    if find_in_path("iptables").is_none() {
        return Err(Error::MissingTool {
            tool: "iptables",
            package: "iptables",
        });
    }
    Ok(())
}

/// Searches `PATH` (plus the sbin dirs, which a non-login root shell may lack) for an executable.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion, feeding `stdin`; a non-zero exit becomes [`Error::Command`].
pub(crate) fn run(mut cmd: Command, stdin: Option<&str>, context: &str) -> Result<Output> {
    let shown = render(&cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .ctx(|| format!("{context}: cannot start `{shown}`"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.as_bytes())
            .ctx(|| format!("{context}: writing to `{shown}`"))?;
    }
    let out = child
        .wait_with_output()
        .ctx(|| format!("{context}: waiting for `{shown}`"))?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let Some(input) = stdin {
            stderr.push_str(&format!(" (batch input: {:?})", input.trim()));
        }
        return Err(Error::Command {
            context: context.to_string(),
            command: shown,
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(out)
}

/// `ip [-n NETNS] ARGS`.
pub(crate) fn ip<I, S>(netns: Option<&str>, args: I, context: &str) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(ip_bin());
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args);
    run(cmd, None, context)
}

/// `ip [-n NETNS] -batch -` with one command per line: one process for many changes.
pub(crate) fn ip_batch(netns: Option<&str>, lines: &[String], context: &str) -> Result<()> {
    let mut cmd = Command::new(ip_bin());
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"]);
    let mut input = lines.join("\n");
    input.push('\n');
    run(cmd, Some(&input), context).map(drop)
}

/// A command that runs inside the network namespace at `netns_path` (setns before exec).
pub(crate) fn command_in_netns(netns_path: &Path, program: impl AsRef<OsStr>) -> Result<Command> {
    let fd = fs::File::open(netns_path)
        .ctx(|| format!("opening network namespace {}", netns_path.display()))?;
    let mut cmd = Command::new(program);
    // SAFETY: the closure only calls setns, which is async-signal-safe; the fd is moved in and
    // stays open until the Command is dropped (O_CLOEXEC closes it in the exec'd child).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Runs `f` on a fresh thread that has joined the network namespace at `netns_path`.
/// Sockets created there stay in that namespace wherever they are used later.
pub(crate) fn in_netns<T, F>(netns_path: &Path, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let fd = fs::File::open(netns_path)
        .ctx(|| format!("opening network namespace {}", netns_path.display()))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns on this thread only; the thread ends after `f`, so no other code runs in
            // the switched namespace.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(Error::io(
                    format!("joining network namespace {}", netns_path.display()),
                    io::Error::last_os_error(),
                ));
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Identifies one process across pid reuse: pid plus start time (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    /// The pid.
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`.
    pub start_time: u64,
}

impl ProcessId {
    /// The identity of a running process, or `None` if it is gone.
    pub fn of(pid: u32) -> Option<Self> {
        let (start_time, state) = stat_fields(pid)?;
        (state != 'Z' && state != 'X').then_some(ProcessId { pid, start_time })
    }

    /// Whether this exact process still runs (zombies count as dead).
    pub fn is_alive(&self) -> bool {
        ProcessId::of(self.pid).is_some_and(|p| p.start_time == self.start_time)
    }
}

/// (start time, state) from /proc/PID/stat.
fn stat_fields(pid: u32) -> Option<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parens: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3 (state); start time is field 22.
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((start, state))
}

/// Device and inode of a namespace file, as seen by stat(2).
fn ns_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Pids of all processes whose network namespace is the one at `netns_path`.
pub(crate) fn pids_in_netns(netns_path: &Path) -> Vec<u32> {
    let Some(target) = ns_id(netns_path) else {
        return Vec::new();
    };
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() } as u32;
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| ns_id(Path::new(&format!("/proc/{pid}/ns/net"))) == Some(target))
        .collect()
}

/// SIGKILLs every process in the network namespace and waits until they are gone.
pub(crate) fn kill_netns_processes(netns_path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = pids_in_netns(netns_path);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            kill(pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL; errors (already gone) are ignored.
pub(crate) fn kill(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// Kills a process we identified earlier, if it is still that process, and waits until it is gone.
pub(crate) fn kill_process(p: ProcessId) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.is_alive() && Instant::now() < deadline {
        kill(p.pid);
        std::thread::sleep(Duration::from_millis(2));
    }
    // If it was our child (a DNS server this process started), reap the zombie; for any other
    // process this fails with ECHILD and does nothing.
    // SAFETY: waitpid with a null status pointer is allowed.
    unsafe {
        libc::waitpid(p.pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG);
    }
}

/// Mount points (from /proc/self/mountinfo) at or below `dir`, deepest first.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// Removes a state directory. Pod mounts live in private mount namespaces, so the host namespace
/// should have none below `dir`; if some are there anyway (a bug, or someone's manual mount), they
/// are detached first so that removal never walks into a bind-mounted system directory.
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for m in mounts_below(dir) {
        let c = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()).expect("no NUL in path");
        // SAFETY: c is a valid C string.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(Error::io(
                format!("detaching stray mount {}", m.display()),
                io::Error::last_os_error(),
            ));
        }
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

/// Writes a file by rename, so readers (the DNS server) never see half of it.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, contents).ctx(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(|| format!("renaming {} into place", tmp.display()))
}

pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))
}

/// The last `n` lines of a log file, prefixed for an error message.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        format!("\n  (log {} is empty)", path.display())
    } else {
        format!(
            "\n  last lines of {}:\n    {}",
            path.display(),
            tail.join("\n    ")
        )
    }
}

/// Transport of a listening socket, for [`crate::Pod::wait_listening`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TCP socket in LISTEN state.
    Tcp,
    /// A bound UDP socket.
    Udp,
}

/// Whether the network namespace of `pid` has a socket listening on `port` (any address).
/// Reads /proc/PID/net/*, which shows the sockets of that process's network namespace.
pub(crate) fn is_listening(pid: u32, port: u16, proto: Proto) -> bool {
    let (files, state) = match proto {
        Proto::Tcp => (["tcp", "tcp6"], Some("0A")),
        Proto::Udp => (["udp", "udp6"], None),
    };
    files.iter().any(|f| {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{f}")) else {
            return false;
        };
        text.lines().skip(1).any(|l| {
            let mut cols = l.split_whitespace();
            let local = cols.nth(1).unwrap_or("");
            let st = cols.nth(1).unwrap_or("");
            let port_ok = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port);
            port_ok && state.is_none_or(|s| s == st)
        })
    })
}

/// Polls `cond` every 2 ms until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A loopback TCP port nobody listens on right now (the listener that found it is closed), for a
/// local app to take over or for a connection that must be refused.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_identity() {
        let me = ProcessId::of(std::process::id()).unwrap();
        assert!(me.is_alive());
        let other = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !other.is_alive(),
            "a reused pid with another start time is not the same process"
        );
        assert!(ProcessId::of(u32::MAX - 1).is_none());
    }
}
