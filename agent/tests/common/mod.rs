//! Shared helpers of the agent's integration tests: real test pods (tether-testkit), the agent
//! binary started against a pod's PID, and a small protocol client.
//!
//! Everything needs root (CI runs as root). Networks, sandboxes and processes are removed on drop,
//! also when a test fails; networks are owned by the test process, so `tether-testnet cleanup`
//! sweeps what a killed test left.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tether_protocol::agent::{
    AgentHello, AgentMessage, ClientHello, ClientMessage, Request, Response,
};
use tether_protocol::codec::FrameCodec;
use tether_protocol::file::{FileRequest, FileResponse};
use tether_protocol::outgoing::StreamMessage;
use tether_protocol::{AgentError, PROTOCOL_VERSION, RemoteError, RequestId};
use tether_testkit::container::{Bind, ContainerSpec};
use tether_testkit::net::{self, NetworkOptions, SandboxOptions};
use tether_testkit::{NetworkInfo, SandboxInfo};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// The token every test agent gets.
pub const TOKEN: &str = "test-token-0123456789";

/// A test network (bridge, DNS server); removed on drop.
pub struct Net {
    pub info: NetworkInfo,
}

impl Net {
    /// A fresh network named after the test and this process.
    pub fn up(tag: &str) -> Net {
        let name = format!("ag{tag}{}", std::process::id() % 100_000);
        let testsrv = tether_testkit::testsrv_bin().expect("tether-testsrv binary");
        let info = net::network_up(
            &name,
            &NetworkOptions {
                owner_pid: Some(std::process::id()),
                testsrv,
            },
        )
        .expect("network up");
        Net { info }
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = net::network_down(&self.info.name);
    }
}

/// A pod: a sandbox plus one container process with its own root, env and hostname.
pub struct Pod {
    pub sandbox: SandboxInfo,
    pub root: tempfile::TempDir,
    pub child: Option<Child>,
}

/// What a test pod runs.
pub struct PodSpec<'a> {
    pub name: &'a str,
    pub hostname: &'a str,
    pub env: &'a [(&'a str, &'a str)],
    /// The command, inside the container. `/testsrv` is tether-testsrv.
    pub cmd: &'a [&'a str],
}

impl Pod {
    /// Creates the sandbox, lays out the root with `setup`, and starts the container.
    pub fn start(net: &Net, spec: PodSpec<'_>, setup: impl FnOnce(&Path)) -> Pod {
        let sb_name = format!("{}-{}", net.name(), spec.name);
        let sandbox = net::sandbox_create(
            net.name(),
            &sb_name,
            &SandboxOptions {
                hostname: Some(spec.hostname.to_owned()),
                dns_names: None,
            },
        )
        .expect("sandbox create");
        let root = tempfile::tempdir().expect("pod root");
        setup(root.path());
        let testsrv = tether_testkit::testsrv_bin().expect("tether-testsrv binary");
        let prepared = ContainerSpec {
            netns: Some(sandbox.netns_path.clone()),
            hostname: Some(spec.hostname.to_owned()),
            root: Some(root.path().to_owned()),
            etc_overlay: Some(sandbox.etc_dir.clone()),
            binds: vec![Bind {
                source: testsrv,
                target: PathBuf::from("/testsrv"),
                read_only: true,
            }],
            workdir: None,
            new_session: true,
        }
        .prepare()
        .expect("container prepare");
        let mut cmd = Command::new(spec.cmd[0]);
        cmd.args(&spec.cmd[1..])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(spec.env.iter().copied())
            .stdin(Stdio::null());
        prepared.install(&mut cmd);
        let child = cmd.spawn().expect("start the pod's container");
        let pod = Pod {
            sandbox,
            root,
            child: Some(child),
        };
        // Wait until the container entered its root: /proc/PID/root is then another directory
        // than ours (readlink would say "/" either way, relative to its own mount namespace).
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::metadata("/").expect("stat /");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let theirs = std::fs::metadata(format!("/proc/{}/root/", pod.pid()));
            if theirs.is_ok_and(|m| (m.dev(), m.ino()) != (ours.dev(), ours.ino())) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "pod never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        pod
    }

    /// A pod named `name` (also its hostname) running `cmd`, with no env and an empty root.
    pub fn run(net: &Net, name: &str, cmd: &[&str]) -> Pod {
        Pod::start(
            net,
            PodSpec {
                name,
                hostname: name,
                env: &[],
                cmd,
            },
            |_| {},
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the container (the whole process group) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill on our own child's process group.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.kill();
        let _ = net::sandbox_delete(&self.sandbox.name);
    }
}

/// A pod running `sleep` whose root has files for the file tests.
pub fn sleeper(net: &Net, name: &str, env: &[(&str, &str)]) -> Pod {
    Pod::start(
        net,
        PodSpec {
            name,
            hostname: name,
            env,
            cmd: &["/usr/bin/sleep", "3600"],
        },
        |root| {
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::create_dir_all(root.join("data/sub")).unwrap();
            std::fs::write(root.join("etc/app.conf"), "inside the pod\n").unwrap();
            std::fs::write(root.join("data/hello.txt"), "hello from the pod\n").unwrap();
            symlink("/etc/app.conf", root.join("data/abs-link")).unwrap();
            symlink(
                "../../../../../../etc/app.conf",
                root.join("data/rel-escape"),
            )
            .unwrap();
            symlink("/", root.join("data/root-link")).unwrap();
        },
    )
}

/// A running agent process.
pub struct Agent {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
}

impl Agent {
    /// Starts the agent against `pid` with `extra` arguments and waits for its ready line.
    pub async fn start(pid: u32, extra: &[&str]) -> Agent {
        let pid = pid.to_string();
        let mut args = vec!["--target-pid", &pid];
        args.extend_from_slice(extra);
        Self::spawn(&args, &[], |_| {}).await
    }

    /// Starts the agent with exactly `args` (plus `--listen 127.0.0.1:0`), extra `env`, and
    /// `customize` applied to the command (for example to drop capabilities).
    pub async fn spawn(
        args: &[&str],
        env: &[(&str, &str)],
        customize: impl FnOnce(&mut tokio::process::Command),
    ) -> Agent {
        Self::launch(&[], args, env, customize).await
    }

    /// As [`Agent::spawn`], run through `wrapper`: a command that execs its arguments (`setpriv
    /// ... --`, to start the agent with fewer capabilities).
    pub async fn spawn_wrapped(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Agent {
        Self::launch(wrapper, args, env, |_| {}).await
    }

    async fn launch(
        wrapper: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
        customize: impl FnOnce(&mut tokio::process::Command),
    ) -> Agent {
        let mut argv = wrapper.to_vec();
        argv.push(env!("CARGO_BIN_EXE_tether-agent"));
        let mut cmd = tokio::process::Command::new(argv[0]);
        cmd.args(&argv[1..])
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .envs(env.iter().copied());
        customize(&mut cmd);
        let mut child = cmd
            .env("TETHER_AGENT_TOKEN", TOKEN)
            .env("TETHER_AGENT_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start tether-agent");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("agent ready in time")
            .expect("read agent stdout")
            .expect("agent printed its address");
        let addr = line
            .strip_prefix("tether-agent listening on ")
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
            .parse()
            .expect("address");
        Agent { child, addr }
    }

    /// Connects and says hello with the right token.
    pub async fn client(&self) -> Client {
        Client::connect(self.addr, TOKEN)
            .await
            .expect("session accepted")
            .0
    }
}

/// The daemon's end of an agent connection.
pub type Link = Framed<TcpStream, FrameCodec<ClientMessage, AgentMessage>>;

/// Connects to the agent at `addr` and says hello with `token` and protocol `version`; returns
/// the link and the agent's answer (its hello, or why it refused).
pub async fn open_link(addr: SocketAddr, token: &str, version: u32) -> (Link, AgentMessage) {
    let stream = TcpStream::connect(addr).await.expect("connect to agent");
    let mut link = Framed::new(stream, FrameCodec::new());
    link.send(ClientMessage::Hello(ClientHello {
        protocol_version: version,
        token: token.to_owned(),
        client: "agent-tests".into(),
        session_id: "test".into(),
    }))
    .await
    .expect("send hello");
    let answer = tokio::time::timeout(Duration::from_secs(10), link.next())
        .await
        .expect("hello answered in time")
        .expect("agent answered")
        .expect("decodable answer");
    (link, answer)
}

/// A daemon-side client of the agent protocol.
pub struct Client {
    link: Link,
    next_id: RequestId,
    /// Messages that arrived while waiting for something else.
    pending: VecDeque<AgentMessage>,
}

impl Client {
    /// Connects and sends a hello with `token`; returns the agent's answer.
    pub async fn connect(
        addr: SocketAddr,
        token: &str,
    ) -> Result<(Client, AgentHello), AgentError> {
        Self::connect_with(addr, token, PROTOCOL_VERSION).await
    }

    /// As [`Client::connect`] with a chosen protocol version.
    pub async fn connect_with(
        addr: SocketAddr,
        token: &str,
        version: u32,
    ) -> Result<(Client, AgentHello), AgentError> {
        let (link, answer) = open_link(addr, token, version).await;
        let client = Client {
            link,
            next_id: 1,
            pending: VecDeque::new(),
        };
        match answer {
            AgentMessage::Hello(h) => Ok((client, h)),
            AgentMessage::Refused(e) => Err(e),
            other => panic!("unexpected answer to hello: {other:?}"),
        }
    }

    /// Wraps an already-connected raw link (for malformed-hello tests).
    pub async fn raw(addr: SocketAddr) -> Link {
        Framed::new(
            TcpStream::connect(addr).await.expect("connect"),
            FrameCodec::new(),
        )
    }

    /// Sends any message.
    pub async fn send(&mut self, msg: ClientMessage) {
        self.link.send(msg).await.expect("send to agent");
    }

    /// The next message from the agent (queued ones first).
    pub async fn recv(&mut self) -> AgentMessage {
        if let Some(m) = self.pending.pop_front() {
            return m;
        }
        self.recv_wire().await
    }

    /// The next message (queued ones first), waiting as long as it takes; None once the agent
    /// closed the link. For background tasks that serve the agent until they are aborted.
    pub async fn next_or_closed(&mut self) -> Option<AgentMessage> {
        match self.pending.pop_front() {
            Some(m) => Some(m),
            None => self.link.next().await.and_then(Result::ok),
        }
    }

    async fn recv_wire(&mut self) -> AgentMessage {
        tokio::time::timeout(Duration::from_secs(20), self.link.next())
            .await
            .expect("agent answered in time")
            .expect("link open")
            .expect("decodable message")
    }

    /// Sends a request without waiting; returns its id.
    pub async fn start_request(&mut self, body: Request) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.send(ClientMessage::Request { id, body }).await;
        id
    }

    /// Waits for the answer to request `id` (a `Response` or `Failed`), queueing other messages.
    pub async fn answer(&mut self, id: RequestId) -> AgentMessage {
        if let Some(pos) = self.pending.iter().position(|m| answer_id(m) == Some(id)) {
            return self.pending.remove(pos).expect("present");
        }
        loop {
            let m = self.recv_wire().await;
            if answer_id(&m) == Some(id) {
                return m;
            }
            self.pending.push_back(m);
        }
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&mut self, body: Request) -> AgentMessage {
        let id = self.start_request(body).await;
        self.answer(id).await
    }

    /// A request that must succeed at the agent level; returns the errno result.
    pub async fn call(&mut self, body: Request) -> Result<Response, RemoteError> {
        match self.request(body).await {
            AgentMessage::Response { result, .. } => result,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// A file request.
    pub async fn file(&mut self, req: FileRequest) -> Result<FileResponse, RemoteError> {
        self.call(Request::File(req)).await.map(|r| match r {
            Response::File(f) => f,
            other => panic!("expected a file response, got {other:?}"),
        })
    }

    /// The next stream message (other messages are queued). Flow-control credit is skipped:
    /// this client sends little, and tests of flow control use their own client.
    pub async fn stream_message(&mut self) -> StreamMessage {
        self.pending
            .retain(|m| !matches!(m, AgentMessage::Stream(StreamMessage::Credit { .. })));
        if let Some(pos) = self
            .pending
            .iter()
            .position(|m| matches!(m, AgentMessage::Stream(_)))
        {
            let Some(AgentMessage::Stream(s)) = self.pending.remove(pos) else {
                unreachable!()
            };
            return s;
        }
        loop {
            match self.recv_wire().await {
                AgentMessage::Stream(StreamMessage::Credit { .. }) => {}
                AgentMessage::Stream(s) => return s,
                other => self.pending.push_back(other),
            }
        }
    }
}

fn answer_id(m: &AgentMessage) -> Option<RequestId> {
    match m {
        AgentMessage::Response { id, .. } | AgentMessage::Failed { id, .. } => Some(*id),
        _ => None,
    }
}
