//! From the typed config (`tether-config`) to what a session needs: [`SessionOptions`] and the
//! pod env changes. The only place the session code reads config types.

use tether_config::{FsMode, HttpFilter, IncomingMode, OutgoingFilter, TetherConfig};
use tether_protocol::incoming as wire;
use tether_protocol::layer::{FsAction, FsRule, NetFilter, Side};

use super::policy::SessionOptions;

fn http_filter(f: &HttpFilter) -> wire::HttpFilter {
    match f {
        HttpFilter::Header(s) => wire::HttpFilter::Header(s.clone()),
        HttpFilter::Path(s) => wire::HttpFilter::Path(s.clone()),
        HttpFilter::Method(s) => wire::HttpFilter::Method(s.clone()),
        HttpFilter::AllOf(v) => wire::HttpFilter::AllOf(v.iter().map(http_filter).collect()),
        HttpFilter::AnyOf(v) => wire::HttpFilter::AnyOf(v.iter().map(http_filter).collect()),
    }
}

fn net_filter(f: &OutgoingFilter, ignore_localhost: bool) -> NetFilter {
    match f {
        OutgoingFilter::Local(rules) => {
            let mut items: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
            if ignore_localhost {
                items.extend(["127.0.0.0/8".to_string(), "::1".to_string()]);
            }
            NetFilter {
                matching: Side::Local,
                items,
            }
        }
        OutgoingFilter::Remote(rules) => NetFilter {
            matching: Side::Remote,
            items: rules.iter().map(|r| r.to_string()).collect(),
        },
    }
}

impl SessionOptions {
    /// The session's view of a verified config.
    pub fn from_config(cfg: &TetherConfig) -> Self {
        let fs = &cfg.feature.fs;
        let mut fs_rules = Vec::new();
        let lists: [(&Vec<String>, FsAction); 4] = [
            (&fs.not_found, FsAction::NotFound),
            (&fs.local, FsAction::Local),
            (&fs.read_only, FsAction::RemoteReadOnly),
            (&fs.read_write, FsAction::RemoteReadWrite),
        ];
        for (list, action) in lists {
            // In `local` mode only `not_found` applies: nothing goes to the pod.
            if fs.mode == FsMode::Local && action != FsAction::NotFound {
                continue;
            }
            fs_rules.extend(list.iter().map(|p| FsRule {
                pattern: p.clone(),
                action,
            }));
        }
        let fs_default = match fs.mode {
            FsMode::Local | FsMode::LocalWithOverrides => FsAction::Local,
            FsMode::Read => FsAction::RemoteReadOnly,
            FsMode::Write => FsAction::RemoteReadWrite,
        };

        let net = &cfg.feature.network;
        let incoming = match net.incoming.mode {
            IncomingMode::Mirror => Some(wire::IncomingMode::Mirror),
            IncomingMode::Steal => Some(wire::IncomingMode::Steal),
            IncomingMode::Off => None,
        };
        let out = &net.outgoing;
        let outgoing_filter = match (&out.filter, out.ignore_localhost) {
            (Some(f), il) => Some(net_filter(f, il)),
            (None, true) => Some(net_filter(&OutgoingFilter::Local(Vec::new()), true)),
            (None, false) => None,
        };
        Self {
            fs_rules,
            fs_default,
            outgoing_tcp: out.tcp,
            outgoing_udp: out.udp,
            outgoing_filter,
            dns: net.dns.enabled,
            dns_filter: net.dns.filter.as_ref().map(|f| net_filter(f, false)),
            incoming,
            http_filter: net.incoming.http_filter.filter.as_ref().map(http_filter),
            http_filter_ports: net.incoming.http_filter.ports.clone(),
            ignore_ports: net.incoming.ignore_ports.clone(),
            only_ports: net.incoming.ports.clone().unwrap_or_default(),
            port_mapping: net.incoming.port_mapping.clone(),
            hostname: cfg.feature.hostname,
            skip_processes: cfg.skip_processes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> TetherConfig {
        tether_config::verify_str(
            text,
            tether_config::Format::Json,
            None,
            &Default::default(),
            &Default::default(),
        )
        .unwrap()
        .config
    }

    #[test]
    fn config_becomes_session_options() {
        let c = cfg(r#"{
            "feature": {
                "fs": { "mode": "write", "local": ["^/data/cache"], "not_found": ["secret"] },
                "network": {
                    "incoming": { "mode": "steal", "http_filter": { "header_filter": "x-user: me" },
                                  "ignore_ports": [9999] },
                    "outgoing": { "filter": { "local": ["10.0.0.0/8:5432"] } }
                },
                "hostname": false
            },
            "skip_processes": ["make"]
        }"#);
        let o = SessionOptions::from_config(&c);
        assert_eq!(o.fs_default, FsAction::RemoteReadWrite);
        assert_eq!(o.fs_rules[0].action, FsAction::NotFound);
        assert_eq!(o.fs_rules[1].action, FsAction::Local);
        assert_eq!(o.incoming, Some(wire::IncomingMode::Steal));
        assert_eq!(
            o.http_filter,
            Some(wire::HttpFilter::Header("x-user: me".into()))
        );
        assert_eq!(o.http_filter_ports, vec![80, 8080]);
        assert_eq!(o.ignore_ports, vec![9999]);
        assert_eq!(
            o.outgoing_filter,
            Some(NetFilter {
                matching: Side::Local,
                items: vec!["10.0.0.0/8:5432".into()]
            })
        );
        assert!(!o.hostname);
        assert_eq!(o.skip_processes, vec!["make".to_string()]);
    }

    #[test]
    fn local_mode_keeps_only_not_found() {
        let c = cfg(
            r#"{ "feature": { "fs": { "mode": "local", "read_write": [".*"], "not_found": ["x"] } } }"#,
        );
        let o = SessionOptions::from_config(&c);
        assert_eq!(o.fs_default, FsAction::Local);
        assert_eq!(o.fs_rules.len(), 1);
    }

    #[test]
    fn pod_env_is_filtered() {
        let c = cfg(
            r#"{ "feature": { "env": { "exclude": ["SECRET"], "override": { "X": "1" }, "unset": ["GONE"] } } }"#,
        );
        let pod: Vec<(String, String)> = [
            ("PATH", "/pod"),
            ("DB", "db"),
            ("SECRET", "s"),
            ("LD_AUDIT", "/evil.so"),
            ("TETHER_SESSION_TOKEN", "t"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let ch = crate::session::env::env_changes(&c.feature.env, &pod).unwrap();
        assert_eq!(ch.set.keys().collect::<Vec<_>>(), vec!["DB", "X"]);
        assert_eq!(ch.remove[0], "GONE");
        assert!(
            ch.remove.iter().any(|k| k == "KUBECONFIG"),
            "{:?}",
            ch.remove
        );
    }
}
