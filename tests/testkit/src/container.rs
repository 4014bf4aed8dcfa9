//! Entering a container: join a sandbox's network namespace, make a new mount and UTS namespace,
//! build the container's root (system dirs read-only, /proc, /dev, /sys, generated /etc files,
//! extra binds), `pivot_root` into it.
//!
//! Split in two halves so that it works both after `fork` (library: `Command::pre_exec`) and in a
//! process that then `execve`s (CLI `run`):
//! - [`ContainerSpec::prepare`] does everything that may allocate, on the host side: checks,
//!   creating mount points inside the root directory, opening namespace files, building C strings.
//! - [`Prepared::enter`] only makes system calls, so it is async-signal-safe.
//!
//! Invariant: every mount is made after `unshare(CLONE_NEWNS)` and `MS_PRIVATE` on `/`, so no mount
//! ever shows up in the host's mount namespace; the mounts vanish with the container's last process.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result};

/// Host directories bind-mounted read-only into every container root (when they are directories
/// on the host; host symlinks such as `/bin -> usr/bin` are recreated as symlinks).
pub const SYSTEM_DIRS: &[&str] = &["usr", "lib", "lib64", "lib32", "libx32", "bin", "sbin"];

/// Host directories under /etc that the system dirs depend on, bind-mounted read-only when the
/// root has no (or an empty) directory there.
pub const SYSTEM_ETC_DIRS: &[&str] = &["etc/alternatives"];

/// Files of a sandbox's generated etc dir that are bind-mounted over the root's /etc, as a kubelet
/// does.
pub const ETC_FILES: &[&str] = &["hostname", "hosts", "resolv.conf"];

/// `PATH` given to a container whose environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host path (file or directory).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// Remount read-only.
    pub read_only: bool,
}

impl Bind {
    /// Parses `SRC:DST[:ro|:rw]`.
    pub fn parse(spec: &str) -> Result<Bind> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [s, d] => (s, d, false),
            [s, d, "ro"] => (s, d, true),
            [s, d, "rw"] => (s, d, false),
            _ => {
                return Err(Error::invalid(
                    "bind",
                    spec,
                    "expected SRC:DST, SRC:DST:ro or SRC:DST:rw",
                ));
            }
        };
        if !dst.starts_with('/') {
            return Err(Error::invalid(
                "bind",
                spec,
                "DST must be an absolute path inside the container",
            ));
        }
        Ok(Bind {
            source: PathBuf::from(src),
            target: PathBuf::from(dst),
            read_only: ro,
        })
    }
}

/// What a new container gets. See the module doc.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Network namespace to join (e.g. `/run/netns/tt-pod-web`); `None` keeps the caller's.
    pub netns: Option<PathBuf>,
    /// Hostname in a new UTS namespace; `None` keeps the caller's UTS namespace.
    pub hostname: Option<String>,
    /// Root directory the container sees as `/`; `None` keeps the caller's mount namespace.
    pub root: Option<PathBuf>,
    /// Directory whose `hostname`, `hosts`, `resolv.conf` are bind-mounted over the root's /etc
    /// (a sandbox's `etc_dir`).
    pub etc_overlay: Option<PathBuf>,
    /// Extra bind mounts.
    pub binds: Vec<Bind>,
    /// Working directory inside the container (default `/`).
    pub workdir: Option<PathBuf>,
    /// Start a new session (`setsid`) so the container's processes form one process group.
    pub new_session: bool,
}

/// One system call of the enter sequence. All arguments are ready-made.
#[derive(Debug)]
enum Step {
    SetNs(OwnedFd, libc::c_int),
    Unshare(libc::c_int),
    SetHostname(CString),
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
    },
    PivotRootHere,
    DetachHere,
    Chdir(CString),
    SetSid,
}

/// The enter sequence, ready to run after fork or before exec. See [`ContainerSpec::prepare`].
#[derive(Debug)]
pub struct Prepared {
    steps: Vec<(Step, CString)>,
}

fn cstr(p: impl AsRef<OsStr>) -> CString {
    CString::new(p.as_ref().as_bytes()).expect("paths and names carry no NUL byte")
}

/// `root` joined with an absolute in-container path, refusing `..`.
fn inside(root: &Path, path: &Path) -> Result<PathBuf> {
    let mut out = root.to_path_buf();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(Error::invalid(
                    "container path",
                    path.display().to_string(),
                    "must be absolute without `..`",
                ));
            }
        }
    }
    Ok(out)
}

fn mkdirs(p: &Path) -> Result<()> {
    fs::create_dir_all(p).ctx(|| format!("creating mount point {}", p.display()))
}

/// Makes `p` an existing file to mount a file onto (replacing a dangling or other symlink).
fn touch_file(p: &Path) -> Result<()> {
    if let Ok(m) = fs::symlink_metadata(p) {
        if m.file_type().is_symlink() {
            fs::remove_file(p).ctx(|| format!("replacing symlink {}", p.display()))?;
        } else {
            return Ok(());
        }
    }
    if let Some(dir) = p.parent() {
        mkdirs(dir)?;
    }
    fs::File::create(p)
        .map(drop)
        .ctx(|| format!("creating mount point {}", p.display()))
}

impl ContainerSpec {
    /// Host-side preparation: validates, creates mount points inside the root, opens namespace
    /// files and builds the system-call sequence. Mount points created in the root directory stay
    /// there (empty directories and files).
    pub fn prepare(&self) -> Result<Prepared> {
        let mut steps: Vec<(Step, String)> = Vec::new();
        if let Some(ns) = &self.netns {
            let f =
                fs::File::open(ns).ctx(|| format!("opening network namespace {}", ns.display()))?;
            steps.push((
                Step::SetNs(f.into(), libc::CLONE_NEWNET),
                format!("joining network namespace {}", ns.display()),
            ));
        }
        let mut flags = 0;
        if self.root.is_some() {
            flags |= libc::CLONE_NEWNS;
        }
        if self.hostname.is_some() {
            flags |= libc::CLONE_NEWUTS;
        }
        if flags != 0 {
            steps.push((Step::Unshare(flags), "unsharing namespaces".into()));
        }
        if let Some(h) = &self.hostname {
            steps.push((Step::SetHostname(cstr(h)), format!("setting hostname {h}")));
        }
        if let Some(root) = &self.root {
            self.prepare_root(root, &mut steps)?;
        }
        let workdir = self.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
        steps.push((
            Step::Chdir(cstr(&workdir)),
            format!("changing to working directory {}", workdir.display()),
        ));
        if self.new_session {
            steps.push((Step::SetSid, "starting a session".into()));
        }
        Ok(Prepared {
            steps: steps
                .into_iter()
                .map(|(s, d)| (s, cstr(format!("tether-testkit: {d}: os error "))))
                .collect(),
        })
    }

    fn prepare_root(&self, root: &Path, steps: &mut Vec<(Step, String)>) -> Result<()> {
        let root = root
            .canonicalize()
            .ctx(|| format!("container root {}", root.display()))?;
        if !root.is_dir() {
            return Err(Error::invalid(
                "container root",
                root.display().to_string(),
                "not a directory",
            ));
        }
        let mount = push_mount;
        let ro_bind = push_bind;
        mount(
            steps,
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            "making / private".into(),
        );
        mount(
            steps,
            Some(&root),
            &root,
            None,
            libc::MS_BIND | libc::MS_REC,
            format!("bind-mounting root {}", root.display()),
        );
        for d in SYSTEM_DIRS {
            let host = Path::new("/").join(d);
            let Ok(meta) = fs::symlink_metadata(&host) else {
                continue;
            };
            let dst = root.join(d);
            let existing = fs::symlink_metadata(&dst).ok();
            if meta.file_type().is_symlink() {
                if existing.is_none() {
                    let target =
                        fs::read_link(&host).ctx(|| format!("reading {}", host.display()))?;
                    symlink(&target, &dst).ctx(|| format!("creating symlink {}", dst.display()))?;
                }
            } else if meta.is_dir() {
                // An image may have its own symlink there (merged /usr): then it points into our
                // bind of /usr.
                if existing
                    .as_ref()
                    .is_some_and(|m| m.file_type().is_symlink())
                {
                    continue;
                }
                mkdirs(&dst)?;
                ro_bind(steps, &host, &dst, true, true);
            }
        }
        // Symlinks in the host's /usr point into /etc/alternatives (Debian): bring it along unless
        // the root has its own.
        for d in SYSTEM_ETC_DIRS {
            let host = Path::new("/").join(d);
            let dst = root.join(d);
            let empty_or_missing =
                fs::read_dir(&dst).map_or(!dst.exists(), |mut rd| rd.next().is_none());
            if host.is_dir()
                && empty_or_missing
                && !fs::symlink_metadata(&dst).is_ok_and(|m| m.file_type().is_symlink())
            {
                mkdirs(&dst)?;
                ro_bind(steps, &host, &dst, false, true);
            }
        }
        let tmp = root.join("tmp");
        if !tmp.exists() {
            mkdirs(&tmp)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
                .ctx(|| format!("chmod {}", tmp.display()))?;
        }
        // iptables (e.g. an agent running as a pod) needs /run for its lock file.
        let run = root.join("run");
        if !run.exists() {
            mkdirs(&run)?;
        }
        let nodev = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let proc_dir = root.join("proc");
        mkdirs(&proc_dir)?;
        mount(
            steps,
            Some(Path::new("proc")),
            &proc_dir,
            Some("proc"),
            nodev,
            "mounting /proc".into(),
        );
        let sys_dir = root.join("sys");
        mkdirs(&sys_dir)?;
        mount(
            steps,
            Some(Path::new("sysfs")),
            &sys_dir,
            Some("sysfs"),
            nodev | libc::MS_RDONLY,
            "mounting /sys".into(),
        );
        let dev_dir = root.join("dev");
        mkdirs(&dev_dir)?;
        ro_bind(steps, Path::new("/dev"), &dev_dir, true, false);
        if let Some(etc) = &self.etc_overlay {
            for f in ETC_FILES {
                let src = etc.join(f);
                if !src.is_file() {
                    continue;
                }
                let dst = root.join("etc").join(f);
                touch_file(&dst)?;
                ro_bind(steps, &src, &dst, false, false);
            }
        }
        for b in &self.binds {
            let meta =
                fs::metadata(&b.source).ctx(|| format!("bind source {}", b.source.display()))?;
            let dst = inside(&root, &b.target)?;
            if meta.is_dir() {
                mkdirs(&dst)?;
            } else {
                touch_file(&dst)?;
            }
            ro_bind(steps, &b.source, &dst, true, b.read_only);
        }
        steps.push((
            Step::Chdir(cstr(&root)),
            format!("changing to root {}", root.display()),
        ));
        steps.push((Step::PivotRootHere, "pivot_root into the root".into()));
        steps.push((Step::DetachHere, "detaching the old root".into()));
        steps.push((Step::Chdir(cstr("/")), "changing to /".into()));
        Ok(())
    }
}

fn push_mount(
    steps: &mut Vec<(Step, String)>,
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    what: String,
) {
    steps.push((
        Step::Mount {
            source: source.map(cstr),
            target: cstr(target),
            fstype: fstype.map(cstr),
            flags,
        },
        what,
    ));
}

/// A bind mount, optionally followed by a read-only remount (a bind cannot be made read-only in
/// the same call).
fn push_bind(
    steps: &mut Vec<(Step, String)>,
    src: &Path,
    dst: &Path,
    recursive: bool,
    read_only: bool,
) {
    let rec = if recursive { libc::MS_REC } else { 0 };
    push_mount(
        steps,
        Some(src),
        dst,
        None,
        libc::MS_BIND | rec,
        format!("bind-mounting {} on {}", src.display(), dst.display()),
    );
    if read_only {
        push_mount(
            steps,
            None,
            dst,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            format!("remounting {} read-only", dst.display()),
        );
    }
}

/// Prepares joining the namespaces (network, UTS, mount) of a running container process, as
/// `kubectl exec` does. `workdir` is inside the container (default `/`).
pub fn join(pid: u32, workdir: Option<&Path>) -> Result<Prepared> {
    let mut steps = Vec::new();
    for (ns, flag) in [
        ("net", libc::CLONE_NEWNET),
        ("uts", libc::CLONE_NEWUTS),
        ("mnt", libc::CLONE_NEWNS),
    ] {
        let path = format!("/proc/{pid}/ns/{ns}");
        let f = fs::File::open(&path).ctx(|| format!("opening {path}"))?;
        steps.push((
            Step::SetNs(f.into(), flag),
            cstr(format!("tether-testkit: joining {path}: os error ")),
        ));
    }
    let wd = workdir.unwrap_or(Path::new("/"));
    steps.push((
        Step::Chdir(cstr(wd)),
        cstr(format!(
            "tether-testkit: changing to working directory {}: os error ",
            wd.display()
        )),
    ));
    Ok(Prepared { steps })
}

/// `errno` in decimal plus a newline, into `buf`, without allocating.
fn errno_digits(errno: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len() - 1;
    buf[i] = b'\n';
    let mut n = errno.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Writes `msg` and `errno` to stderr without allocating.
fn report(msg: &CString, errno: i32) {
    let mut buf = [0u8; 12];
    let digits = errno_digits(errno, &mut buf);
    // SAFETY: writing valid buffers to fd 2.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.as_bytes().len());
        libc::write(2, digits.as_ptr().cast(), digits.len());
    }
}

impl Prepared {
    /// Runs the sequence in the calling process. Async-signal-safe: no allocation, only system
    /// calls. On failure it prints which step failed to stderr and returns the OS error.
    pub fn enter(&self) -> io::Result<()> {
        for (step, what) in &self.steps {
            // SAFETY: every pointer comes from a live CString or OwnedFd of `self`.
            let rc = unsafe {
                match step {
                    Step::SetNs(fd, flag) => libc::setns(fd.as_raw_fd(), *flag),
                    Step::Unshare(flags) => libc::unshare(*flags),
                    Step::SetHostname(h) => libc::sethostname(h.as_ptr(), h.as_bytes().len()),
                    Step::Mount {
                        source,
                        target,
                        fstype,
                        flags,
                    } => libc::mount(
                        source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                        target.as_ptr(),
                        fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                        *flags,
                        std::ptr::null(),
                    ),
                    // pivot_root(".", "."): the old root ends up stacked under the new one and is
                    // detached next; no directory for it is needed inside the root.
                    Step::PivotRootHere => {
                        let dot = c".".as_ptr();
                        libc::syscall(libc::SYS_pivot_root, dot, dot) as libc::c_int
                    }
                    Step::DetachHere => libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
                    Step::Chdir(p) => libc::chdir(p.as_ptr()),
                    Step::SetSid => libc::setsid(),
                }
            };
            if rc < 0 {
                let err = io::Error::last_os_error();
                report(what, err.raw_os_error().unwrap_or(0));
                return Err(err);
            }
        }
        Ok(())
    }

    /// Makes `cmd` enter the container between fork and exec. Do not also set
    /// `Command::current_dir`: std applies it before this step; the workdir is part of the spec.
    /// `Command::spawn` returns only after the child entered and exec'd (or with the error), so
    /// no wait for `/proc/PID/root` to change is needed after it.
    pub fn install(self, cmd: &mut Command) {
        // SAFETY: `enter` is async-signal-safe (system calls only).
        unsafe {
            cmd.pre_exec(move || self.enter());
        }
    }
}

/// Finds `program` inside the container: a name with a `/` is taken as is, others are searched in
/// `path` (the container's `PATH`). Call after [`Prepared::enter`].
pub fn resolve_program(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| crate::sys::is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_specs_parse() {
        let b = Bind::parse("/host/a:/pod/a:ro").unwrap();
        assert_eq!(
            (b.source, b.target, b.read_only),
            ("/host/a".into(), "/pod/a".into(), true)
        );
        assert!(!Bind::parse("/h:/p").unwrap().read_only);
        assert!(!Bind::parse("/h:/p:rw").unwrap().read_only);
        let err = Bind::parse("/h:relative").unwrap_err().to_string();
        assert!(err.contains("DST must be an absolute path"), "{err}");
        assert!(Bind::parse("/h").is_err());
        assert!(Bind::parse("/h:/p:xx").is_err());
    }

    #[test]
    fn container_paths_stay_inside_the_root() {
        let root = Path::new("/r");
        assert_eq!(
            inside(root, Path::new("/a/b")).unwrap(),
            Path::new("/r/a/b")
        );
        assert!(inside(root, Path::new("/a/../../etc")).is_err());
    }

    #[test]
    fn programs_resolve_in_the_container_path() {
        assert_eq!(resolve_program("/x/y", "").unwrap(), PathBuf::from("/x/y"));
        assert_eq!(
            resolve_program("sh", "/nonexistent:/bin").unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert!(resolve_program("no-such-program-x", DEFAULT_PATH).is_none());
    }

    #[test]
    fn errno_is_printed_in_decimal() {
        let mut buf = [0u8; 12];
        assert_eq!(errno_digits(0, &mut buf), b"0\n");
        assert_eq!(errno_digits(13, &mut buf), b"13\n");
        assert_eq!(errno_digits(i32::MAX, &mut buf), b"2147483647\n");
    }
}
