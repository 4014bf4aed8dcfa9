//! Checks across keys, run on the merged config (file, env and flags), so a conflict is found
//! whichever layer set each side. Diagnostics point at the key's origin.

use crate::{
    cx::Cx,
    diag::Severity,
    model::{TetherConfig, network::IncomingMode, target::Target},
};

const INCOMING_MODE: [&str; 2] = ["feature.network.incoming.mode", "feature.network.incoming"];

pub(crate) fn validate(cx: &mut Cx<'_>, c: &TetherConfig) {
    let targetless = c.target.path == Some(Target::Targetless);
    let incoming = &c.feature.network.incoming;

    if targetless && incoming.mode == IncomingMode::Steal {
        let key = cx.first_known(&INCOMING_MODE);
        cx.at_key(
            Severity::Error,
            key,
            "`steal` mode needs a target pod, but the target is `targetless`".into(),
            Some("choose a target, or use `mirror` mode".into()),
        );
    }
    if targetless && c.agent.ephemeral {
        cx.at_key(
            Severity::Error,
            "agent.ephemeral",
            "`agent.ephemeral` needs a target pod, but the target is `targetless`".into(),
            Some("choose a target, or run the agent as a Job (`ephemeral: false`)".into()),
        );
    }
    if c.feature.env.include.is_some() && c.feature.env.exclude.is_some() {
        let key = later(cx, "feature.env.include", "feature.env.exclude");
        cx.at_key(
            Severity::Error,
            key,
            "`feature.env.include` and `feature.env.exclude` cannot be used together".into(),
            Some(
                "keep one: `include` takes only the listed variables, `exclude` all but them"
                    .into(),
            ),
        );
    }
    if incoming.ports.is_some() && !incoming.ignore_ports.is_empty() {
        let key = later(
            cx,
            "feature.network.incoming.ports",
            "feature.network.incoming.ignore_ports",
        );
        cx.at_key(
            Severity::Error,
            key,
            "`feature.network.incoming.ports` and `feature.network.incoming.ignore_ports` cannot be used together".into(),
            Some("`ports` already limits which ports are used; remove `ignore_ports`".into()),
        );
    }
    if incoming.http_filter.filter.is_some() && incoming.mode != IncomingMode::Steal {
        let key = cx.first_known(&[
            "feature.network.incoming.http_filter",
            "feature.network.incoming.http_filter.header_filter",
        ]);
        cx.at_key(
            Severity::Warning,
            key,
            format!("`feature.network.incoming.http_filter` only applies in `steal` mode; ignored in `{}` mode", incoming.mode),
            Some("set `feature.network.incoming.mode` to `steal`, or remove the filter".into()),
        );
    }
    if !c.feature.network.dns.enabled && c.feature.network.dns.filter.is_some() {
        cx.at_key(
            Severity::Warning,
            "feature.network.dns.filter",
            "`feature.network.dns.filter` is ignored because remote DNS is disabled".into(),
            None,
        );
    }
}

/// Of two keys, the one written later in the file (or the only one with a position), so the
/// conflict is reported at the key that introduced it.
fn later<'k>(cx: &Cx<'_>, a: &'k str, b: &'k str) -> &'k str {
    use crate::cx::Origin::File;
    match (cx.origins.get(a), cx.origins.get(b)) {
        (Some(File(pa)), Some(File(pb))) if pa > pb => a,
        (Some(File(_)), Some(File(_))) => b,
        (Some(File(_)), Some(_)) => b,
        (Some(_), Some(File(_))) => a,
        _ => b,
    }
}
