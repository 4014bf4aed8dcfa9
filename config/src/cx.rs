//! The reading context: collects diagnostics and remembers where each key came from, so that
//! later checks (conflicts) can point at the right line even after env and flag overrides.

use std::{collections::BTreeMap, path::Path};

use crate::diag::{Diagnostic, Pos, Severity};

/// Where a key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The config file, with the key's position.
    File(Pos),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag (or another typed override).
    Flag(&'static str),
}

pub(crate) struct Cx<'a> {
    pub file: Option<&'a Path>,
    /// Directory relative paths in the file are resolved against.
    pub base_dir: Option<&'a Path>,
    pub diags: Vec<Diagnostic>,
    pub origins: BTreeMap<String, Origin>,
}

impl<'a> Cx<'a> {
    pub fn new(file: Option<&'a Path>, base_dir: Option<&'a Path>) -> Self {
        Self {
            file,
            base_dir,
            diags: Vec::new(),
            origins: BTreeMap::new(),
        }
    }

    /// A diagnostic about the file, at `pos`.
    pub fn file_diag(
        &mut self,
        severity: Severity,
        pos: Pos,
        path: &str,
        message: String,
        help: Option<String>,
    ) {
        let mut d = Diagnostic::new(severity, message)
            .help_opt(help)
            .at(Some(pos))
            .key(path);
        d.file = self.file.map(Path::to_path_buf);
        self.diags.push(d);
    }

    pub fn error(
        &mut self,
        pos: Pos,
        path: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.file_diag(Severity::Error, pos, path, message.into(), help);
    }

    pub fn warn(&mut self, pos: Pos, path: &str, message: impl Into<String>, help: Option<String>) {
        self.file_diag(Severity::Warning, pos, path, message.into(), help);
    }

    /// A diagnostic about the key `path`, located wherever its value came from.
    pub fn at_key(
        &mut self,
        severity: Severity,
        path: &str,
        message: String,
        help: Option<String>,
    ) {
        match self.origins.get(path).cloned() {
            Some(Origin::File(pos)) => self.file_diag(severity, pos, path, message, help),
            Some(Origin::Env(var)) => self.diags.push(
                Diagnostic::new(severity, format!("{message} (set by {var})"))
                    .help_opt(help)
                    .key(path),
            ),
            Some(Origin::Flag(flag)) => self.diags.push(
                Diagnostic::new(severity, format!("{message} (set by {flag})"))
                    .help_opt(help)
                    .key(path),
            ),
            None => self
                .diags
                .push(Diagnostic::new(severity, message).help_opt(help).key(path)),
        }
    }

    /// The first of `paths` that has an origin (for keys that may be written in short form).
    pub fn first_known<'p>(&self, paths: &[&'p str]) -> &'p str {
        paths
            .iter()
            .copied()
            .find(|p| self.origins.contains_key(*p))
            .unwrap_or(paths[0])
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}
