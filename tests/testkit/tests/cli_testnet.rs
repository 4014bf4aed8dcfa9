//! The `tether-testnet` CLI as the Go test node uses it. Needs root (as CI runs).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const TESTNET: &str = env!("CARGO_BIN_EXE_tether-testnet");
const TESTSRV: &str = env!("CARGO_BIN_EXE_tether-testsrv");

/// A name unique to this process and call.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn testnet(args: &[&str]) -> Output {
    Command::new(TESTNET)
        .args(args)
        .env("TETHER_TESTSRV", TESTSRV)
        .output()
        .unwrap()
}

/// Runs a command that must succeed and print JSON.
fn json(args: &[&str]) -> Value {
    let out = testnet(args);
    assert!(
        out.status.success(),
        "tether-testnet {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {:?}", out.stdout))
}

fn netns_list() -> String {
    String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

/// Removes a network even if the test fails half-way.
struct NetworkGuard(String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = testnet(&["network", "down", &self.0]);
    }
}

/// A container root directory, removed on drop (also when the test fails).
struct TempRoot(PathBuf);

impl TempRoot {
    fn to_str(&self) -> Option<&str> {
        self.0.to_str()
    }

    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        // Mounts live in the containers' own namespaces, so this is a plain directory here.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_root(name: &str) -> TempRoot {
    let dir = std::env::temp_dir().join(unique(&format!("tt-root-{name}-")));
    std::fs::create_dir_all(&dir).unwrap();
    TempRoot(dir)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn listening(pid: u32, port: u16) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let needle = format!(":{port:04X} ");
    text.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|a| format!("{a} ").ends_with(&needle))
            && l.split_whitespace().nth(3) == Some("0A")
    })
}

fn spawn_run(args: &[&str]) -> Child {
    Command::new(TESTNET)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn network_sandbox_run_exec_service_dns_roundtrip() {
    let name = unique("cli");
    let _guard = NetworkGuard(name.clone());
    let me = std::process::id().to_string();
    let net = json(&["network", "up", &name, "--owner-pid", &me]);
    assert_eq!(net["name"], name.as_str());
    assert_eq!(net["bridge"], "br0");
    let index = net["index"].as_u64().unwrap();
    assert_eq!(net["subnet"], format!("10.244.{index}.0/24").as_str());
    assert_eq!(net["gateway"], format!("10.244.{index}.1").as_str());
    assert_eq!(net["dns"], net["gateway"]);
    // Idempotent: the same network again.
    assert_eq!(json(&["network", "up", &name, "--owner-pid", &me]), net);
    assert_eq!(json(&["network", "show", &name]), net);

    let sb1 = format!("{name}-a");
    let sb2 = format!("{name}-b");
    let a = json(&[
        "sandbox",
        "create",
        "--network",
        &name,
        "--name",
        &sb1,
        "--hostname",
        "web1",
    ]);
    let b = json(&["sandbox", "create", "--network", &name, "--name", &sb2]);
    assert_ne!(a["ip"], b["ip"]);
    assert_eq!(a["dns_names"][0], "web1.pods.test");
    assert_eq!(
        json(&[
            "sandbox",
            "create",
            "--network",
            &name,
            "--name",
            &sb1,
            "--hostname",
            "web1"
        ]),
        a
    );
    let list = netns_list();
    assert!(list.contains(a["netns"].as_str().unwrap()), "{list}");
    let nets = json(&["network", "list"]);
    assert!(
        nets.as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == name.as_str()),
        "{nets}"
    );
    let sbs = json(&["sandbox", "list", "--network", &name]);
    assert_eq!(sbs.as_array().unwrap().len(), 2, "{sbs}");

    // `run` becomes the container process: its pid is the child's pid.
    let root = temp_root("a");
    std::fs::write(root.join("marker"), "from-the-root").unwrap();
    let bind = format!("{TESTSRV}:/srv/testsrv:ro");
    let mut server = spawn_run(&[
        "--sandbox",
        &sb1,
        "--root",
        root.to_str().unwrap(),
        "--env",
        "A=1",
        "--env",
        "B=two words",
        "--bind",
        &bind,
        "--",
        "/srv/testsrv",
        "http-echo",
        "--port",
        "8080",
        "--name",
        "cli-server",
    ]);
    let pid = server.id();
    wait_for("the server to listen", || listening(pid, 8080));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let mut environ: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    environ.sort();
    assert_eq!(environ.len(), 3, "{environ:?}");
    assert_eq!(environ[0], "A=1");
    assert_eq!(environ[1], "B=two words");
    assert!(environ[2].starts_with("PATH="));
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/root/marker")).unwrap(),
        "from-the-root"
    );
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino();
    let sb_ns = std::fs::metadata(a["netns_path"].as_str().unwrap())
        .unwrap()
        .ino();
    assert_eq!(ns, sb_ns);

    // `exec` joins it (env inherited plus --env).
    let out = testnet(&[
        "exec",
        "--pid",
        &pid.to_string(),
        "--env",
        "C=3",
        "--",
        "/bin/sh",
        "-c",
        "hostname; echo $A-$C; cat /marker; echo; cat /etc/resolv.conf",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("web1"));
    assert_eq!(lines.next(), Some("1-3"));
    assert_eq!(lines.next(), Some("from-the-root"));
    assert!(text.contains(&format!("nameserver {}", net["dns"].as_str().unwrap())));

    // The other sandbox reaches it by its DNS name, and through a service.
    let root_b = temp_root("b");
    let get = |url: &str| {
        let out = Command::new(TESTNET)
            .args([
                "run",
                "--sandbox",
                &sb2,
                "--root",
                root_b.to_str().unwrap(),
                "--bind",
                &bind,
            ])
            .args(["--", "/srv/testsrv", "http-get", url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let body = get("http://web1.pods.test:8080/direct");
    assert!(body.contains(r#""instance":"cli-server""#), "{body}");
    let target = format!("{}:8080", a["ip"].as_str().unwrap());
    let svc = json(&[
        "service",
        "add",
        "--network",
        &name,
        "--name",
        "api",
        "--port",
        "80",
        "--target",
        &target,
    ]);
    assert_eq!(svc["dns_name"], "api.cluster.test");
    let body = get("http://api.cluster.test/via-service");
    assert!(body.contains(r#""path":"/via-service""#), "{body}");
    json(&[
        "dns",
        "add",
        "--network",
        &name,
        "--name",
        "alias.cluster.test",
        "--ip",
        a["ip"].as_str().unwrap(),
    ]);
    let body = get("http://alias.cluster.test:8080/via-alias");
    assert!(body.contains(r#""path":"/via-alias""#), "{body}");

    // Exit status is the command's; tether-testnet's own failures are 125.
    let status = Command::new(TESTNET)
        .args(["run", "--sandbox", &sb2, "--root", root_b.to_str().unwrap()])
        .args(["--", "/bin/sh", "-c", "exit 7"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let out = Command::new(TESTNET)
        .args(["run", "--sandbox", &sb2, "--root", root_b.to_str().unwrap()])
        .args(["--", "no-such-program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-program"));

    // Deleting the sandbox kills the container.
    let removed = json(&["sandbox", "delete", "--name", &sb1]);
    assert_eq!(removed["removed"], true);
    let status = server.wait().unwrap();
    assert_eq!(status.signal(), Some(libc_sigkill()));
    assert_eq!(
        json(&["sandbox", "delete", "--name", &sb1])["removed"],
        false
    );

    assert_eq!(json(&["network", "down", &name])["removed"], true);
    let list = netns_list();
    assert!(!list.contains(&name), "{list}");
    assert!(!Path::new(net["state_dir"].as_str().unwrap()).exists());
    for r in [root, root_b] {
        // Only empty mount points were added to the roots; no mount is left on them.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(r.to_str().unwrap()));
    }
}

fn libc_sigkill() -> i32 {
    9
}

#[test]
fn cleanup_sweeps_networks_of_dead_owners() {
    let name = unique("stale");
    let _guard = NetworkGuard(name.clone());
    let mut owner = Command::new("sleep").arg("60").spawn().unwrap();
    let net = json(&[
        "network",
        "up",
        &name,
        "--owner-pid",
        &owner.id().to_string(),
    ]);
    let sb = format!("{name}-p");
    json(&["sandbox", "create", "--network", &name, "--name", &sb]);
    let root = temp_root("stale");
    let mut orphan = spawn_run(&[
        "--sandbox",
        &sb,
        "--root",
        root.to_str().unwrap(),
        "--",
        "sleep",
        "1000",
    ]);
    wait_for("the container to start", || {
        std::fs::read_link(format!("/proc/{}/exe", orphan.id())).is_ok_and(|p| p.ends_with("sleep"))
    });

    // While the owner lives, cleanup keeps the network.
    let report = json(&["cleanup"]);
    assert!(
        !report["networks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == name.as_str()),
        "{report}"
    );
    assert!(netns_list().contains(net["netns"].as_str().unwrap()));

    owner.kill().unwrap();
    owner.wait().unwrap();
    let report = json(&["cleanup"]);
    assert!(
        report["networks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == name.as_str()),
        "{report}"
    );
    let list = netns_list();
    assert!(!list.contains(&name), "{list}");
    assert_eq!(orphan.wait().unwrap().signal(), Some(libc_sigkill()));
    let routes = String::from_utf8(
        Command::new("ip")
            .args(["route", "show", "proto", "116"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !routes.contains(net["subnet"].as_str().unwrap()),
        "{routes}"
    );
    drop(root);
}

#[test]
fn errors_name_the_problem_and_the_next_step() {
    let out = testnet(&[
        "sandbox",
        "create",
        "--network",
        "no-such-net-x",
        "--name",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("tether-testnet: network `no-such-net-x` not found"),
        "{err}"
    );
    assert!(
        err.contains("help: create it with `tether-testnet network up NAME`"),
        "{err}"
    );

    let out = testnet(&["network", "up", "bad/name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid network name `bad/name`"));

    // Not root: a clear message instead of a failing `ip` command.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            TESTNET,
            "network",
            "up",
            "x",
        ])
        .env("TETHER_TESTSRV", TESTSRV)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root, effective uid is 65534"), "{err}");
    assert!(err.contains("help: run the tests as root"), "{err}");
}
