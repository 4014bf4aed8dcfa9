//! `tether lsp`: a language server over stdio for tether and mirrord config files
//! (`.tether/tether.{json,toml,yaml}`, `.mirrord/mirrord.{json,toml,yaml}`).
//!
//! - Diagnostics: every open buffer is verified from its unsaved text with
//!   [`tether_config::verify_str`] on open, change and save; errors and warnings keep their
//!   severities, the `help:` line follows the message.
//! - Completion: keys from the JSON Schema at the cursor's key path ([`cursor`] finds it in text
//!   that does not parse yet), enum and boolean values ([`values`]), and target names from the
//!   running daemon ([`targets`]; never starts one).
//! - Hover: the key's doc comment, as the schema carries it.
//! - Config files on disk are watched ([`watch`]): files not open in the editor (a checkout
//!   changed them) are re-verified and their diagnostics republished.
//!
//! The environment and CLI flags are left out of verification: the buffer is what is checked.
//!
//! # Editor setup
//! Any LSP client runs `tether lsp` for the config files, e.g. Neovim:
//! ```lua
//! vim.lsp.start({ name = "tether", cmd = { "tether", "lsp" },
//!   root_dir = vim.fs.root(0, { ".tether", ".mirrord", ".git" }) })
//! ```
//! (for buffers matching `*/.tether/tether.*` and `*/.mirrord/mirrord.*`). Target completion
//! needs a running daemon (`tether daemon start`); `RUST_LOG=debug` logs to stderr why it has
//! none.
//!
//! # Transport
//! Full text sync (ranged edits are applied too), positions in UTF-16 as LSP defaults to.
//! The `framing` guard keeps malformed input from ending the server.

pub mod cursor;
mod framing;
pub mod targets;
pub mod text;
pub mod values;
mod watch;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use tether_config::{
    EnvMap, Format, Overrides, Severity, key_at, key_info, keys_under, verify_str,
};
use tower_lsp_server::{
    Client, LanguageServer, LspService, Server,
    gen_lsp_types::{
        CompletionItem, CompletionItemKind, CompletionItemTextEdit, CompletionOptions,
        CompletionParams, CompletionResponse, Contents, Diagnostic, DiagnosticSeverity,
        DidChangeTextDocumentParams, DidCloseTextDocumentParams, DidOpenTextDocumentParams,
        DidSaveTextDocumentParams, Documentation, Hover, HoverParams, InitializeParams,
        InitializeResult, InitializedParams, MarkupContent, MarkupKind, MessageType, Position,
        Range, ServerCapabilities, ServerInfo, TextDocumentContentChangeEvent,
        TextDocumentSyncKind, TextDocumentSyncOptions, TextEdit, Uri, WorkspaceFolders,
    },
    jsonrpc::Result,
};

use crate::server::api::TargetInfo;

use self::{
    cursor::{Cursor, cursor_at},
    text::{char_of_utf16, line_of, path_to_uri, token_range, uri_to_path, utf16_of_char},
    values::{TargetSlot, choices, target_slot},
};

/// Serves the language server on stdin/stdout until the client sends `exit` or closes stdin.
pub async fn run_stdio() {
    // The server talks to the guard through in-memory pipes (see `framing`).
    let (server_in, guard_in) = tokio::io::duplex(64 * 1024);
    let (guard_out, server_out) = tokio::io::duplex(64 * 1024);
    let (errors_tx, errors_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(framing::filter_input(
        tokio::io::stdin(),
        guard_in,
        errors_tx,
    ));
    let output = tokio::spawn(framing::merge_output(
        guard_out,
        tokio::io::stdout(),
        errors_rx,
    ));
    let (service, socket) = LspService::new(Backend::new);
    Server::new(server_in, server_out, socket)
        .serve(service)
        .await;
    // `serve` dropped its end of the output pipe: the last frames are written, then it ends.
    let _ = output.await;
}

/// An open buffer.
#[derive(Debug, Clone)]
struct Doc {
    text: String,
    version: i32,
    format: Format,
    path: Option<PathBuf>,
}

/// State shared by the handlers and the file watcher.
#[derive(Debug)]
struct Shared {
    client: Client,
    docs: Mutex<HashMap<Uri, Doc>>,
    roots: Mutex<Vec<PathBuf>>,
    watcher: Mutex<Option<watch::Watcher>>,
}

impl Shared {
    fn open_doc(&self, uri: &Uri) -> Option<Doc> {
        self.docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uri)
            .cloned()
    }

    /// Verifies `text` and publishes the result for `uri`.
    async fn publish(
        &self,
        uri: Uri,
        text: &str,
        format: Format,
        path: Option<&Path>,
        version: Option<i32>,
    ) {
        let diags = diagnostics(text, format, path);
        self.client.publish_diagnostics(uri, diags, version).await;
    }

    /// Re-verifies a config file from disk unless the editor has it open (then its buffer is what
    /// counts); clears its diagnostics when it is gone.
    async fn refresh_from_disk(&self, path: &Path) {
        // By path: the client's URI may encode the same path differently from ours.
        let open = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|d| d.path.as_deref() == Some(path));
        if open {
            return;
        }
        let uri = path_to_uri(path);
        match std::fs::read_to_string(path) {
            Ok(text) => {
                self.publish(uri, &text, Format::from_path(path), Some(path), None)
                    .await
            }
            Err(_) => self.client.publish_diagnostics(uri, Vec::new(), None).await,
        }
    }
}

/// The language server.
#[derive(Debug)]
pub struct Backend {
    shared: Arc<Shared>,
}

impl Backend {
    fn new(client: Client) -> Self {
        Self {
            shared: Arc::new(Shared {
                client,
                docs: Mutex::new(HashMap::new()),
                roots: Mutex::new(Vec::new()),
                watcher: Mutex::new(None),
            }),
        }
    }

    async fn set_text(&self, uri: Uri, text: String, version: i32, language: Option<&str>) {
        let path = uri_to_path(&uri);
        let format = match (&path, language) {
            (Some(p), _) => match config_format(p) {
                Some(f) => f,
                None => return,
            },
            (None, Some(lang)) => match language_format(lang) {
                Some(f) => f,
                None => return,
            },
            (None, None) => match self.shared.open_doc(&uri) {
                Some(d) => d.format,
                None => return,
            },
        };
        if let Some(p) = &path
            && let Some(dir) = p.parent()
            && let Some(w) = self
                .shared
                .watcher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
        {
            w.watch_dir(dir);
        }
        self.shared
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                uri.clone(),
                Doc {
                    text: text.clone(),
                    version,
                    format,
                    path: path.clone(),
                },
            );
        self.shared
            .publish(uri, &text, format, path.as_deref(), Some(version))
            .await;
    }
}

/// The format of a config file the server handles: `tether.*` or `mirrord.*`, or any json, toml
/// or yaml file inside `.tether/` or `.mirrord/`.
pub fn config_format(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    if !matches!(ext.as_str(), "json" | "jsonc" | "toml" | "yaml" | "yml") {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let dir = path.parent()?.file_name().and_then(|n| n.to_str());
    let ours = matches!(stem, "tether" | "mirrord") || matches!(dir, Some(".tether" | ".mirrord"));
    ours.then(|| Format::from_path(path))
}

fn language_format(language: &str) -> Option<Format> {
    match language {
        "json" | "jsonc" => Some(Format::Json),
        "toml" => Some(Format::Toml),
        "yaml" => Some(Format::Yaml),
        _ => None,
    }
}

/// The LSP diagnostics of a config text: errors, then warnings, each with the range of the token
/// at its position and the `help:` line after the message.
pub fn diagnostics(text: &str, format: Format, path: Option<&Path>) -> Vec<Diagnostic> {
    let (errors, warnings) =
        match verify_str(text, format, path, &EnvMap::new(), &Overrides::default()) {
            Ok(v) => (Vec::new(), v.warnings),
            Err(e) => (e.errors, e.warnings),
        };
    errors
        .iter()
        .chain(&warnings)
        .map(|d| {
            let range = match d.pos() {
                Some(p) => token_range(text, p.line, p.column),
                None => Range::default(),
            };
            let mut message = d.message.clone();
            if let Some(help) = &d.help {
                message.push_str("\nhelp: ");
                message.push_str(help);
            }
            Diagnostic {
                range,
                severity: Some(match d.severity {
                    Severity::Error => DiagnosticSeverity::Error,
                    Severity::Warning => DiagnosticSeverity::Warning,
                }),
                source: Some("tether".to_owned()),
                message: message.into(),
                data: Some(serde_json::json!({"key": d.key_path, "help": d.help})),
                code: None,
                code_description: None,
                tags: None,
                related_information: None,
            }
        })
        .collect()
}

fn markdown(value: String) -> MarkupContent {
    MarkupContent {
        kind: MarkupKind::Markdown,
        value,
    }
}

/// Hover text of a key: its path, doc comment and default.
fn key_doc(path: &str) -> Option<String> {
    let info = key_info(path)?;
    let mut s = format!("`{path}`");
    if let Some(d) = &info.description {
        s.push_str("\n\n");
        s.push_str(d);
    }
    if let Some(d) = info.default.as_deref().filter(|d| *d != "null") {
        s.push_str(&format!("\n\nDefault: `{d}`"));
    }
    Some(s)
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let mut roots: Vec<PathBuf> =
            match params.workspace_folders_initialize_params.workspace_folders {
                Some(WorkspaceFolders::WorkspaceFolderList(folders)) => {
                    folders.iter().filter_map(|f| uri_to_path(&f.uri)).collect()
                }
                _ => Vec::new(),
            };
        #[allow(deprecated)] // rootUri is what older clients send
        if roots.is_empty()
            && let Some(root) = params.root_uri.as_ref().and_then(uri_to_path)
        {
            roots.push(root);
        }
        *self.shared.roots.lock().unwrap_or_else(|e| e.into_inner()) = roots;
        Ok(InitializeResult {
            server_info: Some(ServerInfo {
                name: "tether".to_owned(),
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            }),
            capabilities: ServerCapabilities {
                text_document_sync: Some(
                    TextDocumentSyncOptions {
                        open_close: Some(true),
                        change: Some(TextDocumentSyncKind::Full),
                        save: Some(true.into()),
                        ..Default::default()
                    }
                    .into(),
                ),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(
                        ["\"", ".", "[", "/", " ", "="].map(str::to_owned).to_vec(),
                    ),
                    ..Default::default()
                }),
                hover_provider: Some(true.into()),
                ..Default::default()
            },
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        let roots = self
            .shared
            .roots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match watch::Watcher::start(Arc::downgrade(&self.shared)) {
            Ok(mut w) => {
                for root in &roots {
                    w.watch_root(root);
                }
                *self
                    .shared
                    .watcher
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(w);
            }
            Err(e) => {
                self.shared
                    .client
                    .log_message(
                        MessageType::Warning,
                        format!("tether: config files on disk are not watched: {e}"),
                    )
                    .await
            }
        }
        // Files that are not open get their diagnostics too (a problems view lists them).
        for root in &roots {
            for file in watch::config_files(root) {
                self.shared.refresh_from_disk(&file).await;
            }
        }
    }

    async fn shutdown(&self) -> Result<()> {
        // Dropping the watcher stops its thread; nothing else outlives the server.
        self.shared
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let doc = params.text_document;
        let language = doc.language_id.as_str().to_owned();
        self.set_text(doc.uri, doc.text, doc.version, Some(&language))
            .await;
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let id = params.text_document;
        let uri = id.text_document_identifier.uri;
        // Full sync is what the server asks for; ranged edits are applied anyway, in order.
        let mut text = self
            .shared
            .open_doc(&uri)
            .map(|d| d.text)
            .unwrap_or_default();
        for change in params.content_changes {
            match change {
                TextDocumentContentChangeEvent::TextDocumentContentChangeWholeDocument(w) => {
                    text = w.text
                }
                TextDocumentContentChangeEvent::TextDocumentContentChangePartial(p) => {
                    let start = text::offset_of(&text, p.range.start);
                    let end = text::offset_of(&text, p.range.end).max(start);
                    text.replace_range(start..end, &p.text);
                }
            }
        }
        self.set_text(uri, text, id.version, None).await;
    }

    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        let uri = params.text_document.uri;
        let Some(doc) = self.shared.open_doc(&uri) else {
            return;
        };
        let text = params.text.unwrap_or(doc.text);
        self.set_text(uri, text, doc.version, None).await;
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri;
        let doc = self
            .shared
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uri);
        // What is on disk is what counts again.
        match doc.and_then(|d| d.path) {
            Some(path) => self.shared.refresh_from_disk(&path).await,
            None => {
                self.shared
                    .client
                    .publish_diagnostics(uri, Vec::new(), None)
                    .await
            }
        }
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let pos = params.text_document_position_params.position;
        let Some(doc) = self
            .shared
            .open_doc(&params.text_document_position_params.text_document.uri)
        else {
            return Ok(None);
        };
        let Some(line) = line_of(&doc.text, pos.line) else {
            return Ok(None);
        };
        let col = char_of_utf16(line, pos.character);
        let Some(cur) = cursor_at(&doc.text, doc.format, pos.line, col) else {
            return Ok(None);
        };
        let start = col.saturating_sub(cur.prefix().chars().count());
        let range = Range::new(Position::new(pos.line, utf16_of_char(line, start)), pos);
        let edit = |new_text: String| -> Option<CompletionItemTextEdit> {
            Some(CompletionItemTextEdit::TextEdit(TextEdit::new(
                range, new_text,
            )))
        };
        let mut items = Vec::new();
        match &cur {
            Cursor::Key { parent, quoted, .. } => {
                let there = cursor::existing_keys(&doc.text, doc.format, parent, pos.line);
                for k in keys_under(parent)
                    .into_iter()
                    .filter(|k| !there.contains(&k.name))
                {
                    let new_text = if doc.format == Format::Json && !quoted {
                        format!("\"{}\"", k.name)
                    } else {
                        k.name.clone()
                    };
                    items.push(CompletionItem {
                        label: k.name.clone(),
                        kind: Some(CompletionItemKind::Property),
                        detail: k.default.clone().map(|d| format!("default: {d}")),
                        documentation: k
                            .description
                            .map(|d| Documentation::MarkupContent(markdown(d))),
                        filter_text: Some(k.name.clone()),
                        text_edit: edit(new_text),
                        ..Default::default()
                    });
                }
            }
            Cursor::Value { path, quoted, .. } => {
                let quote = |s: &str| {
                    if *quoted || doc.format == Format::Yaml {
                        s.to_owned()
                    } else {
                        format!("\"{s}\"")
                    }
                };
                for c in choices(path) {
                    let new_text = if c.string {
                        quote(&c.label)
                    } else {
                        c.label.clone()
                    };
                    items.push(CompletionItem {
                        label: c.label.clone(),
                        kind: Some(CompletionItemKind::EnumMember),
                        documentation: c.doc.map(|d| Documentation::MarkupContent(markdown(d))),
                        filter_text: Some(c.label.clone()),
                        text_edit: edit(new_text),
                        ..Default::default()
                    });
                }
                if let Some(slot) = target_slot(path) {
                    let scope = scope_of(&doc, pos.line);
                    let typed = cur.prefix();
                    let list = targets::list(&scope).await;
                    // `pod/api/` typed: only that target's containers, `pod/api/container/app`.
                    let chosen = |t: &TargetInfo| typed.starts_with(&format!("{}/", t.path));
                    let containers = slot == TargetSlot::Path && list.iter().any(chosen);
                    for t in &list {
                        let labels = match slot {
                            TargetSlot::Path if containers => {
                                if !chosen(t) {
                                    continue;
                                }
                                t.containers
                                    .iter()
                                    .map(|c| format!("{}/container/{}", t.path, c.name))
                                    .collect()
                            }
                            TargetSlot::Path => vec![t.path.clone()],
                            TargetSlot::Name(kind) if t.kind.as_str() == kind => {
                                vec![t.name.clone()]
                            }
                            TargetSlot::Name(_) => continue,
                        };
                        for label in labels {
                            items.push(CompletionItem {
                                label: label.clone(),
                                kind: Some(CompletionItemKind::Value),
                                detail: Some(format!(
                                    "{} {} in {}, {}",
                                    t.kind.as_str(),
                                    t.ready_text,
                                    t.namespace,
                                    t.status
                                )),
                                filter_text: Some(label.clone()),
                                text_edit: edit(quote(&label)),
                                ..Default::default()
                            });
                        }
                    }
                }
            }
        }
        Ok(Some(CompletionResponse::from(items)))
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let pos = params.text_document_position_params.position;
        let Some(doc) = self
            .shared
            .open_doc(&params.text_document_position_params.text_document.uri)
        else {
            return Ok(None);
        };
        let Some(line) = line_of(&doc.text, pos.line) else {
            return Ok(None);
        };
        let chars: Vec<char> = line.chars().collect();
        let col = char_of_utf16(line, pos.character);
        let is_word = |c: &char| c.is_alphanumeric() || *c == '_' || *c == '-';
        let mut start = col.min(chars.len());
        while start > 0 && is_word(&chars[start - 1]) {
            start -= 1;
        }
        let mut end = col.min(chars.len());
        while end < chars.len() && is_word(&chars[end]) {
            end += 1;
        }
        if start == end {
            return Ok(None);
        }
        let parsed = key_at(
            &doc.text,
            doc.format,
            tether_config::Pos::new(pos.line + 1, start as u32 + 1),
        );
        // Text that does not parse (being edited): the key path from the text before the word.
        // On a value: the doc of that enum value.
        let context = cursor_at(&doc.text, doc.format, pos.line, end);
        let word: String = chars[start..end].iter().collect();
        let doc_text = match (parsed, context) {
            (Some(path), _) => key_doc(&path),
            (None, Some(Cursor::Key { parent, prefix, .. })) if !prefix.is_empty() => {
                key_doc(&if parent.is_empty() {
                    prefix
                } else {
                    format!("{parent}.{prefix}")
                })
            }
            (None, Some(Cursor::Value { path, prefix, .. })) if prefix.ends_with(&word) => {
                choices(&path)
                    .into_iter()
                    .find(|c| c.label == word)
                    .map(|c| {
                        let mut s = format!("`{path}` = `{word}`");
                        if let Some(d) = c.doc {
                            s.push_str("\n\n");
                            s.push_str(&d);
                        }
                        s
                    })
            }
            _ => None,
        };
        let Some(doc_text) = doc_text else {
            return Ok(None);
        };
        Ok(Some(Hover {
            contents: Contents::MarkupContent(markdown(doc_text)),
            range: Some(Range::new(
                Position::new(pos.line, utf16_of_char(line, start)),
                Position::new(pos.line, utf16_of_char(line, end)),
            )),
        }))
    }
}

/// Namespace, context and kubeconfig set in the buffer, when it verifies, or else when it does
/// without the line being typed (whose value is still unfinished).
fn scope_of(doc: &Doc, line: u32) -> targets::Scope {
    let verify = |text: &str| {
        verify_str(
            text,
            doc.format,
            doc.path.as_deref(),
            &EnvMap::new(),
            &Overrides::default(),
        )
        .ok()
    };
    let verified = verify(&doc.text).or_else(|| {
        let without: Vec<&str> = doc
            .text
            .split('\n')
            .enumerate()
            .map(|(i, l)| if i == line as usize { "" } else { l })
            .collect();
        verify(&without.join("\n"))
    });
    match verified {
        Some(v) => targets::Scope {
            namespace: v.config.target.namespace.clone(),
            context: v.config.kube_context.clone(),
            kubeconfig: v.config.kubeconfig.clone(),
        },
        None => targets::Scope::default(),
    }
}
