//! A gRPC server on a unix socket for tests: no container runtime runs here, so the adapters'
//! whole client path (unix connector, HTTP/2, method path, metadata, framing, prost) is exercised
//! against this stand-in, which checks the request and answers recorded bytes.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the handler gets: the request head and the protobuf message (gRPC prefix removed).
pub type Handler = dyn Fn(&http::request::Parts, &[u8]) -> (i32, Vec<u8>) + Send + Sync;

/// Serves unary calls on `path` until the task is dropped. The handler returns the grpc-status and
/// the protobuf answer.
pub fn serve(path: &Path, handler: Arc<Handler>) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(path).expect("bind fake runtime socket");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            // 1 byte compressed flag + 4 bytes length, then the message.
                            let msg = body.get(5..).unwrap_or_default();
                            let (status, answer) = handler(&parts, msg);
                            let mut framed = vec![0u8];
                            framed.extend_from_slice(&(answer.len() as u32).to_be_bytes());
                            framed.extend_from_slice(&answer);
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", status.to_string().parse().unwrap());
                            let frames: Vec<Result<Frame<Bytes>, Infallible>> = if status == 0 {
                                vec![
                                    Ok(Frame::data(Bytes::from(framed))),
                                    Ok(Frame::trailers(trailers)),
                                ]
                            } else {
                                vec![Ok(Frame::trailers(trailers))]
                            };
                            let body = StreamBody::new(futures::stream::iter(frames));
                            let resp = http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
