//! TOML through `toml`'s spanned `DeTable`.

use ::toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::SyntaxError;
use crate::node::{Key, LineIndex, Node, Value};

pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let lines = LineIndex::new(text);
    let table = DeTable::parse(text).map_err(|e| SyntaxError {
        message: format!("invalid TOML: {}", e.message().trim_end_matches('.')),
        pos: lines.pos(e.span().map_or(0, |s| s.start)),
    })?;
    let pos = lines.pos(0);
    Ok(Node {
        value: table_value(table.get_ref(), &lines),
        pos,
    })
}

fn table_value(table: &DeTable<'_>, lines: &LineIndex<'_>) -> Value {
    Value::Object(
        table
            .iter()
            .map(|(k, v)| {
                let key = Key {
                    name: k.get_ref().to_string(),
                    pos: lines.pos(k.span().start),
                };
                (key, node(v, lines))
            })
            .collect(),
    )
}

fn node(v: &Spanned<DeValue<'_>>, lines: &LineIndex<'_>) -> Node {
    let value = match v.get_ref() {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            match i64::from_str_radix(&digits, i.radix()) {
                Ok(n) => Value::Int(n),
                // Out of i64 range: keep it a number so range errors say so.
                Err(_) => Value::Float(f64::INFINITY),
            }
        }
        DeValue::Float(f) => Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Str(d.to_string()),
        DeValue::Array(items) => Value::Array(items.iter().map(|i| node(i, lines)).collect()),
        DeValue::Table(t) => table_value(t, lines),
    };
    Node {
        value,
        pos: lines.pos(v.span().start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Pos;

    #[test]
    fn tables_and_keys_have_positions() {
        let n = parse("target = \"pod/a\"\n\n[feature.network]\nincoming = { mode = \"steal\" }\nports = [1, 0x10]\n").unwrap();
        let Value::Object(top) = &n.value else {
            panic!()
        };
        assert_eq!(top[0].0.name, "target");
        assert_eq!(top[0].0.pos, Pos::new(1, 1));
        assert_eq!(top[0].1.pos, Pos::new(1, 10));
        let Value::Object(feature) = &top[1].1.value else {
            panic!()
        };
        let Value::Object(network) = &feature[0].1.value else {
            panic!()
        };
        assert_eq!(network[0].0.name, "incoming");
        assert_eq!(network[0].0.pos, Pos::new(4, 1));
        let Value::Array(ports) = &network[1].1.value else {
            panic!()
        };
        assert_eq!(ports[1].value, Value::Int(16));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("a = 1\nb = \n").unwrap_err();
        assert!(e.message.starts_with("invalid TOML: "), "{}", e.message);
        assert_eq!(e.pos.line, 2);
    }
}
