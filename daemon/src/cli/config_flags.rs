//! Flags that override config keys, shared by the subcommands that load a config. They become a
//! typed [`Overrides`], applied over the file and the environment; they never become env vars.

use std::path::PathBuf;

use clap::Args;
use tether_config::{FsMode, IncomingMode, Overrides};

/// Config overrides from the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigFlags {
    /// Target, overriding `target.path`: `pod/NAME`, `deployment/NAME/container/C`, `targetless`, ...
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Target namespace, overriding `target.namespace`.
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// kubeconfig context, overriding `kube_context`.
    #[arg(long, value_name = "CONTEXT")]
    pub context: Option<String>,
    /// kubeconfig file, overriding `kubeconfig`.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Agent image, overriding `agent.image`.
    #[arg(long, value_name = "IMAGE")]
    pub agent_image: Option<String>,
    /// Agent namespace, overriding `agent.namespace`.
    #[arg(long, value_name = "NAMESPACE")]
    pub agent_namespace: Option<String>,
    /// Incoming traffic mode, overriding `feature.network.incoming.mode`.
    #[arg(long, value_name = "MODE", value_parser = ["mirror", "steal", "off"])]
    pub incoming: Option<String>,
    /// fs mode, overriding `feature.fs.mode`.
    #[arg(long, value_name = "MODE", value_parser = ["local", "localwithoverrides", "read", "write"])]
    pub fs_mode: Option<String>,
    /// Take none of the pod's environment variables (`feature.env = false`).
    #[arg(long)]
    pub no_env: bool,
}

impl ConfigFlags {
    /// The typed overrides. clap already restricted the mode values, so parsing cannot fail.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            target: self.target.clone(),
            namespace: self.namespace.clone(),
            kube_context: self.context.clone(),
            kubeconfig: self.kubeconfig.clone(),
            agent_image: self.agent_image.clone(),
            agent_namespace: self.agent_namespace.clone(),
            incoming_mode: self
                .incoming
                .as_deref()
                .and_then(|m| m.parse::<IncomingMode>().ok()),
            fs_mode: self
                .fs_mode
                .as_deref()
                .and_then(|m| m.parse::<FsMode>().ok()),
            no_env: self.no_env,
        }
    }
}
