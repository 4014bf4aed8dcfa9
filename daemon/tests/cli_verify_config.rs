//! `tether verify-config` and `tether schema`, run as the real binary: exit codes, human output
//! and the JSON shape the frontends read.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `tether ARGS` in `cwd` with no `TETHER_*`/`MIRRORD_*` variables.
fn tether(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
    cmd.args(args).current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("TETHER_") || k.starts_with("MIRRORD_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn example_config_is_valid() {
    let out = tether(
        &repo(),
        &["verify-config", "examples/.tether/tether.toml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        stdout(&out),
        "ok examples/.tether/tether.toml: target pod/demo in namespace tether-demo\n"
    );

    let out = tether(
        &repo(),
        &["verify-config", "--json", "examples/.tether/tether.toml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["path"], "examples/.tether/tether.toml");
    assert_eq!(v["source"], "explicit");
    assert_eq!(v["target"], "pod/demo");
    assert_eq!(v["namespace"], "tether-demo");
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["compatible_target_types"], serde_json::json!(["pod"]));
}

#[test]
fn invalid_config_exits_1_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "target: targetless\nfeature:\n  network:\n    incoming: steal\n  fss: read\ntelemetry: false\n",
    )
    .unwrap();
    let out = tether(dir.path(), &["verify-config", "bad.yaml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "error bad.yaml:4:5 `steal` mode needs a target pod, but the target is `targetless`
  help: choose a target, or use `mirror` mode
error bad.yaml:5:3 unknown key `feature.fss`
  help: did you mean `feature.fs`?
warning bad.yaml:6:1 `telemetry` is a mirrord setting tether ignores
  help: tether sends no telemetry
invalid bad.yaml: 2 errors, 1 warning
"
    );

    let out = tether(dir.path(), &["verify-config", "--json", "bad.yaml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["target"], Value::Null);
    assert_eq!(v["compatible_target_types"], serde_json::json!([]));
    assert_eq!(
        v["errors"][1],
        serde_json::json!({
            "message": "unknown key `feature.fss`",
            "help": "did you mean `feature.fs`?",
            "file": "bad.yaml",
            "line": 5,
            "column": 3,
            "key": "feature.fss"
        })
    );
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
    assert_eq!(v["warnings"][0]["key"], "telemetry");
}

#[test]
fn finds_mirrord_config_from_a_subdirectory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".mirrord")).unwrap();
    std::fs::create_dir_all(dir.path().join("src/app")).unwrap();
    std::fs::write(
        dir.path().join(".mirrord/mirrord.json"),
        r#"{"target": {"path": "deployment/api", "namespace": "shop"}, "feature": {"network": {"incoming": "steal"}}}"#,
    )
    .unwrap();
    let out = tether(
        &dir.path().join("src/app"),
        &["verify-config", "--json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["source"], "mirrord");
    assert!(
        v["path"]
            .as_str()
            .unwrap()
            .ends_with(".mirrord/mirrord.json"),
        "{v}"
    );
    assert_eq!(v["target"], "deployment/api");
    assert_eq!(v["namespace"], "shop");

    // Env and flags override the file; flags win over env.
    let out = tether(
        &dir.path().join("src/app"),
        &["verify-config", "--json", "--target", "pod/api-0"],
        &[
            ("MIRRORD_IMPERSONATED_TARGET", "pod/from-env"),
            ("TETHER_TARGET_NAMESPACE", "other"),
        ],
    );
    let v = json(&out);
    assert_eq!(v["target"], "pod/api-0");
    assert_eq!(v["namespace"], "other");
}

#[test]
fn no_config_means_defaults_and_every_target_type() {
    let dir = tempfile::tempdir().unwrap();
    let out = tether(dir.path(), &["verify-config", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["source"], "defaults");
    assert_eq!(v["path"], Value::Null);
    assert_eq!(
        v["compatible_target_types"],
        serde_json::json!(["targetless", "pod", "deployment", "statefulset", "rollout"])
    );
    let out = tether(dir.path(), &["verify-config"], &[]);
    assert!(
        stdout(&out).starts_with("ok no config file found; defaults: no target"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_env_value_and_missing_file_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = tether(
        dir.path(),
        &["verify-config"],
        &[("TETHER_INCOMING_MODE", "stael")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("error `TETHER_INCOMING_MODE`: unknown incoming mode `stael`\n"),
        "{}",
        stdout(&out)
    );
    let out = tether(dir.path(), &["verify-config", "--json", "nope.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot read config file: ")
    );
    assert_eq!(v["errors"][0]["file"], "nope.toml");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = tether(dir.path(), &["verify-config", "--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = tether(
        dir.path(),
        &["verify-config", "--incoming", "sideways"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = tether(dir.path(), &["no-such-command"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_fixture_verifies_as_the_library_does() {
    let invalid = repo().join("tests/fixtures/config/invalid");
    let mut n = 0;
    for entry in std::fs::read_dir(&invalid).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("json" | "toml" | "yaml")
        ) {
            continue;
        }
        let out = tether(
            &invalid,
            &["verify-config", "--json", path.to_str().unwrap()],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        let v = json(&out);
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let first = expected.lines().next().unwrap();
        let e = &v["errors"][0];
        let line = format!(
            "error {}:{} {}",
            e["line"],
            e["column"],
            e["message"].as_str().unwrap()
        );
        assert_eq!(line, first, "{}", path.display());
        n += 1;
    }
    assert!(n >= 30);
}

#[test]
fn schema_command_prints_the_checked_in_schema() {
    let out = tether(&repo(), &["schema"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let on_disk = std::fs::read_to_string(repo().join("schemas/tether.schema.json")).unwrap();
    assert!(
        stdout(&out) == on_disk,
        "schemas/tether.schema.json is stale\n  help: cargo run -p tether -- schema > schemas/tether.schema.json"
    );
    let v = json(&out);
    assert_eq!(v["title"], "tether config");
    assert!(v["properties"]["feature"]["description"].is_string());
}
