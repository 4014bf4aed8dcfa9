//! containerd's tasks service: `containerd.services.tasks.v1.Tasks/Get` in namespace `k8s.io`
//! (where the kubelet's CRI plugin puts pod containers).
//!
//! Messages are hand-written twins of the fields tether needs, from containerd's
//! `api/services/tasks/v1/tasks.proto` and `api/types/task/task.proto`; protobuf skips the
//! fields they leave out.

use std::path::Path;

use super::RuntimeError;
use super::grpc::{CallError, unary};

/// Where containerd listens, in order.
pub const SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
];

/// The containerd namespace of Kubernetes containers.
pub const K8S_NAMESPACE: &str = "k8s.io";

/// The gRPC method.
pub const METHOD: &str = "/containerd.services.tasks.v1.Tasks/Get";

/// `containerd.services.tasks.v1.GetRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetRequest {
    /// The container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Empty for the container's init process.
    #[prost(string, tag = "2")]
    pub exec_id: String,
}

/// `containerd.services.tasks.v1.GetResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetResponse {
    /// The task's process.
    #[prost(message, optional, tag = "1")]
    pub process: Option<Process>,
}

/// `containerd.v1.types.Process` (the fields tether reads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Process {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Process id within the task (empty or the exec id).
    #[prost(string, tag = "2")]
    pub id: String,
    /// Host PID.
    #[prost(uint32, tag = "3")]
    pub pid: u32,
    /// `containerd.v1.types.Status`: 0 unknown, 1 created, 2 running, 3 stopped, 4 paused, 5 pausing.
    #[prost(int32, tag = "4")]
    pub status: i32,
}

/// The request for `id`, with the namespace header containerd requires.
pub fn request(id: &str) -> tonic::Request<GetRequest> {
    let mut req = tonic::Request::new(GetRequest {
        container_id: id.to_owned(),
        exec_id: String::new(),
    });
    req.metadata_mut().insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(K8S_NAMESPACE),
    );
    req
}

/// The pid in an answer.
pub fn pid_of(id: &str, resp: &GetResponse) -> Result<u32, RuntimeError> {
    match &resp.process {
        Some(p) if p.pid != 0 && p.status != 3 => Ok(p.pid),
        Some(_) => Err(RuntimeError::NotRunning {
            runtime: "containerd",
            id: id.to_owned(),
        }),
        None => Err(RuntimeError::BadAnswer {
            runtime: "containerd",
            detail: "GetResponse without a process".into(),
        }),
    }
}

/// Asks containerd at `socket` for the pid of container `id`.
pub async fn pid(socket: &Path, id: &str) -> Result<u32, RuntimeError> {
    match unary::<GetRequest, GetResponse>(socket, METHOD, request(id)).await {
        Ok(resp) => pid_of(id, &resp),
        Err(CallError::Status(s)) if s.code() == tonic::Code::NotFound => {
            Err(RuntimeError::NotFound {
                runtime: "containerd",
                id: id.to_owned(),
            })
        }
        Err(e) => Err(RuntimeError::Call {
            runtime: "containerd",
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
        // field 1 (string) "abc": tag 0x0a, len 3. exec_id empty: omitted (proto3 default).
        let bytes = request("abc").into_inner().encode_to_vec();
        assert_eq!(bytes, [0x0a, 3, b'a', b'b', b'c']);
        let req = request("abc");
        assert_eq!(
            req.metadata().get("containerd-namespace").unwrap(),
            "k8s.io"
        );
    }

    /// A GetResponse as containerd sends it, fields it has and we skip included:
    /// process { container_id="c1", id="c1", pid=4242, status=RUNNING, stdin="/dev/null"(5),
    /// terminal=false(8), exited_at{seconds=0}(9), exit_status=0(10) }.
    fn recorded_response(status: u8, pid: u32) -> Vec<u8> {
        let mut process = vec![0x0a, 2, b'c', b'1', 0x12, 2, b'c', b'1'];
        process.push(0x18); // field 3 varint
        let mut v = pid;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                process.push(b);
                break;
            }
            process.push(b | 0x80);
        }
        process.extend_from_slice(&[0x20, status]); // field 4 varint
        process.extend_from_slice(&[0x2a, 9]); // field 5 string
        process.extend_from_slice(b"/dev/null");
        process.extend_from_slice(&[0x4a, 2, 0x08, 0]); // field 9 message
        let mut out = vec![0x0a, process.len() as u8];
        out.extend_from_slice(&process);
        out
    }

    #[test]
    fn recorded_response_decodes_to_the_pid() {
        let resp = GetResponse::decode(recorded_response(2, 4242).as_slice()).unwrap();
        assert_eq!(pid_of("c1", &resp).unwrap(), 4242);
        let stopped = GetResponse::decode(recorded_response(3, 4242).as_slice()).unwrap();
        assert!(matches!(
            pid_of("c1", &stopped),
            Err(RuntimeError::NotRunning { .. })
        ));
    }

    #[tokio::test]
    async fn asks_a_containerd_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let _server = crate::runtime::fake_grpc::serve(
            &socket,
            std::sync::Arc::new(|parts: &http::request::Parts, msg: &[u8]| {
                assert_eq!(parts.uri.path(), METHOD);
                assert_eq!(parts.headers["containerd-namespace"], "k8s.io");
                assert_eq!(parts.headers["content-type"], "application/grpc");
                let req = GetRequest::decode(msg).unwrap();
                match req.container_id.as_str() {
                    "c1" => (0, recorded_response(2, 4242)),
                    // codes.NotFound, as containerd answers for an unknown id.
                    _ => (5, Vec::new()),
                }
            }),
        );
        assert_eq!(pid(&socket, "c1").await.unwrap(), 4242);
        assert!(matches!(
            pid(&socket, "other").await,
            Err(RuntimeError::NotFound { .. })
        ));
        let missing = dir.path().join("nothing.sock");
        assert!(matches!(
            pid(&missing, "c1").await,
            Err(RuntimeError::Call { .. })
        ));
    }
}
