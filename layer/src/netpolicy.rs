//! Network policy: which side an outgoing connection or a DNS lookup goes to, and which
//! listening ports subscribe in the target. Pure logic, unit-tested.
//!
//! Filter items follow mirrord's `[proto://][host|ip|cidr][:port]` form. A host name item matches
//! an address that the layer resolved from that name (or loopback for `localhost`).

use std::net::{IpAddr, SocketAddr};

use tether_protocol::layer::{LayerPolicy, NetFilter, Side};

/// Transport of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Any,
    Ip(IpAddr),
    Cidr(IpAddr, u8),
    Name(String),
}

/// One parsed filter item.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    proto: Option<Proto>,
    host: Host,
    port: Option<u16>,
}

/// A parsed [`NetFilter`].
#[derive(Debug, Clone)]
pub struct Filter {
    matching: Side,
    items: Vec<Item>,
}

/// An item that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadItem(pub String);

impl std::fmt::Display for BadItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid network filter item `{}`", self.0)
    }
}

fn parse_item(raw: &str) -> Result<Item, BadItem> {
    let bad = || BadItem(raw.to_string());
    let s = raw.trim();
    let (proto, rest) = if let Some(r) = s.strip_prefix("tcp://") {
        (Some(Proto::Tcp), r)
    } else if let Some(r) = s.strip_prefix("udp://") {
        (Some(Proto::Udp), r)
    } else if s.contains("://") {
        return Err(bad());
    } else {
        (None, s)
    };
    // Split off the port: `[v6]:port`, `host:port`, `:port`; a bare v6 address has no port.
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let end = r.find(']').ok_or_else(bad)?;
        let host = &r[..end];
        let after = &r[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (host, port)
    } else if rest.matches(':').count() == 1 {
        let (h, p) = rest.split_once(':').expect("one colon");
        (h, Some(p.parse::<u16>().map_err(|_| bad())?))
    } else {
        (rest, None)
    };
    let host = if host.is_empty() {
        Host::Any
    } else if let Some((ip, bits)) = host.split_once('/') {
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let bits: u8 = bits.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(bad());
        }
        Host::Cidr(ip, bits)
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        Host::Ip(ip)
    } else {
        Host::Name(host.trim_end_matches('.').to_ascii_lowercase())
    };
    if host == Host::Any && port.is_none() {
        return Err(bad());
    }
    Ok(Item { proto, host, port })
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (unmap(ip), unmap(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits.min(32))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits.min(128))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Item {
    fn matches(&self, proto: Proto, dest: SocketAddr, names: &[String]) -> bool {
        if self.proto.is_some_and(|p| p != proto) {
            return false;
        }
        if self.port.is_some_and(|p| p != dest.port()) {
            return false;
        }
        let ip = unmap(dest.ip());
        match &self.host {
            Host::Any => true,
            Host::Ip(want) => unmap(*want) == ip,
            Host::Cidr(net, bits) => in_cidr(ip, *net, *bits),
            Host::Name(n) if n == "localhost" => ip.is_loopback(),
            Host::Name(n) => names.iter().any(|m| m.eq_ignore_ascii_case(n)),
        }
    }

    fn matches_name(&self, name: &str, port: Option<u16>) -> bool {
        // A port-only item matches only lookups for that port (a numeric service); a name
        // with a port still matches a lookup that names no port, or connecting to it would
        // resolve on the wrong side.
        if let Some(want) = self.port {
            match port {
                Some(p) if p != want => return false,
                None if self.host == Host::Any => return false,
                _ => {}
            }
        }
        let name = name.trim_end_matches('.');
        match &self.host {
            Host::Any => true,
            Host::Name(n) => n.eq_ignore_ascii_case(name),
            Host::Ip(ip) => name.parse::<IpAddr>().is_ok_and(|a| unmap(a) == unmap(*ip)),
            Host::Cidr(net, bits) => name
                .parse::<IpAddr>()
                .is_ok_and(|a| in_cidr(a, *net, *bits)),
        }
    }
}

impl Filter {
    /// Parses a filter.
    pub fn new(f: &NetFilter) -> Result<Self, BadItem> {
        Ok(Self {
            matching: f.matching,
            items: f
                .items
                .iter()
                .map(|i| parse_item(i))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The side of an outgoing connection; `names` are the host names `dest`'s address was
    /// resolved from.
    pub fn route(&self, proto: Proto, dest: SocketAddr, names: &[String]) -> Side {
        if self.items.iter().any(|i| i.matches(proto, dest, names)) {
            self.matching
        } else {
            other(self.matching)
        }
    }

    /// The side of a lookup of `name` (`port` from the service, when numeric).
    pub fn route_name(&self, name: &str, port: Option<u16>) -> Side {
        if self.items.iter().any(|i| i.matches_name(name, port)) {
            self.matching
        } else {
            other(self.matching)
        }
    }
}

fn other(s: Side) -> Side {
    match s {
        Side::Local => Side::Remote,
        Side::Remote => Side::Local,
    }
}

/// The remote port that listening on `local_port` subscribes, if any.
pub fn subscribed_port(policy: &LayerPolicy, local_port: u16) -> Option<u16> {
    policy.incoming?;
    if local_port == 0 || policy.ignore_ports.contains(&local_port) {
        return None;
    }
    let remote = policy
        .port_mapping
        .iter()
        .find(|(l, _)| *l == local_port)
        .map_or(local_port, |(_, r)| *r);
    if policy.ignore_ports.contains(&remote) {
        return None;
    }
    if !policy.only_ports.is_empty()
        && !policy.only_ports.contains(&remote)
        && !policy.only_ports.contains(&local_port)
    {
        return None;
    }
    Some(remote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::incoming::IncomingMode;
    use tether_protocol::layer::FsAction;

    fn filter(matching: Side, items: &[&str]) -> Filter {
        Filter::new(&NetFilter {
            matching,
            items: items.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn items_parse_in_mirrord_form() {
        let ok = [
            "tcp://1.1.1.0/24:1337",
            ":53",
            "google.com:7777",
            "localhost",
            "[::1]:80",
            "::1",
            "udp://10.0.0.1",
        ];
        for i in ok {
            parse_item(i).unwrap_or_else(|e| panic!("{e}"));
        }
        for bad in ["", "ftp://x", "1.2.3.4/40", "host:notaport", "[::1"] {
            assert!(parse_item(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn local_filter_keeps_matches_local_and_sends_the_rest_remote() {
        let f = filter(Side::Local, &["localhost", "tcp://10.0.0.0/8:5432"]);
        assert_eq!(f.route(Proto::Tcp, sa("127.0.0.1:80"), &[]), Side::Local);
        assert_eq!(
            f.route(Proto::Tcp, sa("[::ffff:127.0.0.1]:80"), &[]),
            Side::Local
        );
        assert_eq!(f.route(Proto::Tcp, sa("10.1.2.3:5432"), &[]), Side::Local);
        assert_eq!(f.route(Proto::Udp, sa("10.1.2.3:5432"), &[]), Side::Remote);
        assert_eq!(f.route(Proto::Tcp, sa("10.1.2.3:80"), &[]), Side::Remote);
    }

    #[test]
    fn remote_filter_by_port_and_name() {
        let f = filter(Side::Remote, &[":53", "db.svc:5432"]);
        assert_eq!(f.route(Proto::Udp, sa("8.8.8.8:53"), &[]), Side::Remote);
        let names = ["db.svc".to_string()];
        assert_eq!(
            f.route(Proto::Tcp, sa("10.0.0.9:5432"), &names),
            Side::Remote
        );
        assert_eq!(f.route(Proto::Tcp, sa("10.0.0.9:5432"), &[]), Side::Local);
        assert_eq!(f.route_name("DB.svc.", Some(5432)), Side::Remote);
        assert_eq!(f.route_name("db.svc", None), Side::Remote);
        assert_eq!(f.route_name("other", None), Side::Local);
    }

    fn policy() -> LayerPolicy {
        LayerPolicy {
            fs_rules: vec![],
            fs_default: FsAction::Local,
            outgoing_tcp: true,
            outgoing_udp: true,
            outgoing_filter: None,
            dns: true,
            dns_filter: None,
            incoming: Some(IncomingMode::Mirror),
            http_filter: None,
            ignore_ports: vec![9229],
            only_ports: vec![],
            port_mapping: vec![(8080, 80)],
            hostname: None,
            skip_processes: vec![],
        }
    }

    #[test]
    fn listening_ports_map_and_ignore() {
        let mut p = policy();
        assert_eq!(subscribed_port(&p, 8080), Some(80));
        assert_eq!(subscribed_port(&p, 3000), Some(3000));
        assert_eq!(subscribed_port(&p, 9229), None);
        assert_eq!(subscribed_port(&p, 0), None);
        p.only_ports = vec![80];
        assert_eq!(subscribed_port(&p, 8080), Some(80));
        assert_eq!(subscribed_port(&p, 3000), None);
        p.incoming = None;
        assert_eq!(subscribed_port(&p, 8080), None);
    }
}
