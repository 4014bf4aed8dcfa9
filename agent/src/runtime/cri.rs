//! CRI `runtime.v1.RuntimeService/ContainerStatus` with `verbose: true`. CRI-O (and containerd's
//! CRI plugin) put a JSON document in `info["info"]` whose `pid` is the container's host PID.
//!
//! Messages are hand-written twins of the fields tether needs, from
//! `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`.

use std::collections::HashMap;
use std::path::Path;

use super::RuntimeError;
use super::grpc::{CallError, unary};

/// Where CRI-O listens, in order.
pub const CRIO_SOCKETS: &[&str] = &["/var/run/crio/crio.sock", "/run/crio/crio.sock"];

/// The gRPC method.
pub const METHOD: &str = "/runtime.v1.RuntimeService/ContainerStatus";

/// `runtime.v1.ContainerStatusRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusRequest {
    /// The container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Ask for the runtime-specific `info` map.
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// `runtime.v1.ContainerStatusResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusResponse {
    /// The status.
    #[prost(message, optional, tag = "1")]
    pub status: Option<ContainerStatus>,
    /// Verbose, runtime-specific info; `info` holds JSON.
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

/// `runtime.v1.ContainerStatus` (the fields tether reads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatus {
    /// Container id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// `runtime.v1.ContainerState`: 0 created, 1 running, 2 exited, 3 unknown.
    #[prost(int32, tag = "3")]
    pub state: i32,
}

/// The request for `id`.
pub fn request(id: &str) -> tonic::Request<ContainerStatusRequest> {
    tonic::Request::new(ContainerStatusRequest {
        container_id: id.to_owned(),
        verbose: true,
    })
}

/// The pid in an answer.
pub fn pid_of(
    runtime: &'static str,
    id: &str,
    resp: &ContainerStatusResponse,
) -> Result<u32, RuntimeError> {
    if let Some(st) = &resp.status
        && st.state != 1
    {
        return Err(RuntimeError::NotRunning {
            runtime,
            id: id.to_owned(),
        });
    }
    let info = resp
        .info
        .get("info")
        .ok_or_else(|| RuntimeError::BadAnswer {
            runtime,
            detail: "verbose status without info[\"info\"]".into(),
        })?;
    let v: serde_json::Value = serde_json::from_str(info).map_err(|e| RuntimeError::BadAnswer {
        runtime,
        detail: format!("info[\"info\"] is not JSON: {e}"),
    })?;
    match v.get("pid").and_then(serde_json::Value::as_u64) {
        Some(pid) if pid > 0 && pid <= u32::MAX as u64 => Ok(pid as u32),
        Some(_) => Err(RuntimeError::NotRunning {
            runtime,
            id: id.to_owned(),
        }),
        None => Err(RuntimeError::BadAnswer {
            runtime,
            detail: "info[\"info\"] has no pid".into(),
        }),
    }
}

/// Asks the CRI runtime at `socket` for the pid of container `id`.
pub async fn pid(socket: &Path, id: &str) -> Result<u32, RuntimeError> {
    const RUNTIME: &str = "CRI-O";
    match unary::<ContainerStatusRequest, ContainerStatusResponse>(socket, METHOD, request(id))
        .await
    {
        Ok(resp) => pid_of(RUNTIME, id, &resp),
        Err(CallError::Status(s)) if s.code() == tonic::Code::NotFound => {
            Err(RuntimeError::NotFound {
                runtime: RUNTIME,
                id: id.to_owned(),
            })
        }
        Err(e) => Err(RuntimeError::Call {
            runtime: RUNTIME,
            socket: socket.to_owned(),
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn request_bytes_match_the_proto() {
        let bytes = request("ab").into_inner().encode_to_vec();
        // field 1 string "ab", field 2 varint true.
        assert_eq!(bytes, [0x0a, 2, b'a', b'b', 0x10, 1]);
    }

    fn entry(key: &str, value: &str) -> Vec<u8> {
        let mut e = vec![0x0a, key.len() as u8];
        e.extend_from_slice(key.as_bytes());
        e.push(0x12);
        // Two-byte varint length: the JSON is longer than 127 bytes.
        let n = value.len();
        e.extend_from_slice(&[(n as u8 & 0x7f) | 0x80, (n >> 7) as u8]);
        e.extend_from_slice(value.as_bytes());
        let mut out = vec![0x12];
        let m = e.len();
        out.extend_from_slice(&[(m as u8 & 0x7f) | 0x80, (m >> 7) as u8]);
        out.extend(e);
        out
    }

    /// A verbose ContainerStatusResponse as CRI-O sends it: status { id="c9", metadata{..}(2),
    /// state=RUNNING, created_at(4) } and info { "info": <CRI-O's JSON> }.
    fn recorded_response(state: u8) -> Vec<u8> {
        let mut status = vec![0x0a, 2, b'c', b'9'];
        status.extend_from_slice(&[0x12, 6, 0x0a, 4, b'a', b'p', b'p', b'1']); // metadata.name
        status.extend_from_slice(&[0x18, state]);
        status.extend_from_slice(&[0x20, 0x80, 0x80, 0x04]); // created_at varint
        let mut out = vec![0x0a, status.len() as u8];
        out.extend(status);
        let json = r#"{"sandboxID":"5f1c0a","pid":31337,"runtimeSpec":{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"args":["/app"],"cwd":"/"}},"privileged":false}"#;
        out.extend(entry("info", json));
        out
    }

    #[test]
    fn recorded_response_decodes_to_the_pid() {
        let resp = ContainerStatusResponse::decode(recorded_response(1).as_slice()).unwrap();
        assert_eq!(resp.status.as_ref().unwrap().id, "c9");
        assert_eq!(pid_of("CRI-O", "c9", &resp).unwrap(), 31337);
        let exited = ContainerStatusResponse::decode(recorded_response(2).as_slice()).unwrap();
        assert!(matches!(
            pid_of("CRI-O", "c9", &exited),
            Err(RuntimeError::NotRunning { .. })
        ));
        let empty = ContainerStatusResponse::default();
        assert!(matches!(
            pid_of("CRI-O", "c9", &empty),
            Err(RuntimeError::BadAnswer { .. })
        ));
    }

    #[tokio::test]
    async fn asks_a_crio_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("crio.sock");
        let _server = crate::runtime::fake_grpc::serve(
            &socket,
            std::sync::Arc::new(|parts: &http::request::Parts, msg: &[u8]| {
                assert_eq!(parts.uri.path(), METHOD);
                let req = ContainerStatusRequest::decode(msg).unwrap();
                assert!(req.verbose, "the pid is only in the verbose info");
                match req.container_id.as_str() {
                    "c9" => (0, recorded_response(1)),
                    _ => (5, Vec::new()),
                }
            }),
        );
        assert_eq!(pid(&socket, "c9").await.unwrap(), 31337);
        assert!(matches!(
            pid(&socket, "other").await,
            Err(RuntimeError::NotFound { .. })
        ));
    }
}
