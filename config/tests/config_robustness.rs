//! Arbitrary text never panics the readers: it becomes a config or positioned errors.

use proptest::prelude::*;
use tether_config::{EnvMap, Format, Overrides, verify_str};

fn check(text: &str) {
    for format in [Format::Json, Format::Toml, Format::Yaml] {
        if let Err(e) = verify_str(text, format, None, &EnvMap::new(), &Overrides::default()) {
            assert!(!e.errors.is_empty());
            for d in &e.errors {
                if let Some(p) = d.pos() {
                    assert!(p.line >= 1 && p.column >= 1, "{d:?}");
                    assert!(p.line as usize <= text.lines().count().max(1) + 1, "{d:?}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_text(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn config_shaped_text(text in r#"[\[\]{}:,"'= \n\-a-z_.0-9#&*!|>]{0,160}"#) {
        check(&text);
    }

    #[test]
    fn mutated_valid_config(cut in 0usize..400, insert in "[\\[\\]{}:,\"=\\n a-z]{0,3}") {
        let base = r#"{"target": {"path": {"deployment": "api"}, "namespace": "shop"}, "feature": {"env": {"include": "A;B"}, "network": {"incoming": {"mode": "steal", "http_filter": {"all_of": [{"header": "x"}, {"path": "/a"}]}, "port_mapping": [[1, 2]]}}}, "agent": {"ttl": 3}}"#;
        let cut = cut.min(base.len());
        let text = format!("{}{}{}", &base[..cut], insert, &base[cut..]);
        check(&text);
    }
}
