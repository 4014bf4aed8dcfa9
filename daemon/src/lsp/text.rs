//! Positions, ranges and file URIs: the LSP counts UTF-16 code units from 0, the config crate
//! counts characters from 1.

use std::path::{Path, PathBuf};

use tower_lsp_server::gen_lsp_types::{Position, Range, Uri};

/// The line `line` (0-based) of `text`, without its line break.
pub fn line_of(text: &str, line: u32) -> Option<&str> {
    text.split('\n')
        .nth(line as usize)
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// UTF-16 offset of the `chars`-th character of `line`.
pub fn utf16_of_char(line: &str, chars: usize) -> u32 {
    line.chars().take(chars).map(char::len_utf16).sum::<usize>() as u32
}

/// Character index of a UTF-16 offset in `line` (clamped to its end).
pub fn char_of_utf16(line: &str, utf16: u32) -> usize {
    let mut units = 0u32;
    for (i, c) in line.chars().enumerate() {
        if units >= utf16 {
            return i;
        }
        units += c.len_utf16() as u32;
    }
    line.chars().count()
}

/// Byte offset of an LSP position in `text` (clamped to the line's end, or the text's).
pub fn offset_of(text: &str, pos: Position) -> usize {
    let mut offset = 0;
    for (i, line) in text.split('\n').enumerate() {
        if i == pos.line as usize {
            let content = line.strip_suffix('\r').unwrap_or(line);
            let chars = char_of_utf16(content, pos.character);
            return offset
                + content
                    .char_indices()
                    .nth(chars)
                    .map_or(content.len(), |(b, _)| b);
        }
        offset += line.len() + 1;
    }
    text.len()
}

/// The LSP range of a diagnostic at the 1-based `line`:`column` (characters): from there to the
/// end of the token that starts there (a quoted string, or a run up to a separator), at least one
/// character wide when the line has one.
pub fn token_range(text: &str, line: u32, column: u32) -> Range {
    let l0 = line.saturating_sub(1);
    let Some(src) = line_of(text, l0) else {
        // Past the end (an error at EOF): the end of the last line.
        let last = text.split('\n').count().saturating_sub(1) as u32;
        let len = line_of(text, last).map_or(0, |l| utf16_of_char(l, usize::MAX));
        return Range::new(Position::new(last, len), Position::new(last, len));
    };
    let chars: Vec<char> = src.chars().collect();
    let start = (column.saturating_sub(1) as usize).min(chars.len());
    let mut end = start;
    match chars.get(start) {
        Some(&q @ ('"' | '\'')) => {
            end += 1;
            while end < chars.len() {
                let c = chars[end];
                end += 1;
                if c == '\\' && q == '"' {
                    end += 1;
                } else if c == q {
                    break;
                }
            }
        }
        Some(_) => {
            while end < chars.len() && !is_separator(chars[end]) {
                end += 1;
            }
            if end == start {
                end += 1;
            }
        }
        None => {}
    }
    let end = end.min(chars.len());
    Range::new(
        Position::new(l0, utf16_of_char(src, start)),
        Position::new(l0, utf16_of_char(src, end)),
    )
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | ':' | '=' | '{' | '}' | '[' | ']' | '#')
}

/// The path of a `file://` URI (percent-decoded); `None` for other schemes.
pub fn uri_to_path(uri: &Uri) -> Option<PathBuf> {
    let rest = uri.as_ref().strip_prefix("file://")?;
    // `file://host/path` is not local; `file:///path` and `file://localhost/path` are.
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// The `file://` URI of an absolute path, percent-encoding all but unreserved bytes and `/`.
pub fn path_to_uri(path: &Path) -> Uri {
    use std::os::unix::ffi::OsStrExt;
    let mut s = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    Uri::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_token() {
        let text = "[feature]\nenvv = true\nx = \"a b\" # c\n";
        assert_eq!(
            token_range(text, 2, 1),
            Range::new(Position::new(1, 0), Position::new(1, 4))
        );
        assert_eq!(
            token_range(text, 3, 5),
            Range::new(Position::new(2, 4), Position::new(2, 9))
        );
        // Past the end of the text: an empty range at the end.
        assert_eq!(
            token_range("a\nbc", 9, 1),
            Range::new(Position::new(1, 2), Position::new(1, 2))
        );
    }

    #[test]
    fn offsets_of_positions() {
        let text = "ab\r\né😀x\n";
        assert_eq!(offset_of(text, Position::new(0, 1)), 1);
        assert_eq!(offset_of(text, Position::new(0, 9)), 2);
        assert_eq!(offset_of(text, Position::new(1, 3)), 4 + 2 + 4);
        assert_eq!(offset_of(text, Position::new(2, 0)), text.len());
        assert_eq!(offset_of(text, Position::new(7, 0)), text.len());
    }

    #[test]
    fn utf16_columns() {
        let line = "é😀x";
        assert_eq!(utf16_of_char(line, 2), 3);
        assert_eq!(char_of_utf16(line, 3), 2);
        assert_eq!(char_of_utf16(line, 99), 3);
    }

    #[test]
    fn file_uris_round_trip() {
        let p = Path::new("/tmp/a b/.tether/tether.toml");
        let uri = path_to_uri(p);
        assert_eq!(uri.as_ref(), "file:///tmp/a%20b/.tether/tether.toml");
        assert_eq!(uri_to_path(&uri).unwrap(), p);
        assert_eq!(uri_to_path(&Uri::from("untitled:1")), None);
    }
}
