//! A gRPC channel over a unix socket (containerd and CRI-O listen on one).

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connects a channel to the unix socket `path`.
pub async fn unix_channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_owned();
    // The URI is required by the API but unused: the connector ignores it.
    Endpoint::from_static("http://localhost")
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}

/// Makes one unary call with the prost codec.
pub async fn unary<Req, Resp>(
    socket: &Path,
    method: &'static str,
    req: tonic::Request<Req>,
) -> Result<Resp, CallError>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let channel = unix_channel(socket)
        .await
        .map_err(|e| CallError::Connect(format!("{e:?}")))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| CallError::Connect(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(method);
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.unary(req, path, codec)
        .await
        .map(tonic::Response::into_inner)
        .map_err(CallError::Status)
}

/// A failed call.
#[derive(Debug)]
pub enum CallError {
    /// No connection.
    Connect(String),
    /// The server answered with an error status.
    Status(tonic::Status),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Status(s) => write!(f, "{}: {}", s.code(), s.message()),
        }
    }
}
