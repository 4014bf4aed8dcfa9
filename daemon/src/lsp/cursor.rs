//! What the cursor is on in a config buffer that may not parse (it rarely does while the user
//! types): a key being typed under some object, or the value of some key. Each format gets a small
//! tolerant scanner of the text before the cursor; paths use the config crate's dotted form with
//! `[0]` for array items (`agent.tolerations[0]`), which its schema lookups accept.

use tether_config::Format;

/// The completion context at the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// A key of the object at `parent` (`""` is the top level) is being typed.
    Key {
        /// Dotted path of the object.
        parent: String,
        /// What is typed of the key so far.
        prefix: String,
        /// Inside quotes already.
        quoted: bool,
    },
    /// The value of the key at `path` is being typed.
    Value {
        /// Dotted path of the key.
        path: String,
        /// What is typed of the value so far (without the opening quote).
        prefix: String,
        /// Inside quotes already.
        quoted: bool,
    },
}

impl Cursor {
    /// What is typed so far: the text a completion replaces.
    pub fn prefix(&self) -> &str {
        match self {
            Cursor::Key { prefix, .. } | Cursor::Value { prefix, .. } => prefix,
        }
    }
}

/// The context at 0-based `line` and character `col` of `text`.
pub fn cursor_at(text: &str, format: Format, line: u32, col: usize) -> Option<Cursor> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let cur = *lines.get(line as usize)?;
    let before: String = cur.chars().take(col).collect();
    match format {
        Format::Toml => toml(&lines[..line as usize], &before),
        Format::Yaml => yaml(&lines[..line as usize], &before),
        Format::Json => {
            let mut head: String = lines[..line as usize]
                .iter()
                .flat_map(|l| [*l, "\n"])
                .collect();
            head.push_str(&before);
            json(&head)
        }
    }
}

/// Keys the object at `parent` already has, from the lines other than `skip_line` (the one being
/// typed), so that completion does not offer them twice. Empty for items of arrays (every item
/// has the same path) and for texts too large to rescan on each keystroke.
pub fn existing_keys(
    text: &str,
    format: Format,
    parent: &str,
    skip_line: u32,
) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    if parent.contains('[') || text.len() > 16 * 1024 {
        return out;
    }
    let separators: &[char] = match format {
        Format::Toml => &['=', ']'],
        Format::Json | Format::Yaml => &[':'],
    };
    for (l, line) in text.split('\n').enumerate() {
        if l == skip_line as usize {
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if !separators.contains(c) {
                continue;
            }
            // Back over spaces and a closing quote to the end of the key.
            let mut end = i;
            while end > 0 && chars[end - 1] == ' ' {
                end -= 1;
            }
            if end > 0 && matches!(chars[end - 1], '"' | '\'') {
                end -= 1;
            }
            if end == 0 || !is_bare_key(chars[end - 1]) {
                continue;
            }
            if let Some(Cursor::Key {
                parent: p, prefix, ..
            }) = cursor_at(text, format, l as u32, end)
                && p == parent
                && !prefix.is_empty()
            {
                out.insert(prefix);
            }
        }
    }
    out
}

fn join(path: &[String]) -> String {
    path.join(".")
}

/// The path of an array's items: `a.b` -> `a.b[0]`.
fn item(path: &[String]) -> Vec<String> {
    let mut p = path.to_vec();
    match p.last_mut() {
        Some(last) => last.push_str("[0]"),
        None => p.push("[0]".into()),
    }
    p
}

enum Frame {
    Object(Vec<String>),
    Array(Vec<String>),
}

impl Frame {
    fn path(&self) -> &[String] {
        match self {
            Frame::Object(p) | Frame::Array(p) => p,
        }
    }
}

enum Mode {
    Key,
    Value(Vec<String>),
    After,
}

/// Reads a quoted string starting after its opening quote at `*i`; `Err(content)` when it is
/// still open at the end.
fn read_quoted(chars: &[char], i: &mut usize, quote: char) -> Result<String, String> {
    let mut s = String::new();
    while *i < chars.len() {
        let c = chars[*i];
        *i += 1;
        if c == '\\' && quote == '"' {
            if let Some(&n) = chars.get(*i) {
                s.push(n);
                *i += 1;
            }
        } else if c == quote {
            return Ok(s);
        } else if c == '\n' {
            // Strings do not span lines: treat the line break as the end.
            return Ok(s);
        } else {
            s.push(c);
        }
    }
    Err(s)
}

/// Where a flow scanner goes after one step: the next mode, or `Err` with the answer to give now
/// (a cursor when the text ends inside a value, `None` when nothing can be completed).
type Step = Result<Mode, Option<Cursor>>;

/// What the flow syntaxes (TOML inline tables and arrays, JSON) differ in.
struct Flow {
    /// Characters that open (and close) a string.
    quotes: &'static [char],
    /// Characters that end a bare scalar.
    ends_scalar: fn(char) -> bool,
}

const TOML_FLOW: Flow = Flow {
    quotes: &['"', '\''],
    ends_scalar: |c| matches!(c, ',' | '}' | ']' | '#' | ' ' | '\t'),
};

const JSON_FLOW: Flow = Flow {
    quotes: &['"'],
    ends_scalar: |c| matches!(c, ',' | '}' | ']') || c.is_whitespace(),
};

/// One step at `c = chars[*i]` in value position (`p` is the value's path): containers open,
/// strings and bare scalars are read.
fn value_step(
    chars: &[char],
    i: &mut usize,
    stack: &mut Vec<Frame>,
    p: Vec<String>,
    c: char,
    flow: &Flow,
) -> Step {
    match c {
        '{' => {
            stack.push(Frame::Object(p));
            *i += 1;
            Ok(Mode::Key)
        }
        '[' => {
            let first = Mode::Value(item(&p));
            stack.push(Frame::Array(p));
            *i += 1;
            Ok(first)
        }
        ']' => {
            stack.pop();
            *i += 1;
            Ok(Mode::After)
        }
        q if flow.quotes.contains(&q) => {
            *i += 1;
            match read_quoted(chars, i, q) {
                Ok(_) => Ok(Mode::After),
                Err(prefix) => Err(Some(Cursor::Value {
                    path: join(&p),
                    prefix,
                    quoted: true,
                })),
            }
        }
        _ => {
            let start = *i;
            while *i < chars.len() && !(flow.ends_scalar)(chars[*i]) {
                *i += 1;
            }
            if *i == chars.len() {
                return Err(Some(Cursor::Value {
                    path: join(&p),
                    prefix: chars[start..].iter().collect(),
                    quoted: false,
                }));
            }
            Ok(Mode::After)
        }
    }
}

/// One step at `c` after a value: the next item or key, or the end of a container.
fn after_step(i: &mut usize, stack: &mut Vec<Frame>, c: char) -> Step {
    match c {
        ',' => {
            *i += 1;
            match stack.last() {
                Some(Frame::Object(_)) => Ok(Mode::Key),
                Some(Frame::Array(p)) => Ok(Mode::Value(item(p))),
                None => Err(None),
            }
        }
        '}' | ']' => {
            stack.pop().ok_or(None)?;
            *i += 1;
            Ok(Mode::After)
        }
        _ => Err(None),
    }
}

fn is_bare_key(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

// ---- TOML ----

fn toml(above: &[&str], before: &str) -> Option<Cursor> {
    let trimmed = before.trim_start();
    if let Some(h) = trimmed.strip_prefix('[') {
        // A table header being typed.
        let h = h.trim_start_matches('[');
        if h.contains(']') {
            return None;
        }
        let mut segs = split_dotted(h);
        let prefix = segs.pop().unwrap_or_default();
        return Some(Cursor::Key {
            parent: join(&segs),
            prefix,
            quoted: false,
        });
    }
    let base = above
        .iter()
        .rev()
        .find_map(|l| toml_header(l))
        .unwrap_or_default();
    let chars: Vec<char> = before.chars().collect();
    let mut stack = vec![Frame::Object(base)];
    let mut mode = Mode::Key;
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let top = stack.last()?.path().to_vec();
        if i == chars.len() {
            return match mode {
                Mode::Key => Some(Cursor::Key {
                    parent: join(&top),
                    prefix: String::new(),
                    quoted: false,
                }),
                Mode::Value(p) => Some(Cursor::Value {
                    path: join(&p),
                    prefix: String::new(),
                    quoted: false,
                }),
                Mode::After => None,
            };
        }
        let c = chars[i];
        if c == '#' {
            return None;
        }
        match mode {
            Mode::Key => {
                if c == '}' {
                    stack.pop();
                    i += 1;
                    mode = Mode::After;
                    continue;
                }
                let mut segs = top.clone();
                loop {
                    let seg = match chars.get(i) {
                        Some(&q @ ('"' | '\'')) => {
                            i += 1;
                            match read_quoted(&chars, &mut i, q) {
                                Ok(s) => s,
                                Err(prefix) => {
                                    return Some(Cursor::Key {
                                        parent: join(&segs),
                                        prefix,
                                        quoted: true,
                                    });
                                }
                            }
                        }
                        _ => {
                            let start = i;
                            while i < chars.len() && is_bare_key(chars[i]) {
                                i += 1;
                            }
                            let s: String = chars[start..i].iter().collect();
                            if i == chars.len() {
                                return Some(Cursor::Key {
                                    parent: join(&segs),
                                    prefix: s,
                                    quoted: false,
                                });
                            }
                            s
                        }
                    };
                    segs.push(seg);
                    while i < chars.len() && chars[i].is_whitespace() {
                        i += 1;
                    }
                    match chars.get(i) {
                        Some('.') => {
                            i += 1;
                            while i < chars.len() && chars[i].is_whitespace() {
                                i += 1;
                            }
                            if i == chars.len() {
                                return Some(Cursor::Key {
                                    parent: join(&segs),
                                    prefix: String::new(),
                                    quoted: false,
                                });
                            }
                        }
                        Some('=') => {
                            i += 1;
                            mode = Mode::Value(segs);
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            Mode::Value(p) => match value_step(&chars, &mut i, &mut stack, p, c, &TOML_FLOW) {
                Ok(m) => mode = m,
                Err(answer) => return answer,
            },
            Mode::After => match after_step(&mut i, &mut stack, c) {
                Ok(m) => mode = m,
                Err(answer) => return answer,
            },
        }
    }
}

/// `[a.b]` -> `a.b`; `[[a.b]]` -> `a.b[0]`.
fn toml_header(line: &str) -> Option<Vec<String>> {
    let t = line.trim();
    if let Some(inner) = t.strip_prefix("[[") {
        let inner = inner.split("]]").next()?;
        return Some(item(&split_dotted(inner)));
    }
    let inner = t.strip_prefix('[')?.split(']').next()?;
    Some(split_dotted(inner))
}

/// `a."b.c".d` -> `[a, b.c, d]` (an unfinished last segment is kept, possibly empty).
fn split_dotted(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quote = None;
    for c in s.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => out.push(String::new()),
            (None, c) if c.is_whitespace() => {}
            (_, c) => out.last_mut().expect("never empty").push(c),
        }
    }
    out
}

// ---- JSON ----

fn json(head: &str) -> Option<Cursor> {
    let chars: Vec<char> = head.chars().collect();
    let mut stack: Vec<Frame> = Vec::new();
    let mut mode = Mode::Value(Vec::new());
    let mut i = 0;
    loop {
        // Whitespace and comments (the config crate's JSON allows them).
        loop {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if chars.get(i) == Some(&'/') && chars.get(i + 1) == Some(&'/') {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if chars.get(i) == Some(&'/') && chars.get(i + 1) == Some(&'*') {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                if i == chars.len() {
                    return None;
                }
                i += 2;
            } else {
                break;
            }
        }
        let top = stack.last().map(|f| f.path().to_vec()).unwrap_or_default();
        if i == chars.len() {
            return match mode {
                Mode::Key => Some(Cursor::Key {
                    parent: join(&top),
                    prefix: String::new(),
                    quoted: false,
                }),
                Mode::Value(p) if !stack.is_empty() => Some(Cursor::Value {
                    path: join(&p),
                    prefix: String::new(),
                    quoted: false,
                }),
                _ => None,
            };
        }
        let c = chars[i];
        match mode {
            Mode::Key => match c {
                '}' => {
                    stack.pop();
                    i += 1;
                    mode = Mode::After;
                }
                '"' => {
                    i += 1;
                    let key = match read_quoted(&chars, &mut i, '"') {
                        Ok(k) => k,
                        Err(prefix) => {
                            return Some(Cursor::Key {
                                parent: join(&top),
                                prefix,
                                quoted: true,
                            });
                        }
                    };
                    while i < chars.len() && chars[i].is_whitespace() {
                        i += 1;
                    }
                    if chars.get(i) != Some(&':') {
                        return None;
                    }
                    i += 1;
                    let mut p = top;
                    p.push(key);
                    mode = Mode::Value(p);
                }
                c if is_bare_key(c) => {
                    let start = i;
                    while i < chars.len() && is_bare_key(chars[i]) {
                        i += 1;
                    }
                    if i < chars.len() {
                        return None;
                    }
                    return Some(Cursor::Key {
                        parent: join(&top),
                        prefix: chars[start..].iter().collect(),
                        quoted: false,
                    });
                }
                _ => return None,
            },
            Mode::Value(p) => match value_step(&chars, &mut i, &mut stack, p, c, &JSON_FLOW) {
                Ok(m) => mode = m,
                Err(answer) => return answer,
            },
            Mode::After => match after_step(&mut i, &mut stack, c) {
                Ok(m) => mode = m,
                Err(answer) => return answer,
            },
        }
    }
}

// ---- YAML (block style) ----

/// Leading `- ` markers of a line: (column of the last dash, column of the content, content).
fn strip_dashes(line: &str) -> (Option<usize>, usize, &str) {
    let t = line.trim_start_matches(' ');
    let mut col = line.len() - t.len();
    let mut rest = t;
    let mut dash = None;
    loop {
        if let Some(r) = rest.strip_prefix("- ") {
            dash = Some(col);
            let r2 = r.trim_start_matches(' ');
            col += 2 + (r.len() - r2.len());
            rest = r2;
        } else if rest == "-" {
            dash = Some(col);
            col += 1;
            rest = "";
        } else {
            return (dash, col, rest);
        }
    }
}

/// `key: value` -> (key, value); `key:` -> (key, ""). The colon must be followed by a space or
/// the end, outside quotes.
fn split_key(s: &str) -> Option<(String, &str)> {
    let (key, rest) = if let Some(q @ ('"' | '\'')) = s.chars().next() {
        let end = s[1..].find(q)? + 1;
        (s[1..end].to_owned(), &s[end + 1..])
    } else {
        let idx = s.char_indices().find_map(|(i, c)| {
            (c == ':' && s[i + 1..].chars().next().is_none_or(|n| n == ' ')).then_some(i)
        })?;
        (s[..idx].trim_end().to_owned(), &s[idx..])
    };
    let rest = rest.trim_start_matches(' ').strip_prefix(':')?;
    Some((key, rest.trim_start_matches(' ')))
}

fn yaml(above: &[&str], before: &str) -> Option<Cursor> {
    let (dash, key_col, rest) = strip_dashes(before);
    if rest.starts_with('#') {
        return None;
    }
    let parent = yaml_parent(above, key_col, dash);
    match split_key(rest) {
        Some((key, value)) => {
            if value.trim_start().starts_with('#') {
                return None;
            }
            let mut path = parent;
            path.push(key);
            let (prefix, quoted) = match value.chars().next() {
                Some('"' | '\'') => (value[1..].to_owned(), true),
                _ => (value.to_owned(), false),
            };
            Some(Cursor::Value {
                path: join(&path),
                prefix,
                quoted,
            })
        }
        None => {
            let (prefix, quoted) = match rest.chars().next() {
                Some('"' | '\'') => (rest[1..].to_owned(), true),
                _ => (rest.to_owned(), false),
            };
            Some(Cursor::Key {
                parent: join(&parent),
                prefix,
                quoted,
            })
        }
    }
}

/// The path of the mapping a key at column `key_col` belongs to, found through the lines above
/// with smaller indentation (`dash`: the key's line starts a list item at that column).
fn yaml_parent(above: &[&str], key_col: usize, dash: Option<usize>) -> Vec<String> {
    let mut segs: Vec<String> = Vec::new();
    let (mut target, mut in_item) = match dash {
        Some(d) => (d, true),
        None => (key_col, false),
    };
    for line in above.iter().rev() {
        if target == 0 && !in_item {
            break;
        }
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with("---") {
            continue;
        }
        let (line_dash, col, rest) = strip_dashes(line);
        if !in_item
            && let Some(d) = line_dash
            && col == target
        {
            // The start of the list item holding the key.
            in_item = true;
            target = d;
            continue;
        }
        let above_target = if in_item { col <= target } else { col < target };
        if !above_target {
            continue;
        }
        let Some((key, value)) = split_key(rest) else {
            continue;
        };
        if !(value.is_empty() || value.starts_with('#')) {
            continue;
        }
        segs.insert(0, if in_item { format!("{key}[0]") } else { key });
        match line_dash {
            Some(d) => {
                in_item = true;
                target = d;
            }
            None => {
                in_item = false;
                target = col;
            }
        }
    }
    segs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, format: Format) -> Option<Cursor> {
        // The cursor is where `|` is.
        let (line, col) = text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find('|').map(|c| (i as u32, l[..c].chars().count())))
            .unwrap();
        cursor_at(&text.replace('|', ""), format, line, col)
    }

    fn key(parent: &str, prefix: &str, quoted: bool) -> Option<Cursor> {
        Some(Cursor::Key {
            parent: parent.into(),
            prefix: prefix.into(),
            quoted,
        })
    }

    fn value(path: &str, prefix: &str, quoted: bool) -> Option<Cursor> {
        Some(Cursor::Value {
            path: path.into(),
            prefix: prefix.into(),
            quoted,
        })
    }

    #[test]
    fn keys_already_there() {
        let sorted = |set: std::collections::HashSet<String>| {
            let mut v: Vec<String> = set.into_iter().collect();
            v.sort();
            v
        };
        let toml = "[feature]\nenv = true\nfs = { mode = \"read\" }\n\n[feature.network]\n";
        assert_eq!(
            sorted(existing_keys(toml, Format::Toml, "feature", 3)),
            ["env", "fs", "network"]
        );
        assert_eq!(
            sorted(existing_keys(toml, Format::Toml, "feature.fs", 3)),
            ["mode"]
        );
        let json = "{\n  \"agent\": {\"ttl\": 1},\n  \"target\": \"pod/a\",\n  \n}";
        assert_eq!(
            sorted(existing_keys(json, Format::Json, "", 3)),
            ["agent", "target"]
        );
        let yaml = "agent:\n  ttl: 1\n  \nfeature:\n  env: true\n";
        assert_eq!(
            sorted(existing_keys(yaml, Format::Yaml, "agent", 2)),
            ["ttl"]
        );
        assert_eq!(
            sorted(existing_keys(yaml, Format::Yaml, "", 2)),
            ["agent", "feature"]
        );
    }

    #[test]
    fn toml_contexts() {
        let t = Format::Toml;
        assert_eq!(at("|", t), key("", "", false));
        assert_eq!(at("ta|", t), key("", "ta", false));
        assert_eq!(
            at("[feature.network]\nin|", t),
            key("feature.network", "in", false)
        );
        assert_eq!(at("[feature.ne|", t), key("feature", "ne", false));
        assert_eq!(
            at("[feature]\nnetwork.incoming.mo|", t),
            key("feature.network.incoming", "mo", false)
        );
        assert_eq!(
            at("[feature.network]\nincoming = { mode = \"st|", t),
            value("feature.network.incoming.mode", "st", true)
        );
        assert_eq!(
            at("[feature.network]\nincoming = { mode = \"steal\", po|", t),
            key("feature.network.incoming", "po", false)
        );
        assert_eq!(at("target = |", t), value("target", "", false));
        assert_eq!(at("target = \"pod/|", t), value("target", "pod/", true));
        assert_eq!(
            at("[[agent.tolerations]]\nop|", t),
            key("agent.tolerations[0]", "op", false)
        );
        assert_eq!(
            at("skip_processes = [\"a\", \"|", t),
            value("skip_processes[0]", "", true)
        );
        assert_eq!(at("target = \"x\" |", t), None);
        assert_eq!(at("# ta|", t), None);
    }

    #[test]
    fn json_contexts() {
        let j = Format::Json;
        assert_eq!(at("{|", j), key("", "", false));
        assert_eq!(at("{\"ta|", j), key("", "ta", true));
        assert_eq!(
            at(
                "{\n  \"feature\": {\n    \"network\": {\"incoming\": {\"mode\": \"mi|",
                j
            ),
            value("feature.network.incoming.mode", "mi", true)
        );
        assert_eq!(
            at("{\"feature\": {\"env\": true, \"|", j),
            key("feature", "", true)
        );
        assert_eq!(
            at("{\"feature\": {\"env\": {}}, \"ag|", j),
            key("", "ag", true)
        );
        assert_eq!(
            at("{\"agent\": {\"tolerations\": [{\"op|", j),
            key("agent.tolerations[0]", "op", true)
        );
        assert_eq!(
            at("{ // c\n \"target\": \"pod/a|", j),
            value("target", "pod/a", true)
        );
        assert_eq!(at("{\"target\": \"pod/a\" |", j), None);
    }

    #[test]
    fn yaml_contexts() {
        let y = Format::Yaml;
        assert_eq!(at("|", y), key("", "", false));
        assert_eq!(at("feature:\n  ne|", y), key("feature", "ne", false));
        assert_eq!(
            at("feature:\n  network:\n    incoming:\n      mode: st|", y),
            value("feature.network.incoming.mode", "st", false)
        );
        assert_eq!(
            at(
                "feature:\n  network:\n    incoming:\n      mode: steal\n  e|",
                y
            ),
            key("feature", "e", false)
        );
        assert_eq!(
            at("agent:\n  tolerations:\n    - key: a\n      op|", y),
            key("agent.tolerations[0]", "op", false)
        );
        assert_eq!(
            at("agent:\n  tolerations:\n  - op|", y),
            key("agent.tolerations[0]", "op", false)
        );
        assert_eq!(at("target: \"pod/|", y), value("target", "pod/", true));
        assert_eq!(at("target:\n  path: |", y), value("target.path", "", false));
    }
}
