//! Path operations run with the target's filesystem credentials, so the pod's user owns what
//! the session creates and cannot read what the pod's user could not.
//!
//! The agent runs as root. For each path operation the blocking thread takes the target's
//! filesystem uid, gid and supplementary groups (`setfsuid`, `setfsgid` and the raw `setgroups`
//! syscall all act on the calling thread only; glibc's wrapper would change every thread) and
//! gives them back afterwards. A non-zero fsuid also drops the thread's filesystem capabilities
//! (`CAP_DAC_OVERRIDE` and friends), exactly as for the pod's own processes.

use std::io;

/// Filesystem credentials of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// Filesystem uid (the 4th `Uid:` field of `/proc/PID/status`).
    pub uid: libc::uid_t,
    /// Filesystem gid.
    pub gid: libc::gid_t,
    /// Supplementary groups.
    pub groups: Vec<libc::gid_t>,
}

impl Creds {
    /// The credentials of process `pid`.
    pub fn of(pid: u32) -> io::Result<Self> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/status"))?)
    }

    /// Parses `/proc/PID/status`.
    pub fn parse(status: &str) -> io::Result<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::split_whitespace)
                .ok_or_else(|| bad(format!("no {name} line")))
        };
        let fs_id = |name: &str| -> io::Result<u32> {
            field(name)?
                .nth(3)
                .ok_or_else(|| bad(format!("{name} has no filesystem id")))?
                .parse()
                .map_err(|e| bad(format!("{name} {e}")))
        };
        let groups = field("Groups:")?
            .map(|g| g.parse().map_err(|e| bad(format!("Groups: {e}"))))
            .collect::<io::Result<_>>()?;
        Ok(Self {
            uid: fs_id("Uid:")?,
            gid: fs_id("Gid:")?,
            groups,
        })
    }

    /// Whether these are root's: nothing to switch.
    pub fn is_root(&self) -> bool {
        self.uid == 0 && self.gid == 0
    }

    /// Takes these credentials on this thread until the guard drops (`None` for root: nothing
    /// to switch). Fails, changing nothing, when the switch does not take (the agent lacks
    /// `CAP_SETUID`/`CAP_SETGID`).
    pub fn enter(&self) -> io::Result<Option<Switched>> {
        if self.is_root() {
            return Ok(None);
        }
        Switched::to(self).map(Some)
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("/proc/PID/status: {msg}"),
    )
}

/// The thread's own credentials while it acts as another user; restored on drop (also when
/// the operation panics).
#[derive(Debug)]
pub struct Switched {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl Switched {
    fn to(c: &Creds) -> io::Result<Self> {
        let old = Self {
            uid: fsuid(),
            gid: fsgid(),
            groups: thread_groups()?,
        };
        set_groups(&c.groups)?;
        // SAFETY: plain syscalls on this thread's credentials.
        unsafe {
            libc::syscall(libc::SYS_setfsgid, c.gid);
            libc::syscall(libc::SYS_setfsuid, c.uid);
        }
        if fsuid() != c.uid || fsgid() != c.gid {
            drop(old);
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "cannot act as uid {} gid {} (the agent needs CAP_SETUID and CAP_SETGID)",
                    c.uid, c.gid
                ),
            ));
        }
        Ok(old)
    }
}

impl Drop for Switched {
    fn drop(&mut self) {
        // uid first: back to root gives back the capabilities the other two need.
        // SAFETY: plain syscalls on this thread's credentials.
        unsafe {
            libc::syscall(libc::SYS_setfsuid, self.uid);
            libc::syscall(libc::SYS_setfsgid, self.gid);
        }
        if let Err(e) = set_groups(&self.groups) {
            // A pooled thread left with the pod's groups would leak them into later work.
            tracing::error!("cannot restore the agent's groups: {e}; aborting");
            std::process::abort();
        }
    }
}

/// The thread's fsuid (`setfsuid(-1)` changes nothing and returns the current one).
fn fsuid() -> libc::uid_t {
    // SAFETY: an invalid id only queries.
    unsafe { libc::syscall(libc::SYS_setfsuid, u32::MAX) as libc::uid_t }
}

fn fsgid() -> libc::gid_t {
    // SAFETY: an invalid id only queries.
    unsafe { libc::syscall(libc::SYS_setfsgid, u32::MAX) as libc::gid_t }
}

fn thread_groups() -> io::Result<Vec<libc::gid_t>> {
    // SAFETY: size 0 asks for the count.
    let n = unsafe { libc::syscall(libc::SYS_getgroups, 0, std::ptr::null_mut::<libc::gid_t>()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut groups = vec![0; n as usize];
    // SAFETY: the buffer holds `n` ids.
    let n = unsafe { libc::syscall(libc::SYS_getgroups, n, groups.as_mut_ptr()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    groups.truncate(n as usize);
    Ok(groups)
}

fn set_groups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: the raw syscall (this thread only) with a valid buffer of `len` ids.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_filesystem_ids_and_groups() {
        let status = "Name:\tapp\nUid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\nGroups:\t10 20 \n";
        assert_eq!(
            Creds::parse(status).unwrap(),
            Creds {
                uid: 1003,
                gid: 2003,
                groups: vec![10, 20]
            }
        );
        let none = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert!(Creds::parse(none).unwrap().is_root());
    }

    #[test]
    fn malformed_status_is_an_error() {
        assert!(Creds::parse("Uid:\t1000\n").is_err());
        assert!(Creds::parse("Gid:\t1 1 1 1\nGroups:\n").is_err());
        assert!(Creds::parse("Uid:\tx x x x\nGid:\t1 1 1 1\nGroups:\n").is_err());
    }

    #[test]
    fn switching_acts_on_this_thread_only_and_is_undone() {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: skipped");
            return;
        }
        let nobody = Creds {
            uid: 65534,
            gid: 65534,
            groups: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        let created = dir.path().join("made-as-nobody");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let other = std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            fsuid()
        });
        {
            let _as = nobody.enter().unwrap().expect("not root: a switch");
            assert_eq!(fsuid(), 65534);
            std::fs::write(&created, b"x").unwrap();
            // Root's files are out of reach now.
            let e = std::fs::read("/proc/1/environ").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        }
        assert_eq!(other.join().unwrap(), 0, "other threads keep root");
        assert_eq!(fsuid(), 0, "restored");
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&created).unwrap();
        assert_eq!((md.uid(), md.gid()), (65534, 65534));
    }
}
