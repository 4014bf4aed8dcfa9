//! `feature.env`: which of the pod's environment variables the local process gets.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use schemars::JsonSchema;
use serde::Serialize;

use super::StringOrList;

/// Which of the target's environment variables the local process gets.
///
/// `true` (the default) takes all of them except a built-in list of machine-specific ones
/// ([`DEFAULT_EXCLUDE`]); `false` takes none. The object form refines that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EnvConfig {
    /// Only these pod variables are taken. `;`-separated string or array; `*` and `?` are
    /// wildcards. Cannot be combined with `exclude`.
    /// Env: `TETHER_ENV_INCLUDE` (or `MIRRORD_OVERRIDE_ENV_VARS_INCLUDE`).
    #[schemars(with = "Option<StringOrList>")]
    pub include: Option<Vec<String>>,

    /// Pod variables that are not taken, on top of the built-in list. `;`-separated string or
    /// array; `*` and `?` are wildcards. `"*"` takes none.
    /// Env: `TETHER_ENV_EXCLUDE` (or `MIRRORD_OVERRIDE_ENV_VARS_EXCLUDE`).
    #[schemars(with = "Option<StringOrList>")]
    pub exclude: Option<Vec<String>>,

    /// Variables set to these values, whatever the pod has.
    #[serde(rename = "override")]
    pub overrides: BTreeMap<String, String>,

    /// Variables removed from the result, even when the local environment has them.
    pub unset: Vec<String>,

    /// A dotenv file (`KEY=value` lines) whose variables are added over the pod's and under
    /// `override`. A relative path is relative to the project directory (the one holding
    /// `.tether/` or `.mirrord/`).
    pub env_file: Option<PathBuf>,
}

/// Pod variables never taken unless `include` names them: they describe the pod's machine, not
/// the app, and would break local tools.
pub const DEFAULT_EXCLUDE: &[&str] = &[
    "PATH",
    "HOME",
    "HOSTNAME",
    "SHELL",
    "USER",
    "TERM",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "_",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "JAVA_HOME",
    "JAVA_TOOL_OPTIONS",
    "GOPATH",
    "GOROOT",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "CLASSPATH",
    "NODE_PATH",
    "RUBY*",
    "BUNDLE*",
    "GEM_*",
    "RUSTUP_*",
    "CARGO_*",
];

/// Reading `feature.env.env_file` failed.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    /// The file could not be read.
    #[error("cannot read env file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A line is not `KEY=value`.
    #[error("{}:{line}: expected `KEY=value`", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
}

impl EnvConfig {
    /// `feature.env = false`: no pod variables at all.
    pub fn disabled() -> Self {
        Self {
            exclude: Some(vec!["*".into()]),
            ..Self::default()
        }
    }

    /// True when no pod variable can be taken, so the pod's env need not be fetched.
    pub fn is_disabled(&self) -> bool {
        self.exclude
            .as_ref()
            .is_some_and(|e| e.iter().any(|p| p == "*"))
            || self.include.as_ref().is_some_and(|i| i.is_empty())
    }

    /// Whether the pod variable `name` is taken.
    pub fn takes(&self, name: &str) -> bool {
        if let Some(include) = &self.include {
            return include.iter().any(|p| wildcard_match(p, name));
        }
        let excluded = DEFAULT_EXCLUDE.iter().any(|p| wildcard_match(p, name))
            || self
                .exclude
                .iter()
                .flatten()
                .any(|p| wildcard_match(p, name));
        !excluded
    }

    /// The variables the local process gets on top of its own: the pod's (filtered), then
    /// `env_file`, then `override`. `unset` names are not in the result; [`EnvConfig::unset`]
    /// tells the caller which local variables to remove too.
    pub fn apply(
        &self,
        pod_env: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, EnvFileError> {
        let mut out: BTreeMap<String, String> = pod_env
            .iter()
            .filter(|(k, _)| self.takes(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(path) = &self.env_file {
            out.extend(read_env_file(path)?);
        }
        out.extend(self.overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        for name in &self.unset {
            out.remove(name);
        }
        Ok(out)
    }
}

/// Reads a dotenv file: `KEY=value` lines, optional `export `, `#` comments, single or double
/// quotes (double quotes understand `\n`, `\"` and `\\`).
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, EnvFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| EnvFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let syntax = || EnvFileError::Syntax {
            path: path.to_owned(),
            line: i + 1,
        };
        let (key, value) = line.split_once('=').ok_or_else(syntax)?;
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(syntax());
        }
        let value = value.trim();
        let value = if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            let mut s = String::new();
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                match (c, c == '\\') {
                    (_, true) => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(o) => s.push(o),
                        None => s.push('\\'),
                    },
                    (c, false) => s.push(c),
                }
            }
            s
        } else if let Some(v) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            v.to_owned()
        } else {
            // An unquoted value ends at ` #`.
            value.split(" #").next().unwrap_or("").trim_end().to_owned()
        };
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

/// Matches `*` (any run) and `?` (one character), case-sensitively, against the whole name.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("DB_*", "DB_HOST"));
        assert!(wildcard_match("*_URL", "API_URL"));
        assert!(wildcard_match("A?C", "ABC"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("DB_*", "XDB_HOST"));
        assert!(!wildcard_match("A?C", "AC"));
        assert!(wildcard_match("*a*b*", "xxaxxbxx"));
        assert!(!wildcard_match("*a*b", "xxaxxbxx"));
    }

    #[test]
    fn default_takes_all_but_machine_variables() {
        let pod = env(&[
            ("PATH", "/x"),
            ("DB_HOST", "db"),
            ("RUBYOPT", "x"),
            ("HOME", "/root"),
        ]);
        let out = EnvConfig::default().apply(&pod).unwrap();
        assert_eq!(out, env(&[("DB_HOST", "db")]));
    }

    #[test]
    fn include_exclude_override_unset() {
        let pod = env(&[
            ("DB_HOST", "db"),
            ("DB_PASS", "s"),
            ("API_URL", "u"),
            ("PATH", "/x"),
        ]);
        let cfg = EnvConfig {
            include: Some(vec!["DB_*".into(), "PATH".into()]),
            ..EnvConfig::default()
        };
        assert_eq!(
            cfg.apply(&pod).unwrap(),
            env(&[("DB_HOST", "db"), ("DB_PASS", "s"), ("PATH", "/x")])
        );
        let cfg = EnvConfig {
            exclude: Some(vec!["*_PASS".into()]),
            overrides: env(&[("API_URL", "http://localhost")]),
            unset: vec!["DB_HOST".into()],
            ..EnvConfig::default()
        };
        assert_eq!(
            cfg.apply(&pod).unwrap(),
            env(&[("API_URL", "http://localhost")])
        );
        assert!(EnvConfig::disabled().apply(&pod).unwrap().is_empty());
        assert!(EnvConfig::disabled().is_disabled());
    }

    #[test]
    fn env_file_sits_between_pod_and_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# c\nexport A=1\nB=\"two\\nlines\"\nC='x y'\nD=plain # comment\n",
        )
        .unwrap();
        let cfg = EnvConfig {
            env_file: Some(path.clone()),
            overrides: env(&[("D", "over")]),
            ..EnvConfig::default()
        };
        let out = cfg.apply(&env(&[("A", "pod"), ("E", "pod")])).unwrap();
        assert_eq!(
            out,
            env(&[
                ("A", "1"),
                ("B", "two\nlines"),
                ("C", "x y"),
                ("D", "over"),
                ("E", "pod")
            ])
        );
        std::fs::write(&path, "A=1\nnot a pair\n").unwrap();
        let e = read_env_file(&path).unwrap_err();
        assert!(
            e.to_string().ends_with(".env:2: expected `KEY=value`"),
            "{e}"
        );
    }
}
