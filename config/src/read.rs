//! From the spanned tree to [`TetherConfig`]: type checks, value checks, unknown keys with
//! "did you mean", and mirrord keys tether does not have. Every problem is collected; a bad value
//! leaves that key at its default so reading goes on.

use std::{collections::BTreeMap, path::PathBuf, str::FromStr};

use regex::Regex;

use crate::{
    cx::{Cx, Origin, join},
    mirrord::{self, Unsupported},
    model::{
        TetherConfig,
        agent::{
            AgentConfig, AgentResources, ImagePullPolicy, ImagePullSecret, QUANTITY_PATTERN,
            Toleration,
        },
        env::EnvConfig,
        fs::{FsConfig, FsMode},
        network::{
            AddressRule, DnsConfig, HttpFilter, HttpFilterConfig, IncomingConfig, IncomingMode,
            NetworkConfig, OutgoingConfig, OutgoingFilter,
        },
        target::{OPERATOR_TARGET_KINDS, Target, TargetConfig},
    },
    node::{Key, Node, Value},
    suggest,
};

/// Reads the whole config; problems go to `cx`.
pub(crate) fn read_config(cx: &mut Cx<'_>, root: &Node) -> TetherConfig {
    let mut c = TetherConfig::default();
    let Some(mut o) = Obj::new(cx, root, "", "an object") else {
        return c;
    };
    if let Some(v) = o.read(cx, "target", read_target) {
        c.target = v;
    }
    if let Some(v) = o.read(cx, "kube_context", as_string) {
        c.kube_context = Some(v);
    }
    if let Some(v) = o.read(cx, "kubeconfig", as_string) {
        c.kubeconfig = Some(PathBuf::from(v));
    }
    if let Some(mut f) = o.read(cx, "feature", |cx, n, p| Obj::new(cx, n, p, "an object")) {
        if let Some(v) = f.read(cx, "env", read_env) {
            c.feature.env = v;
        }
        if let Some(v) = f.read(cx, "fs", read_fs) {
            c.feature.fs = v;
        }
        if let Some(v) = f.read(cx, "network", read_network) {
            c.feature.network = v;
        }
        if let Some(v) = f.read(cx, "hostname", as_bool) {
            c.feature.hostname = v;
        }
        f.finish(cx);
    }
    if let Some(v) = o.read(cx, "agent", read_agent) {
        c.agent = v;
    }
    if let Some(v) = o.read(cx, "skip_processes", |cx, n, p| {
        as_string_list(cx, n, p, true)
    }) {
        c.skip_processes = v;
    }
    o.finish(cx);
    c
}

// ---------------------------------------------------------------------------------------------
// Objects

/// An object being read: tracks which keys were asked for and which were used.
pub(crate) struct Obj<'n> {
    path: String,
    entries: &'n [(Key, Node)],
    used: Vec<bool>,
    asked: Vec<&'static str>,
}

impl<'n> Obj<'n> {
    /// `node` as an object, or a type error saying it must be `expected`.
    pub fn new(cx: &mut Cx<'_>, node: &'n Node, path: &str, expected: &str) -> Option<Self> {
        let Value::Object(entries) = &node.value else {
            type_error(cx, node, path, expected);
            return None;
        };
        let mut used = vec![false; entries.len()];
        for (i, (k, _)) in entries.iter().enumerate() {
            if entries[..i].iter().any(|(p, _)| p.name == k.name) {
                used[i] = true;
                cx.error(
                    k.pos,
                    &join(path, &k.name),
                    format!("duplicate key `{}`", join(path, &k.name)),
                    None,
                );
            }
        }
        Some(Self {
            path: path.to_owned(),
            entries,
            used,
            asked: Vec::new(),
        })
    }

    /// The value of `key` (`None` when absent or `null`), marking it used.
    pub fn get(&mut self, cx: &mut Cx<'_>, key: &'static str) -> Option<&'n Node> {
        self.asked.push(key);
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        self.used[i] = true;
        let (k, node) = &self.entries[i];
        cx.origins
            .insert(join(&self.path, key), Origin::File(k.pos));
        (node.value != Value::Null).then_some(node)
    }

    /// Position of `key`, if present.
    pub fn key_pos(&self, key: &str) -> Option<crate::diag::Pos> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| k.pos)
    }

    /// Reads `key` with `f`, which gets the key's full path.
    pub fn read<T>(
        &mut self,
        cx: &mut Cx<'_>,
        key: &'static str,
        f: impl FnOnce(&mut Cx<'_>, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        let node = self.get(cx, key)?;
        let path = join(&self.path, key);
        f(cx, node, &path)
    }

    /// Reports keys that were never asked for: mirrord-only keys by their class, others as
    /// unknown with the nearest known key.
    pub fn finish(self, cx: &mut Cx<'_>) {
        for (i, (k, node)) in self.entries.iter().enumerate() {
            if self.used[i] {
                continue;
            }
            let path = join(&self.path, &k.name);
            let table_path = strip_indices(&path);
            if table_path == "operator" && matches!(node.value, Value::Bool(false) | Value::Null) {
                cx.warn(
                    k.pos,
                    &path,
                    "`operator` is a mirrord setting tether ignores",
                    Some("tether never uses an operator".into()),
                );
                continue;
            }
            if let Some(u) = mirrord::classify(&table_path) {
                let (message, help) = mirrord::describe(&path, &k.name, u);
                match u {
                    Unsupported::Ignored(_) => cx.warn(k.pos, &path, message, Some(help)),
                    _ => cx.error(k.pos, &path, message, Some(help)),
                }
                continue;
            }
            let help = match suggest::closest(&k.name, self.asked.iter().copied()) {
                Some(s) => format!("did you mean `{}`?", join(&self.path, s)),
                None if self.asked.is_empty() => "this object takes no keys".to_owned(),
                None => format!("expected one of {}", list(&self.asked)),
            };
            cx.error(k.pos, &path, format!("unknown key `{path}`"), Some(help));
        }
    }
}

fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

/// `` `a`, `b` or `c` ``
fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn type_error(cx: &mut Cx<'_>, node: &Node, path: &str, expected: &str) {
    let what = if path.is_empty() {
        "the config".to_owned()
    } else {
        format!("`{path}`")
    };
    cx.error(
        node.pos,
        path,
        format!("{what} must be {expected}, found {}", node.value.kind()),
        None,
    );
}

fn value_error(
    cx: &mut Cx<'_>,
    node: &Node,
    path: &str,
    message: impl std::fmt::Display,
    help: Option<String>,
) {
    cx.error(node.pos, path, format!("`{path}`: {message}"), help);
}

// ---------------------------------------------------------------------------------------------
// Scalars and lists

pub(crate) fn as_bool(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<bool> {
    match n.value {
        Value::Bool(b) => Some(b),
        _ => {
            type_error(cx, n, path, "`true` or `false`");
            None
        }
    }
}

pub(crate) fn as_string(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        _ => {
            type_error(cx, n, path, "a string");
            None
        }
    }
}

fn as_int<T: TryFrom<i64>>(cx: &mut Cx<'_>, n: &Node, path: &str, max: u64) -> Option<T> {
    let expected = format!("an integer from 0 to {max}");
    match n.value {
        Value::Int(i) if i >= 0 && (i as u64) <= max => T::try_from(i).ok(),
        Value::Int(_) => {
            cx.error(
                n.pos,
                path,
                format!("`{path}` must be {expected}, found {}", int_text(n)),
                None,
            );
            None
        }
        Value::Float(f) if f.is_finite() => {
            cx.error(
                n.pos,
                path,
                format!("`{path}` must be {expected}, found {f}"),
                None,
            );
            None
        }
        _ => {
            type_error(cx, n, path, &expected);
            None
        }
    }
}

fn int_text(n: &Node) -> String {
    match n.value {
        Value::Int(i) => i.to_string(),
        _ => n.value.kind().to_owned(),
    }
}

fn as_u16(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<u16> {
    as_int(cx, n, path, u16::MAX.into())
}

fn as_port(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<u16> {
    const EXPECTED: &str = "a port from 1 to 65535";
    match n.value {
        Value::Int(i) if (1..=65535).contains(&i) => u16::try_from(i).ok(),
        Value::Int(i) => {
            cx.error(
                n.pos,
                path,
                format!("`{path}` must be {EXPECTED}, found {i}"),
                None,
            );
            None
        }
        _ => {
            type_error(cx, n, path, EXPECTED);
            None
        }
    }
}

/// A string or an array of strings; with `semicolons`, a string is split on `;`.
pub(crate) fn as_string_list(
    cx: &mut Cx<'_>,
    n: &Node,
    path: &str,
    semicolons: bool,
) -> Option<Vec<String>> {
    match &n.value {
        Value::Str(s) if semicolons => Some(split_semicolons(s)),
        Value::Str(s) => Some(vec![s.clone()]),
        Value::Array(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match as_string(cx, item, &format!("{path}[{i}]")) {
                    Some(s) => out.push(s),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }
        _ => {
            type_error(cx, n, path, "a string or an array of strings");
            None
        }
    }
}

pub(crate) fn split_semicolons(s: &str) -> Vec<String> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A list of items each parsed by `f` (with its own path and node); a single item is accepted
/// for mirrord's "one or many" keys.
fn as_list_of<T>(
    cx: &mut Cx<'_>,
    n: &Node,
    path: &str,
    expected: &str,
    mut f: impl FnMut(&mut Cx<'_>, &Node, &str) -> Option<T>,
) -> Option<Vec<T>> {
    match &n.value {
        Value::Array(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match f(cx, item, &format!("{path}[{i}]")) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }
        Value::Object(_) => {
            type_error(cx, n, path, expected);
            None
        }
        _ => f(cx, n, path).map(|v| vec![v]),
    }
}

fn as_port_list(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<Vec<u16>> {
    as_list_of(cx, n, path, "a port or an array of ports", as_port)
}

fn as_regex(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<String> {
    let s = as_string(cx, n, path)?;
    match Regex::new(&s) {
        Ok(_) => Some(s),
        Err(e) => {
            let detail = match e {
                regex::Error::Syntax(text) => text
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_owned(),
                other => other.to_string(),
            };
            let help = detail.contains("look-around").then(|| {
                "look-around works in HTTP filters only (as in mirrord); write this pattern without it".to_owned()
            });
            value_error(cx, n, path, format!("invalid regex `{s}`: {detail}"), help);
            None
        }
    }
}

/// An HTTP filter regex: the `regex` syntax plus look-around and backreferences, as mirrord's
/// filters accept.
fn as_http_regex(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<String> {
    let s = as_string(cx, n, path)?;
    match fancy_regex::Regex::new(&s) {
        Ok(_) => Some(s),
        Err(e) => {
            value_error(cx, n, path, format!("invalid regex `{s}`: {e}"), None);
            None
        }
    }
}

fn as_regex_list(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<Vec<String>> {
    as_list_of(cx, n, path, "a regex or an array of regexes", as_regex)
}

fn as_string_map(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<BTreeMap<String, String>> {
    let Value::Object(entries) = &n.value else {
        type_error(cx, n, path, "an object of strings");
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in entries {
        let p = join(path, &k.name);
        cx.origins.insert(p.clone(), Origin::File(k.pos));
        if out.contains_key(&k.name) {
            cx.error(k.pos, &p, format!("duplicate key `{p}`"), None);
            ok = false;
        } else if let Some(s) = as_string(cx, v, &p) {
            out.insert(k.name.clone(), s);
        } else {
            ok = false;
        }
    }
    ok.then_some(out)
}

fn as_enum<T: FromStr>(
    cx: &mut Cx<'_>,
    n: &Node,
    path: &str,
    what: &str,
    names: &[&'static str],
) -> Option<T> {
    let s = as_string(cx, n, path)?;
    match s.parse() {
        Ok(v) => Some(v),
        Err(_) => {
            let help = match suggest::closest(&s, names.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("expected {}", list(names)),
            };
            value_error(cx, n, path, format!("unknown {what} `{s}`"), Some(help));
            None
        }
    }
}

/// Kubernetes namespace names (DNS-1123 labels).
fn as_namespace(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<String> {
    let s = as_string(cx, n, path)?;
    if is_dns_label(&s) {
        Some(s)
    } else {
        value_error(
            cx,
            n,
            path,
            format!("invalid namespace `{s}`"),
            Some("namespaces are at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit".into()),
        );
        None
    }
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

// ---------------------------------------------------------------------------------------------
// target

fn read_target(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<TargetConfig> {
    match &n.value {
        Value::Str(_) => Some(TargetConfig {
            path: Some(read_target_path(cx, n, path)?),
            namespace: None,
        }),
        Value::Object(_) => {
            let mut o = Obj::new(cx, n, path, "an object")?;
            let mut t = TargetConfig::default();
            if let Some(v) = o.read(cx, "path", read_target_path) {
                t.path = Some(v);
            }
            if let Some(v) = o.read(cx, "namespace", as_namespace) {
                t.namespace = Some(v);
            }
            o.finish(cx);
            Some(t)
        }
        _ => {
            type_error(
                cx,
                n,
                path,
                "a target string (like `pod/NAME`) or an object",
            );
            None
        }
    }
}

fn read_target_path(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<Target> {
    match &n.value {
        Value::Str(s) => match s.parse::<Target>() {
            Ok(t) => Some(t),
            Err(e) => {
                value_error(cx, n, path, &e.message, e.help);
                None
            }
        },
        Value::Object(entries) => {
            let mut o = Obj::new(cx, n, path, "an object")?;
            let mut kinds = Vec::new();
            for kind in ["pod", "deployment", "statefulset", "rollout"] {
                if let Some(v) = o.get(cx, kind) {
                    kinds.push((kind, v));
                }
            }
            let container = o.get(cx, "container");
            let has_operator_kind = entries
                .iter()
                .any(|(k, _)| OPERATOR_TARGET_KINDS.contains(&k.name.as_str()));
            o.finish(cx);
            match kinds.as_slice() {
                [] if has_operator_kind => None,
                [] => {
                    cx.error(
                        n.pos,
                        path,
                        format!("`{path}` must name one of `pod`, `deployment`, `statefulset` or `rollout`"),
                        Some("e.g. { \"deployment\": \"api\", \"container\": \"app\" }".into()),
                    );
                    None
                }
                [(kind, name)] => {
                    let name_path = join(path, kind);
                    let name_str = as_string(cx, name, &name_path)?;
                    let container_path = join(path, "container");
                    let container_str = match container {
                        Some(c) => Some(as_string(cx, c, &container_path)?),
                        None => None,
                    };
                    match Target::resource(kind, &name_str, container_str.as_deref()) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            // Point at whichever value is wrong.
                            let (node, p) = match container {
                                Some(c) if e.message.starts_with("invalid container") => {
                                    (c, container_path.as_str())
                                }
                                _ => (*name, name_path.as_str()),
                            };
                            value_error(cx, node, p, &e.message, e.help);
                            None
                        }
                    }
                }
                [(first, _), (second, _), ..] => {
                    let pos = o_key_pos(entries, second).unwrap_or(n.pos);
                    cx.error(
                        pos,
                        path,
                        format!("`{path}` names both `{first}` and `{second}`"),
                        Some("a target is one object; keep one of them".into()),
                    );
                    None
                }
            }
        }
        _ => {
            type_error(
                cx,
                n,
                path,
                "a target string (like `pod/NAME`) or an object",
            );
            None
        }
    }
}

fn o_key_pos(entries: &[(Key, Node)], key: &str) -> Option<crate::diag::Pos> {
    entries
        .iter()
        .find(|(k, _)| k.name == key)
        .map(|(k, _)| k.pos)
}

// ---------------------------------------------------------------------------------------------
// feature.env

fn read_env(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<EnvConfig> {
    match &n.value {
        Value::Bool(true) => Some(EnvConfig::default()),
        Value::Bool(false) => Some(EnvConfig::disabled()),
        _ => {
            let mut o = Obj::new(cx, n, path, "`true`, `false` or an object")?;
            let mut e = EnvConfig::default();
            if let Some(v) = o.read(cx, "include", as_name_patterns) {
                e.include = Some(v);
            }
            if let Some(v) = o.read(cx, "exclude", as_name_patterns) {
                e.exclude = Some(v);
            }
            if let Some(v) = o.read(cx, "override", as_string_map) {
                e.overrides = v;
            }
            if let Some(v) = o.read(cx, "unset", |cx, n, p| as_string_list(cx, n, p, true)) {
                e.unset = v;
            }
            if let Some(v) = o.read(cx, "env_file", read_env_file) {
                e.env_file = Some(v);
            }
            o.finish(cx);
            Some(e)
        }
    }
}

fn as_name_patterns(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<Vec<String>> {
    let list = as_string_list(cx, n, path, true)?;
    if let Some(bad) = list.iter().find(|p| p.contains(char::is_whitespace)) {
        value_error(
            cx,
            n,
            path,
            format!("invalid variable pattern `{bad}`"),
            Some("separate names with `;`".into()),
        );
        return None;
    }
    Some(list)
}

fn read_env_file(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<PathBuf> {
    let s = as_string(cx, n, path)?;
    let p = PathBuf::from(&s);
    let full = match cx.base_dir {
        Some(base) if p.is_relative() => base.join(&p),
        _ => p,
    };
    if cx.base_dir.is_some() && !full.is_file() {
        value_error(
            cx,
            n,
            path,
            format!("cannot read `{}`: no such file", full.display()),
            Some("relative paths start at the project directory (the one holding `.tether/` or `.mirrord/`)".into()),
        );
        return None;
    }
    Some(full)
}

// ---------------------------------------------------------------------------------------------
// feature.fs

fn read_fs(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<FsConfig> {
    if let Value::Str(_) = n.value {
        let mode = as_enum(cx, n, path, "fs mode", &FsMode::NAMES)?;
        return Some(FsConfig {
            mode,
            ..FsConfig::default()
        });
    }
    let mut o = Obj::new(cx, n, path, "an fs mode string or an object")?;
    let mut f = FsConfig::default();
    if let Some(v) = o.read(cx, "mode", |cx, n, p| {
        as_enum(cx, n, p, "fs mode", &FsMode::NAMES)
    }) {
        f.mode = v;
    }
    if let Some(v) = o.read(cx, "read_write", as_regex_list) {
        f.read_write = v;
    }
    if let Some(v) = o.read(cx, "read_only", as_regex_list) {
        f.read_only = v;
    }
    if let Some(v) = o.read(cx, "local", as_regex_list) {
        f.local = v;
    }
    if let Some(v) = o.read(cx, "not_found", as_regex_list) {
        f.not_found = v;
    }
    o.finish(cx);
    Some(f)
}

// ---------------------------------------------------------------------------------------------
// feature.network

fn read_network(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<NetworkConfig> {
    match n.value {
        Value::Bool(true) => return Some(NetworkConfig::default()),
        Value::Bool(false) => return Some(NetworkConfig::disabled()),
        _ => {}
    }
    let mut o = Obj::new(cx, n, path, "`true`, `false` or an object")?;
    let mut net = NetworkConfig::default();
    if let Some(v) = o.read(cx, "incoming", read_incoming) {
        net.incoming = v;
    }
    if let Some(v) = o.read(cx, "outgoing", read_outgoing) {
        net.outgoing = v;
    }
    if let Some(v) = o.read(cx, "dns", read_dns) {
        net.dns = v;
    }
    o.finish(cx);
    Some(net)
}

fn read_incoming(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<IncomingConfig> {
    if let Value::Str(_) = n.value {
        let mode = as_enum(cx, n, path, "incoming mode", &IncomingMode::NAMES)?;
        return Some(IncomingConfig {
            mode,
            ..IncomingConfig::default()
        });
    }
    let mut o = Obj::new(
        cx,
        n,
        path,
        "`\"mirror\"`, `\"steal\"`, `\"off\"` or an object",
    )?;
    let mut inc = IncomingConfig::default();
    if let Some(v) = o.read(cx, "mode", |cx, n, p| {
        as_enum(cx, n, p, "incoming mode", &IncomingMode::NAMES)
    }) {
        inc.mode = v;
    }
    if let Some(v) = o.read(cx, "http_filter", read_http_filter) {
        inc.http_filter = v;
    }
    // mirrord's older spelling: `http_header_filter: { filter, ports }`. Still applied, since
    // ignoring it would steal whole ports instead of the filtered requests.
    if let Some(node) = o.get(cx, "http_header_filter") {
        let path = join(path, "http_header_filter");
        let pos = o.key_pos("http_header_filter").unwrap_or(node.pos);
        if o.key_pos("http_filter").is_some() {
            cx.error(
                pos,
                &path,
                format!("`{path}` cannot be used with `http_filter`"),
                Some("move the filter into `http_filter.header_filter`".into()),
            );
        } else if let Some(mut f) = Obj::new(cx, node, &path, "an object with `filter` and `ports`")
        {
            let filter = f.read(cx, "filter", as_regex);
            let ports = f.read(cx, "ports", as_port_list);
            f.finish(cx);
            if let Some(filter) = filter {
                inc.http_filter.filter = Some(HttpFilter::Header(filter));
            }
            if let Some(ports) = ports {
                inc.http_filter.ports = ports;
            }
            cx.warn(
                pos,
                &path,
                format!("`{path}` is deprecated"),
                Some("write `http_filter: { header_filter: ..., ports: ... }` instead".into()),
            );
        }
    }
    if let Some(v) = o.read(cx, "ports", as_port_list) {
        inc.ports = Some(v);
    }
    if let Some(v) = o.read(cx, "ignore_ports", as_port_list) {
        inc.ignore_ports = v;
    }
    if let Some(v) = o.read(cx, "port_mapping", read_port_mapping) {
        inc.port_mapping = v;
    }
    if let Some(v) = o.read(cx, "ignore_localhost", as_bool) {
        inc.ignore_localhost = v;
    }
    o.finish(cx);
    Some(inc)
}

fn read_port_mapping(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<Vec<(u16, u16)>> {
    let Value::Array(items) = &n.value else {
        type_error(cx, n, path, "an array of `[local, remote]` port pairs");
        return None;
    };
    let mut out: Vec<(u16, u16)> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let pair = match &item.value {
            Value::Array(pair) if pair.len() == 2 => {
                match (
                    as_port(cx, &pair[0], &format!("{p}[0]")),
                    as_port(cx, &pair[1], &format!("{p}[1]")),
                ) {
                    (Some(l), Some(r)) => Some((l, r)),
                    _ => None,
                }
            }
            _ => {
                let found = match &item.value {
                    Value::Array(a) if a.len() == 1 => "1 item".to_owned(),
                    Value::Array(a) => format!("{} items", a.len()),
                    v => v.kind().to_owned(),
                };
                cx.error(
                    item.pos,
                    &p,
                    format!("`{p}` must be a `[local, remote]` port pair, found {found}"),
                    None,
                );
                None
            }
        };
        match pair {
            Some((l, _)) if out.iter().any(|(ol, _)| *ol == l) => {
                cx.error(
                    item.pos,
                    &p,
                    format!("`{path}` maps local port {l} twice"),
                    Some("keep one mapping per local port".into()),
                );
                ok = false;
            }
            Some(pair) => out.push(pair),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

const FILTER_KINDS: [&str; 5] = [
    "header_filter",
    "path_filter",
    "method_filter",
    "all_of",
    "any_of",
];

fn read_http_filter(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<HttpFilterConfig> {
    let mut o = Obj::new(cx, n, path, "an object")?;
    let mut found: Vec<(&'static str, HttpFilter)> = Vec::new();
    let mut set: Vec<&'static str> = Vec::new();
    for kind in FILTER_KINDS {
        let Some(node) = o.get(cx, kind) else {
            continue;
        };
        set.push(kind);
        let p = join(path, kind);
        let filter = match kind {
            "header_filter" => as_http_regex(cx, node, &p).map(HttpFilter::Header),
            "path_filter" => as_http_regex(cx, node, &p).map(HttpFilter::Path),
            "method_filter" => as_method(cx, node, &p).map(HttpFilter::Method),
            "all_of" => read_composite(cx, node, &p).map(HttpFilter::AllOf),
            _ => read_composite(cx, node, &p).map(HttpFilter::AnyOf),
        };
        if let Some(f) = filter {
            found.push((kind, f));
        }
    }
    let ports = o.read(cx, "ports", as_port_list);
    if set.len() > 1 {
        let pos = o.key_pos(set[1]).unwrap_or(n.pos);
        cx.error(
            pos,
            path,
            format!("`{path}` sets both `{}` and `{}`", set[0], set[1]),
            Some("use one filter, or combine them in `all_of` or `any_of`".into()),
        );
    }
    o.finish(cx);
    let mut cfg = HttpFilterConfig::default();
    if set.len() == 1 {
        cfg.filter = Some(found.pop()?.1);
    }
    if let Some(p) = ports {
        cfg.ports = p;
    }
    Some(cfg)
}

fn as_method(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<String> {
    let s = as_string(cx, n, path)?;
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
    {
        return Some(s);
    }
    value_error(
        cx,
        n,
        path,
        format!("invalid HTTP method `{s}`"),
        Some("e.g. `GET` or `POST`".into()),
    );
    None
}

fn read_composite(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<Vec<HttpFilter>> {
    let Value::Array(items) = &n.value else {
        type_error(cx, n, path, "an array of filters");
        return None;
    };
    if items.is_empty() {
        value_error(
            cx,
            n,
            path,
            "the list is empty",
            Some("list at least one filter, such as { \"header\": \"^x-user: me$\" }".into()),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(mut o) = Obj::new(cx, item, &p, "an object with `header`, `path` or `method`")
        else {
            ok = false;
            continue;
        };
        let mut kinds = Vec::new();
        if let Some(v) = o.read(cx, "header", as_http_regex) {
            kinds.push(HttpFilter::Header(v));
        }
        if let Some(v) = o.read(cx, "path", as_http_regex) {
            kinds.push(HttpFilter::Path(v));
        }
        if let Some(v) = o.read(cx, "method", as_method) {
            kinds.push(HttpFilter::Method(v));
        }
        let named = ["header", "path", "method"]
            .iter()
            .filter(|k| o.key_pos(k).is_some())
            .count();
        o.finish(cx);
        match named {
            1 if kinds.len() == 1 => out.extend(kinds),
            0 => {
                cx.error(
                    item.pos,
                    &p,
                    format!("`{p}` must have one of `header`, `path` or `method`"),
                    None,
                );
                ok = false;
            }
            1 => ok = false,
            _ => {
                cx.error(
                    item.pos,
                    &p,
                    format!("`{p}` has more than one of `header`, `path` and `method`"),
                    Some("put each in its own list item".into()),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn read_outgoing(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<OutgoingConfig> {
    match n.value {
        Value::Bool(true) => return Some(OutgoingConfig::default()),
        Value::Bool(false) => return Some(OutgoingConfig::disabled()),
        _ => {}
    }
    let mut o = Obj::new(cx, n, path, "`true`, `false` or an object")?;
    let mut out = OutgoingConfig::default();
    if let Some(v) = o.read(cx, "tcp", as_bool) {
        out.tcp = v;
    }
    if let Some(v) = o.read(cx, "udp", as_bool) {
        out.udp = v;
    }
    if let Some(v) = o.read(cx, "ignore_localhost", as_bool) {
        out.ignore_localhost = v;
    }
    if let Some(v) = o.read(cx, "filter", |cx, n, p| read_address_filter(cx, n, p, true)) {
        out.filter = Some(v);
    }
    o.finish(cx);
    Some(out)
}

fn read_dns(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<DnsConfig> {
    if let Value::Bool(enabled) = n.value {
        return Some(DnsConfig {
            enabled,
            filter: None,
        });
    }
    let mut o = Obj::new(cx, n, path, "`true`, `false` or an object")?;
    let mut dns = DnsConfig::default();
    if let Some(v) = o.read(cx, "enabled", as_bool) {
        dns.enabled = v;
    }
    if let Some(v) = o.read(cx, "filter", |cx, n, p| {
        read_address_filter(cx, n, p, false)
    }) {
        dns.filter = Some(v);
    }
    o.finish(cx);
    Some(dns)
}

fn read_address_filter(
    cx: &mut Cx<'_>,
    n: &Node,
    path: &str,
    protocols: bool,
) -> Option<OutgoingFilter> {
    let mut o = Obj::new(cx, n, path, "an object with `local` or `remote`")?;
    let rule = |cx: &mut Cx<'_>, n: &Node, p: &str| -> Option<AddressRule> {
        let s = as_string(cx, n, p)?;
        match s.parse::<AddressRule>() {
            Ok(r) if r.protocol.is_some() && !protocols => {
                value_error(
                    cx,
                    n,
                    p,
                    format!("invalid address `{s}`: DNS filters take no protocol"),
                    None,
                );
                None
            }
            Ok(r) => Some(r),
            Err(e) => {
                let form = if protocols {
                    "[tcp://|udp://][host|ip|cidr][:port]"
                } else {
                    "[name|ip|cidr][:port]"
                };
                value_error(
                    cx,
                    n,
                    p,
                    format!("invalid address `{s}`: {e}"),
                    Some(format!("expected `{form}`")),
                );
                None
            }
        }
    };
    let local = o.read(cx, "local", |cx, n, p| {
        as_list_of(cx, n, p, "an address or an array of addresses", rule)
    });
    let remote = o.read(cx, "remote", |cx, n, p| {
        as_list_of(cx, n, p, "an address or an array of addresses", rule)
    });
    let (local_pos, remote_pos) = (o.key_pos("local"), o.key_pos("remote"));
    o.finish(cx);
    match (local_pos, remote_pos) {
        (Some(_), Some(pos)) => {
            cx.error(
                pos,
                path,
                format!("`{path}` sets both `local` and `remote`"),
                Some(
                    "keep one: `local` lists what stays local, `remote` what goes through the pod"
                        .into(),
                ),
            );
            None
        }
        (None, None) => {
            cx.error(
                n.pos,
                path,
                format!("`{path}` must have `local` or `remote`"),
                None,
            );
            None
        }
        (Some(_), None) => local.map(OutgoingFilter::Local),
        (None, Some(_)) => remote.map(OutgoingFilter::Remote),
    }
}

// ---------------------------------------------------------------------------------------------
// agent

fn read_agent(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<AgentConfig> {
    let mut o = Obj::new(cx, n, path, "an object")?;
    let mut a = AgentConfig::default();
    if let Some(v) = o.read(cx, "namespace", as_namespace) {
        a.namespace = Some(v);
    }
    if let Some(v) = o.read(cx, "image", read_image) {
        a.image = Some(v);
    }
    if let Some(v) = o.read(cx, "image_pull_policy", |cx, n, p| {
        as_enum(cx, n, p, "image pull policy", &ImagePullPolicy::NAMES)
    }) {
        a.image_pull_policy = v;
    }
    if let Some(v) = o.read(cx, "image_pull_secrets", |cx, n, p| {
        as_list_of(
            cx,
            n,
            p,
            "an array of `{ \"name\": ... }` objects",
            |cx, n, p| {
                let mut s = Obj::new(cx, n, p, "an object like `{ \"name\": \"regcred\" }`")?;
                let present = s.key_pos("name").is_some();
                let name = s.read(cx, "name", as_string);
                s.finish(cx);
                if !present {
                    cx.error(n.pos, p, format!("`{p}` must have a `name`"), None);
                }
                name.map(|name| ImagePullSecret { name })
            },
        )
    }) {
        a.image_pull_secrets = v;
    }
    if let Some(v) = o.read(cx, "ttl", as_u16) {
        a.ttl = v;
    }
    if let Some(v) = o.read(cx, "communication_timeout", as_u16) {
        a.communication_timeout = v;
    }
    if let Some(v) = o.read(cx, "startup_timeout", |cx, n, p| as_int(cx, n, p, 86_400)) {
        a.startup_timeout = v;
    }
    if let Some(v) = o.read(cx, "ephemeral", as_bool) {
        a.ephemeral = v;
    }
    if let Some(v) = o.read(cx, "privileged", as_bool) {
        a.privileged = v;
    }
    if let Some(v) = o.read(cx, "log_level", as_string) {
        a.log_level = v;
    }
    if let Some(v) = o.read(cx, "resources", read_resources) {
        a.resources = Some(v);
    }
    if let Some(v) = o.read(cx, "tolerations", |cx, n, p| {
        as_list_of(cx, n, p, "an array of tolerations", read_toleration)
    }) {
        a.tolerations = v;
    }
    if let Some(v) = o.read(cx, "labels", as_string_map) {
        a.labels = v;
    }
    if let Some(v) = o.read(cx, "annotations", as_string_map) {
        a.annotations = v;
    }
    if let Some(v) = o.read(cx, "node_selector", as_string_map) {
        a.node_selector = v;
    }
    if let Some(v) = o.read(cx, "service_account", as_string) {
        a.service_account = Some(v);
    }
    o.finish(cx);
    Some(a)
}

fn read_image(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<String> {
    let image = match &n.value {
        Value::Str(s) => s.clone(),
        Value::Object(_) => {
            let mut o = Obj::new(cx, n, path, "an object")?;
            let registry = o.read(cx, "registry", as_string);
            let tag = o.read(cx, "tag", as_string);
            o.finish(cx);
            match (registry, tag) {
                (Some(r), Some(t)) => format!("{r}:{t}"),
                (Some(r), None) => r,
                _ => {
                    cx.error(n.pos, path, format!("`{path}` must have a `registry`"), Some("e.g. { \"registry\": \"ghcr.io/me/tether-agent\", \"tag\": \"0.1.0\" }".into()));
                    return None;
                }
            }
        }
        _ => {
            type_error(
                cx,
                n,
                path,
                "an image string or an object with `registry` and `tag`",
            );
            return None;
        }
    };
    if image.is_empty() || image.contains(char::is_whitespace) {
        value_error(cx, n, path, format!("invalid image `{image}`"), None);
        return None;
    }
    Some(image)
}

fn read_resources(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<AgentResources> {
    let mut o = Obj::new(cx, n, path, "an object with `requests` and `limits`")?;
    let mut r = AgentResources::default();
    if let Some(v) = o.read(cx, "requests", read_quantities) {
        r.requests = v;
    }
    if let Some(v) = o.read(cx, "limits", read_quantities) {
        r.limits = v;
    }
    o.finish(cx);
    Some(r)
}

fn read_quantities(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<BTreeMap<String, String>> {
    let Value::Object(entries) = &n.value else {
        type_error(
            cx,
            n,
            path,
            "an object like `{ \"cpu\": \"10m\", \"memory\": \"32Mi\" }`",
        );
        return None;
    };
    let re = Regex::new(QUANTITY_PATTERN).ok()?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in entries {
        let p = join(path, &k.name);
        let q = match &v.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) if *i >= 0 => i.to_string(),
            Value::Float(f) if *f >= 0.0 => f.to_string(),
            _ => {
                type_error(cx, v, &p, "a quantity like `\"100m\"` or `\"64Mi\"`");
                ok = false;
                continue;
            }
        };
        if re.is_match(&q) {
            out.insert(k.name.clone(), q);
        } else {
            value_error(
                cx,
                v,
                &p,
                format!("invalid quantity `{q}`"),
                Some("e.g. `\"100m\"` (CPU) or `\"64Mi\"` (memory)".into()),
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

fn read_toleration(cx: &mut Cx<'_>, n: &Node, path: &str) -> Option<Toleration> {
    let mut o = Obj::new(cx, n, path, "a toleration object")?;
    let mut t = Toleration {
        key: o.read(cx, "key", as_string),
        operator: o.read(cx, "operator", |cx, n, p| {
            one_of(cx, n, p, "toleration operator", &["Exists", "Equal"])
        }),
        value: o.read(cx, "value", as_string),
        effect: o.read(cx, "effect", |cx, n, p| {
            one_of(
                cx,
                n,
                p,
                "taint effect",
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )
        }),
        toleration_seconds: None,
    };
    t.toleration_seconds = o.read(cx, "tolerationSeconds", |cx, n, p| {
        as_int::<i64>(cx, n, p, i64::MAX as u64)
    });
    o.finish(cx);
    Some(t)
}

fn one_of(
    cx: &mut Cx<'_>,
    n: &Node,
    path: &str,
    what: &str,
    names: &[&'static str],
) -> Option<String> {
    let s = as_string(cx, n, path)?;
    if names.contains(&s.as_str()) {
        return Some(s);
    }
    let help = match suggest::closest(&s, names.iter().copied()) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!("expected {}", list(names)),
    };
    value_error(cx, n, path, format!("unknown {what} `{s}`"), Some(help));
    None
}
