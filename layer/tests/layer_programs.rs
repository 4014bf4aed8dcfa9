//! Real programs (C, Python, Node, shell) under the real built layer, against a scripted fake
//! session: the programs must print the canned remote data and the session must see the
//! expected requests.

mod support;

use std::process::Command;
use std::time::Instant;

use support::{
    BANNER, FakeSession, HELLO, POD_HOSTNAME, POD_IP, POD_NAME, policy, run, stderr, stdout,
};
use tether_protocol::dns::DnsRequest;
use tether_protocol::file::FileRequest;
use tether_protocol::layer::LayerRequest;

fn has_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn c_program_reads_pod_files_resolves_connects_and_forks() {
    let session = FakeSession::start(policy());
    let dir = tempfile::tempdir().unwrap();
    let probe = support::compile_c(
        dir.path(),
        "probe",
        include_str!("programs/probe.c"),
        &["-O2", "-D_FORTIFY_SOURCE=2", "-D_FILE_OFFSET_BITS=64"],
    );
    let out = run(session.command(probe.to_str().unwrap()));
    let text = stdout(&out);
    let err = stderr(&out);
    assert!(out.status.success(), "probe failed: {text}\n{err}");
    let expect = [
        format!("read: {HELLO}"),
        format!("fstat: size={} uid=1000\n", HELLO.len()),
        format!("stat: size={} reg=1\n", HELLO.len()),
        "stat dir: dir=1\n".to_string(),
        format!("fgets: {HELLO}"),
        "entry: a.txt\nentry: b.txt\n".to_string(),
        "kube: No such file or directory\n".to_string(),
        "kube access: No such file or directory\n".to_string(),
        "ro write: Read-only file system\n".to_string(),
        "rw write: 17\n".to_string(),
        "rw read: written remotely\n".to_string(),
        "rw end: 17\n".to_string(),
        "rw stdio: via stdio\n".to_string(),
        format!("big pread: 4 {} {}\n", 1000 % 251, 1001 % 251),
        "local: 1\n".to_string(),
        format!("resolved: {POD_IP} port 80\n"),
        "connect: 0\n".to_string(),
        format!("banner: {BANNER}"),
        "echo: PING\n".to_string(),
        format!("peer: {POD_IP}:80\n"),
        "nope: EAI_NONAME\n".to_string(),
        format!("gethostbyname: {POD_IP}\n"),
        format!("hostname: {POD_HOSTNAME}\n"),
        format!("udp: pong:ping from {POD_IP}:5353\n"),
        HELLO.to_string(),
        "child: 0\n".to_string(),
    ];
    for e in &expect {
        assert!(
            text.contains(e.as_str()),
            "missing {e:?} in:\n{text}\nstderr:\n{err}"
        );
    }
    let reqs = session.requests();
    let has = |f: &dyn Fn(&LayerRequest) -> bool| reqs.iter().any(f);
    assert!(has(
        &|r| matches!(r, LayerRequest::File(FileRequest::ReadWhole { path, .. }) if path == "/remote/hello.txt")
    ));
    assert!(has(
        &|r| matches!(r, LayerRequest::File(FileRequest::ReadDir { path }) if path == "/remote/dir")
    ));
    assert!(has(
        &|r| matches!(r, LayerRequest::Dns(DnsRequest::Lookup { name, .. }) if name == POD_NAME)
    ));
    assert!(has(
        &|r| matches!(r, LayerRequest::ConnectTcp { remote } if remote.to_string() == format!("{POD_IP}:80"))
    ));
    assert!(has(&|r| matches!(r, LayerRequest::ConnectUdp { .. })));
    assert!(has(&|r| matches!(r, LayerRequest::Listen { .. })));
    assert!(has(&|r| matches!(r, LayerRequest::Unlisten { .. })));
    assert!(has(
        &|r| matches!(r, LayerRequest::File(FileRequest::Open { path, .. }) if path == "/remote/big.bin")
    ));
    // Local and hidden paths never reach the session.
    assert!(!has(&|r| format!("{r:?}").contains("/proc/self/status")));
    assert!(!has(&|r| format!("{r:?}").contains(".kube")));
    // The exec'd child (with a replaced env) came back into the session with its own hello.
    let hellos = session.hellos();
    let parent = hellos[0].pid;
    let child = hellos
        .iter()
        .find(|h| h.argv == ["cat", "/remote/hello.txt"])
        .unwrap_or_else(|| panic!("no hello from the exec'd child: {hellos:?}"));
    assert_ne!(child.pid, parent);
    assert_eq!(child.ppid, parent);
    assert!(hellos.iter().all(|h| h.token == session.token));
}

#[test]
fn python_reads_lists_resolves_and_spawns_with_a_replaced_env() {
    let Some(python) = support::python() else {
        eprintln!("python3 not installed: skipped");
        return;
    };
    let session = FakeSession::start(policy());
    let script = r#"
import os, socket, subprocess
print("read:", open("/remote/hello.txt").read(), end="")
print("listdir:", sorted(os.listdir("/remote/dir")))
print("size:", os.stat("/remote/hello.txt").st_size)
print("exists:", os.path.exists("/remote/nothing"), os.path.isdir("/remote/dir"))
print("ip:", socket.gethostbyname("pod-only.svc.cluster.local"))
s = socket.create_connection(("pod-only.svc.cluster.local", 80), timeout=5)
print("banner:", s.recv(100).decode(), end="")
print("peer:", s.getpeername())
s.close()
print("hostname:", socket.gethostname())
try:
    open(os.path.expanduser("/root/.kube/config"))
except FileNotFoundError:
    print("kube: not found")
r = subprocess.run(["cat", "/remote/hello.txt"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
print("child:", r.stdout, end="")
print("cwd local:", os.path.isdir(os.getcwd()))
fd = os.open("/remote/hello.txt", os.O_RDONLY)
dup = os.dup(fd)  # CPython: fcntl(F_DUPFD_CLOEXEC)
os.close(fd)
print("dup:", os.read(dup, 100).decode(), end="")
os.close(dup)
dfd = os.open("/remote/dir", os.O_RDONLY | os.O_DIRECTORY)
ddup = os.dup(dfd)
os.close(dfd)
print("dup dir:", sorted(os.listdir(ddup)))
"#;
    let mut cmd = session.command(&python);
    cmd.args(["-c", script]);
    let out = run(cmd);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "python failed: {text}\n{}",
        stderr(&out)
    );
    for e in [
        format!("read: {HELLO}"),
        "listdir: ['a.txt', 'b.txt']\n".into(),
        format!("size: {}\n", HELLO.len()),
        "exists: False True\n".into(),
        format!("ip: {POD_IP}\n"),
        format!("banner: {BANNER}"),
        format!("peer: ('{POD_IP}', 80)\n"),
        format!("hostname: {POD_HOSTNAME}\n"),
        "kube: not found\n".into(),
        format!("child: {HELLO}"),
        "cwd local: True\n".to_string(),
        format!("dup: {HELLO}"),
        "dup dir: ['a.txt', 'b.txt']\n".into(),
    ] {
        assert!(
            text.contains(&e),
            "missing {e:?} in:\n{text}\n{}",
            stderr(&out)
        );
    }
    assert!(
        session
            .hellos()
            .iter()
            .any(|h| h.argv.first().is_some_and(|a| a == "cat"))
    );
}

#[test]
fn node_reads_stats_lists_and_looks_up() {
    if !has_tool("node") {
        eprintln!("node not installed: skipped");
        return;
    }
    let session = FakeSession::start(policy());
    let script = r#"
const fs = require("fs"), dns = require("dns"), net = require("net"), cp = require("child_process");
console.log("read:", fs.readFileSync("/remote/hello.txt", "utf8").trim());
console.log("size:", fs.statSync("/remote/hello.txt").size);
console.log("readdir:", fs.readdirSync("/remote/dir").sort().join(","));
console.log("exists:", fs.existsSync("/remote/nothing"));
console.log("child:", cp.execSync("cat /remote/hello.txt").toString().trim());
fs.promises.readFile("/remote/hello.txt", "utf8").then((t) => {
  console.log("async:", t.trim());
  dns.lookup("pod-only.svc.cluster.local", { family: 4 }, (err, addr) => {
    console.log("lookup:", err ? err.code : addr);
    const s = net.connect(80, "pod-only.svc.cluster.local");
    s.once("data", (d) => { console.log("banner:", d.toString().trim(), s.remoteAddress); s.destroy(); });
  });
});
"#;
    let mut cmd = session.command("node");
    cmd.args(["-e", script]);
    let out = run(cmd);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "node failed: {text}\n{}",
        stderr(&out)
    );
    for e in [
        format!("read: {}", HELLO.trim()),
        format!("size: {}", HELLO.len()),
        "readdir: a.txt,b.txt".into(),
        "exists: false".into(),
        format!("child: {}", HELLO.trim()),
        format!("async: {}", HELLO.trim()),
        format!("lookup: {POD_IP}"),
        format!("banner: {} {POD_IP}", BANNER.trim()),
    ] {
        assert!(
            text.contains(&e),
            "missing {e:?} in:\n{text}\n{}",
            stderr(&out)
        );
    }
}

#[test]
fn shell_pipelines_and_env_i_children_stay_in_the_session() {
    let session = FakeSession::start(policy());
    let mut cmd = session.command("sh");
    let out_file = tempfile::NamedTempFile::new().unwrap();
    // The big file is a remote handle: cat's copy_file_range to a regular file is refused and
    // cat falls back to (hooked) reads.
    cmd.args([
        "-c",
        &format!(
            "cat /remote/hello.txt | tr a-z A-Z; env -i /bin/cat /remote/hello.txt; \
             ls /remote/dir; cat /remote/big.bin > {}",
            out_file.path().display()
        ),
    ]);
    let out = run(cmd);
    let text = stdout(&out);
    assert!(out.status.success(), "sh failed: {text}\n{}", stderr(&out));
    assert!(text.contains(&HELLO.to_uppercase()), "{text}");
    assert_eq!(text.matches(HELLO).count(), 1, "{text}");
    assert!(text.contains("a.txt\nb.txt\n"), "{text}");
    let big = std::fs::read(out_file.path()).unwrap();
    assert_eq!(big.len(), 9 * 1024 * 1024);
    assert!(big.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
}

#[test]
fn unreachable_session_fails_loudly_with_one_line() {
    let mut cmd = Command::new("true");
    cmd.env("LD_PRELOAD", support::layer_path())
        .env("TETHER_SESSION_ADDR", "unix:/nonexistent/tether.sock")
        .env("TETHER_SESSION_TOKEN", "x");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("tether: cannot reach the session at unix:/nonexistent/tether.sock: "),
        "{err}"
    );
}

#[test]
fn wrong_token_is_refused_loudly() {
    let session = FakeSession::start(policy());
    let mut cmd = session.command("true");
    cmd.env("TETHER_SESSION_TOKEN", "wrong");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refused this process: wrong session token"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn skipped_processes_run_unhooked() {
    let mut p = policy();
    p.skip_processes = vec!["cat".into()];
    let session = FakeSession::start(p);
    let mut cmd = session.command("cat");
    cmd.arg("/remote/hello.txt");
    let out = run(cmd);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("No such file"), "{}", stderr(&out));
    assert!(session.requests().is_empty());
}

#[test]
fn dead_session_fails_the_next_call_fast_with_one_line() {
    let Some(python) = support::python() else {
        eprintln!("python3 not installed: skipped");
        return;
    };
    let session = FakeSession::start(policy());
    session.die_after(1);
    let script = r#"
import time
print(open("/remote/hello.txt").read(), end="")
for i in range(3):
    t = time.time()
    try:
        open("/remote/hello.txt").read()
        print("unexpected success")
    except OSError as e:
        print("errno", e.errno, "in", round(time.time() - t, 3) < 1.0)
"#;
    let mut cmd = session.command(&python);
    cmd.args(["-c", script]);
    let started = Instant::now();
    let out = run(cmd);
    let text = stdout(&out);
    let err = stderr(&out);
    assert!(out.status.success(), "{text}\n{err}");
    assert!(text.starts_with(HELLO), "{text}");
    assert_eq!(text.matches("errno 5 in True").count(), 3, "{text}\n{err}");
    assert_eq!(err.matches("tether: lost the session").count(), 1, "{err}");
    assert!(started.elapsed().as_secs() < 20);
}

#[test]
fn java_reads_lists_resolves_connects_and_spawns() {
    if !has_tool("java") {
        eprintln!("java not installed: skipped");
        return;
    }
    let session = FakeSession::start(policy());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("Probe.java");
    std::fs::write(&src, include_str!("programs/Probe.java")).unwrap();
    let mut cmd = session.command("java");
    cmd.arg(&src);
    let out = run(cmd);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "java failed: {text}\n{}",
        stderr(&out)
    );
    for e in [
        format!("read: {}", HELLO.trim()),
        format!("length: {}", HELLO.len()),
        "list: a.txt,b.txt".into(),
        "kube: false".into(),
        format!("ip: {POD_IP}"),
        format!("banner: {}", BANNER.trim()),
        format!("child: {}", HELLO.trim()),
    ] {
        assert!(
            text.contains(&e),
            "missing {e:?} in:\n{text}\n{}",
            stderr(&out)
        );
    }
}

#[test]
fn threads_signals_dirfds_and_vfork() {
    let session = FakeSession::start(policy());
    let dir = tempfile::tempdir().unwrap();
    let bin = support::compile_c(
        dir.path(),
        "stress",
        include_str!("programs/stress.c"),
        &["-O2", "-pthread"],
    );
    let out = run(session.command(bin.to_str().unwrap()));
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "stress failed: {text}\n{}",
        stderr(&out)
    );
    for e in [
        "threads: 240\n".to_string(),
        "signals: 1 stats: 300\n".into(),
        format!("openat: {} {HELLO}", HELLO.len()),
        format!("fstatat: 0 {}\n", HELLO.len()),
        "fstat dir: 1\n".into(),
        "fdopendir: 5\n".into(),
        HELLO.to_string(),
        "vfork child: 0\n".into(),
        format!("after close loop: {}\n", HELLO.len()),
        format!("after close_range: {}\n", HELLO.len()),
        format!("after dup2 over high fds: {}\n", HELLO.len()),
        "tmp file untouched: 0\n".into(),
    ] {
        assert!(
            text.contains(&e),
            "missing {e:?} in:\n{text}\n{}",
            stderr(&out)
        );
    }
    // Threads used several connections of the pool (each with its own hello), not one per call.
    let main_pid = session.hellos()[0].pid;
    let conns = session
        .hellos()
        .iter()
        .filter(|h| h.pid == main_pid)
        .count();
    // At most a pool's worth (8), plus reconnections after close_range and dup2 took the
    // session sockets away.
    assert!(
        (2..=12).contains(&conns),
        "{conns} connections from the main process"
    );
}
