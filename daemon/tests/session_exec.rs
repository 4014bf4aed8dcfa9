//! `tether exec`'s code path: checks before launch, the debuggee's env, exit status.
//!
//! The layer here is an empty shared library built with `cc`, so the child runs unhooked: these
//! tests cover the launcher, not the layer.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{AGENT_TOKEN, FakeAgent, env_handler};
use tether::agent_link::{ConnectError, LinkOptions};
use tether::session::ListenKind;
use tether::session::launch::{self, ExecOptions, LaunchError};
use tether_config::EnvConfig;

/// The pod's env: a PATH that must stay local and a variable the options exclude.
const POD_ENV: &[(&str, &str)] = &[
    ("PATH", "/pod/bin"),
    ("DB_URL", "postgres://db"),
    ("SECRET", "s"),
];

fn cc(dir: &Path, args: &[&str], src: &str, out: &str) -> Option<PathBuf> {
    let c = dir.join(format!("{out}.c"));
    std::fs::write(&c, src).unwrap();
    let o = dir.join(out);
    let ok = Command::new("cc")
        .args(args)
        .arg("-o")
        .arg(&o)
        .arg(&c)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(o)
}

fn empty_layer(dir: &Path) -> PathBuf {
    cc(
        dir,
        &["-shared", "-fPIC"],
        "int tether_test_layer_marker;\n",
        "libempty.so",
    )
    .expect("cc -shared must work in the test environment")
}

/// Runs `command` with `layer` through the fake agent, excluding the pod's SECRET.
fn options(agent: &FakeAgent, layer: &Path, command: &[&str]) -> ExecOptions {
    options_at(&agent.addr.to_string(), AGENT_TOKEN, layer, command)
}

/// As [`options`], for an agent at `agent_addr` expecting `agent_token`.
fn options_at(agent_addr: &str, agent_token: &str, layer: &Path, command: &[&str]) -> ExecOptions {
    ExecOptions {
        agent_addr: agent_addr.into(),
        agent_token: agent_token.into(),
        command: command.iter().map(OsString::from).collect(),
        options: Default::default(),
        env: EnvConfig {
            exclude: Some(vec!["SECRET".into()]),
            ..EnvConfig::default()
        },
        layer: Some(layer.to_path_buf()),
        listen: ListenKind::Unix,
        linger: Duration::from_millis(50),
        link: LinkOptions::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_status_and_signal_death_propagate() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let layer = empty_layer(dir.path());
    let agent = FakeAgent::start(env_handler(POD_ENV)).await;
    let code = launch::exec(options(&agent, &layer, &["sh", "-c", "exit 7"]))
        .await
        .unwrap();
    assert_eq!(code, 7);
    let agent = FakeAgent::start(env_handler(POD_ENV)).await;
    let code = launch::exec(options(&agent, &layer, &["sh", "-c", "kill -TERM $$"]))
        .await
        .unwrap();
    assert_eq!(code, 128 + libc::SIGTERM);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_gets_filtered_pod_env_and_session_vars() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let layer = empty_layer(dir.path());
    let agent = FakeAgent::start(env_handler(POD_ENV)).await;
    let out = dir.path().join("env.txt");
    let script = format!(
        "printf '%s|%s|%s|%s|%s|%s' \"$DB_URL\" \"${{SECRET-unset}}\" \"$LD_PRELOAD\" \
         \"${{TETHER_SESSION_ADDR%%:*}}\" \"${{#TETHER_SESSION_TOKEN}}\" \"$PATH\" > {}",
        out.display()
    );
    let code = launch::exec(options(&agent, &layer, &["sh", "-c", &script]))
        .await
        .unwrap();
    assert_eq!(code, 0);
    let got = std::fs::read_to_string(&out).unwrap();
    let parts: Vec<&str> = got.split('|').collect();
    assert_eq!(parts[0], "postgres://db");
    assert_eq!(parts[1], "unset");
    assert!(
        parts[2].starts_with(layer.to_str().unwrap()),
        "{}",
        parts[2]
    );
    assert_eq!(parts[3], "unix");
    assert_eq!(parts[4], "64");
    assert_ne!(parts[5], "/pod/bin", "PATH must stay local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_binary_is_refused_before_launch() {
    let dir = tempfile::tempdir().unwrap();
    // A real static program if glibc's static libs are there, else a freestanding one.
    let bin = cc(
        dir.path(),
        &["-static"],
        "int main(void) { return 0; }\n",
        "static-libc",
    )
    .or_else(|| {
        cc(
            dir.path(),
            &["-static", "-nostdlib", "-fno-pie", "-no-pie"],
            "void _start(void) { __asm__ volatile(\"mov $60, %eax\\n xor %edi, %edi\\n syscall\"); }\n",
            "static-nostdlib",
        )
    })
    .expect("cannot build a static executable");
    // The agent is never contacted: nothing listens there.
    let bin_arg = bin.to_str().unwrap();
    let opts = options_at("127.0.0.1:1", "t", &empty_layer(dir.path()), &[bin_arg]);
    let err = launch::exec(opts).await.unwrap_err();
    assert!(
        matches!(&err, LaunchError::StaticBinary { path } if *path == bin),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&bin.display().to_string()), "{msg}");
    assert!(msg.contains("LD_PRELOAD"), "{msg}");
    assert!(
        msg.contains("help: run a dynamically linked build"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_agent_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let layer = empty_layer(dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut opts = options_at(&addr.to_string(), "t", &layer, &["true"]);
    let err = launch::exec(opts.clone()).await.unwrap_err();
    assert!(
        matches!(err, LaunchError::Agent(ConnectError::Unreachable { .. })),
        "{err}"
    );
    assert!(err.to_string().contains(&addr.to_string()));

    // A wrong token is refused with the agent's reason.
    let agent = FakeAgent::start(env_handler(POD_ENV)).await;
    opts.agent_addr = agent.addr.to_string();
    let err = launch::exec(opts).await.unwrap_err();
    assert!(
        err.to_string().contains("wrong or missing session token"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_version_mismatch_is_reported() {
    let agent = FakeAgent::start_with(
        env_handler(POD_ENV),
        common::AgentBehavior {
            version: 99,
            ..Default::default()
        },
    )
    .await;
    let err = tether::agent_link::AgentClient::connect(
        &agent.addr.to_string(),
        AGENT_TOKEN,
        LinkOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ConnectError::VersionMismatch { agent: 99, .. }),
        "{err}"
    );
}
