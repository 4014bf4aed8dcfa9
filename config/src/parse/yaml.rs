//! YAML through `saphyr-parser` events, resolving plain scalars with the YAML 1.2 core schema.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::{MAX_DEPTH, SyntaxError};
use crate::{
    diag::Pos,
    node::{Key, Node, Value},
};

pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
    };
    let mut doc = None;
    loop {
        let (event, span) = b.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                if doc.is_some() {
                    return Err(SyntaxError {
                        message: "invalid YAML: a config file holds one document".into(),
                        pos: pos(&span),
                    });
                }
                let (event, span) = b.next()?;
                if let Event::DocumentEnd = event {
                    continue;
                }
                doc = Some(b.node(event, span, 0)?);
            }
            _ => {}
        }
    }
    Ok(doc.filter(|n| n.value != Value::Null).unwrap_or(Node {
        value: Value::Object(Vec::new()),
        pos: Pos::new(1, 1),
    }))
}

fn pos(span: &Span) -> Pos {
    Pos::new(span.start.line() as u32, span.start.col() as u32 + 1)
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(e)) => Ok(e),
            Some(Err(e)) => Err(SyntaxError {
                message: format!("invalid YAML: {}", e.info()),
                pos: Pos::new(e.marker().line() as u32, e.marker().col() as u32 + 1),
            }),
            None => Ok((Event::StreamEnd, Span::default())),
        }
    }

    fn node(&mut self, event: Event<'a>, span: Span, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(SyntaxError {
                message: "invalid YAML: nested too deeply".into(),
                pos: pos(&span),
            });
        }
        let at = pos(&span);
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !forced_string {
                    resolve_plain(&text)
                } else {
                    Value::Str(text.into_owned())
                };
                (value, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if let Event::SequenceEnd = event {
                        break;
                    }
                    items.push(self.node(event, span, depth + 1)?);
                }
                (Value::Array(items), anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if let Event::MappingEnd = event {
                        break;
                    }
                    let key = self.node(event, span, depth + 1)?;
                    let name = match key.value {
                        Value::Str(s) => s,
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => String::new(),
                        Value::Array(_) | Value::Object(_) => {
                            return Err(SyntaxError {
                                message: "invalid YAML: keys must be plain strings".into(),
                                pos: key.pos,
                            });
                        }
                    };
                    let (event, span) = self.next()?;
                    let value = self.node(event, span, depth + 1)?;
                    entries.push((Key { name, pos: key.pos }, value));
                }
                (Value::Object(entries), anchor)
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                    message: "invalid YAML: unknown alias".into(),
                    pos: at,
                })?;
                return Ok(Node { pos: at, ..node });
            }
            _ => {
                return Err(SyntaxError {
                    message: "invalid YAML: unexpected event".into(),
                    pos: at,
                });
            }
        };
        let node = Node { value, pos: at };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

/// YAML 1.2 core schema for plain (unquoted) scalars.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | "+.inf" | ".Inf" | "+.Inf" | ".INF" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_or(Value::Float(f64::INFINITY), Value::Int);
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    if let Some(oct) = s.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Int(i);
    }
    let looks_numeric = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && unsigned.bytes().any(|b| b.is_ascii_digit())
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_numeric && let Ok(f) = s.parse::<f64>() {
        return Value::Float(f);
    }
    Value::Str(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_have_key_and_value_positions() {
        let n = parse("target: pod/a\nfeature:\n  network:\n    incoming: steal\n  ports: [1, \"2\", 0x10, 1.5, ~, yes]\n").unwrap();
        let Value::Object(top) = &n.value else {
            panic!()
        };
        assert_eq!(top[0].0.pos, Pos::new(1, 1));
        assert_eq!(top[0].1.pos, Pos::new(1, 9));
        assert_eq!(top[0].1.value, Value::Str("pod/a".into()));
        let Value::Object(feature) = &top[1].1.value else {
            panic!()
        };
        assert_eq!(feature[0].0.pos, Pos::new(3, 3));
        let Value::Array(ports) = &feature[1].1.value else {
            panic!()
        };
        let values: Vec<_> = ports.iter().map(|p| p.value.clone()).collect();
        assert_eq!(
            values,
            [
                Value::Int(1),
                Value::Str("2".into()),
                Value::Int(16),
                Value::Float(1.5),
                Value::Null,
                Value::Str("yes".into())
            ]
        );
    }

    #[test]
    fn aliases_and_empty_documents() {
        let n = parse("a: &x {b: 1}\nc: *x\n").unwrap();
        let Value::Object(top) = &n.value else {
            panic!()
        };
        assert_eq!(top[0].1.value, top[1].1.value);
        assert_eq!(parse("# nothing\n").unwrap().value, Value::Object(vec![]));
        assert_eq!(parse("").unwrap().value, Value::Object(vec![]));
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("a: b\n c: d\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML: "), "{}", e.message);
        assert_eq!(e.pos.line, 2);
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e.message, "invalid YAML: a config file holds one document");
    }
}
