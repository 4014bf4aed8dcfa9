//! End to end: real programs under the real layer, through the session router, to a real agent
//! attached to a test pod (network, mount and UTS namespaces of its own; see tether-testkit).
//!
//! Needs root and the workspace's binaries (`tether-agent`, `libtether_layer.so`,
//! `tether-testsrv`) built into the same target dir: `cargo build --workspace` (tests/run and CI do).

mod support;

use std::process::{Command, Output, Stdio};

use support::artifact;
use tether_testkit::{AgentProcess, Pod, TestCluster, TestServer};

const TOKEN: &str = "e2e-agent-token";

type Agent = AgentProcess;

fn start_agent(pod: &Pod) -> Agent {
    AgentProcess::start(&artifact("tether-agent"), pod, TOKEN)
}

fn pod(cluster: &TestCluster) -> Pod {
    cluster
        .pod("api")
        .hostname("api-pod")
        .env("GREETING", "hello from the pod")
        .env("PATH", "/pod/only/bin")
        .file("/app/data.txt", "remote payload\n")
        .server(TestServer::HttpEcho { port: 8080 })
        .start()
        .unwrap()
}

/// `tether exec --agent ... -- ARGS`, run from a fresh temp dir (so no project config applies).
fn tether_exec(agent: &Agent, args: &[&str]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .current_dir(cwd.path())
        .args(["exec", "--agent", &agent.addr])
        .env("TETHER_AGENT_TOKEN", TOKEN)
        .env("TETHER_LAYER_PATH", artifact("libtether_layer.so"))
        .arg("--")
        .args(args)
        .output()
        .unwrap();
    eprintln!(
        "tether exec {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `tether exec --agent ADDR -- python3 -c SCRIPT` in `cwd`, running in the background with
/// its output captured.
fn spawn_python(addr: &str, cwd: &std::path::Path, script: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .current_dir(cwd)
        .args(["exec", "--agent", addr, "--", "python3", "-c", script])
        .env("TETHER_AGENT_TOKEN", TOKEN)
        .env("TETHER_LAYER_PATH", artifact("libtether_layer.so"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn shell_tools_see_the_pods_env_files_and_hostname() {
    let cluster = TestCluster::new("exec-sh").unwrap();
    let pod = pod(&cluster);
    let agent = start_agent(&pod);
    let out = tether_exec(
        &agent,
        &[
            "sh",
            "-c",
            "echo \"env=$GREETING\"; echo \"path=$PATH\"; cat /app/data.txt; hostname; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let s = stdout(&out);
    assert!(s.contains("env=hello from the pod"), "{s}");
    assert!(
        !s.contains("path=/pod/only/bin"),
        "PATH must stay local: {s}"
    );
    assert!(s.contains("remote payload"), "{s}");
    assert!(s.contains("api-pod"), "{s}");
}

#[test]
fn python_reaches_a_pod_only_address_and_resolves_pod_names() {
    let cluster = TestCluster::new("exec-py").unwrap();
    let pod = pod(&cluster);
    let agent = start_agent(&pod);
    // The host has no route to the pod network: only the agent can connect there.
    let script = format!(
        "import socket, urllib.request\n\
         print('addr', socket.gethostbyname('{dns}'))\n\
         body = urllib.request.urlopen('http://{ip}:8080/hi', timeout=10).read().decode()\n\
         print('http', body)\n",
        dns = pod.dns_name(),
        ip = pod.ip()
    );
    let out = tether_exec(&agent, &["python3", "-c", &script]);
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    assert!(s.contains(&format!("addr {}", pod.ip())), "{s}");
    assert!(s.contains("http ") && s.contains("/hi"), "{s}");
}

#[test]
fn c_program_reads_remote_file_and_connects_out() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("probe.c");
    std::fs::write(
        &src,
        r#"
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char buf[256] = {0};
    int fd = open("/app/data.txt", O_RDONLY);
    if (fd < 0) { perror("open"); return 10; }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("file %.*s", (int)n, buf);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(8080) };
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 11; }
    const char *req = "GET /from-c HTTP/1.0\r\nHost: x\r\n\r\n";
    write(s, req, strlen(req));
    memset(buf, 0, sizeof buf);
    n = read(s, buf, sizeof buf - 1);
    printf("http %.12s\n", buf);
    return 0;
}
"#,
    )
    .unwrap();
    let bin = dir.path().join("probe");
    assert!(
        Command::new("cc")
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .status()
            .unwrap()
            .success()
    );
    let cluster = TestCluster::new("exec-c").unwrap();
    let pod = pod(&cluster);
    let agent = start_agent(&pod);
    let out = tether_exec(&agent, &[bin.to_str().unwrap(), &pod.ip().to_string()]);
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    assert!(s.contains("file remote payload"), "{s}");
    assert!(s.contains("http HTTP/1."), "{s}");
}

#[test]
fn node_program_fetches_through_the_pod() {
    if Command::new("node").arg("--version").output().is_err() {
        panic!("node is not installed: apt-get install nodejs");
    }
    let cluster = TestCluster::new("exec-node").unwrap();
    let pod = pod(&cluster);
    let agent = start_agent(&pod);
    let script = format!(
        "const http = require('http'); const fs = require('fs');\n\
         console.log('file', fs.readFileSync('/app/data.txt', 'utf8').trim());\n\
         http.get('http://{ip}:8080/from-node', r => {{ let b=''; r.on('data', d => b += d);\n\
           r.on('end', () => {{ console.log('status', r.statusCode, b.includes('/from-node')); }}); }})\n\
           .on('error', e => {{ console.log('error', e.message); process.exit(5); }});\n",
        ip = pod.ip()
    );
    let out = tether_exec(&agent, &["node", "-e", &script]);
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    assert!(s.contains("file remote payload"), "{s}");
    assert!(s.contains("status 200 true"), "{s}");
}

#[test]
fn static_executable_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let bin = dir.path().join("static-prog");
    let built = Command::new("cc")
        .args(["-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success())
        || Command::new("cc")
            .args(["-static", "-nostdlib", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .is_ok_and(|s| s.success());
    assert!(built, "cannot build a static program");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["exec", "--agent", "127.0.0.1:1", "--token", "t", "--"])
        .arg(&bin)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("statically linked"), "{err}");
    assert!(err.contains(bin.to_str().unwrap()), "{err}");
    assert!(
        err.contains("help: run a dynamically linked build"),
        "{err}"
    );
}

/// A local HTTP app that names itself in every answer.
const LOCAL_APP: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("local-app " + self.path).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"#;

#[test]
fn filtered_steal_reaches_the_local_app_and_sigterm_is_forwarded() {
    let cluster = TestCluster::new("exec-steal").unwrap();
    let pod = pod(&cluster);
    let client = cluster.pod("client").start().unwrap();
    let agent = start_agent(&pod);

    let cwd = tempfile::tempdir().unwrap();
    let local_port = tether_testkit::free_port();
    std::fs::create_dir(cwd.path().join(".tether")).unwrap();
    std::fs::write(
        cwd.path().join(".tether/tether.json"),
        format!(
            r#"{{ "feature": {{ "network": {{ "incoming": {{
                "mode": "steal",
                "port_mapping": [[{local_port}, 8080]],
                "http_filter": {{ "header_filter": "x-tether: yes", "ports": [8080] }}
            }} }} }} }}"#
        ),
    )
    .unwrap();
    std::fs::write(cwd.path().join("app.py"), LOCAL_APP).unwrap();
    let mut tether = Command::new(env!("CARGO_BIN_EXE_tether"))
        .current_dir(cwd.path())
        .args(["exec", "--agent", &agent.addr, "--"])
        .args(["python3", "app.py", &local_port.to_string()])
        .env("TETHER_AGENT_TOKEN", TOKEN)
        .env("TETHER_LAYER_PATH", artifact("libtether_layer.so"))
        .spawn()
        .unwrap();

    let url = format!("http://{}:8080/stolen", pod.ip());
    let curl = |header: bool| {
        let mut args = vec!["curl", "-s", "-m", "5"];
        if header {
            args.extend(["-H", "x-tether: yes"]);
        }
        args.push(&url);
        let out = client.exec(args).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        last = curl(true);
        if last.contains("local-app /stolen") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        last.contains("local-app /stolen"),
        "matching request not stolen: {last}"
    );
    // Requests the filter does not match still reach the pod's own server.
    let unmatched = curl(false);
    assert!(!unmatched.contains("local-app"), "{unmatched}");
    assert!(unmatched.contains("/stolen"), "{unmatched}");

    // SIGTERM to tether reaches the app; tether exits with the app's fate.
    // SAFETY: plain kill of our own child.
    unsafe { libc::kill(tether.id() as i32, libc::SIGTERM) };
    let status = tether.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
}

#[test]
fn agent_death_makes_remote_calls_fail_fast() {
    let cluster = TestCluster::new("exec-death").unwrap();
    let pod = pod(&cluster);
    let mut agent = start_agent(&pod);
    let cwd = tempfile::tempdir().unwrap();
    let marker = cwd.path().join("first-read-done");
    // Reads a remote file until that fails, then tries a remote connect; reports both errors.
    let script = format!(
        r#"
import errno, os, socket, sys, time
open('/app/data.txt').read()
open('{marker}', 'w').close()
deadline = time.time() + 30
while time.time() < deadline:
    try:
        open('/app/data.txt').read()
    except OSError as e:
        t = time.time()
        print('read failed', errno.errorcode.get(e.errno, e.errno))
        break
    time.sleep(0.05)
else:
    sys.exit('reads kept working')
try:
    socket.create_connection(('{ip}', 8080), timeout=10)
    print('connect worked')
except OSError as e:
    print('connect failed', errno.errorcode.get(e.errno, e.errno), round(time.time() - t, 1))
"#,
        marker = marker.display(),
        ip = pod.ip()
    );
    let tether = spawn_python(&agent.addr, cwd.path(), &script);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !marker.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(marker.exists(), "the first remote read never finished");
    let killed = std::time::Instant::now();
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let out = tether.wait_with_output().unwrap();
    let s = stdout(&out);
    eprintln!("{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        killed.elapsed() < std::time::Duration::from_secs(8),
        "took {:?}",
        killed.elapsed()
    );
    assert!(s.contains("read failed"), "{s}");
    assert!(s.contains("connect failed"), "{s}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn session_lasts_until_the_whole_process_tree_is_gone() {
    let cluster = TestCluster::new("exec-tree").unwrap();
    let pod = pod(&cluster);
    let agent = start_agent(&pod);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("late.txt");
    let started = std::time::Instant::now();
    // The child exits at once; its background grandchild still needs the session a second later.
    let o = tether_exec(
        &agent,
        &[
            "sh",
            "-c",
            &format!(
                "(sleep 1; cat /app/data.txt > {}) </dev/null >/dev/null 2>&1 & exit 0",
                out.display()
            ),
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "remote payload\n");
}

#[test]
fn whole_port_steal_over_a_tcp_session_and_sigint_is_forwarded() {
    let cluster = TestCluster::new("exec-steal-all").unwrap();
    let pod = pod(&cluster);
    let client = cluster.pod("client").start().unwrap();
    let agent = start_agent(&pod);

    let cwd = tempfile::tempdir().unwrap();
    let local_port = tether_testkit::free_port();
    std::fs::create_dir(cwd.path().join(".tether")).unwrap();
    // The file says mirror; the --incoming flag overrides it.
    std::fs::write(
        cwd.path().join(".tether/tether.toml"),
        format!(
            "[feature.network.incoming]\nmode = \"mirror\"\nport_mapping = [[{local_port}, 8080]]\n"
        ),
    )
    .unwrap();
    std::fs::write(cwd.path().join("app.py"), LOCAL_APP).unwrap();
    let mut tether = Command::new(env!("CARGO_BIN_EXE_tether"))
        .current_dir(cwd.path())
        .args([
            "exec",
            "--agent",
            &agent.addr,
            "--tcp-session",
            "--incoming",
            "steal",
        ])
        .args(["--", "python3", "app.py", &local_port.to_string()])
        .env("TETHER_AGENT_TOKEN", TOKEN)
        .env("TETHER_LAYER_PATH", artifact("libtether_layer.so"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    let url = format!("http://{}:8080/all", pod.ip());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        let out = client.exec(["curl", "-s", "-m", "5", &url]).unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.contains("local-app /all") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(last.contains("local-app /all"), "port not stolen: {last}");

    // stdin is not a terminal, so tether forwards SIGINT itself.
    // SAFETY: plain kill of our own child.
    unsafe { libc::kill(tether.id() as i32, libc::SIGINT) };
    let status = tether.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{status:?}");
    // The port is released: the pod's own server answers again.
    let out = client.exec(["curl", "-s", "-m", "5", &url]).unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("\"instance\":\"api\""), "{s}");
}

#[test]
fn mirror_copies_pod_traffic_to_the_local_app() {
    let cluster = TestCluster::new("exec-mirror").unwrap();
    let pod = pod(&cluster);
    let client = cluster.pod("client").start().unwrap();
    let agent = start_agent(&pod);

    let cwd = tempfile::tempdir().unwrap();
    let local_port = tether_testkit::free_port();
    std::fs::create_dir(cwd.path().join(".tether")).unwrap();
    std::fs::write(
        cwd.path().join(".tether/tether.json"),
        format!(r#"{{ "feature": {{ "network": {{ "incoming": {{ "mode": "mirror", "port_mapping": [[{local_port}, 8080]] }} }} }} }}"#),
    )
    .unwrap();
    // The app records each request path; what it answers is dropped.
    let hits = cwd.path().join("hits.txt");
    let app = LOCAL_APP.replace(
        "body = (",
        &format!(
            "open({:?}, 'a').write(self.path + '\\n'); body = (",
            hits.display().to_string()
        ),
    );
    std::fs::write(cwd.path().join("app.py"), app).unwrap();
    let mut tether = Command::new(env!("CARGO_BIN_EXE_tether"))
        .current_dir(cwd.path())
        .args(["exec", "--agent", &agent.addr, "--"])
        .args(["python3", "app.py", &local_port.to_string()])
        .env("TETHER_AGENT_TOKEN", TOKEN)
        .env("TETHER_LAYER_PATH", artifact("libtether_layer.so"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    let url = format!("http://{}:8080/mirrored", pod.ip());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut copied = false;
    while std::time::Instant::now() < deadline && !copied {
        let out = client.exec(["curl", "-s", "-m", "5", &url]).unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        // The pod's own server answers every request, mirrored or not.
        assert!(s.contains("\"instance\":\"api\""), "{s}");
        assert!(!s.contains("local-app"), "{s}");
        std::thread::sleep(std::time::Duration::from_millis(300));
        copied = std::fs::read_to_string(&hits).is_ok_and(|h| h.contains("/mirrored"));
    }
    assert!(copied, "the local app never saw a copy");
    // SAFETY: plain kill of our own child.
    unsafe { libc::kill(tether.id() as i32, libc::SIGTERM) };
    tether.wait().unwrap();
}

#[test]
fn invalid_config_is_reported_before_anything_runs() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(cwd.path().join(".tether")).unwrap();
    std::fs::write(
        cwd.path().join(".tether/tether.toml"),
        "[feature.network.incoming]\nmdoe = \"steal\"\n",
    )
    .unwrap();
    let marker = cwd.path().join("ran");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .current_dir(cwd.path())
        .args(["exec", "--agent", "127.0.0.1:1", "--token", "t", "--"])
        .args(["touch", marker.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tether.toml:2:1"), "{err}");
    assert!(err.contains("mode"), "no suggestion: {err}");
    assert!(!marker.exists(), "the command ran despite the bad config");
}

/// A TCP relay in front of the agent whose connections can be cut while it keeps listening, as a
/// `kubectl port-forward` that drops its streams does.
struct CuttableRelay {
    addr: String,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CuttableRelay {
    fn start(agent: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (agent, held) = (agent.to_owned(), conns.clone());
        std::thread::spawn(move || {
            for app in listener.incoming() {
                let Ok(app) = app else { return };
                let Ok(up) = std::net::TcpStream::connect(&agent) else {
                    continue;
                };
                held.lock()
                    .unwrap()
                    .extend([app.try_clone().unwrap(), up.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (app.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, app),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { addr, conns }
    }

    /// Cuts every relayed connection; new ones are still accepted.
    fn cut(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        for c in conns.iter() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let n = conns.len();
        conns.clear();
        n
    }
}

#[test]
fn direct_session_redials_after_its_agent_connection_drops() {
    let cluster = TestCluster::new("exec-redial").unwrap();
    let pod = pod(&cluster);
    let agent = start_agent(&pod);
    let relay = CuttableRelay::start(&agent.addr);
    let cwd = tempfile::tempdir().unwrap();
    let go = cwd.path().join("cut-done");
    // Reads a remote file, waits for the cut, then reads again until it works (a read in flight
    // during the cut may fail; later ones must not).
    let script = format!(
        r#"
import os, sys, time
print('before', open('/app/data.txt').read().strip(), flush=True)
while not os.path.exists('{go}'):
    time.sleep(0.05)
deadline = time.time() + 20
while time.time() < deadline:
    try:
        print('after', open('/app/data.txt').read().strip(), flush=True)
        sys.exit(0)
    except OSError as e:
        print('error', e, flush=True)
        time.sleep(0.2)
sys.exit('remote reads never worked again')
"#,
        go = go.display()
    );
    let tether = spawn_python(&relay.addr, cwd.path(), &script);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while relay.conns.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Let the first read finish, then cut the link under the running session.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        relay.cut() > 0,
        "the session never connected through the relay"
    );
    std::fs::write(&go, "").unwrap();
    let out = tether.wait_with_output().unwrap();
    let s = stdout(&out);
    eprintln!("{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.contains("before remote payload"), "{s}");
    assert!(s.contains("after remote payload"), "{s}");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !relay.conns.lock().unwrap().is_empty(),
        "the session dialled the agent again"
    );
}

#[test]
fn local_credentials_never_reach_the_debuggee() {
    let cluster = TestCluster::new("exec-creds").unwrap();
    let pod = pod(&cluster);
    let agent = start_agent(&pod);
    let cwd = tempfile::tempdir().unwrap();
    // A kubeconfig outside ~/.kube, named by $KUBECONFIG: the debuggee must not read it.
    let kubeconfig = cwd.path().join("dev-cluster.yaml");
    std::fs::write(&kubeconfig, "secret: local\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .current_dir(cwd.path())
        .args(["exec", "--agent", &agent.addr, "--", "sh", "-c"])
        .arg(
            "echo \"aws=${AWS_SECRET_ACCESS_KEY-unset} kc=${KUBECONFIG-unset} g=$GREETING\"; \
             cat \"$KC_PATH\" || echo hidden",
        )
        .env("TETHER_AGENT_TOKEN", TOKEN)
        .env("TETHER_LAYER_PATH", artifact("libtether_layer.so"))
        .env("AWS_SECRET_ACCESS_KEY", "local-secret")
        .env("KUBECONFIG", &kubeconfig)
        .env("KC_PATH", &kubeconfig)
        .output()
        .unwrap();
    let s = stdout(&out);
    eprintln!("{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(s.contains("aws=unset kc=unset g=hello from the pod"), "{s}");
    assert!(s.contains("hidden") && !s.contains("secret: local"), "{s}");
}
