//! Environment variables and typed overrides (CLI flags) applied over the file.
//!
//! Precedence, lowest first: defaults, the file, `MIRRORD_*` variables, `TETHER_*` variables,
//! [`Overrides`]. Flags are applied directly; they never become environment variables.

use std::{collections::BTreeMap, path::PathBuf};

use crate::{
    cx::{Cx, Origin},
    diag::{Diagnostic, Severity},
    model::{
        TetherConfig,
        env::EnvConfig,
        fs::FsMode,
        network::{HttpFilter, IncomingMode},
        target::Target,
    },
    read::{is_dns_label, split_semicolons},
};

/// The environment, injected so that loading is hermetic in tests.
pub type EnvMap = BTreeMap<String, String>;

/// Values from command-line flags (or an IDE's request), applied over the file and the env.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--target`: a target string such as `pod/api` or `targetless`.
    pub target: Option<String>,
    /// `--namespace`: the target's namespace.
    pub namespace: Option<String>,
    /// `--context`: kubeconfig context.
    pub kube_context: Option<String>,
    /// `--kubeconfig`: kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// `--agent-image`.
    pub agent_image: Option<String>,
    /// `--agent-namespace`.
    pub agent_namespace: Option<String>,
    /// `--incoming`: incoming mode.
    pub incoming_mode: Option<IncomingMode>,
    /// `--fs-mode`.
    pub fs_mode: Option<FsMode>,
    /// `--no-env`: take no pod environment variables.
    pub no_env: bool,
}

/// One supported environment variable.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    /// The tether name, e.g. `TETHER_TARGET`.
    pub name: &'static str,
    /// The mirrord name it also accepts, e.g. `MIRRORD_IMPERSONATED_TARGET`.
    pub mirrord: Option<&'static str>,
    /// The config key it sets.
    pub key: &'static str,
    apply: fn(&mut TetherConfig, &str) -> Result<(), Problem>,
}

struct Problem {
    message: String,
    help: Option<String>,
}

impl From<String> for Problem {
    fn from(message: String) -> Self {
        Self {
            message,
            help: None,
        }
    }
}

fn parse_bool(v: &str) -> Result<bool, Problem> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Problem {
            message: format!("expected `true` or `false`, found `{v}`"),
            help: None,
        }),
    }
}

fn parse_num<T: std::str::FromStr>(v: &str) -> Result<T, Problem> {
    v.trim().parse().map_err(|_| Problem {
        message: format!("expected a whole number of seconds, found `{v}`"),
        help: None,
    })
}

fn parse_target(v: &str) -> Result<Target, Problem> {
    v.parse::<Target>().map_err(|e| Problem {
        message: e.message,
        help: e.help,
    })
}

fn namespace(v: &str) -> Result<String, Problem> {
    if is_dns_label(v) {
        Ok(v.to_owned())
    } else {
        Err(format!("invalid namespace `{v}`").into())
    }
}

fn regex(v: &str) -> Result<String, Problem> {
    regex::Regex::new(v)
        .map(|_| v.to_owned())
        .map_err(|_| format!("invalid regex `{v}`").into())
}

/// Every variable tether reads, in precedence order within a key (the tether name wins).
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar {
        name: "TETHER_TARGET",
        mirrord: Some("MIRRORD_IMPERSONATED_TARGET"),
        key: "target.path",
        apply: |c, v| {
            c.target.path = Some(parse_target(v)?);
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_TARGET_NAMESPACE",
        mirrord: Some("MIRRORD_TARGET_NAMESPACE"),
        key: "target.namespace",
        apply: |c, v| {
            c.target.namespace = Some(namespace(v)?);
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_KUBE_CONTEXT",
        mirrord: Some("MIRRORD_KUBE_CONTEXT"),
        key: "kube_context",
        apply: |c, v| {
            c.kube_context = Some(v.to_owned());
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_KUBECONFIG",
        mirrord: Some("MIRRORD_KUBECONFIG"),
        key: "kubeconfig",
        apply: |c, v| {
            c.kubeconfig = Some(PathBuf::from(v));
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_AGENT_IMAGE",
        mirrord: Some("MIRRORD_AGENT_IMAGE"),
        key: "agent.image",
        apply: |c, v| {
            if v.is_empty() || v.contains(char::is_whitespace) {
                return Err(format!("invalid image `{v}`").into());
            }
            c.agent.image = Some(v.to_owned());
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_AGENT_NAMESPACE",
        mirrord: Some("MIRRORD_AGENT_NAMESPACE"),
        key: "agent.namespace",
        apply: |c, v| {
            c.agent.namespace = Some(namespace(v)?);
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_AGENT_IMAGE_PULL_POLICY",
        mirrord: Some("MIRRORD_AGENT_IMAGE_PULL_POLICY"),
        key: "agent.image_pull_policy",
        apply: |c, v| {
            c.agent.image_pull_policy = v.parse().map_err(|m: String| Problem {
                message: m,
                help: Some("expected `Always`, `IfNotPresent` or `Never`".into()),
            })?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_AGENT_TTL",
        mirrord: Some("MIRRORD_AGENT_TTL"),
        key: "agent.ttl",
        apply: |c, v| {
            c.agent.ttl = parse_num(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_AGENT_COMMUNICATION_TIMEOUT",
        mirrord: Some("MIRRORD_AGENT_COMMUNICATION_TIMEOUT"),
        key: "agent.communication_timeout",
        apply: |c, v| {
            c.agent.communication_timeout = parse_num(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_AGENT_STARTUP_TIMEOUT",
        mirrord: Some("MIRRORD_AGENT_STARTUP_TIMEOUT"),
        key: "agent.startup_timeout",
        apply: |c, v| {
            c.agent.startup_timeout = parse_num(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_AGENT_EPHEMERAL",
        mirrord: Some("MIRRORD_EPHEMERAL_CONTAINER"),
        key: "agent.ephemeral",
        apply: |c, v| {
            c.agent.ephemeral = parse_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_AGENT_PRIVILEGED",
        mirrord: Some("MIRRORD_AGENT_PRIVILEGED"),
        key: "agent.privileged",
        apply: |c, v| {
            c.agent.privileged = parse_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_AGENT_LOG_LEVEL",
        mirrord: Some("MIRRORD_AGENT_RUST_LOG"),
        key: "agent.log_level",
        apply: |c, v| {
            c.agent.log_level = v.to_owned();
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_INCOMING_MODE",
        mirrord: None,
        key: "feature.network.incoming.mode",
        apply: |c, v| {
            c.feature.network.incoming.mode = v.parse().map_err(|m: String| Problem {
                message: m,
                help: Some("expected `mirror`, `steal` or `off`".into()),
            })?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_STEAL",
        mirrord: Some("MIRRORD_AGENT_TCP_STEAL_TRAFFIC"),
        key: "feature.network.incoming.mode",
        apply: |c, v| {
            if parse_bool(v)? {
                c.feature.network.incoming.mode = IncomingMode::Steal;
            }
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_HTTP_HEADER_FILTER",
        mirrord: Some("MIRRORD_HTTP_HEADER_FILTER"),
        key: "feature.network.incoming.http_filter",
        apply: |c, v| {
            c.feature.network.incoming.http_filter.filter = Some(HttpFilter::Header(regex(v)?));
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_HTTP_PATH_FILTER",
        mirrord: Some("MIRRORD_HTTP_PATH_FILTER"),
        key: "feature.network.incoming.http_filter",
        apply: |c, v| {
            c.feature.network.incoming.http_filter.filter = Some(HttpFilter::Path(regex(v)?));
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_HTTP_FILTER_PORTS",
        mirrord: Some("MIRRORD_HTTP_FILTER_PORTS"),
        key: "feature.network.incoming.http_filter.ports",
        apply: |c, v| {
            let ports = v
                .split([',', ';'])
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| format!("invalid port `{p}`"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            c.feature.network.incoming.http_filter.ports = ports;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_FS_MODE",
        mirrord: Some("MIRRORD_FILE_MODE"),
        key: "feature.fs.mode",
        apply: |c, v| {
            c.feature.fs.mode = v.parse().map_err(|m: String| Problem {
                message: m,
                help: Some("expected `local`, `localwithoverrides`, `read` or `write`".into()),
            })?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_ENV_INCLUDE",
        mirrord: Some("MIRRORD_OVERRIDE_ENV_VARS_INCLUDE"),
        key: "feature.env.include",
        apply: |c, v| {
            c.feature.env.include = Some(split_semicolons(v));
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_ENV_EXCLUDE",
        mirrord: Some("MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE"),
        key: "feature.env.exclude",
        apply: |c, v| {
            c.feature.env.exclude = Some(split_semicolons(v));
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_TCP_OUTGOING",
        mirrord: Some("MIRRORD_TCP_OUTGOING"),
        key: "feature.network.outgoing.tcp",
        apply: |c, v| {
            c.feature.network.outgoing.tcp = parse_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_UDP_OUTGOING",
        mirrord: Some("MIRRORD_UDP_OUTGOING"),
        key: "feature.network.outgoing.udp",
        apply: |c, v| {
            c.feature.network.outgoing.udp = parse_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_REMOTE_DNS",
        mirrord: Some("MIRRORD_REMOTE_DNS"),
        key: "feature.network.dns.enabled",
        apply: |c, v| {
            c.feature.network.dns.enabled = parse_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_HOSTNAME",
        mirrord: None,
        key: "feature.hostname",
        apply: |c, v| {
            c.feature.hostname = parse_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "TETHER_SKIP_PROCESSES",
        mirrord: Some("MIRRORD_SKIP_PROCESSES"),
        key: "skip_processes",
        apply: |c, v| {
            c.skip_processes = split_semicolons(v);
            Ok(())
        },
    },
];

/// Applies the variables in `env`: mirrord names first, so tether names win.
pub(crate) fn apply_env(cx: &mut Cx<'_>, cfg: &mut TetherConfig, env: &EnvMap) {
    let mirrord = ENV_VARS.iter().filter_map(|v| Some((v.mirrord?, v)));
    let tether = ENV_VARS.iter().map(|v| (v.name, v));
    for (name, var) in mirrord.chain(tether) {
        let Some(value) = env.get(name) else { continue };
        match (var.apply)(cfg, value) {
            Ok(()) => {
                cx.origins.insert(var.key.to_owned(), Origin::Env(name));
            }
            Err(p) => cx.diags.push(
                Diagnostic::new(Severity::Error, format!("`{name}`: {}", p.message))
                    .help_opt(p.help)
                    .key(var.key),
            ),
        }
    }
}

/// Applies typed overrides (flags) last.
pub(crate) fn apply_overrides(cx: &mut Cx<'_>, cfg: &mut TetherConfig, o: &Overrides) {
    let set = |cx: &mut Cx<'_>, key: &str, flag: &'static str, r: Result<(), Problem>| match r {
        Ok(()) => {
            cx.origins.insert(key.to_owned(), Origin::Flag(flag));
        }
        Err(p) => cx.diags.push(
            Diagnostic::new(Severity::Error, format!("`{flag}`: {}", p.message))
                .help_opt(p.help)
                .key(key),
        ),
    };
    if let Some(t) = &o.target {
        let r = parse_target(t).map(|t| cfg.target.path = Some(t));
        set(cx, "target.path", "--target", r);
    }
    if let Some(ns) = &o.namespace {
        let r = namespace(ns).map(|ns| cfg.target.namespace = Some(ns));
        set(cx, "target.namespace", "--namespace", r);
    }
    if let Some(c) = &o.kube_context {
        cfg.kube_context = Some(c.clone());
        set(cx, "kube_context", "--context", Ok(()));
    }
    if let Some(k) = &o.kubeconfig {
        cfg.kubeconfig = Some(k.clone());
        set(cx, "kubeconfig", "--kubeconfig", Ok(()));
    }
    if let Some(i) = &o.agent_image {
        cfg.agent.image = Some(i.clone());
        set(cx, "agent.image", "--agent-image", Ok(()));
    }
    if let Some(ns) = &o.agent_namespace {
        let r = namespace(ns).map(|ns| cfg.agent.namespace = Some(ns));
        set(cx, "agent.namespace", "--agent-namespace", r);
    }
    if let Some(m) = o.incoming_mode {
        cfg.feature.network.incoming.mode = m;
        set(cx, "feature.network.incoming.mode", "--incoming", Ok(()));
    }
    if let Some(m) = o.fs_mode {
        cfg.feature.fs.mode = m;
        set(cx, "feature.fs.mode", "--fs-mode", Ok(()));
    }
    if o.no_env {
        cfg.feature.env = EnvConfig::disabled();
        set(cx, "feature.env.exclude", "--no-env", Ok(()));
    }
}
