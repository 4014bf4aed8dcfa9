//! Docker's HTTP API over its unix socket: `GET /containers/{id}/json` -> `State.Pid`.
//!
//! One request per agent start, so a small HTTP/1.1 client (request line, `Connection: close`,
//! content-length or chunked body) is enough and keeps a full HTTP stack out of this path.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::RuntimeError;

/// Where Docker listens, in order.
pub const SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];

/// Largest answer read (inspect documents are a few KiB).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// The request bytes for container `id`.
pub fn request(id: &str) -> Result<Vec<u8>, RuntimeError> {
    // Ids and names are [a-zA-Z0-9_.-]; anything else would break the request line.
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(RuntimeError::BadAnswer {
            runtime: "Docker",
            detail: format!("{id:?} is not a container id"),
        });
    }
    Ok(format!(
        "GET /containers/{id}/json HTTP/1.1\r\nHost: docker\r\nUser-Agent: tether-agent\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .into_bytes())
}

/// Splits an HTTP/1.1 response into status and decoded body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse::<usize>().map_err(|_| "bad content-length")?);
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n)
            .ok_or("body shorter than content-length")?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).ok_or("truncated chunk")?;
    }
}

/// Reads the pid from a response.
pub fn pid_of(id: &str, status: u16, body: &[u8]) -> Result<u32, RuntimeError> {
    const RUNTIME: &str = "Docker";
    match status {
        200 => {}
        404 => {
            return Err(RuntimeError::NotFound {
                runtime: RUNTIME,
                id: id.to_owned(),
            });
        }
        other => {
            return Err(RuntimeError::BadAnswer {
                runtime: RUNTIME,
                detail: format!("HTTP {other}: {}", String::from_utf8_lossy(body).trim()),
            });
        }
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| RuntimeError::BadAnswer {
            runtime: RUNTIME,
            detail: format!("inspect is not JSON: {e}"),
        })?;
    let state = v.get("State").ok_or_else(|| RuntimeError::BadAnswer {
        runtime: RUNTIME,
        detail: "inspect has no State".into(),
    })?;
    let pid = state
        .get("Pid")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let running = state
        .get("Running")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(pid > 0);
    if pid == 0 || !running || pid > u32::MAX as u64 {
        return Err(RuntimeError::NotRunning {
            runtime: RUNTIME,
            id: id.to_owned(),
        });
    }
    Ok(pid as u32)
}

/// Asks Docker at `socket` for the pid of container `id`.
pub async fn pid(socket: &Path, id: &str) -> Result<u32, RuntimeError> {
    let call = |detail: String| RuntimeError::Call {
        runtime: "Docker",
        socket: socket.to_owned(),
        detail,
    };
    let req = request(id)?;
    let exchange = async {
        let mut s = tokio::net::UnixStream::connect(socket).await?;
        s.write_all(&req).await?;
        let mut raw = Vec::new();
        (&mut s)
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut raw)
            .await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .map_err(|_| call("timed out".into()))?
        .map_err(|e| call(e.to_string()))?;
    let (status, body) = parse_response(&raw).map_err(call)?;
    pid_of(id, status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real `GET /containers/{id}/json` answer (Docker Engine API 1.43).
    const INSPECT: &str = r#"{"Id":"8dfafdbc3a40","Created":"2024-05-02T10:00:00.000000000Z","Path":"/app","Args":[],"State":{"Status":"running","Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":27182,"ExitCode":0,"Error":"","StartedAt":"2024-05-02T10:00:01.000000000Z","FinishedAt":"0001-01-01T00:00:00Z"},"Name":"/k8s_app_web-0_shop_1234_0"}"#;

    #[test]
    fn request_line() {
        let req = String::from_utf8(request("8dfafdbc3a40").unwrap()).unwrap();
        assert!(
            req.starts_with("GET /containers/8dfafdbc3a40/json HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("\r\nHost: docker\r\n"));
        assert!(req.ends_with("Connection: close\r\n\r\n"));
        assert!(request("../../x").is_err());
        assert!(request("a b").is_err());
    }

    #[test]
    fn chunked_and_sized_answers() {
        let body = INSPECT.as_bytes();
        let (head, tail) = body.split_at(50);
        let mut chunked = b"HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for part in [head, tail] {
            chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            chunked.extend_from_slice(part);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let (status, got) = parse_response(&chunked).unwrap();
        assert_eq!(status, 200);
        assert_eq!(pid_of("8dfafdbc3a40", status, &got).unwrap(), 27182);

        let mut sized =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        sized.extend_from_slice(body);
        let (status, got) = parse_response(&sized).unwrap();
        assert_eq!(pid_of("x", status, &got).unwrap(), 27182);

        let missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 45\r\n\r\n{\"message\":\"No such container: 8dfafdbc3a40\"}";
        let (status, got) = parse_response(missing).unwrap();
        assert!(matches!(
            pid_of("x", status, &got),
            Err(RuntimeError::NotFound { .. })
        ));

        let stopped = INSPECT
            .replace("\"Running\":true", "\"Running\":false")
            .replace("27182", "0");
        assert!(matches!(
            pid_of("x", 200, stopped.as_bytes()),
            Err(RuntimeError::NotRunning { .. })
        ));
    }

    #[tokio::test]
    async fn talks_to_a_unix_socket_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{INSPECT}",
                INSPECT.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(req).unwrap()
        });
        assert_eq!(pid(&path, "8dfafdbc3a40").await.unwrap(), 27182);
        let req = server.await.unwrap();
        assert!(
            req.starts_with("GET /containers/8dfafdbc3a40/json "),
            "{req}"
        );
    }
}
