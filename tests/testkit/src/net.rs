//! Low-level network operations shared by the library ([`crate::TestCluster`]) and the
//! `tether-testnet` CLI: networks (bridge in an infra namespace + DNS server), sandboxes
//! (namespace + veth + IP), services (virtual IP + DNAT) and DNS records.
//!
//! Topology of network `N` with index `i`:
//! ```text
//! host netns:        unreachable 10.244.i.0/24, unreachable 10.96.i.0/24  (nothing leaves the host)
//! tt-net-N:          br0 10.244.i.1/24 (gateway, DNS server on :53), vethK per sandbox,
//!                    iptables nat: service VIP -> backend, masquerade of DNAT-ed traffic
//! tt-pod-SB:         lo, eth0 10.244.i.K/24, default via 10.244.i.1
//! ```
//! Every function here is idempotent and takes the registry lock.

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::state::{
    self, BRIDGE, CLUSTER_DOMAIN, DnsRecord, Lock, NETNS_DIR, NetworkInfo, POD_DOMAIN, ROUTE_PROTO,
    SandboxInfo, ServiceInfo,
};
use crate::sys::{self, ProcessId, Proto};

/// How to create a network.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// The network is removed by [`crate::cleanup_stale`] once this process is gone.
    /// `None`: it lives until [`network_down`].
    pub owner_pid: Option<u32>,
    /// The `tether-testsrv` binary that serves the network's DNS.
    pub testsrv: PathBuf,
}

/// How to create a sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Hostname for the generated /etc/hostname and /etc/hosts (default: the sandbox name,
    /// truncated to 63 bytes).
    pub hostname: Option<String>,
    /// DNS names for the sandbox IP. Default: `HOSTNAME.pods.test` when the hostname is a valid
    /// DNS label.
    pub dns_names: Option<Vec<String>>,
}

fn netns_path(netns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns)
}

/// Infra namespace name of a network.
pub fn network_netns(name: &str) -> String {
    format!("tt-net-{name}")
}

/// Namespace name of a sandbox.
pub fn sandbox_netns(name: &str) -> String {
    format!("tt-pod-{name}")
}

/// Creates the network, or returns it if it already exists and works (its DNS server is
/// restarted if it died).
pub fn network_up(name: &str, opts: &NetworkOptions) -> Result<NetworkInfo> {
    state::validate_name("network name", name)?;
    sys::preflight()?;
    let owner = match opts.owner_pid {
        Some(pid) => Some(ProcessId::of(pid).ok_or_else(|| {
            Error::invalid("owner pid", pid.to_string(), "no such running process")
        })?),
        None => None,
    };
    let _lock = Lock::acquire()?;
    if let Some(mut existing) = state::load_network(name)? {
        if existing.netns_path.exists() {
            // The latest `up` decides who owns the network (e.g. a restarted test node).
            let mut changed = existing.owner != owner;
            existing.owner = owner;
            if !existing.dns_server.is_some_and(|p| p.is_alive()) {
                existing.dns_server = Some(start_dns(&existing, &opts.testsrv)?);
                changed = true;
            }
            if changed {
                state::save_network(&existing)?;
            }
            return Ok(existing);
        }
        // Half-made or its namespace was deleted by hand: rebuild from scratch.
        teardown_network(&existing)?;
    }

    let used: BTreeSet<u8> = state::network_names()
        .iter()
        .filter_map(|n| state::load_network(n).ok().flatten())
        .map(|n| n.index)
        .collect();
    let index = next_free_index(&used).ok_or(Error::SubnetsExhausted)?;
    let gateway = Ipv4Addr::new(10, 244, index, 1);
    let netns = network_netns(name);
    let state_dir = state::networks_dir().join(name);
    let mut info = NetworkInfo {
        name: name.to_string(),
        netns_path: netns_path(&netns),
        netns,
        bridge: BRIDGE.to_string(),
        index,
        subnet: format!("10.244.{index}.0/24"),
        gateway,
        dns: gateway,
        service_cidr: format!("10.96.{index}.0/24"),
        pod_domain: POD_DOMAIN.to_string(),
        cluster_domain: CLUSTER_DOMAIN.to_string(),
        dns_records: state_dir.join("dns.hosts"),
        dns_log: state_dir.join("dns.log"),
        state_dir,
        owner,
        dns_server: None,
        host_routes: vec![
            format!("10.244.{index}.0/24"),
            format!("10.96.{index}.0/24"),
        ],
        records: Vec::new(),
        services: Vec::new(),
    };
    // Registered first, so a crash below leaves a record for cleanup.
    state::save_network(&info)?;
    if let Err(e) = build_network(&mut info, &opts.testsrv) {
        let _ = teardown_network(&info);
        return Err(e);
    }
    state::save_network(&info)?;
    Ok(info)
}

fn build_network(info: &mut NetworkInfo, testsrv: &Path) -> Result<()> {
    let ctx = format!("creating network {}", info.name);
    // A namespace of that name without state (its state was removed by hand): ours to replace.
    delete_netns(&info.netns)?;
    sys::ip(None, ["netns", "add", &info.netns], &ctx)?;
    sys::ip_batch(
        Some(&info.netns),
        &[
            "link set lo up".into(),
            // A fixed MAC: by default a bridge takes the lowest MAC of its ports, so it would change
            // under the pods' ARP caches as sandboxes come and go (seconds of lost packets).
            format!(
                "link add {BRIDGE} address 02:74:74:{:02x}:00:01 type bridge",
                info.index
            ),
            format!("addr add {}/24 dev {BRIDGE}", info.gateway),
            format!("link set {BRIDGE} up"),
        ],
        &ctx,
    )?;
    // Routing between pods and service VIPs happens in the infra namespace.
    sys::in_netns(&info.netns_path, || {
        fs::write("/proc/sys/net/ipv4/ip_forward", "1")
    })?
    .ctx(|| format!("{ctx}: enabling ip_forward in {}", info.netns))?;
    for prefix in &info.host_routes {
        add_host_route(prefix, &ctx)?;
    }
    write_records(info)?;
    info.dns_server = Some(start_dns(info, testsrv)?);
    Ok(())
}

fn add_host_route(prefix: &str, ctx: &str) -> Result<()> {
    sys::ip(
        None,
        [
            "route",
            "replace",
            "unreachable",
            prefix,
            "proto",
            ROUTE_PROTO,
        ],
        ctx,
    )
    .map(drop)
}

/// Starts `tether-testsrv dns` inside the infra namespace, listening on the gateway address.
fn start_dns(info: &NetworkInfo, testsrv: &Path) -> Result<ProcessId> {
    let log = fs::File::create(&info.dns_log)
        .ctx(|| format!("creating DNS log {}", info.dns_log.display()))?;
    let mut cmd = sys::command_in_netns(&info.netns_path, testsrv)?;
    cmd.arg("dns")
        .arg("--port")
        .arg("53")
        .arg("--bind")
        .arg(info.dns.to_string())
        .arg("--records")
        .arg(&info.dns_records)
        .stdin(Stdio::null())
        .stdout(log.try_clone().ctx(|| "duplicating log fd".into())?)
        .stderr(log)
        .process_group(0);
    use std::os::unix::process::CommandExt as _;
    let child = cmd
        .spawn()
        .ctx(|| format!("starting DNS server {}", testsrv.display()))?;
    let pid = child.id();
    // The child is not waited for here; kill_process reaps it, and if this process exits first
    // it is reparented.
    drop(child);
    let ok = sys::wait_until(Duration::from_secs(10), || {
        sys::is_listening(pid, 53, Proto::Udp) || ProcessId::of(pid).is_none()
    });
    let Some(id) = ProcessId::of(pid) else {
        return Err(Error::Exited {
            what: format!("DNS server of network {}", info.name),
            status: "see log".into(),
            detail: sys::log_tail(&info.dns_log, 10),
        });
    };
    if !ok {
        sys::kill_process(id);
        return Err(Error::Timeout {
            what: format!("DNS server of network {} to listen", info.name),
            timeout: Duration::from_secs(10),
            detail: sys::log_tail(&info.dns_log, 10),
        });
    }
    Ok(id)
}

/// Removes a network with all its sandboxes; `false` if it did not exist.
pub fn network_down(name: &str) -> Result<bool> {
    sys::preflight()?;
    let _lock = Lock::acquire()?;
    let Some(info) = state::load_network(name)? else {
        // A namespace may be left without a state file: remove it all the same.
        let path = netns_path(&network_netns(name));
        if path.exists() {
            delete_netns(&network_netns(name))?;
            return Ok(true);
        }
        return Ok(false);
    };
    teardown_network(&info)?;
    Ok(true)
}

/// Tears a network down; the caller holds the lock.
pub(crate) fn teardown_network(info: &NetworkInfo) -> Result<()> {
    for sb in state::sandboxes_of(&info.name) {
        teardown_sandbox(&sb)?;
    }
    if let Some(p) = info.dns_server {
        sys::kill_process(p);
    }
    delete_netns(&info.netns)?;
    let others: Vec<NetworkInfo> = state::network_names()
        .iter()
        .filter(|n| **n != info.name)
        .filter_map(|n| state::load_network(n).ok().flatten())
        .collect();
    for prefix in &info.host_routes {
        // A /32 route for an explicit service IP may be shared with another network.
        if others.iter().any(|o| o.host_routes.contains(prefix)) {
            continue;
        }
        del_host_route(prefix);
    }
    sys::remove_tree(&info.state_dir)
}

pub(crate) fn del_host_route(prefix: &str) {
    let _ = sys::ip(
        None,
        ["route", "del", "unreachable", prefix, "proto", ROUTE_PROTO],
        "removing host route",
    );
}

/// Kills everything inside a named namespace, then deletes it. Missing namespaces are fine.
pub(crate) fn delete_netns(netns: &str) -> Result<()> {
    let path = netns_path(netns);
    if !path.exists() {
        return Ok(());
    }
    sys::kill_netns_processes(&path);
    match sys::ip(
        None,
        ["netns", "del", netns],
        &format!("deleting network namespace {netns}"),
    ) {
        Err(_) if !path.exists() => Ok(()),
        r => r.map(drop),
    }
}

/// Info of a registered network.
pub fn network_info(name: &str) -> Result<NetworkInfo> {
    state::load_network(name)?.ok_or_else(|| Error::NotFound {
        kind: "network",
        name: name.to_string(),
        help: "create it with `tether-testnet network up NAME`".into(),
    })
}

/// All registered networks (any owner), by name.
pub fn network_list() -> Result<Vec<NetworkInfo>> {
    let _lock = Lock::acquire()?;
    Ok(state::network_names()
        .iter()
        .filter_map(|n| state::load_network(n).ok().flatten())
        .collect())
}

/// Sandboxes of a network.
pub fn sandbox_list(network: &str) -> Result<Vec<SandboxInfo>> {
    let _lock = Lock::acquire()?;
    Ok(state::sandboxes_of(network))
}

/// Info of a registered sandbox.
pub fn sandbox_info(name: &str) -> Result<SandboxInfo> {
    state::load_sandbox(name)?.ok_or_else(|| Error::NotFound {
        kind: "sandbox",
        name: name.to_string(),
        help: "create it with `tether-testnet sandbox create --network NET --name SB`".into(),
    })
}

/// Creates a sandbox on `network`, or returns the existing one with the same name and network.
pub fn sandbox_create(network: &str, name: &str, opts: &SandboxOptions) -> Result<SandboxInfo> {
    state::validate_name("sandbox name", name)?;
    sys::preflight()?;
    let hostname = opts.hostname.clone().unwrap_or_else(|| {
        let mut h = name.to_string();
        h.truncate(63);
        h
    });
    if hostname.is_empty()
        || hostname.len() > 64
        || hostname.bytes().any(|b| b.is_ascii_whitespace() || b == 0)
    {
        return Err(Error::invalid(
            "hostname",
            hostname,
            "use 1-64 bytes without whitespace",
        ));
    }
    let _lock = Lock::acquire()?;
    let mut net = network_info(network)?;
    if let Some(existing) = state::load_sandbox(name)? {
        if existing.network != network {
            return Err(Error::Conflict {
                kind: "sandbox",
                name: name.into(),
                reason: format!("it is attached to network `{}`", existing.network),
                help:
                    "sandbox names are unique on the machine: pick another name or delete it first"
                        .into(),
            });
        }
        if existing.netns_path.exists() {
            return Ok(existing);
        }
        teardown_sandbox(&existing)?;
    }

    let used: BTreeSet<Ipv4Addr> = state::sandboxes_of(network).iter().map(|s| s.ip).collect();
    let host = (2..=254u8)
        .find(|h| !used.contains(&Ipv4Addr::new(10, 244, net.index, *h)))
        .ok_or_else(|| Error::AddressesExhausted {
            network: network.into(),
            subnet: net.subnet.clone(),
        })?;
    let ip = Ipv4Addr::new(10, 244, net.index, host);
    let netns = sandbox_netns(name);
    let state_dir = state::sandboxes_dir().join(name);
    let dns_names = opts.dns_names.clone().unwrap_or_else(|| {
        if state::is_dns_label(&hostname) {
            vec![format!("{hostname}.{POD_DOMAIN}")]
        } else {
            Vec::new()
        }
    });
    let sb = SandboxInfo {
        name: name.to_string(),
        network: network.to_string(),
        netns_path: netns_path(&netns),
        netns,
        ip,
        prefix_len: 24,
        gateway: net.gateway,
        dns: net.dns,
        hostname,
        veth: format!("veth{host}"),
        etc_dir: state_dir.join("etc"),
        dns_names,
        state_dir,
    };
    state::save_sandbox(&sb)?;
    if let Err(e) = build_sandbox(&net, &sb) {
        let _ = teardown_sandbox(&sb);
        return Err(e);
    }
    // Refresh the DNS records with the new names.
    net = network_info(network)?;
    write_records(&net)?;
    Ok(sb)
}

fn build_sandbox(net: &NetworkInfo, sb: &SandboxInfo) -> Result<()> {
    let ctx = format!("creating sandbox {}", sb.name);
    write_etc(sb)?;
    delete_netns(&sb.netns)?;
    sys::ip(None, ["netns", "add", &sb.netns], &ctx)?;
    let veth_lines = [
        format!(
            "link add {} type veth peer name eth0 netns {}",
            sb.veth, sb.netns
        ),
        format!("link set {} master {BRIDGE} up", sb.veth),
    ];
    if sys::ip_batch(Some(&net.netns), &veth_lines, &ctx).is_err() {
        // A leftover veth from a crashed run with the same address: drop it and retry once.
        let _ = sys::ip(Some(&net.netns), ["link", "del", &sb.veth], &ctx);
        sys::ip_batch(Some(&net.netns), &veth_lines, &ctx)?;
    }
    sys::ip_batch(
        Some(&sb.netns),
        &[
            "link set lo up".into(),
            format!("addr add {}/{} dev eth0", sb.ip, sb.prefix_len),
            "link set eth0 up".into(),
            format!("route add default via {}", sb.gateway),
        ],
        &ctx,
    )
}

/// Writes the sandbox's generated /etc files (what a kubelet bind-mounts into containers).
fn write_etc(sb: &SandboxInfo) -> Result<()> {
    sys::create_dir_all(&sb.etc_dir)?;
    for (file, text) in etc_files(sb) {
        let path = sb.etc_dir.join(file);
        fs::write(&path, text).ctx(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `hostname`, `hosts`, `resolv.conf` contents for a sandbox.
pub(crate) fn etc_files(sb: &SandboxInfo) -> [(&'static str, String); 3] {
    let fqdn = sb.dns_names.first().map(String::as_str).unwrap_or("");
    [
        ("hostname", format!("{}\n", sb.hostname)),
        (
            "hosts",
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{} {}\n",
                sb.ip, sb.hostname, fqdn
            )
            .replace(" \n", "\n"),
        ),
        (
            "resolv.conf",
            format!(
                "nameserver {}\nsearch {CLUSTER_DOMAIN} {POD_DOMAIN}\noptions ndots:1 timeout:1 attempts:2\n",
                sb.dns
            ),
        ),
    ]
}

/// Deletes a sandbox (killing every process in its namespace); `false` if it did not exist.
pub fn sandbox_delete(name: &str) -> Result<bool> {
    sys::preflight()?;
    let _lock = Lock::acquire()?;
    let Some(sb) = state::load_sandbox(name)? else {
        let netns = sandbox_netns(name);
        if netns_path(&netns).exists() {
            delete_netns(&netns)?;
            return Ok(true);
        }
        return Ok(false);
    };
    teardown_sandbox(&sb)?;
    if let Ok(Some(net)) = state::load_network(&sb.network) {
        write_records(&net)?;
    }
    Ok(true)
}

/// Tears a sandbox down; the caller holds the lock.
pub(crate) fn teardown_sandbox(sb: &SandboxInfo) -> Result<()> {
    delete_netns(&sb.netns)?;
    // Deleting the namespace destroys the veth pair; this covers a half-made one.
    if let Ok(Some(net)) = state::load_network(&sb.network)
        && net.netns_path.exists()
    {
        let _ = Command::new(sys::ip_bin())
            .args(["-n", &net.netns, "link", "del", &sb.veth])
            .stderr(Stdio::null())
            .status();
    }
    sys::remove_tree(&sb.state_dir)
}

/// Rewrites the records file the DNS server serves: sandbox names, then extra records.
/// The server rereads it when it changes.
pub(crate) fn write_records(net: &NetworkInfo) -> Result<()> {
    let mut text = String::from("# generated by tether-testkit: IP NAME...\n");
    for sb in state::sandboxes_of(&net.name) {
        if !sb.dns_names.is_empty() {
            text.push_str(&format!("{} {}\n", sb.ip, sb.dns_names.join(" ")));
        }
    }
    for r in &net.records {
        text.push_str(&format!("{} {}\n", r.ip, r.name));
    }
    sys::create_dir_all(&net.state_dir)?;
    sys::write_atomic(&net.dns_records, text.as_bytes())
}

/// Adds a DNS record to the network (replacing a record with the same name).
pub fn dns_add(network: &str, name: &str, ip: IpAddr) -> Result<NetworkInfo> {
    validate_dns_name(name)?;
    let _lock = Lock::acquire()?;
    let mut net = network_info(network)?;
    net.records.retain(|r| r.name != name);
    net.records.push(DnsRecord {
        name: name.to_string(),
        ip,
    });
    state::save_network(&net)?;
    write_records(&net)?;
    Ok(net)
}

/// Removes a DNS record; `false` if there was none.
pub fn dns_remove(network: &str, name: &str) -> Result<bool> {
    let _lock = Lock::acquire()?;
    let mut net = network_info(network)?;
    let before = net.records.len();
    net.records.retain(|r| r.name != name);
    if before == net.records.len() {
        return Ok(false);
    }
    state::save_network(&net)?;
    write_records(&net)?;
    Ok(true)
}

fn validate_dns_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .trim_end_matches('.')
            .split('.')
            .all(state::is_dns_label);
    if !ok {
        return Err(Error::invalid(
            "DNS name",
            name,
            "use dot-separated labels of letters, digits and '-'",
        ));
    }
    Ok(())
}

/// Adds a cluster-only service `NAME.cluster.test`: a virtual IP (`ip`, or the next free one in
/// the network's service range) whose `port` is DNAT-ed to `target_ip:target_port` (TCP and UDP)
/// in the infra namespace. Replaces a service with the same name.
pub fn service_add(
    network: &str,
    name: &str,
    ip: Option<Ipv4Addr>,
    port: u16,
    target_ip: Ipv4Addr,
    target_port: u16,
) -> Result<ServiceInfo> {
    if !state::is_dns_label(name) {
        return Err(Error::invalid(
            "service name",
            name,
            "use a DNS label: letters, digits and '-'",
        ));
    }
    sys::preflight()?;
    sys::require_iptables()?;
    let _lock = Lock::acquire()?;
    let mut net = network_info(network)?;
    if let Some(old) = net.services.iter().find(|s| s.name == name).cloned() {
        delete_service_rules(&net, &old);
        net.services.retain(|s| s.name != name);
    }
    let ip = match ip {
        Some(ip) => ip,
        None => {
            let used: BTreeSet<Ipv4Addr> = net.services.iter().map(|s| s.ip).collect();
            (10..=254u8)
                .map(|h| Ipv4Addr::new(10, 96, net.index, h))
                .find(|a| !used.contains(a))
                .ok_or_else(|| Error::AddressesExhausted {
                    network: network.into(),
                    subnet: net.service_cidr.clone(),
                })?
        }
    };
    let ctx = format!("adding service {name} to network {network}");
    // Keep the host from routing an explicit VIP outside the service range out of its uplink.
    let [a, b, c, _] = ip.octets();
    if (a, b, c) != (10, 96, net.index) {
        let prefix = format!("{ip}/32");
        add_host_route(&prefix, &ctx)?;
        if !net.host_routes.contains(&prefix) {
            net.host_routes.push(prefix);
        }
    }
    let svc = ServiceInfo {
        name: name.to_string(),
        dns_name: format!("{name}.{CLUSTER_DOMAIN}"),
        ip,
        port,
        target_ip,
        target_port,
    };
    // Replies from a backend on the same bridge must go back through the DNAT: masquerade.
    let masq = [
        "-t",
        "nat",
        "POSTROUTING",
        "-m",
        "conntrack",
        "--ctstate",
        "DNAT",
        "-j",
        "MASQUERADE",
    ];
    if iptables(&net, "-C", &masq, &ctx).is_err() {
        iptables(&net, "-A", &masq, &ctx)?;
    }
    for args in service_rules(&svc) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        iptables(&net, "-A", &args, &ctx)?;
    }
    net.records.retain(|r| r.name != svc.dns_name);
    net.records.push(DnsRecord {
        name: svc.dns_name.clone(),
        ip: IpAddr::V4(ip),
    });
    net.services.push(svc.clone());
    state::save_network(&net)?;
    write_records(&net)?;
    Ok(svc)
}

/// Removes a service; `false` if there was none.
pub fn service_remove(network: &str, name: &str) -> Result<bool> {
    let _lock = Lock::acquire()?;
    let mut net = network_info(network)?;
    let Some(svc) = net.services.iter().find(|s| s.name == name).cloned() else {
        return Ok(false);
    };
    delete_service_rules(&net, &svc);
    net.services.retain(|s| s.name != name);
    net.records.retain(|r| r.name != svc.dns_name);
    state::save_network(&net)?;
    write_records(&net)?;
    Ok(true)
}

fn service_rules(svc: &ServiceInfo) -> Vec<Vec<String>> {
    ["tcp", "udp"]
        .iter()
        .map(|proto| {
            [
                "-t",
                "nat",
                "PREROUTING",
                "-d",
                &format!("{}/32", svc.ip),
                "-p",
                proto,
                "--dport",
                &svc.port.to_string(),
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{}:{}", svc.target_ip, svc.target_port),
            ]
            .map(String::from)
            .to_vec()
        })
        .collect()
}

fn delete_service_rules(net: &NetworkInfo, svc: &ServiceInfo) {
    for args in service_rules(svc) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = iptables(net, "-D", &args, "removing service rule");
    }
}

/// `iptables -w -t TABLE OP CHAIN RULE...` inside the network's infra namespace.
/// `args` is `["-t", table, chain, rule...]`.
fn iptables(net: &NetworkInfo, op: &str, args: &[&str], ctx: &str) -> Result<()> {
    let mut cmd = sys::command_in_netns(&net.netns_path, sys::iptables_bin())?;
    cmd.arg("-w").args(&args[..2]).arg(op).args(&args[2..]);
    sys::run(cmd, None, ctx).map(drop)
}

/// Picks the first free subnet index after the one handed out last (round robin over 1..=254),
/// so a subnet just torn down is not reused at once: a test that checks its own network's routes
/// are gone must not see a newer network that took the same subnet. Runs under the state lock.
fn next_free_index(used: &BTreeSet<u8>) -> Option<u8> {
    let last_file = state::base_dir().join("last-index");
    let last: u8 = std::fs::read_to_string(&last_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let index = (1..=254u16)
        .map(|step| ((u16::from(last) + step - 1) % 254 + 1) as u8)
        .find(|i| !used.contains(i))?;
    // Best effort: losing the hint only makes reuse sooner, never wrong.
    let _ = std::fs::write(&last_file, index.to_string());
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_etc_files() {
        let sb = SandboxInfo {
            name: "n-web".into(),
            network: "n".into(),
            netns: sandbox_netns("n-web"),
            netns_path: "/run/netns/tt-pod-n-web".into(),
            ip: Ipv4Addr::new(10, 244, 3, 7),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 244, 3, 1),
            dns: Ipv4Addr::new(10, 244, 3, 1),
            hostname: "web".into(),
            veth: "veth7".into(),
            etc_dir: "/x/etc".into(),
            dns_names: vec!["web.pods.test".into()],
            state_dir: "/x".into(),
        };
        let [(_, hostname), (_, hosts), (_, resolv)] = etc_files(&sb);
        assert_eq!(hostname, "web\n");
        assert!(
            hosts.ends_with("10.244.3.7\tweb web.pods.test\n"),
            "{hosts}"
        );
        assert!(resolv.starts_with("nameserver 10.244.3.1\nsearch cluster.test pods.test\n"));
        assert!(validate_dns_name("a.b-c.test").is_ok());
        assert!(validate_dns_name("a..b").is_err() && validate_dns_name("a_b.test").is_err());
        assert_eq!(network_netns("x"), "tt-net-x");
    }
}
