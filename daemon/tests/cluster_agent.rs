//! The agent launcher against the real test cluster (tests/cluster): `session.start` without an
//! `agent` starts the agent Job on the target's node through the real API server, connects
//! through a real port-forward, and reports each start failure by its cause.
//!
//! Needs root (the cluster brings itself up with tests/cluster/up, or reuses the running one)
//! and the workspace's `tether-agent` built (the test node maps the agent image to it).

mod support;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{Api, api::ListParams};
use serde_json::{Value, json};
use support::cluster::{
    Cluster, SAMPLES, cluster, jobs_labelled, repo_root, secrets_labelled, unique, wait_jobs_gone,
};
use support::{artifact, layer_stub, rpc};
use tether::server::{DaemonState, rpc_module};

/// session.start params for `target` in the samples namespace with `agent` config on top.
fn params(dir: &Path, target: &str, mut agent: Value) -> Value {
    // No requests/limits: the test node reports every pod as BestEffort, and the API server
    // refuses a status whose QoS class differs from the spec's (Burstable with tether's defaults).
    if agent.get("resources").is_none() {
        agent["resources"] = json!({});
    }
    let config = json!({"agent": agent}).to_string();
    json!({
        "config": {"text": config, "cwd": dir},
        "target": target,
        "namespace": SAMPLES,
        "layer": layer_stub(dir),
        "linger_ms": 200,
    })
}

fn state(kubeconfig: PathBuf) -> Arc<DaemonState> {
    support::state(vec![kubeconfig])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launched_agent_serves_the_pod_env_is_reused_and_removed() {
    let c = cluster();
    let admin = c.admin().await;
    let m = rpc_module(state(c.var("TETHER_ADMIN_KUBECONFIG")));
    let dir = tempfile::tempdir().unwrap();
    let case = unique("happy");
    let p = params(
        dir.path(),
        "deployment/http-echo",
        json!({"labels": {"tether.test/case": case}}),
    );

    let t = Instant::now();
    let first = rpc(&m, "session.start", p.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cold = t.elapsed();
    // The pod's env, resolved by the node from a configMapKeyRef, read by the agent.
    assert_eq!(first["env"]["GREETING"], "hello-from-configmap", "{first}");
    assert_eq!(first["env"]["API_TOKEN"], "s3cret-token");
    let jobs = jobs_labelled(&admin, SAMPLES, &case).await;
    assert_eq!(jobs.len(), 1, "one agent Job: {jobs:?}");

    // A debug restart: a second session on the same target reuses the running agent.
    let t = Instant::now();
    let second = rpc(&m, "session.start", p.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let warm = t.elapsed();
    assert_eq!(second["env"]["GREETING"], "hello-from-configmap");
    assert_eq!(
        jobs_labelled(&admin, SAMPLES, &case).await,
        jobs,
        "the same Job"
    );
    assert!(warm < cold, "reuse is faster: warm {warm:?} cold {cold:?}");
    // A few more warm starts for a median (reported, not asserted: a benchmark, not a timed test).
    let mut warm_all = vec![warm];
    let mut more = Vec::new();
    for _ in 0..9 {
        // A debug restart is not back to back: the spare connection is ready by then.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        let s = rpc(&m, "session.start", p.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        warm_all.push(t.elapsed());
        more.push(s["id"].clone());
    }
    warm_all.sort();
    eprintln!(
        "session.start through the launcher: cold {cold:?}, warm p50 {:?} (min {:?}, max {:?})",
        warm_all[warm_all.len() / 2],
        warm_all[0],
        warm_all[warm_all.len() - 1]
    );
    for id in more {
        rpc(&m, "session.stop", json!({"id": id})).await.unwrap();
    }
    assert_eq!(
        jobs_labelled(&admin, SAMPLES, &case).await,
        jobs,
        "still the same Job"
    );

    // Stopping one session keeps the agent for the other; stopping both removes it.
    rpc(&m, "session.stop", json!({"id": first["id"]}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(jobs_labelled(&admin, SAMPLES, &case).await, jobs);
    rpc(&m, "session.stop", json!({"id": second["id"]}))
        .await
        .unwrap();
    wait_jobs_gone(&admin, SAMPLES, &case).await;
}

/// Starts a session expected to fail and returns the error message; checks nothing is left.
async fn start_fails(
    kubeconfig: PathBuf,
    agent_ns: &str,
    agent: Value,
    case: &str,
) -> (String, String, String) {
    let c = cluster();
    let admin = c.admin().await;
    let m = rpc_module(state(kubeconfig));
    let dir = tempfile::tempdir().unwrap();
    let mut agent = agent;
    agent["labels"] = json!({"tether.test/case": case});
    agent["startup_timeout"] = json!(60);
    let t = Instant::now();
    let e = rpc(&m, "session.start", params(dir.path(), "pod/multi", agent))
        .await
        .expect_err("the start must fail");
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(40),
        "reported early, not at the timeout: {took:?}: {e}"
    );
    wait_jobs_gone(&admin, agent_ns, case).await;
    let kind = support::error_kind(&e);
    (
        kind,
        e["message"].as_str().unwrap().to_owned(),
        e["data"]["hint"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agent_image_is_an_image_pull_error() {
    let c = cluster();
    let (kind, msg, hint) = start_fails(
        c.var("TETHER_ADMIN_KUBECONFIG"),
        SAMPLES,
        json!({"image": "registry.invalid/nobody/no-such-image:0"}),
        &unique("pull"),
    )
    .await;
    assert_eq!(kind, "agent_unavailable");
    assert!(
        msg.contains("[image_pull]") && msg.contains("registry.invalid"),
        "{msg}"
    );
    assert!(hint.contains("agent.image"), "{hint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_namespace_is_an_admission_error() {
    let c = cluster();
    let ns = c.env["TETHER_RESTRICTED_NAMESPACE"].clone();
    let (kind, msg, hint) = start_fails(
        c.var("TETHER_ADMIN_KUBECONFIG"),
        &ns,
        json!({"namespace": ns}),
        &unique("psa"),
    )
    .await;
    assert_eq!(kind, "agent_unavailable");
    assert!(
        msg.contains("[admission]") && msg.contains("violates PodSecurity"),
        "{msg}"
    );
    assert!(hint.contains("privileged"), "{hint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_no_node_matches_is_unschedulable() {
    let c = cluster();
    let (kind, msg, hint) = start_fails(
        c.var("TETHER_ADMIN_KUBECONFIG"),
        SAMPLES,
        json!({"node_selector": {"tether.test/no-such-label": "x"}}),
        &unique("sched"),
    )
    .await;
    assert_eq!(kind, "agent_unavailable");
    assert!(msg.contains("[unschedulable]"), "{msg}");
    assert!(hint.contains("node_selector"), "{hint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_user_is_rbac_forbidden_naming_verb_and_resource() {
    let c = cluster();
    let (kind, msg, hint) = start_fails(
        c.var("TETHER_RESTRICTED_KUBECONFIG"),
        SAMPLES,
        json!({}),
        &unique("rbac"),
    )
    .await;
    assert_eq!(kind, "kube_forbidden");
    assert!(
        msg.contains("[forbidden]") && msg.contains("not allowed to create"),
        "{msg}"
    );
    assert!(hint.contains("kubectl auth can-i create"), "{hint}");
}

/// Runs the test cluster's kubectl as admin.
fn kubectl(c: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new(&c.env["TETHER_KUBECTL"]);
    cmd.arg("--kubeconfig")
        .arg(&c.env["TETHER_ADMIN_KUBECONFIG"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Deletes the test user's objects even when the test fails.
struct RbacUser<'a> {
    c: &'a Cluster,
    name: String,
}

impl Drop for RbacUser<'_> {
    fn drop(&mut self) {
        for kind in ["rolebinding", "role", "serviceaccount"] {
            let _ = std::process::Command::new(&self.c.env["TETHER_KUBECTL"])
                .args(["--kubeconfig", &self.c.env["TETHER_ADMIN_KUBECONFIG"]])
                .args([
                    "-n",
                    SAMPLES,
                    "delete",
                    kind,
                    &self.name,
                    "--ignore-not-found",
                ])
                .output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_bound_to_the_documented_role_runs_a_session() {
    let c = cluster();
    let admin = c.admin().await;
    let doc = std::fs::read_to_string(repo_root().join("docs/RBAC.md")).unwrap();
    // The first yaml block of docs/RBAC.md is the Role.
    let role = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block in docs/RBAC.md");
    assert!(role.contains("kind: Role\n"), "{role}");
    let name = unique("rbac-user");
    let user = RbacUser {
        c: &c,
        name: name.clone(),
    };
    let role = role.replace("name: tether-user\n", &format!("name: {name}\n"));
    kubectl(&c, &["-n", SAMPLES, "apply", "-f", "-"], Some(&role));
    kubectl(
        &c,
        &["-n", SAMPLES, "create", "serviceaccount", &name],
        None,
    );
    let sa = format!("{SAMPLES}:{name}");
    kubectl(
        &c,
        &[
            "-n",
            SAMPLES,
            "create",
            "rolebinding",
            &name,
            "--role",
            &name,
            "--serviceaccount",
            &sa,
        ],
        None,
    );
    let token = kubectl(
        &c,
        &["-n", SAMPLES, "create", "token", &name, "--duration", "10m"],
        None,
    );

    // A kubeconfig for that user alone: the cluster's server and CA, the token.
    let admin_kc = kube::config::Kubeconfig::read_from(c.var("TETHER_ADMIN_KUBECONFIG")).unwrap();
    let cluster_entry = admin_kc.clusters[0].cluster.clone().unwrap();
    let ca = cluster_entry.certificate_authority_data.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("user.kubeconfig");
    std::fs::write(
        &kubeconfig,
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": cluster_entry.server, "certificate-authority-data": ca}}],
            "users": [{"name": name, "user": {"token": token.trim()}}],
            "contexts": [{"name": "user", "context": {"cluster": "c", "user": name, "namespace": SAMPLES}}],
            "current-context": "user",
        })
        .to_string(),
    )
    .unwrap();

    let m = rpc_module(state(kubeconfig));
    let case = unique("rbac-ok");
    let p = params(
        dir.path(),
        "deployment/http-echo",
        json!({"labels": {"tether.test/case": case}}),
    );
    let started = rpc(&m, "session.start", p)
        .await
        .unwrap_or_else(|e| panic!("a session with exactly the documented Role: {e}"));
    assert_eq!(started["env"]["GREETING"], "hello-from-configmap");
    assert_eq!(jobs_labelled(&admin, SAMPLES, &case).await.len(), 1);
    rpc(&m, "session.stop", json!({"id": started["id"]}))
        .await
        .unwrap();
    // Removed with the user's own rights (delete on jobs and secrets).
    wait_jobs_gone(&admin, SAMPLES, &case).await;
    drop(user);
}

/// Runs the real `tether` CLI as a user whose home is `home`, against the test cluster, with the
/// freshly built layer.
fn tether_cli<'a>(c: &'a Cluster, home: &'a Path) -> impl Fn(&[&str]) -> std::process::Output + 'a {
    move |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .current_dir(home)
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env("KUBECONFIG", c.var("TETHER_ADMIN_KUBECONFIG"))
            .env("TETHER_LAYER_PATH", artifact("libtether_layer.so"))
            .args(args)
            .output()
            .unwrap()
    }
}

/// Stops the test's own daemon even when an assertion fails.
struct StopDaemon<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);

impl Drop for StopDaemon<'_> {
    fn drop(&mut self) {
        let _ = (self.0)(&["daemon", "stop"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_exec_target_runs_a_program_in_the_pod_through_the_daemon() {
    let c = cluster();
    let admin = c.admin().await;
    let home = tempfile::tempdir().unwrap();
    let case = unique("exec");
    let config = home.path().join("tether.json");
    std::fs::write(
        &config,
        json!({"agent": {"resources": {}, "labels": {"tether.test/case": case}}}).to_string(),
    )
    .unwrap();
    let tether = tether_cli(&c, home.path());
    let _stop = StopDaemon(&tether);
    let cfg = config.to_str().unwrap();
    let script = "cat /etc/hostname";
    let out = tether(&[
        "exec",
        "-f",
        cfg,
        "--target",
        "pod/multi",
        "-n",
        SAMPLES,
        "--",
        "sh",
        "-c",
        script,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tether exec failed: {stderr}");
    // The pod's own /etc/hostname, read through the layer and the agent.
    assert_eq!(stdout.lines().next(), Some("multi"), "{stdout}\n{stderr}");
    // Progress went to stderr, step by step.
    assert!(stderr.contains("creating agent Job"), "{stderr}");
    // The session was stopped, and with it the agent's Job.
    wait_jobs_gone(&admin, SAMPLES, &case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_shutdown_removes_the_agent_job() {
    let c = cluster();
    let admin = c.admin().await;
    let dir = tempfile::tempdir().unwrap();
    let paths = tether::discovery::Paths::in_dir(dir.path());
    let options = tether::server::DaemonOptions {
        kubeconfig: tether::kube::KubeconfigSource::Files(vec![c.var("TETHER_ADMIN_KUBECONFIG")]),
        ..Default::default()
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let p2 = paths.clone();
    let daemon = tokio::spawn(async move {
        tether::server::run_daemon(&p2, options, std::future::pending(), |i| {
            ready_tx.send(i.clone()).unwrap()
        })
        .await
        .unwrap()
    });
    let info = ready_rx.await.unwrap();
    let client = tether::discovery::connect(&info).await.unwrap();
    let case = unique("shutdown");
    let mut p = params(
        dir.path(),
        "pod/multi",
        json!({"labels": {"tether.test/case": case}}),
    );
    p["linger_ms"] = json!(60_000);
    let started: Value = tether::discovery::call(&client, "session.start", p)
        .await
        .unwrap();
    assert!(started["id"].is_string());
    assert_eq!(jobs_labelled(&admin, SAMPLES, &case).await.len(), 1);
    let _: Value = tether::discovery::call(&client, "daemon.shutdown", json!({}))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), daemon)
        .await
        .expect("the daemon exits")
        .unwrap();
    // Deleted before the daemon exited (foreground: the Job goes once its pod is gone).
    assert!(
        jobs_labelled(&admin, SAMPLES, &case).await.is_empty(),
        "the Job is being deleted when the daemon has exited"
    );
    assert_eq!(secrets_labelled(&admin, SAMPLES, &case).await, 0);
    wait_jobs_gone(&admin, SAMPLES, &case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agent_ends_its_session_and_the_next_start_launches_a_new_one() {
    let c = cluster();
    let admin = c.admin().await;
    let m = rpc_module(state(c.var("TETHER_ADMIN_KUBECONFIG")));
    let dir = tempfile::tempdir().unwrap();
    let case = unique("lost");
    let mut p = params(
        dir.path(),
        "pod/multi",
        json!({"labels": {"tether.test/case": case}}),
    );
    p["linger_ms"] = json!(60_000);
    let first = rpc(&m, "session.start", p.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let jobs = jobs_labelled(&admin, SAMPLES, &case).await;
    assert_eq!(jobs.len(), 1);
    // Someone deletes the agent's Job (and so its pod): the link drops.
    let api: Api<Job> = Api::namespaced(admin.clone(), SAMPLES);
    let dp = kube::api::DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Foreground),
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    api.delete(&jobs[0], &dp).await.unwrap();
    let t = Instant::now();
    loop {
        let l = rpc(&m, "session.list", json!({})).await.unwrap();
        let alive = l["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == first["id"] && s["state"] != "ended");
        if !alive {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the session outlived its agent: {l}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next start does not reuse the dead agent: a new Job serves it.
    let second = rpc(&m, "session.start", p)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let now = jobs_labelled(&admin, SAMPLES, &case).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, jobs, "a new agent Job");
    rpc(&m, "session.stop", json!({"id": second["id"]}))
        .await
        .unwrap();
    wait_jobs_gone(&admin, SAMPLES, &case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_container_target_and_unknown_targets() {
    let c = cluster();
    let admin = c.admin().await;
    let m = rpc_module(state(c.var("TETHER_ADMIN_KUBECONFIG")));
    let dir = tempfile::tempdir().unwrap();
    let case = unique("sts");
    let agent = json!({"labels": {"tether.test/case": case}});
    let started = rpc(
        &m,
        "session.start",
        params(dir.path(), "statefulset/echo/container/udp", agent.clone()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The agent attached to the udp container of the StatefulSet's pod.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), SAMPLES);
    let pod = pods.get("echo-0").await.unwrap();
    let udp_id = pod
        .status
        .unwrap()
        .container_statuses
        .unwrap()
        .into_iter()
        .find(|c| c.name == "udp")
        .and_then(|c| c.container_id)
        .unwrap();
    let running = state_jobs_args(&admin, &case).await;
    assert!(running.contains(&udp_id), "{running} should name {udp_id}");
    rpc(&m, "session.stop", json!({"id": started["id"]}))
        .await
        .unwrap();
    wait_jobs_gone(&admin, SAMPLES, &case).await;

    // Unknown targets and containers fail before any Job exists.
    let e = rpc(
        &m,
        "session.start",
        params(dir.path(), "deployment/nope", agent.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(support::error_kind(&e), "kube_not_found", "{e}");
    let e = rpc(
        &m,
        "session.start",
        params(dir.path(), "pod/multi/container/nope", agent),
    )
    .await
    .unwrap_err();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("no container `nope` (containers: web, sidecar)"),
        "{e}"
    );
    assert!(jobs_labelled(&admin, SAMPLES, &case).await.is_empty());
}

/// The args of the case's agent Job, as one string.
async fn state_jobs_args(client: &kube::Client, case: &str) -> String {
    let jobs: Api<Job> = Api::namespaced(client.clone(), SAMPLES);
    let list = jobs
        .list(&ListParams::default().labels(&format!("tether.test/case={case}")))
        .await
        .unwrap();
    serde_json::to_string(
        &list.items[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .args,
    )
    .unwrap()
}

/// What each program prints, one `key=value` per line: the pod's env var, its /etc/hostname, the
/// address of a Service name that only the pod's DNS knows, and the instance that answered an
/// HTTP GET to that cluster-only Service.
const C_PROGRAM: &str = r#"
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
int main(void) {
    const char *g = getenv("GREETING");
    printf("greeting=%s\n", g ? g : "");
    char host[256] = {0};
    FILE *f = fopen("/etc/hostname", "r");
    if (f && fgets(host, sizeof host, f)) host[strcspn(host, "\n")] = 0;
    if (f) fclose(f);
    printf("hostname=%s\n", host);
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo("http-echo", "80", &hints, &res) != 0) { printf("resolved=none\n"); return 1; }
    char ip[64];
    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof ip);
    printf("resolved=%s\n", ip);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, res->ai_addr, res->ai_addrlen) != 0) { printf("answer=none\n"); return 1; }
    const char *req = "GET /from-c HTTP/1.0\r\nHost: http-echo\r\n\r\n";
    write(s, req, strlen(req));
    char buf[8192]; size_t n = 0; ssize_t r;
    while (n < sizeof buf - 1 && (r = read(s, buf + n, sizeof buf - 1 - n)) > 0) n += r;
    buf[n] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    printf("answer=%s\n", body ? body + 4 : "");
    return 0;
}
"#;

const PY_PROGRAM: &str = r#"
import os, socket, urllib.request
print("greeting=" + os.environ.get("GREETING", ""))
print("hostname=" + open("/etc/hostname").read().strip())
print("resolved=" + socket.getaddrinfo("http-echo", 80, socket.AF_INET)[0][4][0])
print("answer=" + urllib.request.urlopen("http://http-echo/from-python", timeout=20).read().decode())
"#;

const NODE_PROGRAM: &str = r#"
const fs = require("fs"), dns = require("dns"), http = require("http");
console.log("greeting=" + (process.env.GREETING || ""));
console.log("hostname=" + fs.readFileSync("/etc/hostname", "utf8").trim());
dns.lookup("http-echo", { family: 4 }, (err, addr) => {
  if (err) { console.log("resolved=none"); process.exit(1); }
  console.log("resolved=" + addr);
  http.get("http://http-echo/from-node", (res) => {
    let body = "";
    res.on("data", (d) => (body += d));
    res.on("end", () => console.log("answer=" + body));
  }).on("error", (e) => { console.log("answer=none " + e); process.exit(1); });
});
"#;

fn field<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no `{key}=` line in:\n{stdout}"))
}

/// The Layer issue's programs, C, Python and Node, through the Kubernetes path: the daemon
/// launches the agent next to a Deployment's pod and each program sees that pod's env, files,
/// DNS and cluster-only Service, none of which the host can reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_python_and_node_programs_run_in_a_deployment_pod_through_kubernetes() {
    let c = cluster();
    let admin = c.admin().await;
    let home = tempfile::tempdir().unwrap();
    let case = unique("programs");
    let config = home.path().join("tether.json");
    std::fs::write(
        &config,
        json!({"agent": {"resources": {}, "labels": {"tether.test/case": case}}}).to_string(),
    )
    .unwrap();
    let tether = tether_cli(&c, home.path());
    let _stop = StopDaemon(&tether);

    // The host itself cannot resolve the Service name: only the pod's DNS knows it.
    assert!(
        std::net::ToSocketAddrs::to_socket_addrs(&("http-echo", 80)).is_err(),
        "the host resolves http-echo; the test would prove nothing"
    );
    let c_src = home.path().join("probe.c");
    std::fs::write(&c_src, C_PROGRAM).unwrap();
    let c_bin = home.path().join("probe");
    let cc = std::process::Command::new("cc")
        .arg(&c_src)
        .arg("-o")
        .arg(&c_bin)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    std::fs::write(home.path().join("probe.py"), PY_PROGRAM).unwrap();
    std::fs::write(home.path().join("probe.js"), NODE_PROGRAM).unwrap();

    let cfg = config.to_str().unwrap();
    let programs: [(&str, Vec<&str>); 3] = [
        ("c", vec![c_bin.to_str().unwrap()]),
        ("python", vec!["python3", "probe.py"]),
        ("node", vec!["node", "probe.js"]),
    ];
    let mut hostnames = Vec::new();
    for (name, cmd) in &programs {
        let mut args = vec![
            "exec",
            "-f",
            cfg,
            "--target",
            "deployment/http-echo",
            "-n",
            SAMPLES,
            "--",
        ];
        args.extend(cmd.iter().copied());
        let out = tether(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
        assert_eq!(field(&stdout, "greeting"), "hello-from-configmap", "{name}");
        let hostname = field(&stdout, "hostname");
        assert!(hostname.starts_with("http-echo-"), "{name}: {stdout}");
        let ip: std::net::Ipv4Addr = field(&stdout, "resolved").parse().unwrap();
        assert!(ip.is_private(), "{name}: a cluster address, got {ip}");
        // The echo names the pod that answered and the path the program asked for.
        let answer = field(&stdout, "answer");
        assert!(answer.contains("http-echo-"), "{name}: {answer}");
        assert!(
            answer.contains(&format!("/from-{name}")),
            "{name}: {answer}"
        );
        hostnames.push(hostname.to_string());
    }
    // Every program ran against the same pod of the Deployment.
    assert!(hostnames.windows(2).all(|w| w[0] == w[1]), "{hostnames:?}");
    wait_jobs_gone(&admin, SAMPLES, &case).await;
}
