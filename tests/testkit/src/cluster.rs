//! Test clusters and test pods for Rust tests: a [`TestCluster`] is a network (bridge in its own
//! namespace + DNS server) owned by the test process; a [`Pod`] is a sandbox plus a main process
//! with its own env, root and hostname. Both clean up on drop, and [`crate::cleanup_stale`]
//! removes what a killed test process left.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rand::Rng;

use crate::container::{self, Bind, ContainerSpec, DEFAULT_PATH};
use crate::error::{Error, IoContext, Result};
use crate::net::{self, NetworkOptions, SandboxOptions};
use crate::state::{self, NetworkInfo, POD_DOMAIN, SandboxInfo, ServiceInfo};
use crate::sys::{self, Proto};
use crate::testsrv::testsrv_bin;

/// Where `tether-testsrv` is visible inside every pod.
pub const POD_TESTSRV: &str = "/.tether/tether-testsrv";

/// How long a pod's server gets to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

struct ClusterInner {
    net: NetworkInfo,
}

impl Drop for ClusterInner {
    fn drop(&mut self) {
        if let Err(e) = net::network_down(&self.net.name) {
            eprintln!(
                "tether-testkit: tearing down network {}: {e}",
                self.net.name
            );
        }
    }
}

/// A test cluster: a network with its own bridge namespace, subnet `10.244.N.0/24`, a DNS server,
/// cluster-only services and pods. Removed on drop (after its last [`Pod`] is gone), or by
/// [`crate::cleanup_stale`] after this process died.
///
/// ```no_run
/// # fn main() -> tether_testkit::Result<()> {
/// use tether_testkit::{TestCluster, TestServer};
/// let cluster = TestCluster::new("demo")?;
/// let web = cluster.pod("web").env("MODE", "test").server(TestServer::HttpEcho { port: 8080 }).start()?;
/// let client = cluster.pod("client").file("/app/config", "x=1").start()?;
/// let api = cluster.expose("api", 80, &web, 8080)?; // api.cluster.test -> web:8080
/// let out = client.exec([tether_testkit::POD_TESTSRV, "http-get", "http://api.cluster.test/"])?;
/// assert!(String::from_utf8_lossy(&out.stdout).contains(r#""instance":"web""#));
/// # let _ = api; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TestCluster {
    inner: Arc<ClusterInner>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("name", &self.inner.net.name)
            .field("subnet", &self.inner.net.subnet)
            .finish()
    }
}

fn random_suffix(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

impl TestCluster {
    /// Creates a cluster named `LABEL-xxxxxx` (random suffix, so parallel tests never collide),
    /// owned by this process. The first cluster of a process sweeps leftovers of dead test
    /// processes first.
    pub fn new(label: &str) -> Result<TestCluster> {
        static SWEPT: OnceLock<()> = OnceLock::new();
        sys::preflight()?;
        let testsrv = testsrv_bin()?;
        if SWEPT.get().is_none() {
            crate::cleanup_stale()?;
            let _ = SWEPT.set(());
        }
        let mut label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        label.truncate(12);
        let label = label.trim_matches('-');
        let name = if label.is_empty() {
            random_suffix(6)
        } else {
            format!("{label}-{}", random_suffix(6))
        };
        let net = net::network_up(
            &name,
            &NetworkOptions {
                owner_pid: Some(std::process::id()),
                testsrv,
            },
        )?;
        Ok(TestCluster {
            inner: Arc::new(ClusterInner { net }),
        })
    }

    /// Network name (also the prefix of its pods' sandbox names).
    pub fn name(&self) -> &str {
        &self.inner.net.name
    }

    /// The network as created (bridge, subnet, gateway, DNS address, namespace).
    pub fn network(&self) -> &NetworkInfo {
        &self.inner.net
    }

    /// Pod subnet, `10.244.N.0/24`.
    pub fn subnet(&self) -> &str {
        &self.inner.net.subnet
    }

    /// Address of the cluster DNS server (also the pods' gateway).
    pub fn dns_ip(&self) -> Ipv4Addr {
        self.inner.net.dns
    }

    /// Path of the infra network namespace (where the bridge and DNS server live).
    pub fn infra_netns_path(&self) -> &Path {
        &self.inner.net.netns_path
    }

    /// Starts describing a pod. `name` must be a DNS label; the pod resolves as
    /// `NAME.pods.test`.
    pub fn pod(&self, name: &str) -> PodBuilder {
        PodBuilder {
            cluster: self.clone(),
            name: name.to_string(),
            hostname: None,
            env: Vec::new(),
            files: Vec::new(),
            binds: Vec::new(),
            command: None,
            server: None,
            workdir: None,
            setups: Vec::new(),
        }
    }

    /// Adds a cluster-only service `NAME.cluster.test`: a virtual IP in `10.96.N.0/24` whose
    /// `port` (TCP and UDP) is DNAT-ed to `pod:target_port`. Reachable from pods, not from the
    /// host.
    pub fn expose(
        &self,
        name: &str,
        port: u16,
        pod: &Pod,
        target_port: u16,
    ) -> Result<ServiceInfo> {
        net::service_add(self.name(), name, None, port, pod.ip(), target_port)
    }

    /// Adds (or replaces) a DNS record `name -> ip` (PTR included) on the cluster DNS server.
    pub fn add_dns_record(&self, name: &str, ip: IpAddr) -> Result<()> {
        net::dns_add(self.name(), name, ip).map(drop)
    }

    /// Runs `f` on a thread inside the infra namespace (where the bridge is).
    pub fn in_infra_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        sys::in_netns(&self.inner.net.netns_path, f)
    }
}

/// A server of `tether-testsrv` to run as a pod's main process; its instance name is the pod name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TestServer {
    /// `http-echo`: HTTP/1.1 and h2c, answers JSON with `"instance":"POD"`.
    HttpEcho {
        /// Port.
        port: u16,
    },
    /// `tcp-echo`.
    TcpEcho {
        /// Port.
        port: u16,
    },
    /// `udp-echo`.
    UdpEcho {
        /// Port.
        port: u16,
    },
}

impl TestServer {
    fn args(&self, instance: &str) -> (Vec<String>, u16, Proto) {
        let (kind, port, proto) = match self {
            TestServer::HttpEcho { port } => ("http-echo", *port, Proto::Tcp),
            TestServer::TcpEcho { port } => ("tcp-echo", *port, Proto::Tcp),
            TestServer::UdpEcho { port } => ("udp-echo", *port, Proto::Udp),
        };
        let mut args = vec![
            POD_TESTSRV.to_string(),
            kind.to_string(),
            "--port".into(),
            port.to_string(),
        ];
        if kind == "http-echo" {
            args.extend(["--name".to_string(), instance.to_string()]);
        }
        (args, port, proto)
    }
}

/// Describes a pod; [`PodBuilder::start`] creates it.
#[must_use = "a PodBuilder does nothing until start()"]
pub struct PodBuilder {
    cluster: TestCluster,
    name: String,
    hostname: Option<String>,
    env: Vec<(String, String)>,
    files: Vec<(PathBuf, Vec<u8>, u32)>,
    binds: Vec<Bind>,
    command: Option<Vec<String>>,
    server: Option<TestServer>,
    workdir: Option<PathBuf>,
    setups: Vec<RootSetup>,
}

/// A closure laying out a pod's root directory (host path) before the pod starts.
type RootSetup = Box<dyn FnOnce(&Path) -> std::io::Result<()> + Send>;

impl std::fmt::Debug for PodBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodBuilder")
            .field("name", &self.name)
            .finish()
    }
}

impl PodBuilder {
    /// Hostname in the pod's UTS namespace and /etc/hostname (default: the pod name).
    pub fn hostname(mut self, h: &str) -> Self {
        self.hostname = Some(h.to_string());
        self
    }

    /// Adds an environment variable of the main process (and of [`Pod::command`]s).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (k, v) in vars {
            self = self.env(k.as_ref(), v.as_ref());
        }
        self
    }

    /// Runs `f` with the host path of the pod's root before the main process starts, after the
    /// testkit wrote /etc and the [`PodBuilder::file`]s: for directories, symlinks, modes.
    ///
    /// ```no_run
    /// # fn f(cluster: &tether_testkit::TestCluster) -> tether_testkit::Result<()> {
    /// let pod = cluster
    ///     .pod("files")
    ///     .setup(|root| {
    ///         std::fs::create_dir_all(root.join("data/sub"))?;
    ///         std::os::unix::fs::symlink("/etc/hostname", root.join("data/link"))
    ///     })
    ///     .start()?;
    /// # Ok(()) }
    /// ```
    pub fn setup(mut self, f: impl FnOnce(&Path) -> std::io::Result<()> + Send + 'static) -> Self {
        self.setups.push(Box::new(f));
        self
    }

    /// Writes a file (mode 0644) at an absolute path inside the pod's root.
    pub fn file(mut self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Self {
        self.files.push((
            path.as_ref().to_path_buf(),
            contents.as_ref().to_vec(),
            0o644,
        ));
        self
    }

    /// Writes an executable file (mode 0755), e.g. a shell script.
    pub fn executable(mut self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Self {
        self.files.push((
            path.as_ref().to_path_buf(),
            contents.as_ref().to_vec(),
            0o755,
        ));
        self
    }

    /// Bind-mounts a host file or directory at `target` inside the pod.
    pub fn bind(
        mut self,
        source: impl AsRef<Path>,
        target: impl AsRef<Path>,
        read_only: bool,
    ) -> Self {
        self.binds.push(Bind {
            source: source.as_ref().to_path_buf(),
            target: target.as_ref().to_path_buf(),
            read_only,
        });
        self
    }

    /// Main process command (looked up in the pod's PATH). Default: `sleep infinity`, or the
    /// server set with [`PodBuilder::server`].
    pub fn command<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.command = Some(args.into_iter().map(Into::into).collect());
        self.server = None;
        self
    }

    /// Runs a test server as the main process; `start` returns once it listens.
    pub fn server(mut self, server: TestServer) -> Self {
        self.server = Some(server);
        self.command = None;
        self
    }

    /// Working directory of the main process (default `/`).
    pub fn workdir(mut self, dir: impl AsRef<Path>) -> Self {
        self.workdir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Creates the sandbox, the root, and starts the main process. When it returns, the main
    /// process has entered the pod (network, mount and UTS namespaces, root) and exec'd its
    /// program, so `/proc/PID/root` and `/proc/PID/environ` are the pod's; with a
    /// [`PodBuilder::server`] it also listens.
    pub fn start(mut self) -> Result<Pod> {
        if !state::is_dns_label(&self.name) || self.name.len() > 40 {
            return Err(Error::invalid(
                "pod name",
                &self.name,
                "use a DNS label of at most 40 letters, digits and '-'",
            ));
        }
        let cluster = self.cluster.clone();
        let sb_name = format!("{}-{}", cluster.name(), self.name);
        let hostname = self.hostname.clone().unwrap_or_else(|| self.name.clone());
        let sb = net::sandbox_create(
            cluster.name(),
            &sb_name,
            &SandboxOptions {
                hostname: Some(hostname),
                dns_names: Some(vec![format!("{}.{POD_DOMAIN}", self.name)]),
            },
        )?;
        // From here on the Pod guard owns the sandbox, so every failure below cleans up.
        let mut pod = Pod {
            cluster,
            root: sb.state_dir.join("root"),
            log: sb.state_dir.join("main.log"),
            sb,
            name: self.name.clone(),
            env: self.env.clone(),
            child: Mutex::new(None),
            pid: 0,
        };
        pod.pid = self.launch(&pod)?;
        Ok(pod)
    }

    fn launch(&mut self, pod: &Pod) -> Result<u32> {
        let root = &pod.root;
        write_root(root, &pod.sb)?;
        for (path, contents, mode) in &self.files {
            pod.write_file_mode(path, contents, *mode)?;
        }
        for f in self.setups.drain(..) {
            f(root).ctx(|| format!("setting up the root of pod {}", self.name))?;
        }
        let mut binds = vec![Bind {
            source: testsrv_bin()?,
            target: PathBuf::from(POD_TESTSRV),
            read_only: true,
        }];
        binds.extend(self.binds.iter().cloned());
        let (args, ready) = match (&self.server, &self.command) {
            (Some(s), _) => {
                let (args, port, proto) = s.args(&self.name);
                (args, Some((port, proto)))
            }
            (None, Some(c)) if !c.is_empty() => (c.clone(), None),
            _ => (vec!["sleep".into(), "infinity".into()], None),
        };
        let spec = ContainerSpec {
            netns: Some(pod.sb.netns_path.clone()),
            hostname: Some(pod.sb.hostname.clone()),
            root: Some(root.clone()),
            etc_overlay: None,
            binds,
            workdir: self.workdir.clone(),
            new_session: true,
        };
        let prepared = spec.prepare()?;
        let log = fs::File::create(&pod.log).ctx(|| format!("creating {}", pod.log.display()))?;
        let mut cmd = Command::new(&args[0]);
        cmd.args(&args[1..])
            .env_clear()
            .envs(pod_env(&self.env))
            .stdin(Stdio::null())
            .stdout(log.try_clone().ctx(|| "duplicating log fd".into())?)
            .stderr(log);
        prepared.install(&mut cmd);
        // spawn returns once the child has entered the pod and exec'd (or failed doing so).
        let mut child = cmd.spawn().map_err(|e| Error::Exited {
            what: format!("pod {} main process `{}`", self.name, args.join(" ")),
            status: format!("could not start: {e}"),
            detail: sys::log_tail(&pod.log, 10),
        })?;
        let pid = child.id();
        if let Some((port, proto)) = ready {
            let ok = sys::wait_until(READY_TIMEOUT, || {
                sys::is_listening(pid, port, proto) || matches!(child.try_wait(), Ok(Some(_)))
            });
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::Exited {
                    what: format!("pod {} server", self.name),
                    status: status.to_string(),
                    detail: sys::log_tail(&pod.log, 10),
                });
            }
            if !ok {
                *pod.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
                return Err(Error::Timeout {
                    what: format!("pod {} server to listen on port {port}", self.name),
                    timeout: READY_TIMEOUT,
                    detail: sys::log_tail(&pod.log, 10),
                });
            }
        }
        *pod.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(pid)
    }
}

/// The pod env plus a default PATH when it has none.
fn pod_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// The pod's own /etc and home: generated network files (same as the sandbox's), a resolver
/// config that asks /etc/hosts then DNS, and a root user.
fn write_root(root: &Path, sb: &SandboxInfo) -> Result<()> {
    for d in ["etc", "root", "tmp", "run"] {
        sys::create_dir_all(&root.join(d))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))
        .ctx(|| format!("chmod {}/tmp", root.display()))?;
    let mut files: Vec<(&str, String)> = net::etc_files(sb).into_iter().collect();
    files.push((
        "nsswitch.conf",
        "hosts: files dns\npasswd: files\ngroup: files\n".into(),
    ));
    files.push((
        "passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            .into(),
    ));
    files.push(("group", "root:x:0:\nnogroup:x:65534:\n".into()));
    for (name, text) in files {
        let p = root.join("etc").join(name);
        fs::write(&p, text).ctx(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// A running test pod: a sandbox (network namespace, veth, IP), a root directory it sees as `/`,
/// a hostname, an environment, and a main process. Dropping it kills every process in the pod and
/// removes the sandbox and the root.
pub struct Pod {
    cluster: TestCluster,
    sb: SandboxInfo,
    name: String,
    root: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Mutex<Option<Child>>,
    pid: u32,
}

impl std::fmt::Debug for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pod")
            .field("name", &self.name)
            .field("ip", &self.sb.ip)
            .field("pid", &self.pid)
            .finish()
    }
}

impl Pod {
    /// Pod name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hostname inside the pod.
    pub fn hostname(&self) -> &str {
        &self.sb.hostname
    }

    /// The pod's IP (on `eth0` inside its namespace).
    pub fn ip(&self) -> Ipv4Addr {
        self.sb.ip
    }

    /// DNS name, `NAME.pods.test`.
    pub fn dns_name(&self) -> String {
        format!("{}.{POD_DOMAIN}", self.name)
    }

    /// Pid of the main process: `/proc/PID/ns/net`, `/proc/PID/root`, `/proc/PID/environ` are the
    /// pod's (what the agent targets).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Name of the pod's network namespace (`ip netns` name).
    pub fn netns(&self) -> &str {
        &self.sb.netns
    }

    /// Path of the pod's network namespace (`/run/netns/...`).
    pub fn netns_path(&self) -> &Path {
        &self.sb.netns_path
    }

    /// Host path of the directory the pod sees as `/`. Files written here are visible in the pod.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Host path of an absolute path inside the pod.
    pub fn host_path(&self, pod_path: impl AsRef<Path>) -> PathBuf {
        let rel = pod_path
            .as_ref()
            .strip_prefix("/")
            .unwrap_or(pod_path.as_ref());
        self.root.join(rel)
    }

    /// Environment given to the pod (without the default PATH).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The sandbox record (network namespace, veth, gateway, DNS).
    pub fn sandbox(&self) -> &SandboxInfo {
        &self.sb
    }

    /// The cluster this pod belongs to.
    pub fn cluster(&self) -> &TestCluster {
        &self.cluster
    }

    /// Path of the main process's stdout+stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The main process's output so far.
    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Writes a file (mode 0644) inside the pod, creating parent directories.
    pub fn write_file(&self, pod_path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<()> {
        self.write_file_mode(pod_path.as_ref(), contents.as_ref(), 0o644)
    }

    fn write_file_mode(&self, pod_path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        if !pod_path.is_absolute() || pod_path.components().any(|c| c.as_os_str() == "..") {
            return Err(Error::invalid(
                "pod path",
                pod_path.display().to_string(),
                "must be absolute without `..`",
            ));
        }
        let p = self.host_path(pod_path);
        if let Some(dir) = p.parent() {
            sys::create_dir_all(dir)?;
        }
        fs::write(&p, contents).ctx(|| format!("writing {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .ctx(|| format!("chmod {}", p.display()))
    }

    /// A command that runs inside the pod (its network, UTS and mount namespaces, so its root,
    /// hostname and resolver), with the pod's environment. `program` is looked up in the pod's
    /// PATH. Add args and spawn it as usual; do not set `current_dir` (use `cd` in a shell).
    pub fn command(&self, program: impl AsRef<str>) -> Result<Command> {
        let prepared = container::join(self.pid, None)?;
        let mut cmd = Command::new(program.as_ref());
        cmd.env_clear()
            .envs(pod_env(&self.env))
            .stdin(Stdio::null());
        prepared.install(&mut cmd);
        Ok(cmd)
    }

    /// Runs a command inside the pod to completion and returns its output (any exit status).
    pub fn exec<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_string()).collect();
        let Some((program, rest)) = args.split_first() else {
            return Err(Error::invalid("command", "", "empty"));
        };
        let mut cmd = self.command(program)?;
        cmd.args(rest);
        cmd.output()
            .ctx(|| format!("running `{}` in pod {}", args.join(" "), self.name))
    }

    /// Runs `f` on a thread inside the pod's network namespace: sockets it creates belong to the
    /// pod (e.g. `TcpStream::connect` to another pod or a service).
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        sys::in_netns(&self.sb.netns_path, f)
    }

    /// Waits until a socket listens on `port` in the pod's network namespace.
    pub fn wait_listening(&self, port: u16, proto: Proto, timeout: Duration) -> Result<()> {
        if sys::wait_until(timeout, || sys::is_listening(self.pid, port, proto)) {
            Ok(())
        } else {
            Err(Error::Timeout {
                what: format!("port {port} ({proto:?}) in pod {}", self.name),
                timeout,
                detail: sys::log_tail(&self.log, 10),
            })
        }
    }

    /// Waits up to `timeout` for the main process to exit; `None` if it still runs.
    pub fn wait_exit(&self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        sys::wait_until(timeout, || {
            let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
            status = guard.as_mut().and_then(|c| c.try_wait().ok().flatten());
            status.is_some()
        });
        status
    }

    /// Whether the main process is still running.
    pub fn is_running(&self) -> bool {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // The main process leads its own process group (setsid): kill the group.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = net::sandbox_delete(&self.sb.name) {
            eprintln!("tether-testkit: deleting pod {}: {e}", self.name);
        }
    }
}
