//! The `tether` daemon and command line, as a library so that tests drive it in-process.
//!
//! Code map:
//! - [`server`]: the JSON-RPC API (WebSocket, token, Origin refusal) and its OpenRPC document.
//! - [`discovery`]: one daemon per user, found through a 0600 discovery file.
//! - [`kube`]: kubeconfig contexts, API clients, and the targets watch cache.
//! - [`agent_link`]: the client of one agent connection (requests, streams, events, pings).
//! - [`lsp`]: `tether lsp`, the language server for config files.
//! - [`session`]: the session router (layer connections onto one agent link) and `exec`'s code path.
//!
//! **Architecture invariant:** only this crate talks to the Kubernetes API; config types never go
//! on the wire (the server keeps its own wire twins).

pub mod agent_link;
pub mod discovery;
pub mod kube;
pub mod lsp;
pub mod server;
pub mod session;
