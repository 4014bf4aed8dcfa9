//! tether's config: types, loading (JSON, TOML, YAML), environment and flag overrides,
//! validation with positions, and the JSON Schema.
//!
//! # Tour
//! - [`resolve_config_path`] says which file applies ([`ConfigSource`]).
//! - [`load`] reads a file (or none), applies `TETHER_*`/`MIRRORD_*` variables from an injected
//!   [`EnvMap`] and typed [`Overrides`] (CLI flags), validates, and returns a [`Verified`] config
//!   with warnings, or [`ConfigErrors`] with every error found.
//! - [`verify_str`] does the same for text that is not on disk (the LSP's unsaved buffers).
//! - [`TetherConfig`] and its parts are what the daemon and layer consume: [`EnvConfig::apply`],
//!   [`FsConfig::policy`], [`IncomingConfig`], [`HttpFilter`], [`OutgoingFilter`], [`DnsConfig`].
//! - [`schema_json`] is the JSON Schema generated from the types, checked in at
//!   `schemas/tether.schema.json`.
//!
//! # How reading works
//! Each format is parsed into one spanned value tree (own JSON parser, `toml`'s spanned
//! `DeTable`, `saphyr-parser` events), then read into the typed config while tracking key paths
//! and positions. Errors are collected, not stopped at: a bad value keeps its default and reading
//! goes on.
//!
//! **Architecture invariant:** config types never go on the wire; the daemon converts what the
//! agent and layer need into `tether-protocol` types.
//!
//! ```
//! use tether_config::{EnvMap, Format, IncomingMode, Overrides, verify_str};
//!
//! let text = "target = \"pod/api\"\n[feature.network]\nincoming = \"steal\"\n";
//! let env = EnvMap::from([("TETHER_TARGET_NAMESPACE".into(), "shop".into())]);
//! let v = verify_str(text, Format::Toml, None, &env, &Overrides::default()).unwrap();
//! assert_eq!(v.config.target().unwrap().to_string(), "pod/api");
//! assert_eq!(v.config.target.namespace.as_deref(), Some("shop"));
//! assert_eq!(v.config.feature.network.incoming.mode, IncomingMode::Steal);
//!
//! let e = verify_str("[feature]\nenvv = true\n", Format::Toml, None, &env, &Overrides::default())
//!     .unwrap_err();
//! assert_eq!(e.errors[0].message, "unknown key `feature.envv`");
//! assert_eq!(e.errors[0].help.as_deref(), Some("did you mean `feature.env`?"));
//! assert_eq!((e.errors[0].line, e.errors[0].column), (Some(2), Some(1)));
//! ```
//!
//! **Compatibility:** keys have mirrord's names and meanings. mirrord keys tether lacks are errors
//! naming why (operator-only, or unsupported), or warnings when ignoring them is harmless.

#![warn(missing_docs)]

mod cx;
mod diag;
mod mirrord;
mod model;
mod node;
mod overrides;
mod parse;
mod read;
mod resolve;
mod schema;
#[cfg(test)]
mod schema_check;
mod suggest;
mod validate;

use std::path::{Path, PathBuf};

use crate::cx::Cx;

pub use crate::{
    diag::{ConfigErrors, Diagnostic, Pos, Severity},
    model::{
        FeatureConfig, TetherConfig,
        agent::{AgentConfig, AgentResources, ImagePullPolicy, ImagePullSecret, Toleration},
        env::{DEFAULT_EXCLUDE, EnvConfig, EnvFileError, read_env_file, wildcard_match},
        fs::{FsConfig, FsMode, FsPolicy, FsRule},
        network::{
            AddressRule, DEFAULT_HTTP_FILTER_PORTS, DnsConfig, HostPattern, HttpFilter,
            HttpFilterConfig, IncomingConfig, IncomingMode, NetworkConfig, OutgoingConfig,
            OutgoingFilter, Protocol,
        },
        target::{Target, TargetConfig, TargetError, TargetType},
    },
    node::Format,
    overrides::{ENV_VARS, EnvMap, EnvVar, Overrides},
    resolve::{ConfigSource, MIRRORD_FILES, TETHER_FILES, project_dir, resolve_config_path},
    schema::{KeyInfo, key_at, key_info, keys_under, schema, schema_json},
};

/// A valid config and the warnings found while reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The merged config: defaults, file, environment, overrides.
    pub config: TetherConfig,
    /// Ignored or no-op settings; the config works regardless.
    pub warnings: Vec<Diagnostic>,
    /// The file read, if any.
    pub path: Option<PathBuf>,
}

/// Loads and verifies the config at `path` (or only defaults, env and overrides when `None`).
///
/// `env` is the process environment, injected so that callers (and tests) control it.
pub fn load(
    path: Option<&Path>,
    env: &EnvMap,
    overrides: &Overrides,
) -> Result<Verified, ConfigErrors> {
    let Some(path) = path else {
        return finish(Cx::new(None, None), None, None, env, overrides);
    };
    match std::fs::read_to_string(path) {
        Ok(text) => verify_str(&text, Format::from_path(path), Some(path), env, overrides),
        Err(e) => {
            let mut d = Diagnostic::new(Severity::Error, format!("cannot read config file: {e}"))
                .help("check the path, or leave it out to use `.tether/tether.toml` or `.mirrord/mirrord.json`");
            d.file = Some(path.to_owned());
            Err(ConfigErrors {
                errors: vec![d],
                warnings: Vec::new(),
            })
        }
    }
}

/// Verifies config text that may not be on disk (an editor buffer). `file` names it in
/// diagnostics and anchors relative paths (`feature.env.env_file`).
pub fn verify_str(
    text: &str,
    format: Format,
    file: Option<&Path>,
    env: &EnvMap,
    overrides: &Overrides,
) -> Result<Verified, ConfigErrors> {
    let base = file.map(project_dir);
    let mut cx = Cx::new(file, base.as_deref());
    match parse::parse(text, format) {
        Ok(root) => {
            let cfg = read::read_config(&mut cx, &root);
            finish(cx, Some(cfg), file, env, overrides)
        }
        Err(e) => {
            // mirrord renders configs with Tera first; tether does not.
            let help = (text.contains("{{") || text.contains("{%")).then(|| {
                "tether does not render mirrord's Tera templates (`{{ ... }}`); set values with \
                 TETHER_* variables such as TETHER_TARGET instead"
                    .to_owned()
            });
            cx.error(e.pos, "", e.message, help);
            let (errors, warnings) = split(cx.diags);
            Err(ConfigErrors { errors, warnings })
        }
    }
}

fn finish(
    mut cx: Cx<'_>,
    cfg: Option<TetherConfig>,
    file: Option<&Path>,
    env: &EnvMap,
    overrides: &Overrides,
) -> Result<Verified, ConfigErrors> {
    let mut cfg = cfg.unwrap_or_default();
    overrides::apply_env(&mut cx, &mut cfg, env);
    overrides::apply_overrides(&mut cx, &mut cfg, overrides);
    validate::validate(&mut cx, &cfg);
    let (errors, warnings) = split(cx.diags);
    if errors.is_empty() {
        Ok(Verified {
            config: cfg,
            warnings,
            path: file.map(Path::to_path_buf),
        })
    } else {
        Err(ConfigErrors { errors, warnings })
    }
}

/// Errors and warnings, each in file order (diagnostics without a position last).
fn split(mut diags: Vec<Diagnostic>) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    diags.sort_by_key(|d| (d.line.is_none(), d.line, d.column));
    diags
        .into_iter()
        .partition(|d| d.severity == Severity::Error)
}

#[cfg(test)]
mod tests;
