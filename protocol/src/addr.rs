//! Serde for socket addresses that keeps IPv6 flow info and scope id, which serde's own impl
//! drops (a link-local peer would lose its interface). Use as `#[serde(with = "crate::addr")]`.

use std::net::{SocketAddr, SocketAddrV6};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
enum Wire {
    V4(std::net::SocketAddrV4),
    V6 {
        ip: std::net::Ipv6Addr,
        port: u16,
        flowinfo: u32,
        scope_id: u32,
    },
}

fn to_wire(a: &SocketAddr) -> Wire {
    match a {
        SocketAddr::V4(v4) => Wire::V4(*v4),
        SocketAddr::V6(v6) => Wire::V6 {
            ip: *v6.ip(),
            port: v6.port(),
            flowinfo: v6.flowinfo(),
            scope_id: v6.scope_id(),
        },
    }
}

fn from_wire(w: Wire) -> SocketAddr {
    match w {
        Wire::V4(v4) => SocketAddr::V4(v4),
        Wire::V6 {
            ip,
            port,
            flowinfo,
            scope_id,
        } => SocketAddr::V6(SocketAddrV6::new(ip, port, flowinfo, scope_id)),
    }
}

/// Serializes a socket address.
pub fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    to_wire(a).serialize(s)
}

/// Deserializes a socket address.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    Wire::deserialize(d).map(from_wire)
}

/// The same for `Option<SocketAddr>`.
pub mod option {
    use super::*;

    /// Serializes an optional socket address.
    pub fn serialize<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        a.as_ref().map(to_wire).serialize(s)
    }

    /// Deserializes an optional socket address.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        Option::<Wire>::deserialize(d).map(|w| w.map(from_wire))
    }
}
