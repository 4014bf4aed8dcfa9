//! Test pods and test clusters made of real network namespaces.
//!
//! Start with [`TestCluster`] and [`Pod`]:
//!
//! ```no_run
//! # fn main() -> tether_testkit::Result<()> {
//! use tether_testkit::{TestCluster, TestServer};
//! let cluster = TestCluster::new("my-test")?;
//! let pod = cluster
//!     .pod("web")
//!     .env("GREETING", "hello")
//!     .file("/app/data.txt", "payload")
//!     .server(TestServer::HttpEcho { port: 8080 })
//!     .start()?;
//! // The agent targets these:
//! let (_pid, _ip, _netns, _root) = (pod.pid(), pod.ip(), pod.netns_path(), pod.root());
//! # Ok(()) }
//! ```
//!
//! Modules:
//! - [`net`]: networks (a bridge in its own "infra" network namespace, a DNS server), sandboxes
//!   (a network namespace with a veth and an IP), services (virtual IP + DNAT), DNS records.
//!   Shared with the `tether-testnet` CLI.
//! - [`container`]: entering a sandbox with a new mount and UTS namespace and a private root.
//! - [`cleanup_stale`] / [`cleanup_all`]: sweeping leftovers of dead test processes.
//! - [`pattern`]: deterministic stream payloads that show lost, repeated or reordered bytes.
//!
//! Everything needs root (CI runs as root) and `ip` from iproute2; services need `iptables`.

mod agent;
mod cleanup;
mod cluster;
pub mod container;
mod error;
pub mod net;
mod payload;
mod state;
mod sys;
mod testsrv;

pub use agent::AgentProcess;
pub use cleanup::{CleanupReport, cleanup_all, cleanup_stale};
pub use cluster::{POD_TESTSRV, Pod, PodBuilder, TestCluster, TestServer};
pub use error::{Error, Result};
pub use payload::pattern;
pub use state::{
    CLUSTER_DOMAIN, DnsRecord, NetworkInfo, POD_DOMAIN, SandboxInfo, ServiceInfo, base_dir,
};
pub use sys::{ProcessId, Proto, free_port};
pub use testsrv::{TESTSRV, testsrv_bin};
