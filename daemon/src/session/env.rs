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

/// Local variables that carry the developer's cluster or cloud identity. The debuggee loses them
/// unless the pod (or `override`) sets them, so it acts with the pod's identity, never the
/// developer's.
pub const LOCAL_CREDENTIALS: &[&str] = &[
    "KUBECONFIG",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
    "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
    "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_CONFIG_DIR",
    "DIGITALOCEAN_ACCESS_TOKEN",
    "OCI_CLI_CONFIG_FILE",
];

/// The changes for a pod env: the filtered pod variables (then `env_file`, then `override`) to
/// set; `unset` and the [`LOCAL_CREDENTIALS`] not set that way to remove.
pub fn env_changes(
    cfg: &EnvConfig,
    pod_env: &[(String, String)],
) -> Result<EnvChanges, EnvFileError> {
    let pod: BTreeMap<String, String> = pod_env
        .iter()
        .filter(|(k, _)| !NEVER_FROM_POD.iter().any(|p| k.starts_with(p)))
        .cloned()
        .collect();
    let set = cfg.apply(&pod)?;
    let mut remove = cfg.unset.clone();
    for k in LOCAL_CREDENTIALS {
        if !set.contains_key(*k) && !remove.iter().any(|r| r == k) {
            remove.push((*k).to_owned());
        }
    }
    Ok(EnvChanges { set, remove })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn local_credentials_are_removed_unless_the_pod_sets_them() {
        let cfg = EnvConfig::default();
        let ch = env_changes(&cfg, &pod(&[("AWS_PROFILE", "pod-role")])).unwrap();
        assert_eq!(
            ch.set.get("AWS_PROFILE").map(String::as_str),
            Some("pod-role")
        );
        assert!(!ch.remove.contains(&"AWS_PROFILE".to_owned()));
        for k in [
            "KUBECONFIG",
            "AWS_SECRET_ACCESS_KEY",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ] {
            assert!(
                ch.remove.contains(&k.to_owned()),
                "{k} removed: {:?}",
                ch.remove
            );
        }
    }
}
