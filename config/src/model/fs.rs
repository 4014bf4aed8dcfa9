//! `feature.fs`: which file operations go to the pod.

use std::{fmt, str::FromStr};

use regex::RegexSet;
use schemars::JsonSchema;
use serde::Serialize;

use super::StringOrList;

/// How file operations are split between the local machine and the pod.
///
/// A mode string (`"read"`) or an object with a `mode` and regex lists. Paths are matched with
/// the rules in this order: `not_found`, `local`, `read_only`, `read_write`; then tether's
/// built-in defaults (system dirs local, `/etc/resolv.conf` remote, credentials not found); then
/// `mode`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FsConfig {
    /// What happens to paths no rule matches.
    /// Env: `TETHER_FS_MODE` (or `MIRRORD_FILE_MODE`).
    pub mode: FsMode,

    /// Regexes of paths read and written in the pod, whatever the mode.
    #[schemars(with = "StringOrList")]
    pub read_write: Vec<String>,

    /// Regexes of paths read from the pod; writing them fails.
    #[schemars(with = "StringOrList")]
    pub read_only: Vec<String>,

    /// Regexes of paths always opened locally.
    #[schemars(with = "StringOrList")]
    pub local: Vec<String>,

    /// Regexes of paths that appear not to exist (`ENOENT`), for local files the process must
    /// not see, like credentials.
    #[schemars(with = "StringOrList")]
    pub not_found: Vec<String>,
}

/// The fs mode: where unmatched paths go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FsMode {
    /// Everything local.
    Local,
    /// Local, except paths in `read_write`/`read_only`.
    #[serde(rename = "localwithoverrides")]
    LocalWithOverrides,
    /// Read from the pod; files opened for writing are local.
    #[default]
    Read,
    /// Read and write in the pod.
    Write,
}

impl FsMode {
    /// Every mode, as written in config files.
    pub const NAMES: [&'static str; 4] = ["local", "localwithoverrides", "read", "write"];

    /// The rule for a path that no list and no built-in default matched.
    pub fn fallback(self) -> FsRule {
        match self {
            FsMode::Local | FsMode::LocalWithOverrides => FsRule::Local,
            FsMode::Read => FsRule::ReadOnly,
            FsMode::Write => FsRule::ReadWrite,
        }
    }
}

impl FromStr for FsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "local" => FsMode::Local,
            "localwithoverrides" => FsMode::LocalWithOverrides,
            "read" => FsMode::Read,
            "write" => FsMode::Write,
            _ => return Err(format!("unknown fs mode `{s}`")),
        })
    }
}

impl fmt::Display for FsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsMode::Local => "local",
            FsMode::LocalWithOverrides => "localwithoverrides",
            FsMode::Read => "read",
            FsMode::Write => "write",
        })
    }
}

/// What to do with one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsRule {
    /// Open the local file.
    Local,
    /// Read it from the pod; writes fail (or, in `read` mode, go to a local file).
    ReadOnly,
    /// Read and write it in the pod.
    ReadWrite,
    /// Pretend it does not exist.
    NotFound,
}

/// `FsConfig` with its regexes compiled, for the hot path.
#[derive(Debug, Clone)]
pub struct FsPolicy {
    mode: FsMode,
    not_found: RegexSet,
    local: RegexSet,
    read_only: RegexSet,
    read_write: RegexSet,
}

impl FsConfig {
    /// Compiles the rule lists. Loading already validated every regex, so this fails only for a
    /// config built in code with a bad one.
    pub fn policy(&self) -> Result<FsPolicy, regex::Error> {
        Ok(FsPolicy {
            mode: self.mode,
            not_found: RegexSet::new(&self.not_found)?,
            local: RegexSet::new(&self.local)?,
            read_only: RegexSet::new(&self.read_only)?,
            read_write: RegexSet::new(&self.read_write)?,
        })
    }
}

impl FsPolicy {
    /// The rule an explicit config list gives `path`, if any (`None`: apply built-in defaults,
    /// then [`FsPolicy::fallback`]).
    pub fn explicit_rule(&self, path: &str) -> Option<FsRule> {
        if self.mode == FsMode::Local {
            return self.not_found.is_match(path).then_some(FsRule::NotFound);
        }
        [
            (&self.not_found, FsRule::NotFound),
            (&self.local, FsRule::Local),
            (&self.read_only, FsRule::ReadOnly),
            (&self.read_write, FsRule::ReadWrite),
        ]
        .into_iter()
        .find(|(set, _)| set.is_match(path))
        .map(|(_, rule)| rule)
    }

    /// The rule for paths nothing else matched.
    pub fn fallback(&self) -> FsRule {
        self.mode.fallback()
    }

    /// The mode.
    pub fn mode(&self) -> FsMode {
        self.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_in_order() {
        let cfg = FsConfig {
            mode: FsMode::Read,
            read_write: vec!["^/data/".into()],
            read_only: vec!["\\.yaml$".into()],
            local: vec!["^/data/cache/".into()],
            not_found: vec!["^/root/\\.aws".into()],
        };
        let p = cfg.policy().unwrap();
        assert_eq!(p.explicit_rule("/data/x"), Some(FsRule::ReadWrite));
        assert_eq!(p.explicit_rule("/data/cache/y"), Some(FsRule::Local));
        assert_eq!(p.explicit_rule("/data/a.yaml"), Some(FsRule::ReadOnly));
        assert_eq!(
            p.explicit_rule("/root/.aws/credentials"),
            Some(FsRule::NotFound)
        );
        assert_eq!(p.explicit_rule("/srv/x"), None);
        assert_eq!(p.fallback(), FsRule::ReadOnly);
    }

    #[test]
    fn local_mode_keeps_everything_local_but_not_found() {
        let cfg = FsConfig {
            mode: FsMode::Local,
            read_write: vec![".*".into()],
            not_found: vec!["secret".into()],
            ..FsConfig::default()
        };
        let p = cfg.policy().unwrap();
        assert_eq!(p.explicit_rule("/x"), None);
        assert_eq!(p.explicit_rule("/secret"), Some(FsRule::NotFound));
        assert_eq!(p.fallback(), FsRule::Local);
        assert_eq!(FsMode::Write.fallback(), FsRule::ReadWrite);
        assert_eq!(
            "localwithoverrides".parse::<FsMode>().unwrap(),
            FsMode::LocalWithOverrides
        );
        assert!("rw".parse::<FsMode>().is_err());
    }
}
