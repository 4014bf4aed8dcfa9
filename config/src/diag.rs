//! Diagnostics: what `verify` reports, with the file, line and column of the offending key.

use std::{fmt, path::PathBuf};

use serde::Serialize;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1, in characters.
    pub column: u32,
}

impl Pos {
    /// Makes a position from a 1-based line and column.
    pub const fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config cannot be used.
    Error,
    /// The config works, but something in it is ignored or deprecated.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a config, with where it is.
///
/// `file`, `line` and `column` are absent when the problem does not come from a file (an
/// environment variable or a command-line flag); the message then names the variable or flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// One lowercase line without a final period, e.g. ``unknown key `feature.envv` ``.
    pub message: String,
    /// The next step for the user, e.g. ``did you mean `feature.env`?``.
    pub help: Option<String>,
    /// The config file, when the problem is in one.
    pub file: Option<PathBuf>,
    /// 1-based line of the offending key (or value, for type errors).
    pub line: Option<u32>,
    /// 1-based column, in characters.
    pub column: Option<u32>,
    /// Dotted key path, e.g. `feature.network.incoming.http_filter.all_of[0].header`.
    pub key_path: Option<String>,
}

impl Diagnostic {
    pub(crate) fn new(severity: Severity, message: impl Into<String>) -> Self {
        Self {
            severity,
            message: message.into(),
            help: None,
            file: None,
            line: None,
            column: None,
            key_path: None,
        }
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    pub(crate) fn at(mut self, pos: Option<Pos>) -> Self {
        self.line = pos.map(|p| p.line);
        self.column = pos.map(|p| p.column);
        self
    }

    pub(crate) fn key(mut self, key_path: &str) -> Self {
        if !key_path.is_empty() {
            self.key_path = Some(key_path.to_owned());
        }
        self
    }

    /// The position, when the diagnostic has one.
    pub fn pos(&self) -> Option<Pos> {
        Some(Pos::new(self.line?, self.column?))
    }

    /// `path:line:col`, `path`, or nothing, as printed before the message.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?.display().to_string();
        Some(match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
            _ => file,
        })
    }
}

/// `error path:line:col message`, then `  help: ...` on its own line.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.severity)?;
        if let Some(loc) = self.location() {
            write!(f, " {loc}")?;
        }
        write!(f, " {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// The config is invalid: at least one error, plus any warnings found on the way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", summary(.errors))]
pub struct ConfigErrors {
    /// Every error found, in file order where possible.
    pub errors: Vec<Diagnostic>,
    /// Warnings found while reading the same config.
    pub warnings: Vec<Diagnostic>,
}

fn summary(errors: &[Diagnostic]) -> String {
    let first = errors
        .first()
        .map(|d| match d.location() {
            Some(loc) => format!("{loc}: {}", d.message),
            None => d.message.clone(),
        })
        .unwrap_or_else(|| "invalid config".to_owned());
    match errors.len() {
        0 | 1 => first,
        n => format!("{first} (and {} more errors)", n - 1),
    }
}
