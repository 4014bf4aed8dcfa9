//! "did you mean" by edit distance.

/// The candidate nearest to `word`, if it is near enough to be a plausible typo.
///
/// Case, `-` and `_` are ignored first, so `kubeContext` and `kube-context` find `kube_context`.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let w = norm(word);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&w, &norm(c)), c))
        .filter(|(d, c)| {
            let len = w.chars().count().max(c.len());
            *d <= if len <= 4 {
                1
            } else if len <= 8 {
                2
            } else {
                3
            }
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn finds_typos_and_case_variants() {
        let keys = ["target", "kube_context", "kubeconfig", "feature", "agent"];
        assert_eq!(closest("taget", keys), Some("target"));
        assert_eq!(closest("kubeContext", keys), Some("kube_context"));
        assert_eq!(closest("kube-config", keys), Some("kubeconfig"));
        assert_eq!(closest("featrues", keys), Some("feature"));
        assert_eq!(closest("operator", keys), None);
        assert_eq!(closest("x", keys), None);
    }
}
