//! `feature.network`: incoming (mirror/steal), outgoing and DNS.

use std::{borrow::Cow, fmt, net::IpAddr, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer, ser::SerializeMap};

use super::{BoolOr, PortOrList};

/// Network features. `true` is the default; `false` turns off incoming, outgoing and DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Traffic sent to the pod: mirrored (copied) to the local process, stolen, or left alone.
    #[schemars(with = "IncomingFile")]
    pub incoming: IncomingConfig,
    /// Connections the local process opens: made from the pod.
    #[schemars(with = "BoolOr<OutgoingConfig>")]
    pub outgoing: OutgoingConfig,
    /// Name resolution: done in the pod.
    #[schemars(with = "BoolOr<DnsConfig>")]
    pub dns: DnsConfig,
}

impl NetworkConfig {
    /// `feature.network = false`.
    pub fn disabled() -> Self {
        Self {
            incoming: IncomingConfig {
                mode: IncomingMode::Off,
                ..IncomingConfig::default()
            },
            outgoing: OutgoingConfig::disabled(),
            dns: DnsConfig {
                enabled: false,
                filter: None,
            },
        }
    }
}

/// Schema shape of `incoming`: a mode string or the object.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only describes the schema
enum IncomingFile {
    Mode(IncomingMode),
    Full(IncomingConfig),
}

/// What happens to traffic that reaches the pod on ports the local process listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IncomingConfig {
    /// `mirror` copies traffic to the local process (the pod still answers), `steal` takes it
    /// (the local process answers), `off` leaves it alone.
    /// Env: `TETHER_INCOMING_MODE`; `MIRRORD_AGENT_TCP_STEAL_TRAFFIC=true` means `steal`.
    pub mode: IncomingMode,

    /// Steal only HTTP requests matching a filter; other requests reach the pod as usual.
    #[schemars(with = "HttpFilterFile")]
    pub http_filter: HttpFilterConfig,

    /// Only these ports are mirrored or stolen; other listening ports stay local.
    /// Unset: every port the process listens on. Cannot be combined with `ignore_ports`.
    #[schemars(with = "Option<PortOrList>")]
    pub ports: Option<Vec<u16>>,

    /// Ports never mirrored or stolen (e.g. a debug server).
    #[schemars(with = "PortOrList")]
    pub ignore_ports: Vec<u16>,

    /// `[[local, remote], ...]`: the local process listening on `local` gets the pod's `remote`.
    pub port_mapping: Vec<(u16, u16)>,

    /// Listening on localhost only stays local.
    pub ignore_localhost: bool,
}

impl Default for IncomingConfig {
    fn default() -> Self {
        Self {
            mode: IncomingMode::Mirror,
            http_filter: HttpFilterConfig::default(),
            ports: None,
            ignore_ports: Vec::new(),
            port_mapping: Vec::new(),
            ignore_localhost: false,
        }
    }
}

impl IncomingConfig {
    /// The pod port that a local listener on `local_port` subscribes to, or `None` when it stays
    /// local (mode off, ignored, or not in `ports`).
    pub fn remote_port(&self, local_port: u16) -> Option<u16> {
        if self.mode == IncomingMode::Off || self.ignore_ports.contains(&local_port) {
            return None;
        }
        let remote = self
            .port_mapping
            .iter()
            .find(|(l, _)| *l == local_port)
            .map_or(local_port, |(_, r)| *r);
        match &self.ports {
            Some(ports) if !ports.contains(&remote) && !ports.contains(&local_port) => None,
            _ => Some(remote),
        }
    }

    /// The HTTP filter that applies to pod port `remote_port`, when stealing with a filter.
    pub fn filter_for(&self, remote_port: u16) -> Option<&HttpFilter> {
        let f = self.http_filter.filter.as_ref()?;
        (self.mode == IncomingMode::Steal && self.http_filter.ports.contains(&remote_port))
            .then_some(f)
    }
}

/// Incoming traffic mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncomingMode {
    /// Copy traffic to the local process; the pod still answers.
    #[default]
    Mirror,
    /// Take traffic: the local process answers instead of the pod.
    Steal,
    /// Leave incoming traffic alone.
    Off,
}

impl IncomingMode {
    /// Every mode, as written in config files.
    pub const NAMES: [&'static str; 3] = ["mirror", "steal", "off"];
}

impl FromStr for IncomingMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "mirror" => IncomingMode::Mirror,
            "steal" => IncomingMode::Steal,
            "off" => IncomingMode::Off,
            _ => return Err(format!("unknown incoming mode `{s}`")),
        })
    }
}

impl fmt::Display for IncomingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IncomingMode::Mirror => "mirror",
            IncomingMode::Steal => "steal",
            IncomingMode::Off => "off",
        })
    }
}

/// `http_filter`: one filter kind (or `all_of`/`any_of`), and the ports it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFilterConfig {
    /// The filter; `None` means no filter (steal whole ports).
    pub filter: Option<HttpFilter>,
    /// Ports the filter applies to; other stolen ports are stolen whole. Default `[80, 8080]`.
    pub ports: Vec<u16>,
}

/// mirrord's default `http_filter.ports`.
pub const DEFAULT_HTTP_FILTER_PORTS: [u16; 2] = [80, 8080];

impl Default for HttpFilterConfig {
    fn default() -> Self {
        Self {
            filter: None,
            ports: DEFAULT_HTTP_FILTER_PORTS.to_vec(),
        }
    }
}

/// An HTTP request filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFilter {
    /// Regex matched against each `Name: value` header line, case-insensitively.
    Header(String),
    /// Regex matched against the path, and against path and query, case-insensitively.
    Path(String),
    /// HTTP method, compared case-insensitively.
    Method(String),
    /// Every inner filter matches (never empty).
    AllOf(Vec<HttpFilter>),
    /// At least one inner filter matches (never empty).
    AnyOf(Vec<HttpFilter>),
}

/// Written in mirrord's file shape: `{"header_filter": ...}`, `{"all_of": [{"path": ...}]}`.
impl Serialize for HttpFilterConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Inner<'a>(&'a HttpFilter);
        impl Serialize for Inner<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                match self.0 {
                    HttpFilter::Header(v) => m.serialize_entry("header", v)?,
                    HttpFilter::Path(v) => m.serialize_entry("path", v)?,
                    HttpFilter::Method(v) => m.serialize_entry("method", v)?,
                    HttpFilter::AllOf(v) => {
                        m.serialize_entry("all_of", &v.iter().map(Inner).collect::<Vec<_>>())?
                    }
                    HttpFilter::AnyOf(v) => {
                        m.serialize_entry("any_of", &v.iter().map(Inner).collect::<Vec<_>>())?
                    }
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(None)?;
        match &self.filter {
            None => {}
            Some(HttpFilter::Header(v)) => m.serialize_entry("header_filter", v)?,
            Some(HttpFilter::Path(v)) => m.serialize_entry("path_filter", v)?,
            Some(HttpFilter::Method(v)) => m.serialize_entry("method_filter", v)?,
            Some(HttpFilter::AllOf(v)) => {
                m.serialize_entry("all_of", &v.iter().map(Inner).collect::<Vec<_>>())?
            }
            Some(HttpFilter::AnyOf(v)) => {
                m.serialize_entry("any_of", &v.iter().map(Inner).collect::<Vec<_>>())?
            }
        }
        m.serialize_entry("ports", &self.ports)?;
        m.end()
    }
}

/// Steal only HTTP requests that match. Give exactly one of `header_filter`, `path_filter`,
/// `method_filter`, `all_of`, `any_of`. Only used when `mode` is `steal`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only describes the schema
struct HttpFilterFile {
    /// Regex matched against each `Name: value` header line, case-insensitively, e.g.
    /// `"^x-debug-user: alice$"`. Env: `TETHER_HTTP_HEADER_FILTER` (or `MIRRORD_HTTP_HEADER_FILTER`).
    header_filter: Option<String>,
    /// Regex matched against the request path, and against path with query, case-insensitively.
    /// Env: `TETHER_HTTP_PATH_FILTER` (or `MIRRORD_HTTP_PATH_FILTER`).
    path_filter: Option<String>,
    /// HTTP method, e.g. `"POST"`, compared case-insensitively.
    method_filter: Option<String>,
    /// Requests must match every filter in the list (not empty).
    all_of: Option<Vec<InnerFilterFile>>,
    /// Requests must match at least one filter in the list (not empty).
    any_of: Option<Vec<InnerFilterFile>>,
    /// Ports the filter applies to; other stolen ports are stolen whole. Default `[80, 8080]`.
    #[schemars(default = "default_filter_ports")]
    ports: Option<PortOrList>,
}

fn default_filter_ports() -> Vec<u16> {
    DEFAULT_HTTP_FILTER_PORTS.to_vec()
}

/// One filter inside `all_of`/`any_of`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only describes the schema
enum InnerFilterFile {
    /// Header regex, as `header_filter`.
    Header {
        /// Regex matched against `Name: value`.
        header: String,
    },
    /// Path regex, as `path_filter`.
    Path {
        /// Regex matched against the path.
        path: String,
    },
    /// Method, as `method_filter`.
    Method {
        /// HTTP method.
        method: String,
    },
}

/// Outgoing connections: which go out from the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OutgoingConfig {
    /// TCP connections go out from the pod. Env: `TETHER_TCP_OUTGOING` (or `MIRRORD_TCP_OUTGOING`).
    pub tcp: bool,
    /// UDP traffic goes out from the pod. Env: `TETHER_UDP_OUTGOING` (or `MIRRORD_UDP_OUTGOING`).
    pub udp: bool,
    /// Connections to localhost stay local (by default they reach the pod's localhost).
    pub ignore_localhost: bool,
    /// `{"local": [...]}`: these go out locally, the rest from the pod; or `{"remote": [...]}`:
    /// only these go out from the pod. Items are `[tcp://|udp://][host|ip|cidr][:port]`.
    pub filter: Option<OutgoingFilter>,
}

impl Default for OutgoingConfig {
    fn default() -> Self {
        Self {
            tcp: true,
            udp: true,
            ignore_localhost: false,
            filter: None,
        }
    }
}

impl OutgoingConfig {
    /// `feature.network.outgoing = false`.
    pub fn disabled() -> Self {
        Self {
            tcp: false,
            udp: false,
            ..Self::default()
        }
    }
}

/// An outgoing or DNS filter: which side the listed addresses go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutgoingFilter {
    /// Listed addresses stay local; everything else goes through the pod.
    Local(Vec<AddressRule>),
    /// Only listed addresses go through the pod.
    Remote(Vec<AddressRule>),
}

impl OutgoingFilter {
    /// Whether traffic to this destination goes through the pod.
    pub fn is_remote(
        &self,
        protocol: Protocol,
        name: Option<&str>,
        ip: Option<IpAddr>,
        port: u16,
    ) -> bool {
        match self {
            OutgoingFilter::Local(rules) => {
                !rules.iter().any(|r| r.matches(protocol, name, ip, port))
            }
            OutgoingFilter::Remote(rules) => {
                rules.iter().any(|r| r.matches(protocol, name, ip, port))
            }
        }
    }
}

/// DNS resolution in the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Names are resolved in the pod. Env: `TETHER_REMOTE_DNS` (or `MIRRORD_REMOTE_DNS`).
    pub enabled: bool,
    /// `{"local": [...]}` or `{"remote": [...]}` of `[name|ip|cidr][:port]`.
    pub filter: Option<OutgoingFilter>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            filter: None,
        }
    }
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A host pattern in an address rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// A DNS name, compared case-insensitively.
    Name(String),
    /// One address.
    Ip(IpAddr),
    /// A subnet.
    Cidr(IpAddr, u8),
}

/// `[tcp://|udp://][host|ip|cidr][:port]`; each part left out matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddressRule {
    /// Protocol, or any.
    pub protocol: Option<Protocol>,
    /// Host, or any.
    pub host: Option<HostPattern>,
    /// Port, or any.
    pub port: Option<u16>,
}

impl AddressRule {
    /// Whether a destination matches. `name` is the hostname when known; `ip` the address.
    pub fn matches(
        &self,
        protocol: Protocol,
        name: Option<&str>,
        ip: Option<IpAddr>,
        port: u16,
    ) -> bool {
        if self.protocol.is_some_and(|p| p != protocol) || self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            None => true,
            Some(HostPattern::Name(n)) => {
                name.is_some_and(|x| x.trim_end_matches('.').eq_ignore_ascii_case(n))
            }
            Some(HostPattern::Ip(a)) => ip == Some(*a),
            Some(HostPattern::Cidr(net, len)) => ip.is_some_and(|ip| in_subnet(ip, *net, *len)),
        }
    }
}

fn in_subnet(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl FromStr for AddressRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (protocol, rest) = match s.split_once("://") {
            Some(("tcp", r)) => (Some(Protocol::Tcp), r),
            Some(("udp", r)) => (Some(Protocol::Udp), r),
            Some((p, _)) => return Err(format!("unknown protocol `{p}`, expected `tcp` or `udp`")),
            None => (None, s),
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or("missing `]` after an IPv6 address")?;
            match after {
                "" => (h, None),
                _ => (
                    h,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or("expected `:PORT` after `]`")?,
                    ),
                ),
            }
        } else if rest.matches(':').count() > 1 {
            (rest, None) // a bare IPv6 address or subnet
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = port
            .map(|p| p.parse::<u16>().map_err(|_| format!("invalid port `{p}`")))
            .transpose()?;
        let host = if host.is_empty() {
            None
        } else if let Some((net, len)) = host.split_once('/') {
            let net: IpAddr = net
                .parse()
                .map_err(|_| format!("invalid subnet `{host}`"))?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let len = len
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("invalid prefix length in `{host}`"))?;
            Some(HostPattern::Cidr(net, len))
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Some(HostPattern::Ip(ip))
        } else if host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            Some(HostPattern::Name(
                host.trim_end_matches('.').to_ascii_lowercase(),
            ))
        } else {
            return Err(format!("invalid host `{host}`"));
        };
        Ok(AddressRule {
            protocol,
            host,
            port,
        })
    }
}

impl fmt::Display for AddressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Some(Protocol::Tcp) => f.write_str("tcp://")?,
            Some(Protocol::Udp) => f.write_str("udp://")?,
            None => {}
        }
        let v6 = matches!(
            self.host,
            Some(HostPattern::Ip(IpAddr::V6(_)) | HostPattern::Cidr(IpAddr::V6(_), _))
        );
        let bracket = v6 && self.port.is_some();
        if bracket {
            f.write_str("[")?;
        }
        match &self.host {
            None => {}
            Some(HostPattern::Name(n)) => f.write_str(n)?,
            Some(HostPattern::Ip(ip)) => write!(f, "{ip}")?,
            Some(HostPattern::Cidr(ip, len)) => write!(f, "{ip}/{len}")?,
        }
        if bracket {
            f.write_str("]")?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl Serialize for AddressRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for AddressRule {
    fn schema_name() -> Cow<'static, str> {
        "AddressRule".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "`[tcp://|udp://][host|ip|cidr][:port]`, e.g. `db.internal:5432`, `10.0.0.0/8`, `udp://:53`; a part left out matches anything."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_rules_parse_and_print() {
        for s in [
            "tcp://10.0.0.0/8:5432",
            "db.internal",
            ":53",
            "udp://:53",
            "1.2.3.4",
            "[::1]:80",
            "::1",
            "fd00::/8",
        ] {
            let r: AddressRule = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        assert!("http://x".parse::<AddressRule>().is_err());
        assert!("x:99999".parse::<AddressRule>().is_err());
        assert!("10.0.0.0/33".parse::<AddressRule>().is_err());
        assert!("a b".parse::<AddressRule>().is_err());
    }

    #[test]
    fn address_rules_match() {
        let r: AddressRule = "tcp://10.0.0.0/8:5432".parse().unwrap();
        let ip = "10.1.2.3".parse().ok();
        assert!(r.matches(Protocol::Tcp, None, ip, 5432));
        assert!(!r.matches(Protocol::Udp, None, ip, 5432));
        assert!(!r.matches(Protocol::Tcp, None, "11.0.0.1".parse().ok(), 5432));
        let r: AddressRule = "DB.internal".parse().unwrap();
        assert!(r.matches(Protocol::Tcp, Some("db.INTERNAL."), None, 1));
        let f = OutgoingFilter::Local(vec![":53".parse().unwrap()]);
        assert!(!f.is_remote(Protocol::Udp, None, ip, 53));
        assert!(f.is_remote(Protocol::Tcp, None, ip, 80));
    }

    #[test]
    fn incoming_ports() {
        let cfg = IncomingConfig {
            mode: IncomingMode::Steal,
            ignore_ports: vec![9229],
            port_mapping: vec![(3000, 80)],
            ..IncomingConfig::default()
        };
        assert_eq!(cfg.remote_port(3000), Some(80));
        assert_eq!(cfg.remote_port(8080), Some(8080));
        assert_eq!(cfg.remote_port(9229), None);
        let only = IncomingConfig {
            ports: Some(vec![80]),
            ..cfg.clone()
        };
        assert_eq!(only.remote_port(3000), Some(80));
        assert_eq!(only.remote_port(8080), None);
        let off = IncomingConfig {
            mode: IncomingMode::Off,
            ..cfg
        };
        assert_eq!(off.remote_port(3000), None);
    }
}
