//! Value completions from the JSON Schema: the constants of enums (`mirror`, `steal`, `off`),
//! booleans, and where target names go.

use serde_json::Value;

/// One value the schema allows at a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The value as the user writes it (without quotes).
    pub label: String,
    /// Its doc comment, when the schema has one.
    pub doc: Option<String>,
    /// A string (quoted in JSON and TOML) rather than a bool.
    pub string: bool,
}

/// Which target names a value takes, when it is a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSlot {
    /// A whole target path: `pod/NAME`, `deployment/NAME`, ...
    Path,
    /// Only a name of this kind (`target.path.pod`, ...).
    Name(&'static str),
}

/// Whether the key at `path` holds a target (string form or one kind of the object form).
pub fn target_slot(path: &str) -> Option<TargetSlot> {
    match path {
        "target" | "target.path" => Some(TargetSlot::Path),
        "target.path.pod" => Some(TargetSlot::Name("pod")),
        "target.path.deployment" => Some(TargetSlot::Name("deployment")),
        "target.path.statefulset" => Some(TargetSlot::Name("statefulset")),
        "target.path.rollout" => Some(TargetSlot::Name("rollout")),
        _ => None,
    }
}

fn schema_root() -> &'static Value {
    static ROOT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| serde_json::from_str(&tether_config::schema_json()).unwrap_or(Value::Null))
}

fn resolve<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    v.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| root.get("$defs")?.get(name))
        .unwrap_or(v)
}

/// Every schema `v` stands for, through `$ref` and `anyOf`/`oneOf`/`allOf`.
fn alternatives<'a>(root: &'a Value, v: &'a Value, out: &mut Vec<&'a Value>, depth: usize) {
    if depth > 8 {
        return;
    }
    let v = resolve(root, v);
    out.push(v);
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alts)) = v.get(key) {
            for alt in alts {
                alternatives(root, alt, out, depth + 1);
            }
        }
    }
}

/// The schemas of the value at a dotted path (`a.b[0].c`).
fn schemas_at(path: &str) -> Vec<&'static Value> {
    let root = schema_root();
    let mut current = vec![root];
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let name = segment.split('[').next().unwrap_or(segment);
        let indexed = segment.contains('[');
        let mut next = Vec::new();
        for v in current {
            let mut alts = Vec::new();
            alternatives(root, v, &mut alts, 0);
            if !name.is_empty() {
                next.extend(alts.iter().filter_map(|a| a.get("properties")?.get(name)));
            } else {
                next.push(v);
            }
        }
        if indexed {
            let mut items = Vec::new();
            for v in next {
                let mut alts = Vec::new();
                alternatives(root, v, &mut alts, 0);
                items.extend(alts.iter().filter_map(|a| a.get("items")));
            }
            next = items;
        }
        current = next;
    }
    current
}

/// The constants and booleans the value at `path` may be.
pub fn choices(path: &str) -> Vec<Choice> {
    let root = schema_root();
    let mut out: Vec<Choice> = Vec::new();
    let mut push = |c: Choice| {
        if !out.iter().any(|o| o.label == c.label) {
            out.push(c);
        }
    };
    for v in schemas_at(path) {
        let mut alts = Vec::new();
        alternatives(root, v, &mut alts, 0);
        for a in alts {
            let doc = a
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(Value::String(s)) = a.get("const") {
                push(Choice {
                    label: s.clone(),
                    doc: doc.clone(),
                    string: true,
                });
            }
            if let Some(Value::Array(vals)) = a.get("enum") {
                for s in vals.iter().filter_map(Value::as_str) {
                    push(Choice {
                        label: s.to_owned(),
                        doc: None,
                        string: true,
                    });
                }
            }
            let is_bool = match a.get("type") {
                Some(Value::String(t)) => t == "boolean",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "boolean"),
                _ => false,
            };
            if is_bool {
                for b in ["true", "false"] {
                    push(Choice {
                        label: b.to_owned(),
                        doc: None,
                        string: false,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(path: &str) -> Vec<String> {
        choices(path).into_iter().map(|c| c.label).collect()
    }

    #[test]
    fn enum_and_bool_values() {
        assert_eq!(
            labels("feature.network.incoming.mode"),
            ["mirror", "steal", "off"]
        );
        let steal = choices("feature.network.incoming.mode")
            .into_iter()
            .find(|c| c.label == "steal")
            .unwrap();
        assert!(steal.doc.unwrap().contains("local process answers"));
        // The short form `incoming = "steal"` takes the modes too.
        assert!(labels("feature.network.incoming").contains(&"steal".to_owned()));
        assert!(labels("feature.fs.mode").contains(&"localwithoverrides".to_owned()));
        assert!(labels("feature.hostname").contains(&"true".to_owned()));
        assert!(labels("feature.nope").is_empty());
        assert_eq!(
            target_slot("target.path.pod"),
            Some(TargetSlot::Name("pod"))
        );
    }
}
