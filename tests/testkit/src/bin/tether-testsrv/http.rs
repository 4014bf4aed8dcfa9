//! HTTP echo server (HTTP/1.1 and h2c) and a minimal HTTP/1.1 GET client.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

struct Instance {
    name: String,
    hostname: String,
}

pub(crate) async fn serve(addr: SocketAddr, name: String) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding tcp {addr}"))?;
    let inst = Arc::new(Instance {
        name,
        hostname: hostname(),
    });
    eprintln!("http-echo {} listening on {addr}", inst.name);
    loop {
        let (stream, peer) = listener.accept().await.context("accepting")?;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().context("local address")?;
        let inst = inst.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, inst.clone(), peer, local));
            // `auto` tells HTTP/1.1 from the HTTP/2 connection preface (prior knowledge).
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                eprintln!("http-echo {peer}: {e}");
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    inst: Arc<Instance>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let version = format!("{:?}", req.version());
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => Bytes::from(format!("<body error: {e}>")),
    };
    eprintln!(
        "http-echo {}: {method} {path} {version} from {peer}",
        inst.name
    );
    let json = serde_json::json!({
        "instance": inst.name,
        "hostname": inst.hostname,
        "method": method,
        "path": path,
        "version": version,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "remote": peer.to_string(),
        "local": local.to_string(),
    });
    let mut text = serde_json::to_vec(&json).expect("json value serializes");
    text.push(b'\n');
    let resp = Response::builder()
        .header("content-type", "application/json")
        .header("x-tether-instance", inst.name.as_str())
        .body(Full::new(Bytes::from(text)))
        .expect("static response parts are valid");
    Ok(resp)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// GET `http://HOST[:PORT]/PATH` with `Connection: close`; prints the body.
pub(crate) fn get(url: &str, timeout_ms: u64) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(timeout_ms);
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("unsupported URL {url}: only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h.trim_matches(['[', ']']),
            p.parse::<u16>().context("bad port")?,
        ),
        _ => (authority, 80),
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .collect();
    let started = Instant::now();
    let mut last = None;
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(format!("connecting to {a}: {e}")),
        }
    }
    let Some(mut s) = stream else {
        bail!(last.unwrap_or_else(|| format!("{host} has no address")));
    };
    s.set_read_timeout(Some(
        timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1)),
    ))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tether-testsrv\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).context("reading response")?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed status line")?;
    print!("{body}");
    if !(200..300).contains(&status) {
        bail!("{url}: HTTP status {status}");
    }
    Ok(())
}
