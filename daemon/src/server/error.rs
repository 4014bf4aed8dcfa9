//! The daemon's JSON-RPC error model.
//!
//! Every failure a handler can produce is an [`RpcError`]: a stable numeric `code`, a one-line
//! lowercase `message` (no final period) and `data: { kind, target, hint }`. Frontends show
//! `message` and `hint` verbatim and branch on `kind`, never on the text.

use std::fmt;

use jsonrpsee::types::ErrorObjectOwned;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What went wrong, as a stable machine-readable name (the `data.kind` of an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The params do not match the method's params schema.
    InvalidParams,
    /// No config file applies, or the named one does not exist.
    ConfigNotFound,
    /// The config has errors (see `config.verify` for all of them with positions).
    ConfigInvalid,
    /// The config file could not be read.
    ConfigIo,
    /// No usable kubeconfig, or the requested context is not in it.
    Kubeconfig,
    /// The Kubernetes API server could not be reached or answered with an error.
    KubeApi,
    /// The Kubernetes API server refused the request (RBAC).
    KubeForbidden,
    /// The namespace or object does not exist.
    KubeNotFound,
    /// The Kubernetes API server did not answer in time.
    KubeTimeout,
    /// No session with that id.
    SessionNotFound,
    /// The agent could not be reached, refused the session, or failed a request.
    AgentUnavailable,
    /// The daemon cannot do this yet: a component it needs is missing.
    Unavailable,
    /// The daemon is shutting down.
    ShuttingDown,
    /// A bug in the daemon.
    Internal,
}

impl ErrorKind {
    /// The JSON-RPC error code for this kind. Application codes live in -32000..-32099.
    pub fn code(self) -> i32 {
        match self {
            ErrorKind::InvalidParams => -32602,
            ErrorKind::Internal => -32603,
            ErrorKind::ConfigNotFound => -32010,
            ErrorKind::ConfigInvalid => -32011,
            ErrorKind::ConfigIo => -32012,
            ErrorKind::Kubeconfig => -32020,
            ErrorKind::KubeApi => -32021,
            ErrorKind::KubeForbidden => -32022,
            ErrorKind::KubeNotFound => -32023,
            ErrorKind::KubeTimeout => -32024,
            ErrorKind::SessionNotFound => -32030,
            ErrorKind::AgentUnavailable => -32032,
            ErrorKind::Unavailable => -32031,
            ErrorKind::ShuttingDown => -32040,
        }
    }

    /// Every kind, for the OpenRPC document.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::InvalidParams,
        ErrorKind::ConfigNotFound,
        ErrorKind::ConfigInvalid,
        ErrorKind::ConfigIo,
        ErrorKind::Kubeconfig,
        ErrorKind::KubeApi,
        ErrorKind::KubeForbidden,
        ErrorKind::KubeNotFound,
        ErrorKind::KubeTimeout,
        ErrorKind::SessionNotFound,
        ErrorKind::AgentUnavailable,
        ErrorKind::Unavailable,
        ErrorKind::ShuttingDown,
        ErrorKind::Internal,
    ];

    /// The snake_case name used in `data.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidParams => "invalid_params",
            ErrorKind::ConfigNotFound => "config_not_found",
            ErrorKind::ConfigInvalid => "config_invalid",
            ErrorKind::ConfigIo => "config_io",
            ErrorKind::Kubeconfig => "kubeconfig",
            ErrorKind::KubeApi => "kube_api",
            ErrorKind::KubeForbidden => "kube_forbidden",
            ErrorKind::KubeNotFound => "kube_not_found",
            ErrorKind::KubeTimeout => "kube_timeout",
            ErrorKind::SessionNotFound => "session_not_found",
            ErrorKind::AgentUnavailable => "agent_unavailable",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Internal => "internal",
        }
    }
}

/// The `data` member of every error the daemon returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorData {
    /// What went wrong, for frontends to branch on.
    pub kind: ErrorKind,
    /// What the error is about: a file, `context/namespace`, a target path or a session id.
    pub target: Option<String>,
    /// The next step for the user, one line.
    pub hint: Option<String>,
}

/// A handler failure, turned into a JSON-RPC error object at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// Kind, which fixes the code.
    pub kind: ErrorKind,
    /// One lowercase line, `context: cause`.
    pub message: String,
    /// What the error is about.
    pub target: Option<String>,
    /// The next step.
    pub hint: Option<String>,
}

impl RpcError {
    /// An error of `kind` with `message` and no target or hint.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: one_line(message.into()),
            target: None,
            hint: None,
        }
    }

    /// Names what the error is about.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Adds the next step for the user.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Params that do not fit the method.
    pub fn invalid_params(method: &str, cause: impl fmt::Display) -> Self {
        RpcError::new(
            ErrorKind::InvalidParams,
            format!("invalid params for {method}: {cause}"),
        )
        .target(method)
        .hint("see schemas/daemon.openrpc.json for the params of each method")
    }

    /// A bug or an unexpected state.
    pub fn internal(cause: impl fmt::Display) -> Self {
        RpcError::new(ErrorKind::Internal, format!("internal error: {cause}"))
            .hint("this is a bug in the tether daemon; its log file has details")
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  help: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RpcError {}

impl From<RpcError> for ErrorObjectOwned {
    fn from(e: RpcError) -> Self {
        let data = ErrorData {
            kind: e.kind,
            target: e.target,
            hint: e.hint,
        };
        ErrorObjectOwned::owned(e.kind.code(), e.message, Some(data))
    }
}

/// Messages are one line: join continuation lines so a frontend can show them in a status bar.
fn one_line(s: String) -> String {
    if s.contains('\n') {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        s
    }
}

/// Reads the `data` of a JSON-RPC error returned by the daemon, for clients (CLI and tests).
pub fn error_data(e: &ErrorObjectOwned) -> Option<ErrorData> {
    e.data().and_then(|d| serde_json::from_str(d.get()).ok())
}
