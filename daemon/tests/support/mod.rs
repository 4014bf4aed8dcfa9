//! Shared test helpers: in-process calls (sessions and their events included), a raw HTTP
//! client, and a fake Kubernetes API server.
#![allow(dead_code)] // each test binary uses a different subset

pub mod cluster;
pub mod fake_kube;

use std::{sync::Arc, time::Duration};

use jsonrpsee::RpcModule;
use serde_json::{Value, json};
use tether::server::DaemonState;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Calls `method` in-process with by-name `params`; Ok(result) or Err(error object).
pub async fn rpc(
    module: &RpcModule<DaemonState>,
    method: &str,
    params: Value,
) -> Result<Value, Value> {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let (resp, _rx) = module
        .raw_json_request(&req, 16)
        .await
        .expect("request is valid JSON");
    let resp: Value = serde_json::from_str(resp.get()).unwrap();
    match (resp.get("result"), resp.get("error")) {
        (Some(r), None) => Ok(r.clone()),
        (None, Some(e)) => Err(e.clone()),
        _ => panic!("neither result nor error: {resp}"),
    }
}

/// A workspace binary or library of the build this test belongs to (`target/<profile>/NAME`,
/// beside the `tether` binary); panics when it was not built.
pub fn artifact(name: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_tether"))
        .parent()
        .unwrap()
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        p.display()
    );
    p
}

/// Writes a file standing in for `libtether_layer.so` into `dir`: `session.start` wants the
/// library to exist, and these tests never load it.
pub fn layer_stub(dir: &std::path::Path) -> std::path::PathBuf {
    let layer = dir.join("libtether_layer.so");
    std::fs::write(&layer, b"not loaded by these tests").unwrap();
    layer
}

/// What a process of a session needs from `session.start`'s result: the session id and the
/// layer's address and token (from the debuggee env).
pub struct Started {
    pub id: String,
    pub address: String,
    pub token: String,
}

impl Started {
    /// Reads them from a `session.start` result; panics when one is missing.
    pub fn from_result(r: &Value) -> Self {
        let text = |v: &Value| {
            v.as_str()
                .unwrap_or_else(|| panic!("session.start result lacks a field: {r}"))
                .to_owned()
        };
        let env = &r["env"];
        Self {
            id: text(&r["id"]),
            address: text(&env[tether_protocol::session_env::SESSION_ADDR]),
            token: text(&env[tether_protocol::session_env::SESSION_TOKEN]),
        }
    }
}

/// An in-process `session.events` subscription.
pub type Events = jsonrpsee::core::server::Subscription;

/// Subscribes to `session.events` of session `id`.
pub async fn session_events(module: &RpcModule<DaemonState>, id: &str) -> Events {
    module
        .subscribe_unbounded("session.events", jsonrpsee::rpc_params![json!({"id": id})])
        .await
        .unwrap()
}

/// The next event matching `pred`, skipping others (progress, traffic samples); panics, naming
/// `what`, when none comes within `timeout`.
pub async fn next_event(
    events: &mut Events,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(timeout, async {
        loop {
            let (ev, _) = events
                .next::<Value>()
                .await
                .expect("subscription open")
                .unwrap();
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} event in {timeout:?}"))
}

/// Asserts the daemon's error shape and returns `data.kind`.
pub fn error_kind(e: &Value) -> String {
    let code = e["code"].as_i64().unwrap_or_else(|| panic!("no code: {e}"));
    let message = e["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {e}"));
    assert!(!message.contains('\n'), "message is one line: {message:?}");
    assert_eq!(
        message,
        message.trim_end_matches('.'),
        "no final period: {message:?}"
    );
    let first = message.chars().next().unwrap();
    assert!(
        !first.is_uppercase(),
        "message starts lowercase: {message:?}"
    );
    let data = &e["data"];
    assert!(
        data.get("target").is_some() && data.get("hint").is_some(),
        "data has target and hint: {e}"
    );
    let kind = data["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("no data.kind: {e}"))
        .to_owned();
    let _ = code;
    kind
}

/// The API token of [`state`].
pub const TOKEN: &str = "test-token";

/// A state with a fixed token ([`TOKEN`]) and no kubeconfig from the environment.
pub fn state(kubeconfig: Vec<std::path::PathBuf>) -> Arc<DaemonState> {
    DaemonState::new(tether::server::DaemonOptions {
        token: Some(TOKEN.into()),
        kubeconfig: tether::kube::KubeconfigSource::Files(kubeconfig),
        log_file: None,
    })
}

/// A WebSocket JSON-RPC client of the daemon at `url`, presenting `token`.
pub async fn ws_client(
    url: &str,
    token: &str,
) -> Result<jsonrpsee::ws_client::WsClient, jsonrpsee::core::ClientError> {
    let mut h = jsonrpsee::ws_client::HeaderMap::new();
    h.insert(
        "authorization",
        jsonrpsee::ws_client::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    jsonrpsee::ws_client::WsClientBuilder::default()
        .set_headers(h)
        .build(url)
        .await
}

/// Sends one raw HTTP/1.1 request and returns the whole response (the server closes or answers
/// within the timeout).
pub async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(1500), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                // Enough once the headers and a Content-Length body are in.
                if let Some((head, body)) = text.split_once("\r\n\r\n")
                    && let Some(len) = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    && body.len() >= len
                {
                    break;
                }
            }
            Ok(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A WebSocket upgrade request.
pub fn upgrade_request(addr: std::net::SocketAddr, extra_headers: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra_headers}\r\n"
    )
}

/// A minimal WebSocket client speaking raw text frames, to send what a library client never would.
pub struct RawWs {
    stream: TcpStream,
}

impl RawWs {
    /// Connects and upgrades with the given extra headers; panics unless the server says 101.
    pub async fn connect(addr: std::net::SocketAddr, extra_headers: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(upgrade_request(addr, extra_headers).as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        Self { stream }
    }

    /// Sends one masked text frame.
    pub async fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Reads the next text frame (skipping pings).
    pub async fn recv_text(&mut self) -> String {
        loop {
            let mut h = [0u8; 2];
            tokio::time::timeout(Duration::from_secs(5), self.stream.read_exact(&mut h))
                .await
                .expect("frame in time")
                .unwrap();
            let opcode = h[0] & 0x0f;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).await.unwrap();
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).await.unwrap();
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).await.unwrap();
            match opcode {
                1 => return String::from_utf8(payload).unwrap(),
                8 => panic!("server closed the WebSocket"),
                _ => continue,
            }
        }
    }
}
