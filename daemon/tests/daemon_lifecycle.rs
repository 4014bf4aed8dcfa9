//! One daemon per user: discovery file, lock, second start, stale file, stop. First in-process
//! through `run_daemon`, then through the `tether daemon` binary.

mod support;

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command, time::Duration};

use tether::{
    discovery::{self, DiscoveryInfo, Found, Paths},
    server::{self, DaemonOptions, RunOutcome},
};

fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[tokio::test]
async fn run_daemon_writes_a_private_file_and_a_second_start_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::in_dir(dir.path());
    let p2 = paths.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let first = tokio::spawn(async move {
        server::run_daemon(
            &p2,
            DaemonOptions::default(),
            std::future::pending(),
            |info| {
                ready_tx.send(info.clone()).unwrap();
            },
        )
        .await
        .unwrap()
    });
    let info = tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .unwrap()
        .unwrap();
    let file = paths.discovery_file();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(discovery::read(&file).unwrap().unwrap(), info);
    assert!(info.address.starts_with("ws://127.0.0.1:"));
    assert_eq!(info.token.len(), 64);

    // A second start does not become a daemon: it finds the live one.
    let second = server::run_daemon(
        &paths,
        DaemonOptions::default(),
        std::future::pending(),
        |_| panic!("second daemon started"),
    )
    .await
    .unwrap();
    match second {
        RunOutcome::AlreadyRunning(found) => assert_eq!(found, info),
        other => panic!("{other:?}"),
    }

    // Shutdown over RPC stops the first and removes the file.
    let client = discovery::connect(&info).await.unwrap();
    let r: tether::server::api::ShutdownResult =
        discovery::call(&client, "daemon.shutdown", serde_json::json!({}))
            .await
            .unwrap();
    assert!(r.stopping);
    let outcome = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, RunOutcome::Stopped));
    assert!(!file.exists());
    assert!(matches!(
        discovery::find(&paths).await.unwrap(),
        Found::Missing
    ));
}

#[tokio::test]
async fn stale_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::in_dir(dir.path());
    paths.create_dirs().unwrap();
    let stale = DiscoveryInfo {
        pid: dead_pid(),
        version: "0.0.1".into(),
        address: "ws://127.0.0.1:9".into(),
        token: "old".into(),
    };
    discovery::write_atomic(&paths.discovery_file(), &stale).unwrap();
    assert!(matches!(
        discovery::find(&paths).await.unwrap(),
        Found::Stale(..)
    ));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let p2 = paths.clone();
    let task = tokio::spawn(async move {
        server::run_daemon(
            &p2,
            DaemonOptions::default(),
            async { stop_rx.await.unwrap() },
            |i| ready_tx.send(i.clone()).unwrap(),
        )
        .await
    });
    let info = tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.pid, std::process::id());
    assert_ne!(info.token, "old");
    assert!(matches!(
        discovery::find(&paths).await.unwrap(),
        Found::Live(..)
    ));
    stop_tx.send(()).unwrap();
    assert!(matches!(task.await.unwrap().unwrap(), RunOutcome::Stopped));
    assert!(!paths.discovery_file().exists());
}

/// A user's environment in a temp dir; kills the daemon it started if a test fails midway.
struct User {
    dir: tempfile::TempDir,
}

impl User {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn paths(&self) -> Paths {
        Paths {
            runtime_dir: self.dir.path().join("run/tether"),
            state_dir: self.dir.path().join("state/tether"),
        }
    }

    fn tether(&self, args: &[&str]) -> std::process::Output {
        let root: &Path = self.dir.path();
        std::fs::create_dir_all(root.join("run")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(args)
            .env("HOME", root)
            .env("XDG_RUNTIME_DIR", root.join("run"))
            .env("XDG_STATE_HOME", root.join("state"))
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    }

    fn daemon_pid(&self) -> Option<u32> {
        discovery::read(&self.paths().discovery_file())
            .ok()
            .flatten()
            .map(|i| i.pid)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon_pid()
            && discovery::pid_alive(pid)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn cli_start_twice_status_stop() {
    let user = User::new();
    let out = user.tether(&["daemon", "start"]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = user.daemon_pid().expect("discovery file written");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("daemon running (pid {pid}")),
        "{}",
        text(&out)
    );
    let file = user.paths().discovery_file();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(discovery::pid_alive(pid));
    assert!(
        user.paths().log_file().exists(),
        "daemon logs to the state dir"
    );

    let out = user.tether(&["daemon", "start"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("already running (pid {pid}")),
        "{}",
        text(&out)
    );
    // --foreground finds it too and exits 0 instead of serving.
    let out = user.tether(&["daemon", "start", "--foreground"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already running"),
        "{}",
        text(&out)
    );
    assert_eq!(user.daemon_pid(), Some(pid));

    let out = user.tether(&["daemon", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&pid.to_string()));

    let out = user.tether(&["sessions"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no sessions"),
        "{}",
        text(&out)
    );

    let out = user.tether(&["daemon", "stop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!discovery::pid_alive(pid), "daemon exited");
    assert!(!file.exists(), "discovery file removed");

    let out = user.tether(&["daemon", "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = user.tether(&["daemon", "stop"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn cli_start_replaces_a_stale_file_and_racing_starts_make_one_daemon() {
    let user = User::new();
    let paths = user.paths();
    paths.create_dirs().unwrap();
    let dead = dead_pid();
    let stale = DiscoveryInfo {
        pid: dead,
        version: "0.0.1".into(),
        address: "ws://127.0.0.1:9".into(),
        token: "old".into(),
    };
    discovery::write_atomic(&paths.discovery_file(), &stale).unwrap();

    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| user.tether(&["daemon", "start"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    let pid = user.daemon_pid().unwrap();
    assert_ne!(pid, dead);
    for o in &outs {
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&format!("pid {pid}")),
            "all report the same daemon: {}",
            text(o)
        );
    }
    let out = user.tether(&["daemon", "stop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!discovery::pid_alive(pid));
}

#[tokio::test]
async fn exec_through_the_daemon_sends_its_config_flags() {
    let user = User::new();
    let missing = user.dir.path().join("missing-kubeconfig");
    // Never loaded: the start fails before any process runs.
    let layer = user.dir.path().join("libtether_layer.so");
    std::fs::write(&layer, b"").unwrap();
    // `--kubeconfig` reaches the daemon (which starts on demand) as a session override: the
    // start fails on reading exactly that file.
    let out = user.tether(&[
        "exec",
        "-q",
        "--target",
        "pod/api",
        "-n",
        "shop",
        "--kubeconfig",
        missing.to_str().unwrap(),
        "--no-env",
        "--layer",
        layer.to_str().unwrap(),
        "--",
        "/bin/true",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing-kubeconfig"),
        "the error names the file: {}",
        text(&out)
    );
    assert!(user.daemon_pid().is_some(), "exec started the daemon");

    let out = user.tether(&[
        "exec",
        "--tcp-session",
        "--target",
        "pod/api",
        "--",
        "/bin/true",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tcp-session applies to --agent"),
        "{}",
        text(&out)
    );
    let out = user.tether(&["daemon", "stop"]);
    assert!(out.status.success(), "{}", text(&out));
}
