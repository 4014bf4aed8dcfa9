//! The test cluster seen through kube-rs, as tether's daemon sees a real cluster:
//! pod listing and readiness, Deployment pods on the test node, logs, WebSocket
//! port-forward through the API server (also after idling), Jobs, Pod Security
//! admission, RBAC, and image pull failures.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, ListParams, LogParams, PostParams};
use tether_cluster_tests::{Cluster, cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SAMPLES: &str = "tether-samples";

async fn poll<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < timeout {
        match f().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    match last {
        Some(e) => bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}"),
        None => bail!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// A fresh namespace for one test, deleted when dropped (in the background).
struct TestNs {
    name: String,
    kubectl: String,
    kubeconfig: String,
}

impl TestNs {
    async fn new(c: &Cluster, client: &kube::Client, prefix: &str) -> anyhow::Result<Self> {
        let name = format!("{prefix}-{}", std::process::id());
        let nss: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        nss.create(&PostParams::default(), &ns).await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        poll(
            "default service account",
            Duration::from_secs(30),
            || async { Ok(sas.get_opt("default").await?.is_some()) },
        )
        .await?;
        Ok(Self {
            name,
            kubectl: c.var("TETHER_KUBECTL")?.to_string(),
            kubeconfig: c.var("TETHER_ADMIN_KUBECONFIG")?.to_string(),
        })
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        // Not through kube::Client: its connection task lives on the test's runtime,
        // which is blocked here. kubectl needs no runtime; the namespace controller
        // finishes the deletion in the background.
        let _ = std::process::Command::new(&self.kubectl)
            .args([
                "--kubeconfig",
                &self.kubeconfig,
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
            ])
            .output();
    }
}

async fn setup() -> anyhow::Result<(Cluster, kube::Client)> {
    let c = tokio::task::spawn_blocking(cluster).await??;
    let client = c.admin().await?;
    Ok((c, client))
}

async fn ready_echo_pods(client: &kube::Client) -> anyhow::Result<Vec<Pod>> {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), SAMPLES);
    poll(
        "Deployment http-echo available",
        Duration::from_secs(120),
        || async {
            let d = deploys.get("http-echo").await?;
            Ok(d.status.and_then(|s| s.available_replicas) == Some(2))
        },
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), SAMPLES);
    let list = pods
        .list(&ListParams::default().labels("app=http-echo"))
        .await?;
    Ok(list.items)
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn deployment_pods_run_ready_on_the_test_node() -> anyhow::Result<()> {
    let (c, client) = setup().await?;
    let pods = ready_echo_pods(&client).await?;
    let running: Vec<_> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect();
    assert!(running.len() >= 2, "running pods: {running:?}");
    for p in running.iter().filter(|p| is_ready(p)) {
        let spec = p.spec.as_ref().context("spec")?;
        assert_eq!(spec.node_name.as_deref(), Some(c.var("TETHER_NODE_NAME")?));
        let st = p.status.as_ref().context("status")?;
        let ip = st.pod_ip.as_deref().context("pod ip")?;
        assert!(ip.starts_with("10.244.0."), "pod ip {ip}");
        let cs = &st
            .container_statuses
            .as_ref()
            .context("container statuses")?[0];
        assert!(cs.ready);
        let id = cs.container_id.as_deref().context("container id")?;
        let id = id
            .strip_prefix("tether-test://")
            .context("container id scheme")?;
        // The agent's lookup: container id -> state file -> host pid.
        let state = std::fs::read_to_string(format!(
            "{}/{id}.json",
            c.var("TETHER_CONTAINER_STATE_DIR")?
        ))?;
        let state: serde_json::Value = serde_json::from_str(&state)?;
        let pid = state["pid"].as_u64().context("pid")?;
        let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
        let environ = String::from_utf8_lossy(&environ);
        let name = p.metadata.name.as_deref().context("name")?;
        for want in [
            "GREETING=hello-from-configmap".to_string(),
            "API_TOKEN=s3cret-token".to_string(),
            format!("POD_NAME={name}"),
            format!("POD_IP={ip}"),
        ] {
            assert!(
                environ.split('\0').any(|kv| kv == want),
                "{want} missing from env of pid {pid}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn restricted_user_lists_pods_and_readiness_but_cannot_create_jobs() -> anyhow::Result<()> {
    let (c, admin) = setup().await?;
    ready_echo_pods(&admin).await?;
    let client = c.restricted().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), SAMPLES);
    let list = pods
        .list(&ListParams::default().labels("app=http-echo"))
        .await?;
    assert!(list.items.iter().filter(|p| is_ready(p)).count() >= 2);

    let jobs: Api<Job> = Api::namespaced(client, SAMPLES);
    let job: Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "nope"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1.36", "command": ["true"]}]}}}
    }))?;
    match jobs.create(&PostParams::default(), &job).await {
        Err(kube::Error::Api(s)) if s.code == 403 && s.reason == "Forbidden" => {
            assert!(s.message.contains("tether-dev"), "{}", s.message);
            Ok(())
        }
        other => bail!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn logs_of_a_running_container() -> anyhow::Result<()> {
    let (_c, client) = setup().await?;
    let pods = ready_echo_pods(&client).await?;
    let name = pods[0].metadata.name.clone().context("name")?;
    let api: Api<Pod> = Api::namespaced(client, SAMPLES);
    let logs = api.logs(&name, &LogParams::default()).await?;
    assert!(
        logs.contains(&format!("http-echo {name} listening")),
        "logs: {logs}"
    );
    Ok(())
}

async fn http_get_over(stream: &mut tokio::io::DuplexStream, path: &str) -> anyhow::Result<String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: pod\r\nConnection: keep-alive\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    // Read headers, then Content-Length bytes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await??;
        if n == 0 {
            bail!(
                "stream closed after {} bytes: {}",
                buf.len(),
                String::from_utf8_lossy(&buf)
            );
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .context("no content-length")?;
            if buf.len() >= end + 4 + len {
                return Ok(text);
            }
        }
    }
}

#[tokio::test]
async fn websocket_port_forward_reaches_the_pod_and_survives_idle() -> anyhow::Result<()> {
    let (_c, client) = setup().await?;
    let pods = ready_echo_pods(&client).await?;
    let pod = pods.iter().find(|p| is_ready(p)).context("a ready pod")?;
    let name = pod.metadata.name.clone().context("name")?;
    let api: Api<Pod> = Api::namespaced(client, SAMPLES);
    let mut pf = api.portforward(&name, &[8080]).await?;
    let mut stream = pf.take_stream(8080).context("stream for 8080")?;
    let first = http_get_over(&mut stream, "/first").await?;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        first.contains(&name),
        "answer does not name {name}: {first}"
    );
    // VK's stock stream idle timeout is 30 s; the test node's is 4 h, as a kubelet's.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let second = http_get_over(&mut stream, "/after-idle").await?;
    assert!(second.contains(&name), "{second}");
    drop(stream);
    pf.abort();
    Ok(())
}

#[tokio::test]
async fn job_runs_to_completion() -> anyhow::Result<()> {
    let (c, client) = setup().await?;
    let ns = TestNs::new(&c, &client, "rs-job").await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let job: Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hello"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1.36",
                "command": ["sh", "-c", "echo job says hi; exit 0"]}]}}}
    }))?;
    jobs.create(&PostParams::default(), &job).await?;
    poll("Job succeeded", Duration::from_secs(90), || async {
        Ok(jobs.get("hello").await?.status.and_then(|s| s.succeeded) == Some(1))
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    let list = pods
        .list(&ListParams::default().labels("job-name=hello"))
        .await?;
    let p = &list.items[0];
    let st = p.status.as_ref().context("status")?;
    assert_eq!(st.phase.as_deref(), Some("Succeeded"));
    let term = st.container_statuses.as_ref().context("statuses")?[0]
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .context("terminated")?
        .clone();
    assert_eq!(term.exit_code, 0);
    assert_eq!(term.reason.as_deref(), Some("Completed"));
    let logs = pods
        .logs(
            p.metadata.name.as_deref().context("name")?,
            &LogParams::default(),
        )
        .await?;
    assert_eq!(logs, "job says hi\n");
    Ok(())
}

#[tokio::test]
async fn failing_container_reports_exit_code_and_restarts() -> anyhow::Result<()> {
    let (c, client) = setup().await?;
    let ns = TestNs::new(&c, &client, "rs-crash").await?;
    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "crash"},
        "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "busybox:1.36",
            "command": ["sh", "-c", "echo run; exit 3"]}]}
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    poll(
        "restart with exit code 3",
        Duration::from_secs(60),
        || async {
            let p = pods.get("crash").await?;
            let cs = p
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default();
            Ok(cs.first().is_some_and(|c| {
                c.restart_count >= 1
                    && c.last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .is_some_and(|t| t.exit_code == 3)
            }))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn privileged_pod_in_restricted_namespace_is_refused() -> anyhow::Result<()> {
    let (c, client) = setup().await?;
    let pods: Api<Pod> = Api::namespaced(client, c.var("TETHER_RESTRICTED_NAMESPACE")?);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "priv"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["true"],
            "securityContext": {"privileged": true}}]}
    }))?;
    match pods.create(&PostParams::default(), &pod).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {
            assert!(
                s.message
                    .contains("violates PodSecurity \"restricted:latest\""),
                "{}",
                s.message
            );
            assert!(s.message.contains("privileged"), "{}", s.message);
            Ok(())
        }
        other => bail!("expected a PodSecurity refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_image_ends_in_image_pull_backoff() -> anyhow::Result<()> {
    let (c, client) = setup().await?;
    let ns = TestNs::new(&c, &client, "rs-image").await?;
    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ghost"},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/ghost:1"}]}
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    poll("ImagePullBackOff", Duration::from_secs(60), || async {
        let p = pods.get("ghost").await?;
        let st = p.status.unwrap_or_default();
        let reason = st
            .container_statuses
            .unwrap_or_default()
            .first()
            .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
        Ok(reason.as_deref() == Some("ImagePullBackOff") && st.phase.as_deref() == Some("Pending"))
    })
    .await
}
