//! The file-system policy: which side serves a path. Pure logic, unit-tested.
//!
//! Rules come from the daemon ([`LayerPolicy::fs_rules`], config rules first, then defaults) as
//! regexes over the absolute path; the first rule that matches decides, else `fs_default`. They
//! are compiled once, into one [`RegexSet`], so a local path costs one automaton pass.

use std::borrow::Cow;

use regex::bytes::RegexSet;
use tether_protocol::layer::{FsAction, FsRule};

/// Compiled path rules.
#[derive(Debug)]
pub struct FsPolicy {
    set: RegexSet,
    actions: Vec<FsAction>,
    default: FsAction,
}

/// A rule whose regex does not compile.
#[derive(Debug)]
pub struct BadRule {
    /// The pattern.
    pub pattern: String,
    /// Why.
    pub error: regex::Error,
}

impl std::fmt::Display for BadRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid fs rule `{}`: {}", self.pattern, self.error)
    }
}

impl FsPolicy {
    /// Compiles the rules.
    pub fn new(rules: &[FsRule], default: FsAction) -> Result<Self, BadRule> {
        for r in rules {
            // Check each alone so the error names the bad pattern.
            if let Err(error) = regex::bytes::Regex::new(&r.pattern) {
                return Err(BadRule {
                    pattern: r.pattern.clone(),
                    error,
                });
            }
        }
        let set =
            RegexSet::new(rules.iter().map(|r| r.pattern.as_str())).map_err(|error| BadRule {
                pattern: "(all rules)".into(),
                error,
            })?;
        Ok(Self {
            set,
            actions: rules.iter().map(|r| r.action).collect(),
            default,
        })
    }

    /// Whether every path is local (no remote rule and a local default): hooks can skip work.
    pub fn all_local(&self) -> bool {
        self.default == FsAction::Local && self.actions.iter().all(|a| *a == FsAction::Local)
    }

    /// The action for an absolute, normalised path.
    pub fn action(&self, abs_path: &[u8]) -> FsAction {
        if self.actions.is_empty() {
            return self.default;
        }
        self.set
            .matches(abs_path)
            .iter()
            .next()
            .map_or(self.default, |i| self.actions[i])
    }
}

/// Lexically normalises an absolute path: collapses `//`, `/./` and `/../` (never above `/`) and
/// drops a trailing slash. Symlinks are not resolved: the rules are about names, as in mirrord.
pub fn normalize(path: &[u8]) -> Cow<'_, [u8]> {
    if !needs_normalizing(path) {
        return Cow::Borrowed(path);
    }
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                while let Some(b) = out.pop() {
                    if b == b'/' {
                        break;
                    }
                }
            }
            p => {
                out.push(b'/');
                out.extend_from_slice(p);
            }
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Cow::Owned(out)
}

fn needs_normalizing(path: &[u8]) -> bool {
    if path.len() > 1 && path.ends_with(b"/") {
        return true;
    }
    path.windows(2).any(|w| w == b"//" || w == b"/.")
}

/// Joins a relative `path` onto an absolute `base` and normalises the result.
pub fn join(base: &[u8], path: &[u8]) -> Vec<u8> {
    if path.first() == Some(&b'/') {
        return normalize(path).into_owned();
    }
    let mut joined = Vec::with_capacity(base.len() + 1 + path.len());
    joined.extend_from_slice(base);
    if !base.ends_with(b"/") {
        joined.push(b'/');
    }
    joined.extend_from_slice(path);
    normalize(&joined).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, action: FsAction) -> FsRule {
        FsRule {
            pattern: pattern.into(),
            action,
        }
    }

    fn policy() -> FsPolicy {
        FsPolicy::new(
            &[
                rule(r"^/etc/hostname$", FsAction::RemoteReadOnly),
                rule(r"^/etc(/|$)", FsAction::Local),
                rule(r"^/root/\.kube(/|$)", FsAction::NotFound),
                rule(r"^/data(/|$)", FsAction::RemoteReadWrite),
            ],
            FsAction::RemoteReadOnly,
        )
        .unwrap()
    }

    #[test]
    fn first_matching_rule_wins_else_default() {
        let p = policy();
        assert_eq!(p.action(b"/etc/hostname"), FsAction::RemoteReadOnly);
        assert_eq!(p.action(b"/etc/passwd"), FsAction::Local);
        assert_eq!(p.action(b"/etc"), FsAction::Local);
        assert_eq!(p.action(b"/root/.kube/config"), FsAction::NotFound);
        assert_eq!(p.action(b"/data/x"), FsAction::RemoteReadWrite);
        assert_eq!(p.action(b"/database"), FsAction::RemoteReadOnly);
        assert!(!p.all_local());
    }

    #[test]
    fn no_rules_means_default() {
        let p = FsPolicy::new(&[], FsAction::Local).unwrap();
        assert_eq!(p.action(b"/anything"), FsAction::Local);
        assert!(p.all_local());
    }

    #[test]
    fn bad_rule_is_named() {
        let err = FsPolicy::new(&[rule("(", FsAction::Local)], FsAction::Local).unwrap_err();
        assert!(err.to_string().starts_with("invalid fs rule `(`"), "{err}");
    }

    #[test]
    fn normalize_collapses_dots_and_slashes() {
        let n = |p: &str| String::from_utf8(normalize(p.as_bytes()).into_owned()).unwrap();
        assert_eq!(n("/usr/lib"), "/usr/lib");
        assert_eq!(n("/usr//lib/"), "/usr/lib");
        assert_eq!(n("/usr/./lib"), "/usr/lib");
        assert_eq!(n("/usr/../root/.kube/config"), "/root/.kube/config");
        assert_eq!(n("/../.."), "/");
        assert_eq!(n("/"), "/");
        assert_eq!(n("/a/.hidden"), "/a/.hidden");
        assert!(matches!(normalize(b"/usr/lib"), Cow::Borrowed(_)));
    }

    #[test]
    fn join_resolves_relative_paths_against_base() {
        let j = |b: &str, p: &str| String::from_utf8(join(b.as_bytes(), p.as_bytes())).unwrap();
        assert_eq!(j("/home/me", "src/main.rs"), "/home/me/src/main.rs");
        assert_eq!(j("/home/me/", "./a"), "/home/me/a");
        assert_eq!(j("/home/me", "../../etc/hostname"), "/etc/hostname");
        assert_eq!(j("/home/me", "/abs"), "/abs");
        assert_eq!(j("/", "x"), "/x");
    }

    #[test]
    fn normalised_path_cannot_dodge_a_not_found_rule() {
        let p = policy();
        let path = join(b"/tmp", b"../root/./.kube//config");
        assert_eq!(p.action(&path), FsAction::NotFound);
    }
}
