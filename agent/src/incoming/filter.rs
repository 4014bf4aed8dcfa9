//! HTTP request filters of a filtered steal, compiled once per subscription.
//!
//! Matching follows mirrord: a header filter is a regex over each `Name: value` line
//! (case-insensitive), a path filter a regex over the path or the path with its query, a method
//! filter an exact, case-insensitive method name. `AllOf([])` matches everything, `AnyOf([])`
//! nothing. Regexes are `fancy_regex` ones, so look-around and backreferences work as in
//! mirrord's filters; a match that exceeds the backtracking limit counts as no match (the request
//! goes to the pod), with a warning.

use fancy_regex::{Regex, RegexBuilder};
use http::{HeaderMap, Method, Uri};
use tether_protocol::incoming::HttpFilter;

/// A compiled [`HttpFilter`].
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Some header line `Name: value` matches.
    Header(Regex),
    /// The path, or the path and query, matches.
    Path(Regex),
    /// The method equals this one, ignoring case.
    Method(String),
    /// Every inner matcher matches.
    AllOf(Vec<Matcher>),
    /// At least one inner matcher matches.
    AnyOf(Vec<Matcher>),
}

/// A filter whose regex does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} filter `{pattern}`: {source}")]
pub struct FilterError {
    what: &'static str,
    pattern: String,
    #[source]
    source: Box<fancy_regex::Error>,
}

fn compile_regex(what: &'static str, pattern: &str) -> Result<Regex, FilterError> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        // Bounded so a hostile pattern cannot make the agent allocate or backtrack without limit.
        .delegate_size_limit(1 << 20)
        .backtrack_limit(100_000)
        .build()
        .map_err(|source| FilterError {
            what,
            pattern: pattern.to_owned(),
            source: Box::new(source),
        })
}

/// `re` matches `text`; a match given up at the backtracking limit is no match.
fn is_match(re: &Regex, text: &str) -> bool {
    re.is_match(text).unwrap_or_else(|e| {
        tracing::warn!("filter `{}` on {text:?}: {e}; not matched", re.as_str());
        false
    })
}

impl Matcher {
    /// Compiles `filter`, failing on the first bad regex.
    pub fn compile(filter: &HttpFilter) -> Result<Self, FilterError> {
        Ok(match filter {
            HttpFilter::Header(p) => Self::Header(compile_regex("header", p)?),
            HttpFilter::Path(p) => Self::Path(compile_regex("path", p)?),
            HttpFilter::Method(m) => Self::Method(m.clone()),
            HttpFilter::AllOf(fs) => {
                Self::AllOf(fs.iter().map(Self::compile).collect::<Result<_, _>>()?)
            }
            HttpFilter::AnyOf(fs) => {
                Self::AnyOf(fs.iter().map(Self::compile).collect::<Result<_, _>>()?)
            }
        })
    }

    /// Whether a request with this head matches.
    pub fn matches(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
        match self {
            Self::Header(re) => {
                headers.iter().any(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes());
                    is_match(re, &format!("{}: {value}", name.as_str()))
                }) || (!headers.contains_key(http::header::HOST)
                    // HTTP/2 carries the host as :authority, which a `host:` filter must see.
                    && uri
                        .authority()
                        .is_some_and(|a| is_match(re, &format!("host: {a}"))))
            }
            Self::Path(re) => {
                let path = uri.path();
                is_match(re, path)
                    || uri
                        .path_and_query()
                        .is_some_and(|pq| pq.as_str() != path && is_match(re, pq.as_str()))
            }
            Self::Method(m) => method.as_str().eq_ignore_ascii_case(m),
            Self::AllOf(ms) => ms.iter().all(|m| m.matches(method, uri, headers)),
            Self::AnyOf(ms) => ms.iter().any(|m| m.matches(method, uri, headers)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(filter: HttpFilter, method: &str, uri: &str, headers: &[(&str, &str)]) -> bool {
        let m = Matcher::compile(&filter).expect("filter compiles");
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m.matches(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            &uri.parse().unwrap(),
            &map,
        )
    }

    #[test]
    fn header_matches_name_and_value_case_insensitively() {
        let f = || HttpFilter::Header("^x-user: alice$".into());
        assert!(check(f(), "GET", "/", &[("X-User", "Alice")]));
        assert!(!check(f(), "GET", "/", &[("X-User", "bob")]));
        assert!(!check(f(), "GET", "/", &[("X-Other", "alice")]));
        assert!(!check(f(), "GET", "/", &[]));
    }

    #[test]
    fn host_filter_sees_the_http2_authority() {
        let f = || HttpFilter::Header(r"^host: api\.local".into());
        assert!(check(f(), "GET", "http://api.local:8080/x", &[]));
        assert!(check(f(), "GET", "/x", &[("Host", "api.local")]));
        assert!(!check(f(), "GET", "http://other/x", &[]));
    }

    #[test]
    fn path_matches_path_or_path_with_query() {
        assert!(check(
            HttpFilter::Path("^/api/".into()),
            "GET",
            "/api/x?y=1",
            &[]
        ));
        assert!(check(
            HttpFilter::Path("y=1$".into()),
            "GET",
            "/api/x?y=1",
            &[]
        ));
        assert!(check(
            HttpFilter::Path("^/api/x$".into()),
            "GET",
            "/api/x?y=1",
            &[]
        ));
        assert!(!check(
            HttpFilter::Path("^/other".into()),
            "GET",
            "/api/x",
            &[]
        ));
        // An absolute URI (HTTP/2) is matched on its path, not its authority.
        assert!(check(
            HttpFilter::Path("^/api$".into()),
            "GET",
            "http://h:1/api",
            &[]
        ));
    }

    #[test]
    fn method_is_exact_and_case_insensitive() {
        assert!(check(HttpFilter::Method("post".into()), "POST", "/", &[]));
        assert!(!check(HttpFilter::Method("POS".into()), "POST", "/", &[]));
    }

    #[test]
    fn all_of_and_any_of_combine() {
        let all = HttpFilter::AllOf(vec![
            HttpFilter::Method("GET".into()),
            HttpFilter::Path("^/a".into()),
        ]);
        assert!(check(all.clone(), "GET", "/a", &[]));
        assert!(!check(all, "PUT", "/a", &[]));
        let any = HttpFilter::AnyOf(vec![
            HttpFilter::Method("PUT".into()),
            HttpFilter::Header("^x-a: 1$".into()),
        ]);
        assert!(check(any.clone(), "GET", "/", &[("x-a", "1")]));
        assert!(check(any.clone(), "PUT", "/", &[]));
        assert!(!check(any, "GET", "/", &[]));
        assert!(check(HttpFilter::AllOf(vec![]), "GET", "/", &[]));
        assert!(!check(HttpFilter::AnyOf(vec![]), "GET", "/", &[]));
    }

    #[test]
    fn look_around_and_backreferences_work_as_in_mirrord() {
        // Everyone but the bots.
        let f = || HttpFilter::Header("^x-user: (?!bot-).+$".into());
        assert!(check(f(), "GET", "/", &[("X-User", "alice")]));
        assert!(!check(f(), "GET", "/", &[("X-User", "bot-7")]));
        // Paths not under /health, with a look-behind on the extension.
        let p = || HttpFilter::Path(r"^/(?!health)[a-z/]+(?<!\.png)$".into());
        assert!(check(p(), "GET", "/api/users", &[]));
        assert!(!check(p(), "GET", "/health/live", &[]));
        assert!(!check(p(), "GET", "/img/a.png", &[]));
        let same = HttpFilter::Header(r"^x-pair: (\w+)-\1$".into());
        assert!(check(same.clone(), "GET", "/", &[("x-pair", "ab-ab")]));
        assert!(!check(same, "GET", "/", &[("x-pair", "ab-cd")]));
    }

    #[test]
    fn runaway_backtracking_is_no_match_not_a_hang() {
        let f = HttpFilter::Header(r"^x-a: (a+)+\1b$".into());
        let long = "a".repeat(64);
        assert!(!check(f, "GET", "/", &[("x-a", long.as_str())]));
    }

    #[test]
    fn bad_regex_is_an_error_naming_the_pattern() {
        let err = Matcher::compile(&HttpFilter::AllOf(vec![HttpFilter::Path("(".into())]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid path filter `(`"), "{err}");
    }
}
