//! Which config file applies.

use std::path::{Path, PathBuf};

use crate::overrides::EnvMap;

/// tether's own default files, in the order they are tried inside each directory.
pub const TETHER_FILES: [&str; 4] = [
    ".tether/tether.json",
    ".tether/tether.toml",
    ".tether/tether.yaml",
    ".tether/tether.yml",
];

/// mirrord's files, tried after tether's.
pub const MIRRORD_FILES: [&str; 4] = [
    ".mirrord/mirrord.json",
    ".mirrord/mirrord.toml",
    ".mirrord/mirrord.yaml",
    ".mirrord/mirrord.yml",
];

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A path given explicitly (`tether verify-config PATH`, `-f`, an IDE setting).
    Explicit(PathBuf),
    /// A path from `TETHER_CONFIG_FILE` (or `MIRRORD_CONFIG_FILE`).
    Env {
        /// The variable's name.
        var: &'static str,
        /// Its value, made absolute against the working directory.
        path: PathBuf,
    },
    /// A `.tether/tether.*` file found in the working directory or one of its parents.
    Tether(PathBuf),
    /// A `.mirrord/mirrord.*` file found the same way.
    Mirrord(PathBuf),
    /// No file: defaults, env and flags only.
    Defaults,
}

impl ConfigSource {
    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::Explicit(p)
            | ConfigSource::Env { path: p, .. }
            | ConfigSource::Tether(p)
            | ConfigSource::Mirrord(p) => Some(p),
            ConfigSource::Defaults => None,
        }
    }
}

/// Resolves the config file: `explicit`, then `TETHER_CONFIG_FILE`/`MIRRORD_CONFIG_FILE`, then
/// `.tether/tether.{json,toml,yaml,yml}` and then `.mirrord/mirrord.{json,toml,yaml,yml}` in `cwd`
/// and each parent (the nearest directory having either wins), then none. Relative paths are
/// taken against `cwd`. Explicit and env paths are returned even if they do not exist, so that
/// loading reports the missing file.
pub fn resolve_config_path(cwd: &Path, explicit: Option<&Path>, env: &EnvMap) -> ConfigSource {
    if let Some(p) = explicit {
        return ConfigSource::Explicit(cwd.join(p));
    }
    for var in ["TETHER_CONFIG_FILE", "MIRRORD_CONFIG_FILE"] {
        if let Some(p) = env.get(var).filter(|p| !p.is_empty()) {
            return ConfigSource::Env {
                var,
                path: cwd.join(p),
            };
        }
    }
    for dir in cwd.ancestors() {
        if let Some(p) = TETHER_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
        {
            return ConfigSource::Tether(p);
        }
        if let Some(p) = MIRRORD_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
        {
            return ConfigSource::Mirrord(p);
        }
    }
    ConfigSource::Defaults
}

/// The project directory of a config file: the parent of `.tether/` or `.mirrord/` when the file
/// is in one, else the file's directory. Relative paths inside the config start there.
pub fn project_dir(config_file: &Path) -> PathBuf {
    let dir = config_file.parent().unwrap_or(Path::new("."));
    match dir.file_name().and_then(|n| n.to_str()) {
        Some(".tether" | ".mirrord") => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sub = root.join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let mut env = EnvMap::new();
        assert_eq!(
            resolve_config_path(&sub, None, &env),
            ConfigSource::Defaults
        );

        std::fs::create_dir_all(root.join(".mirrord")).unwrap();
        std::fs::write(root.join(".mirrord/mirrord.json"), "{}").unwrap();
        assert_eq!(
            resolve_config_path(&sub, None, &env),
            ConfigSource::Mirrord(root.join(".mirrord/mirrord.json"))
        );

        std::fs::create_dir_all(root.join(".tether")).unwrap();
        std::fs::write(root.join(".tether/tether.yaml"), "").unwrap();
        assert_eq!(
            resolve_config_path(&sub, None, &env),
            ConfigSource::Tether(root.join(".tether/tether.yaml"))
        );
        std::fs::write(root.join(".tether/tether.toml"), "").unwrap();
        assert_eq!(
            resolve_config_path(&sub, None, &env),
            ConfigSource::Tether(root.join(".tether/tether.toml"))
        );

        env.insert("MIRRORD_CONFIG_FILE".into(), "m.json".into());
        assert_eq!(
            resolve_config_path(&sub, None, &env),
            ConfigSource::Env {
                var: "MIRRORD_CONFIG_FILE",
                path: sub.join("m.json")
            }
        );
        env.insert("TETHER_CONFIG_FILE".into(), "/x/t.toml".into());
        assert_eq!(
            resolve_config_path(&sub, None, &env).path(),
            Some(Path::new("/x/t.toml"))
        );
        assert_eq!(
            resolve_config_path(&sub, Some(Path::new("c.yaml")), &env),
            ConfigSource::Explicit(sub.join("c.yaml"))
        );
    }

    #[test]
    fn project_dir_is_above_dot_dirs() {
        assert_eq!(
            project_dir(Path::new("/p/.tether/tether.toml")),
            Path::new("/p")
        );
        assert_eq!(
            project_dir(Path::new("/p/.mirrord/mirrord.json")),
            Path::new("/p")
        );
        assert_eq!(
            project_dir(Path::new("/p/conf/x.json")),
            Path::new("/p/conf")
        );
    }
}
