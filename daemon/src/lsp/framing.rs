//! A guard in front of the LSP transport. `tower-lsp-server` stops reading after the first
//! message it cannot decode (malformed JSON, or JSON that is not JSON-RPC): one bad message from a
//! client would end the server. This guard reads the `Content-Length` frames itself, forwards the
//! valid ones, and answers the others with a JSON-RPC error (`-32700` parse error, `-32600`
//! invalid request), written between the server's own frames.

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    sync::mpsc,
};
use tower_lsp_server::jsonrpc::{Request, Response};

/// Largest message accepted; larger ones are skipped (a config file is far smaller).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One frame read from the client.
enum Frame {
    /// A body with its declared length.
    Body(Vec<u8>),
    /// Headers without a usable `Content-Length`.
    BadHeaders,
}

/// Reads the next frame; `None` at the end of input.
async fn read_frame<R: AsyncRead + Unpin>(input: &mut BufReader<R>) -> Option<Frame> {
    let mut len: Option<usize> = None;
    let mut saw_header = false;
    loop {
        let mut line = String::new();
        if input.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if !saw_header {
                continue;
            }
            break;
        }
        saw_header = true;
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            len = value.trim().parse().ok();
        }
    }
    let Some(len) = len.filter(|l| *l <= MAX_BODY) else {
        return Some(Frame::BadHeaders);
    };
    let mut body = vec![0; len];
    input.read_exact(&mut body).await.ok()?;
    Some(Frame::Body(body))
}

/// The error answer to a body the server would choke on, or `None` when it is a valid message.
fn reject(body: &[u8]) -> Option<Value> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Some(error(Value::Null, -32700, "parse error")),
    };
    if serde_json::from_value::<Request>(value.clone()).is_ok()
        || serde_json::from_value::<Response>(value.clone()).is_ok()
    {
        return None;
    }
    let id = match value.get("id") {
        Some(id @ (Value::Number(_) | Value::String(_))) => id.clone(),
        _ => Value::Null,
    };
    Some(error(id, -32600, "invalid request"))
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Copies frames from `client` to `server`, answering bad ones through `errors`.
pub async fn filter_input<R, W>(client: R, mut server: W, errors: mpsc::UnboundedSender<Value>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BufReader::new(client);
    while let Some(f) = read_frame(&mut input).await {
        match f {
            Frame::Body(body) => match reject(&body) {
                None => {
                    if server.write_all(&frame(&body)).await.is_err() {
                        return;
                    }
                    let _ = server.flush().await;
                }
                Some(answer) => {
                    tracing::warn!("dropped a malformed message: {answer}");
                    let _ = errors.send(answer);
                }
            },
            Frame::BadHeaders => {
                tracing::warn!("dropped a message without a valid Content-Length");
                let _ = errors.send(error(Value::Null, -32700, "parse error"));
            }
        }
    }
    // End of input: the server sees it too and stops.
    let _ = server.shutdown().await;
}

/// Copies the server's frames to `client` whole, with the guard's error answers in between.
pub async fn merge_output<R, W>(
    server: R,
    mut client: W,
    mut errors: mpsc::UnboundedReceiver<Value>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut output = BufReader::new(server);
    let mut errors_open = true;
    loop {
        let bytes = tokio::select! {
            f = read_frame(&mut output) => match f {
                Some(Frame::Body(body)) => frame(&body),
                Some(Frame::BadHeaders) => continue,
                None => break,
            },
            e = errors.recv(), if errors_open => match e {
                Some(v) => frame(v.to_string().as_bytes()),
                None => {
                    errors_open = false;
                    continue;
                }
            },
        };
        if client.write_all(&bytes).await.is_err() || client.flush().await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bodies_get_error_answers() {
        assert_eq!(reject(br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#), None);
        assert_eq!(reject(br#"{"jsonrpc":"2.0","method":"exit"}"#), None);
        assert_eq!(reject(br#"{"jsonrpc":"2.0","id":1,"result":null}"#), None);
        assert_eq!(reject(b"{nope").unwrap()["error"]["code"], json!(-32700));
        let r = reject(br#"{"id": 7, "params": 1}"#).unwrap();
        assert_eq!(
            (r["id"].clone(), r["error"]["code"].clone()),
            (json!(7), json!(-32600))
        );
    }
}
