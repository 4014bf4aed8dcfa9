//! Parsers from text to the spanned [`Node`] tree, one per format.

mod json;
mod toml;
mod yaml;

use crate::{
    diag::Pos,
    node::{Format, Node},
};

/// The text is not valid JSON, TOML or YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub pos: Pos,
}

/// Deepest nesting accepted; real configs are about 6 levels deep.
pub(crate) const MAX_DEPTH: usize = 64;

/// Parses `text`; an empty (or whitespace-only) document is an empty object.
pub(crate) fn parse(text: &str, format: Format) -> Result<Node, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Json => json::parse(text),
        Format::Toml => toml::parse(text),
        Format::Yaml => yaml::parse(text),
    }
}
