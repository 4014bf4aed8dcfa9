//! On-disk registry of networks and sandboxes, shared by every process that uses the testkit
//! (test binaries, the `tether-testnet` CLI, the Go test node through that CLI).
//!
//! Layout under [`base_dir`] (default `/run/tether-testkit`, env `TETHER_TESTKIT_DIR`):
//! ```text
//! lock                              flock held for every change below
//! networks/NAME/network.json        NetworkInfo
//! networks/NAME/dns.hosts           records served by the network's DNS server (hosts format)
//! networks/NAME/dns.log             the DNS server's output
//! sandboxes/SB/sandbox.json         SandboxInfo
//! sandboxes/SB/etc/                 generated hostname, hosts, resolv.conf
//! sandboxes/SB/root/, main.log      library pods only: the pod's root and its main process log
//! ```
//! Invariant: a state file is written before the kernel objects it names are created, so a crash
//! in between leaves something [`crate::cleanup_stale`] can find.

use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::sys::{self, ProcessId};

/// Prefix of every network namespace the testkit creates (`tt-net-NAME`, `tt-pod-SB`).
pub const NETNS_PREFIX: &str = "tt-";
/// Directory where `ip netns` keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// DNS suffix of pod records (`web.pods.test`).
pub const POD_DOMAIN: &str = "pods.test";
/// DNS suffix of service records (`api.cluster.test`).
pub const CLUSTER_DOMAIN: &str = "cluster.test";
/// Name of the bridge inside each network's infra namespace.
pub const BRIDGE: &str = "br0";
/// `proto` number tagging the host routes the testkit adds, so sweeps find them.
pub(crate) const ROUTE_PROTO: &str = "116";

/// Root of the testkit's state (env `TETHER_TESTKIT_DIR`, default `/run/tether-testkit`).
pub fn base_dir() -> PathBuf {
    std::env::var_os("TETHER_TESTKIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/tether-testkit"))
}

pub(crate) fn networks_dir() -> PathBuf {
    base_dir().join("networks")
}

pub(crate) fn sandboxes_dir() -> PathBuf {
    base_dir().join("sandboxes")
}

/// A test network: a bridge with a /24 inside its own "infra" network namespace, plus its DNS
/// server. This is what `tether-testnet network up` prints as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Network name.
    pub name: String,
    /// Name of the infra network namespace holding the bridge (`tt-net-NAME`).
    pub netns: String,
    /// Path of that namespace (`/run/netns/tt-net-NAME`).
    pub netns_path: PathBuf,
    /// Bridge interface name inside the infra namespace.
    pub bridge: String,
    /// N in 10.244.N.0/24, unique among live networks.
    pub index: u8,
    /// Pod subnet, `10.244.N.0/24`.
    pub subnet: String,
    /// Bridge address and pods' default gateway, `10.244.N.1`.
    pub gateway: Ipv4Addr,
    /// Address of the network's DNS server (the gateway address, port 53).
    pub dns: Ipv4Addr,
    /// Range for service (virtual) IPs, `10.96.N.0/24`.
    pub service_cidr: String,
    /// Suffix of pod names in DNS.
    pub pod_domain: String,
    /// Suffix of service names in DNS.
    pub cluster_domain: String,
    /// Directory of this network's state files.
    pub state_dir: PathBuf,
    /// Records file the DNS server serves (hosts format: `IP NAME...`).
    pub dns_records: PathBuf,
    /// Log of the DNS server.
    pub dns_log: PathBuf,
    /// Process owning the network: when it dies, `cleanup_stale` removes the network.
    /// `None` for networks that live until `network down` (the CLI default).
    pub owner: Option<ProcessId>,
    /// The DNS server process.
    pub dns_server: Option<ProcessId>,
    /// Host routes (`unreachable PREFIX`) added so that the host never sends cluster traffic out of
    /// its uplink.
    pub host_routes: Vec<String>,
    /// Extra DNS records (services, explicit names).
    pub records: Vec<DnsRecord>,
    /// Services (virtual IPs DNAT-ed in the infra namespace).
    pub services: Vec<ServiceInfo>,
}

/// One DNS name and its address; a PTR record is served for the address too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// Fully qualified name without the trailing dot.
    pub name: String,
    /// Address (A or AAAA).
    pub ip: IpAddr,
}

/// A cluster-only service: a virtual IP in the service range, DNAT-ed to a backend in the infra
/// namespace, so only the pod network reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Service name.
    pub name: String,
    /// DNS name (`NAME.cluster.test`).
    pub dns_name: String,
    /// Virtual IP.
    pub ip: Ipv4Addr,
    /// Port on the virtual IP.
    pub port: u16,
    /// Backend address.
    pub target_ip: Ipv4Addr,
    /// Backend port.
    pub target_port: u16,
}

/// A sandbox: a network namespace with a veth on a network's bridge and its own IP (what a
/// Kubernetes pod sandbox is). This is what `tether-testnet sandbox create` prints as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// Sandbox name, unique on the machine.
    pub name: String,
    /// Network the sandbox is attached to.
    pub network: String,
    /// Network namespace name (`tt-pod-SB`).
    pub netns: String,
    /// Its path (`/run/netns/tt-pod-SB`).
    pub netns_path: PathBuf,
    /// The sandbox IP, on `eth0` inside the namespace.
    pub ip: Ipv4Addr,
    /// Prefix length of the subnet (24).
    pub prefix_len: u8,
    /// Default gateway.
    pub gateway: Ipv4Addr,
    /// DNS server (in resolv.conf).
    pub dns: Ipv4Addr,
    /// Hostname written into the generated /etc/hostname and /etc/hosts.
    pub hostname: String,
    /// Host-side veth name, inside the network's infra namespace.
    pub veth: String,
    /// Directory with the generated `hostname`, `hosts` and `resolv.conf`.
    pub etc_dir: PathBuf,
    /// DNS names that resolve to this sandbox's IP (PTR gives the first one).
    pub dns_names: Vec<String>,
    /// Directory of this sandbox's state files.
    pub state_dir: PathBuf,
}

/// Exclusive flock on the registry; held while objects are created, changed or removed.
pub(crate) struct Lock {
    _file: File,
}

impl Lock {
    pub(crate) fn acquire() -> Result<Lock> {
        let base = base_dir();
        sys::create_dir_all(&base)?;
        let path = base.join("lock");
        let f = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .ctx(|| format!("opening lock file {}", path.display()))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(
                format!("locking {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Lock { _file: f })
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::State {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        sys::create_dir_all(dir)?;
    }
    let mut text = serde_json::to_vec_pretty(value).expect("state types serialize");
    text.push(b'\n');
    sys::write_atomic(path, &text)
}

pub(crate) fn network_file(name: &str) -> PathBuf {
    networks_dir().join(name).join("network.json")
}

pub(crate) fn sandbox_file(name: &str) -> PathBuf {
    sandboxes_dir().join(name).join("sandbox.json")
}

pub(crate) fn load_network(name: &str) -> Result<Option<NetworkInfo>> {
    read_json(&network_file(name))
}

pub(crate) fn save_network(n: &NetworkInfo) -> Result<()> {
    write_json(&network_file(&n.name), n)
}

pub(crate) fn load_sandbox(name: &str) -> Result<Option<SandboxInfo>> {
    read_json(&sandbox_file(name))
}

pub(crate) fn save_sandbox(s: &SandboxInfo) -> Result<()> {
    write_json(&sandbox_file(&s.name), s)
}

fn list_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Names of all registered networks.
pub(crate) fn network_names() -> Vec<String> {
    list_names(&networks_dir())
}

/// Names of all registered sandboxes.
pub(crate) fn sandbox_names() -> Vec<String> {
    list_names(&sandboxes_dir())
}

/// All readable sandboxes of one network.
pub(crate) fn sandboxes_of(network: &str) -> Vec<SandboxInfo> {
    sandbox_names()
        .iter()
        .filter_map(|n| load_sandbox(n).ok().flatten())
        .filter(|s| s.network == network)
        .collect()
}

/// Names must be usable in file names and netns names: ASCII letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit, at most 100 bytes.
pub(crate) fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok_chars || !first_ok || name.len() > 100 {
        return Err(Error::invalid(
            what,
            name,
            "use 1-100 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit",
        ));
    }
    Ok(())
}

/// Whether `name` is a valid DNS label (so `NAME.pods.test` is a valid name).
pub(crate) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("n", "node-1_a.b").is_ok());
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(101)] {
            let err = validate_name("network name", bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid network name"), "{err}");
        }
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label("web_1") && !is_dns_label("-web") && !is_dns_label(""));
    }
}
