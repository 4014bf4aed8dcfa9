//! A real `tether-agent` process aimed at a test pod, for tests of the components above it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::Pod;

/// A `tether-agent` started with `--target-pid` on a pod, listening on loopback; killed on drop.
pub struct AgentProcess {
    /// The agent process.
    pub child: Child,
    /// `IP:PORT` it listens on, from its `tether-agent listening on ...` line.
    pub addr: String,
}

impl AgentProcess {
    /// Starts the agent binary `bin` against `pod` with session token `token` and waits until it
    /// listens. Panics (this is test support) when it cannot start.
    pub fn start(bin: &Path, pod: &Pod, token: &str) -> Self {
        let mut child = Command::new(bin)
            .args(["--target-pid", &pod.pid().to_string()])
            .args(["--listen", "127.0.0.1:0", "--ttl", "60"])
            .env("TETHER_AGENT_TOKEN", token)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("agent stdout");
        let addr = line
            .trim()
            .strip_prefix("tether-agent listening on ")
            .unwrap_or_else(|| panic!("unexpected agent output: {line:?}"))
            .to_owned();
        Self { child, addr }
    }

    /// Kills the agent (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
