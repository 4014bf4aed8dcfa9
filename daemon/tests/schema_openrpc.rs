//! The checked-in OpenRPC document matches the method definitions.
//! `UPDATE_SCHEMAS=1 cargo test -p tether --test schema_openrpc` rewrites it.

use std::{collections::BTreeSet, path::PathBuf};

use serde_json::Value;
use tether::server::{METHODS, openrpc, rpc_module};

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/daemon.openrpc.json")
}

#[test]
fn openrpc_document_is_current() {
    let fresh = openrpc::document_json();
    let path = checked_in();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "schemas/daemon.openrpc.json is stale\n  help: run `UPDATE_SCHEMAS=1 cargo test -p tether --test schema_openrpc` (or `tether schema --openrpc > schemas/daemon.openrpc.json`)"
    );
}

#[tokio::test]
async fn document_lists_exactly_the_registered_methods() {
    let doc = openrpc::document();
    let documented: BTreeSet<String> = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    let module = rpc_module(tether::server::DaemonState::new(Default::default()));
    let registered: BTreeSet<String> = module.method_names().map(str::to_owned).collect();
    assert_eq!(documented, registered);
    assert_eq!(
        METHODS.len() + 2,
        registered.len(),
        "two subscriptions add an unsubscribe method each"
    );
}

#[test]
fn every_ref_resolves_and_params_are_by_name() {
    let doc = openrpc::document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    fn walk(v: &Value, refs: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    refs.push(r.clone());
                }
                m.values().for_each(|v| walk(v, refs));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    walk(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(schemas.contains_key(name), "dangling ref {r}");
    }
    let verify = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config.verify")
        .unwrap();
    let names: Vec<&str> = verify["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"path") && names.contains(&"text") && names.contains(&"format"),
        "{names:?}"
    );
    let stop = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "session.stop")
        .unwrap();
    assert_eq!(stop["params"][0]["required"], Value::Bool(true));
    let watch = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "targets.watch")
        .unwrap();
    assert_eq!(watch["x-subscription"]["notification"], "targets.changed");
}
