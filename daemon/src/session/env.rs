//! The pod env a debuggee gets (`feature.env`), on top of its local env.

use std::collections::BTreeMap;

use tether_config::{EnvConfig, EnvFileError};

/// What to do to the local environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvChanges {
    /// Variables to set.
    pub set: BTreeMap<String, String>,
    /// Variables to remove.
    pub remove: Vec<String>,
}

/// Prefixes never taken from the pod whatever the filter says: they would change how the local
/// process is loaded or hijack the session's own variables. `override` may still set them.
const NEVER_FROM_POD: &[&str] = &["LD_", "TETHER_", "MIRRORD_"];

/// The changes for a pod env: the filtered pod variables (then `env_file`, then `override`) to
/// set, `unset` to remove.
pub fn env_changes(
    cfg: &EnvConfig,
    pod_env: &[(String, String)],
) -> Result<EnvChanges, EnvFileError> {
    let pod: BTreeMap<String, String> = pod_env
        .iter()
        .filter(|(k, _)| !NEVER_FROM_POD.iter().any(|p| k.starts_with(p)))
        .cloned()
        .collect();
    Ok(EnvChanges {
        set: cfg.apply(&pod)?,
        remove: cfg.unset.clone(),
    })
}
