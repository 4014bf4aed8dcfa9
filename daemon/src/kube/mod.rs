//! Kubernetes access: kubeconfig and contexts as kubectl reads them, one API client per
//! (kubeconfig, context), and the targets watch cache ([`targets`]).
//!
//! kubeconfig resolution follows kubectl: an explicit file, else `$KUBECONFIG` (a `:`-separated
//! list, merged, first value wins), else `~/.kube/config`. Exec auth plugins, client certs and
//! tokens are handled by kube-rs. The daemon environment's `$KUBECONFIG` is used unless a request
//! names a file, so frontends pass the `kubeconfig` key of the config file through.

pub mod agent;
mod client;
pub mod targets;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Config,
    api::ListParams,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::server::{
    api::{KubeContext, KubeContexts, KubeNamespaces},
    error::{ErrorKind, RpcError},
};

/// Where kubeconfig comes from when a request names no file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KubeconfigSource {
    /// `$KUBECONFIG` (merged list), else `~/.kube/config`, read on every request.
    #[default]
    Environment,
    /// These files, merged in order (tests, and a daemon started with explicit files).
    Files(Vec<PathBuf>),
}

/// A context resolved to a client and its default namespace.
#[derive(Clone)]
pub struct KubeTarget {
    /// The client.
    pub client: Client,
    /// The context's name.
    pub context: String,
    /// The context's namespace, `default` when it names none.
    pub namespace: String,
}

/// (kubeconfig file, context name, the context's entries as JSON): an edited kubeconfig (another
/// server, a rotated token) gets a new client instead of a stale one.
type ClientKey = (Option<PathBuf>, String, String);

/// Clients per (kubeconfig file, context), built on first use.
pub struct KubeManager {
    source: KubeconfigSource,
    clients: Mutex<HashMap<ClientKey, KubeTarget>>,
}

impl std::fmt::Debug for KubeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeManager")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// How long a one-shot API call may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(15);

impl KubeManager {
    /// A manager reading kubeconfig from `source`.
    pub fn new(source: KubeconfigSource) -> Self {
        Self {
            source,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Reads and merges the kubeconfig: `explicit`, else the manager's source.
    pub fn kubeconfig(&self, explicit: Option<&Path>) -> Result<Kubeconfig, RpcError> {
        let describe = |paths: &[PathBuf]| {
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        };
        let (result, what) = match (explicit, &self.source) {
            (Some(path), _) => (Kubeconfig::read_from(path), path.display().to_string()),
            (None, KubeconfigSource::Files(paths)) => (
                paths.iter().try_fold(Kubeconfig::default(), |acc, p| {
                    Kubeconfig::read_from(p).and_then(|k| acc.merge(k))
                }),
                describe(paths),
            ),
            (None, KubeconfigSource::Environment) => {
                let what =
                    std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".to_owned());
                (Kubeconfig::read(), what)
            }
        };
        result.map_err(|e| {
            RpcError::new(ErrorKind::Kubeconfig, format!("cannot read kubeconfig {what}: {e}"))
                .target(what)
                .hint("point KUBECONFIG or the config's `kubeconfig` key at a valid kubeconfig; `kubectl config view` shows what kubectl sees")
        })
    }

    /// `kube.contexts`: every context of the kubeconfig.
    pub fn contexts(&self, explicit: Option<&Path>) -> Result<KubeContexts, RpcError> {
        let kc = self.kubeconfig(explicit)?;
        Ok(KubeContexts {
            current: kc.current_context.clone(),
            contexts: kc
                .contexts
                .iter()
                .map(|c| KubeContext {
                    name: c.name.clone(),
                    cluster: c
                        .context
                        .as_ref()
                        .map(|x| x.cluster.clone())
                        .unwrap_or_default(),
                    user: c.context.as_ref().and_then(|x| x.user.clone()),
                    namespace: c.context.as_ref().and_then(|x| x.namespace.clone()),
                })
                .collect(),
        })
    }

    /// The client for `context` (unset: the current context) of the kubeconfig.
    pub async fn target(
        &self,
        explicit: Option<&Path>,
        context: Option<&str>,
    ) -> Result<KubeTarget, RpcError> {
        let kc = self.kubeconfig(explicit)?;
        let name = match context {
            Some(c) => c.to_owned(),
            None => kc.current_context.clone().ok_or_else(|| {
                RpcError::new(ErrorKind::Kubeconfig, "kubeconfig has no current context")
                    .hint("pick a context (`kubectl config use-context NAME`) or set the config's `kube_context`")
            })?,
        };
        if !kc.contexts.iter().any(|c| c.name == name) {
            let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
            return Err(RpcError::new(
                ErrorKind::Kubeconfig,
                format!("no context `{name}` in kubeconfig"),
            )
            .target(name)
            .hint(if known.is_empty() {
                "the kubeconfig has no contexts".to_owned()
            } else {
                format!("known contexts: {}", known.join(", "))
            }));
        }
        let key = (
            explicit.map(Path::to_owned),
            name.clone(),
            fingerprint(&kc, &name),
        );
        if let Some(t) = self
            .clients
            .lock()
            .expect("kube client map poisoned")
            .get(&key)
        {
            return Ok(t.clone());
        }
        let options = KubeConfigOptions {
            context: Some(name.clone()),
            ..Default::default()
        };
        let config = Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| {
                RpcError::new(
                    ErrorKind::Kubeconfig,
                    format!("cannot use context `{name}`: {e}"),
                )
                .target(name.clone())
                .hint("check the context's cluster and user entries with `kubectl config view`")
            })?;
        let namespace = config.default_namespace.clone();
        let client = client::build(config).map_err(|e| {
            RpcError::new(
                ErrorKind::Kubeconfig,
                format!("cannot make a client for context `{name}`: {e}"),
            )
            .target(name.clone())
        })?;
        let t = KubeTarget {
            client,
            context: name,
            namespace,
        };
        self.clients
            .lock()
            .expect("kube client map poisoned")
            .insert(key, t.clone());
        Ok(t)
    }

    /// `kube.namespaces`: namespace names, or just the context's one when listing is forbidden.
    pub async fn namespaces(
        &self,
        explicit: Option<&Path>,
        context: Option<&str>,
    ) -> Result<KubeNamespaces, RpcError> {
        let t = self.target(explicit, context).await?;
        let api: Api<Namespace> = Api::all(t.client.clone());
        let listed =
            tokio::time::timeout(API_TIMEOUT, api.list_metadata(&ListParams::default())).await;
        let mut warnings = Vec::new();
        let namespaces = match listed {
            Ok(Ok(list)) => {
                let mut names: Vec<String> = list
                    .items
                    .into_iter()
                    .filter_map(|n| n.metadata.name)
                    .collect();
                names.sort();
                names
            }
            Ok(Err(e)) => {
                let e = map_kube_error(e, &t.context, "namespaces");
                if e.kind != ErrorKind::KubeForbidden {
                    return Err(e);
                }
                warnings.push(format!(
                    "{}; showing the context's namespace only",
                    e.message
                ));
                vec![t.namespace.clone()]
            }
            Err(_) => return Err(timeout_error(&t.context, "namespaces")),
        };
        Ok(KubeNamespaces {
            context: t.context,
            default: t.namespace,
            namespaces,
            warnings,
        })
    }
}

/// The context's own entries (context, cluster, user) as JSON, to notice kubeconfig edits.
fn fingerprint(kc: &Kubeconfig, context: &str) -> String {
    let ctx = kc.contexts.iter().find(|c| c.name == context);
    let inner = ctx.and_then(|c| c.context.as_ref());
    let cluster = inner.and_then(|i| kc.clusters.iter().find(|c| c.name == i.cluster));
    let user = inner
        .and_then(|i| i.user.as_deref())
        .and_then(|u| kc.auth_infos.iter().find(|a| a.name == u));
    serde_json::to_string(&(ctx, cluster, user)).unwrap_or_default()
}

/// The error for an API call that did not finish in time.
pub fn timeout_error(context: &str, what: &str) -> RpcError {
    RpcError::new(
        ErrorKind::KubeTimeout,
        format!(
            "listing {what} in context `{context}` timed out after {}s",
            API_TIMEOUT.as_secs()
        ),
    )
    .target(context)
    .hint(format!(
        "check that the cluster answers: `kubectl --context {context} get --raw /readyz`"
    ))
}

/// Turns a kube-rs error into the daemon's error model. `what` names the resource, e.g. `pods in
/// namespace shop`.
pub fn map_kube_error(e: kube::Error, context: &str, what: &str) -> RpcError {
    match e {
        kube::Error::Api(status) if status.code == 403 => RpcError::new(
            ErrorKind::KubeForbidden,
            format!("cannot list {what}: forbidden by RBAC ({})", status.message),
        )
        .target(context)
        .hint(format!(
            "ask for `list` and `watch` on {what}; `kubectl auth can-i list {}` checks",
            what.split(' ').next().unwrap_or(what)
        )),
        kube::Error::Api(status) if status.code == 401 => RpcError::new(
            ErrorKind::Kubeconfig,
            format!("cannot list {what}: unauthorized ({})", status.message),
        )
        .target(context)
        .hint("the credentials of this context are invalid or expired; log in again"),
        kube::Error::Api(status) if status.code == 404 => RpcError::new(
            ErrorKind::KubeNotFound,
            format!("cannot list {what}: not found ({})", status.message),
        )
        .target(context),
        kube::Error::Api(status) => RpcError::new(
            ErrorKind::KubeApi,
            format!("cannot list {what}: {} ({})", status.message, status.code),
        )
        .target(context),
        kube::Error::Auth(e) => RpcError::new(
            ErrorKind::Kubeconfig,
            format!("cannot authenticate to context `{context}`: {e}"),
        )
        .target(context)
        .hint("check the context's exec plugin or credentials with `kubectl --context ... get ns`"),
        other => RpcError::new(
            ErrorKind::KubeApi,
            format!("cannot list {what}: {}", one_line_chain(&other)),
        )
        .target(context)
        .hint(format!(
            "check that the cluster is reachable: `kubectl --context {context} get --raw /readyz`"
        )),
    }
}

/// `error: cause: cause`, on one line.
pub(crate) fn one_line_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}
