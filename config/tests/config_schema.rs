//! The checked-in schema must match the types.

use std::path::Path;

#[test]
fn checked_in_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/tether.schema.json");
    let fresh = tether_config::schema_json();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "schemas/tether.schema.json is stale\n  help: regenerate it with `cargo run -p tether -- schema > schemas/tether.schema.json` \
         (or `UPDATE_SCHEMA=1 cargo test -p tether-config --test config_schema`)"
    );
}

#[test]
fn schema_documents_every_property() {
    let schema: serde_json::Value = serde_json::from_str(&tether_config::schema_json()).unwrap();
    let mut missing = Vec::new();
    walk(&schema, "", &mut missing);
    assert!(
        missing.is_empty(),
        "properties without a description: {missing:?}"
    );
}

fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::Object(props)) = m.get("properties") {
                // One-property objects (externally tagged enum variants) are documented as a whole.
                let documented_whole = props.len() == 1 && m.get("description").is_some();
                for (k, p) in props {
                    let has_doc = p.get("description").is_some() || documented_whole;
                    // A property that only references a definition takes that definition's doc.
                    if !has_doc && p.get("$ref").is_none() {
                        missing.push(format!("{path}.{k}"));
                    }
                }
            }
            for (k, child) in m {
                walk(child, &format!("{path}/{k}"), missing);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, path, missing)),
        _ => {}
    }
}
