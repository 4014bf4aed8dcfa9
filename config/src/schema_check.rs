//! Test-only: a small JSON Schema (2020-12 subset schemars emits) validator, to prove that the
//! checked-in schema accepts what the reader accepts and rejects typical mistakes, so editors that
//! validate with the schema agree with `tether verify-config`.

use std::path::Path;

use serde_json::{Map, Value};

use crate::{
    Format, Overrides, load,
    node::{Node, Value as N},
    overrides::EnvMap,
    parse,
};

/// Errors found validating `v` against `schema` (empty: valid).
fn validate(root: &Value, schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let Value::Object(s) = schema else {
        if schema == &Value::Bool(false) {
            errs.push(format!("{path}: not allowed"));
        }
        return;
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        validate(root, &root["$defs"][name], v, path, errs);
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        });
        if !ok {
            errs.push(format!("{path}: expected {types:?}, found {v}"));
            return;
        }
    }
    if let Some(Value::Array(e)) = s.get("enum")
        && !e.contains(v)
    {
        errs.push(format!("{path}: {v} not in enum"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        errs.push(format!("{path}: {v} is not {c}"));
    }
    if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        errs.push(format!("{path}: {n} < {min}"));
    }
    if let (Some(max), Some(n)) = (s.get("maximum").and_then(Value::as_f64), v.as_f64())
        && n > max
    {
        errs.push(format!("{path}: {n} > {max}"));
    }
    if let (Some(p), Some(text)) = (s.get("pattern").and_then(Value::as_str), v.as_str())
        && !regex::Regex::new(p).unwrap().is_match(text)
    {
        errs.push(format!("{path}: {text:?} does not match {p}"));
    }
    if let Value::Array(items) = v {
        let prefix = s.get("prefixItems").and_then(Value::as_array);
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match prefix.and_then(|pre| pre.get(i)) {
                Some(ps) => validate(root, ps, item, &p, errs),
                None => {
                    if let Some(is) = s.get("items") {
                        validate(root, is, item, &p, errs);
                    }
                }
            }
        }
        let len = items.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            errs.push(format!("{path}: wrong number of items"));
        }
    }
    if let Value::Object(obj) = v {
        let empty = Map::new();
        let props = s
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for (k, child) in obj {
            let p = format!("{path}.{k}");
            match (props.get(k), s.get("additionalProperties")) {
                (Some(ps), _) => validate(root, ps, child, &p, errs),
                (None, Some(ap)) => validate(root, ap, child, &p, errs),
                (None, None) => {}
            }
        }
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(r.as_str().unwrap_or_default()) {
                errs.push(format!("{path}: missing {r}"));
            }
        }
        if s.get("minProperties")
            .and_then(Value::as_u64)
            .is_some_and(|m| (obj.len() as u64) < m)
        {
            errs.push(format!("{path}: too few properties"));
        }
    }
    let passes = |alt: &Value| {
        let mut e = Vec::new();
        validate(root, alt, v, path, &mut e);
        e.is_empty()
    };
    if let Some(Value::Array(alts)) = s.get("anyOf")
        && !alts.iter().any(passes)
    {
        errs.push(format!("{path}: matches no anyOf alternative: {v}"));
    }
    if let Some(Value::Array(alts)) = s.get("oneOf")
        && alts.iter().filter(|a| passes(a)).count() != 1
    {
        errs.push(format!(
            "{path}: does not match exactly one oneOf alternative: {v}"
        ));
    }
    for alt in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(root, alt, v, path, errs);
    }
}

fn to_json(n: &Node) -> Value {
    match &n.value {
        N::Null => Value::Null,
        N::Bool(b) => Value::Bool(*b),
        N::Int(i) => Value::from(*i),
        N::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        N::Str(s) => Value::String(s.clone()),
        N::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        N::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), to_json(v)))
                .collect(),
        ),
    }
}

fn schema_errors(v: &Value) -> Vec<String> {
    let root = serde_json::to_value(crate::schema()).unwrap();
    let mut errs = Vec::new();
    validate(&root, &root, v, "", &mut errs);
    errs
}

fn file_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    to_json(&parse::parse(&text, Format::from_path(path)).unwrap())
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/config")
}

#[test]
fn schema_accepts_valid_configs_and_their_serialized_form() {
    let mut files: Vec<_> = [
        "minimal.json",
        "full.toml",
        "full.yaml",
        "mirrord_project/.mirrord/mirrord.json",
    ]
    .iter()
    .map(|f| fixtures().join("valid").join(f))
    .collect();
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/.tether/tether.toml"));
    for file in files {
        let verified = load(Some(&file), &EnvMap::new(), &Overrides::default()).unwrap();
        if verified.warnings.is_empty() {
            // Configs with warnings hold mirrord keys the strict schema leaves out on purpose.
            let errs = schema_errors(&file_json(&file));
            assert!(errs.is_empty(), "{}: {errs:#?}", file.display());
        }
        let serialized = serde_json::to_value(&verified.config).unwrap();
        let errs = schema_errors(&serialized);
        assert!(errs.is_empty(), "{} serialized: {errs:#?}", file.display());
    }
    assert!(
        schema_errors(&serde_json::to_value(crate::TetherConfig::default()).unwrap()).is_empty()
    );
}

#[test]
fn schema_rejects_typical_mistakes() {
    for name in [
        "unknown_top_key.json",
        "camel_case_key.json",
        "hostname_wrong_type.json",
        "target_unknown_kind.json",
        "fs_mode_typo.toml",
        "agent_ttl_out_of_range.toml",
        "unknown_key_target.toml",
        "incoming_mode_typo.yaml",
        "env_yes_is_a_string.yaml",
        "image_pull_policy_typo.yaml",
        "experimental_unsupported.json",
    ] {
        let v = file_json(&fixtures().join("invalid").join(name));
        assert!(!schema_errors(&v).is_empty(), "schema accepts {name}");
    }
}
