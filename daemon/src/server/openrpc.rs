//! The OpenRPC document of the daemon API, generated from [`super::METHODS`] and the wire types.
//!
//! Checked in at `schemas/daemon.openrpc.json`; `tether schema --openrpc` prints it and a test
//! fails when the checked-in copy is stale (`UPDATE_SCHEMAS=1 cargo test -p tether` rewrites it).
//! Subscriptions are plain methods whose result is the subscription id, plus an
//! `x-subscription` member naming the notification method, its item schema and the unsubscribe
//! method (OpenRPC has no subscription construct).

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::{
    METHODS,
    error::{ErrorData, ErrorKind},
};

/// Version of the API described; bump on every change of the document.
pub const API_VERSION: &str = "0.2.0";

fn error_object(kind: ErrorKind) -> Value {
    json!({
        "code": kind.code(),
        "message": kind.as_str(),
        "data": { "kind": kind.as_str() },
    })
}

/// The document as a JSON value.
pub fn document() -> Value {
    let mut g = SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut methods = Vec::new();
    for m in METHODS {
        let params = match m.params {
            None => Vec::new(),
            Some(f) => {
                let schema = f(&mut g);
                let object = resolve(&g, schema.as_value());
                let required: Vec<String> = object
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                object
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|props| {
                        props
                            .iter()
                            .map(|(name, schema)| {
                                let mut p = Map::new();
                                p.insert("name".into(), json!(name));
                                if let Some(d) = schema.get("description") {
                                    p.insert("description".into(), d.clone());
                                }
                                p.insert("required".into(), json!(required.contains(name)));
                                p.insert("schema".into(), schema.clone());
                                Value::Object(p)
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
        };
        let result = (m.result)(&mut g).to_value();
        let mut errors: Vec<Value> = vec![error_object(ErrorKind::InvalidParams)];
        errors.extend(m.errors.iter().map(|k| error_object(*k)));
        let mut method = json!({
            "name": m.name,
            "summary": m.summary,
            "paramStructure": "by-name",
            "params": params,
            "result": { "name": if m.subscription.is_some() { "subscription" } else { "result" }, "schema": result },
            "errors": errors,
        });
        if let Some(sub) = m.subscription {
            method["x-subscription"] = json!({
                "notification": sub.notification,
                "unsubscribe": sub.unsubscribe,
                "item": (sub.item)(&mut g).to_value(),
            });
        }
        methods.push(method);
        if let Some(sub) = m.subscription {
            methods.push(json!({
                "name": sub.unsubscribe,
                "summary": format!("End a {} subscription", m.name),
                "paramStructure": "by-position",
                "params": [{ "name": "subscription", "required": true, "schema": { "type": "string" } }],
                "result": { "name": "ended", "schema": { "type": "boolean" } },
            }));
        }
    }
    let error_data = g.subschema_for::<ErrorData>().to_value();
    let mut schemas = g.take_definitions(true);
    schemas.sort_keys();
    json!({
        "openrpc": "1.3.2",
        "info": {
            "title": "tether daemon",
            "version": API_VERSION,
            "description": "JSON-RPC 2.0 API of the tether daemon, over WebSocket (or HTTP POST) on 127.0.0.1. \
                Find the address and token in the discovery file ($XDG_RUNTIME_DIR/tether/daemon.json, else \
                ~/.local/state/tether/daemon.json). Every connection sends `Authorization: Bearer <token>` (no query \
                token); requests with an `Origin` header are refused with 403. Params are by name. Errors carry \
                `data: {kind, target, hint}`, see x-error-data.",
        },
        "servers": [{ "name": "local daemon", "url": "ws://127.0.0.1:{port}", "variables": { "port": { "default": "0", "description": "from the discovery file" } } }],
        "methods": methods,
        "components": {
            "schemas": schemas,
        },
        "x-error-data": error_data,
        "x-error-kinds": ErrorKind::ALL.iter().map(|k| json!({"kind": k.as_str(), "code": k.code()})).collect::<Vec<_>>(),
    })
}

/// Follows a `$ref` into the generator's definitions.
fn resolve(g: &schemars::SchemaGenerator, schema: &Value) -> Value {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str)
        && let Some(name) = r.strip_prefix("#/components/schemas/")
        && let Some(def) = g.definitions().get(name)
    {
        return def.clone();
    }
    schema.clone()
}

/// The document as pretty JSON with a final newline: the content of `schemas/daemon.openrpc.json`.
pub fn document_json() -> String {
    let mut s = serde_json::to_string_pretty(&document()).expect("a JSON value always serializes");
    s.push('\n');
    s
}
