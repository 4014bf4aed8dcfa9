//! End-to-end tests of reading: text in, rendered diagnostics or config out.

use std::path::Path;

use super::*;

/// Renders every diagnostic as `severity line:col message` (+ `  help: ...`), one per line.
fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| {
            let mut s = format!("{}", d.severity);
            if let Some(p) = d.pos() {
                s += &format!(" {}:{}", p.line, p.column);
            }
            s += &format!(" {}", d.message);
            if let Some(h) = &d.help {
                s += &format!("\n  help: {h}");
            }
            s
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_with(format: Format, text: &str, env: &[(&str, &str)], overrides: &Overrides) -> String {
    let env: EnvMap = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match verify_str(text, format, Some(Path::new("cfg")), &env, overrides) {
        Ok(v) => render(&v.warnings),
        Err(e) => {
            let mut all = e.errors;
            all.extend(e.warnings);
            render(&all)
        }
    }
}

fn check(format: Format, text: &str) -> String {
    check_with(format, text, &[], &Overrides::default())
}

fn config(format: Format, text: &str, env: &[(&str, &str)]) -> TetherConfig {
    let env: EnvMap = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    verify_str(text, format, None, &env, &Overrides::default())
        .unwrap_or_else(|e| panic!("{}", render(&e.errors)))
        .config
}

#[test]
fn empty_config_is_all_defaults() {
    for (f, text) in [
        (Format::Json, "{}"),
        (Format::Json, ""),
        (Format::Toml, ""),
        (Format::Yaml, ""),
    ] {
        assert_eq!(config(f, text, &[]), TetherConfig::default());
    }
    let d = TetherConfig::default();
    assert_eq!(d.feature.fs.mode, FsMode::Read);
    assert_eq!(d.feature.network.incoming.mode, IncomingMode::Mirror);
    assert!(d.feature.hostname && d.feature.network.dns.enabled && d.feature.network.outgoing.tcp);
    assert_eq!(d.agent.startup_timeout, 60);
}

#[test]
fn same_config_in_three_formats() {
    let json = r#"{
      "target": { "path": { "deployment": "api", "container": "app" }, "namespace": "shop" },
      "feature": {
        "env": { "include": "DB_*;API_URL", "override": { "A": "1" } },
        "fs": { "mode": "write", "not_found": ["^/root/\\.aws"] },
        "network": {
          "incoming": { "mode": "steal", "http_filter": { "header_filter": "^x-user: me$", "ports": 8080 }, "port_mapping": [[3000, 80]] },
          "outgoing": { "filter": { "local": [":53", "10.0.0.0/8"] } },
          "dns": { "filter": { "remote": ["db.internal"] } }
        }
      },
      "agent": { "ttl": 5, "labels": { "team": "a" } },
      "skip_processes": ["bash"]
    }"#;
    let toml = r#"
skip_processes = ["bash"]
[target]
path = { deployment = "api", container = "app" }
namespace = "shop"
[feature.env]
include = "DB_*;API_URL"
override = { A = "1" }
[feature.fs]
mode = "write"
not_found = ['^/root/\.aws']
[feature.network.incoming]
mode = "steal"
http_filter = { header_filter = "^x-user: me$", ports = 8080 }
port_mapping = [[3000, 80]]
[feature.network.outgoing.filter]
local = [":53", "10.0.0.0/8"]
[feature.network.dns.filter]
remote = ["db.internal"]
[agent]
ttl = 5
labels = { team = "a" }
"#;
    let yaml = r#"
target:
  path: {deployment: api, container: app}
  namespace: shop
feature:
  env:
    include: DB_*;API_URL
    override: {A: "1"}
  fs:
    mode: write
    not_found: ['^/root/\.aws']
  network:
    incoming:
      mode: steal
      http_filter: {header_filter: '^x-user: me$', ports: 8080}
      port_mapping: [[3000, 80]]
    outgoing:
      filter:
        local: [":53", 10.0.0.0/8]
    dns:
      filter: {remote: [db.internal]}
agent:
  ttl: 5
  labels: {team: a}
skip_processes: [bash]
"#;
    let a = config(Format::Json, json, &[]);
    assert_eq!(a, config(Format::Toml, toml, &[]));
    assert_eq!(a, config(Format::Yaml, yaml, &[]));
    assert_eq!(
        a.target().unwrap().to_string(),
        "deployment/api/container/app"
    );
    assert_eq!(
        a.feature.env.include,
        Some(vec!["DB_*".to_string(), "API_URL".to_string()])
    );
    assert_eq!(a.feature.network.incoming.http_filter.ports, vec![8080]);
    assert_eq!(
        a.feature.network.incoming.filter_for(8080),
        Some(&HttpFilter::Header("^x-user: me$".into()))
    );
    assert_eq!(a.compatible_target_types(), vec![TargetType::Deployment]);
}

#[test]
fn serialized_config_reads_back_the_same() {
    let text = r#"{"target": "pod/a/container/b", "feature": {"env": false, "network": {"incoming": {"mode": "steal", "http_filter": {"any_of": [{"path": "^/a"}, {"method": "POST"}]}}, "outgoing": {"filter": {"remote": ["tcp://[::1]:80"]}}}}, "agent": {"image": {"registry": "r/agent", "tag": "1"}}}"#;
    let a = config(Format::Json, text, &[]);
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(config(Format::Json, &json, &[]), a);
    let default = serde_json::to_string(&TetherConfig::default()).unwrap();
    assert_eq!(config(Format::Json, &default, &[]), TetherConfig::default());
}

#[test]
fn errors_are_collected_not_stopped_at() {
    let out = check(
        Format::Json,
        r#"{
  "taget": "pod/a",
  "feature": { "fs": "rw", "env": { "include": 3 } },
  "agent": { "ttl": -1, "startup_timeout": "1m" }
}"#,
    );
    assert_eq!(
        out,
        "error 2:3 unknown key `taget`
  help: did you mean `target`?
error 3:22 `feature.fs`: unknown fs mode `rw`
  help: expected `local`, `localwithoverrides`, `read` or `write`
error 3:48 `feature.env.include` must be a string or an array of strings, found an integer
error 4:21 `agent.ttl` must be an integer from 0 to 65535, found -1
error 4:44 `agent.startup_timeout` must be an integer from 0 to 86400, found a string"
    );
}

#[test]
fn env_overrides_file_and_tether_beats_mirrord() {
    let text = r#"{"target": "pod/a", "agent": {"ttl": 3}}"#;
    let c = config(
        Format::Json,
        text,
        &[
            ("MIRRORD_IMPERSONATED_TARGET", "deployment/m"),
            ("MIRRORD_AGENT_TTL", "7"),
            ("TETHER_AGENT_TTL", "9"),
            ("MIRRORD_AGENT_TCP_STEAL_TRAFFIC", "true"),
            ("TETHER_HTTP_PATH_FILTER", "^/api"),
            ("MIRRORD_FILE_MODE", "local"),
            ("TETHER_ENV_EXCLUDE", "A;B"),
            ("TETHER_TARGET_NAMESPACE", "ns1"),
        ],
    );
    assert_eq!(c.target().unwrap().to_string(), "deployment/m");
    assert_eq!(c.agent.ttl, 9);
    assert_eq!(c.feature.network.incoming.mode, IncomingMode::Steal);
    assert_eq!(
        c.feature.network.incoming.http_filter.filter,
        Some(HttpFilter::Path("^/api".into()))
    );
    assert_eq!(c.feature.fs.mode, FsMode::Local);
    assert_eq!(c.feature.env.exclude, Some(vec!["A".into(), "B".into()]));
    assert_eq!(c.target.namespace.as_deref(), Some("ns1"));
}

#[test]
fn bad_env_values_name_the_variable() {
    let out = check_with(
        Format::Json,
        "{}",
        &[
            ("TETHER_INCOMING_MODE", "stael"),
            ("TETHER_TARGET", "pods/x"),
        ],
        &Overrides::default(),
    );
    assert_eq!(
        out,
        "error `MIRRORD_IMPERSONATED_TARGET`: unknown target type `pods`
  help: did you mean `pod`?
error `TETHER_INCOMING_MODE`: unknown incoming mode `stael`
  help: expected `mirror`, `steal` or `off`"
            .replace("MIRRORD_IMPERSONATED_TARGET", "TETHER_TARGET")
    );
}

#[test]
fn flags_override_env_and_conflicts_name_their_source() {
    let overrides = Overrides {
        target: Some("targetless".into()),
        agent_namespace: Some("tools".into()),
        ..Overrides::default()
    };
    let env: EnvMap = [("TETHER_AGENT_NAMESPACE".to_string(), "envns".to_string())].into();
    let text = "[target]\npath = \"pod/a\"\n[feature.network]\nincoming = \"steal\"\n";
    let e = verify_str(
        text,
        Format::Toml,
        Some(Path::new("t.toml")),
        &env,
        &overrides,
    )
    .unwrap_err();
    assert_eq!(
        render(&e.errors),
        "error 4:1 `steal` mode needs a target pod, but the target is `targetless`\n  help: choose a target, or use `mirror` mode"
    );
    let ok = verify_str(
        "",
        Format::Toml,
        None,
        &env,
        &Overrides {
            agent_namespace: Some("tools".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(ok.config.agent.namespace.as_deref(), Some("tools"));
    let e = verify_str(
        "",
        Format::Toml,
        None,
        &env,
        &Overrides {
            target: Some("targetless".into()),
            incoming_mode: Some(IncomingMode::Steal),
            ..Overrides::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        e.errors[0].message,
        "`steal` mode needs a target pod, but the target is `targetless` (set by --incoming)"
    );
    assert_eq!(e.errors[0].file, None);
}

#[test]
fn compatible_target_types_follow_the_config() {
    let c = config(Format::Json, "{}", &[]);
    assert_eq!(c.compatible_target_types(), TargetType::ALL.to_vec());
    let c = config(
        Format::Json,
        r#"{"feature": {"network": {"incoming": "steal"}}}"#,
        &[],
    );
    assert!(
        !c.compatible_target_types()
            .contains(&TargetType::Targetless)
    );
    let c = config(Format::Json, r#"{"target": "targetless"}"#, &[]);
    assert_eq!(c.compatible_target_types(), vec![TargetType::Targetless]);
}

#[test]
fn mirrord_keys_are_errors_or_warnings() {
    let out = check(
        Format::Yaml,
        "operator: false\ntelemetry: false\nfeature:\n  copy_target: true\n  magic: {aws: true}\nagent:\n  json_log: true\n",
    );
    assert_eq!(
        out,
        "error 4:3 `feature.copy_target` needs the mirrord operator, which tether does not have
  help: remove `copy_target`; tether starts its own agent and has no operator
error 5:3 `feature.magic` is a mirrord feature tether does not support
  help: remove `magic`
warning 1:1 `operator` is a mirrord setting tether ignores
  help: tether never uses an operator
warning 2:1 `telemetry` is a mirrord setting tether ignores
  help: tether sends no telemetry
warning 7:3 `agent.json_log` is a mirrord setting tether ignores
  help: agent logs are always structured"
    );
    let out = check(Format::Json, r#"{"operator": true}"#);
    assert!(
        out.starts_with("error 1:2 `operator` needs the mirrord operator"),
        "{out}"
    );
}

#[test]
fn env_file_is_resolved_from_the_project_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".tether")).unwrap();
    std::fs::write(dir.path().join(".env"), "A=1\n").unwrap();
    let file = dir.path().join(".tether/tether.toml");
    std::fs::write(&file, "[feature.env]\nenv_file = \".env\"\n").unwrap();
    let v = load(Some(&file), &EnvMap::new(), &Overrides::default()).unwrap();
    assert_eq!(v.config.feature.env.env_file, Some(dir.path().join(".env")));
    std::fs::write(&file, "[feature.env]\nenv_file = \"missing.env\"\n").unwrap();
    let e = load(Some(&file), &EnvMap::new(), &Overrides::default()).unwrap_err();
    assert_eq!(e.errors[0].pos(), Some(Pos::new(2, 12)));
    assert!(
        e.errors[0].message.contains("missing.env`: no such file"),
        "{}",
        e.errors[0].message
    );
}

#[test]
fn missing_file_is_one_error_naming_it() {
    let e = load(
        Some(Path::new("/nonexistent/t.json")),
        &EnvMap::new(),
        &Overrides::default(),
    )
    .unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert_eq!(
        e.errors[0].file.as_deref(),
        Some(Path::new("/nonexistent/t.json"))
    );
    assert!(e.errors[0].message.starts_with("cannot read config file: "));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/t.json: cannot read config file"),
        "{e}"
    );
}

#[test]
fn diagnostic_display_is_the_cli_line() {
    let e = verify_str(
        "{\"x\": 1}",
        Format::Json,
        Some(Path::new(".tether/tether.json")),
        &EnvMap::new(),
        &Overrides::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.errors[0].to_string(),
        "error .tether/tether.json:1:2 unknown key `x`\n  help: expected one of `target`, `kube_context`, `kubeconfig`, `feature`, `agent` or `skip_processes`"
    );
}

#[test]
fn target_object_errors_point_at_the_wrong_value() {
    assert_eq!(
        check(Format::Json, r#"{"target": {"path": {"pod": "x", "container": "C"}}}"#),
        "error 1:47 `target.path.container`: invalid container name `C`
  help: Kubernetes names are lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit"
    );
    assert_eq!(
        check(Format::Json, r#"{"target": {"path": {"container": "c"}}}"#),
        "error 1:21 `target.path` must name one of `pod`, `deployment`, `statefulset` or `rollout`
  help: e.g. { \"deployment\": \"api\", \"container\": \"app\" }"
    );
}

#[test]
fn toml_header_tables_and_yaml_anchors_keep_positions() {
    assert_eq!(
        check(
            Format::Toml,
            "[feature.magic]\naws = true\n[agent]\nttl = \"5\"\n"
        ),
        "error 1:10 `feature.magic` is a mirrord feature tether does not support
  help: remove `magic`
error 4:7 `agent.ttl` must be an integer from 0 to 65535, found a string"
    );
    let c = config(
        Format::Yaml,
        "target: pod/a\nfeature:\n  network:\n    incoming:\n      mode: steal\n      ports: &p [8080]\n      http_filter: {path_filter: ^/, ports: *p}\n",
        &[],
    );
    assert_eq!(c.feature.network.incoming.http_filter.ports, vec![8080]);
}

#[test]
fn readme_lists_every_variable_and_mirrord_key() {
    let readme = include_str!("../README.md");
    for v in ENV_VARS {
        assert!(
            readme.contains(&format!("`{}`", v.name)),
            "README lacks {}",
            v.name
        );
        if let Some(m) = v.mirrord {
            assert!(readme.contains(&format!("`{m}`")), "README lacks {m}");
        }
    }
    for path in crate::mirrord::all_paths() {
        let shown = path.strip_prefix("target.path.").unwrap_or(path);
        assert!(
            readme.contains(&format!("`{shown}`")),
            "README lacks {path}"
        );
    }
}
