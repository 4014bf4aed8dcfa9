//! iptables management inside the target's network namespace.
//!
//! Every agent owns one nat chain, `TETHER-<pid>-<agent id>`, jumped to from PREROUTING (traffic
//! entering the pod) and OUTPUT (traffic from inside the pod to its own addresses). Jump rules carry
//! the comment `tether-owner:<pid>:<start time>`, so a later agent can tell a dead owner's chain
//! (stale, removed on start) from a live one (left alone). Connections the agents open themselves
//! carry [`BYPASS_MARK`] and are skipped by every tether chain, so passing a redirected connection
//! on to the original server never loops back into an agent.
//!
//! iptables runs as a child process that enters the target's netns in `pre_exec`, so nothing here
//! changes the agent's own namespaces. Calls block: async callers use `spawn_blocking`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tether_protocol::error::AgentError;

/// Prefix of every chain a tether agent creates.
pub const CHAIN_PREFIX: &str = "TETHER-";

/// Socket mark of the connections agents open to original servers; tether chains `RETURN` on it.
pub const BYPASS_MARK: u32 = 0x7e7e_0001;

/// iptables chain names are at most 28 characters.
const MAX_CHAIN_LEN: usize = 28;

/// The hooks our chain is jumped to from.
const HOOKS: [&str; 2] = ["PREROUTING", "OUTPUT"];

/// A failed iptables operation.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    /// No iptables binary could be started.
    #[error("no iptables binary found ({0})")]
    Missing(String),
    /// The kernel refused for lack of a capability.
    #[error("{capability} is needed to {needed_for}: {detail}")]
    PermissionDenied {
        /// For example `CAP_NET_ADMIN`.
        capability: &'static str,
        /// What was being done.
        needed_for: &'static str,
        /// What the OS or iptables said.
        detail: String,
    },
    /// The target's netns is gone with its process.
    #[error("target process {0} is gone")]
    TargetGone(u32),
    /// iptables ran and failed.
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    Failed {
        /// The binary.
        program: String,
        /// Its arguments.
        args: String,
        /// Exit status.
        status: String,
        /// What it printed.
        stderr: String,
    },
    /// Any other OS error while starting iptables.
    #[error("cannot run iptables: {0}")]
    Io(#[from] io::Error),
}

impl From<IptablesError> for AgentError {
    fn from(e: IptablesError) -> Self {
        match e {
            IptablesError::Missing(detail) => AgentError::IptablesMissing { detail },
            IptablesError::PermissionDenied {
                capability,
                needed_for,
                ..
            } => AgentError::MissingCapability {
                capability: capability.into(),
                needed_for: needed_for.into(),
            },
            IptablesError::TargetGone(pid) => AgentError::TargetGone { pid },
            other => AgentError::Other(other.to_string()),
        }
    }
}

/// Finds the iptables binary: `$TETHER_IPTABLES`, else the first of `iptables`, `iptables-nft`,
/// `iptables-legacy` on `PATH` or in the sbin directories (often missing from a container's PATH).
pub fn find_program() -> Result<PathBuf, IptablesError> {
    if let Some(p) = std::env::var_os("TETHER_IPTABLES") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(IptablesError::Missing(format!(
                "TETHER_IPTABLES={} is not a file",
                p.display()
            )));
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    for name in ["iptables", "iptables-nft", "iptables-legacy"] {
        for d in &dirs {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(IptablesError::Missing(
        "none of iptables, iptables-nft, iptables-legacy is installed".into(),
    ))
}

/// The ip6tables binary of the same backend as the iptables binary `v4` (`iptables-nft` ->
/// `ip6tables-nft`), or `$TETHER_IP6TABLES`, when installed.
pub fn ip6_program(v4: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TETHER_IP6TABLES") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let name = v4.file_name()?.to_str()?;
    let p = v4.with_file_name(name.replacen("iptables", "ip6tables", 1));
    (p != v4 && p.is_file()).then_some(p)
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/PID/stat`), which tells a
/// live process from a later one that reused its pid.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The chain name of the agent with this pid and id: `TETHER-<pid>-<id>`, cut to 28 characters.
pub fn chain_name(pid: u32, agent_id: &str) -> String {
    let mut name = format!("{CHAIN_PREFIX}{pid}");
    let id: String = agent_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    if !id.is_empty() && name.len() + 2 <= MAX_CHAIN_LEN {
        name.push('-');
        let room = MAX_CHAIN_LEN - name.len();
        name.extend(id.chars().take(room));
    }
    name
}

/// Inode of the PID namespace of `pid` (`self` for ours): pids only mean something inside it.
fn pid_ns(pid: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

/// The owner comment of this process's jump rules: `tether-owner:PID:START:PIDNS`.
pub fn owner_comment(pid: u32) -> String {
    format!(
        "tether-owner:{pid}:{}:{}",
        process_start_time(pid).unwrap_or(0),
        pid_ns(&pid.to_string()).unwrap_or(0)
    )
}

/// Whether the agent named by an owner comment (or, without one, by the chain name) is alive.
/// An owner in another PID namespace cannot be checked from here and counts as alive: its own
/// guard removes its rules.
fn owner_alive(chain: &str, comment: Option<&str>) -> bool {
    if let Some(rest) = comment.and_then(|c| c.strip_prefix("tether-owner:")) {
        let mut fields = rest.split(':');
        let pid = fields.next().and_then(|p| p.parse::<u32>().ok());
        let start = fields.next().and_then(|s| s.parse::<u64>().ok());
        let ns = fields.next().and_then(|n| n.parse::<u64>().ok());
        if let (Some(pid), Some(start)) = (pid, start) {
            if ns.is_some_and(|ns| ns != 0 && Some(ns) != pid_ns("self")) {
                return true;
            }
            return process_start_time(pid) == Some(start);
        }
    }
    let pid = chain
        .strip_prefix(CHAIN_PREFIX)
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse::<u32>().ok());
    match pid {
        Some(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        // Not a name we create: never touch it.
        None => true,
    }
}

/// Splits a rule line of `iptables -S` into arguments, honouring double quotes.
fn split_rule(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has_token = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has_token = true;
            }
            '\\' if in_quotes => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_token {
                    out.push(std::mem::take(&mut cur));
                    has_token = false;
                }
            }
            c => {
                cur.push(c);
                has_token = true;
            }
        }
    }
    if has_token {
        out.push(cur);
    }
    out
}

/// A rule of a hook chain that jumps to `chain`, as the arguments after `-A HOOK`, plus its owner
/// comment.
fn jump_rules(listing: &str, hook: &str, chain: &str) -> Vec<(Vec<String>, Option<String>)> {
    listing
        .lines()
        .map(split_rule)
        .filter(|a| a.len() > 2 && a[0] == "-A" && a[1] == hook)
        .filter(|a| a.windows(2).any(|w| w[0] == "-j" && w[1] == chain))
        .map(|a| {
            let comment = a
                .windows(2)
                .find(|w| w[0] == "--comment")
                .map(|w| w[1].clone());
            (a[2..].to_vec(), comment)
        })
        .collect()
}

/// Runs iptables in one network namespace.
#[derive(Debug, Clone)]
pub struct Iptables {
    program: PathBuf,
    netns: PathBuf,
    netns_pid: u32,
}

impl Iptables {
    /// iptables `program` acting in the netns of `netns_pid`.
    pub fn new(program: PathBuf, netns_pid: u32) -> Self {
        let netns = PathBuf::from(format!("/proc/{netns_pid}/ns/net"));
        Self::with_netns(program, netns, netns_pid)
    }

    /// iptables acting in the netns at `netns` (for example an fd the guard holds open, which
    /// outlives the target process), belonging to `netns_pid` for errors.
    pub fn with_netns(program: PathBuf, netns: PathBuf, netns_pid: u32) -> Self {
        Self {
            program,
            netns,
            netns_pid,
        }
    }

    /// The binary.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs `iptables -w -t nat ARGS` in the netns and returns its stdout.
    pub fn nat<S: AsRef<str>>(&self, args: &[S]) -> Result<String, IptablesError> {
        let ns = File::open(&self.netns).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                IptablesError::TargetGone(self.netns_pid)
            } else {
                IptablesError::Io(e)
            }
        })?;
        let mut cmd = Command::new(&self.program);
        cmd.arg("-w").arg("-t").arg("nat");
        cmd.args(args.iter().map(|a| a.as_ref()));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !same_netns(&ns) {
            let fd = ns.as_raw_fd();
            // SAFETY: setns is async-signal-safe; the closure touches nothing but the fd, which
            // stays open in the parent until spawn returns.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let out = cmd.output().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                IptablesError::Missing(format!("{}: {e}", self.program.display()))
            }
            io::ErrorKind::PermissionDenied => IptablesError::PermissionDenied {
                capability: "CAP_SYS_ADMIN",
                needed_for: "enter the target's network namespace",
                detail: e.to_string(),
            },
            _ => IptablesError::Io(e),
        })?;
        drop(ns);
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if stderr.contains("Permission denied") || stderr.contains("Operation not permitted") {
            return Err(IptablesError::PermissionDenied {
                capability: "CAP_NET_ADMIN",
                needed_for: "change iptables rules in the target's network namespace",
                detail: stderr,
            });
        }
        if !self.netns.exists() {
            return Err(IptablesError::TargetGone(self.netns_pid));
        }
        Err(IptablesError::Failed {
            program: self.program.display().to_string(),
            args: args
                .iter()
                .map(|a| a.as_ref())
                .collect::<Vec<_>>()
                .join(" "),
            status: out.status.to_string(),
            stderr,
        })
    }

    /// Creates `chain` and hooks it into PREROUTING and OUTPUT (first, so it sees connections
    /// before other NAT rules), with `comment` on the jump rules. Marked connections skip it.
    pub fn create_chain(&self, chain: &str, comment: &str) -> Result<(), IptablesError> {
        self.nat(&["-N", chain])?;
        let mark = format!("{BYPASS_MARK:#x}");
        self.nat(&["-A", chain, "-m", "mark", "--mark", &mark, "-j", "RETURN"])?;
        self.nat(&[
            "-I",
            "PREROUTING",
            "1",
            "-p",
            "tcp",
            "-m",
            "comment",
            "--comment",
            comment,
            "-j",
            chain,
        ])?;
        // OUTPUT: only connections to the pod's own addresses, not those leaving it.
        self.nat(&[
            "-I",
            "OUTPUT",
            "1",
            "-p",
            "tcp",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-m",
            "comment",
            "--comment",
            comment,
            "-j",
            chain,
        ])?;
        Ok(())
    }

    fn redirect_rule(chain: &str, port: u16, to_port: u16) -> Vec<String> {
        [
            chain,
            "-p",
            "tcp",
            "--dport",
            &port.to_string(),
            "-j",
            "REDIRECT",
            "--to-ports",
            &to_port.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// Redirects TCP `port` to the agent's listener on `to_port`.
    pub fn add_redirect(&self, chain: &str, port: u16, to_port: u16) -> Result<(), IptablesError> {
        let mut args = vec!["-A".to_owned()];
        args.extend(Self::redirect_rule(chain, port, to_port));
        self.nat(&args).map(drop)
    }

    /// Removes a redirect added by [`Iptables::add_redirect`].
    pub fn remove_redirect(
        &self,
        chain: &str,
        port: u16,
        to_port: u16,
    ) -> Result<(), IptablesError> {
        let mut args = vec!["-D".to_owned()];
        args.extend(Self::redirect_rule(chain, port, to_port));
        self.nat(&args).map(drop)
    }

    /// The tether chains of the nat table.
    pub fn list_chains(&self) -> Result<Vec<String>, IptablesError> {
        Ok(self
            .nat(&["-S"])?
            .lines()
            .filter_map(|l| l.strip_prefix("-N "))
            .map(str::trim)
            .filter(|c| c.starts_with(CHAIN_PREFIX))
            .map(str::to_owned)
            .collect())
    }

    /// Removes the jump rules to `chain`, then the chain. A chain that does not exist is not an
    /// error, so the agent, its guard and a later agent may all try.
    pub fn remove_chain(&self, chain: &str) -> Result<(), IptablesError> {
        let listing = self.nat(&["-S"])?;
        for hook in HOOKS {
            for (rule, _) in jump_rules(&listing, hook, chain) {
                let mut args = vec!["-D".to_owned(), hook.to_owned()];
                args.extend(rule);
                self.nat(&args)?;
            }
        }
        let exists = listing
            .lines()
            .any(|l| l.strip_prefix("-N ").map(str::trim) == Some(chain));
        if exists {
            self.nat(&["-F", chain])?;
            self.nat(&["-X", chain])?;
        }
        Ok(())
    }

    /// Removes the tether chains (other than `own`) whose owning agent is dead. Returns their names.
    pub fn remove_stale_chains(&self, own: &str) -> Result<Vec<String>, IptablesError> {
        let listing = self.nat(&["-S"])?;
        let mut removed = Vec::new();
        for chain in self.list_chains()? {
            if chain == own {
                continue;
            }
            let comment = HOOKS
                .iter()
                .flat_map(|h| jump_rules(&listing, h, &chain))
                .find_map(|(_, c)| c.filter(|c| c.starts_with("tether-owner:")));
            if !owner_alive(&chain, comment.as_deref()) {
                self.remove_chain(&chain)?;
                removed.push(chain);
            }
        }
        Ok(removed)
    }
}

/// Whether `ns` is the netns this process already runs in (no setns needed, nor allowed without
/// CAP_SYS_ADMIN).
fn same_netns(ns: &File) -> bool {
    match (ns.metadata(), std::fs::metadata("/proc/self/ns/net")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn chain_names_fit_and_carry_the_pid() {
        assert_eq!(chain_name(42, "ab-cd"), "TETHER-42-abcd");
        assert_eq!(chain_name(42, ""), "TETHER-42");
        let long = chain_name(4_194_304, &"x".repeat(100));
        assert_eq!(long.len(), MAX_CHAIN_LEN);
        assert!(long.starts_with("TETHER-4194304-x"));
    }

    #[test]
    fn rule_lines_split_with_quotes() {
        assert_eq!(
            split_rule(r#"-A OUTPUT -m comment --comment "a b\"c" -j X"#),
            [
                "-A",
                "OUTPUT",
                "-m",
                "comment",
                "--comment",
                "a b\"c",
                "-j",
                "X"
            ]
        );
        let listing = "-P PREROUTING ACCEPT\n-A PREROUTING -p tcp -m comment --comment tether-owner:1:2 -j TETHER-1\n-A PREROUTING -j OTHER\n";
        let rules = jump_rules(listing, "PREROUTING", "TETHER-1");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].1.as_deref(), Some("tether-owner:1:2"));
        assert_eq!(rules[0].0[0], "-p");
    }

    #[test]
    fn owner_liveness_uses_pid_and_start_time() {
        let me = std::process::id();
        assert!(owner_alive("TETHER-1-x", Some(&owner_comment(me))));
        // Same pid, other start time: the pid was reused, the owner is dead.
        let start = process_start_time(me).unwrap();
        assert!(!owner_alive(
            "TETHER-1-x",
            Some(&format!("tether-owner:{me}:{}", start + 1))
        ));
        assert!(!owner_alive(
            "TETHER-1-x",
            Some(&format!(
                "tether-owner:{me}:{}:{}",
                start + 1,
                pid_ns("self").unwrap()
            ))
        ));
        // An owner in another PID namespace is never judged from here.
        assert!(owner_alive(
            "TETHER-1-x",
            Some(&format!("tether-owner:{me}:{}:1", start + 1))
        ));
        assert!(owner_alive(&format!("TETHER-{me}-x"), None));
        assert!(!owner_alive("TETHER-4194999-x", None));
        assert!(owner_alive("TETHER-custom", None));
    }

    /// A throwaway network namespace held by a sleeping process, for tests that need a real one.
    pub(crate) struct TestNetns {
        /// The holder's pid: `/proc/PID/ns/net` is the namespace.
        pub pid: u32,
        child: std::process::Child,
    }

    impl TestNetns {
        pub(crate) fn new() -> Self {
            let child = Command::new("unshare")
                .args(["--net", "sleep", "600"])
                .spawn()
                .expect("unshare --net (tests run as root)");
            let pid = child.id();
            // Wait until unshare has exec'd sleep inside the new netns.
            for _ in 0..200 {
                if std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
                    != std::fs::read_link("/proc/self/ns/net").ok()
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let ns = Self { pid, child };
            ns.run("ip", &["link", "set", "lo", "up"]);
            ns
        }

        pub(crate) fn run(&self, prog: &str, args: &[&str]) -> String {
            let out = Command::new("nsenter")
                .arg(format!("--net=/proc/{}/ns/net", self.pid))
                .arg(prog)
                .args(args)
                .output()
                .expect("nsenter");
            assert!(out.status.success(), "{prog} {args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    }

    impl Drop for TestNetns {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn chain_lifecycle_in_a_real_netns() {
        let ns = TestNetns::new();
        let ipt = Iptables::new(find_program().unwrap(), ns.pid);
        let me = std::process::id();
        let chain = chain_name(me, "unit");
        ipt.create_chain(&chain, &owner_comment(me)).unwrap();
        ipt.add_redirect(&chain, 80, 40000).unwrap();
        let save = ns.run("iptables-save", &["-t", "nat"]);
        assert!(
            save.contains(&format!(
                "-A PREROUTING -p tcp -m comment --comment \"tether-owner:{me}:"
            )),
            "{save}"
        );
        assert!(
            save.contains("--dport 80 -j REDIRECT --to-ports 40000"),
            "{save}"
        );
        // Our own chain is alive: not stale.
        assert!(ipt.remove_stale_chains("none").unwrap().is_empty());
        ipt.remove_redirect(&chain, 80, 40000).unwrap();
        ipt.remove_chain(&chain).unwrap();
        ipt.remove_chain(&chain).unwrap();
        let save = ns.run("iptables-save", &["-t", "nat"]);
        assert!(!save.contains("TETHER"), "{save}");
    }

    #[test]
    fn stale_chain_of_a_dead_agent_is_removed() {
        let ns = TestNetns::new();
        let ipt = Iptables::new(find_program().unwrap(), ns.pid);
        let mut dead = Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        let dead_comment = owner_comment(dead_pid);
        dead.wait().unwrap();
        let stale = chain_name(dead_pid, "old");
        ipt.create_chain(&stale, &dead_comment).unwrap();
        let me = std::process::id();
        let live = chain_name(me, "live");
        ipt.create_chain(&live, &owner_comment(me)).unwrap();
        assert_eq!(ipt.remove_stale_chains(&live).unwrap(), vec![stale.clone()]);
        assert_eq!(ipt.list_chains().unwrap(), vec![live.clone()]);
        ipt.remove_chain(&live).unwrap();
    }

    #[test]
    fn gone_target_is_reported() {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        let err = Iptables::new(find_program().unwrap(), pid)
            .nat(&["-S"])
            .unwrap_err();
        assert!(
            matches!(err, IptablesError::TargetGone(p) if p == pid),
            "{err}"
        );
        let err = Iptables::new("/nonexistent/iptables".into(), std::process::id())
            .nat(&["-S"])
            .unwrap_err();
        assert!(matches!(
            AgentError::from(err),
            AgentError::IptablesMissing { .. }
        ));
    }
}
