//! A small JSON parser that keeps positions. Accepts `//` and `/* */` comments (as VS Code does
//! for its own JSON files); otherwise strict.

use super::{MAX_DEPTH, SyntaxError};
use crate::node::{Key, LineIndex, Node, Value};

pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        i: 0,
        lines: LineIndex::new(text),
    };
    p.skip_ws()?;
    if p.i == p.bytes.len() {
        return Ok(Node {
            value: Value::Object(Vec::new()),
            pos: p.lines.pos(0),
        });
    }
    let node = p.value(0)?;
    p.skip_ws()?;
    if p.i < p.bytes.len() {
        return Err(p.err("invalid JSON: unexpected text after the top-level value"));
    }
    Ok(node)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    i: usize,
    lines: LineIndex<'a>,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> SyntaxError {
        self.err_at(self.i, message)
    }

    fn err_at(&self, offset: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            message: message.into(),
            pos: self.lines.pos(offset),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    fn skip_ws(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.i += 1,
                Some(b'/') if self.bytes.get(self.i + 1) == Some(&b'/') => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.i += 1;
                    }
                }
                Some(b'/') if self.bytes.get(self.i + 1) == Some(&b'*') => {
                    let start = self.i;
                    match self.text[self.i + 2..].find("*/") {
                        Some(end) => self.i += 2 + end + 2,
                        None => return Err(self.err_at(start, "invalid JSON: unclosed comment")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn found(&self) -> String {
        match self.text[self.i..].chars().next() {
            None => "end of file".to_owned(),
            Some(c) => format!("`{c}`"),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.err("invalid JSON: nested too deeply"));
        }
        let start = self.i;
        let pos = self.lines.pos(start);
        let value = match self.peek() {
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => Value::Str(self.string()?),
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(b't') if self.text[self.i..].starts_with("true") => {
                self.i += 4;
                Value::Bool(true)
            }
            Some(b'f') if self.text[self.i..].starts_with("false") => {
                self.i += 5;
                Value::Bool(false)
            }
            Some(b'n') if self.text[self.i..].starts_with("null") => {
                self.i += 4;
                Value::Null
            }
            _ => {
                return Err(self.err(format!(
                    "invalid JSON: expected a value, found {}",
                    self.found()
                )));
            }
        };
        Ok(Node { value, pos })
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.i += 1;
        let mut entries = Vec::new();
        self.skip_ws()?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(entries));
        }
        loop {
            self.skip_ws()?;
            if self.peek() != Some(b'"') {
                return Err(self.err(format!(
                    "invalid JSON: expected a key in double quotes, found {}",
                    self.found()
                )));
            }
            let key_pos = self.lines.pos(self.i);
            let name = self.string()?;
            self.skip_ws()?;
            if self.peek() != Some(b':') {
                return Err(self.err(format!(
                    "invalid JSON: expected `:` after the key, found {}",
                    self.found()
                )));
            }
            self.i += 1;
            self.skip_ws()?;
            let value = self.value(depth + 1)?;
            entries.push((Key { name, pos: key_pos }, value));
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(entries));
                }
                _ => {
                    return Err(self.err(format!(
                        "invalid JSON: expected `,` or `}}`, found {}",
                        self.found()
                    )));
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws()?;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws()?;
            items.push(self.value(depth + 1)?);
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => {
                    return Err(self.err(format!(
                        "invalid JSON: expected `,` or `]`, found {}",
                        self.found()
                    )));
                }
            }
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.i..];
            let Some(c) = rest.chars().next() else {
                return Err(self.err_at(start, "invalid JSON: unclosed string"));
            };
            match c {
                '"' => {
                    self.i += 1;
                    return Ok(out);
                }
                '\\' => {
                    let esc = self.bytes.get(self.i + 1).copied();
                    self.i += 2;
                    match esc {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => out.push(self.unicode_escape()?),
                        _ => {
                            return Err(self.err_at(self.i - 2, "invalid JSON: invalid escape"));
                        }
                    }
                }
                c if (c as u32) < 0x20 => {
                    return Err(self.err("invalid JSON: control character in string"));
                }
                c => {
                    out.push(c);
                    self.i += c.len_utf8();
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self
            .text
            .get(self.i..self.i + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("invalid JSON: expected 4 hex digits after `\\u`"))?;
        self.i += 4;
        Ok(u32::from_str_radix(digits, 16).unwrap_or_default())
    }

    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let start = self.i - 2;
        let hi = self.hex4()?;
        let code = if (0xd800..0xdc00).contains(&hi) && self.text[self.i..].starts_with("\\u") {
            self.i += 2;
            let lo = self.hex4()?;
            if !(0xdc00..0xe000).contains(&lo) {
                return Err(self.err_at(start, "invalid JSON: invalid surrogate pair"));
            }
            0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
        } else {
            hi
        };
        char::from_u32(code)
            .ok_or_else(|| self.err_at(start, "invalid JSON: invalid unicode escape"))
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.i;
        let mut float = false;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.i += 1;
            }
            p.i - s
        };
        if digits(self) == 0 {
            return Err(self.err("invalid JSON: expected digits"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            float = true;
            if digits(self) == 0 {
                return Err(self.err("invalid JSON: expected digits after `.`"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            float = true;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.err("invalid JSON: expected digits in the exponent"));
            }
        }
        let text = &self.text[start..self.i];
        if !float && let Ok(i) = text.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        text.parse::<f64>()
            .map(Value::Float)
            .map_err(|_| self.err_at(start, "invalid JSON: invalid number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Pos;

    fn obj(n: &Node) -> &[(Key, Node)] {
        match &n.value {
            Value::Object(e) => e,
            v => panic!("not an object: {v:?}"),
        }
    }

    #[test]
    fn keys_and_values_have_positions() {
        let n = parse(
            "{\n  \"a\": [1, 2.5, \"x\\u00e9\\ud83d\\ude00\"],\n  // c\n  \"b\": {\"c\": null}\n}",
        )
        .unwrap();
        let e = obj(&n);
        assert_eq!(e[0].0.name, "a");
        assert_eq!(e[0].0.pos, Pos::new(2, 3));
        assert_eq!(e[0].1.pos, Pos::new(2, 8));
        let Value::Array(items) = &e[0].1.value else {
            panic!()
        };
        assert_eq!(items[0].value, Value::Int(1));
        assert_eq!(items[1].value, Value::Float(2.5));
        assert_eq!(items[2].value, Value::Str("xé😀".into()));
        assert_eq!(e[1].0.pos, Pos::new(4, 3));
        assert_eq!(obj(&e[1].1)[0].1.value, Value::Null);
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        let e = parse("{\n  \"a\": 1\n  \"b\": 2\n}").unwrap_err();
        assert_eq!(e.message, "invalid JSON: expected `,` or `}`, found `\"`");
        assert_eq!(e.pos, Pos::new(3, 3));
        let e = parse("{\"a\": tru}").unwrap_err();
        assert_eq!(e.pos, Pos::new(1, 7));
        let e = parse("{\"a\": \"x}").unwrap_err();
        assert_eq!(e.message, "invalid JSON: unclosed string");
        assert_eq!(e.pos, Pos::new(1, 7));
        assert!(parse("[1,]").is_err());
        assert!(parse("{} x").is_err());
        assert!(parse(&"[".repeat(100)).is_err());
    }

    #[test]
    fn empty_text_is_an_empty_object() {
        assert_eq!(parse("  \n").unwrap().value, Value::Object(vec![]));
    }
}
