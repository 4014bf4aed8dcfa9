//! The JSON Schema generated from the types, and key lookups in it for editors (hover text and
//! key completion), so that docs live only in the doc comments.

use serde_json::{Map, Value};

use crate::model::TetherConfig;

/// The JSON Schema of the config file.
pub fn schema() -> schemars::Schema {
    schemars::schema_for!(TetherConfig)
}

/// [`schema`] as pretty JSON with a final newline: the content of `schemas/tether.schema.json`.
pub fn schema_json() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    s.push('\n');
    s
}

/// What the schema says about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's name (last path segment).
    pub name: String,
    /// Its doc comment, if any.
    pub description: Option<String>,
    /// Its default, as JSON, if the schema has one.
    pub default: Option<String>,
}

/// Docs of the key at a dotted path such as `feature.network.incoming.mode` (array indices like
/// `all_of[0]` are allowed). `None` for unknown keys.
pub fn key_info(path: &str) -> Option<KeyInfo> {
    let root = schema_value();
    let (parent, name) = match path.rsplit_once('.') {
        Some((p, n)) => (p, n),
        None => ("", path),
    };
    let name = strip_index(name);
    let props = properties_at(root, parent)?;
    let prop = props.get(name)?;
    Some(KeyInfo {
        name: name.to_owned(),
        description: describe(root, prop),
        default: prop.get("default").map(Value::to_string),
    })
}

/// The keys an object at `path` takes (`""` is the top level), with their docs, for completion.
pub fn keys_under(path: &str) -> Vec<KeyInfo> {
    let root = schema_value();
    let Some(props) = properties_at(root, path) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, prop)| KeyInfo {
            name: name.clone(),
            description: describe(root, prop),
            default: prop.get("default").map(Value::to_string),
        })
        .collect()
}

/// The schema as JSON, built once (editors ask on every hover and keystroke).
fn schema_value() -> &'static Value {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::to_value(schema()).unwrap_or(Value::Null))
}

fn strip_index(segment: &str) -> &str {
    segment.split('[').next().unwrap_or(segment)
}

fn resolve<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name))
            .unwrap_or(v),
        None => v,
    }
}

/// Every object schema reachable from `v` through `$ref`, `anyOf`, `oneOf`, `allOf` and (for
/// array segments) `items`.
fn objects<'a>(root: &'a Value, v: &'a Value, out: &mut Vec<&'a Map<String, Value>>, depth: usize) {
    if depth > 8 {
        return;
    }
    let v = resolve(root, v);
    if let Some(Value::Object(props)) = v.get("properties") {
        out.push(props);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alts)) = v.get(key) {
            for alt in alts {
                objects(root, alt, out, depth + 1);
            }
        }
    }
    if let Some(items) = v.get("items") {
        objects(root, items, out, depth + 1);
    }
}

/// The properties an object at `path` may have, merged over the alternatives of its schema.
fn properties_at(root: &Value, path: &str) -> Option<Map<String, Value>> {
    let mut current = vec![root];
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let name = strip_index(segment);
        let mut next = Vec::new();
        for v in current {
            let mut objs = Vec::new();
            objects(root, v, &mut objs, 0);
            next.extend(objs.into_iter().filter_map(|props| props.get(name)));
        }
        if next.is_empty() {
            return None;
        }
        current = next;
    }
    let mut merged = Map::new();
    for v in current {
        let mut objs = Vec::new();
        objects(root, v, &mut objs, 0);
        for props in objs {
            for (k, p) in props {
                merged.entry(k.clone()).or_insert_with(|| p.clone());
            }
        }
    }
    (!merged.is_empty()).then_some(merged)
}

fn describe(root: &Value, prop: &Value) -> Option<String> {
    prop.get("description")
        .or_else(|| resolve(root, prop).get("description"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The dotted path of the key at `pos` in `text` (for hover), e.g.
/// `feature.network.incoming.mode` when the cursor is on `mode`. `None` when the text does not
/// parse or no key is there.
pub fn key_at(text: &str, format: crate::Format, pos: crate::Pos) -> Option<String> {
    let root = crate::parse::parse(text, format).ok()?;
    find_key(&root, "", pos)
}

fn find_key(node: &crate::node::Node, path: &str, pos: crate::Pos) -> Option<String> {
    use crate::node::Value as N;
    match &node.value {
        N::Object(entries) => entries.iter().find_map(|(k, v)| {
            let child = crate::cx::join(path, &k.name);
            // Quoted keys take two more columns; being generous there costs nothing.
            let width = k.name.chars().count() as u32 + 2;
            if k.pos.line == pos.line && (k.pos.column..k.pos.column + width).contains(&pos.column)
            {
                Some(child)
            } else {
                find_key(v, &child, pos)
            }
        }),
        N::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_key(v, &format!("{path}[{i}]"), pos)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_of_nested_keys() {
        let mode = key_info("feature.network.incoming.mode").unwrap();
        assert!(mode.description.unwrap().contains("`steal` takes it"));
        let header = key_info("feature.network.incoming.http_filter.header_filter").unwrap();
        assert!(header.description.unwrap().contains("case-insensitively"));
        let inner = key_info("feature.network.incoming.http_filter.all_of[0].header").unwrap();
        assert!(inner.description.is_some());
        assert_eq!(key_info("agent.ttl").unwrap().default.as_deref(), Some("1"));
        assert!(key_info("target.namespace").unwrap().description.is_some());
        assert_eq!(key_info("feature.nope"), None);
    }

    #[test]
    fn keys_for_completion() {
        let top: Vec<String> = keys_under("").into_iter().map(|k| k.name).collect();
        assert_eq!(
            top,
            [
                "agent",
                "feature",
                "kube_context",
                "kubeconfig",
                "skip_processes",
                "target"
            ]
        );
        let env: Vec<String> = keys_under("feature.env")
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(env, ["env_file", "exclude", "include", "override", "unset"]);
        assert!(
            keys_under("feature.fs")
                .iter()
                .any(|k| k.name == "not_found")
        );
        assert!(keys_under("feature.hostname").is_empty());
        let target: Vec<String> = keys_under("target").into_iter().map(|k| k.name).collect();
        assert_eq!(target, ["namespace", "path"]);
        let path: Vec<String> = keys_under("target.path")
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(
            path,
            ["container", "deployment", "pod", "rollout", "statefulset"]
        );
    }

    #[test]
    fn key_under_the_cursor() {
        use crate::{Format, Pos};
        let toml = "[feature.network]\nincoming = { mode = \"steal\" }\n";
        assert_eq!(
            key_at(toml, Format::Toml, Pos::new(2, 3)).as_deref(),
            Some("feature.network.incoming")
        );
        assert_eq!(
            key_at(toml, Format::Toml, Pos::new(2, 16)).as_deref(),
            Some("feature.network.incoming.mode")
        );
        let yaml = "agent:\n  tolerations:\n    - operator: Exists\n";
        assert_eq!(
            key_at(yaml, Format::Yaml, Pos::new(3, 8)).as_deref(),
            Some("agent.tolerations[0].operator")
        );
        let json = "{\"target\": \"pod/a\"}";
        assert_eq!(
            key_at(json, Format::Json, Pos::new(1, 4)).as_deref(),
            Some("target")
        );
        assert_eq!(key_at(json, Format::Json, Pos::new(1, 15)), None);
        assert!(
            key_info("agent.tolerations[0].operator")
                .unwrap()
                .description
                .is_some()
        );
    }
}
