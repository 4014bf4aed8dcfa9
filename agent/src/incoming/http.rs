//! Filtered steal: serves a redirected HTTP/1.x or HTTP/2 (prior knowledge) connection request by
//! request. Each request is matched against the port's filters when it arrives, so one keep-alive
//! connection can carry both stolen requests (answered by a session) and passed-through ones
//! (proxied to the original server over one upstream connection kept per client connection).

use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, UPGRADE};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1 as client1, http2 as client2};
use hyper::server::conn::{http1 as server1, http2 as server2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tether_protocol::agent::AgentMessage;
use tether_protocol::incoming::{Header, HttpRequest, HttpResponse, HttpVersion, IncomingEvent};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, oneshot};

use super::conn::{ConnInfo, Tee, connect_original};
use super::{Inner, Pending, PortSubs, SessionTx};

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// A stolen request goes to the session in one frame: its body must leave room for the rest.
const MAX_STOLEN_BODY: usize = tether_protocol::codec::MAX_FRAME_LEN - 1024 * 1024;

/// The connection to the original server that passed-through requests of one client connection
/// share.
enum Upstream {
    H1(client1::SendRequest<Incoming>),
    H2(client2::SendRequest<Incoming>),
}

/// One client connection on a filtered port.
struct HttpConn {
    inner: Arc<Inner>,
    info: ConnInfo,
    live: Arc<RwLock<PortSubs>>,
    h2: bool,
    upstream: Mutex<Option<Upstream>>,
}

/// Serves `client` as HTTP/2 when `h2`, else as HTTP/1.x, until it closes.
pub(super) async fn serve(
    inner: Arc<Inner>,
    info: ConnInfo,
    live: Arc<RwLock<PortSubs>>,
    client: Tee<TcpStream>,
    h2: bool,
) {
    let conn = Arc::new(HttpConn {
        inner,
        info,
        live,
        h2,
        upstream: Mutex::new(None),
    });
    let svc = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(conn.handle(req).await) }
    });
    let io = TokioIo::new(client);
    let res = if h2 {
        server2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await
    } else {
        server1::Builder::new()
            .preserve_header_case(true)
            .serve_connection(io, svc)
            .with_upgrades()
            .await
    };
    if let Err(e) = res {
        tracing::debug!(port = info.port, client = %info.client, "http connection ended: {e}");
    }
}

fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("tether-agent: {text}\n")))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

/// Removes a pending request when its client goes away before the session answers.
struct PendingGuard<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .pending
            .lock()
            .expect("pending lock")
            .remove(&self.id);
    }
}

/// Headers that describe one hop, not the message: never copied from a session's response.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

impl HttpConn {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        // The protocol carries whole requests and responses, not upgraded streams: an upgrade
        // (WebSocket) always goes to the original server.
        let upgrade = req.version() != Version::HTTP_2 && req.headers().contains_key(UPGRADE);
        let matched = if upgrade {
            None
        } else {
            let subs = self.live.read().expect("subscribers lock");
            subs.filtered
                .iter()
                .find(|(_, m)| m.matches(req.method(), req.uri(), req.headers()))
                .map(|(s, _)| s.clone())
        };
        match matched {
            Some(session) => self.steal(session, req).await,
            None => self.forward(req).await,
        }
    }

    /// Sends the request to `session` and answers with its response.
    async fn steal(&self, session: SessionTx, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = match http_body_util::Limited::new(body, MAX_STOLEN_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return text_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("a stolen request's body is limited to {MAX_STOLEN_BODY} bytes"),
                );
            }
            Err(e) => return text_response(StatusCode::BAD_REQUEST, &format!("body: {e}")),
        };
        let id = self.inner.next_request_id();
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().expect("pending lock").insert(
            id,
            Pending {
                session: session.session,
                port: self.info.port,
                tx,
            },
        );
        let _guard = PendingGuard {
            inner: &self.inner,
            id,
        };
        let mut headers: Vec<Header> = Vec::with_capacity(parts.headers.len() + 1);
        if !parts.headers.contains_key(HOST)
            && let Some(authority) = parts.uri.authority()
        {
            // HTTP/2 carries the host as :authority; the app expects a Host header.
            headers.push(Header {
                name: "host".into(),
                value: authority.as_str().as_bytes().into(),
            });
        }
        headers.extend(parts.headers.iter().map(|(n, v)| Header {
            name: n.as_str().to_owned(),
            value: v.as_bytes().into(),
        }));
        let version = match parts.version {
            Version::HTTP_10 | Version::HTTP_09 => HttpVersion::Http10,
            Version::HTTP_2 => HttpVersion::Http2,
            _ => HttpVersion::Http11,
        };
        let request = HttpRequest {
            id,
            port: self.info.port,
            client: self.info.client,
            method: parts.method.as_str().to_owned(),
            uri: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
            version,
            headers,
            body: body.to_vec().into(),
        };
        if !session
            .send(AgentMessage::Incoming(IncomingEvent::Request(request)))
            .await
        {
            return text_response(StatusCode::BAD_GATEWAY, "the stealing session is gone");
        }
        match rx.await {
            Ok(resp) => build_response(resp, parts.method == Method::HEAD),
            Err(_) => text_response(
                StatusCode::BAD_GATEWAY,
                "the stealing session went away before answering",
            ),
        }
    }

    /// Passes the request to the original server.
    async fn forward(&self, mut req: Request<Incoming>) -> Response<Body> {
        let client_upgrade = (req.version() != Version::HTTP_2
            && req.headers().contains_key(UPGRADE))
        .then(|| hyper::upgrade::on(&mut req));
        match self.send_upstream(req).await {
            Ok(mut resp) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_upgrade) = client_upgrade
                {
                    let server_upgrade = hyper::upgrade::on(&mut resp);
                    tokio::spawn(async move {
                        if let (Ok(c), Ok(s)) = tokio::join!(client_upgrade, server_upgrade) {
                            let _ = tokio::io::copy_bidirectional(
                                &mut TokioIo::new(c),
                                &mut TokioIo::new(s),
                            )
                            .await;
                        }
                    });
                }
                resp.map(|b| b.boxed_unsync())
            }
            Err(e) => {
                tracing::warn!(port = self.info.port, server = %self.info.server, "pass-through failed: {e}");
                text_response(
                    StatusCode::BAD_GATEWAY,
                    &format!("cannot reach the original server: {e}"),
                )
            }
        }
    }

    async fn send_upstream(&self, req: Request<Incoming>) -> Result<Response<Incoming>, String> {
        if self.h2 {
            let mut sender = {
                let mut slot = self.upstream.lock().await;
                match &*slot {
                    Some(Upstream::H2(s)) if !s.is_closed() => s.clone(),
                    _ => {
                        let s = self.connect_h2().await?;
                        *slot = Some(Upstream::H2(s.clone()));
                        s
                    }
                }
            };
            return sender.send_request(req).await.map_err(|e| e.to_string());
        }
        // HTTP/1: the client sends one request at a time, so one upstream connection is enough.
        let mut slot = self.upstream.lock().await;
        let reusable = match slot.take() {
            Some(Upstream::H1(mut s)) => s.ready().await.is_ok().then_some(s),
            _ => None,
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => self.connect_h1().await?,
        };
        let sent = sender.send_request(req);
        *slot = Some(Upstream::H1(sender));
        drop(slot);
        sent.await.map_err(|e| e.to_string())
    }

    async fn connect_h1(&self) -> Result<client1::SendRequest<Incoming>, String> {
        let stream = connect_original(self.inner.target.netns(), self.info.server)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = client1::Builder::new()
            .preserve_header_case(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    async fn connect_h2(&self) -> Result<client2::SendRequest<Incoming>, String> {
        let stream = connect_original(self.inner.target.netns(), self.info.server)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = client2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// The client's response from a session's [`HttpResponse`]. Framing headers are recomputed from
/// the body the session sent (except a HEAD answer's Content-Length, which describes a body not
/// sent).
fn build_response(resp: HttpResponse, head: bool) -> Response<Body> {
    let Ok(status) = StatusCode::from_u16(resp.status) else {
        return text_response(
            StatusCode::BAD_GATEWAY,
            &format!("the session answered with invalid status {}", resp.status),
        );
    };
    let mut out = Response::new(
        Full::new(Bytes::from(resp.body.0))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *out.status_mut() = status;
    for h in resp.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value.as_slice()),
        ) else {
            tracing::debug!(
                header = h.name,
                "dropped an invalid header of a session's response"
            );
            continue;
        };
        if is_hop_by_hop(&name) || (name == CONTENT_LENGTH && !head) {
            continue;
        }
        out.headers_mut().append(name, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::Payload;

    #[test]
    fn session_responses_lose_framing_headers() {
        let resp = HttpResponse {
            id: 1,
            status: 201,
            headers: vec![
                Header {
                    name: "Content-Length".into(),
                    value: b"99".as_slice().into(),
                },
                Header {
                    name: "Transfer-Encoding".into(),
                    value: b"chunked".as_slice().into(),
                },
                Header {
                    name: "X-Ok".into(),
                    value: b"yes".as_slice().into(),
                },
                Header {
                    name: "bad name".into(),
                    value: b"x".as_slice().into(),
                },
            ],
            body: Payload(b"hello".to_vec()),
        };
        let out = build_response(resp.clone(), false);
        assert_eq!(out.status(), StatusCode::CREATED);
        assert_eq!(out.headers().len(), 1, "{:?}", out.headers());
        assert_eq!(out.headers()["x-ok"], "yes");
        let head = build_response(resp, true);
        assert_eq!(head.headers()["content-length"], "99");
        let bad = build_response(
            HttpResponse {
                id: 1,
                status: 1000,
                headers: vec![],
                body: Payload::default(),
            },
            false,
        );
        assert_eq!(bad.status(), StatusCode::BAD_GATEWAY);
    }
}
