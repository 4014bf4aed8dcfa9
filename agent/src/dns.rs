//! Name resolution as the target would do it: its `/etc/hosts`, its `/etc/resolv.conf`
//! (nameservers, search list, `ndots`, `timeout`, `attempts`), and queries sent from its network
//! namespace.
//!
//! Follows glibc's resolver where it matters to apps: the hosts file first; a name with at least
//! `ndots` dots is tried as is before the search list, others after it; a trailing dot means
//! "as is only"; UDP first, TCP when the answer is truncated. A name that does not exist (or has
//! no address of the wanted family) is `ENOENT`; nameservers that time out or fail are `EAGAIN`
//! (the layer turns them into `EAI_NONAME` and `EAI_AGAIN`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tether_protocol::dns::{DnsRequest, DnsResponse, Family};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

use crate::errors::{OpError, OpResult};
use crate::files::resolve::open_in_root;
use crate::target::Target;

/// Resolver settings from a resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Nameservers, at most three as glibc uses.
    pub nameservers: Vec<IpAddr>,
    /// Search domains, without trailing dots.
    pub search: Vec<String>,
    /// `options ndots:N`.
    pub ndots: usize,
    /// `options timeout:N`, per query.
    pub timeout: Duration,
    /// `options attempts:N`, rounds over the nameservers.
    pub attempts: usize,
}

impl Default for ResolvConf {
    fn default() -> Self {
        Self {
            nameservers: vec![IpAddr::from([127, 0, 0, 1])],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

impl ResolvConf {
    /// Parses resolv.conf text; unknown lines are ignored as glibc does.
    pub fn parse(text: &str) -> Self {
        let mut conf = Self {
            nameservers: Vec::new(),
            ..Self::default()
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok())
                        && conf.nameservers.len() < 3
                    {
                        conf.nameservers.push(ip);
                    }
                }
                // The last of `domain` and `search` wins.
                Some("search") | Some("domain") => {
                    conf.search = words.map(|w| w.trim_end_matches('.').to_owned()).collect();
                }
                Some("options") => {
                    for opt in words {
                        let (k, v) = opt.split_once(':').unwrap_or((opt, ""));
                        let n = v.parse::<usize>().ok();
                        match (k, n) {
                            ("ndots", Some(n)) => conf.ndots = n.min(15),
                            ("timeout", Some(n)) => {
                                conf.timeout = Duration::from_secs(n.clamp(1, 30) as u64)
                            }
                            ("attempts", Some(n)) => conf.attempts = n.clamp(1, 5),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if conf.nameservers.is_empty() {
            conf.nameservers = Self::default().nameservers;
        }
        conf
    }

    /// The names to try for `name`, in order.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(abs) = name.strip_suffix('.') {
            return vec![abs.to_owned()];
        }
        let searched = self.search.iter().map(|d| format!("{name}.{d}"));
        let dots = name.matches('.').count();
        if dots >= self.ndots {
            std::iter::once(name.to_owned()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_owned())).collect()
        }
    }
}

/// One line of a hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    /// Address.
    pub addr: IpAddr,
    /// Canonical name, then aliases.
    pub names: Vec<String>,
}

/// Parses a hosts file.
pub fn parse_hosts(text: &str) -> Vec<HostsEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let addr = words.next()?.parse().ok()?;
            let names: Vec<String> = words.map(str::to_owned).collect();
            (!names.is_empty()).then_some(HostsEntry { addr, names })
        })
        .collect()
}

fn wants(family: Family, addr: &IpAddr) -> bool {
    match family {
        Family::Any => true,
        Family::V4 => addr.is_ipv4(),
        Family::V6 => addr.is_ipv6(),
    }
}

/// Looks `name` up in hosts entries: canonical name and addresses in file order.
pub fn hosts_lookup(
    hosts: &[HostsEntry],
    name: &str,
    family: Family,
) -> Option<(String, Vec<IpAddr>)> {
    let name = name.trim_end_matches('.');
    let mut canonical = None;
    let mut addrs = Vec::new();
    for e in hosts {
        if e.names.iter().any(|n| n.eq_ignore_ascii_case(name)) && wants(family, &e.addr) {
            canonical.get_or_insert_with(|| e.names[0].clone());
            if !addrs.contains(&e.addr) {
                addrs.push(e.addr);
            }
        }
    }
    canonical.map(|c| (c, addrs))
}

/// The `in-addr.arpa` / `ip6.arpa` name of an address.
pub fn reverse_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(74);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

/// Name resolution for the target. Re-reads resolv.conf and hosts on every lookup (they are
/// small, and a pod's may change).
#[derive(Debug)]
pub struct Resolver {
    target: Arc<Target>,
}

/// What one query to the nameservers found.
#[derive(Debug)]
enum Answer {
    /// Records of the asked type (after CNAMEs), with the canonical name.
    Found {
        canonical: String,
        records: Vec<RData>,
    },
    /// NXDOMAIN.
    NoName,
    /// The name exists but has no record of this type.
    NoData,
    /// No usable answer: every server timed out or failed.
    Failed(String),
}

impl Resolver {
    /// A resolver for `target`.
    pub fn new(target: Arc<Target>) -> Self {
        Self { target }
    }

    /// Serves one request.
    pub async fn handle(&self, req: DnsRequest) -> OpResult<DnsResponse> {
        // Without the target's netns and files, answers would be the agent's, not the pod's.
        self.target.netns().available()?;
        self.target.root_fd()?;
        match req {
            DnsRequest::Lookup { name, family } => self.lookup(&name, family).await,
            DnsRequest::Reverse { addr } => self.reverse(addr).await,
        }
    }

    async fn read_target_file(&self, path: &'static str) -> Option<String> {
        let root = self.target.root_fd().ok()?;
        tokio::task::spawn_blocking(move || {
            let fd = open_in_root(root, path.as_bytes(), libc::O_RDONLY, 0).ok()?;
            std::fs::read_to_string(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ))
            .ok()
        })
        .await
        .ok()
        .flatten()
    }

    async fn conf(&self) -> (ResolvConf, Vec<HostsEntry>) {
        let (conf, hosts) = tokio::join!(
            self.read_target_file("/etc/resolv.conf"),
            self.read_target_file("/etc/hosts")
        );
        (
            conf.map(|t| ResolvConf::parse(&t)).unwrap_or_default(),
            hosts.map(|t| parse_hosts(&t)).unwrap_or_default(),
        )
    }

    async fn lookup(&self, name: &str, family: Family) -> OpResult<DnsResponse> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return if wants(family, &ip) {
                Ok(DnsResponse::Addresses {
                    canonical_name: name.to_owned(),
                    addrs: vec![ip],
                })
            } else {
                Err(no_name(name))
            };
        }
        if name.is_empty() || name.len() > 253 {
            return Err(no_name(name));
        }
        let (conf, hosts) = self.conf().await;
        if let Some((canonical_name, addrs)) = hosts_lookup(&hosts, name, family)
            && !addrs.is_empty()
        {
            return Ok(DnsResponse::Addresses {
                canonical_name,
                addrs,
            });
        }
        let types: &[RecordType] = match family {
            Family::Any => &[RecordType::A, RecordType::AAAA],
            Family::V4 => &[RecordType::A],
            Family::V6 => &[RecordType::AAAA],
        };
        let mut failure = None;
        for candidate in conf.candidates(name) {
            let Ok(qname) = Name::from_ascii(format!("{candidate}.")) else {
                continue;
            };
            let answers =
                futures::future::join_all(types.iter().map(|t| self.query(&conf, &qname, *t)))
                    .await;
            let mut canonical_name = None;
            let mut addrs = Vec::new();
            for a in answers {
                match a {
                    Answer::Found { canonical, records } => {
                        canonical_name.get_or_insert(canonical);
                        addrs.extend(records.iter().filter_map(|r| match r {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                            _ => None,
                        }));
                    }
                    Answer::Failed(why) => failure = Some(why),
                    Answer::NoName | Answer::NoData => {}
                }
            }
            if !addrs.is_empty() {
                return Ok(DnsResponse::Addresses {
                    canonical_name: canonical_name.unwrap_or(candidate),
                    addrs,
                });
            }
        }
        match failure {
            Some(why) => Err(OpError::errno(
                libc::EAGAIN,
                format!("resolve {name}: {why}"),
            )),
            None => Err(no_name(name)),
        }
    }

    async fn reverse(&self, addr: IpAddr) -> OpResult<DnsResponse> {
        let (conf, hosts) = self.conf().await;
        if let Some(e) = hosts.iter().find(|e| e.addr == addr) {
            return Ok(DnsResponse::Name(e.names[0].clone()));
        }
        let qname = Name::from_ascii(reverse_name(addr))
            .map_err(|e| OpError::errno(libc::EINVAL, format!("reverse name of {addr}: {e}")))?;
        match self.query(&conf, &qname, RecordType::PTR).await {
            Answer::Found { records, .. } => records
                .iter()
                .find_map(|r| match r {
                    RData::PTR(p) => Some(DnsResponse::Name(
                        p.0.to_ascii().trim_end_matches('.').to_owned(),
                    )),
                    _ => None,
                })
                .ok_or_else(|| no_name(&addr.to_string())),
            Answer::NoName | Answer::NoData => Err(no_name(&addr.to_string())),
            Answer::Failed(why) => Err(OpError::errno(
                libc::EAGAIN,
                format!("reverse lookup of {addr}: {why}"),
            )),
        }
    }

    /// Asks the nameservers, `attempts` rounds, until one gives a usable answer.
    async fn query(&self, conf: &ResolvConf, name: &Name, rtype: RecordType) -> Answer {
        let mut last = String::from("no nameserver answered");
        for _ in 0..conf.attempts {
            for server in &conf.nameservers {
                let server = SocketAddr::new(*server, 53);
                match self.exchange(server, name, rtype, conf.timeout).await {
                    Ok(msg) => match interpret(&msg, name, rtype) {
                        Answer::Failed(why) => last = format!("{server}: {why}"),
                        answer => return answer,
                    },
                    Err(e) => last = format!("{server}: {e}"),
                }
            }
        }
        Answer::Failed(last)
    }

    /// One query to one server: UDP, then TCP when truncated.
    async fn exchange(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
        timeout: Duration,
    ) -> std::io::Result<Message> {
        let id: u16 = rand::random();
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(name.clone(), rtype));
        let wire = msg.to_vec().map_err(std::io::Error::other)?;
        let resp = tokio::time::timeout(timeout, self.udp(server, &wire, id))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
        if !resp.metadata.truncation {
            return Ok(resp);
        }
        tokio::time::timeout(timeout, self.tcp(server, &wire, id))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out over TCP"))?
    }

    async fn netns_socket(&self, server: SocketAddr, ty: Type) -> std::io::Result<Socket> {
        self.target
            .netns()
            .run(move || {
                let proto = if ty == Type::DGRAM {
                    Protocol::UDP
                } else {
                    Protocol::TCP
                };
                let s = Socket::new(Domain::for_address(server), ty.cloexec(), Some(proto))?;
                s.set_nonblocking(true)?;
                if ty == Type::DGRAM {
                    s.connect(&SockAddr::from(server))?;
                }
                Ok::<_, std::io::Error>(s)
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    async fn udp(&self, server: SocketAddr, wire: &[u8], id: u16) -> std::io::Result<Message> {
        let sock: std::net::UdpSocket = self.netns_socket(server, Type::DGRAM).await?.into();
        let sock = UdpSocket::from_std(sock)?;
        sock.send(wire).await?;
        let mut buf = vec![0u8; 65535];
        loop {
            let n = sock.recv(&mut buf).await?;
            // Ignore stray or spoofed answers with another id.
            if let Ok(m) = Message::from_vec(&buf[..n])
                && m.metadata.id == id
            {
                return Ok(m);
            }
        }
    }

    async fn tcp(&self, server: SocketAddr, wire: &[u8], id: u16) -> std::io::Result<Message> {
        let sock: std::net::TcpStream = self.netns_socket(server, Type::STREAM).await?.into();
        let mut stream = TcpSocket::from_std_stream(sock).connect(server).await?;
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
        framed.extend_from_slice(wire);
        stream.write_all(&framed).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await?;
        let m = Message::from_vec(&buf).map_err(std::io::Error::other)?;
        if m.metadata.id != id {
            return Err(std::io::Error::other("answer id does not match the query"));
        }
        Ok(m)
    }
}

fn no_name(name: &str) -> OpError {
    OpError::errno(libc::ENOENT, format!("resolve {name}: no such name"))
}

/// Reads an answer: follows CNAMEs from `name` and collects the records of `rtype`.
fn interpret(msg: &Message, name: &Name, rtype: RecordType) -> Answer {
    match msg.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Answer::NoName,
        other => return Answer::Failed(format!("server answered {other}")),
    }
    let mut current = name.clone();
    // Bounded: a CNAME loop in a hostile answer must not spin.
    for _ in 0..16 {
        let next = msg.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if r.name == current => Some(c.0.clone()),
            _ => None,
        });
        match next {
            Some(n) => current = n,
            None => break,
        }
    }
    let records: Vec<RData> = msg
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype && r.name == current)
        .map(|r| r.data.clone())
        .collect();
    if records.is_empty() {
        return Answer::NoData;
    }
    Answer::Found {
        canonical: current.to_ascii().trim_end_matches('.').to_owned(),
        records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_as_kubernetes_writes_it() {
        let conf = ResolvConf::parse(
            "search shop.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10\n\
             options ndots:5 timeout:2 attempts:3 rotate\n",
        );
        assert_eq!(conf.nameservers, vec![IpAddr::from([10, 96, 0, 10])]);
        assert_eq!(conf.ndots, 5);
        assert_eq!(conf.timeout, Duration::from_secs(2));
        assert_eq!(conf.attempts, 3);
        assert_eq!(
            conf.candidates("api"),
            vec![
                "api.shop.svc.cluster.local",
                "api.svc.cluster.local",
                "api.cluster.local",
                "api"
            ]
        );
        assert_eq!(conf.candidates("example.com."), vec!["example.com"]);
        let few = ResolvConf::parse("search a.b\noptions ndots:1\n");
        assert_eq!(few.candidates("x.y"), vec!["x.y", "x.y.a.b"]);
        assert_eq!(few.nameservers, vec![IpAddr::from([127, 0, 0, 1])]);
    }

    #[test]
    fn hosts_file_order_family_and_aliases() {
        let hosts = parse_hosts(
            "# comment\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n\
             10.1.2.3 pod-a.ns.svc pod-a # the pod\nbogus line\n",
        );
        assert_eq!(hosts.len(), 3);
        let (canon, addrs) = hosts_lookup(&hosts, "POD-A", Family::Any).unwrap();
        assert_eq!(canon, "pod-a.ns.svc");
        assert_eq!(addrs, vec![IpAddr::from([10, 1, 2, 3])]);
        let (_, addrs) = hosts_lookup(&hosts, "localhost", Family::V6).unwrap();
        assert_eq!(addrs, vec!["::1".parse::<IpAddr>().unwrap()]);
        assert!(hosts_lookup(&hosts, "nope", Family::Any).is_none());
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("10.1.2.3".parse().unwrap()),
            "3.2.1.10.in-addr.arpa."
        );
        let v6 = reverse_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0"), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.ip6.arpa."), "{v6}");
    }

    #[test]
    fn answers_follow_cnames_and_classify_errors() {
        use hickory_proto::rr::Record;
        use hickory_proto::rr::rdata::{A, CNAME};
        let q = Name::from_ascii("www.example.").unwrap();
        let target = Name::from_ascii("edge.example.").unwrap();
        let mut msg = Message::new(1, MessageType::Response, OpCode::Query);
        msg.answers.push(Record::from_rdata(
            q.clone(),
            60,
            RData::CNAME(CNAME(target.clone())),
        ));
        msg.answers.push(Record::from_rdata(
            target,
            60,
            RData::A(A::new(10, 0, 0, 9)),
        ));
        match interpret(&msg, &q, RecordType::A) {
            Answer::Found { canonical, records } => {
                assert_eq!(canonical, "edge.example");
                assert_eq!(records, vec![RData::A(A::new(10, 0, 0, 9))]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            interpret(&msg, &q, RecordType::AAAA),
            Answer::NoData
        ));
        msg.metadata.response_code = ResponseCode::NXDomain;
        assert!(matches!(interpret(&msg, &q, RecordType::A), Answer::NoName));
        msg.metadata.response_code = ResponseCode::ServFail;
        assert!(matches!(
            interpret(&msg, &q, RecordType::A),
            Answer::Failed(_)
        ));
    }

    /// A nameserver that answers UDP with the TC bit and nothing else, and TCP in full: the
    /// resolver must retry over TCP and return the TCP answer.
    #[tokio::test]
    async fn truncated_udp_answer_is_retried_over_tcp() {
        use hickory_proto::rr::Record;
        use hickory_proto::rr::rdata::A;
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(server).await.unwrap();
        let answer = |query: &Message, truncated: bool| {
            let mut m = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            m.queries = query.queries.clone();
            m.metadata.truncation = truncated;
            if !truncated {
                let name = query.queries[0].name().clone();
                for i in 0..40u8 {
                    m.answers.push(Record::from_rdata(
                        name.clone(),
                        60,
                        RData::A(A::new(10, 9, 0, i)),
                    ));
                }
            }
            m.to_vec().unwrap()
        };
        let udp_task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            udp.send_to(&answer(&q, true), peer).await.unwrap();
        });
        let tcp_task = tokio::spawn(async move {
            let (mut s, _) = tcp.accept().await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut q).await.unwrap();
            let q = Message::from_vec(&q).unwrap();
            let a = answer(&q, false);
            s.write_all(&(a.len() as u16).to_be_bytes()).await.unwrap();
            s.write_all(&a).await.unwrap();
        });
        let target = Arc::new(Target::open(std::process::id()).unwrap());
        let resolver = Resolver::new(target);
        let name = Name::from_ascii("many.example.").unwrap();
        let msg = resolver
            .exchange(server, &name, RecordType::A, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!msg.metadata.truncation);
        match interpret(&msg, &name, RecordType::A) {
            Answer::Found { records, .. } => assert_eq!(records.len(), 40),
            other => panic!("{other:?}"),
        }
        udp_task.await.unwrap();
        tcp_task.await.unwrap();
    }
}
