//! End to end, from the layer's side: real programs under `tether exec` (the real session
//! router), a real agent attached to a test pod (own network, mount and UTS namespaces; see
//! tether-testkit). Covers the issue's list: pod files, env, DNS of pod-only names, the
//! cluster-only service, fork+exec children, local paths staying local, hidden credentials, C and
//! Node servers receiving stolen (and C mirrored) requests sent by another pod to the pod's port,
//! and a killed agent failing the next hooked call fast.
//!
//! Needs root. Builds `tether` and `tether-agent` into this target dir if missing, and the layer
//! if its sources changed.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tether_testkit::{AgentProcess, Pod, TestCluster, TestServer};

const TOKEN: &str = "layer-e2e-token";

fn target_dir() -> PathBuf {
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

static BUILD: std::sync::Once = std::sync::Once::new();

/// A workspace binary (`tether`, `tether-agent`), built if missing (`cargo test -p
/// tether-layer` does not build other packages' binaries; CI's workspace build does).
fn artifact(name: &str) -> PathBuf {
    BUILD.call_once(|| {
        if ["tether", "tether-agent"]
            .iter()
            .all(|n| target_dir().join(n).exists())
        {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "tether", "-p", "tether-agent"]);
        if target_dir().file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(t) = target_dir().parent() {
            cmd.env("CARGO_TARGET_DIR", t);
        }
        assert!(
            cmd.status().unwrap().success(),
            "building tether and tether-agent failed"
        );
    });
    let p = target_dir().join(name);
    assert!(p.exists(), "{} is missing", p.display());
    p
}

type Agent = AgentProcess;

fn start_agent(pod: &Pod) -> Agent {
    AgentProcess::start(&artifact("tether-agent"), pod, TOKEN)
}

fn pod(cluster: &TestCluster, name: &str) -> Pod {
    cluster
        .pod(name)
        .hostname("layer-pod")
        .env("POD_GREETING", "hi from the pod env")
        .file("/app/data.txt", "remote payload\n")
        .file("/app/conf/a.yaml", "a: 1\n")
        .file("/app/conf/b.yaml", "b: 2\n")
        .server(TestServer::HttpEcho { port: 8080 })
        .start()
        .unwrap()
}

fn pod_named(cluster: &TestCluster, name: &str) -> Pod {
    cluster
        .pod(name)
        .server(TestServer::HttpEcho { port: 8080 })
        .start()
        .unwrap()
}

/// A working directory and a home with local credentials the session must hide.
struct LocalSide {
    cwd: tempfile::TempDir,
    home: tempfile::TempDir,
}

fn local_side() -> LocalSide {
    local_side_with("")
}

/// [`local_side`] with `extra` (`"network": {...}`, say) added to the config's `feature` object.
fn local_side_with(extra: &str) -> LocalSide {
    local_side_fs("read", extra)
}

/// [`local_side_with`], with fs mode `mode`.
fn local_side_fs(mode: &str, extra: &str) -> LocalSide {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("local-note.txt"), "local only\n").unwrap();
    // HOME is a temp dir (with local credentials to hide), so a toolchain under the real home
    // (pyenv's python) is no longer local by default: say so in the project config.
    let mut local = vec![];
    if let Some(py) = support::python()
        && let Some(prefix) = std::path::Path::new(&py).parent().and_then(|b| b.parent())
    {
        local.push(format!("^{}(/|$)", regex_escape(&prefix.to_string_lossy())));
    }
    std::fs::create_dir_all(cwd.path().join(".tether")).unwrap();
    std::fs::write(
        cwd.path().join(".tether/tether.json"),
        format!(
            r#"{{"feature": {{"fs": {{"mode": "{}", "local": {}}}{}{}}}}}"#,
            mode,
            json_list(&local),
            if extra.is_empty() { "" } else { ", " },
            extra
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".kube")).unwrap();
    std::fs::write(home.path().join(".kube/config"), "secret: local\n").unwrap();
    LocalSide { cwd, home }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

fn json_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| format!("\"{}\"", i.replace('\\', "\\\\")))
        .collect();
    format!("[{}]", quoted.join(","))
}

fn tether_exec(agent: &Agent, local: &LocalSide, args: &[&str]) -> Command {
    let mut c = Command::new(artifact("tether"));
    c.current_dir(local.cwd.path())
        .args(["exec", "--agent", &agent.addr])
        .env("TETHER_AGENT_TOKEN", TOKEN)
        .env("TETHER_LAYER_PATH", support::layer_path())
        .env("HOME", local.home.path())
        .arg("--")
        .args(args);
    c
}

fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn python_lives_in_the_pod_but_keeps_local_paths_local() {
    let Some(python) = support::python() else {
        eprintln!("python3 not installed: skipped");
        return;
    };
    let cluster = TestCluster::new("layer-py").unwrap();
    let pod = pod(&cluster, "api");
    // The service's backend is another pod (a pod reaching its own service needs hairpin NAT).
    let backend = pod_named(&cluster, "backend");
    let svc = cluster.expose("backend-svc", 80, &backend, 8080).unwrap();
    let agent = start_agent(&pod);
    let local = local_side();
    let script = format!(
        r#"
import os, socket, subprocess, urllib.request
print("file", open("/app/data.txt").read().strip())
print("listdir", sorted(os.listdir("/app/conf")))
print("env", os.environ.get("POD_GREETING"))
print("hostname", socket.gethostname())
print("dns", socket.gethostbyname("{dns}"))
body = urllib.request.urlopen("http://{svc_name}:80/via-service", timeout=10).read().decode()
print("service", "/via-service" in body)
r = subprocess.run(["cat", "/app/data.txt"], env={{"PATH": "/usr/bin:/bin"}}, capture_output=True, text=True)
print("child", r.stdout.strip())
print("cwd", open("local-note.txt").read().strip())
print("usr", os.path.isdir("/usr/lib"))
print("proc", open("/proc/self/status").readline().startswith("Name:"))
try:
    open(os.path.expanduser("~/.kube/config"))
    print("kube visible")
except FileNotFoundError:
    print("kube hidden")
"#,
        dns = pod.dns_name(),
        svc_name = svc.dns_name,
    );
    let out = tether_exec(&agent, &local, &[&python, "-c", &script])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    for e in [
        "file remote payload".to_string(),
        "listdir ['a.yaml', 'b.yaml']".into(),
        "env hi from the pod env".into(),
        "hostname layer-pod".into(),
        format!("dns {}", pod.ip()),
        "service True".into(),
        "child remote payload".into(),
        "cwd local only".into(),
        "usr True".into(),
        "proc True".into(),
        "kube hidden".into(),
    ] {
        assert!(s.contains(&e), "missing {e:?}\n{}", show(&out));
    }
}

#[test]
fn big_remote_files_read_right_through_read_ahead_seeks_dups_and_pread() {
    let Some(python) = support::python() else {
        eprintln!("python3 not installed: skipped");
        return;
    };
    let cluster = TestCluster::new("layer-big").unwrap();
    // Over the layer's 8 MiB memfd limit, so it is read through a remote handle.
    let big: Vec<u8> = (0..12 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    let pod = cluster
        .pod("big")
        .file("/app/big.bin", big)
        .start()
        .unwrap();
    let agent = start_agent(&pod);
    let local = local_side();
    let script = r#"
import os
p = "/app/big.bin"
n = os.stat(p).st_size
want = bytes(i % 251 for i in range(n))
print("whole", open(p, "rb").read() == want)
fd = os.open(p, os.O_RDONLY)
chunks = []
while True:
    b = os.read(fd, 100_000)
    if not b:
        break
    chunks.append(b)
print("chunks", b"".join(chunks) == want)
os.lseek(fd, 5, os.SEEK_SET); a = os.read(fd, 10)
os.lseek(fd, -3, os.SEEK_CUR); b = os.read(fd, 6)
end = os.lseek(fd, -4, os.SEEK_END); c = os.read(fd, 100)
print("seeks", a == want[5:15], b == want[12:18], c == want[-4:], end == n - 4)
d = os.dup(fd)
os.lseek(d, 1000, os.SEEK_SET)
print("dup", os.read(fd, 4) == want[1000:1004])
print("pread", os.pread(fd, 8, 2_000_000) == want[2_000_000:2_000_008], os.lseek(fd, 0, os.SEEK_CUR) == 1004)
with open(p, "rb") as f:
    f.seek(9_000_000)
    print("stdio", f.read(3) == want[9_000_000:9_000_003], f.tell() == 9_000_003)
"#;
    let out = tether_exec(&agent, &local, &[&python, "-c", script])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    for e in [
        "whole True",
        "chunks True",
        "seeks True True True True",
        "dup True",
        "pread True True",
        "stdio True True",
    ] {
        assert!(s.contains(e), "missing {e:?}\n{}", show(&out));
    }
}

#[test]
fn write_mode_changes_land_in_the_pods_filesystem() {
    let Some(python) = support::python() else {
        eprintln!("python3 not installed: skipped");
        return;
    };
    let cluster = TestCluster::new("layer-write").unwrap();
    let pod = pod(&cluster, "api");
    let agent = start_agent(&pod);
    let local = local_side_fs("write", "");
    let script = r#"
import os
os.mkdir("/app/out")
with open("/app/out/report.txt", "w") as f:
    f.write("written by the session\n")
with open("/app/out/report.txt", "a") as f:
    f.write("appended\n")
os.rename("/app/out/report.txt", "/app/out/final.txt")
os.symlink("final.txt", "/app/out/latest")
print("readlink", os.readlink("/app/out/latest"))
print("via link", open("/app/out/latest").read().replace("\n", "|"))
os.unlink("/app/conf/b.yaml")
print("listdir", sorted(os.listdir("/app/out")), sorted(os.listdir("/app/conf")))
open("written-locally.txt", "w").write("cwd stays local\n")
"#;
    let out = tether_exec(&agent, &local, &[&python, "-c", script])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    for e in [
        "readlink final.txt",
        "via link written by the session|appended|",
        "listdir ['final.txt', 'latest'] ['a.yaml']",
    ] {
        assert!(s.contains(e), "missing {e:?}\n{}", show(&out));
    }
    // The pod's own filesystem has the changes; the local side has only the cwd file.
    let host = |p: &str| pod.host_path(p);
    assert_eq!(
        std::fs::read_to_string(host("/app/out/final.txt")).unwrap(),
        "written by the session\nappended\n"
    );
    assert_eq!(
        std::fs::read_link(host("/app/out/latest")).unwrap(),
        std::path::Path::new("final.txt")
    );
    assert!(!host("/app/conf/b.yaml").exists());
    assert!(
        !std::path::Path::new("/app/out").exists(),
        "nothing written on the host's /app"
    );
    assert!(local.cwd.path().join("written-locally.txt").exists());
}

#[test]
fn c_and_java_read_pod_files_and_reach_the_cluster_only_service() {
    let cluster = TestCluster::new("layer-cj").unwrap();
    let pod = pod(&cluster, "api");
    let backend = pod_named(&cluster, "backend");
    let svc = cluster.expose("backend-svc", 80, &backend, 8080).unwrap();
    let agent = start_agent(&pod);
    let local = local_side();

    let dir = tempfile::tempdir().unwrap();
    let bin = support::compile_c(
        dir.path(),
        "svc",
        r#"
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char buf[512] = {0};
    FILE *f = fopen("/app/data.txt", "r");
    if (!f || !fgets(buf, sizeof buf, f)) { perror("fopen"); return 10; }
    printf("file %s", buf);
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(argv[1], "80", &hints, &res);
    if (rc) { printf("dns %s\n", gai_strerror(rc)); return 11; }
    int s = socket(res->ai_family, SOCK_STREAM, 0);
    if (connect(s, res->ai_addr, res->ai_addrlen)) { perror("connect"); return 12; }
    const char *req = "GET /from-c HTTP/1.0\r\nHost: x\r\n\r\n";
    if (write(s, req, strlen(req)) < 0) return 13;
    ssize_t n = read(s, buf, sizeof buf - 1);
    printf("http %.12s\n", n > 0 ? buf : "");
    if (fork() == 0) { execlp("cat", "cat", "/app/conf/a.yaml", (char *)0); _exit(127); }
    return 0;
}
"#,
        &["-O2"],
    );
    let out = tether_exec(
        &agent,
        &local,
        &[bin.to_str().unwrap(), &svc.dns_name.clone()],
    )
    .output()
    .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(s.contains("file remote payload"), "{}", show(&out));
    assert!(s.contains("http HTTP/1."), "{}", show(&out));

    if Command::new("java").arg("-version").output().is_err() {
        eprintln!("java not installed: Java part skipped");
        return;
    }
    let src = dir.path().join("Svc.java");
    std::fs::write(
        &src,
        format!(
            r#"
import java.net.*; import java.nio.file.*; import java.io.*;
public class Svc {{
    public static void main(String[] a) throws Exception {{
        System.out.println("file " + Files.readString(Path.of("/app/data.txt")).trim());
        InetAddress ia = InetAddress.getByName("{svc}");
        try (Socket s = new Socket(ia, 80)) {{
            s.getOutputStream().write("GET /from-java HTTP/1.0\r\nHost: x\r\n\r\n".getBytes());
            String status = new BufferedReader(new InputStreamReader(s.getInputStream())).readLine();
            System.out.println("http " + status);
        }}
        System.out.println("env " + System.getenv("POD_GREETING"));
    }}
}}
"#,
            svc = svc.dns_name.clone()
        ),
    )
    .unwrap();
    let out = tether_exec(&agent, &local, &["java", src.to_str().unwrap()])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(s.contains("file remote payload"), "{}", show(&out));
    assert!(s.contains("http HTTP/1.0 200"), "{}", show(&out));
    assert!(s.contains("env hi from the pod env"), "{}", show(&out));
}

#[test]
fn node_lists_pod_dirs_and_resolves_pod_names() {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("node not installed: skipped");
        return;
    }
    let cluster = TestCluster::new("layer-node").unwrap();
    let pod = pod(&cluster, "api");
    let agent = start_agent(&pod);
    let local = local_side();
    let script = format!(
        r#"
const fs = require("fs"), dns = require("dns"), cp = require("child_process");
console.log("readdir", fs.readdirSync("/app/conf").sort().join(","));
console.log("stat", fs.statSync("/app/data.txt").size);
console.log("child", cp.execSync("cat /app/data.txt").toString().trim());
console.log("local", fs.readFileSync("local-note.txt", "utf8").trim());
dns.lookup("{dns}", {{ family: 4 }}, (err, addr) => console.log("lookup", err ? err.code : addr));
"#,
        dns = pod.dns_name()
    );
    let out = tether_exec(&agent, &local, &["node", "-e", &script])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    for e in [
        "readdir a.yaml,b.yaml".to_string(),
        format!("stat {}", "remote payload\n".len()),
        "child remote payload".into(),
        "local local only".into(),
        format!("lookup {}", pod.ip()),
    ] {
        assert!(s.contains(&e), "missing {e:?}\n{}", show(&out));
    }
}

#[test]
fn killed_agent_fails_the_next_hooked_call_within_a_second() {
    let Some(python) = support::python() else {
        eprintln!("python3 not installed: skipped");
        return;
    };
    let cluster = TestCluster::new("layer-kill").unwrap();
    let pod = pod(&cluster, "api");
    let mut agent = start_agent(&pod);
    let local = local_side();
    let script = r#"
import sys, time
print("first", open("/app/data.txt").read().strip(), flush=True)
sys.stdin.readline()
t = time.time()
try:
    open("/app/data.txt").read()
    print("second read worked", flush=True)
except OSError as e:
    print("failed errno=%d after=%.3f" % (e.errno, time.time() - t), flush=True)
"#;
    let mut child = tether_exec(&agent, &local, &[&python, "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "first remote payload");
    agent.kill();
    // Give the session a moment to see the agent go.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"go\n");
    drop(stdin);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
    let _ = child.wait();
    let elapsed = started.elapsed();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
    eprintln!("after the agent died ({elapsed:?}):\n{rest}\nstderr:\n{err}");
    assert!(!rest.contains("second read worked"), "{rest}\n{err}");
    let line = rest
        .lines()
        .find(|l| l.starts_with("failed"))
        .unwrap_or_else(|| panic!("the hooked call did not fail: {rest}\n{err}"));
    let after: f64 = line.rsplit('=').next().unwrap().parse().unwrap();
    assert!(after < 1.0, "{line}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

/// Config (for [`local_side_with`]): incoming `mode` for the pod's port 8080, served locally on
/// `local_port`.
fn incoming(mode: &str, local_port: u16) -> String {
    format!(
        r#""network": {{"incoming": {{"mode": "{mode}", "port_mapping": [[{local_port}, 8080]]}}}}"#
    )
}

/// Curls `url` from inside `client` (the pod's own client, through the pod's port) every 200ms
/// until `done(body)`, `app` exits, or 20s pass. Returns the last body.
fn curl_until(
    client: &Pod,
    url: &str,
    app: &mut Child,
    mut done: impl FnMut(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline && app.try_wait().unwrap().is_none() {
        let out = client.exec(["curl", "-s", "-m", "5", url]).unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if done(&last) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

/// A C server (socket/bind/listen/accept) that answers one request with `c-app PATH` and exits;
/// first it forks and execs `cat` of a pod file.
const C_LISTENER: &str = r#"
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    alarm(40); /* never outlive a failed test */
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) { execlp("cat", "cat", "/app/conf/a.yaml", (char *)0); _exit(127); }
    int st = 0;
    waitpid(p, &st, 0);
    printf("child exit %d\n", WEXITSTATUS(st));
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(l, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 10; }
    if (listen(l, 8)) { perror("listen"); return 11; }
    printf("listening\n");
    fflush(stdout);
    int c = accept(l, NULL, NULL);
    if (c < 0) { perror("accept"); return 12; }
    char buf[2048] = {0};
    size_t len = 0;
    while (len < sizeof buf - 1 && !strstr(buf, "\r\n\r\n")) {
        ssize_t n = read(c, buf + len, sizeof buf - 1 - len);
        if (n <= 0) break;
        len += n;
    }
    char path[256] = {0};
    sscanf(buf, "GET %255s", path);
    printf("got %s\n", path);
    fflush(stdout);
    char resp[512];
    int body = (int)strlen(path) + 6;
    snprintf(resp, sizeof resp,
             "HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\nc-app %s", body, path);
    if (write(c, resp, strlen(resp)) < 0) perror("write");
    close(c);
    close(l);
    return 0;
}
"#;

#[test]
fn c_listener_receives_stolen_then_mirrored_requests_and_its_child_reads_pod_files() {
    let cluster = TestCluster::new("layer-cin").unwrap();
    let pod = pod(&cluster, "api");
    let client = cluster.pod("client").start().unwrap();
    let agent = start_agent(&pod);
    let dir = tempfile::tempdir().unwrap();
    let bin = support::compile_c(dir.path(), "listener", C_LISTENER, &["-O2"]);

    // Steal: the pod's client gets the local C server's answer.
    let port = tether_testkit::free_port();
    let local = local_side_with(&incoming("steal", port));
    let mut app = tether_exec(&agent, &local, &[bin.to_str().unwrap(), &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://{}:8080/stolen-by-c", pod.ip());
    let last = curl_until(&client, &url, &mut app, |b| b.contains("c-app"));
    let out = app.wait_with_output().unwrap();
    assert_eq!(last, "c-app /stolen-by-c", "not stolen\n{}", show(&out));
    assert!(out.status.success(), "{}", show(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("a: 1\nchild exit 0"), "{}", show(&out));
    assert!(s.contains("got /stolen-by-c"), "{}", show(&out));

    // Mirror: the pod's own server answers every request; the C server gets a copy.
    let port = tether_testkit::free_port();
    let local = local_side_with(&incoming("mirror", port));
    let mut app = tether_exec(&agent, &local, &[bin.to_str().unwrap(), &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://{}:8080/mirrored-to-c", pod.ip());
    let last = curl_until(&client, &url, &mut app, |b| {
        assert!(
            b.contains("\"instance\":\"api\"") && !b.contains("c-app"),
            "{b}"
        );
        false
    });
    let out = app.wait_with_output().unwrap();
    assert!(last.contains("/mirrored-to-c"), "{last}");
    assert!(
        out.status.success(),
        "no copy reached the C server\n{}",
        show(&out)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("got /mirrored-to-c"), "{}", show(&out));
}

#[test]
fn node_server_receives_stolen_requests_and_node_sees_the_pod() {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("node not installed: skipped");
        return;
    }
    let cluster = TestCluster::new("layer-nin").unwrap();
    let pod = pod(&cluster, "api");
    let backend = pod_named(&cluster, "backend");
    let svc = cluster.expose("backend-svc", 80, &backend, 8080).unwrap();
    let client = cluster.pod("client").start().unwrap();
    let agent = start_agent(&pod);
    let port = tether_testkit::free_port();
    let local = local_side_with(&incoming("steal", port));
    let script = format!(
        r#"
const fs = require("fs"), http = require("http");
setTimeout(() => {{ console.log("timeout"); process.exit(9); }}, 40000).unref();
(async () => {{
  console.log("env", process.env.POD_GREETING);
  console.log("sync", fs.readFileSync("/app/data.txt", "utf8").trim());
  console.log("promises", (await fs.promises.readFile("/app/conf/b.yaml", "utf8")).trim());
  const svc = await new Promise((ok, fail) => http.get("http://{svc}:80/from-node", r => {{
    let b = ""; r.on("data", d => b += d); r.on("end", () => ok(r.statusCode + " " + b.includes("/from-node")));
  }}).on("error", fail));
  console.log("service", svc);
  const server = http.createServer((req, res) => {{
    console.log("got", req.url);
    res.end("node-app " + req.url, () => process.exit(0));
  }});
  server.listen({port}, () => console.log("listening"));
}})().catch(e => {{ console.log("error", e.message); process.exit(5); }});
"#,
        svc = svc.dns_name,
    );
    let mut app = tether_exec(&agent, &local, &["node", "-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://{}:8080/stolen-by-node", pod.ip());
    let last = curl_until(&client, &url, &mut app, |b| b.contains("node-app"));
    let out = app.wait_with_output().unwrap();
    assert_eq!(
        last,
        "node-app /stolen-by-node",
        "not stolen\n{}",
        show(&out)
    );
    assert!(out.status.success(), "{}", show(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    for e in [
        "env hi from the pod env",
        "sync remote payload",
        "promises b: 2",
        "service 200 true",
        "got /stolen-by-node",
    ] {
        assert!(s.contains(e), "missing {e:?}\n{}", show(&out));
    }
}
