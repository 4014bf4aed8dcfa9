//! The API over a real WebSocket server: token, Origin and Host checks, bad input, subscriptions,
//! concurrency.

mod support;

use std::time::Duration;

use jsonrpsee::{
    core::client::{ClientT, SubscriptionClientT},
    rpc_params,
    ws_client::WsClientBuilder,
};
use serde_json::{Value, json};
use support::{RawWs, raw_http, upgrade_request, ws_client};
use tether::server::{
    self, RunningServer,
    api::{SessionEvent, SessionInfo, SessionState},
    sessions::unix_now,
};

async fn start() -> (std::sync::Arc<server::DaemonState>, RunningServer) {
    let state = support::state(vec![]);
    let running = server::serve(state.clone(), 0).await.unwrap();
    (state, running)
}

#[tokio::test]
async fn token_is_required() {
    let (_state, srv) = start().await;
    let c = ws_client(&srv.url, "test-token").await.unwrap();
    let info: Value = c.request("daemon.info", rpc_params![]).await.unwrap();
    assert_eq!(info["address"], json!(srv.url));

    assert!(
        ws_client(&srv.url, "wrong").await.is_err(),
        "wrong token refused"
    );
    assert!(
        WsClientBuilder::default().build(&srv.url).await.is_err(),
        "missing token refused"
    );

    let r = raw_http(srv.addr, &upgrade_request(srv.addr, "")).await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = raw_http(
        srv.addr,
        &upgrade_request(srv.addr, "Authorization: Bearer nope\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(r.contains("wrong token"), "{r}");
    // The query form is not accepted.
    let r = raw_http(
        srv.addr,
        &upgrade_request(srv.addr, "").replacen("GET / ", "GET /?token=test-token ", 1),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    // Plain HTTP POST needs the token too.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"daemon.info"}"#;
    let post = |auth: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            srv.addr,
            body.len()
        )
    };
    assert!(
        raw_http(srv.addr, &post(""))
            .await
            .starts_with("HTTP/1.1 401")
    );
    let ok = raw_http(srv.addr, &post("Authorization: Bearer test-token\r\n")).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\"pid\""), "{ok}");
}

#[tokio::test]
async fn browser_origin_and_foreign_host_are_refused() {
    let (_state, srv) = start().await;
    for origin in ["http://localhost:3000", "null", "vscode-webview://abc"] {
        let r = raw_http(
            srv.addr,
            &upgrade_request(
                srv.addr,
                &format!("Authorization: Bearer test-token\r\nOrigin: {origin}\r\n"),
            ),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 403"), "origin {origin}: {r}");
    }
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    let req = upgrade_request(srv.addr, "Authorization: Bearer test-token\r\n")
        .replace(&format!("Host: {}", srv.addr), "Host: evil.example");
    let r = raw_http(srv.addr, &req).await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    // Without Origin, with the token, the upgrade works.
    let _ws = RawWs::connect(srv.addr, "Authorization: Bearer test-token\r\n").await;
}

#[tokio::test]
async fn malformed_input_gets_errors_and_the_server_lives_on() {
    let (_state, srv) = start().await;
    let mut ws = RawWs::connect(srv.addr, "Authorization: Bearer test-token\r\n").await;
    ws.send_text("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ")
        .await;
    let r: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert_eq!(r["error"]["code"], json!(-32700), "{r}");
    ws.send_text("[1, 2]").await;
    let r: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert!(r.is_array() || r["error"].is_object(), "{r}");
    ws.send_text(r#"{"jsonrpc":"2.0","id":7,"method":"no.such"}"#)
        .await;
    let r: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].clone()),
        (json!(7), json!(-32601)),
        "{r}"
    );
    ws.send_text(r#"{"jsonrpc":"2.0","id":8,"method":"session.stop","params":{"id":5}}"#)
        .await;
    let r: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert_eq!(r["error"]["code"], json!(-32602), "{r}");
    assert_eq!(r["error"]["data"]["kind"], json!("invalid_params"), "{r}");
    // Still serving on the same connection.
    ws.send_text(r#"{"jsonrpc":"2.0","id":9,"method":"daemon.info"}"#)
        .await;
    let r: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert_eq!(r["result"]["pid"], json!(std::process::id()), "{r}");

    // Over HTTP POST as well.
    let body = "{not json";
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer test-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        srv.addr,
        body.len()
    );
    let r = raw_http(srv.addr, &req).await;
    assert!(r.contains("-32700"), "{r}");
}

#[tokio::test]
async fn error_objects_have_code_message_and_data() {
    let (_state, srv) = start().await;
    let c = ws_client(&srv.url, "test-token").await.unwrap();
    let e = c
        .request::<Value, _>("session.stop", rpc_params![json!({"id": "s-x"})])
        .await
        .unwrap_err();
    let jsonrpsee::core::ClientError::Call(obj) = e else {
        panic!("{e}")
    };
    assert_eq!(obj.code(), -32030);
    assert_eq!(obj.message(), "no session `s-x`");
    let data = tether::server::error::error_data(&obj).unwrap();
    assert_eq!(data.target.as_deref(), Some("s-x"));
    assert!(data.hint.is_some());
}

#[tokio::test]
async fn concurrent_clients() {
    let (_state, srv) = start().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = srv.url.clone();
        tasks.push(tokio::spawn(async move {
            let c = ws_client(&url, "test-token").await.unwrap();
            let calls = (0..25).map(|j| {
                let c = &c;
                async move {
                    if (i + j) % 2 == 0 {
                        let v: Value = c.request("daemon.info", rpc_params![]).await.unwrap();
                        assert_eq!(v["pid"], json!(std::process::id()));
                    } else {
                        let v: Value = c.request("session.list", rpc_params![]).await.unwrap();
                        assert_eq!(v, json!({"sessions": []}));
                    }
                }
            });
            futures::future::join_all(calls).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn session_events_subscription_over_websocket() {
    let (state, srv) = start().await;
    let entry = state.sessions.insert(SessionInfo {
        id: "s-ws".into(),
        target: "deployment/api".into(),
        namespace: None,
        context: None,
        state: SessionState::Starting,
        started_at: unix_now(),
        layers: 0,
        program: None,
        ..Default::default()
    });
    let c = ws_client(&srv.url, "test-token").await.unwrap();
    let mut sub = c
        .subscribe::<Value, _>(
            "session.events",
            rpc_params![json!({"id": "s-ws"})],
            "session.unwatch_events",
        )
        .await
        .unwrap();
    entry.emit(SessionEvent::LayerConnected {
        pid: 42,
        exe: Some("/bin/app".into()),
        ppid: Some(1),
        argv: vec!["app".into()],
    });
    entry.emit(SessionEvent::Traffic {
        bytes_in: 10,
        bytes_out: 20,
        connections: 1,
        counters: Default::default(),
    });
    let ev = next(&mut sub).await;
    assert_eq!(
        ev,
        json!({"type": "layer_connected", "pid": 42, "exe": "/bin/app", "ppid": 1, "argv": ["app"]})
    );
    let ev = next(&mut sub).await;
    assert_eq!(ev["type"], json!("traffic"));
    let list: Value = c.request("session.list", rpc_params![]).await.unwrap();
    assert_eq!(list["sessions"][0]["layers"], json!(1));
    let _: Value = c
        .request("session.stop", rpc_params![json!({"id": "s-ws"})])
        .await
        .unwrap();
    let ev = next(&mut sub).await;
    assert_eq!(ev["reason"], json!("stopped"));

    let e = c
        .subscribe::<Value, _>(
            "session.events",
            rpc_params![json!({"id": "s-ws"})],
            "session.unwatch_events",
        )
        .await;
    assert!(e.is_err());
}

async fn next(sub: &mut jsonrpsee::core::client::Subscription<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("event in time")
        .expect("subscription open")
        .unwrap()
}
