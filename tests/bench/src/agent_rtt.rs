//! The agent link's round trip: `Ping`/`Pong` with the very agent the sessions use, over a
//! kube-rs WebSocket port-forward through the API server, the same way the daemon reaches it.
//! The agent serves several connections, so this one does not disturb the sessions.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{SinkExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use tether::kube::agent::spec::{AGENT_PORT, TOKEN_KEY};
use tether_bench::stats::Samples;
use tether_protocol::PROTOCOL_VERSION;
use tether_protocol::agent::{AgentMessage, ClientHello, ClientMessage};
use tether_protocol::codec::FrameCodec;
use tokio_util::codec::{FramedRead, FramedWrite};

/// How long one exchange may take before the measurement fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Pings the agent whose Job carries `label` (`key=value`) in `namespace` `iters` times.
pub async fn measure(
    client: &kube::Client,
    namespace: &str,
    label: &str,
    iters: usize,
) -> anyhow::Result<Samples> {
    let (pod, token) = find_agent(client, namespace, label).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut pf = pods
        .portforward(&pod, &[AGENT_PORT])
        .await
        .with_context(|| format!("agent rtt: port-forward to pod {pod}"))?;
    let stream = pf
        .take_stream(AGENT_PORT)
        .context("agent rtt: the port-forward has no stream")?;
    let (r, w) = tokio::io::split(stream);
    let mut rd = FramedRead::new(r, FrameCodec::<ClientMessage, AgentMessage>::new());
    let mut wr = FramedWrite::new(w, FrameCodec::<ClientMessage, AgentMessage>::new());
    wr.send(ClientMessage::Hello(ClientHello {
        protocol_version: PROTOCOL_VERSION,
        token,
        client: "tether-bench".into(),
        session_id: "bench-rtt".into(),
    }))
    .await
    .context("agent rtt: sending hello")?;
    match next(&mut rd).await? {
        AgentMessage::Hello(_) => {}
        other => anyhow::bail!("agent rtt: hello answered with {other:?}"),
    }
    let mut samples = Vec::with_capacity(iters);
    for n in 0..(iters as u64 + 5) {
        let t = Instant::now();
        wr.send(ClientMessage::Ping(n))
            .await
            .context("agent rtt: sending ping")?;
        loop {
            if let AgentMessage::Pong(m) = next(&mut rd).await?
                && m == n
            {
                break;
            }
        }
        if n >= 5 {
            samples.push(t.elapsed()); // the first few warm the path up
        }
    }
    let _ = wr.send(ClientMessage::Goodbye).await;
    drop((rd, wr));
    pf.abort();
    Samples::new(samples).context("agent rtt: no samples")
}

async fn next<R>(
    rd: &mut FramedRead<R, FrameCodec<ClientMessage, AgentMessage>>,
) -> anyhow::Result<AgentMessage>
where
    R: tokio::io::AsyncRead + Unpin,
{
    tokio::time::timeout(STEP_TIMEOUT, rd.next())
        .await
        .context("agent rtt: no answer in 15 s")?
        .context("agent rtt: the agent closed the connection")?
        .context("agent rtt: bad frame")
}

/// The running agent pod of the Job labelled `label`, and its token (from the Secret of the
/// same name, which the launcher labels the same way).
async fn find_agent(
    client: &kube::Client,
    namespace: &str,
    label: &str,
) -> anyhow::Result<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().labels(label);
    let pod = pods
        .list(&lp)
        .await
        .context("agent rtt: listing agent pods")?
        .items
        .into_iter()
        .find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .with_context(|| format!("agent rtt: no running agent pod labelled {label}"))?;
    let name = pod.metadata.name.context("agent rtt: pod without name")?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .list(&lp)
        .await
        .context("agent rtt: listing agent secrets")?
        .items
        .into_iter()
        .next()
        .with_context(|| format!("agent rtt: no agent Secret labelled {label}"))?;
    let token = secret
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .context("agent rtt: the agent Secret has no token")?;
    let token = String::from_utf8(token.0.clone()).context("agent rtt: token is not UTF-8")?;
    Ok((name, token))
}
