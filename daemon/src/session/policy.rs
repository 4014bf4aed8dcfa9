//! The [`LayerPolicy`] a session hands every layer: config rules first, then tether's defaults.
//!
//! [`SessionOptions`] is the session's view of the config (filled from `tether-config` by the
//! caller), so the router depends on protocol types only.

use std::path::{Path, PathBuf};

use tether_protocol::incoming::{HttpFilter, IncomingMode};
use tether_protocol::layer::{FsAction, FsRule, LayerPolicy, NetFilter};

/// Ports of common debug adapters, never subscribed so the IDE's debugger keeps its connection:
/// debugpy, the Node inspector, delve, JDWP.
pub const DEBUGGER_PORTS: &[u16] = &[5678, 9229, 9230, 2345, 5005];

/// What a session does, as decided by the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOptions {
    /// Explicit fs rules from the config, in order.
    pub fs_rules: Vec<FsRule>,
    /// What happens to paths no rule matches (the fs mode).
    pub fs_default: FsAction,
    /// Route outgoing TCP through the target.
    pub outgoing_tcp: bool,
    /// Route outgoing UDP through the target.
    pub outgoing_udp: bool,
    /// Outgoing filter.
    pub outgoing_filter: Option<NetFilter>,
    /// Resolve names in the target.
    pub dns: bool,
    /// DNS filter.
    pub dns_filter: Option<NetFilter>,
    /// Mirror, steal, or nothing for listening ports.
    pub incoming: Option<IncomingMode>,
    /// Steal only matching HTTP requests.
    pub http_filter: Option<HttpFilter>,
    /// Ports the HTTP filter applies to (others are stolen whole); empty means all.
    pub http_filter_ports: Vec<u16>,
    /// Ports never subscribed, on top of [`DEBUGGER_PORTS`].
    pub ignore_ports: Vec<u16>,
    /// Only these ports are subscribed, when not empty.
    pub only_ports: Vec<u16>,
    /// `(local, remote)` pairs.
    pub port_mapping: Vec<(u16, u16)>,
    /// `gethostname` reports the target's hostname.
    pub hostname: bool,
    /// Process names that run unhooked.
    pub skip_processes: Vec<String>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            fs_rules: Vec::new(),
            fs_default: FsAction::RemoteReadOnly,
            outgoing_tcp: true,
            outgoing_udp: true,
            outgoing_filter: None,
            dns: true,
            dns_filter: None,
            incoming: Some(IncomingMode::Mirror),
            http_filter: None,
            http_filter_ports: Vec::new(),
            ignore_ports: Vec::new(),
            only_ports: Vec::new(),
            port_mapping: Vec::new(),
            hostname: true,
            skip_processes: Vec::new(),
        }
    }
}

/// Facts about the local machine the default rules depend on.
#[derive(Debug, Clone, Default)]
pub struct LocalContext {
    /// The working directory the process starts in.
    pub cwd: Option<PathBuf>,
    /// The executable, resolved.
    pub exe: Option<PathBuf>,
    /// The user's home directory.
    pub home: Option<PathBuf>,
    /// Temp directories (`$TMPDIR`, ...), on top of /tmp and /var/tmp.
    pub temp_dirs: Vec<PathBuf>,
    /// Local credential files outside the default hidden dirs (kubeconfigs named by
    /// `$KUBECONFIG` or the config): hidden from the debuggee like `~/.kube`.
    pub credential_files: Vec<PathBuf>,
}

impl LocalContext {
    /// The context of the current process and `exe`.
    pub fn current(exe: Option<PathBuf>) -> Self {
        let mut temp_dirs = Vec::new();
        if let Some(t) = std::env::var_os("TMPDIR") {
            temp_dirs.push(PathBuf::from(t));
        }
        Self {
            cwd: std::env::current_dir().ok(),
            exe,
            home: std::env::var_os("HOME").map(PathBuf::from),
            temp_dirs,
            credential_files: kubeconfig_files(None),
        }
    }
}

/// The kubeconfig files kubectl would read here: `explicit`, and every entry of `$KUBECONFIG`.
pub fn kubeconfig_files(explicit: Option<&Path>) -> Vec<PathBuf> {
    let from_env = std::env::var_os("KUBECONFIG").unwrap_or_default();
    explicit
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&from_env))
        .filter(|p| p.is_absolute())
        .collect()
}

/// Matches `dir` itself and everything below it.
fn under(dir: &Path) -> String {
    let s = dir.to_string_lossy();
    let s = s.trim_end_matches('/');
    format!("^{}(/|$)", regex::escape(s))
}

fn exact(path: &Path) -> String {
    format!("^{}$", regex::escape(&path.to_string_lossy()))
}

fn rule(pattern: String, action: FsAction) -> FsRule {
    FsRule { pattern, action }
}

/// tether's default fs rules (DESIGN section 4), applied after the config's. `remote` adds the
/// pod's name service and trust store files (off when the fs mode keeps everything local).
pub fn default_fs_rules(ctx: &LocalContext, remote: bool) -> Vec<FsRule> {
    use FsAction::*;
    let mut rules = Vec::new();
    // Local credentials first, so no later local rule (a cwd that is $HOME) lets them through.
    if let Some(home) = &ctx.home {
        for dir in [
            ".kube",
            ".aws",
            ".config/gcloud",
            ".azure",
            ".oci",
            ".config/doctl",
            ".bluemix",
            ".docker",
        ] {
            rules.push(rule(under(&home.join(dir)), NotFound));
        }
    }
    for file in &ctx.credential_files {
        rules.push(rule(exact(file), NotFound));
    }
    // The pod's name service and trust store: remote, read-only. Before `/usr` (local).
    let remote_files: &[&str] = if remote { REMOTE_FILES } else { &[] };
    for p in remote_files {
        rules.push(rule((*p).into(), RemoteReadOnly));
    }
    rules.extend(local_rules(ctx));
    rules
}

const REMOTE_FILES: &[&str] = &[
    r"^/etc/resolv\.conf$",
    r"^/etc/hosts$",
    r"^/etc/hostname$",
    r"^/etc/ssl(/|$)",
    r"^/etc/pki(/|$)",
    r"^/etc/ca-certificates(/|$)",
    r"^/etc/ca-certificates\.conf$",
    r"^/usr/share/ca-certificates(/|$)",
    r"^/usr/local/share/ca-certificates(/|$)",
];

fn local_rules(ctx: &LocalContext) -> Vec<FsRule> {
    use FsAction::*;
    let mut rules = Vec::new();
    // The machine the process really runs on, its toolchains and the loader's files.
    for p in [
        "^/proc(/|$)",
        "^/sys(/|$)",
        "^/dev(/|$)",
        "^/usr(/|$)",
        "^/lib(/|$)",
        "^/lib32(/|$)",
        "^/lib64(/|$)",
        "^/libx32(/|$)",
        "^/bin(/|$)",
        "^/sbin(/|$)",
        "^/opt(/|$)",
        "^/nix(/|$)",
        "^/snap(/|$)",
        "^/run/user(/|$)",
        "^/tmp(/|$)",
        "^/var/tmp(/|$)",
        r"^/etc/ld\.so\.",
        r"^/etc/localtime$",
        r"^/etc/nsswitch\.conf$",
        r"^/etc/gai\.conf$",
        r"^/etc/passwd$",
        r"^/etc/group$",
        r"^/etc/alternatives(/|$)",
    ] {
        rules.push(rule(p.into(), Local));
    }
    if let Some(home) = &ctx.home {
        for dir in [
            ".cargo",
            ".rustup",
            ".nvm",
            ".npm",
            ".pyenv",
            ".rbenv",
            ".sdkman",
            ".m2",
            ".gradle",
            ".local",
            ".cache",
            "go",
            ".vscode",
            ".vscode-server",
            ".java",
        ] {
            rules.push(rule(under(&home.join(dir)), Local));
        }
    }
    for t in &ctx.temp_dirs {
        rules.push(rule(under(t), Local));
    }
    if let Some(cwd) = &ctx.cwd {
        rules.push(rule(under(cwd), Local));
    }
    if let Some(exe) = &ctx.exe {
        rules.push(rule(exact(exe), Local));
        if let Some(dir) = exe.parent().filter(|d| d.as_os_str().len() > 1) {
            rules.push(rule(under(dir), Local));
        }
    }
    rules
}

/// The policy for one session. `target_hostname` is the agent's `TargetInfo::hostname`.
pub fn build_policy(
    opts: &SessionOptions,
    ctx: &LocalContext,
    target_hostname: &str,
) -> LayerPolicy {
    let mut fs_rules = opts.fs_rules.clone();
    fs_rules.extend(default_fs_rules(ctx, opts.fs_default != FsAction::Local));
    let mut ignore_ports = opts.ignore_ports.clone();
    for p in DEBUGGER_PORTS {
        if !ignore_ports.contains(p) {
            ignore_ports.push(*p);
        }
    }
    LayerPolicy {
        fs_rules,
        fs_default: opts.fs_default,
        outgoing_tcp: opts.outgoing_tcp,
        outgoing_udp: opts.outgoing_udp,
        outgoing_filter: opts.outgoing_filter.clone(),
        dns: opts.dns,
        dns_filter: opts.dns_filter.clone(),
        incoming: opts.incoming,
        http_filter: opts.http_filter.clone(),
        ignore_ports,
        only_ports: opts.only_ports.clone(),
        port_mapping: opts.port_mapping.clone(),
        hostname: opts.hostname.then(|| target_hostname.to_owned()),
        skip_processes: opts.skip_processes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_match<'a>(rules: &'a [FsRule], path: &str) -> Option<&'a FsRule> {
        rules
            .iter()
            .find(|r| regex::Regex::new(&r.pattern).unwrap().is_match(path))
    }

    #[test]
    fn defaults_route_paths_as_designed() {
        let ctx = LocalContext {
            cwd: Some("/home/dev/proj".into()),
            exe: Some("/home/dev/proj/target/debug/app".into()),
            home: Some("/home/dev".into()),
            temp_dirs: vec![],
            credential_files: vec!["/etc/kube/dev.conf".into()],
        };
        let opts = SessionOptions {
            fs_rules: vec![FsRule {
                pattern: "^/home/dev/proj/data(/|$)".into(),
                action: FsAction::RemoteReadWrite,
            }],
            ..SessionOptions::default()
        };
        let p = build_policy(&opts, &ctx, "pod-a");
        let action = |path: &str| first_match(&p.fs_rules, path).map(|r| r.action);
        assert_eq!(
            action("/home/dev/proj/data/x"),
            Some(FsAction::RemoteReadWrite)
        );
        assert_eq!(action("/home/dev/proj/src/main.rs"), Some(FsAction::Local));
        assert_eq!(action("/home/dev/.kube/config"), Some(FsAction::NotFound));
        assert_eq!(
            action("/home/dev/.aws/credentials"),
            Some(FsAction::NotFound)
        );
        assert_eq!(
            action("/home/dev/.config/gcloud/x"),
            Some(FsAction::NotFound)
        );
        assert_eq!(action("/home/dev/.kubex"), None);
        assert_eq!(action("/etc/kube/dev.conf"), Some(FsAction::NotFound));
        assert_eq!(action("/etc/kube/dev.conf.d"), None);
        assert_eq!(action("/etc/resolv.conf"), Some(FsAction::RemoteReadOnly));
        assert_eq!(
            action("/etc/ssl/certs/ca-certificates.crt"),
            Some(FsAction::RemoteReadOnly)
        );
        assert_eq!(
            action("/usr/share/ca-certificates/x.crt"),
            Some(FsAction::RemoteReadOnly)
        );
        assert_eq!(action("/usr/lib/libc.so.6"), Some(FsAction::Local));
        assert_eq!(action("/proc/self/maps"), Some(FsAction::Local));
        assert_eq!(action("/tmp/x"), Some(FsAction::Local));
        assert_eq!(action("/etc/app/config.yaml"), None);
        assert_eq!(p.fs_default, FsAction::RemoteReadOnly);
        assert_eq!(p.hostname.as_deref(), Some("pod-a"));
        assert!(p.ignore_ports.contains(&9229) && p.ignore_ports.contains(&5678));
    }

    #[test]
    fn paths_with_regex_characters_are_escaped() {
        let ctx = LocalContext {
            cwd: Some("/w/a+b (1)".into()),
            ..LocalContext::default()
        };
        let rules = default_fs_rules(&ctx, true);
        assert_eq!(
            first_match(&rules, "/w/a+b (1)/f").map(|r| r.action),
            Some(FsAction::Local)
        );
        assert!(first_match(&rules, "/w/aab (1)/f").is_none());
    }

    #[test]
    fn hostname_off_sends_none() {
        let opts = SessionOptions {
            hostname: false,
            ..SessionOptions::default()
        };
        assert_eq!(
            build_policy(&opts, &LocalContext::default(), "x").hostname,
            None
        );
    }
}
