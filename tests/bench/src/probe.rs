//! The measured operations. `tether-bench-probe OP key=value...` runs one [`Op`] and prints one
//! [`ProbeOutput`] as JSON; the harness runs the same op under the layer, inside the pod's
//! network namespace and on the host, so every side of a row is the same code.
//!
//! File operations call libc directly (`open`, `read`, `close`, `stat`): exactly the symbols the
//! layer interposes, with no std wrapper picking another one (std's `metadata` uses `statx`).
//! Sockets use std (`socket` + `connect`, `recv`/`send` on the fd the layer hands over).

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Banner byte the pod's `tether-testsrv bench-source` sends on accept.
pub const BANNER: u8 = b'+';

/// One operation of the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Does nothing: the process start (and, under the layer, its connect + hello) is the work.
    Hello,
    /// `stat` and `open`+`read`+`close` of a local file, `iters` times each, in thread CPU time
    /// (robust on a busy machine).
    LocalFs { path: String, iters: u64 },
    /// `open`+`read(size)`+`close` of one file, `iters` times, wall time of each.
    SmallFile { path: String, iters: u64, size: u64 },
    /// Reads a whole file with `read(buf)` calls; bytes and wall time from `open` to `close`.
    ReadFile { path: String, buf: usize },
    /// TCP connect to `addr` until its banner byte arrives, `iters` times.
    Connect { addr: SocketAddr, iters: u64 },
    /// Asks the bench source at `addr` for `bytes` bytes and reads them with `read(buf)`.
    Bulk {
        addr: SocketAddr,
        bytes: u64,
        buf: usize,
    },
    /// Sends `bytes` bytes to the bench source at `addr` with `write(buf)` calls; timed from the
    /// first byte to the server's receipt for the last.
    Upload {
        addr: SocketAddr,
        bytes: u64,
        buf: usize,
    },
    /// Asks the bench source at `addr` for the file `path` (a path in the pod) and reads it.
    Fetch {
        addr: SocketAddr,
        path: String,
        buf: usize,
    },
    /// One-byte round trips over one connection to the bench source's echo.
    Rtt { addr: SocketAddr, iters: u64 },
    /// HTTP/1.1 GETs to `addr`, a new connection each (`Connection: close`), timed from connect
    /// to the end of the response (the server's close), and to its first and last bytes.
    Http { addr: SocketAddr, iters: u64 },
}

/// What a probe prints (fields unused by an op stay at their defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeOutput {
    /// Latency of each iteration, in ns.
    #[serde(default)]
    pub samples_ns: Vec<u64>,
    /// Bytes moved.
    #[serde(default)]
    pub bytes: u64,
    /// Seconds the transfer took.
    #[serde(default)]
    pub secs: f64,
    /// `LocalFs`: thread CPU ns per `stat`.
    #[serde(default)]
    pub stat_ns: f64,
    /// `LocalFs`: thread CPU ns per `open`+`read`+`close`.
    #[serde(default)]
    pub open_ns: f64,
    /// `Http`: time to the first byte of each response, in ns (`samples_ns` is to its end).
    #[serde(default)]
    pub first_byte_ns: Vec<u64>,
    /// `Http`: time to the last byte of each response, in ns (before the server's close).
    #[serde(default)]
    pub last_byte_ns: Vec<u64>,
    /// `Http`: every distinct `x-tether-instance` header seen (which server answered).
    #[serde(default)]
    pub instances: Vec<String>,
}

impl Op {
    /// The probe's command line for this op.
    pub fn to_args(&self) -> Vec<String> {
        let kv = |k: &str, v: &dyn std::fmt::Display| format!("{k}={v}");
        match self {
            Op::Hello => vec!["hello".into()],
            Op::LocalFs { path, iters } => {
                vec!["local-fs".into(), kv("path", path), kv("iters", iters)]
            }
            Op::SmallFile { path, iters, size } => vec![
                "small-file".into(),
                kv("path", path),
                kv("iters", iters),
                kv("size", size),
            ],
            Op::ReadFile { path, buf } => {
                vec!["read-file".into(), kv("path", path), kv("buf", buf)]
            }
            Op::Connect { addr, iters } => {
                vec!["connect".into(), kv("addr", addr), kv("iters", iters)]
            }
            Op::Bulk { addr, bytes, buf } => vec![
                "bulk".into(),
                kv("addr", addr),
                kv("bytes", bytes),
                kv("buf", buf),
            ],
            Op::Upload { addr, bytes, buf } => vec![
                "upload".into(),
                kv("addr", addr),
                kv("bytes", bytes),
                kv("buf", buf),
            ],
            Op::Fetch { addr, path, buf } => vec![
                "fetch".into(),
                kv("addr", addr),
                kv("path", path),
                kv("buf", buf),
            ],
            Op::Rtt { addr, iters } => vec!["rtt".into(), kv("addr", addr), kv("iters", iters)],
            Op::Http { addr, iters } => vec!["http".into(), kv("addr", addr), kv("iters", iters)],
        }
    }

    /// Parses what [`Op::to_args`] wrote.
    pub fn from_args(args: &[String]) -> anyhow::Result<Op> {
        use anyhow::Context as _;
        let (name, rest) = args.split_first().context("no op given")?;
        let get = |k: &str| -> anyhow::Result<&str> {
            rest.iter()
                .find_map(|a| a.strip_prefix(k)?.strip_prefix('='))
                .with_context(|| format!("{name}: missing {k}=..."))
        };
        let num = |k: &str| -> anyhow::Result<u64> {
            get(k)?
                .parse()
                .with_context(|| format!("{name}: {k} is not a number"))
        };
        let addr = || -> anyhow::Result<SocketAddr> {
            get("addr")?
                .parse()
                .with_context(|| format!("{name}: addr is not IP:PORT"))
        };
        Ok(match name.as_str() {
            "hello" => Op::Hello,
            "local-fs" => Op::LocalFs {
                path: get("path")?.into(),
                iters: num("iters")?,
            },
            "small-file" => Op::SmallFile {
                path: get("path")?.into(),
                iters: num("iters")?,
                size: num("size")?,
            },
            "read-file" => Op::ReadFile {
                path: get("path")?.into(),
                buf: num("buf")? as usize,
            },
            "connect" => Op::Connect {
                addr: addr()?,
                iters: num("iters")?,
            },
            "bulk" => Op::Bulk {
                addr: addr()?,
                bytes: num("bytes")?,
                buf: num("buf")? as usize,
            },
            "upload" => Op::Upload {
                addr: addr()?,
                bytes: num("bytes")?,
                buf: num("buf")? as usize,
            },
            "fetch" => Op::Fetch {
                addr: addr()?,
                path: get("path")?.into(),
                buf: num("buf")? as usize,
            },
            "rtt" => Op::Rtt {
                addr: addr()?,
                iters: num("iters")?,
            },
            "http" => Op::Http {
                addr: addr()?,
                iters: num("iters")?,
            },
            other => anyhow::bail!("unknown op {other:?}"),
        })
    }

    /// Runs the op in this process.
    pub fn run(&self) -> anyhow::Result<ProbeOutput> {
        match self {
            Op::Hello => Ok(ProbeOutput::default()),
            Op::LocalFs { path, iters } => local_fs(path, *iters),
            Op::SmallFile { path, iters, size } => small_file(path, *iters, *size),
            Op::ReadFile { path, buf } => read_file(path, *buf),
            Op::Connect { addr, iters } => connect(*addr, *iters),
            Op::Bulk { addr, bytes, buf } => {
                transfer(*addr, &format!("BYTES {bytes}"), *buf, Some(*bytes))
            }
            Op::Upload { addr, bytes, buf } => upload(*addr, *bytes, *buf),
            Op::Fetch { addr, path, buf } => transfer(*addr, &format!("FILE {path}"), *buf, None),
            Op::Rtt { addr, iters } => rtt(*addr, *iters),
            Op::Http { addr, iters } => http(*addr, *iters),
        }
    }
}

fn c_path(path: &str) -> anyhow::Result<CString> {
    CString::new(path).map_err(|_| anyhow::anyhow!("path {path:?} contains a NUL byte"))
}

fn errno(what: &str, path: &str) -> anyhow::Error {
    anyhow::anyhow!("{what} {path}: {}", io::Error::last_os_error())
}

/// Thread CPU time: what the calls cost this process, whatever else the machine runs.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// `open`+`read`+`close`; returns the bytes read.
fn open_read_close(p: &CString, path: &str, buf: &mut [u8]) -> anyhow::Result<usize> {
    // SAFETY: `p` is NUL-terminated; `buf` is valid for `buf.len()` bytes; the fd is ours.
    unsafe {
        let fd = libc::open(p.as_ptr(), libc::O_RDONLY);
        if fd < 0 {
            return Err(errno("open", path));
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        let read_err = (n < 0).then(|| errno("read", path));
        libc::close(fd);
        match read_err {
            Some(e) => Err(e),
            None => Ok(n as usize),
        }
    }
}

fn local_fs(path: &str, iters: u64) -> anyhow::Result<ProbeOutput> {
    let p = c_path(path)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: an all-zero `stat` is a valid value to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let stat = |st: &mut libc::stat| {
        // SAFETY: `p` is NUL-terminated and `st` is writable.
        if unsafe { libc::stat(p.as_ptr(), st) } != 0 {
            return Err(errno("stat", path));
        }
        Ok(())
    };
    for _ in 0..1000 {
        stat(&mut st)?; // warm caches (and the layer's policy lookup)
    }
    let t = thread_cpu();
    for _ in 0..iters {
        stat(&mut st)?;
    }
    let stat_cpu = thread_cpu() - t;
    let t = thread_cpu();
    for _ in 0..iters {
        open_read_close(&p, path, &mut buf)?;
    }
    let open_cpu = thread_cpu() - t;
    let per = |d: Duration| d.as_nanos() as f64 / iters.max(1) as f64;
    Ok(ProbeOutput {
        stat_ns: per(stat_cpu),
        open_ns: per(open_cpu),
        ..Default::default()
    })
}

fn small_file(path: &str, iters: u64, size: u64) -> anyhow::Result<ProbeOutput> {
    let p = c_path(path)?;
    let mut buf = vec![0u8; size as usize];
    let mut samples = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        let t = Instant::now();
        let n = open_read_close(&p, path, &mut buf)?;
        samples.push(t.elapsed().as_nanos() as u64);
        anyhow::ensure!(n as u64 == size, "read {path}: got {n} bytes, want {size}");
    }
    Ok(ProbeOutput {
        samples_ns: samples,
        ..Default::default()
    })
}

fn read_file(path: &str, bufsize: usize) -> anyhow::Result<ProbeOutput> {
    let p = c_path(path)?;
    let mut buf = vec![0u8; bufsize];
    let t = Instant::now();
    let mut total = 0u64;
    // SAFETY: as in `open_read_close`.
    unsafe {
        let fd = libc::open(p.as_ptr(), libc::O_RDONLY);
        if fd < 0 {
            return Err(errno("open", path));
        }
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n < 0 {
                let e = errno("read", path);
                libc::close(fd);
                return Err(e);
            }
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        libc::close(fd);
    }
    Ok(ProbeOutput {
        bytes: total,
        secs: t.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

fn dial(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).map_err(|e| anyhow::anyhow!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)
        .map_err(|e| anyhow::anyhow!("banner from {addr}: {e}"))?;
    anyhow::ensure!(
        b[0] == BANNER,
        "banner from {addr}: got {:?}, not a bench source",
        b[0] as char
    );
    Ok(s)
}

fn connect(addr: SocketAddr, iters: u64) -> anyhow::Result<ProbeOutput> {
    let mut samples = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        let t = Instant::now();
        let s = dial(addr)?;
        samples.push(t.elapsed().as_nanos() as u64);
        drop(s);
    }
    Ok(ProbeOutput {
        samples_ns: samples,
        ..Default::default()
    })
}

fn transfer(
    addr: SocketAddr,
    command: &str,
    bufsize: usize,
    want: Option<u64>,
) -> anyhow::Result<ProbeOutput> {
    let mut s = dial(addr)?;
    let mut buf = vec![0u8; bufsize];
    let t = Instant::now();
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut total = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => anyhow::bail!("{command} from {addr}: {e}"),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    if let Some(want) = want {
        anyhow::ensure!(
            total == want,
            "{command} from {addr}: got {total} bytes, want {want}"
        );
    }
    Ok(ProbeOutput {
        bytes: total,
        secs,
        ..Default::default()
    })
}

fn upload(addr: SocketAddr, bytes: u64, bufsize: usize) -> anyhow::Result<ProbeOutput> {
    let mut s = dial(addr)?;
    s.write_all(format!("SINK {bytes}\n").as_bytes())?;
    let buf = vec![0xa5u8; bufsize.max(1)];
    let t = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        s.write_all(&buf[..n])
            .map_err(|e| anyhow::anyhow!("upload to {addr}: {e}"))?;
        left -= n as u64;
    }
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| anyhow::anyhow!("upload to {addr}: no receipt: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        answer.trim() == format!("OK {bytes}"),
        "upload to {addr}: the server answered {:?}, want \"OK {bytes}\"",
        answer.trim()
    );
    Ok(ProbeOutput {
        bytes,
        secs,
        ..Default::default()
    })
}

fn rtt(addr: SocketAddr, iters: u64) -> anyhow::Result<ProbeOutput> {
    let mut s = dial(addr)?;
    s.set_nodelay(true)?;
    s.write_all(b"ECHO\n")?;
    let mut b = [0u8; 1];
    let mut samples = Vec::with_capacity(iters as usize);
    for i in 0..iters + 5 {
        let t = Instant::now();
        s.write_all(b"x")?;
        s.read_exact(&mut b)
            .map_err(|e| anyhow::anyhow!("echo from {addr}: {e}"))?;
        if i >= 5 {
            samples.push(t.elapsed().as_nanos() as u64); // the first few warm the path up
        }
    }
    Ok(ProbeOutput {
        samples_ns: samples,
        ..Default::default()
    })
}

fn http(addr: SocketAddr, iters: u64) -> anyhow::Result<ProbeOutput> {
    let mut samples = Vec::with_capacity(iters as usize);
    let mut first = Vec::with_capacity(iters as usize);
    let mut last = Vec::with_capacity(iters as usize);
    let mut instances: Vec<String> = Vec::new();
    let req = format!("GET /bench HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    for _ in 0..iters {
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).map_err(|e| anyhow::anyhow!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.write_all(req.as_bytes())?;
        let mut resp = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let mut last_data = t;
        loop {
            let n = s
                .read(&mut buf)
                .map_err(|e| anyhow::anyhow!("GET http://{addr}/bench: {e}"))?;
            if n == 0 {
                break;
            }
            if resp.is_empty() {
                first.push(t.elapsed().as_nanos() as u64);
            }
            last_data = Instant::now();
            resp.extend_from_slice(&buf[..n]);
        }
        samples.push(t.elapsed().as_nanos() as u64);
        last.push((last_data - t).as_nanos() as u64);
        let text = String::from_utf8_lossy(&resp);
        anyhow::ensure!(
            text.starts_with("HTTP/1.1 200"),
            "GET http://{addr}/bench: {:?}",
            text.lines().next().unwrap_or("no response")
        );
        let instance = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-tether-instance")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_default();
        if !instances.contains(&instance) {
            instances.push(instance);
        }
    }
    Ok(ProbeOutput {
        samples_ns: samples,
        first_byte_ns: first,
        last_byte_ns: last,
        instances,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_their_args() {
        let addr: SocketAddr = "10.244.0.7:17100".parse().unwrap();
        for op in [
            Op::Hello,
            Op::LocalFs {
                path: "/usr/lib/os-release".into(),
                iters: 10,
            },
            Op::SmallFile {
                path: "/bench/small".into(),
                iters: 3,
                size: 4096,
            },
            Op::ReadFile {
                path: "/bench/data".into(),
                buf: 131072,
            },
            Op::Connect { addr, iters: 2 },
            Op::Bulk {
                addr,
                bytes: 10,
                buf: 4,
            },
            Op::Fetch {
                addr,
                path: "/bench/data".into(),
                buf: 8,
            },
            Op::Upload {
                addr,
                bytes: 10,
                buf: 4,
            },
            Op::Rtt { addr, iters: 1 },
            Op::Http { addr, iters: 1 },
        ] {
            assert_eq!(Op::from_args(&op.to_args()).unwrap(), op);
        }
        assert!(Op::from_args(&["nope".into()]).is_err());
        assert!(Op::from_args(&["connect".into(), "iters=1".into()]).is_err());
    }

    #[test]
    fn small_file_reads_exactly_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let path = path.to_str().unwrap().to_owned();
        let out = Op::SmallFile {
            path: path.clone(),
            iters: 3,
            size: 4096,
        }
        .run()
        .unwrap();
        assert_eq!(out.samples_ns.len(), 3);
        let short = Op::SmallFile {
            path,
            iters: 1,
            size: 8192,
        };
        assert!(short.run().is_err(), "a short read is an error");
    }

    #[test]
    fn read_file_counts_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 100_000]).unwrap();
        let out = Op::ReadFile {
            path: path.to_str().unwrap().into(),
            buf: 4096,
        }
        .run()
        .unwrap();
        assert_eq!(out.bytes, 100_000);
    }
}
