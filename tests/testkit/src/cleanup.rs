//! Sweeping leftovers. `Drop` guards do not run when a test process is SIGKILLed or aborts, so
//! every network records its owner process; once the owner is gone its network is stale.

use std::collections::BTreeSet;
use std::fs;

use serde::Serialize;

use crate::error::Result;
use crate::net;
use crate::state::{self, Lock, NETNS_DIR, NETNS_PREFIX, ROUTE_PROTO};
use crate::sys;

/// What a cleanup removed. Printed as JSON by `tether-testnet cleanup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Networks torn down (with their sandboxes).
    pub networks: Vec<String>,
    /// Sandboxes removed on their own (their network was gone).
    pub sandboxes: Vec<String>,
    /// Network namespaces removed that no state file named.
    pub netns: Vec<String>,
    /// Host routes removed that no network named.
    pub routes: Vec<String>,
}

impl CleanupReport {
    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
            && self.sandboxes.is_empty()
            && self.netns.is_empty()
            && self.routes.is_empty()
    }
}

/// Removes networks whose owner process is dead, sandboxes whose network is gone, and `tt-*`
/// network namespaces and testkit host routes that no live network or sandbox names. Networks
/// without owner (made by `tether-testnet network up` without `--owner-pid`) are kept.
/// Safe to run while other tests run: it takes the registry lock.
pub fn cleanup_stale() -> Result<CleanupReport> {
    sweep(false)
}

/// Removes every network, sandbox, namespace and route of the testkit, live or not.
pub fn cleanup_all() -> Result<CleanupReport> {
    sweep(true)
}

fn sweep(all: bool) -> Result<CleanupReport> {
    sys::preflight()?;
    let _lock = Lock::acquire()?;
    let mut report = CleanupReport::default();
    for name in state::network_names() {
        match state::load_network(&name) {
            Ok(Some(n)) => {
                let stale = all || n.owner.is_some_and(|o| !o.is_alive());
                if stale {
                    net::teardown_network(&n)?;
                    report.networks.push(name);
                }
            }
            // A directory without a readable state file: a crash before the first write, or a
            // corrupt file. Its namespace (if any) goes in the netns sweep below.
            _ => {
                sys::remove_tree(&state::networks_dir().join(&name))?;
                report.networks.push(name);
            }
        }
    }
    let networks: Vec<_> = state::network_names()
        .iter()
        .filter_map(|n| state::load_network(n).ok().flatten())
        .collect();
    for name in state::sandbox_names() {
        match state::load_sandbox(&name) {
            Ok(Some(sb)) => {
                if all || !networks.iter().any(|n| n.name == sb.network) {
                    net::teardown_sandbox(&sb)?;
                    report.sandboxes.push(name);
                }
            }
            _ => {
                sys::remove_tree(&state::sandboxes_dir().join(&name))?;
                report.sandboxes.push(name);
            }
        }
    }
    let mut known: BTreeSet<String> = networks.iter().map(|n| n.netns.clone()).collect();
    known.extend(
        state::sandbox_names()
            .iter()
            .filter_map(|n| state::load_sandbox(n).ok().flatten())
            .map(|s| s.netns),
    );
    let listed: Vec<String> = fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    for ns in listed {
        if ns.starts_with(NETNS_PREFIX) && !known.contains(&ns) {
            net::delete_netns(&ns)?;
            report.netns.push(ns);
        }
    }
    let routes: BTreeSet<&String> = networks.iter().flat_map(|n| &n.host_routes).collect();
    let shown = sys::ip(
        None,
        ["route", "show", "proto", ROUTE_PROTO],
        "listing host routes",
    )?;
    for line in String::from_utf8_lossy(&shown.stdout).lines() {
        let mut words = line.split_whitespace();
        let (Some("unreachable"), Some(prefix)) = (words.next(), words.next()) else {
            continue;
        };
        // `ip route show` prints /32 routes without the length.
        let prefix = if prefix.contains('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/32")
        };
        if !routes.contains(&prefix) {
            net::del_host_route(&prefix);
            report.routes.push(prefix);
        }
    }
    Ok(report)
}
