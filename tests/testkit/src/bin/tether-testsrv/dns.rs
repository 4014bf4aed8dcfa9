//! A small authoritative DNS server: A, AAAA and PTR from a hosts-format file, NXDOMAIN for
//! everything else. RFC 1035 wire format, UDP and TCP (2-byte length prefix).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u8 = 1;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
/// Short, so tests that change records see the change at once.
const TTL: u32 = 5;

/// Parsed records file.
#[derive(Default, Debug)]
struct Records {
    /// Lowercase name without trailing dot -> addresses.
    by_name: HashMap<String, Vec<IpAddr>>,
    /// Reverse name (`4.3.2.1.in-addr.arpa`) -> name.
    by_ptr: HashMap<String, String>,
}

fn parse_records(text: &str) -> Records {
    let mut r = Records::default();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
            continue;
        };
        for (i, name) in words.enumerate() {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let ips = r.by_name.entry(name.clone()).or_default();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
            if i == 0 {
                r.by_ptr.entry(reverse_name(ip)).or_insert(name);
            }
        }
    }
    r
}

fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s + "ip6.arpa"
        }
    }
}

/// Identity of one version of the records file: inode, size, mtime seconds and nanoseconds.
type Stamp = (u64, u64, i64, i64);

/// The records file, reread when its inode, size or mtime changes (it is replaced by rename).
struct Store {
    path: PathBuf,
    cache: Mutex<(Option<Stamp>, Arc<Records>)>,
}

impl Store {
    fn current(&self) -> Arc<Records> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != stamp || stamp.is_none() {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            *cache = (stamp, Arc::new(parse_records(&text)));
        }
        cache.1.clone()
    }
}

pub(crate) async fn serve(addr: SocketAddr, records: PathBuf) -> anyhow::Result<()> {
    let store = Arc::new(Store {
        path: records,
        cache: Mutex::new((None, Arc::new(Records::default()))),
    });
    let udp = UdpSocket::bind(addr)
        .await
        .with_context(|| format!("binding udp {addr}"))?;
    let tcp = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding tcp {addr}"))?;
    eprintln!(
        "dns listening on {addr} (udp, tcp), records {}",
        store.path.display()
    );
    let tcp_store = store.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = tcp.accept().await else {
                continue;
            };
            let store = tcp_store.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(len) = conn.read_u16().await else {
                        return;
                    };
                    let mut q = vec![0u8; len as usize];
                    if conn.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    let Some(resp) = answer(&q, &store.current()) else {
                        return;
                    };
                    let mut out = (resp.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&resp);
                    if conn.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = udp.recv_from(&mut buf).await.context("receiving")?;
        if let Some(resp) = answer(&buf[..n], &store.current()) {
            let _ = udp.send_to(&resp, peer).await;
        }
    }
}

/// The response to one query message, `None` for garbage that deserves no answer.
fn answer(q: &[u8], records: &Records) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    let opcode = (q[2] >> 3) & 0x0f;
    let qdcount = u16::from_be_bytes([q[4], q[5]]);
    let header = |rcode: u8, qd: u16, an: u16| {
        let mut h = Vec::with_capacity(512);
        h.extend_from_slice(&q[0..2]);
        // QR=1, same opcode, AA=1, RD copied; RA=0 (no recursion here).
        h.push(0x80 | (opcode << 3) | 0x04 | (q[2] & 0x01));
        h.push(rcode);
        h.extend_from_slice(&qd.to_be_bytes());
        h.extend_from_slice(&an.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0]);
        h
    };
    if opcode != 0 {
        return Some(header(RCODE_NOTIMP, 0, 0));
    }
    if qdcount != 1 {
        return Some(header(RCODE_FORMERR, 0, 0));
    }
    let Some((name, end)) = read_name(q, 12) else {
        return Some(header(RCODE_FORMERR, 0, 0));
    };
    if q.len() < end + 4 {
        return Some(header(RCODE_FORMERR, 0, 0));
    }
    let qtype = u16::from_be_bytes([q[end], q[end + 1]]);
    let qclass = u16::from_be_bytes([q[end + 2], q[end + 3]]);
    let question = &q[12..end + 4];

    let mut answers: Vec<(u16, Vec<u8>)> = Vec::new();
    let known = if let Some(ips) = records.by_name.get(&name) {
        for ip in ips {
            match ip {
                IpAddr::V4(a) if matches!(qtype, TYPE_A | TYPE_ANY) => {
                    answers.push((TYPE_A, a.octets().to_vec()))
                }
                IpAddr::V6(a) if matches!(qtype, TYPE_AAAA | TYPE_ANY) => {
                    answers.push((TYPE_AAAA, a.octets().to_vec()))
                }
                _ => {}
            }
        }
        true
    } else if let Some(target) = records.by_ptr.get(&name) {
        if matches!(qtype, TYPE_PTR | TYPE_ANY) {
            answers.push((TYPE_PTR, encode_name(target)));
        }
        true
    } else {
        false
    };
    if qclass != CLASS_IN {
        answers.clear();
    }
    let rcode = if known { 0 } else { RCODE_NXDOMAIN };
    let mut resp = header(rcode, 1, answers.len() as u16);
    resp.extend_from_slice(question);
    for (rtype, rdata) in answers {
        resp.extend_from_slice(&[0xc0, 0x0c]); // pointer to the question name
        resp.extend_from_slice(&rtype.to_be_bytes());
        resp.extend_from_slice(&CLASS_IN.to_be_bytes());
        resp.extend_from_slice(&TTL.to_be_bytes());
        resp.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        resp.extend_from_slice(&rdata);
    }
    Some(resp)
}

/// Reads an uncompressed name at `pos`: (lowercase dotted name, offset after it).
fn read_name(q: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = *q.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        // Compression pointers never appear in a query's only question.
        if len & 0xc0 != 0 {
            return None;
        }
        let label = q.get(pos..pos + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
    }
    Some((labels.join("."), pos))
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend(encode_name(name));
        q.extend(qtype.to_be_bytes());
        q.extend(CLASS_IN.to_be_bytes());
        q
    }

    fn records() -> Records {
        parse_records(
            "# comment\n10.244.1.5 web.pods.test web2.pods.test\n10.96.1.10 api.cluster.test\nfd00::5 web.pods.test\n",
        )
    }

    #[test]
    fn a_record_answers_with_address() {
        let r = answer(&query("WEB.pods.test", TYPE_A), &records()).unwrap();
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0, "rcode");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "ancount");
        assert_eq!(&r[r.len() - 4..], &[10, 244, 1, 5]);
    }

    #[test]
    fn aaaa_and_nodata() {
        let r = answer(&query("web.pods.test", TYPE_AAAA), &records()).unwrap();
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        let r = answer(&query("api.cluster.test", TYPE_AAAA), &records()).unwrap();
        assert_eq!(r[3] & 0x0f, 0, "known name: NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0, "but no data");
    }

    #[test]
    fn unknown_name_is_nxdomain() {
        let r = answer(&query("example.com", TYPE_A), &records()).unwrap();
        assert_eq!(r[3] & 0x0f, RCODE_NXDOMAIN);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0);
    }

    #[test]
    fn ptr_gives_first_name() {
        let r = answer(&query("5.1.244.10.in-addr.arpa", TYPE_PTR), &records()).unwrap();
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert!(r.ends_with(&encode_name("web.pods.test")));
        assert_eq!(reverse_name("fd00::5".parse().unwrap()).len(), 72);
    }

    #[test]
    fn garbage_is_ignored_or_formerr() {
        assert!(answer(&[1, 2, 3], &records()).is_none());
        let mut q = query("web.pods.test", TYPE_A);
        q[12] = 0xc0; // a pointer as first label length
        let r = answer(&q, &records()).unwrap();
        assert_eq!(r[3] & 0x0f, RCODE_FORMERR);
    }
}
