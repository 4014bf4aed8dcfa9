//! Data-driven fixtures under `tests/fixtures/config/`:
//! - `invalid/NAME.{json,toml,yaml}` with `invalid/NAME.expected`, and
//! - `invalid/NAME/` project dirs (holding `.tether/` or `.mirrord/`) with `invalid/NAME/expected`:
//!   the config is found with `resolve_config_path`, as the CLI and IDEs find it;
//! - `valid/...` the same way; they must load, and `expected` lists their warnings.
//!
//! Each expected file has one `severity line:col message` line per diagnostic (errors, then
//! warnings, each in file order) followed by its `  help:` line. `UPDATE_EXPECT=1` rewrites them.

use std::path::{Path, PathBuf};

use tether_config::{Diagnostic, EnvMap, Overrides, load, resolve_config_path};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/config")
}

fn render(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out += &d.severity.to_string();
        if let Some(p) = d.pos() {
            out += &format!(" {}:{}", p.line, p.column);
        }
        out += &format!(" {}\n", d.message);
        if let Some(h) = &d.help {
            out += &format!("  help: {h}\n");
        }
    }
    out
}

/// Every case in `dir`: (config file, expected file).
fn cases(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            let src = resolve_config_path(&p, None, &EnvMap::new());
            let file = src
                .path()
                .unwrap_or_else(|| panic!("{}: no config found", p.display()));
            out.push((file.to_path_buf(), p.join("expected")));
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("json" | "toml" | "yaml")
        ) {
            out.push((p.clone(), p.with_extension("expected")));
        }
    }
    out
}

/// Runs the cases; returns the mismatches.
fn run(dir: &str, want_valid: bool) -> (usize, Vec<String>) {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let cases = cases(&fixtures().join(dir));
    let mut failures = Vec::new();
    for (file, expected_file) in &cases {
        let (valid, actual) = match load(Some(file), &EnvMap::new(), &Overrides::default()) {
            Ok(v) => (true, render(&v.warnings)),
            Err(e) => (false, render(&e.errors) + &render(&e.warnings)),
        };
        if valid != want_valid {
            failures.push(format!(
                "{}: expected {}, got:\n{actual}",
                file.display(),
                if want_valid { "valid" } else { "errors" }
            ));
            continue;
        }
        if update {
            std::fs::write(expected_file, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(expected_file).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                file.display()
            ));
        }
    }
    (cases.len(), failures)
}

#[test]
fn invalid_fixtures_report_exact_errors() {
    let (n, failures) = run("invalid", false);
    assert!(n >= 30, "only {n} invalid fixtures");
    assert!(
        failures.is_empty(),
        "{}\n(UPDATE_EXPECT=1 rewrites expectations)",
        failures.join("\n")
    );
}

#[test]
fn valid_fixtures_load() {
    let (n, failures) = run("valid", true);
    assert!(n >= 4, "only {n} valid fixtures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn example_config_is_valid_and_targets_the_demo_pod() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/.tether/tether.toml");
    let v = load(Some(&file), &EnvMap::new(), &Overrides::default()).unwrap();
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    assert_eq!(
        v.config.target().map(ToString::to_string).as_deref(),
        Some("pod/demo")
    );
    assert_eq!(v.config.target.namespace.as_deref(), Some("tether-demo"));
}

#[test]
fn mirrord_project_loads_with_mirrord_meanings() {
    let dir = fixtures().join("valid/mirrord_project");
    let src = resolve_config_path(&dir, None, &EnvMap::new());
    assert!(matches!(src, tether_config::ConfigSource::Mirrord(_)));
    let c = load(src.path(), &EnvMap::new(), &Overrides::default())
        .unwrap()
        .config;
    assert_eq!(
        c.target().unwrap().to_string(),
        "deployment/checkout/container/server"
    );
    assert_eq!(c.target.namespace.as_deref(), Some("staging"));
    assert!(c.feature.env.takes("REDIS_HOST") && !c.feature.env.takes("HOME"));
    assert_eq!(
        c.feature.network.incoming.mode,
        tether_config::IncomingMode::Steal
    );
    assert!(c.feature.network.incoming.filter_for(8080).is_some());
    assert!(c.feature.network.incoming.filter_for(3000).is_none());
    assert_eq!(c.skip_processes, vec!["ide-debugger".to_string()]);
}

#[test]
fn deprecated_header_filter_is_still_applied() {
    let file = fixtures().join("valid/deprecated_header_filter.json");
    let v = load(Some(&file), &EnvMap::new(), &Overrides::default()).unwrap();
    let incoming = &v.config.feature.network.incoming;
    assert_eq!(
        incoming.filter_for(8080),
        Some(&tether_config::HttpFilter::Header("^x-user: me$".into()))
    );
    assert_eq!(incoming.filter_for(80), None);
    assert_eq!(v.warnings.len(), 1);
}
