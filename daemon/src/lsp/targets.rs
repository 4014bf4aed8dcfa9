//! Target names for completion, from the running daemon's watch cache (`targets.list`).
//!
//! The language server never starts a daemon: with none running (no discovery file, a dead pid,
//! no answer) target completions are simply absent. Every lookup is bounded by [`TIMEOUT`] so a
//! slow cluster never stalls the editor.

use std::{path::PathBuf, time::Duration};

use crate::{
    discovery::{self, Paths},
    server::api::{TargetInfo, TargetList},
};

/// The longest a completion waits for the daemon.
pub const TIMEOUT: Duration = Duration::from_millis(1500);

/// Where to list targets: the buffer's own `kube_context`, `kubeconfig` and `target.namespace`
/// when it sets them, else the daemon's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// `target.namespace`.
    pub namespace: Option<String>,
    /// `kube_context`.
    pub context: Option<String>,
    /// `kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
}

/// The targets the daemon knows in `scope`; empty when no daemon runs or it does not answer in
/// time.
pub async fn list(scope: &Scope) -> Vec<TargetInfo> {
    match tokio::time::timeout(TIMEOUT, ask(scope)).await {
        Ok(Ok(list)) => list.targets,
        Ok(Err(why)) => {
            tracing::debug!("no target completions: {why}");
            Vec::new()
        }
        Err(_) => {
            tracing::debug!("no target completions: the daemon did not answer in {TIMEOUT:?}");
            Vec::new()
        }
    }
}

async fn ask(scope: &Scope) -> Result<TargetList, String> {
    let paths = Paths::from_env().map_err(|e| e.to_string())?;
    let info = discovery::read(&paths.discovery_file())
        .map_err(|e| e.to_string())?
        .ok_or("no daemon runs")?;
    if !discovery::pid_alive(info.pid) {
        return Err(format!("the daemon's pid {} is gone", info.pid));
    }
    let client = discovery::connect(&info).await.map_err(|e| e.to_string())?;
    let params = serde_json::json!({
        "namespace": scope.namespace,
        "context": scope.context,
        "kubeconfig": scope.kubeconfig,
    });
    discovery::call(&client, "targets.list", params)
        .await
        .map_err(|e| e.to_string())
}
