//! Name resolution inside the target: its resolv.conf, its hosts file, its network.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Address family a lookup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Family {
    /// Both (`AF_UNSPEC`).
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// A DNS request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum DnsRequest {
    /// Forward lookup as `getaddrinfo` does it: hosts file first, then the nameservers with the
    /// search list. Answered with [`DnsResponse::Addresses`].
    Lookup {
        /// Host name.
        name: String,
        /// Families wanted.
        family: Family,
    },
    /// Reverse lookup (`getnameinfo`, `gethostbyaddr`). Answered with [`DnsResponse::Name`].
    Reverse {
        /// Address.
        addr: IpAddr,
    },
}

/// The successful answer to a [`DnsRequest`]. A name that does not exist is an error with
/// errno `ENOENT`; the layer maps it to `EAI_NONAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum DnsResponse {
    /// Addresses and the canonical name.
    Addresses {
        /// Canonical name (the name itself when there is no CNAME).
        canonical_name: String,
        /// Addresses in resolver order.
        addrs: Vec<IpAddr>,
    },
    /// The name of an address.
    Name(String),
}
