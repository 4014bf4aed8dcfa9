//! The file-system policy: which side serves a path. Pure logic, unit-tested.
//!
//! Rules come from the daemon ([`LayerPolicy::fs_rules`], config rules first, then defaults) as
//! regexes over the absolute path; the first rule that matches decides, else `fs_default`.
//!
//! They are compiled once into one multi-pattern regex, each pattern wrapped as
//! `(?s:.*?)(?:RULE)` and searched anchored at the start: every rule's match then starts at 0,
//! and leftmost-first priority picks the lowest-numbered rule that matches anywhere, which is
//! exactly "first rule wins", in one automaton pass and without allocating (a `RegexSet` must
//! find every match and allocates its answer, which alone cost 3x more on the hot stat path).

use std::borrow::Cow;
use std::cell::RefCell;

use regex_automata::meta::{Cache, Regex};
use regex_automata::{Anchored, Input};
use tether_protocol::layer::{FsAction, FsRule};

thread_local! {
    /// Search scratch space of the thread, tagged with the policy it belongs to.
    static CACHE: RefCell<Option<(usize, Cache)>> = const { RefCell::new(None) };
}

/// Compiled path rules.
#[derive(Debug)]
pub struct FsPolicy {
    re: Regex,
    actions: Vec<FsAction>,
    default: FsAction,
}

/// A rule whose regex does not compile.
#[derive(Debug)]
pub struct BadRule {
    /// The pattern.
    pub pattern: String,
    /// Why.
    pub error: String,
}

impl std::fmt::Display for BadRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid fs rule `{}`: {}", self.pattern, self.error)
    }
}

/// A rule made to match from the start of the path: rules anchored at `^` in every branch stay
/// as they are (a smaller, faster automaton), others get a lazy `.*?` prefix.
fn wrap(pattern: &str) -> String {
    use regex_automata::util::syntax;
    let anchored = (|| {
        let start = syntax::parse("^").ok()?.properties().look_set_prefix();
        let prefix = syntax::parse(pattern).ok()?.properties().look_set_prefix();
        Some(!prefix.intersect(start).is_empty())
    })()
    .unwrap_or(false);
    if anchored {
        pattern.to_string()
    } else {
        format!("(?s:.*?)(?:{pattern})")
    }
}

impl FsPolicy {
    /// Compiles the rules.
    pub fn new(rules: &[FsRule], default: FsAction) -> Result<Self, BadRule> {
        for r in rules {
            // Check each alone so the error names the bad pattern (and a pattern like `a)(b`
            // cannot escape its wrapping group).
            if let Err(e) = Regex::new(&r.pattern) {
                return Err(BadRule {
                    pattern: r.pattern.clone(),
                    error: e.to_string(),
                });
            }
        }
        let wrapped: Vec<String> = rules.iter().map(|r| wrap(&r.pattern)).collect();
        let re = Regex::new_many(&wrapped).map_err(|e| BadRule {
            pattern: "(all rules)".into(),
            error: e.to_string(),
        })?;
        Ok(Self {
            re,
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
        let input = Input::new(abs_path).anchored(Anchored::Yes);
        // A per-thread search cache: the regex's own cache pool takes a mutex on threads other
        // than the first, which a fork could leave locked in the child.
        let me = self as *const Self as usize;
        let found = CACHE
            .try_with(|c| {
                let mut c = c.try_borrow_mut().ok()?;
                if c.as_ref().is_none_or(|(owner, _)| *owner != me) {
                    *c = Some((me, self.re.create_cache()));
                }
                let (_, cache) = c.as_mut().expect("just set");
                Some(self.re.search_half_with(cache, &input))
            })
            .ok()
            .flatten()
            // TLS teardown: a one-off cache.
            .unwrap_or_else(|| {
                self.re
                    .search_half_with(&mut self.re.create_cache(), &input)
            });
        found.map_or(self.default, |m| self.actions[m.pattern().as_usize()])
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
    match normalize(&joined) {
        Cow::Borrowed(_) => joined,
        Cow::Owned(n) => n,
    }
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
    fn unanchored_rules_match_anywhere_and_keep_their_priority() {
        let p = FsPolicy::new(
            &[
                rule(r"\.kube", FsAction::NotFound),
                rule(r"^/home(/|$)", FsAction::Local),
                rule(r"secret$", FsAction::NotFound),
                rule(r"^/home/me/secret$", FsAction::RemoteReadOnly),
            ],
            FsAction::RemoteReadOnly,
        )
        .unwrap();
        assert_eq!(p.action(b"/home/me/.kube/config"), FsAction::NotFound);
        assert_eq!(p.action(b"/home/me/secret"), FsAction::Local);
        assert_eq!(p.action(b"/srv/secret"), FsAction::NotFound);
        assert_eq!(p.action(b"/srv/secrets"), FsAction::RemoteReadOnly);
        // A multi-line-looking path cannot confuse the wrapping.
        assert_eq!(p.action(b"/srv/a\n.kube"), FsAction::NotFound);
    }

    #[test]
    fn only_fully_anchored_rules_skip_the_prefix() {
        assert_eq!(wrap("^/usr(/|$)"), "^/usr(/|$)");
        assert_eq!(wrap("^/a|^/b"), "^/a|^/b");
        assert_eq!(wrap("^/a|/b"), "(?s:.*?)(?:^/a|/b)");
        assert_eq!(wrap(r"\.kube"), r"(?s:.*?)(?:\.kube)");
        assert_eq!(wrap("(?m)^x"), "(?s:.*?)(?:(?m)^x)");
        let p = FsPolicy::new(&[rule("^/a|/b", FsAction::NotFound)], FsAction::Local).unwrap();
        assert_eq!(p.action(b"/x/b"), FsAction::NotFound);
        assert_eq!(p.action(b"/a"), FsAction::NotFound);
        assert_eq!(p.action(b"/x/a"), FsAction::Local);
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
