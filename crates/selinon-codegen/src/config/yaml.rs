//! The YAML layer: turns a file into a tree of [`Node`]s that each know where they came from.
//!
//! This is the one module that knows which YAML parser we use (`saphyr-parser`, an event parser
//! that reports a span for every event). On top of its events we build the tree with the rules
//! upstream Selinon gets from PyYAML's `safe_load`, which real configurations rely on:
//! YAML 1.1 scalar resolution (`True`, `yes`, `0x1F`, `1_000`), anchors and aliases, merge keys
//! (`<<: *anchor`, explicit keys win, earlier merges win over later ones), and a key repeated in
//! one mapping keeping its last value (reported as a warning here).

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YamlSpan};

use crate::diagnostics::{Diagnostic, Diagnostics, FileId, Reported, Span};

/// Aliases may be nested (an alias of a mapping that holds aliases); a hostile file can make the
/// expansion exponential. Past this many nodes the file is rejected.
const MAX_NODES: usize = 1_000_000;
/// Deeper nesting than this is certainly not a Selinon configuration; it is rejected rather than
/// risking the stack.
const MAX_DEPTH: usize = 128;

/// One YAML node with the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the node was written.
    pub span: Span,
    /// The resolved value.
    pub value: Value,
}

/// A YAML value after PyYAML-compatible resolution.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or an empty value.
    Null,
    /// `true`/`false` (and the other spellings PyYAML accepts).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (any scalar that resolves to no other type).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, entries in the order written.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The value's kind, as a user would name it in a message ("a string", "a list", ...).
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The text of a string node; `None` for any other kind.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the node is null (an empty value counts).
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Looks a string key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as JSON. YAML allows what JSON does not (non-string keys, NaN); those are
    /// written in the nearest JSON form: keys as their text, NaN and infinities as null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The text of a mapping key as Python would print it with `str()`.
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Null => "None".into(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
            Value::Seq(_) | Value::Map(_) => format!("<{}>", self.kind()),
        }
    }
}

/// Parses one YAML file. Returns `None` for an empty file (no document, or a document that is
/// only a comment); every problem goes to `diags`.
pub fn parse(file: FileId, text: &str, diags: &mut Diagnostics) -> Result<Option<Node>, Reported> {
    let lines: Vec<&str> = text.lines().collect();
    let last_line = (
        lines.len().max(1),
        lines.last().map_or(0, |l| l.chars().count()),
    );
    let mut builder = Builder {
        file,
        text,
        last_line,
        diags,
        anchors: Vec::new(),
        nodes: 0,
    };
    builder.run()
}

enum Frame {
    Seq {
        span: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        span: Span,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

struct Builder<'a, 'd> {
    file: FileId,
    text: &'a str,
    /// The last line's number and length in characters.
    last_line: (usize, usize),
    diags: &'d mut Diagnostics,
    anchors: Vec<(usize, Node)>,
    nodes: usize,
}

impl Builder<'_, '_> {
    fn span(&self, s: YamlSpan) -> Span {
        // The parser reports the end of input one line past the last one; keep every place on
        // a line of the file so all renderings agree.
        let (last_line, last_len) = self.last_line;
        let clamp = |line: usize, col: usize| {
            if line > last_line {
                (last_line, last_len)
            } else {
                (line, col)
            }
        };
        Span::from_chars(
            self.file,
            self.text,
            clamp(s.start.line(), s.start.col()),
            clamp(s.end.line(), s.end.col()),
        )
    }

    fn error(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(span, message).with_help(help));
    }

    fn run(&mut self) -> Result<Option<Node>, Reported> {
        let mut parser = Parser::new_from_str(self.text);
        let mut stack: Vec<Frame> = Vec::new();
        let mut document: Option<Node> = None;
        let mut documents = 0usize;
        loop {
            let (event, yspan) = match parser.next_event() {
                None => break,
                Some(Ok(pair)) => pair,
                Some(Err(err)) => {
                    let m = err.marker();
                    let span = self.span(YamlSpan::empty(*m));
                    self.error(
                        span,
                        format!("malformed YAML: {}", err.info()),
                        "fix the YAML syntax at this position (indentation, quotes, brackets)",
                    );
                    return Err(Reported);
                }
            };
            let span = self.span(yspan);
            let completed: Option<(Node, usize)> = match event {
                Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        self.error(
                            span,
                            "this file holds more than one YAML document",
                            "a Selinon configuration file is one document: remove the second `---` or split the file",
                        );
                        return Err(Reported);
                    }
                    None
                }
                Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                    Some((_, node)) => {
                        let node = node.clone();
                        self.nodes += count_nodes(&node);
                        Some((node, 0))
                    }
                    None => {
                        self.error(
                            span,
                            "alias to an anchor that is not defined before it",
                            "define the anchor (`&name`) before using the alias (`*name`)",
                        );
                        return Err(Reported);
                    }
                },
                Event::Scalar(text, style, anchor, tag) => {
                    let value = self.resolve_scalar(&text, style, tag.as_deref(), span)?;
                    self.nodes += 1;
                    Some((Node { span, value }, anchor))
                }
                Event::SequenceStart(anchor, tag) => {
                    self.check_collection_tag(tag.as_deref(), "seq", span)?;
                    if stack.len() >= MAX_DEPTH {
                        self.error(
                            span,
                            format!("YAML nested deeper than {MAX_DEPTH} levels"),
                            "a Selinon configuration is never this deep: check the file",
                        );
                        return Err(Reported);
                    }
                    stack.push(Frame::Seq {
                        span,
                        anchor,
                        items: Vec::new(),
                    });
                    None
                }
                Event::MappingStart(anchor, tag) => {
                    self.check_collection_tag(tag.as_deref(), "map", span)?;
                    if stack.len() >= MAX_DEPTH {
                        self.error(
                            span,
                            format!("YAML nested deeper than {MAX_DEPTH} levels"),
                            "a Selinon configuration is never this deep: check the file",
                        );
                        return Err(Reported);
                    }
                    stack.push(Frame::Map {
                        span,
                        anchor,
                        entries: Vec::new(),
                        pending_key: None,
                    });
                    None
                }
                Event::SequenceEnd => match stack.pop() {
                    Some(Frame::Seq {
                        span: start,
                        anchor,
                        items,
                    }) => {
                        self.nodes += 1;
                        Some((
                            Node {
                                span: start,
                                value: Value::Seq(items),
                            },
                            anchor,
                        ))
                    }
                    _ => {
                        self.internal(span);
                        return Err(Reported);
                    }
                },
                Event::MappingEnd => match stack.pop() {
                    Some(Frame::Map {
                        span: start,
                        anchor,
                        entries,
                        ..
                    }) => {
                        let entries = self.flatten_mapping(entries)?;
                        self.nodes += 1;
                        Some((
                            Node {
                                span: start,
                                value: Value::Map(entries),
                            },
                            anchor,
                        ))
                    }
                    _ => {
                        self.internal(span);
                        return Err(Reported);
                    }
                },
            };
            if self.nodes > MAX_NODES {
                self.error(
                    span,
                    format!("YAML expands to more than {MAX_NODES} nodes through its aliases"),
                    "a Selinon configuration is never this large: check the anchors and aliases",
                );
                return Err(Reported);
            }
            let Some((node, anchor)) = completed else {
                continue;
            };
            if anchor != 0 {
                self.anchors.push((anchor, node.clone()));
            }
            match stack.last_mut() {
                None => document = Some(node),
                Some(Frame::Seq { items, .. }) => items.push(node),
                Some(Frame::Map {
                    entries,
                    pending_key,
                    ..
                }) => match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => entries.push((key, node)),
                },
            }
        }
        Ok(document)
    }

    fn internal(&mut self, span: Span) {
        self.error(
            span,
            "the YAML parser produced an unbalanced document",
            "check the file's brackets and indentation",
        );
    }

    fn check_collection_tag(
        &mut self,
        tag: Option<&saphyr_parser::Tag>,
        expected: &str,
        span: Span,
    ) -> Result<(), Reported> {
        match tag {
            None => Ok(()),
            Some(t) if t.handle == "tag:yaml.org,2002:" || t.handle == "!!" => {
                if t.suffix == expected || (expected == "map" && t.suffix == "omap") {
                    Ok(())
                } else {
                    self.error(
                        span,
                        format!("tag `!!{}` does not fit this value", t.suffix),
                        "remove the tag",
                    );
                    Err(Reported)
                }
            }
            Some(t) => {
                self.error(
                    span,
                    format!("unsupported YAML tag `{}{}`", t.handle, t.suffix),
                    "Selinon configurations are read with safe loading: remove the tag",
                );
                Err(Reported)
            }
        }
    }

    /// PyYAML's `flatten_mapping`: values merged in through `<<` come first and are overridden
    /// by the mapping's own keys; of several merged mappings the earlier one wins. A key
    /// written twice keeps its last value, and the repetition is reported as a warning.
    fn flatten_mapping(
        &mut self,
        entries: Vec<(Node, Node)>,
    ) -> Result<Vec<(Node, Node)>, Reported> {
        let mut merged: Vec<(Node, Node)> = Vec::new();
        let mut own: Vec<(Node, Node)> = Vec::new();
        for (key, value) in entries {
            if key.as_str() == Some("<<") && !matches!(key.value, Value::Null) {
                let sources: Vec<Node> = match value.value {
                    Value::Map(_) => vec![value],
                    Value::Seq(items) => items,
                    _ => {
                        self.error(
                            value.span,
                            format!(
                                "a merge key `<<` needs a mapping or a list of mappings, found {}",
                                value.kind()
                            ),
                            "write `<<: *anchor` where the anchor names a mapping",
                        );
                        return Err(Reported);
                    }
                };
                // Earlier merge sources win: insert them last-to-first, each overriding.
                let mut from_merge: Vec<(Node, Node)> = Vec::new();
                for source in sources.into_iter().rev() {
                    let Value::Map(pairs) = source.value else {
                        self.error(
                            source.span,
                            format!("a merge key `<<` needs mappings, found {}", source.kind()),
                            "write `<<: *anchor` where the anchor names a mapping",
                        );
                        return Err(Reported);
                    };
                    for (k, v) in pairs {
                        upsert(&mut from_merge, k, v);
                    }
                }
                for (k, v) in from_merge {
                    upsert(&mut merged, k, v);
                }
            } else {
                if let Some((first, _)) = own.iter().find(|(k, _)| same_key(k, &key)) {
                    let first_line = first.span.line;
                    self.diags.push(
                        Diagnostic::warning(
                            key.span,
                            format!(
                                "key `{}` is repeated in this mapping (first at line {first_line}); the last value is used",
                                key.key_text()
                            ),
                        )
                        .with_help("remove one of the two entries"),
                    );
                }
                upsert(&mut own, key, value);
            }
        }
        for (k, v) in own {
            upsert(&mut merged, k, v);
        }
        Ok(merged)
    }

    fn resolve_scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&saphyr_parser::Tag>,
        span: Span,
    ) -> Result<Value, Reported> {
        if let Some(tag) = tag {
            if tag.handle != "tag:yaml.org,2002:" && tag.handle != "!!" {
                // A non-specific tag `!` forces a string, as in PyYAML.
                if tag.handle == "!" && tag.suffix.is_empty() {
                    return Ok(Value::Str(text.to_string()));
                }
                self.error(
                    span,
                    format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
                    "Selinon configurations are read with safe loading: remove the tag",
                );
                return Err(Reported);
            }
            let resolved = match tag.suffix.as_str() {
                "str" => Some(Value::Str(text.to_string())),
                "null" => resolve_plain(text).filter(|v| *v == Value::Null),
                "bool" => resolve_plain(text).filter(|v| matches!(v, Value::Bool(_))),
                "int" => resolve_plain(text).filter(|v| matches!(v, Value::Int(_))),
                "float" => match resolve_plain(text) {
                    Some(Value::Float(f)) => Some(Value::Float(f)),
                    Some(Value::Int(i)) => Some(Value::Float(i as f64)),
                    _ => None,
                },
                _ => None,
            };
            return match resolved {
                Some(v) => Ok(v),
                None => {
                    self.error(
                        span,
                        format!("`{}` cannot be read as `!!{}`", text, tag.suffix),
                        "remove the tag or fix the value",
                    );
                    Err(Reported)
                }
            };
        }
        if style != ScalarStyle::Plain {
            return Ok(Value::Str(text.to_string()));
        }
        Ok(resolve_plain(text).unwrap_or_else(|| Value::Str(text.to_string())))
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

fn same_key(a: &Node, b: &Node) -> bool {
    a.value == b.value
}

fn upsert(entries: &mut Vec<(Node, Node)>, key: Node, value: Node) {
    match entries.iter_mut().find(|(k, _)| same_key(k, &key)) {
        Some(slot) => slot.1 = value,
        None => entries.push((key, value)),
    }
}

/// YAML 1.1 resolution of a plain scalar, as PyYAML's `SafeLoader` does it. `None` means "a
/// string".
pub(crate) fn resolve_plain(text: &str) -> Option<Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Some(Value::Bool(true))
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Some(Value::Bool(false))
        }
        _ => {}
    }
    if let Some(i) = resolve_int(text) {
        return Some(Value::Int(i));
    }
    resolve_float(text).map(Value::Float)
}

fn split_sign(text: &str) -> (i64, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    }
}

fn resolve_int(text: &str) -> Option<i64> {
    let (sign, body) = split_sign(text);
    if body.is_empty() {
        return None;
    }
    let digits: String = body.chars().filter(|c| *c != '_').collect();
    if body.starts_with('_') || digits.is_empty() {
        return None;
    }
    let magnitude = if let Some(bin) = digits.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return None;
        }
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else if digits.contains(':') {
        // Sexagesimal: 190:20:30.
        let mut value: i64 = 0;
        let mut first = true;
        for part in digits.split(':') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if !first && (part.len() > 2 || part.parse::<i64>().ok()? > 59) {
                return None;
            }
            if first && part.starts_with('0') && part.len() > 1 {
                return None;
            }
            first = false;
            value = value
                .checked_mul(60)?
                .checked_add(part.parse::<i64>().ok()?)?;
        }
        value
    } else {
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i64>().ok()?
    };
    magnitude.checked_mul(sign)
}

fn resolve_float(text: &str) -> Option<f64> {
    match text {
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let (sign, body) = split_sign(text);
    let sign = sign as f64;
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        _ => {}
    }
    // PyYAML 1.1 float: [-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)? and sexagesimal floats.
    let bytes = body.as_bytes();
    let dot = body.find('.')?;
    let (int_part, rest) = body.split_at(dot);
    let rest = &rest[1..];
    let int_ok = int_part.is_empty()
        || (bytes[0].is_ascii_digit() && int_part.bytes().all(|b| b.is_ascii_digit() || b == b'_'));
    if !int_ok {
        return None;
    }
    let (frac, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if !frac.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    if let Some(exp) = exp {
        let e = exp.as_bytes();
        if e.len() < 2 || !(e[0] == b'+' || e[0] == b'-') || !e[1..].iter().all(u8::is_ascii_digit)
        {
            return None;
        }
    }
    if int_part.is_empty() && frac.is_empty() {
        return None;
    }
    let cleaned: String = body.chars().filter(|c| *c != '_').collect();
    let cleaned = if cleaned.starts_with('.') {
        format!("0{cleaned}")
    } else {
        cleaned
    };
    let cleaned = cleaned.replace(".e", ".0e").replace(".E", ".0E");
    cleaned.parse::<f64>().ok().map(|f| sign * f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::SourceMap;

    fn load(text: &str) -> (Option<Node>, Diagnostics) {
        let mut sources = SourceMap::default();
        let file = sources.add("test.yml".into(), text.into());
        let mut diags = Diagnostics::default();
        let node = parse(file, text, &mut diags).ok().flatten();
        (node, diags)
    }

    #[test]
    fn plain_scalars_resolve_like_pyyaml() {
        assert_eq!(resolve_plain("True"), Some(Value::Bool(true)));
        assert_eq!(resolve_plain("off"), Some(Value::Bool(false)));
        assert_eq!(resolve_plain("~"), Some(Value::Null));
        assert_eq!(resolve_plain("0x1F"), Some(Value::Int(31)));
        assert_eq!(resolve_plain("010"), Some(Value::Int(8)));
        assert_eq!(resolve_plain("1_000"), Some(Value::Int(1000)));
        assert_eq!(resolve_plain("-5"), Some(Value::Int(-5)));
        assert_eq!(resolve_plain("190:20:30"), Some(Value::Int(685230)));
        assert_eq!(resolve_plain("1.5"), Some(Value::Float(1.5)));
        assert_eq!(
            resolve_plain("1e5"),
            None,
            "YAML 1.1 needs a dot in a float"
        );
        assert_eq!(resolve_plain("6.8523015e+5"), Some(Value::Float(685230.15)));
        assert_eq!(resolve_plain("celery"), None);
        assert_eq!(resolve_plain("09"), None);
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let (node, _) = load("a: 'True'\nb: \"1\"\n");
        let node = node.unwrap();
        assert_eq!(node.get("a").unwrap().as_str(), Some("True"));
        assert_eq!(node.get("b").unwrap().as_str(), Some("1"));
    }

    #[test]
    fn merge_keys_follow_pyyaml_precedence() {
        let text = "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  <<: [*b, *o]\n  x: 9\n";
        let (node, diags) = load(text);
        assert!(diags.is_empty(), "{diags:?}");
        let m = node.unwrap().get("m").unwrap().to_json();
        assert_eq!(m, serde_json::json!({"x": 9, "y": 2, "z": 4}));
    }

    #[test]
    fn repeated_key_keeps_last_value_and_warns() {
        let (node, diags) = load("a: 1\nb: 2\na: 3\n");
        assert_eq!(node.unwrap().to_json(), serde_json::json!({"a": 3, "b": 2}));
        let warning = diags.iter().next().unwrap();
        assert!(warning.message.contains("key `a` is repeated"));
        assert_eq!(warning.span.unwrap().line, 3);
    }

    #[test]
    fn spans_are_one_based() {
        let (node, _) = load("tasks:\n  - name: T1\n");
        let node = node.unwrap();
        let tasks = node.get("tasks").unwrap();
        let Value::Seq(items) = &tasks.value else {
            panic!()
        };
        let name = items[0].get("name").unwrap();
        assert_eq!((name.span.line, name.span.column), (2, 11));
    }

    #[test]
    fn malformed_yaml_is_an_error_with_a_location() {
        let (node, diags) = load("a: [1, 2\nb: 3\n");
        assert!(node.is_none());
        let d = diags.iter().next().unwrap();
        assert!(d.message.starts_with("malformed YAML"), "{}", d.message);
        assert!(d.span.is_some());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (node, diags) = load(&text);
        assert!(node.is_none());
        assert!(diags.has_errors());
    }

    #[test]
    fn empty_file_has_no_document() {
        let (node, diags) = load("# only a comment\n");
        assert!(node.is_none());
        assert!(diags.is_empty());
    }
}
