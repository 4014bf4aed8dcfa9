//! `tether verify-config [--json] [PATH]`: checks a config file (or the one that applies in the
//! working directory) and prints errors and warnings with positions.
//!
//! Exit codes: 0 valid (warnings allowed), 1 invalid or unreadable, 2 usage error (from clap).
//! `--json` prints one object for the frontends:
//! `{ok, path, source, target, namespace, errors, warnings, compatible_target_types}`, where each
//! error and warning is `{message, help, file, line, column, key}`.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use tether_config::{ConfigSource, Diagnostic, EnvMap, TargetType, load, resolve_config_path};

use super::config_flags::ConfigFlags;

/// `tether verify-config`.
#[derive(Debug, Args)]
pub struct VerifyConfigArgs {
    /// Config file. Default: `$TETHER_CONFIG_FILE`, then `.tether/tether.{json,toml,yaml}`, then
    /// `.mirrord/mirrord.{json,toml,yaml}` in this directory or the nearest parent having one.
    pub path: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub flags: ConfigFlags,
}

/// The `--json` output.
#[derive(Debug, Serialize)]
pub struct Report {
    /// No errors.
    pub ok: bool,
    /// The file checked, or null when none applies (defaults).
    pub path: Option<PathBuf>,
    /// How the file was found: `explicit`, `env`, `tether`, `mirrord` or `defaults`.
    pub source: &'static str,
    /// The target string (`pod/demo`), when the config is valid and names one.
    pub target: Option<String>,
    /// The target namespace, when valid and set.
    pub namespace: Option<String>,
    /// Errors, in file order.
    pub errors: Vec<JsonDiagnostic>,
    /// Warnings, in file order.
    pub warnings: Vec<JsonDiagnostic>,
    /// Target types a picker may offer (empty when invalid).
    pub compatible_target_types: Vec<TargetType>,
}

/// One error or warning in the `--json` output.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    /// One lowercase line.
    pub message: String,
    /// The next step, if any.
    pub help: Option<String>,
    /// The file, when the problem is in one.
    pub file: Option<PathBuf>,
    /// 1-based line.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
    /// Dotted key path.
    pub key: Option<String>,
}

impl From<Diagnostic> for JsonDiagnostic {
    fn from(d: Diagnostic) -> Self {
        Self {
            message: d.message,
            help: d.help,
            file: d.file,
            line: d.line,
            column: d.column,
            key: d.key_path,
        }
    }
}

/// Runs `tether verify-config` against the process environment.
pub fn run(args: VerifyConfigArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let env: EnvMap = std::env::vars().collect();
    let (report, text) = verify(&cwd, &args, &env);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot encode the report")?
        );
    } else {
        print!("{text}");
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Checks the config and builds both outputs. Pure apart from reading the config file.
pub fn verify(cwd: &Path, args: &VerifyConfigArgs, env: &EnvMap) -> (Report, String) {
    let source = resolve_config_path(cwd, args.path.as_deref(), env);
    // Show paths relative to the working directory, as the user typed them.
    let shown = source
        .path()
        .map(|p| p.strip_prefix(cwd).unwrap_or(p).to_path_buf());
    let result = load(source.path(), env, &args.flags.overrides());
    let relativize = |mut d: Diagnostic| {
        if let Some(f) = &d.file {
            d.file = Some(
                f.strip_prefix(cwd)
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| f.clone()),
            );
        }
        d
    };
    let source_name = match &source {
        ConfigSource::Explicit(_) => "explicit",
        ConfigSource::Env { .. } => "env",
        ConfigSource::Tether(_) => "tether",
        ConfigSource::Mirrord(_) => "mirrord",
        ConfigSource::Defaults => "defaults",
    };
    let (report, errors, warnings) = match result {
        Ok(v) => {
            let warnings: Vec<Diagnostic> = v.warnings.into_iter().map(relativize).collect();
            let report = Report {
                ok: true,
                path: shown.clone(),
                source: source_name,
                target: v.config.target().map(ToString::to_string),
                namespace: v.config.target.namespace.clone(),
                errors: Vec::new(),
                warnings: warnings.iter().cloned().map(Into::into).collect(),
                compatible_target_types: v.config.compatible_target_types(),
            };
            (report, Vec::new(), warnings)
        }
        Err(e) => {
            let errors: Vec<Diagnostic> = e.errors.into_iter().map(relativize).collect();
            let warnings: Vec<Diagnostic> = e.warnings.into_iter().map(relativize).collect();
            let report = Report {
                ok: false,
                path: shown.clone(),
                source: source_name,
                target: None,
                namespace: None,
                errors: errors.iter().cloned().map(Into::into).collect(),
                warnings: warnings.iter().cloned().map(Into::into).collect(),
                compatible_target_types: Vec::new(),
            };
            (report, errors, warnings)
        }
    };
    let mut text = String::new();
    for d in errors.iter().chain(&warnings) {
        text += &format!("{d}\n");
    }
    let name = shown.as_ref().map_or_else(
        || "no config file found; defaults".to_owned(),
        |p| p.display().to_string(),
    );
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    if report.ok {
        let target = match (&report.target, &report.namespace) {
            (Some(t), Some(ns)) => format!("target {t} in namespace {ns}"),
            (Some(t), None) => format!("target {t}"),
            (None, _) => "no target (the IDE asks; the CLI runs targetless)".to_owned(),
        };
        text += &format!("ok {name}: {target}");
        if !warnings.is_empty() {
            text += &format!(", {}", plural(warnings.len(), "warning"));
        }
        text += "\n";
    } else {
        text += &format!("invalid {name}: {}", plural(errors.len(), "error"));
        if !warnings.is_empty() {
            text += &format!(", {}", plural(warnings.len(), "warning"));
        }
        text += "\n";
    }
    (report, text)
}
