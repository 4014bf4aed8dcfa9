//! `tether demo`: the README's first command. Brings up the test cluster (tests/cluster), applies
//! the demo workloads (examples/demo-app/demo.yaml: namespace `tether-demo`, pod `demo`, a
//! cluster-only `backend` service, a `client` pod), lists them as `tether ls` does, and runs
//! examples/demo-app/app.py under `tether exec` against pod `demo`: the app prints what it sees
//! from the pod and answers a request that a pod of the cluster sends to pod `demo` (stolen).
//!
//! The agent (see [`DEFAULT_AGENT_PATH`], `TETHER_DEMO_AGENT`): either `tether exec --target` (the
//! Kubernetes launcher: agent Job + port-forward), or `tether-agent` started by the demo itself on
//! this machine, attached to the demo pod's container process (the test node runs pods as local
//! processes), its address passed to `tether exec --agent`. The output says which path ran.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;

/// The demo workloads (also readable at examples/demo-app/demo.yaml).
const MANIFEST: &str = include_str!("../../../examples/demo-app/demo.yaml");
/// Namespace and pods of the manifest.
const NAMESPACE: &str = "tether-demo";
/// What the client pod requests; the service in front of pod `demo`.
const DEMO_URL: &str = "http://demo.tether-demo.svc.cluster.local/hello-from-the-cluster";
/// The app's answer starts with this (see app.py); the pod's own server answers JSON.
const STOLEN_MARK: &str = "answered by the local demo-app";
/// Local port of the app in examples/demo-app/tether.toml (`port_mapping = [[18080, 8080]]`).
const APP_PORT: u16 = 18080;
/// Python used for the app and inside the client pod (pods see the host's /usr, not $PATH).
const PYTHON: &str = "/usr/bin/python3";
/// Environment variable that forces the agent path: `launcher` or `local`.
const AGENT_PATH_ENV: &str = "TETHER_DEMO_AGENT";

/// `tether demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {}

/// How the demo gets an agent next to pod `demo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentPath {
    /// `tether exec --target pod/demo -n tether-demo`: the agent Job through the Kubernetes API.
    Launcher,
    /// `tether-agent --target-pid` started by the demo on this machine, then `tether exec --agent`.
    Local,
}

/// Runs `tether demo`.
pub fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "tether: demo: needs root: the test cluster runs pods as network namespaces, with iptables rules and mounts\n  help: run it with sudo: `sudo {} demo`",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "tether".into())
        );
        return Ok(ExitCode::from(1));
    }
    let started = Instant::now();
    let exe = std::env::current_exe().context("demo: cannot find the tether executable")?;
    let repo = find_repo(&exe)?;
    let bin_dir = exe
        .parent()
        .context("demo: the tether executable has no parent dir")?
        .to_path_buf();
    check_artifacts(&bin_dir)?;
    if !Path::new(PYTHON).exists() {
        bail!(
            "demo: {PYTHON} is missing (the demo app is a Python 3 script)\n  help: apt-get install python3"
        );
    }

    println!(
        "tether demo: a local Python app runs as if inside pod `demo` of a Kubernetes cluster"
    );

    // 1. The cluster.
    step(1, "test cluster (tests/cluster/up)");
    println!(
        "  the first run builds Kubernetes v1.37.2, etcd and the test node from source (tens of minutes);\n  later runs reuse the build (seconds) or the running cluster"
    );
    let t = Instant::now();
    let cluster = cluster_up(&repo, &bin_dir)?;
    println!(
        "  cluster ready in {} ({})",
        elapsed(t),
        cluster.apiserver()
    );

    // 2. The demo workloads.
    step(2, "demo workloads (examples/demo-app/demo.yaml)");
    let t = Instant::now();
    cluster
        .kubectl(&["apply", "-f", "-"], Some(MANIFEST))
        .context("demo: cannot apply the demo workloads")?;
    cluster
        .kubectl(
            &[
                "-n",
                NAMESPACE,
                "wait",
                "--for=condition=Ready",
                "pod/demo",
                "pod/backend",
                "pod/client",
                "--timeout=120s",
            ],
            None,
        )
        .context("demo: the demo pods did not become ready")?;
    println!(
        "  namespace {NAMESPACE}: pod demo (HTTP on 8080, env DEMO_GREETING, /config/app.conf),\n  service backend (cluster-only), pod client; ready in {}",
        elapsed(t)
    );

    // 3. What `tether ls` sees.
    step(3, &format!("targets (tether ls -n {NAMESPACE})"));
    let ls = Command::new(&exe)
        .args(["ls", "-n", NAMESPACE, "--kubeconfig"])
        .arg(&cluster.kubeconfig)
        .status()
        .context("demo: cannot run tether ls")?;
    if !ls.success() {
        bail!(
            "demo: tether ls failed ({ls})\n  help: see the error above; `tether daemon status` shows the daemon"
        );
    }

    // 4. The agent and the app.
    let path = agent_path()?;
    let config = repo.join("examples/demo-app/tether.toml");
    let (_config_dir, app_config_file, port) = app_config(&config, &cluster.kubeconfig)?;
    let app = repo.join("examples/demo-app/app.py");
    let mut exec = Command::new(&exe);
    exec.arg("exec").arg("-f").arg(&app_config_file);
    let _agent = match path {
        AgentPath::Launcher => {
            step(
                4,
                "agent: started by `tether exec --target` through the daemon: a Job next to pod demo, reached\n  through an API-server port-forward (its steps are the `tether: [...]` lines below)",
            );
            exec.args(["--target", "pod/demo", "-n", NAMESPACE]);
            None
        }
        AgentPath::Local => {
            step(
                4,
                "agent: tether-agent started by the demo on this machine, attached to pod demo's process",
            );
            println!(
                "  ({AGENT_PATH_ENV}=local: not the Kubernetes launcher; `tether exec --agent` instead)"
            );
            let agent = LocalAgent::start(&bin_dir, &cluster)?;
            println!(
                "  agent listening on {} (pid {})",
                agent.addr,
                agent.child.id()
            );
            exec.args(["--agent", &agent.addr])
                .env("TETHER_AGENT_TOKEN", &agent.token);
            Some(agent)
        }
    };

    step(
        5,
        &format!(
            "app: tether exec -f {} {}-- python3 {}\n  (config: plus `kubeconfig` of the test cluster, in {})",
            rel(&repo, &config),
            match path {
                AgentPath::Launcher => "--target pod/demo -n tether-demo ",
                AgentPath::Local => "--agent ADDR ",
            },
            rel(&repo, &app),
            app_config_file.display()
        ),
    );
    // From the app's own dir, as a developer runs it: the project dir stays local (fs "read"
    // would otherwise look for app.py in the pod).
    exec.current_dir(app.parent().expect("app.py has a parent dir"))
        .arg("--")
        .arg(PYTHON)
        .arg("app.py")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let t = Instant::now();
    let mut child = ChildGuard(exec.spawn().context("demo: cannot run tether exec")?);
    let stdout = child.0.stdout.take().expect("stdout is piped");
    let mut seen = Vec::new();
    let mut stolen = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("demo: reading the app's output")?;
        println!("  {line}");
        let listening = line.starts_with("app: listening");
        seen.push(line);
        if listening && stolen.is_none() {
            stolen = Some(send_request(&cluster));
        }
    }
    let status = child.wait_timeout(Duration::from_secs(30))?;
    let app_time = elapsed(t);

    // Summary.
    println!("\nsummary");
    let stolen = match stolen {
        Some(Ok(body)) => body,
        Some(Err(e)) => {
            bail!("demo: the request from pod client was not answered by the app: {e:#}")
        }
        None => bail!(
            "demo: the app stopped before listening ({status})\n  help: see its output above; TETHER_LOG=debug shows tether's side"
        ),
    };
    if !status.success() {
        bail!("demo: the app exited with {status}");
    }
    let failed: Vec<_> = seen.iter().filter(|l| l.contains("FAILED:")).collect();
    if !failed.is_empty() {
        bail!(
            "demo: the app could not see everything from pod demo:\n  {}\n  help: TETHER_LOG=debug shows tether's side; the cluster's logs are in /run/tether-cluster/logs/",
            failed
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    let path_text = match path {
        AgentPath::Launcher => "the agent ran as a Job in the cluster (tether exec --target)",
        AgentPath::Local => {
            "the agent ran on this machine attached to pod demo's process (tether exec --agent)"
        }
    };
    println!(
        "  app.py ran on this machine (its pid above) in {app_time}, yet it read pod demo's env and\n  /config/app.conf, resolved and reached the cluster-only service backend, saw hostname demo,\n  and answered a request that pod client sent to pod demo:\n    {}\n  {path_text}\n  total {}",
        stolen.trim(),
        elapsed(started)
    );
    println!(
        "\ntear down: sudo {} (stops the cluster); `{} daemon stop` stops the daemon `tether ls` started\nnext: `sudo tests/run` runs every test",
        repo.join("tests/cluster/down").display(),
        exe.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn step(n: u32, what: &str) {
    println!("\n[{n}/5] {what}");
    let _ = std::io::stdout().flush();
}

fn elapsed(since: Instant) -> String {
    let s = since.elapsed().as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

fn rel(repo: &Path, p: &Path) -> String {
    p.strip_prefix(repo).unwrap_or(p).display().to_string()
}

/// The repo checkout: the nearest ancestor of the executable having tests/cluster/up (a build in
/// `<repo>/target/debug`), else the checkout this binary was built from.
fn find_repo(exe: &Path) -> anyhow::Result<PathBuf> {
    let is_repo = |d: &Path| {
        d.join("tests/cluster/up").is_file() && d.join("examples/demo-app/app.py").is_file()
    };
    if let Some(d) = exe.ancestors().skip(1).find(|d| is_repo(d)) {
        return Ok(d.to_path_buf());
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if is_repo(&built) {
        return Ok(built.canonicalize().unwrap_or(built));
    }
    bail!(
        "demo: cannot find the tether checkout (tests/cluster/up, examples/demo-app/) near {} or at {}\n  help: run the demo from a checkout: `cargo build --workspace && sudo target/debug/tether demo`",
        exe.display(),
        built.display()
    )
}

/// The binaries the demo runs next to tether: the agent (also the test node's agent image), the
/// test server (the node's http-echo image) and the layer.
fn check_artifacts(bin_dir: &Path) -> anyhow::Result<()> {
    let missing: Vec<_> = ["tether-agent", "tether-testsrv", "libtether_layer.so"]
        .into_iter()
        .filter(|n| !bin_dir.join(n).exists())
        .collect();
    if !missing.is_empty() {
        bail!(
            "demo: {} missing in {}\n  help: build the workspace first: `cargo build --workspace`",
            missing.join(", "),
            bin_dir.display()
        );
    }
    Ok(())
}

/// The running test cluster, from the env file `up` prints.
struct Cluster {
    env: HashMap<String, String>,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn apiserver(&self) -> &str {
        self.env.get("TETHER_APISERVER").map_or("?", |s| s.as_str())
    }

    /// Runs kubectl as the cluster admin; returns stdout, fails with its stderr.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.kubectl.display()))?;
        if let Some(text) = stdin {
            let mut w = child.stdin.take().expect("stdin is piped");
            w.write_all(text.as_bytes()).context("writing to kubectl")?;
        }
        let out = child.wait_with_output().context("waiting for kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Runs tests/cluster/up, showing its steps with the elapsed time, and a heartbeat while a step
/// (a cold Go build) is silent.
fn cluster_up(repo: &Path, bin_dir: &Path) -> anyhow::Result<Cluster> {
    let up = repo.join("tests/cluster/up");
    let mut cmd = Command::new(&up);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The node maps images to `$CARGO_TARGET_DIR/debug/...`: the dir this tether was built in.
    if std::env::var_os("CARGO_TARGET_DIR").is_none()
        && let Some(target) = bin_dir.parent()
        && bin_dir.file_name().is_some_and(|n| n == "debug")
    {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    // build.sh needs Go; sudo's secure_path drops the usual install dir from PATH.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if !dirs.iter().any(|d| d.join("go").is_file()) {
        match ["/usr/local/go/bin", "/usr/lib/go/bin"]
            .into_iter()
            .map(PathBuf::from)
            .find(|d| d.join("go").is_file())
        {
            Some(d) => dirs.push(d),
            None => bail!(
                "demo: Go is missing: the test cluster builds Kubernetes from source with it\n  help: install Go 1.26 (https://go.dev/dl/) into /usr/local/go or put `go` on root's PATH"
            ),
        }
        cmd.env(
            "PATH",
            std::env::join_paths(dirs).context("demo: cannot extend PATH with Go's dir")?,
        );
    }
    let started = Instant::now();
    let mut child = ChildGuard(
        cmd.spawn()
            .with_context(|| format!("demo: cannot run {}", up.display()))?,
    );
    let stderr = child.0.stderr.take().expect("stderr is piped");
    let last = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let tail = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let (last, tail) = (last.clone(), tail.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                last.store(started.elapsed().as_secs(), Ordering::Relaxed);
                // `up`'s own steps carry their time; build.sh's carry theirs too.
                println!("  | {line}");
                let mut t = tail.lock().expect("not poisoned");
                t.push(line);
                if t.len() > 20 {
                    t.remove(0);
                }
            }
        })
    };
    let ticker = {
        let (last, done) = (last.clone(), done.clone());
        std::thread::spawn(move || {
            let mut next = 30;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let now = started.elapsed().as_secs();
                if now >= next && now - last.load(Ordering::Relaxed) >= 30 {
                    println!(
                        "  | ... tests/cluster/up still working, {} so far (builds log to {}/logs/; a parallel\n  |     `up` may hold /run/tether-cluster.lock)",
                        elapsed(started),
                        std::env::var("TETHER_CACHE")
                            .unwrap_or_else(|_| "/var/cache/tether".into())
                    );
                    next = now + 30;
                }
            }
        })
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(
        child.0.stdout.as_mut().expect("stdout is piped"),
        &mut stdout,
    )
    .context("demo: reading tests/cluster/up's output")?;
    let status = child
        .0
        .wait()
        .context("demo: waiting for tests/cluster/up")?;
    done.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let _ = ticker.join();
    if !status.success() {
        bail!(
            "demo: tests/cluster/up failed ({status})\n  help: its output is above; component logs are in /run/tether-cluster/logs/"
        );
    }
    let env: HashMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let get = |k: &str| {
        env.get(k).map(PathBuf::from).with_context(|| {
            format!("demo: tests/cluster/up printed no {k}\n  help: its output is above")
        })
    };
    Ok(Cluster {
        kubectl: get("TETHER_KUBECTL")?,
        kubeconfig: get("TETHER_ADMIN_KUBECONFIG")?,
        env,
    })
}

/// The agent path when `TETHER_DEMO_AGENT` is unset: the launcher, as a developer's `tether exec
/// --target` runs. `local` (the agent on this machine) is the fallback for a broken launcher.
const DEFAULT_AGENT_PATH: AgentPath = AgentPath::Launcher;

/// `TETHER_DEMO_AGENT` (`launcher` or `local`) when set, else [`DEFAULT_AGENT_PATH`].
fn agent_path() -> anyhow::Result<AgentPath> {
    match std::env::var(AGENT_PATH_ENV).ok().as_deref() {
        Some("launcher") => Ok(AgentPath::Launcher),
        Some("local") => Ok(AgentPath::Local),
        Some(other) => bail!(
            "demo: {AGENT_PATH_ENV}={other}: unknown agent path\n  help: use `launcher` or `local`"
        ),
        None => Ok(DEFAULT_AGENT_PATH),
    }
}

/// The app's config: a copy of examples/demo-app/tether.toml naming the test cluster's kubeconfig
/// (the daemon reads the file, not this process's env), and mapping another free local port to
/// the pod's 8080 when 18080 is taken on this machine. Returns the copy, its dir and the port.
fn app_config(path: &Path, kubeconfig: &Path) -> anyhow::Result<(tempfile::TempDir, PathBuf, u16)> {
    let mut text = std::fs::read_to_string(path)
        .with_context(|| format!("demo: cannot read {}", path.display()))?;
    let mut port = APP_PORT;
    if std::net::TcpListener::bind(("0.0.0.0", APP_PORT)).is_err() {
        port = std::net::TcpListener::bind(("0.0.0.0", 0))
            .and_then(|l| l.local_addr())
            .context("demo: cannot find a free local port")?
            .port();
        let from = format!("[[{APP_PORT}, 8080]]");
        if !text.contains(&from) {
            bail!(
                "demo: {} no longer maps local port {APP_PORT} to the pod's 8080\n  help: restore `port_mapping = {from}`",
                path.display()
            );
        }
        text = text.replace(&from, &format!("[[{port}, 8080]]"));
        println!("  (local port {APP_PORT} is taken on this machine: the app listens on {port})");
    }
    let kubeconfig = kubeconfig
        .to_str()
        .context("demo: the kubeconfig path is not UTF-8")?;
    // A top-level key: before the file's first table.
    let text = format!(
        "# written by tether demo from {}\nkubeconfig = {}\n\n{text}",
        path.display(),
        serde_json::to_string(kubeconfig)?
    );
    let dir = tempfile::tempdir().context("demo: cannot create a temp dir")?;
    let copy = dir.path().join("tether.toml");
    std::fs::write(&copy, text).context("demo: cannot write the app's config")?;
    Ok((dir, copy, port))
}

/// Sends the demo's request to pod `demo` from pod `client`, retrying while the pod itself answers
/// (the steal is not in place yet); returns the app's answer.
fn send_request(cluster: &Cluster) -> anyhow::Result<String> {
    let script = format!(
        "import urllib.request as u\nprint(u.urlopen('{DEMO_URL}', timeout=10).read().decode(), end='')"
    );
    let mut last = String::new();
    for attempt in 1..=10 {
        println!("  cluster: pod client -> GET {DEMO_URL}");
        match cluster.kubectl(
            &[
                "-n", NAMESPACE, "exec", "client", "--", PYTHON, "-c", &script,
            ],
            None,
        ) {
            Ok(body) if body.contains(STOLEN_MARK) => {
                println!("  cluster: pod client <- {}", body.trim());
                return Ok(body);
            }
            Ok(body) => {
                last = format!("pod demo itself answered: {}", body.trim());
            }
            Err(e) => last = format!("{e:#}"),
        }
        println!("  cluster: not stolen yet ({last}); retrying (attempt {attempt})");
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!("{last}")
}

/// `tether-agent` on this machine, attached to the demo pod's container process.
struct LocalAgent {
    child: Child,
    addr: String,
    token: String,
}

impl LocalAgent {
    fn start(bin_dir: &Path, cluster: &Cluster) -> anyhow::Result<Self> {
        let pid = demo_pid(cluster)?;
        let token = format!("demo-{:016x}", rand::random::<u64>());
        let mut child = Command::new(bin_dir.join("tether-agent"))
            .args(["--target-pid", &pid.to_string()])
            .args(["--listen", "127.0.0.1:0", "--ttl", "120"])
            .env("TETHER_AGENT_TOKEN", &token)
            .env("TETHER_AGENT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("demo: cannot start tether-agent")?;
        let mut line = String::new();
        let read =
            BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut line);
        let addr = line
            .trim()
            .strip_prefix("tether-agent listening on ")
            .map(str::to_owned);
        match (read, addr) {
            (Ok(_), Some(addr)) => Ok(Self { child, addr, token }),
            _ => {
                let _ = child.kill();
                let status = child.wait();
                bail!(
                    "demo: tether-agent did not start ({status:?}, output {line:?})\n  help: its error is above"
                )
            }
        }
    }
}

impl Drop for LocalAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PID of pod demo's container process, from the test node's container state file.
fn demo_pid(cluster: &Cluster) -> anyhow::Result<u32> {
    let id = cluster.kubectl(
        &[
            "-n",
            NAMESPACE,
            "get",
            "pod",
            "demo",
            "-o",
            "jsonpath={.status.containerStatuses[0].containerID}",
        ],
        None,
    )?;
    let id = id.trim();
    let hex = id.split_once("://").map_or(id, |(_, h)| h);
    let dir = cluster
        .env
        .get("TETHER_CONTAINER_STATE_DIR")
        .context("demo: the cluster env has no TETHER_CONTAINER_STATE_DIR")?;
    let file = Path::new(dir).join(format!("{hex}.json"));
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "demo: cannot read the state of pod demo's container ({})",
            file.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("demo: {} is not JSON", file.display()))?;
    v["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .with_context(|| format!("demo: {} has no pid", file.display()))
}

/// Kills the child (and reaps it) when the demo fails half-way.
struct ChildGuard(Child);

impl ChildGuard {
    fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.0.try_wait().context("demo: waiting for the app")? {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                bail!(
                    "demo: the app did not exit within {}s after its output ended",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SIGINT first: `tether exec` forwards it to the app and cleans up its session.
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}
