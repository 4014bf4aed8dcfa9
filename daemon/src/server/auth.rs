//! HTTP middleware in front of the JSON-RPC server: who may talk to the daemon.
//!
//! Rules, checked on every HTTP request and every WebSocket upgrade, in this order:
//! 1. A request with an `Origin` header is refused with 403. Browsers always send one on
//!    cross-origin requests and WebSocket upgrades; the frontends (VS Code's extension host on
//!    Node, IntelliJ's JVM HTTP client) and the CLI never do, so this closes the door to web pages
//!    probing localhost.
//! 2. The token must come as `Authorization: Bearer <token>`; otherwise 401. A `?token=` query is
//!    deliberately not accepted: every client that is allowed in can set headers (only browsers
//!    cannot, and they are refused anyway), and URLs end up in logs.
//!
//! The `Host` header is also checked (DNS rebinding) by jsonrpsee's host filter, set up in
//! [`super::serve`].

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, StatusCode, header};
use jsonrpsee::server::{HttpBody, HttpResponse};
use tower::{Layer, Service};

/// Adds the Origin and token checks to a service.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    token: Arc<str>,
}

impl AuthLayer {
    /// Checks requests against `token`.
    pub fn new(token: &str) -> Self {
        Self {
            token: token.into(),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            token: self.token.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    token: Arc<str>,
}

/// Why a request was refused before reaching JSON-RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It carries an `Origin` header.
    BrowserOrigin,
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// The token does not match.
    WrongToken,
}

impl Refusal {
    fn response(self) -> HttpResponse {
        let (status, body) = match self {
            Refusal::BrowserOrigin => (
                StatusCode::FORBIDDEN,
                "tether daemon: requests from browsers (with an Origin header) are refused\n",
            ),
            Refusal::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "tether daemon: missing token\n  help: send `Authorization: Bearer <token>` with the token from the discovery file\n",
            ),
            Refusal::WrongToken => (
                StatusCode::UNAUTHORIZED,
                "tether daemon: wrong token\n  help: read the token again from the discovery file; the daemon may have restarted\n",
            ),
        };
        let mut response = HttpResponse::new(HttpBody::from(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Decides whether a request may pass. Pure, so it is unit-tested without a server.
pub fn check<B>(request: &Request<B>, token: &str) -> Result<(), Refusal> {
    if request.headers().contains_key(header::ORIGIN) {
        return Err(Refusal::BrowserOrigin);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(Refusal::MissingToken)?;
    if constant_time_eq(presented.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::WrongToken)
    }
}

/// Compares without an early exit, so response timing does not reveal a token prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = HttpResponse>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match check(&request, &self.token) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(refusal) => {
                tracing::warn!(?refusal, uri = %request.uri(), "refused a request");
                Box::pin(std::future::ready(Ok(refusal.response())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn token_and_origin_rules() {
        assert_eq!(
            check(&request(&[("authorization", "Bearer abc")]), "abc"),
            Ok(())
        );
        assert_eq!(check(&request(&[]), "abc"), Err(Refusal::MissingToken));
        assert_eq!(
            check(&request(&[("authorization", "Basic abc")]), "abc"),
            Err(Refusal::MissingToken)
        );
        assert_eq!(
            check(&request(&[("authorization", "Bearer abd")]), "abc"),
            Err(Refusal::WrongToken)
        );
        assert_eq!(
            check(&request(&[("authorization", "Bearer ab")]), "abc"),
            Err(Refusal::WrongToken)
        );
        // The Origin rule wins even with the right token.
        assert_eq!(
            check(
                &request(&[
                    ("authorization", "Bearer abc"),
                    ("origin", "http://localhost:3000")
                ]),
                "abc"
            ),
            Err(Refusal::BrowserOrigin)
        );
    }

    #[test]
    fn query_token_is_not_accepted() {
        let r = Request::builder().uri("/?token=abc").body(()).unwrap();
        assert_eq!(check(&r, "abc"), Err(Refusal::MissingToken));
    }
}
