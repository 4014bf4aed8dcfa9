//! `tether demo` end to end, as the README's first command runs it: the real test cluster
//! (tests/cluster/up, reusing a running or already built one), the demo workloads, `tether ls`,
//! and examples/demo-app/app.py under `tether exec`, answering a request stolen from pod `demo`;
//! once with the agent from the Kubernetes launcher (the default), once with the demo's local
//! fallback agent.
//!
//! Needs root and the workspace's binaries (`tether-agent`, `tether-testsrv`,
//! `libtether_layer.so`) built next to `tether`: `cargo build --workspace` (tests/run and CI do).

use std::process::Command;
use std::time::Instant;

/// The line of the app's output that starts with `app: <what>`, without that prefix and without
/// the ` (try N)` the app adds when a step needed retries on a busy machine.
fn app_line<'a>(out: &'a str, what: &str) -> &'a str {
    let prefix = format!("app: {what}");
    let value = out
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{prefix}` line in the demo's output:\n{out}"));
    match value.rsplit_once(" (try ") {
        Some((v, n)) if n.ends_with(')') => v,
        _ => value,
    }
}

/// Stops the test's daemon (`tether daemon stop` with the test's dirs).
struct StopDaemon(std::path::PathBuf);

impl Drop for StopDaemon {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["daemon", "stop"])
            .env("XDG_STATE_HOME", self.0.join("state"))
            .env("XDG_RUNTIME_DIR", self.0.join("run"))
            .output();
    }
}

/// Runs `tether demo` (`agent`: `TETHER_DEMO_AGENT`, unset for the default) and checks what the
/// app saw and answered, and which agent path ran (`path_line`, from the summary).
fn run_demo(agent: Option<&str>, path_line: &str) {
    let started = Instant::now();
    // A daemon of this build, in dirs of this test (`tether ls` in the demo starts one).
    let dirs = tempfile::tempdir().unwrap();
    let _daemon = StopDaemon(dirs.path().to_path_buf());
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("demo")
        .env("XDG_STATE_HOME", dirs.path().join("state"))
        .env("XDG_RUNTIME_DIR", dirs.path().join("run"))
        .env_remove("TETHER_DEMO_AGENT")
        .envs(agent.map(|a| ("TETHER_DEMO_AGENT", a)))
        .output()
        .expect("running tether demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        out.status.success(),
        "tether demo failed ({}):\n{all}",
        out.status
    );

    // `tether ls` listed the demo pod as ready with its port.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("pod/demo") && l.contains("1/1") && l.contains("8080/TCP")),
        "no ready pod/demo in the target list:\n{all}"
    );

    // What the local app saw: the pod's env, file, DNS, cluster-only service and host name.
    assert_eq!(
        app_line(&stdout, "env DEMO_GREETING"),
        "hello from the env of pod demo"
    );
    assert_eq!(
        app_line(&stdout, "file /config/app.conf"),
        "greeting = hello from the config file inside pod demo"
    );
    let ip = app_line(&stdout, "dns backend.tether-demo.svc.cluster.local");
    assert!(
        ip.starts_with("10.96.0."),
        "the backend service's name did not resolve to a cluster IP: {ip:?}\n{all}"
    );
    assert_eq!(
        app_line(&stdout, "GET http://backend.tether-demo.svc.cluster.local/"),
        "HTTP 200 from instance 'backend'"
    );
    assert_eq!(app_line(&stdout, "hostname"), "demo");

    // The request pod client sent to pod demo reached the local app, which answered it.
    let pid = app_line(&stdout, "pid on this machine");
    let answer = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("cluster: pod client <- "))
        .unwrap_or_else(|| panic!("pod client got no answer:\n{all}"));
    assert_eq!(
        answer,
        format!(
            "answered by the local demo-app (pid {pid}) instead of pod demo: GET /hello-from-the-cluster"
        ),
        "{all}"
    );
    assert_eq!(
        app_line(&stdout, "stolen request answered"),
        "GET /hello-from-the-cluster"
    );
    assert!(
        stdout.contains("tests/cluster/down"),
        "no tear-down hint:\n{all}"
    );
    assert!(stdout.contains(path_line), "not `{path_line}`:\n{all}");
    eprintln!(
        "tether demo ({}) took {:.1}s",
        agent.unwrap_or("default agent path"),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn demo_runs_the_app_inside_the_demo_pod() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the demo test needs root (the test cluster): run it as root, as tests/run and CI do"
    );
    // One after the other: both steal pod demo's port.
    run_demo(
        None,
        "the agent ran as a Job in the cluster (tether exec --target)",
    );
    run_demo(
        Some("local"),
        "the agent ran on this machine attached to pod demo's process (tether exec --agent)",
    );
}

#[test]
fn demo_without_root_says_so_and_does_nothing() {
    use std::os::unix::process::CommandExt as _;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test drops to uid 65534 (nobody), which needs root"
    );
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("demo")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("running tether demo as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "the demo started anyway: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut lines = stderr.lines();
    let first = lines.next().unwrap_or_default();
    assert!(
        first.starts_with("tether: demo: needs root: ") && first.contains("network namespaces"),
        "{stderr}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.contains("help: ") && l.contains("sudo")),
        "{stderr}"
    );
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
}
