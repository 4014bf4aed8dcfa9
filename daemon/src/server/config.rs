//! `config.*` handlers: which file applies, verification with positions, the resolved view.
//!
//! The work is `tether-config`'s; this module only picks the input (file or unsaved text),
//! injects the environment, and converts to the wire twins in [`super::api`].

use std::path::{Path, PathBuf};

use tether_config::{self as config, ConfigSource as Source, EnvMap, Format, Overrides};

use super::{
    api::{
        ConfigDiagnostic, ConfigFormat, ConfigInput, ConfigSource, DiagnosticSeverity,
        ResolveParams, ResolvedConfig, ResolvedFile, TargetKind, VerifyResult,
    },
    error::{ErrorKind, RpcError},
};

fn daemon_env() -> EnvMap {
    std::env::vars().collect()
}

fn cwd_or_daemon(cwd: Option<&Path>) -> Result<PathBuf, RpcError> {
    match cwd {
        Some(c) if c.is_absolute() => Ok(c.to_owned()),
        Some(c) => Err(RpcError::new(
            ErrorKind::InvalidParams,
            format!("cwd must be an absolute path: {}", c.display()),
        )
        .target(c.display().to_string())
        .hint("send the workspace folder's absolute path")),
        None => std::env::current_dir().map_err(|e| RpcError::internal(format!("daemon cwd: {e}"))),
    }
}

fn format_of(f: Format) -> ConfigFormat {
    match f {
        Format::Json => ConfigFormat::Json,
        Format::Toml => ConfigFormat::Toml,
        Format::Yaml => ConfigFormat::Yaml,
    }
}

fn format_in(f: ConfigFormat) -> Format {
    match f {
        ConfigFormat::Json => Format::Json,
        ConfigFormat::Toml => Format::Toml,
        ConfigFormat::Yaml => Format::Yaml,
    }
}

/// `config.resolve`.
pub fn resolve(p: &ResolveParams) -> Result<ResolvedFile, RpcError> {
    let cwd = cwd_or_daemon(p.cwd.as_deref())?;
    let mut env = daemon_env();
    if let Some(f) = &p.env_file {
        env.insert("TETHER_CONFIG_FILE".to_owned(), f.display().to_string());
    }
    let source = config::resolve_config_path(&cwd, p.explicit.as_deref(), &env);
    let path = source.path().map(Path::to_owned);
    let kind = match &source {
        Source::Explicit(_) => ConfigSource::Explicit,
        Source::Env { .. } => ConfigSource::Env,
        Source::Tether(_) => ConfigSource::TetherDir,
        Source::Mirrord(_) => ConfigSource::MirrordDir,
        Source::Defaults => ConfigSource::None,
    };
    if matches!(kind, ConfigSource::Explicit | ConfigSource::Env)
        && let Some(path) = &path
        && !path.is_file()
    {
        let var = if kind == ConfigSource::Env {
            " (from TETHER_CONFIG_FILE)"
        } else {
            ""
        };
        return Err(RpcError::new(
            ErrorKind::ConfigNotFound,
            format!("config file {}{var} does not exist", path.display()),
        )
        .target(path.display().to_string())
        .hint(
            "fix the path, or remove it to use `.tether/tether.toml` or `.mirrord/mirrord.json`",
        ));
    }
    // Default-location files in the same project that lose to the chosen one.
    let shadowed = match &path {
        Some(chosen) => {
            let dir = match kind {
                ConfigSource::TetherDir | ConfigSource::MirrordDir => config::project_dir(chosen),
                _ => cwd.clone(),
            };
            config::TETHER_FILES
                .iter()
                .chain(config::MIRRORD_FILES.iter())
                .map(|f| dir.join(f))
                .filter(|f| f != chosen && f.is_file())
                .collect()
        }
        None => Vec::new(),
    };
    Ok(ResolvedFile {
        format: path.as_deref().map(|p| format_of(Format::from_path(p))),
        path,
        source: kind,
        shadowed,
    })
}

fn diag(d: &config::Diagnostic) -> ConfigDiagnostic {
    ConfigDiagnostic {
        severity: match d.severity {
            config::Severity::Error => DiagnosticSeverity::Error,
            config::Severity::Warning => DiagnosticSeverity::Warning,
        },
        message: d.message.clone(),
        help: d.help.clone(),
        file: d.file.clone(),
        line: d.line,
        column: d.column,
        key_path: d.key_path.clone(),
    }
}

fn kind_of(t: config::TargetType) -> TargetKind {
    match t {
        config::TargetType::Targetless => TargetKind::Targetless,
        config::TargetType::Pod => TargetKind::Pod,
        config::TargetType::Deployment => TargetKind::Deployment,
        config::TargetType::StatefulSet => TargetKind::StatefulSet,
        config::TargetType::Rollout => TargetKind::Rollout,
    }
}

/// Reads the config `input` names, with `overrides` on top.
pub fn load(
    input: &ConfigInput,
    overrides: &Overrides,
) -> Result<Result<config::Verified, config::ConfigErrors>, RpcError> {
    let env = if input.apply_env {
        daemon_env()
    } else {
        EnvMap::new()
    };
    let cwd = cwd_or_daemon(input.cwd.as_deref())?;
    let path = input.path.as_ref().map(|p| cwd.join(p));
    if let Some(text) = &input.text {
        let format = input
            .format
            .map(format_in)
            .or_else(|| path.as_deref().map(Format::from_path))
            .unwrap_or(Format::Json);
        return Ok(config::verify_str(
            text,
            format,
            path.as_deref(),
            &env,
            overrides,
        ));
    }
    let path = match path {
        Some(p) => Some(p),
        None => {
            resolve(&ResolveParams {
                cwd: Some(cwd.clone()),
                explicit: None,
                env_file: None,
            })?
            .path
        }
    };
    if let Some(p) = &path
        && !p.is_file()
    {
        return Err(RpcError::new(
            ErrorKind::ConfigNotFound,
            format!("config file {} does not exist", p.display()),
        )
        .target(p.display().to_string())
        .hint("fix the path, or send the unsaved text as `text`"));
    }
    Ok(config::load(path.as_deref(), &env, overrides))
}

/// `config.verify`.
pub fn verify(input: &ConfigInput) -> Result<VerifyResult, RpcError> {
    let path = input.path.clone();
    Ok(match load(input, &Overrides::default())? {
        Ok(v) => VerifyResult {
            ok: true,
            path: v.path.clone().or(path),
            errors: Vec::new(),
            warnings: v.warnings.iter().map(diag).collect(),
            compatible_target_types: v
                .config
                .compatible_target_types()
                .into_iter()
                .map(kind_of)
                .collect(),
            target: v.config.target().map(|t| t.to_string()),
            namespace: v.config.target.namespace.clone(),
        },
        Err(e) => VerifyResult {
            ok: false,
            path: e.errors.iter().find_map(|d| d.file.clone()).or(path),
            errors: e.errors.iter().map(diag).collect(),
            warnings: e.warnings.iter().map(diag).collect(),
            compatible_target_types: Vec::new(),
            target: None,
            namespace: None,
        },
    })
}

/// `config.resolved`.
pub fn resolved(input: &ConfigInput) -> Result<ResolvedConfig, RpcError> {
    match load(input, &Overrides::default())? {
        Ok(v) => Ok(ResolvedConfig {
            config: serde_json::to_value(&v.config).map_err(RpcError::internal)?,
            path: v.path,
            warnings: v.warnings.iter().map(diag).collect(),
        }),
        Err(e) => {
            let first = e.errors.first().map(|d| match d.location() {
                Some(loc) => format!("{loc}: {}", d.message),
                None => d.message.clone(),
            });
            let target = e
                .errors
                .iter()
                .find_map(|d| d.file.as_ref())
                .map(|f| f.display().to_string());
            let mut err = RpcError::new(
                ErrorKind::ConfigInvalid,
                format!("config has {} error(s): {}", e.errors.len(), first.unwrap_or_default()),
            )
            .hint("run config.verify (or `tether verify-config`) to see every error with its position");
            if let Some(t) = target {
                err = err.target(t);
            }
            Err(err)
        }
    }
}
