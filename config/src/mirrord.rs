//! mirrord keys tether does not have: operator features, unsupported features, and settings that
//! are safe to ignore. Looked up by key path with array indices removed.

/// What tether does with a mirrord key it does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsupported {
    /// Needs the mirrord operator: an error.
    Operator,
    /// A feature tether lacks: an error, with a hint.
    Feature(&'static str),
    /// Harmless without the feature: a warning saying why it is ignored.
    Ignored(&'static str),
}

use Unsupported::{Feature, Ignored, Operator};

const REMOVE: &str = "remove it";

const TABLE: &[(&str, Unsupported)] = &[
    // Operator features.
    ("operator", Operator),
    ("multi_cluster", Operator),
    ("profile", Operator),
    ("feature.copy_target", Operator),
    ("feature.split_queues", Operator),
    ("feature.db_branches", Operator),
    ("feature.preview", Operator),
    ("feature.network.incoming.on_concurrent_steal", Operator),
    ("feature.network.incoming.tls_delivery", Operator),
    ("feature.network.incoming.https_delivery", Operator),
    ("target.path.job", Operator),
    ("target.path.cronjob", Operator),
    ("target.path.service", Operator),
    ("target.path.replicaset", Operator),
    ("target.path.workflow", Operator),
    // Features tether does not have.
    ("feature.magic", Feature(REMOVE)),
    ("experimental", Feature(REMOVE)),
    ("external_proxy", Feature(REMOVE)),
    (
        "container",
        Feature("remove it; tether runs local processes, not local containers"),
    ),
    (
        "accept_invalid_certificates",
        Feature(
            "remove it; set `insecure-skip-tls-verify` on the cluster in your kubeconfig instead",
        ),
    ),
    ("use_proxy", Feature(REMOVE)),
    ("baggage", Feature(REMOVE)),
    ("traceparent", Feature(REMOVE)),
    ("connect_tcp", Feature(REMOVE)),
    ("pause", Feature(REMOVE)),
    (
        "feature.env.mapping",
        Feature("remove it; use `feature.env.override` to set values"),
    ),
    ("feature.env.load_from_process", Feature(REMOVE)),
    ("feature.fs.mapping", Feature(REMOVE)),
    (
        "feature.network.incoming.listen_ports",
        Feature("use `port_mapping` ([[local, remote]]) instead"),
    ),
    (
        "feature.network.incoming.http_filter.header_filter_jq",
        Feature("use `header_filter`, `path_filter` or `method_filter`"),
    ),
    (
        "feature.network.incoming.http_filter.body_filter",
        Feature("use `header_filter`, `path_filter` or `method_filter`"),
    ),
    ("feature.network.outgoing.unix_streams", Feature(REMOVE)),
    // Settings of parts tether does not have: safe to ignore.
    ("telemetry", Ignored("tether sends no telemetry")),
    (
        "internal_proxy",
        Ignored("tether's daemon takes the internal proxy's place and has its own timeouts"),
    ),
    ("key", Ignored("tether names sessions itself")),
    ("ci", Ignored("tether has no `ci` mode")),
    ("api", Ignored("tether's daemon API is always on")),
    (
        "skip_build_tools",
        Ignored("use `skip_processes` to name tools to skip"),
    ),
    (
        "skip_extra_build_tools",
        Ignored("use `skip_processes` to name tools to skip"),
    ),
    (
        "startup_retry",
        Ignored("tether retries with its own policy"),
    ),
    ("sip_binaries", Ignored("macOS only; tether runs on Linux")),
    ("skip_sip", Ignored("macOS only; tether runs on Linux")),
    (
        "feature.network.ipv6",
        Ignored("tether handles IPv6 as the pod does"),
    ),
    (
        "feature.fs.readonly_file_buffer",
        Ignored("tether sizes its own read buffers"),
    ),
    (
        "agent.json_log",
        Ignored("agent logs are always structured"),
    ),
    (
        "agent.network_interface",
        Ignored("the agent works in the target's network namespace directly"),
    ),
    ("agent.flush_connections", Ignored("mirrord-agent tuning")),
    (
        "agent.disabled_capabilities",
        Ignored("mirrord-agent tuning"),
    ),
    ("agent.check_out_of_pods", Ignored("mirrord-agent tuning")),
    ("agent.external_ip_fix", Ignored("mirrord-agent tuning")),
    (
        "agent.nftables",
        Ignored("the agent detects the firewall backend itself"),
    ),
    ("agent.dns", Ignored("mirrord-agent tuning")),
    ("agent.priority_class", Ignored("mirrord-agent tuning")),
    ("agent.security_context", Ignored("use `agent.privileged`")),
    (
        "agent.metrics",
        Ignored("the agent has no metrics endpoint"),
    ),
    (
        "agent.exclude_from_mesh",
        Ignored("use `agent.annotations`"),
    ),
    (
        "agent.disable_mesh_sidecar_injection",
        Ignored("use `agent.annotations`"),
    ),
    (
        "agent.max_body_buffer_size",
        Ignored("mirrord-agent tuning"),
    ),
    (
        "agent.max_body_buffer_timeout",
        Ignored("mirrord-agent tuning"),
    ),
    (
        "agent.http_detection_timeout",
        Ignored("mirrord-agent tuning"),
    ),
    (
        "agent.clean_iptables_on_start",
        Ignored("the agent always removes stale rules"),
    ),
    ("agent.inject_headers", Ignored("mirrord-agent tuning")),
    (
        "agent.override_cache_control",
        Ignored("mirrord-agent tuning"),
    ),
    ("agent.jaq_time_limit", Ignored("mirrord-agent tuning")),
];

/// How tether treats `path` (dotted, without array indices), if it is a mirrord-only key.
pub(crate) fn classify(path: &str) -> Option<Unsupported> {
    TABLE.iter().find(|(p, _)| *p == path).map(|(_, u)| *u)
}

/// Every key path in the table (for the README drift test).
#[cfg(test)]
pub(crate) fn all_paths() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(p, _)| *p)
}

/// Message and help for an unsupported key.
pub(crate) fn describe(path: &str, key: &str, u: Unsupported) -> (String, String) {
    match u {
        Operator => (
            format!("`{path}` needs the mirrord operator, which tether does not have"),
            format!("remove `{key}`; tether starts its own agent and has no operator"),
        ),
        Feature(help) => (
            format!("`{path}` is a mirrord feature tether does not support"),
            if help == REMOVE {
                format!("remove `{key}`")
            } else {
                help.to_owned()
            },
        ),
        Ignored(why) => (
            format!("`{path}` is a mirrord setting tether ignores"),
            why.to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates() {
        for (i, (p, _)) in TABLE.iter().enumerate() {
            assert!(TABLE[..i].iter().all(|(q, _)| q != p), "duplicate {p}");
        }
    }
}
