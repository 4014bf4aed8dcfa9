//! Container id -> PID of the container's main process, through the node's container runtime.
//!
//! Ids may carry the runtime as Kubernetes reports it in `status.containerStatuses[].containerID`
//! (`containerd://<id>`, `cri-o://<id>`, `docker://<id>`, `tether-test://<id>`); `--runtime auto`
//! picks the adapter from that prefix, or for a bare id asks every runtime whose socket exists.
//!
//! - [`containerd`]: containerd's tasks service (gRPC, namespace `k8s.io`).
//! - [`cri`]: CRI `RuntimeService/ContainerStatus` with `verbose` (CRI-O; containerd's CRI plugin
//!   answers it too); the pid is in the JSON of `info["info"]`.
//! - [`docker`]: `GET /containers/{id}/json` on Docker's HTTP API, `State.Pid`.
//! - [`tether_test`]: the state files of the test cluster's node.

pub mod containerd;
pub mod cri;
pub mod docker;
#[cfg(test)]
mod fake_grpc;
mod grpc;
pub mod tether_test;

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Which runtime to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// From the id's prefix, else every runtime with a socket.
    Auto,
    /// containerd.
    Containerd,
    /// CRI-O.
    Crio,
    /// Docker (dockershim / cri-dockerd nodes).
    Docker,
    /// The test cluster's node.
    TetherTest,
}

/// Errors of asking a runtime.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The runtime's socket is not there.
    #[error(
        "no {runtime} socket at {}\n  help: mount the runtime socket into the agent, or pass --target-pid",
        candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" or ")
    )]
    NoSocket {
        /// Runtime name.
        runtime: &'static str,
        /// Where we looked.
        candidates: Vec<PathBuf>,
    },
    /// Connecting or talking to the runtime failed.
    #[error("{runtime} at {socket}: {detail}")]
    Call {
        /// Runtime name.
        runtime: &'static str,
        /// Socket path.
        socket: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The runtime does not know the container.
    #[error("{runtime} has no container {id}")]
    NotFound {
        /// Runtime name.
        runtime: &'static str,
        /// The id.
        id: String,
    },
    /// The container exists but has no running process.
    #[error("container {id} is not running ({runtime} reports no pid)")]
    NotRunning {
        /// Runtime name.
        runtime: &'static str,
        /// The id.
        id: String,
    },
    /// An answer we cannot read.
    #[error("{runtime}: unexpected answer: {detail}")]
    BadAnswer {
        /// Runtime name.
        runtime: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// No runtime could be asked.
    #[error(
        "no container runtime found for {id}; tried: {tried}\n  help: pass --runtime, or --target-pid"
    )]
    NoneFound {
        /// The id.
        id: String,
        /// What each runtime said.
        tried: String,
    },
}

/// Splits `runtime://id` into the runtime named by the prefix and the bare id.
pub fn split_id(id: &str) -> (Option<RuntimeKind>, &str) {
    let prefixes = [
        ("containerd://", RuntimeKind::Containerd),
        ("cri-o://", RuntimeKind::Crio),
        ("docker://", RuntimeKind::Docker),
        ("tether-test://", RuntimeKind::TetherTest),
    ];
    for (p, kind) in prefixes {
        if let Some(rest) = id.strip_prefix(p) {
            return (Some(kind), rest);
        }
    }
    (None, id)
}

/// The first existing path of `candidates`.
fn find_socket(runtime: &'static str, candidates: &[&str]) -> Result<PathBuf, RuntimeError> {
    candidates
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map(Path::to_path_buf)
        .ok_or_else(|| RuntimeError::NoSocket {
            runtime,
            candidates: candidates.iter().map(PathBuf::from).collect(),
        })
}

/// Resolves a container id to the PID of its main process, as the agent sees it.
pub async fn container_pid(kind: RuntimeKind, id: &str) -> Result<u32, RuntimeError> {
    let (prefixed, bare) = split_id(id);
    let kind = match (kind, prefixed) {
        (RuntimeKind::Auto, Some(k)) => k,
        (k, _) => k,
    };
    match kind {
        RuntimeKind::Containerd => {
            let socket = find_socket("containerd", containerd::SOCKETS)?;
            containerd::pid(&socket, bare).await
        }
        RuntimeKind::Crio => {
            let socket = find_socket("CRI-O", cri::CRIO_SOCKETS)?;
            cri::pid(&socket, bare).await
        }
        RuntimeKind::Docker => {
            let socket = find_socket("Docker", docker::SOCKETS)?;
            docker::pid(&socket, bare).await
        }
        RuntimeKind::TetherTest => tether_test::pid(&tether_test::run_dir(), bare),
        RuntimeKind::Auto => {
            let mut tried = Vec::new();
            for k in [
                RuntimeKind::Containerd,
                RuntimeKind::Crio,
                RuntimeKind::Docker,
            ] {
                match Box::pin(container_pid(k, bare)).await {
                    Ok(pid) => return Ok(pid),
                    Err(e @ RuntimeError::NoSocket { .. }) => tried.push(e.to_string()),
                    Err(e) => tried.push(e.to_string()),
                }
            }
            Err(RuntimeError::NoneFound {
                id: id.to_owned(),
                tried: tried
                    .iter()
                    .map(|t| t.lines().next().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("; "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_pick_the_runtime() {
        assert_eq!(
            split_id("containerd://abc"),
            (Some(RuntimeKind::Containerd), "abc")
        );
        assert_eq!(split_id("cri-o://abc"), (Some(RuntimeKind::Crio), "abc"));
        assert_eq!(split_id("docker://abc"), (Some(RuntimeKind::Docker), "abc"));
        assert_eq!(
            split_id("tether-test://p-1"),
            (Some(RuntimeKind::TetherTest), "p-1")
        );
        assert_eq!(split_id("abc"), (None, "abc"));
    }
}
