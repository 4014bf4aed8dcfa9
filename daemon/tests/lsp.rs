//! `tether lsp` through a real stdio exchange: the real binary, LSP JSON-RPC with
//! `Content-Length` framing. Diagnostics of unsaved buffers, completion (keys, enum values, and
//! target names from a real daemon over a fake API server), hover, config files changed on disk,
//! bad input, and a clean shutdown.

mod support;

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::{Value, json};
use tether::{
    discovery::Paths,
    lsp::text::path_to_uri,
    server::{self, DaemonOptions},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, ChildStdout, Command},
};

const WAIT: Duration = Duration::from_secs(20);

/// A `tether lsp` child and the client side of its protocol.
struct Lsp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Notifications (and server requests) read while waiting for something else.
    pending: VecDeque<Value>,
    next_id: i64,
}

impl Lsp {
    /// Starts the server with `XDG_RUNTIME_DIR`/`XDG_STATE_HOME` under `xdg` (so it finds only
    /// the daemon a test starts there) and initializes it with `root` as the workspace.
    async fn start(xdg: &Path, root: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("lsp")
            .env("XDG_RUNTIME_DIR", xdg.join("run"))
            .env("XDG_STATE_HOME", xdg.join("state"))
            .env_remove("TETHER_CONFIG_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lsp = Self {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            pending: VecDeque::new(),
            next_id: 1,
        };
        let root_uri = uri(root);
        let init = lsp
            .request(
                "initialize",
                json!({
                    "processId": null,
                    "rootUri": root_uri,
                    "capabilities": {},
                    "workspaceFolders": [{"uri": root_uri, "name": "project"}],
                }),
            )
            .await;
        let caps = &init["result"]["capabilities"];
        assert_eq!(caps["hoverProvider"], json!(true), "{init}");
        assert!(caps["completionProvider"].is_object(), "{init}");
        lsp.notify("initialized", json!({})).await;
        lsp
    }

    async fn send_raw(&mut self, body: &[u8]) {
        let header = format!("Content-Length: {}\r\n\r\n", body.len());
        self.stdin.write_all(header.as_bytes()).await.unwrap();
        self.stdin.write_all(body).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn notify(&mut self, method: &str, params: Value) {
        let msg = json!({"jsonrpc": "2.0", "method": method, "params": params});
        self.send_raw(msg.to_string().as_bytes()).await;
    }

    /// Sends a request and returns the whole response (`result` or `error`).
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(msg.to_string().as_bytes()).await;
        self.response(json!(id)).await
    }

    /// Reads until the response with `id`, keeping everything else.
    async fn response(&mut self, id: Value) -> Value {
        loop {
            let msg = self.read().await;
            if msg.get("method").is_none() && msg["id"] == id {
                return msg;
            }
            self.pending.push_back(msg);
        }
    }

    /// One framed message from the server.
    async fn read(&mut self) -> Value {
        tokio::time::timeout(WAIT, async {
            let mut len = None;
            loop {
                let mut line = String::new();
                let n = self.stdout.read_line(&mut line).await.unwrap();
                assert!(n > 0, "the server closed stdout");
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("Content-Length: ") {
                    len = Some(v.parse::<usize>().unwrap());
                }
            }
            let mut body = vec![0; len.expect("a Content-Length header")];
            self.stdout.read_exact(&mut body).await.unwrap();
            serde_json::from_slice(&body).unwrap()
        })
        .await
        .expect("a message from the server in time")
    }

    /// The next `publishDiagnostics` for `uri` that satisfies `pred` (earlier ones are dropped).
    async fn diagnostics(&mut self, uri: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching diagnostics for {uri}"
            );
            let msg = match self.pending.pop_front() {
                Some(m) => m,
                None => self.read().await,
            };
            if msg["method"] == "textDocument/publishDiagnostics"
                && msg["params"]["uri"] == uri
                && pred(&msg["params"])
            {
                return msg["params"].clone();
            }
        }
    }

    async fn open(&mut self, uri: &str, language: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}),
        )
        .await;
    }

    async fn change(&mut self, uri: &str, version: i32, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}),
        )
        .await;
    }

    /// Completion labels at `line`:`character`.
    async fn complete(&mut self, uri: &str, line: u32, character: u32) -> Vec<String> {
        let r = self
            .request(
                "textDocument/completion",
                json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}),
            )
            .await;
        let items = match &r["result"] {
            Value::Array(items) => items.clone(),
            Value::Object(list) => list["items"].as_array().unwrap().clone(),
            Value::Null => Vec::new(),
            other => panic!("unexpected completion result {other}"),
        };
        items
            .iter()
            .map(|i| i["label"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `shutdown`, `exit`, and the process ends with status 0.
    async fn shutdown(mut self) {
        let r = self.request("shutdown", Value::Null).await;
        assert_eq!(r["result"], Value::Null, "{r}");
        assert!(r.get("error").is_none(), "{r}");
        self.notify("exit", Value::Null).await;
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the server exits after `exit`")
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

fn uri(path: &Path) -> String {
    path_to_uri(path).as_ref().to_owned()
}

/// A project dir with `.tether/` (and the XDG dirs of the test beside it).
fn project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    std::fs::create_dir_all(root.join(".tether")).unwrap();
    (dir, root)
}

#[tokio::test]
async fn diagnostics_of_the_unsaved_buffer() {
    let (dir, root) = project();
    let mut lsp = Lsp::start(dir.path(), &root).await;
    // Never written to disk: what is checked is the buffer.
    let file = uri(&root.join(".tether/tether.toml"));

    lsp.open(&file, "toml", "[feature]\nenvv = true\n").await;
    let d = lsp.diagnostics(&file, |_| true).await;
    assert_eq!(d["version"], json!(1));
    assert_eq!(
        d["diagnostics"],
        json!([{
            "range": {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 4}},
            "severity": 1,
            "source": "tether",
            "message": "unknown key `feature.envv`\nhelp: did you mean `feature.env`?",
            "data": {"key": "feature.envv", "help": "did you mean `feature.env`?"},
        }])
    );

    // Errors and warnings keep their severities; a type error points at the value.
    lsp.change(&file, 2, "telemetry = false\n[agent]\nttl = \"soon\"\n")
        .await;
    let d = lsp.diagnostics(&file, |p| p["version"] == 2).await;
    let diags = d["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 2, "{d}");
    assert_eq!(diags[0]["severity"], json!(1), "{d}");
    assert_eq!(
        diags[0]["range"]["start"],
        json!({"line": 2, "character": 6}),
        "{d}"
    );
    assert_eq!(
        diags[0]["range"]["end"],
        json!({"line": 2, "character": 12}),
        "{d}"
    );
    assert_eq!(diags[1]["severity"], json!(2), "{d}");
    assert_eq!(
        diags[1]["message"],
        json!("`telemetry` is a mirrord setting tether ignores\nhelp: tether sends no telemetry")
    );
    assert_eq!(
        diags[1]["range"]["start"],
        json!({"line": 0, "character": 0})
    );

    // Fixed: an empty list clears the editor's markers.
    lsp.change(&file, 3, "[feature]\nenv = true\n").await;
    let d = lsp.diagnostics(&file, |p| p["version"] == 3).await;
    assert_eq!(d["diagnostics"], json!([]));

    // A JSON buffer of mirrord's, and a parse error.
    let mirrord = uri(&root.join(".mirrord/mirrord.json"));
    lsp.open(
        &mirrord,
        "json",
        "{\"feature\": {\"network\": {\"incoming\": \"stel\"}}}",
    )
    .await;
    let d = lsp.diagnostics(&mirrord, |_| true).await;
    let diags = d["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 1, "{d}");
    assert_eq!(
        diags[0]["range"]["start"],
        json!({"line": 0, "character": 37}),
        "{d}"
    );
    assert!(
        diags[0]["message"].as_str().unwrap().contains("stel"),
        "{d}"
    );
    lsp.change(&mirrord, 2, "{\"target\": ").await;
    let d = lsp.diagnostics(&mirrord, |p| p["version"] == 2).await;
    assert_eq!(d["diagnostics"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["diagnostics"][0]["severity"], json!(1), "{d}");

    // Saving re-checks too.
    lsp.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": mirrord}, "text": "{\"target\": \"pod/a\"}"}),
    )
    .await;
    let d = lsp
        .diagnostics(&mirrord, |p| p["diagnostics"] == json!([]))
        .await;
    assert_eq!(d["version"], json!(2));

    // Other files are not ours: no diagnostics for them.
    let other = uri(&root.join("package.json"));
    lsp.open(&other, "json", "{\"name\": 1").await;
    let r = lsp
        .request(
            "textDocument/hover",
            json!({"textDocument": {"uri": other}, "position": {"line": 0, "character": 3}}),
        )
        .await;
    assert_eq!(r["result"], Value::Null);
    assert!(
        lsp.pending
            .iter()
            .all(|m| m["params"]["uri"] != json!(other)),
        "{:?}",
        lsp.pending
    );
    lsp.shutdown().await;
}

#[tokio::test]
async fn completion_of_keys_and_values() {
    let (dir, root) = project();
    let mut lsp = Lsp::start(dir.path(), &root).await;
    let toml = uri(&root.join(".tether/tether.toml"));
    lsp.open(
        &toml,
        "toml",
        "[feature]\n\n[feature.network]\nincoming = { mode = \"\" }\n",
    )
    .await;
    let keys = lsp.complete(&toml, 1, 0).await;
    for k in ["env", "fs", "hostname"] {
        assert!(keys.contains(&k.to_owned()), "{k} in {keys:?}");
    }
    assert!(!keys.contains(&"agent".to_owned()), "{keys:?}");
    // `[feature.network]` below already defines it.
    assert!(!keys.contains(&"network".to_owned()), "{keys:?}");
    let modes = lsp.complete(&toml, 3, 20).await;
    assert_eq!(modes, ["mirror", "steal", "off"]);

    // The edit replaces what is typed, and JSON keys get their quotes.
    let json_uri = uri(&root.join(".tether/tether.json"));
    lsp.open(&json_uri, "json", "{\"feature\": {\"net").await;
    let r = lsp
        .request(
            "textDocument/completion",
            json!({"textDocument": {"uri": json_uri}, "position": {"line": 0, "character": 17}}),
        )
        .await;
    let network = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"] == "network")
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    assert_eq!(
        network["textEdit"],
        json!({"range": {"start": {"line": 0, "character": 14}, "end": {"line": 0, "character": 17}}, "newText": "network"})
    );
    assert!(
        network["documentation"]["value"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{network}"
    );

    let yaml = uri(&root.join(".tether/tether.yaml"));
    lsp.open(
        &yaml,
        "yaml",
        "agent:\n  tolerations:\n    - operator: Exists\n      \nfeature:\n  fs:\n    mode: \n",
    )
    .await;
    let keys = lsp.complete(&yaml, 3, 6).await;
    assert!(keys.contains(&"effect".to_owned()), "{keys:?}");
    let modes = lsp.complete(&yaml, 6, 10).await;
    assert!(
        modes.contains(&"localwithoverrides".to_owned()),
        "{modes:?}"
    );

    // No daemon runs under this XDG dir: the target completion path answers quickly, empty.
    let t = std::time::Instant::now();
    lsp.change(&toml, 2, "target = \"\"\n").await;
    let targets = lsp.complete(&toml, 0, 10).await;
    assert!(targets.is_empty(), "{targets:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    lsp.shutdown().await;
}

#[tokio::test]
async fn hover_shows_the_key_doc() {
    let (dir, root) = project();
    let mut lsp = Lsp::start(dir.path(), &root).await;
    let toml = uri(&root.join(".tether/tether.toml"));
    lsp.open(
        &toml,
        "toml",
        "[feature.network.incoming]\nmode = \"steal\"\n",
    )
    .await;
    let r = lsp
        .request(
            "textDocument/hover",
            json!({"textDocument": {"uri": toml}, "position": {"line": 1, "character": 2}}),
        )
        .await;
    let value = r["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        value.starts_with("`feature.network.incoming.mode`"),
        "{value}"
    );
    assert!(value.contains("`steal` takes it"), "{value}");
    assert_eq!(
        r["result"]["range"],
        json!({"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 4}})
    );
    // Text that does not parse still gets hover docs from the lines above.
    lsp.change(&toml, 2, "[agent]\nttl = \n[").await;
    let r = lsp
        .request(
            "textDocument/hover",
            json!({"textDocument": {"uri": toml}, "position": {"line": 1, "character": 1}}),
        )
        .await;
    let value = r["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(value.starts_with("`agent.ttl`"), "{value}");
    assert!(value.contains("Default: `1`"), "{value}");
    // A ranged edit (clients may send them even under full sync), and hover on an enum value.
    lsp.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": toml, "version": 3}, "contentChanges": [
            {"range": {"start": {"line": 0, "character": 1}, "end": {"line": 2, "character": 1}},
             "text": "feature.network.incoming]\nmode = \"mirror\"\n"}
        ]}),
    )
    .await;
    let d = lsp.diagnostics(&toml, |p| p["version"] == 3).await;
    assert_eq!(d["diagnostics"], json!([]), "{d}");
    let r = lsp
        .request(
            "textDocument/hover",
            json!({"textDocument": {"uri": toml}, "position": {"line": 1, "character": 10}}),
        )
        .await;
    let value = r["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        value.starts_with("`feature.network.incoming.mode` = `mirror`"),
        "{value}"
    );
    assert!(value.contains("the pod still answers"), "{value}");
    // JSON and YAML keys too.
    for (name, language, text, line, character) in [
        ("tether.json", "json", "{\"agent\": {\"ttl\": 5}}", 0, 13),
        ("tether.yaml", "yaml", "agent:\n  ttl: 5\n", 1, 3),
    ] {
        let other = uri(&root.join(".tether").join(name));
        lsp.open(&other, language, text).await;
        let r = lsp
            .request(
                "textDocument/hover",
                json!({"textDocument": {"uri": other}, "position": {"line": line, "character": character}}),
            )
            .await;
        let value = r["result"]["contents"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        assert!(value.starts_with("`agent.ttl`"), "{name}: {value}");
    }
    lsp.change(&toml, 4, "[agent]\nttl = \n[").await;
    // Nothing under the cursor: no hover.
    let r = lsp
        .request(
            "textDocument/hover",
            json!({"textDocument": {"uri": toml}, "position": {"line": 1, "character": 5}}),
        )
        .await;
    assert_eq!(r["result"], Value::Null, "{r}");
    lsp.shutdown().await;
}

#[tokio::test]
async fn files_changed_on_disk_are_rechecked() {
    let (dir, root) = project();
    let file = root.join(".tether/tether.toml");
    std::fs::write(&file, "[feature]\nenvv = true\n").unwrap();
    let mut lsp = Lsp::start(dir.path(), &root).await;
    let file_uri = uri(&file);

    // Not open in the editor, checked anyway.
    let d = lsp.diagnostics(&file_uri, |_| true).await;
    assert_eq!(
        d["diagnostics"][0]["message"],
        json!("unknown key `feature.envv`\nhelp: did you mean `feature.env`?")
    );
    assert_eq!(d.get("version"), None);

    // A checkout fixes it, then breaks it again (written through a rename, as git does).
    std::fs::write(&file, "[feature]\nenv = true\n").unwrap();
    lsp.diagnostics(&file_uri, |p| p["diagnostics"] == json!([]))
        .await;
    let tmp = root.join(".tether/.tether.toml.tmp");
    std::fs::write(&tmp, "[agent]\nttl = \"x\"\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let d = lsp
        .diagnostics(&file_uri, |p| p["diagnostics"] != json!([]))
        .await;
    assert_eq!(
        d["diagnostics"][0]["range"]["start"],
        json!({"line": 1, "character": 6})
    );

    // A `.mirrord/` dir that appears later is watched too.
    std::fs::create_dir(root.join(".mirrord")).unwrap();
    let m = root.join(".mirrord/mirrord.json");
    // Give the server a moment to watch the new dir before the file lands in it; the file is
    // then rewritten so that at least one write is seen either way.
    std::fs::write(&m, "{\"operator\": true}").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&m, "{\"operator\": true, \"feature\": {}}").unwrap();
    let d = lsp
        .diagnostics(&uri(&m), |p| p["diagnostics"] != json!([]))
        .await;
    assert!(
        d["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("`operator` needs the mirrord operator"),
        "{d}"
    );

    // The whole dir removed and made anew (a branch switch): still watched.
    std::fs::remove_dir_all(root.join(".mirrord")).unwrap();
    lsp.diagnostics(&uri(&m), |p| p["diagnostics"] == json!([]))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::create_dir(root.join(".mirrord")).unwrap();
    std::fs::write(&m, "{\"telemetry\": true}").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&m, "{\"telemetry\": true, \"feature\": {}}").unwrap();
    let d = lsp
        .diagnostics(&uri(&m), |p| p["diagnostics"] != json!([]))
        .await;
    assert_eq!(d["diagnostics"][0]["severity"], json!(2), "{d}");

    // Removed: its diagnostics are cleared.
    std::fs::remove_file(&file).unwrap();
    lsp.diagnostics(&file_uri, |p| p["diagnostics"] == json!([]))
        .await;

    // An open buffer wins over the disk: a disk write does not replace its diagnostics.
    std::fs::write(&file, "[feature]\nenvv = 1\n").unwrap();
    lsp.diagnostics(&file_uri, |p| p["diagnostics"] != json!([]))
        .await;
    lsp.open(&file_uri, "toml", "[feature]\nenv = true\n").await;
    lsp.diagnostics(&file_uri, |p| {
        p["version"] == 1 && p["diagnostics"] == json!([])
    })
    .await;
    std::fs::write(&file, "[feature]\nenvv = 2\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = lsp
        .request(
            "textDocument/hover",
            json!({"textDocument": {"uri": file_uri}, "position": {"line": 1, "character": 1}}),
        )
        .await;
    assert!(r["result"].is_object(), "{r}");
    assert!(
        lsp.pending
            .iter()
            .all(|m| m["params"]["uri"] != json!(file_uri)),
        "{:?}",
        lsp.pending
    );
    // Closed: the disk's version counts again.
    lsp.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": file_uri}}),
    )
    .await;
    lsp.diagnostics(&file_uri, |p| p["diagnostics"] != json!([]))
        .await;
    lsp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_names_come_from_the_running_daemon() {
    use support::fake_kube::{FakeKube, deployment, pod};
    let kube = FakeKube::start().await;
    kube.apply("pods", "shop", pod("api-2", true));
    kube.apply("pods", "shop", pod("api-1", false));
    kube.apply("deployments", "shop", deployment("api", 1, 2));
    kube.apply("pods", "default", pod("other", true));

    // A real daemon (the server code, its WebSocket API and discovery file) in this process,
    // found by `tether lsp` through the XDG dirs.
    let (dir, root) = project();
    let paths = Paths {
        runtime_dir: dir.path().join("run/tether"),
        state_dir: dir.path().join("state/tether"),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let options = DaemonOptions {
        token: None,
        kubeconfig: tether::kube::KubeconfigSource::Files(vec![kube.kubeconfig.clone()]),
        log_file: None,
    };
    let p2 = paths.clone();
    let daemon = tokio::spawn(async move {
        server::run_daemon(
            &p2,
            options,
            async {
                let _ = stop_rx.await;
            },
            |info| {
                let _ = ready_tx.send(info.clone());
            },
        )
        .await
    });
    tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();

    let mut lsp = Lsp::start(dir.path(), &root).await;
    let toml = uri(&root.join(".tether/tether.toml"));
    lsp.open(&toml, "toml", "target = \"\"\n").await;
    // The first list fills the daemon's watch cache; a completion that times out meanwhile is
    // simply empty, so ask until the names are there.
    let deadline = tokio::time::Instant::now() + WAIT;
    let labels = loop {
        let labels = lsp.complete(&toml, 0, 10).await;
        if !labels.is_empty() || tokio::time::Instant::now() > deadline {
            break labels;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(labels, ["pod/api-1", "pod/api-2", "deployment/api"]);

    // The namespace the buffer names, and one kind in the object form.
    lsp.change(
        &toml,
        2,
        "[target]\nnamespace = \"default\"\npath = { pod = \"\" }\n",
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let labels = loop {
        let labels = lsp.complete(&toml, 2, 16).await;
        if !labels.is_empty() || tokio::time::Instant::now() > deadline {
            break labels;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(labels, ["other"]);

    // The item says what it is, and inserts a quoted value when no quote is typed yet.
    lsp.change(&toml, 3, "target = ").await;
    let r = lsp
        .request(
            "textDocument/completion",
            json!({"textDocument": {"uri": toml}, "position": {"line": 0, "character": 9}}),
        )
        .await;
    let item = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"] == "deployment/api")
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    assert_eq!(item["textEdit"]["newText"], json!("\"deployment/api\""));
    assert_eq!(
        item["detail"],
        json!("deployment 1/2 in shop, Progressing"),
        "{item}"
    );

    // A target typed up to its `/`: its containers.
    lsp.change(&toml, 4, "target = \"pod/api-2/").await;
    let labels = lsp.complete(&toml, 0, 20).await;
    assert_eq!(labels, ["pod/api-2/container/app"]);

    lsp.shutdown().await;
    let _ = stop_tx.send(());
    tokio::time::timeout(WAIT, daemon)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn bad_input_never_kills_the_server() {
    let (dir, root) = project();
    let mut lsp = Lsp::start(dir.path(), &root).await;
    // Not JSON at all, and JSON that is not JSON-RPC: error answers, and the server goes on.
    lsp.send_raw(b"{not json").await;
    let e = lsp.read().await;
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (Value::Null, json!(-32700)),
        "{e}"
    );
    lsp.send_raw(br#"{"id": 41, "hello": true}"#).await;
    let e = lsp.read().await;
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (json!(41), json!(-32600)),
        "{e}"
    );
    lsp.stdin.write_all(b"X-Nonsense: 1\r\n\r\n").await.unwrap();
    let e = lsp.read().await;
    assert_eq!(e["error"]["code"], json!(-32700), "{e}");
    // Unknown request and notification.
    let r = lsp.request("tether/nope", json!({})).await;
    assert_eq!(r["error"]["code"], json!(-32601), "{r}");
    lsp.notify("tether/whatever", json!({"x": 1})).await;
    // Wrong params.
    let r = lsp
        .request("textDocument/hover", json!({"textDocument": 5}))
        .await;
    assert_eq!(r["error"]["code"], json!(-32602), "{r}");
    // Positions past the end, unknown documents, odd URIs.
    let file = uri(&root.join(".tether/tether.yaml"));
    lsp.open(&file, "yaml", "feature:\n  env: [\n").await;
    lsp.diagnostics(&file, |_| true).await;
    for (line, character) in [(0, 999), (99, 0), (1, 7)] {
        let r = lsp
            .request(
                "textDocument/completion",
                json!({"textDocument": {"uri": file}, "position": {"line": line, "character": character}}),
            )
            .await;
        assert!(r.get("error").is_none(), "{r}");
        let r = lsp
            .request(
                "textDocument/hover",
                json!({"textDocument": {"uri": file}, "position": {"line": line, "character": character}}),
            )
            .await;
        assert!(r.get("error").is_none(), "{r}");
    }
    let r = lsp
        .request(
            "textDocument/completion",
            json!({"textDocument": {"uri": "untitled:Untitled-1"}, "position": {"line": 0, "character": 0}}),
        )
        .await;
    assert_eq!(r["result"], Value::Null, "{r}");
    lsp.change("file:///nowhere/x.toml", 1, "a = 1").await;
    // Still serving.
    let r = lsp
        .request(
            "textDocument/hover",
            json!({"textDocument": {"uri": file}, "position": {"line": 0, "character": 1}}),
        )
        .await;
    assert!(
        r["result"]["contents"]["value"]
            .as_str()
            .unwrap()
            .starts_with("`feature`"),
        "{r}"
    );
    lsp.shutdown().await;
}

#[tokio::test]
async fn closed_stdin_ends_the_server() {
    let (dir, root) = project();
    let lsp = Lsp::start(dir.path(), &root).await;
    let Lsp {
        mut child, stdin, ..
    } = lsp;
    // An editor that crashed: no shutdown, no exit, just the end of input.
    drop(stdin);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the server exits at the end of input")
        .unwrap();
    assert!(status.success(), "{status}");
}
