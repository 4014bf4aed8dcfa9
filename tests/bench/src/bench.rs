//! The run: set-up (cluster, bench pod, private daemon, a session that keeps the agent warm,
//! the peer's port-forward) and one function per row of DESIGN section 10.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tether::server::api::SessionEvent;
use tether_bench::probe::{BANNER, Op, ProbeOutput};
use tether_bench::stats::{Samples, fmt_duration, mb_per_s, median};

use crate::daemon::{Daemon, kill_group, rss_bytes};
use crate::peer::{Kubectl, PortForward};
use crate::pod::{self, BenchPod};
use crate::report::{Measured, Row};
use crate::runner::{Prober, SessionEnv, Side, sibling};

/// Label put on the agent's Job, pod and Secret through `agent.labels`, to find them.
const RUN_LABEL: &str = "tether.bench/run";
/// Read size of every file and socket read (coreutils `cat` uses 128 KiB).
const READ_BUF: usize = 128 * 1024;
/// Pause before each warm start: a debug restart is not back to back, and the launcher refills
/// its spare connection in the meantime.
const RESTART_PAUSE: Duration = Duration::from_millis(200);
/// The local file of the hooked-but-local rows (kept local by the layer's defaults).
const LOCAL_FILE: &str = "/usr/lib/os-release";

/// Iteration counts and sizes.
#[derive(Debug, Clone)]
pub struct Params {
    /// `--quick`.
    pub quick: bool,
    start_iters: usize,
    restart_iters: usize,
    peer_starts: usize,
    rtt_iters: usize,
    small_iters: u64,
    file_size: u64,
    bulk_bytes: u64,
    rounds: usize,
    connect_iters: u64,
    http_iters: u64,
    local_iters: u64,
    local_rounds: usize,
}

impl Params {
    /// The figures to quote.
    pub fn full() -> Self {
        Params {
            quick: false,
            start_iters: 20,
            restart_iters: 10,
            peer_starts: 5,
            rtt_iters: 200,
            small_iters: 200,
            file_size: 64 << 20,
            bulk_bytes: 128 << 20,
            rounds: 3,
            connect_iters: 100,
            http_iters: 100,
            local_iters: 200_000,
            local_rounds: 5,
        }
    }

    /// A smoke run: every row measured once, with little data.
    pub fn quick() -> Self {
        Params {
            quick: true,
            start_iters: 3,
            restart_iters: 3,
            peer_starts: 2,
            rtt_iters: 20,
            small_iters: 20,
            file_size: 4 << 20,
            bulk_bytes: 8 << 20,
            rounds: 1,
            connect_iters: 10,
            http_iters: 10,
            local_iters: 20_000,
            local_rounds: 2,
        }
    }
}

/// The rows, in the order of DESIGN section 10: (name, target).
fn row_names(p: &Params) -> Vec<(String, &'static str)> {
    vec![
        (
            "session.start, warm daemon and agent, to env returned".into(),
            "p50 under 50 ms",
        ),
        (
            "debug restart (same target) to layer connected".into(),
            "under 200 ms (p50)",
        ),
        (
            "remote 4 KiB file open+read+close".into(),
            "p50 under 2 round trips of the agent link",
        ),
        (
            format!("remote sequential read, {} MiB file", p.file_size >> 20),
            "at least 80% of peer throughput",
        ),
        (
            "outgoing TCP connect to first byte".into(),
            "p50 within 0.5 ms of peer",
        ),
        (
            format!(
                "outgoing TCP bulk transfer ({} MiB download)",
                p.bulk_bytes >> 20
            ),
            "at least 80% of peer throughput",
        ),
        (
            format!(
                "outgoing TCP bulk transfer ({} MiB upload)",
                p.bulk_bytes >> 20
            ),
            "at least 80% of peer throughput",
        ),
        (
            "stolen HTTP request, added latency over direct".into(),
            "p50 under 1 ms on top of the agent link's round trip",
        ),
        (
            "hooked-but-local stat".into(),
            "under 10% slower than without the layer",
        ),
        (
            "hooked-but-local open+read(4 KiB)+close".into(),
            "under 10% slower than without the layer",
        ),
        ("daemon idle memory".into(), "under 30 MB RSS (MiB)"),
    ]
}

/// Runs every row; returns the report header and the rows.
pub async fn run(p: Params) -> (String, Vec<Row>) {
    let names = row_names(&p);
    let mut header = format!(
        "tether-bench{}: DESIGN section 10, measured side by side with direct and peer baselines",
        if p.quick {
            " --quick (smoke run: few iterations, small files; do not quote these figures)"
        } else {
            ""
        }
    );
    let bench = match Bench::setup(p).await {
        Ok(b) => b,
        Err(e) => {
            let e = e.context("set-up failed, nothing could be measured");
            let rows = names
                .into_iter()
                .map(|(n, t)| Row::failed(n, t, &e))
                .collect();
            return (header, rows);
        }
    };
    header.push_str(&bench.describe());
    let rows = bench.rows(names).await;
    (header, rows)
}

/// Everything the rows share.
struct Bench {
    p: Params,
    daemon: Daemon,
    prober: Prober,
    kubectl: Kubectl,
    admin: kube::Client,
    pod: BenchPod,
    layer: PathBuf,
    testsrv: PathBuf,
    agent_bin: String,
    run_id: String,
    workdir: tempfile::TempDir,
    /// The session the probes run in; it also keeps the agent warm for the whole run.
    main: SessionEnv,
    cold_start: Duration,
    forward: PortForward,
    rss_fresh: u64,
}

impl Bench {
    async fn setup(p: Params) -> anyhow::Result<Bench> {
        let cluster = tokio::task::spawn_blocking(tether_cluster_tests::cluster)
            .await?
            .context("test cluster: bringing it up")?;
        let admin = cluster
            .admin()
            .await
            .context("test cluster: admin client")?;
        let kubectl = Kubectl {
            bin: cluster.var("TETHER_KUBECTL")?.into(),
            kubeconfig: cluster.var("TETHER_ADMIN_KUBECONFIG")?.into(),
        };
        let state_dir = PathBuf::from(cluster.var("TETHER_CONTAINER_STATE_DIR")?);
        let tether = sibling("tether")?;
        let layer = sibling("libtether_layer.so")?;
        let testsrv = sibling("tether-testsrv")?;
        let prober = Prober {
            bin: sibling("tether-bench-probe")?,
        };
        let node_testsrv = node_arg("--testsrv-bin=").map(PathBuf::from);
        let pod = BenchPod::ensure(&kubectl, &admin, &state_dir, node_testsrv.as_deref()).await?;
        pod.install_probe(&prober.bin)?;
        let daemon = Daemon::start(&tether, &kubectl.kubeconfig).await?;
        // Idle right after start: nothing but the API server and its caches.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_fresh = daemon.rss_bytes()?;
        let run_id = format!("{}-{}", std::process::id(), now_nanos() % 1_000_000);
        let workdir = tempfile::Builder::new()
            .prefix("tether-bench-")
            .tempdir()
            .context("making the sessions' working dir")?;
        let bench_params = start_params(
            &pod.name,
            workdir.path(),
            &prober.bin,
            &layer,
            &run_id,
            false,
            3_600_000,
        );
        let t = Instant::now();
        let main: SessionEnv = daemon
            .session_start(&bench_params)
            .await
            .context("the run's session (cold agent start)")?
            .into();
        let cold_start = t.elapsed();
        let forward = tokio::task::spawn_blocking({
            let k = kubectl.clone();
            let name = pod.name.clone();
            move || PortForward::start(&k, pod::NAMESPACE, &name, pod::SOURCE_PORT)
        })
        .await??;
        Ok(Bench {
            agent_bin: node_arg("--agent-bin=")
                .unwrap_or_else(|| "unknown (node not found)".into()),
            p,
            daemon,
            prober,
            kubectl,
            admin,
            pod,
            layer,
            testsrv,
            run_id,
            workdir,
            main,
            cold_start,
            forward,
            rss_fresh,
        })
    }

    fn describe(&self) -> String {
        let profile = self
            .prober
            .bin
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut s = format!(
            "\nbuild: {profile} (daemon, layer, probe next to {}); agent the node runs: {}",
            self.prober.bin.display(),
            self.agent_bin
        );
        if !self.agent_bin.contains(&format!("/{profile}/")) {
            s.push_str(&format!(
                "\nwarning: the agent is not the {profile} build: start the cluster with TETHER_AGENT_BIN (tests/bench/run does)"
            ));
        }
        s.push_str(&format!(
            "\ntarget: pod/{}/container/{} in {} (pod IP {}); cold session.start (new agent Job) took {}",
            self.pod.name,
            pod::CONTAINER,
            pod::NAMESPACE,
            self.pod.ip,
            fmt_duration(self.cold_start)
        ));
        s.push_str(&format!("\nsources: {}", git_state()));
        s.push_str(&format!(
            "\nmachine: {} cores, load average {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        ));
        s
    }

    /// Measures every row in order, then ends the sessions and the daemon.
    async fn rows(self, names: Vec<(String, &'static str)>) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut names = names.into_iter();
        let mut next = |r: anyhow::Result<Measured>| {
            let (name, target) = names.next().expect("one name per row");
            Row {
                name,
                target,
                outcome: r.map_err(|e| format!("{e:#}")),
            }
        };
        let say = |what: &str| eprintln!("tether-bench: measuring {what}");
        say("the agent link's round trip");
        let rtt = self.agent_rtt().await;
        say("kubectl port-forward start-up (peer)");
        let peer_start = self.peer_startup().await;
        say("session.start");
        rows.push(next(self.session_start(&peer_start).await));
        say("debug restarts");
        rows.push(next(self.restart(&peer_start).await));
        say("remote 4 KiB files");
        rows.push(next(self.small_file(&rtt).await));
        say("remote sequential reads");
        rows.push(next(self.file_read().await));
        say("outgoing connects");
        rows.push(next(self.connect().await));
        say("outgoing bulk downloads");
        rows.push(next(self.bulk(false).await));
        say("outgoing bulk uploads");
        rows.push(next(self.bulk(true).await));
        say("stolen HTTP requests");
        rows.push(next(self.steal(&rtt).await));
        say("hooked-but-local calls");
        let local = self.local_fs().await;
        let (stat, open) = match local {
            Ok((a, b)) => (Ok(a), Ok(b)),
            Err(e) => (Err(anyhow::anyhow!("{e:#}")), Err(e)),
        };
        rows.push(next(stat));
        rows.push(next(open));
        say("the daemon's idle memory");
        rows.push(next(self.idle_memory().await));
        rows
    }

    /// The agent link's round trip, measured once for the rows that are expressed in it.
    async fn agent_rtt(&self) -> anyhow::Result<Samples> {
        let label = format!("{RUN_LABEL}={}", self.run_id);
        crate::agent_rtt::measure(&self.admin, pod::NAMESPACE, &label, self.p.rtt_iters).await
    }

    fn params(&self, steal: bool, linger_ms: u64) -> Value {
        start_params(
            &self.pod.name,
            self.workdir.path(),
            &self.prober.bin,
            &self.layer,
            &self.run_id,
            steal,
            linger_ms,
        )
    }

    async fn probe(&self, side: Side<'_>, op: Op) -> anyhow::Result<ProbeOutput> {
        self.prober.run(side, &op).await
    }

    async fn samples(&self, side: Side<'_>, op: Op) -> anyhow::Result<Samples> {
        let out = self.probe(side, op).await?;
        Samples::from_nanos(&out.samples_ns).context("the probe reported no samples")
    }

    /// Row 1: `session.start` while the agent runs (the run's session holds it).
    async fn session_start(&self, peer: &anyhow::Result<Samples>) -> anyhow::Result<Measured> {
        let peer = peer.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let params = self.params(false, 200);
        let mut v = Vec::new();
        for _ in 0..self.p.start_iters {
            tokio::time::sleep(RESTART_PAUSE).await;
            let t = Instant::now();
            let s = self.daemon.session_start(&params).await?;
            v.push(t.elapsed());
            self.daemon.session_stop(&s.id).await?;
        }
        let s = Samples::new(v).context("no samples")?;
        let target = Duration::from_millis(50);
        Ok(Measured {
            value: latency(&s),
            baselines: vec![format!(
                "peer: kubectl port-forward, start to first byte: {}",
                latency(peer)
            )],
            ratio: ratio(s.p50(), peer.p50(), "peer"),
            met: s.p50() < target,
        })
    }

    /// Starts kubectl port-forward afresh and reads the banner through it, a few times: what a
    /// user waits for instead of a session.
    async fn peer_startup(&self) -> anyhow::Result<Samples> {
        let mut v = Vec::new();
        for _ in 0..self.p.peer_starts {
            let k = self.kubectl.clone();
            let name = self.pod.name.clone();
            let d = tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
                let t = Instant::now();
                let pf = PortForward::start(&k, pod::NAMESPACE, &name, pod::SOURCE_PORT)?;
                first_byte(pf.addr)?;
                Ok(t.elapsed())
            })
            .await??;
            v.push(d);
        }
        Samples::new(v).context("no peer samples")
    }

    /// Row 2: `session.start` + spawning the program with its env until the daemon reports its
    /// layer connected, as an IDE's restart does.
    async fn restart(&self, peer: &anyhow::Result<Samples>) -> anyhow::Result<Measured> {
        let peer = peer.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let params = self.params(false, 200);
        let mut v = Vec::new();
        let mut plain = Vec::new();
        for _ in 0..self.p.restart_iters {
            tokio::time::sleep(RESTART_PAUSE).await;
            v.push(self.one_restart(&params).await?);
            let t = Instant::now();
            self.probe(Side::Host, Op::Hello).await?;
            plain.push(t.elapsed());
        }
        let s = Samples::new(v).context("no samples")?;
        let plain = Samples::new(plain).context("no samples")?;
        Ok(Measured {
            value: latency(&s),
            baselines: vec![
                format!(
                    "direct: the same program started without the layer, to exit: {}",
                    latency(&plain)
                ),
                format!(
                    "peer: kubectl port-forward, start to first byte: {}",
                    latency(peer)
                ),
            ],
            ratio: ratio(s.p50(), peer.p50(), "peer"),
            met: s.p50() < Duration::from_millis(200),
        })
    }

    async fn one_restart(&self, params: &Value) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let env: SessionEnv = self.daemon.session_start(params).await?.into();
        let mut events = self.daemon.events(&env.id).await?;
        let mut child = self
            .prober
            .command(Side::Tether(&env), &Op::Hello.to_args())
            .spawn()
            .context("restart: spawning the probe")?;
        let pid = child.id().context("restart: the probe exited at once")?;
        let connected = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(SessionEvent::LayerConnected { pid: p, .. }) if p == pid => return Ok(()),
                    Ok(SessionEvent::Ended { reason, message }) => {
                        anyhow::bail!("restart: the session ended ({reason:?}): {message:?}")
                    }
                    Ok(_) => {}
                    Err(e) => anyhow::bail!("restart: session.events: {e}"),
                }
            }
            anyhow::bail!("restart: session.events ended without layer_connected")
        })
        .await
        .context("restart: no layer_connected in 30 s")?;
        let took = t.elapsed();
        connected?;
        let status = child.wait().await?;
        anyhow::ensure!(status.success(), "restart: the probe failed: {status}");
        self.daemon.session_stop(&env.id).await?;
        Ok(took)
    }

    /// Row 3: open+read(4 KiB)+close of a pod file, in round trips of the agent link.
    async fn small_file(&self, rtt: &anyhow::Result<Samples>) -> anyhow::Result<Measured> {
        let rtt = rtt.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let path = self.pod.file("small-4k", 4096)?;
        let op = Op::SmallFile {
            path,
            iters: self.p.small_iters,
            size: 4096,
        };
        let tether = self.samples(Side::Tether(&self.main), op.clone()).await?;
        let direct = self.samples(Side::Pod(self.pod.pid), op).await?;
        // For scale: a one-byte round trip through kubectl's tunnel and inside the pod.
        let rtt_op = |addr| Op::Rtt {
            addr,
            iters: self.p.rtt_iters as u64,
        };
        let peer_rtt = self.samples(Side::Host, rtt_op(self.forward.addr)).await?;
        let pod_rtt = self
            .samples(
                Side::Pod(self.pod.pid),
                rtt_op(self.pod.addr(pod::SOURCE_PORT)),
            )
            .await?;
        let trips = tether.p50().as_secs_f64() / rtt.p50().as_secs_f64();
        Ok(Measured {
            value: format!("{} = {trips:.2} round trips", latency(&tether)),
            baselines: vec![
                format!(
                    "agent link round trip (ping through the API server): {}",
                    latency(rtt)
                ),
                format!(
                    "direct: the same calls inside the pod: {}",
                    latency(&direct)
                ),
                format!(
                    "for scale: 1-byte echo round trip through kubectl port-forward: {}; inside the pod: {}",
                    latency(&peer_rtt),
                    latency(&pod_rtt)
                ),
            ],
            ratio: format!("{trips:.2} round trips of the agent link"),
            met: trips < 2.0,
        })
    }

    /// Row 4: reading a pod file to the end, against the same file served through kubectl
    /// port-forward. The file is removed afterwards (the pod's root is a tmpfs).
    async fn file_read(&self) -> anyhow::Result<Measured> {
        let path = self
            .pod
            .file(&format!("data-{}", self.p.file_size), self.p.file_size)?;
        let res = self.file_read_rounds(&path).await;
        if let Err(e) = self.pod.remove_file(&path) {
            eprintln!("tether-bench: {e:#}");
        }
        let (t, peer, direct) = res?;
        self.throughput_row(&t, &peer, &direct, "read() of the file inside the pod")
    }

    /// (tether, peer, direct) MB/s of each round.
    async fn file_read_rounds(&self, path: &str) -> anyhow::Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let read = Op::ReadFile {
            path: path.to_owned(),
            buf: READ_BUF,
        };
        let fetch = Op::Fetch {
            addr: self.forward.addr,
            path: path.to_owned(),
            buf: READ_BUF,
        };
        let (mut t, mut peer, mut direct) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.p.rounds {
            peer.push(self.throughput(Side::Host, fetch.clone()).await?);
            t.push(
                self.throughput(Side::Tether(&self.main), read.clone())
                    .await?,
            );
            direct.push(
                self.throughput(Side::Pod(self.pod.pid), read.clone())
                    .await?,
            );
        }
        Ok((t, peer, direct))
    }

    /// Bytes moved per second by one probe run, checking it moved what it should.
    async fn throughput(&self, side: Side<'_>, op: Op) -> anyhow::Result<f64> {
        let want = match &op {
            Op::Bulk { bytes, .. } | Op::Upload { bytes, .. } => *bytes,
            Op::Fetch { .. } | Op::ReadFile { .. } => self.p.file_size,
            _ => 0,
        };
        let out = self.probe(side, op).await?;
        anyhow::ensure!(out.bytes == want, "moved {} bytes, want {want}", out.bytes);
        Ok(mb_per_s(out.bytes, out.secs))
    }

    fn throughput_row(
        &self,
        t: &[f64],
        peer: &[f64],
        direct: &[f64],
        direct_what: &str,
    ) -> anyhow::Result<Measured> {
        let (t, peer, direct) = (
            median(t).context("no samples")?,
            median(peer).context("no peer samples")?,
            median(direct).context("no direct samples")?,
        );
        let rounds = format!("median of {} run(s)", self.p.rounds);
        Ok(Measured {
            value: format!("{t:.1} MB/s ({rounds}, {} KiB calls)", READ_BUF >> 10),
            baselines: vec![
                format!("peer: kubectl port-forward to the pod's server: {peer:.1} MB/s"),
                format!("direct: {direct_what}: {direct:.1} MB/s"),
            ],
            ratio: format!(
                "{:.0}% of peer, {:.1}% of direct",
                t / peer * 100.0,
                t / direct * 100.0
            ),
            met: t >= 0.8 * peer,
        })
    }

    /// Row 5: connect until the server's first byte arrives.
    async fn connect(&self) -> anyhow::Result<Measured> {
        let iters = self.p.connect_iters;
        let pod_addr = self.pod.addr(pod::SOURCE_PORT);
        let peer = self
            .samples(
                Side::Host,
                Op::Connect {
                    addr: self.forward.addr,
                    iters,
                },
            )
            .await?;
        let op = Op::Connect {
            addr: pod_addr,
            iters,
        };
        let t = self.samples(Side::Tether(&self.main), op.clone()).await?;
        let direct = self.samples(Side::Pod(self.pod.pid), op).await?;
        let diff = t.p50().as_secs_f64() - peer.p50().as_secs_f64();
        Ok(Measured {
            value: latency(&t),
            baselines: vec![
                format!("peer: through kubectl port-forward: {}", latency(&peer)),
                format!("direct: inside the pod: {}", latency(&direct)),
            ],
            ratio: format!(
                "{:+.3} ms against peer ({})",
                diff * 1e3,
                ratio(t.p50(), peer.p50(), "peer")
            ),
            met: diff <= 0.0005,
        })
    }

    /// Rows 6 and 7: downloading bytes from the pod's server, or uploading them to it.
    async fn bulk(&self, upload: bool) -> anyhow::Result<Measured> {
        let bytes = self.p.bulk_bytes;
        let pod_addr = self.pod.addr(pod::SOURCE_PORT);
        let op = |addr| {
            if upload {
                Op::Upload {
                    addr,
                    bytes,
                    buf: READ_BUF,
                }
            } else {
                Op::Bulk {
                    addr,
                    bytes,
                    buf: READ_BUF,
                }
            }
        };
        let (mut t, mut peer, mut direct) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.p.rounds {
            peer.push(self.throughput(Side::Host, op(self.forward.addr)).await?);
            t.push(
                self.throughput(Side::Tether(&self.main), op(pod_addr))
                    .await?,
            );
            direct.push(
                self.throughput(Side::Pod(self.pod.pid), op(pod_addr))
                    .await?,
            );
        }
        self.throughput_row(&t, &peer, &direct, "inside the pod")
    }

    /// Row 7: HTTP requests from inside the pod to a stolen port, served by the same server
    /// program running locally under the layer, against requests to the pod's own server.
    async fn steal(&self, rtt: &anyhow::Result<Samples>) -> anyhow::Result<Measured> {
        let rtt = rtt.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let env: SessionEnv = self
            .daemon
            .session_start(&self.params(true, 500))
            .await?
            .into();
        let app = LocalApp::start(&self.testsrv, &env)?;
        let res = self.steal_measure(rtt).await;
        let logs = app.stop();
        self.daemon.session_stop(&env.id).await?;
        res.map_err(|e| e.context(format!("local app output: {}", logs.trim())))
    }

    async fn steal_measure(&self, rtt: &Samples) -> anyhow::Result<Measured> {
        let pod_side = Side::Pod(self.pod.pid);
        let stolen_addr = self.pod.addr(pod::HTTP_STOLEN_PORT);
        let direct_addr = self.pod.addr(pod::HTTP_DIRECT_PORT);
        self.wait_stolen(stolen_addr).await?;
        let iters = self.p.http_iters;
        // (address, who must answer, to the end of each response, to its first byte, to its
        // last byte)
        let mut sides = [
            (
                direct_addr,
                "pod-direct",
                Vec::new(),
                Vec::new(),
                Vec::new(),
            ),
            (stolen_addr, "local", Vec::new(), Vec::new(), Vec::new()),
        ];
        // Two interleaved halves, so a burst of load on the machine hits both sides.
        for _ in 0..2 {
            for (addr, want, full, first, last) in sides.iter_mut() {
                let op = Op::Http {
                    addr: *addr,
                    iters: iters.div_ceil(2),
                };
                let out = self.probe(pod_side, op).await?;
                anyhow::ensure!(
                    out.instances == [*want],
                    "requests to {addr} were answered by {:?}, not {want:?} only",
                    out.instances
                );
                full.extend(out.samples_ns);
                first.extend(out.first_byte_ns);
                last.extend(out.last_byte_ns);
            }
        }
        let [
            (_, _, direct, direct_first, direct_last),
            (_, _, stolen, stolen_first, stolen_last),
        ] = sides;
        let samples = |v: &[u64]| Samples::from_nanos(v).context("no samples");
        let (direct, stolen) = (samples(&direct)?, samples(&stolen)?);
        let (direct_first, stolen_first) = (samples(&direct_first)?, samples(&stolen_first)?);
        let (direct_last, stolen_last) = (samples(&direct_last)?, samples(&stolen_last)?);
        let added = stolen.p50().as_secs_f64() - direct.p50().as_secs_f64();
        let over_rtt = added - rtt.p50().as_secs_f64();
        Ok(Measured {
            value: format!(
                "{:.3} ms added at p50 (stolen {})",
                added * 1e3,
                latency(&stolen)
            ),
            baselines: vec![
                format!(
                    "direct: the pod's own server, same client inside the pod: {}",
                    latency(&direct)
                ),
                format!("agent link round trip: {}", latency(rtt)),
                format!(
                    "to the response's first byte: stolen {}, direct {}",
                    latency(&stolen_first),
                    latency(&direct_first)
                ),
                format!(
                    "to its last byte (before the close): stolen {}, direct {}",
                    latency(&stolen_last),
                    latency(&direct_last)
                ),
            ],
            ratio: format!(
                "added = 1 agent round trip ({}) {:+.3} ms",
                fmt_duration(rtt.p50()),
                over_rtt * 1e3
            ),
            met: over_rtt < 0.001,
        })
    }

    /// Waits until requests to the stolen port reach the local app.
    async fn wait_stolen(&self, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let t = Instant::now();
        loop {
            let out = self
                .probe(Side::Pod(self.pod.pid), Op::Http { addr, iters: 1 })
                .await;
            match out {
                Ok(o) if o.instances == ["local"] => return Ok(()),
                _ if t.elapsed() > Duration::from_secs(30) => {
                    anyhow::bail!("steal: requests to {addr} still not stolen after 30 s: {out:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Rows 8 and 9: local stat and open+read+close, thread CPU time, with and without the
    /// layer, interleaved runs, best of each.
    async fn local_fs(&self) -> anyhow::Result<(Measured, Measured)> {
        let op = Op::LocalFs {
            path: LOCAL_FILE.into(),
            iters: self.p.local_iters,
        };
        let (mut base, mut hooked) = ((f64::MAX, f64::MAX), (f64::MAX, f64::MAX));
        for _ in 0..self.p.local_rounds {
            let b = self.probe(Side::Host, op.clone()).await?;
            let h = self.probe(Side::Tether(&self.main), op.clone()).await?;
            base = (base.0.min(b.stat_ns), base.1.min(b.open_ns));
            hooked = (hooked.0.min(h.stat_ns), hooked.1.min(h.open_ns));
        }
        let row = |b: f64, h: f64| Measured {
            value: format!(
                "{h:.0} ns per call (thread CPU time, best of {} runs of {} calls)",
                self.p.local_rounds, self.p.local_iters
            ),
            baselines: vec![format!(
                "direct: the same program without the layer: {b:.0} ns"
            )],
            ratio: format!("{:+.1}% ({:.3}x)", (h / b - 1.0) * 100.0, h / b),
            met: h <= b * 1.10,
        };
        Ok((row(base.0, hooked.0), row(base.1, hooked.1)))
    }

    /// Row 10: the daemon's RSS once every session has ended, after all the work above.
    async fn idle_memory(self) -> anyhow::Result<Measured> {
        let peer_rss = rss_bytes(self.forward.pid());
        self.daemon.session_stop(&self.main.id).await?;
        // Sessions end, the agent is released and its Job deleted; then it is idle.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss = self.daemon.rss_bytes()?;
        self.daemon.shutdown().await;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let mut baselines = vec![format!(
            "the same daemon idle before any session: {:.1} MiB",
            mib(self.rss_fresh)
        )];
        match peer_rss {
            Ok(p) => baselines.push(format!(
                "peer: the kubectl port-forward of this run: {:.1} MiB",
                mib(p)
            )),
            Err(e) => baselines.push(format!("peer: kubectl RSS not read: {e:#}")),
        }
        Ok(Measured {
            value: format!("{:.1} MiB RSS, idle after the run's sessions", mib(rss)),
            baselines,
            ratio: format!("{:.0}% of the 30 MiB budget", mib(rss) / 30.0 * 100.0),
            met: rss < 30 << 20,
        })
    }
}

/// The local app of the steal row: the same test server as the pod's, under the layer.
struct LocalApp {
    child: std::process::Child,
    log: tempfile::NamedTempFile,
}

impl LocalApp {
    fn start(testsrv: &Path, env: &SessionEnv) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let log = tempfile::NamedTempFile::new().context("steal: log file")?;
        let mut cmd = std::process::Command::new(testsrv);
        for k in &env.unset {
            cmd.env_remove(k);
        }
        cmd.envs(&env.set)
            .args(["http-echo", "--port", &pod::HTTP_STOLEN_PORT.to_string()])
            .args(["--name", "local"])
            .stdin(std::process::Stdio::null())
            .stdout(log.reopen()?)
            .stderr(log.reopen()?)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("steal: starting {}", testsrv.display()))?;
        Ok(LocalApp { child, log })
    }

    /// Kills it; returns its output.
    fn stop(mut self) -> String {
        kill_group(self.child.id());
        let _ = self.child.wait();
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

/// `session.start` params for the bench pod.
fn start_params(
    pod_name: &str,
    cwd: &Path,
    program: &Path,
    layer: &Path,
    run_id: &str,
    steal: bool,
    linger_ms: u64,
) -> Value {
    // No requests/limits: the test node reports every pod as BestEffort (see
    // daemon/tests/cluster_agent.rs).
    let mut config = json!({"agent": {"resources": {}, "labels": {RUN_LABEL: run_id}}});
    if steal {
        config["feature"] = json!({"network": {"incoming": "steal"}});
    }
    json!({
        "config": {"text": config.to_string(), "cwd": cwd},
        "target": format!("pod/{pod_name}/container/{}", pod::CONTAINER),
        "namespace": pod::NAMESPACE,
        "program": program,
        "layer": layer,
        "linger_ms": linger_ms,
    })
}

/// Connects and waits for the bench source's banner.
fn first_byte(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)
        .with_context(|| format!("first byte from {addr}"))?;
    anyhow::ensure!(b[0] == BANNER, "{addr} is not the bench source");
    Ok(())
}

/// A `--flag=` value of the running test node (`--agent-bin=`, `--testsrv-bin=`): the programs
/// it maps the agent and test images to.
fn node_arg(prefix: &str) -> Option<String> {
    let dir = std::env::var("TETHER_CLUSTER_DIR").unwrap_or_else(|_| "/run/tether-cluster".into());
    let pid = std::fs::read_to_string(Path::new(&dir).join("pids/node")).ok()?;
    let args = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).ok()?;
    args.split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .find_map(|a| a.strip_prefix(prefix))
        .map(str::to_owned)
}

/// The commit the binaries were built from, roughly: HEAD and how many files differ from it.
fn git_state() -> String {
    let repo = tether_cluster_tests::repo_root();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["status", "--porcelain", "--untracked-files=no"]),
    ) {
        (Some(head), Some(status)) => format!(
            "commit {} with {} modified tracked file(s) in the tree",
            head.trim(),
            status.lines().count()
        ),
        _ => "unknown (no git)".into(),
    }
}

fn latency(s: &Samples) -> String {
    format!(
        "{} p50 (p90 {}, n={})",
        fmt_duration(s.p50()),
        fmt_duration(s.p90()),
        s.len()
    )
}

fn ratio(a: Duration, b: Duration, of: &str) -> String {
    format!("{:.2}x {of}", a.as_secs_f64() / b.as_secs_f64())
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
