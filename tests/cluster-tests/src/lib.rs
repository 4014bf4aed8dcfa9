//! Access to the test cluster of `tests/cluster` for Rust tests.
//!
//! [`cluster`] brings the cluster up with `tests/cluster/up` (which reuses a running
//! one and serialises concurrent callers with a lock) and reads the env file it
//! writes; [`Cluster::admin`] and [`Cluster::restricted`] give kube-rs clients for the
//! admin and the restricted (`tether-dev`) user. Needs root, as the cluster does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A running test cluster, as described by its env file.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Key/value pairs of the env file (`KUBECONFIG`, `TETHER_*`).
    pub env: HashMap<String, String>,
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Brings the test cluster up (or reuses the running one) and returns its description.
pub fn cluster() -> anyhow::Result<Cluster> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "test cluster: needs root (network namespaces, mounts)\nhelp: run the tests as root, as CI does"
        );
    }
    // The node maps test images to these binaries; without them sample pods sit in
    // ErrImagePull and every test would time out instead of saying why.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    for bin in ["tether-agent", "tether-testsrv"] {
        let path = target.join("debug").join(bin);
        if !path.exists() {
            bail!(
                "test cluster: {} is not built\nhelp: cargo build -p tether-agent -p tether-testkit (tests/run builds the workspace first)",
                path.display()
            );
        }
    }
    let up = repo_root().join("tests/cluster/up");
    let out = Command::new(&up)
        .output()
        .with_context(|| format!("test cluster: running {}", up.display()))?;
    if !out.status.success() {
        bail!(
            "test cluster: {} failed: {}\n{}\nhelp: see the logs under /run/tether-cluster/logs",
            up.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = std::env::var("TETHER_CLUSTER_DIR").unwrap_or_else(|_| "/run/tether-cluster".into());
    let text = std::fs::read_to_string(Path::new(&dir).join("env"))
        .with_context(|| format!("test cluster: reading {dir}/env"))?;
    let env = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Cluster { env })
}

impl Cluster {
    /// One value of the env file.
    pub fn var(&self, key: &str) -> anyhow::Result<&str> {
        self.env
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("test cluster: env file has no {key}"))
    }

    async fn client_from(&self, key: &str) -> anyhow::Result<kube::Client> {
        let path = self.var(key)?;
        let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {path}"))?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(cfg)?)
    }

    /// A client with cluster-admin rights.
    pub async fn admin(&self) -> anyhow::Result<kube::Client> {
        self.client_from("TETHER_ADMIN_KUBECONFIG").await
    }

    /// A client for `tether-dev`, who may read pods and their logs but nothing else.
    pub async fn restricted(&self) -> anyhow::Result<kube::Client> {
        self.client_from("TETHER_RESTRICTED_KUBECONFIG").await
    }
}
