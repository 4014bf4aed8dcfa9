//! A scripted fake session (mirrord's fake-peer style): a unix socket server speaking the layer
//! link from canned data, recording every hello and request, plus helpers to run real programs
//! under the built `libtether_layer.so`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_protocol::RemoteError;
use tether_protocol::codec::{read_frame, write_frame};
use tether_protocol::dns::{DnsRequest, DnsResponse};
use tether_protocol::file::{DirEntry, FileRequest, FileResponse, FileType, Metadata, Timespec};
use tether_protocol::incoming::IncomingMode;
use tether_protocol::layer::{
    DaemonHello, DaemonMessage, FsAction, FsRule, LayerHello, LayerMessage, LayerPolicy,
    LayerRequest, LayerResponse, NetFilter, Side,
};

/// Text of the canned remote file.
pub const HELLO: &str = "hello from the pod\n";
/// A name only the fake pod resolves.
pub const POD_NAME: &str = "pod-only.svc.cluster.local";
/// Its address.
pub const POD_IP: &str = "10.99.0.7";
/// What the fake cluster service sends on connect.
pub const BANNER: &str = "cluster-service-says-hi\n";
/// The fake pod's host name.
pub const POD_HOSTNAME: &str = "pod-7f9c";

/// Something the fake session saw.
#[derive(Debug, Clone)]
pub enum Seen {
    /// A hello.
    Hello(LayerHello),
    /// A request, with the pid of the connection's hello.
    Request(u32, LayerRequest),
}

/// The default test policy.
pub fn policy() -> LayerPolicy {
    let rule = |p: &str, a| FsRule {
        pattern: p.into(),
        action: a,
    };
    LayerPolicy {
        fs_rules: vec![
            rule(r"^/remote(/|$)", FsAction::RemoteReadOnly),
            rule(r"^/rw(/|$)", FsAction::RemoteReadWrite),
            rule(r"^/root/\.kube(/|$)", FsAction::NotFound),
        ],
        fs_default: FsAction::Local,
        outgoing_tcp: true,
        outgoing_udp: true,
        outgoing_filter: Some(NetFilter {
            matching: Side::Local,
            items: vec!["localhost".into()],
        }),
        dns: true,
        dns_filter: None,
        incoming: Some(IncomingMode::Mirror),
        http_filter: None,
        ignore_ports: vec![9229],
        only_ports: vec![],
        port_mapping: vec![],
        hostname: Some(POD_HOSTNAME.into()),
        skip_processes: vec![],
    }
}

fn meta(mode: u32, size: u64, ino: u64) -> Metadata {
    Metadata {
        dev: 0x803,
        ino,
        mode,
        nlink: 1,
        uid: 1000,
        gid: 1000,
        rdev: 0,
        size,
        blksize: 4096,
        blocks: size.div_ceil(512),
        atime: Timespec {
            sec: 1_700_000_000,
            nsec: 0,
        },
        mtime: Timespec {
            sec: 1_700_000_000,
            nsec: 0,
        },
        ctime: Timespec {
            sec: 1_700_000_000,
            nsec: 0,
        },
    }
}

struct Canned {
    files: HashMap<String, Vec<u8>>,
    dirs: HashMap<String, Vec<String>>,
    /// Remote handles: fd -> (path, offset).
    handles: HashMap<u64, (String, usize)>,
    next_handle: u64,
    service: SocketAddr,
    udp_echo: SocketAddr,
}

impl Canned {
    fn stat(&self, path: &str) -> Result<Metadata, RemoteError> {
        if let Some(f) = self.files.get(path) {
            Ok(meta(0o100644, f.len() as u64, 11))
        } else if self.dirs.contains_key(path) {
            Ok(meta(0o040755, 4096, 12))
        } else {
            Err(RemoteError::new(
                libc::ENOENT,
                format!("{path}: no such file"),
            ))
        }
    }

    fn file(&mut self, req: FileRequest) -> Result<FileResponse, RemoteError> {
        match req {
            FileRequest::ReadWhole { path, max_len } => {
                if self.dirs.contains_key(&path) {
                    return Err(RemoteError::new(libc::EISDIR, "is a directory"));
                }
                let data = self
                    .files
                    .get(&path)
                    .ok_or_else(|| RemoteError::new(libc::ENOENT, "no such file"))?;
                if data.len() as u64 > max_len {
                    return Err(RemoteError::new(libc::EFBIG, "too big"));
                }
                Ok(FileResponse::Contents {
                    data: data.clone().into(),
                    metadata: meta(0o100644, data.len() as u64, 11),
                })
            }
            FileRequest::Stat { path, .. } => self.stat(&path).map(FileResponse::Metadata),
            FileRequest::Access { path, .. } => self.stat(&path).map(|_| FileResponse::Done),
            FileRequest::ReadDir { path } => {
                let names = self
                    .dirs
                    .get(&path)
                    .ok_or_else(|| RemoteError::new(libc::ENOENT, "no such dir"))?;
                Ok(FileResponse::Entries(
                    names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| DirEntry {
                            name: n.clone(),
                            ino: 100 + i as u64,
                            file_type: FileType::File,
                        })
                        .collect(),
                ))
            }
            FileRequest::Open { path, options } => {
                if options.truncate || options.create && !self.files.contains_key(&path) {
                    self.files.insert(path.clone(), Vec::new());
                }
                if !self.files.contains_key(&path) {
                    return Err(RemoteError::new(libc::ENOENT, "no such file"));
                }
                let fd = self.next_handle;
                self.next_handle += 1;
                let off = if options.append {
                    self.files[&path].len()
                } else {
                    0
                };
                let m = meta(0o100644, self.files[&path].len() as u64, 13);
                self.handles.insert(fd, (path, off));
                Ok(FileResponse::Opened { fd, metadata: m })
            }
            FileRequest::Write { fd, data } => {
                let (path, off) = self
                    .handles
                    .get_mut(&fd)
                    .ok_or_else(|| RemoteError::new(libc::EBADF, "bad fd"))?;
                let f = self.files.get_mut(path).expect("open file");
                let end = *off + data.len();
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[*off..end].copy_from_slice(data.as_slice());
                *off = end;
                Ok(FileResponse::Written(data.len() as u64))
            }
            FileRequest::Read { fd, len } => {
                let (path, off) = self
                    .handles
                    .get_mut(&fd)
                    .ok_or_else(|| RemoteError::new(libc::EBADF, "bad fd"))?;
                let f = &self.files[path];
                let end = (*off + len as usize).min(f.len());
                let d = f[*off.min(&mut f.len())..end].to_vec();
                *off = end.max(*off);
                Ok(FileResponse::Data(d.into()))
            }
            FileRequest::ReadAt { fd, offset, len } => {
                let (path, _) = self
                    .handles
                    .get(&fd)
                    .ok_or_else(|| RemoteError::new(libc::EBADF, "bad fd"))?;
                let f = &self.files[path];
                let start = (offset as usize).min(f.len());
                let end = (start + len as usize).min(f.len());
                Ok(FileResponse::Data(f[start..end].to_vec().into()))
            }
            FileRequest::Seek { fd, from } => {
                let (path, off) = self
                    .handles
                    .get_mut(&fd)
                    .ok_or_else(|| RemoteError::new(libc::EBADF, "bad fd"))?;
                let len = self.files[path].len() as i64;
                let new = match from {
                    tether_protocol::file::SeekFrom::Start(o) => o as i64,
                    tether_protocol::file::SeekFrom::Current(d) => *off as i64 + d,
                    tether_protocol::file::SeekFrom::End(d) => len + d,
                };
                *off = new.max(0) as usize;
                Ok(FileResponse::Offset(*off as u64))
            }
            FileRequest::Fstat { fd } => {
                let (path, _) = self
                    .handles
                    .get(&fd)
                    .ok_or_else(|| RemoteError::new(libc::EBADF, "bad fd"))?;
                Ok(FileResponse::Metadata(meta(
                    0o100644,
                    self.files[path].len() as u64,
                    13,
                )))
            }
            FileRequest::Close { fd } => {
                self.handles.remove(&fd);
                Ok(FileResponse::Done)
            }
            FileRequest::Mkdir { path, .. } => {
                self.dirs.insert(path, vec![]);
                Ok(FileResponse::Done)
            }
            FileRequest::Unlink { path } => self
                .files
                .remove(&path)
                .map(|_| FileResponse::Done)
                .ok_or_else(|| RemoteError::new(libc::ENOENT, "no such file")),
            other => Err(RemoteError::new(libc::ENOSYS, format!("fake: {other:?}"))),
        }
    }

    fn answer(&mut self, req: LayerRequest) -> Result<LayerResponse, RemoteError> {
        match req {
            LayerRequest::File(f) => self.file(f).map(LayerResponse::File),
            LayerRequest::Dns(DnsRequest::Lookup { name, .. }) => {
                if name == POD_NAME {
                    Ok(LayerResponse::Dns(DnsResponse::Addresses {
                        canonical_name: name,
                        addrs: vec![POD_IP.parse::<IpAddr>().unwrap()],
                    }))
                } else {
                    Err(RemoteError::new(libc::ENOENT, "no such host"))
                }
            }
            LayerRequest::Dns(DnsRequest::Reverse { addr }) if addr.to_string() == POD_IP => {
                Ok(LayerResponse::Dns(DnsResponse::Name(POD_NAME.into())))
            }
            LayerRequest::Dns(_) => Err(RemoteError::new(libc::ENOENT, "no such address")),
            LayerRequest::ConnectTcp { remote } if remote.ip().to_string() == POD_IP => {
                Ok(LayerResponse::Intercepted {
                    interceptor: self.service,
                    remote_local: "10.99.0.50:41000".parse().unwrap(),
                })
            }
            LayerRequest::ConnectTcp { .. } => {
                Err(RemoteError::new(libc::ECONNREFUSED, "connection refused"))
            }
            LayerRequest::ConnectUdp { .. } => Ok(LayerResponse::Intercepted {
                interceptor: self.udp_echo,
                remote_local: "10.99.0.50:41001".parse().unwrap(),
            }),
            LayerRequest::Listen { .. }
            | LayerRequest::Unlisten { .. }
            | LayerRequest::Exec { .. } => Ok(LayerResponse::Done),
        }
    }
}

/// The fake session server.
pub struct FakeSession {
    /// `unix:/...` for `TETHER_SESSION_ADDR`.
    pub addr: String,
    /// Token it expects.
    pub token: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Stop answering (and drop every connection) after this many requests; 0 = never.
    die_after: Arc<AtomicUsize>,
    dead: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

fn serve_conn(
    mut s: UnixStream,
    canned: Arc<Mutex<Canned>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    policy: LayerPolicy,
    token: String,
    die_after: Arc<AtomicUsize>,
    dead: Arc<AtomicBool>,
) {
    let Ok(LayerMessage::Hello(h)) = read_frame::<_, LayerMessage>(&mut s) else {
        return;
    };
    let pid = h.pid;
    seen.lock().unwrap().push(Seen::Hello(h.clone()));
    if h.token != token {
        let _ = write_frame(
            &mut s,
            &DaemonMessage::Refused("wrong session token".into()),
        );
        return;
    }
    let _ = write_frame(
        &mut s,
        &DaemonMessage::Hello(DaemonHello {
            protocol_version: tether_protocol::PROTOCOL_VERSION,
            policy,
        }),
    );
    while let Ok(LayerMessage::Request { id, body }) = read_frame::<_, LayerMessage>(&mut s) {
        if dead.load(Ordering::SeqCst) {
            return;
        }
        seen.lock().unwrap().push(Seen::Request(pid, body.clone()));
        // Exec announcements (shells, shims) do not count towards the scripted death.
        let n = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| {
                !matches!(
                    s,
                    Seen::Hello(_) | Seen::Request(_, LayerRequest::Exec { .. })
                )
            })
            .count();
        let limit = die_after.load(Ordering::SeqCst);
        if limit != 0 && n > limit {
            dead.store(true, Ordering::SeqCst);
            return;
        }
        let result = canned.lock().unwrap().answer(body);
        if write_frame(&mut s, &DaemonMessage::Response { id, result }).is_err() {
            return;
        }
    }
}

impl FakeSession {
    /// Starts a fake session with `policy`.
    pub fn start(policy: LayerPolicy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("session.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        // The cluster-only service: sends a banner, then echoes a line back upper-cased.
        let service = TcpListener::bind("127.0.0.1:0").unwrap();
        let service_addr = service.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in service.incoming() {
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let _ = c.write_all(BANNER.as_bytes());
                    let mut buf = [0u8; 256];
                    if let Ok(n) = c.read(&mut buf) {
                        let _ = c.write_all(&buf[..n].to_ascii_uppercase());
                    }
                });
            }
        });
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let mut reply = b"pong:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = udp.send_to(&reply, from);
            }
        });
        let mut files = HashMap::new();
        files.insert("/remote/hello.txt".to_string(), HELLO.as_bytes().to_vec());
        files.insert("/rw/existing.txt".to_string(), b"0123456789".to_vec());
        let big: Vec<u8> = (0..9 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        files.insert("/remote/big.bin".to_string(), big);
        let mut dirs = HashMap::new();
        dirs.insert(
            "/remote".to_string(),
            vec!["hello.txt".into(), "dir".into(), "big.bin".into()],
        );
        dirs.insert(
            "/remote/dir".to_string(),
            vec!["a.txt".into(), "b.txt".into()],
        );
        dirs.insert("/rw".to_string(), vec!["existing.txt".into()]);
        let canned = Arc::new(Mutex::new(Canned {
            files,
            dirs,
            handles: HashMap::new(),
            next_handle: 1,
            service: service_addr,
            udp_echo: udp_addr,
        }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let token = "test-token".to_string();
        let die_after = Arc::new(AtomicUsize::new(0));
        let dead = Arc::new(AtomicBool::new(false));
        {
            let (seen, token, die_after, dead) =
                (seen.clone(), token.clone(), die_after.clone(), dead.clone());
            std::thread::spawn(move || {
                for c in listener.incoming() {
                    let Ok(c) = c else { continue };
                    if dead.load(Ordering::SeqCst) {
                        drop(c);
                        continue;
                    }
                    let (canned, seen, policy, token, die_after, dead) = (
                        canned.clone(),
                        seen.clone(),
                        policy.clone(),
                        token.clone(),
                        die_after.clone(),
                        dead.clone(),
                    );
                    std::thread::spawn(move || {
                        serve_conn(c, canned, seen, policy, token, die_after, dead)
                    });
                }
            });
        }
        Self {
            addr: format!("unix:{}", sock.display()),
            token,
            seen,
            die_after,
            dead,
            _dir: dir,
        }
    }

    /// Makes the session vanish after `n` answered requests.
    pub fn die_after(&self, n: usize) {
        self.die_after.store(n, Ordering::SeqCst);
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<LayerRequest> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Request(_, r) => Some(r),
                Seen::Hello(_) => None,
            })
            .collect()
    }

    /// Hellos seen so far.
    pub fn hellos(&self) -> Vec<LayerHello> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Hello(h) => Some(h),
                Seen::Request(..) => None,
            })
            .collect()
    }

    /// A command with the layer preloaded and this session's variables.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("LD_PRELOAD", layer_path())
            .env("TETHER_SESSION_ADDR", &self.addr)
            .env("TETHER_SESSION_TOKEN", &self.token)
            .env("UV_USE_IO_URING", "0");
        c
    }
}

/// Runs a command with a deadline, so a hang fails the test instead of blocking it.
pub fn run(mut cmd: Command) -> Output {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn test program");
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    std::thread::spawn(move || {
        for _ in 0..600 {
            std::thread::sleep(Duration::from_millis(100));
            if d2.load(Ordering::SeqCst) {
                return;
            }
        }
        // SAFETY: killing our own child after a 60 s deadline.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("wait test program");
    done.store(true, Ordering::SeqCst);
    out
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

static BUILD: std::sync::Once = std::sync::Once::new();

/// Newest modification time of the files under `dir`.
fn newest(dir: &Path) -> std::time::SystemTime {
    let mut t = std::time::UNIX_EPOCH;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let m = if p.is_dir() {
                newest(&p)
            } else {
                e.metadata().and_then(|m| m.modified()).unwrap_or(t)
            };
            t = t.max(m);
        }
    }
    t
}

/// The built `libtether_layer.so`. Integration tests cannot link a cdylib, so cargo does not
/// rebuild it for them: when the layer's or the protocol's sources are newer than the file,
/// build it here (CI's workspace build leaves it fresh, so this never rewrites a library that
/// other tests may be loading).
pub fn layer_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> or target/<profile>/examples/<example>
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let so = profile_dir.join("libtether_layer.so");
    BUILD.call_once(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let sources = newest(&manifest.join("src"))
            .max(newest(&manifest.join("../protocol/src")))
            .max(newest(&manifest.join("Cargo.toml")));
        let built = std::fs::metadata(&so).and_then(|m| m.modified()).ok();
        if built.is_some_and(|b| b >= sources) {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "tether-layer", "--lib"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        assert!(
            cmd.status().unwrap().success(),
            "cargo build -p tether-layer failed"
        );
    });
    assert!(so.exists(), "{} is missing", so.display());
    so
}

/// The real python3 binary (not a version-manager shim script), if there is one.
pub fn python() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let p = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !p.is_empty()).then_some(p)
}

/// Compiles a C program from `src` into `dir`.
pub fn compile_c(dir: &Path, name: &str, src: &str, flags: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = dir.join(name);
    let st = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&c)
        .status()
        .expect("cc");
    assert!(st.success(), "cc failed for {name}");
    out
}
