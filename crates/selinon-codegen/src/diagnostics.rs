//! Diagnostics about a user's configuration: what is wrong, where (file:line:col), how to fix it.
//!
//! Every stage (loading, checks) pushes into one [`Diagnostics`] list so a run reports all
//! problems at once. Rendering is rustc-style (through `annotate-snippets`) or JSON for tools.

use std::fmt;
use std::path::{Path, PathBuf};

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

/// The error of a step that has already pushed its diagnostics: nothing more to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the problems were reported as diagnostics")
    }
}

impl std::error::Error for Reported {}

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// A place in a source file. Lines and columns are 1-based; columns count characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// The file the span is in.
    pub file: FileId,
    /// First line (1-based).
    pub line: u32,
    /// First column (1-based, in characters).
    pub column: u32,
    /// Last line (1-based).
    pub end_line: u32,
    /// Column just past the end (1-based, in characters).
    pub end_column: u32,
}

impl Span {
    /// Builds a span from the YAML parser's markers (1-based lines, 0-based character columns).
    pub(crate) fn from_chars(
        file: FileId,
        _text: &str,
        start: (usize, usize),
        end: (usize, usize),
    ) -> Span {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Span {
            file,
            line: clamp(start.0.max(1)),
            column: clamp(start.1 + 1),
            end_line: clamp(end.0.max(1)),
            end_column: clamp(end.1 + 1),
        }
    }

    /// A span covering a whole file's first line, for problems with the file as such.
    pub fn file_start(file: FileId) -> Span {
        Span {
            file,
            line: 1,
            column: 1,
            end_line: 1,
            end_column: 1,
        }
    }
}

/// One source file that was read.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path as given (used to read the file).
    pub path: PathBuf,
    /// The path as shown to users and written into generated code (relative when possible).
    pub display: String,
    /// The file's contents.
    pub text: String,
}

/// Every file read in one run, so spans can be printed.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// Records a file read from `path` and returns its id.
    pub fn add(&mut self, path: PathBuf, text: String) -> FileId {
        let display = display_path(&path);
        self.files.push(SourceFile {
            path,
            display,
            text,
        });
        FileId(u32::try_from(self.files.len() - 1).expect("fewer than 4 billion files"))
    }

    /// The file with id `id`, which must come from this map.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// Every file with its id, in the order they were added.
    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    /// `path:line:col` of a span.
    pub fn location(&self, span: Span) -> String {
        format!(
            "{}:{}:{}",
            self.get(span.file).display,
            span.line,
            span.column
        )
    }

    /// Changes how files are shown, e.g. relative to a crate's manifest directory.
    pub fn set_display(&mut self, id: FileId, display: String) {
        self.files[id.0 as usize].display = display;
    }
}

/// A path relative to the current directory when it lies below it, else as given.
pub fn display_path(path: &Path) -> String {
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf());
    shown.to_string_lossy().replace('\\', "/")
}

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration cannot be used; no code is generated.
    Error,
    /// Worth fixing, but code is still generated.
    Warning,
}

/// One finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where the problem is; `None` for a problem with no place (e.g. a file that cannot be read).
    pub span: Option<Span>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
    /// Other places that explain the finding (e.g. the first definition of a duplicate).
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: impl Into<Option<Span>>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            span: span.into(),
            message: message.into(),
            help: None,
            related: Vec::new(),
        }
    }

    /// A warning at `span`.
    pub fn warning(span: impl Into<Option<Span>>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message)
        }
    }

    /// Adds how to fix it (an empty `help` adds nothing).
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        let help = help.into();
        if !help.is_empty() {
            self.help = Some(help);
        }
        self
    }

    /// Adds another place that explains the finding, with a label.
    pub fn with_related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }

    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// All findings of one run, in the order they were found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Adds a finding.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// Adds an error at `span` with a hint (an empty `help` adds none).
    pub fn error(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        self.push(Diagnostic::error(span, message).with_help(help));
    }

    /// Adds a warning at `span` with a hint (an empty `help` adds none).
    pub fn warning(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        self.push(Diagnostic::warning(span, message).with_help(help));
    }

    /// Appends every finding of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// How many findings are errors.
    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    /// How many findings are warnings.
    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    /// Whether there is no finding at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many findings there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Every finding, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// The errors, in order.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.is_error())
    }

    /// The warnings, in order.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| !d.is_error())
    }

    /// Sorts by place (file, line, column), keeping the order of findings at one place.
    /// Diagnostics without a place come first.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| d.span);
        self.items.dedup();
    }

    /// Renders every diagnostic the way rustc does, followed by a one-line summary.
    pub fn render(&self, sources: &SourceMap, color: bool) -> String {
        let mut out = String::new();
        for d in &self.items {
            out.push_str(&render_one(d, sources, color));
            out.push_str("\n\n");
        }
        let (e, w) = (self.error_count(), self.warning_count());
        if e + w > 0 {
            out.push_str(&format!(
                "{} error{}, {} warning{}\n",
                e,
                if e == 1 { "" } else { "s" },
                w,
                if w == 1 { "" } else { "s" }
            ));
        }
        out
    }

    /// One JSON object per diagnostic, in an array.
    pub fn to_json(&self, sources: &SourceMap) -> serde_json::Value {
        serde_json::Value::Array(
            self.items
                .iter()
                .map(|d| {
                    let place = |s: Span| {
                        serde_json::json!({
                            "file": sources.get(s.file).display,
                            "line": s.line,
                            "column": s.column,
                            "end_line": s.end_line,
                            "end_column": s.end_column,
                        })
                    };
                    serde_json::json!({
                        "severity": d.severity,
                        "message": d.message,
                        "help": d.help,
                        "location": d.span.map(place),
                        "related": d.related.iter().map(|(s, label)| {
                            serde_json::json!({"location": place(*s), "label": label})
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// Byte range of a span inside `text` (the span's end is clamped to its first line so the
/// snippet stays one line long).
fn byte_range(text: &str, span: Span) -> (usize, std::ops::Range<usize>) {
    let line_start = text
        .split_inclusive('\n')
        .take(span.line.saturating_sub(1) as usize)
        .map(str::len)
        .sum::<usize>();
    let line = text[line_start..].split('\n').next().unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line);
    let char_to_byte = |col: u32| {
        line.char_indices()
            .nth(col.saturating_sub(1) as usize)
            .map_or(line.len(), |(b, _)| b)
    };
    let start = char_to_byte(span.column);
    let end = if span.end_line == span.line && span.end_column > span.column {
        char_to_byte(span.end_column)
    } else {
        // Up to the end of the word that starts here.
        line[start..]
            .find(|c: char| c.is_whitespace() || c == ',' || c == ']' || c == '}')
            .map_or(line.len(), |i| start + i)
    };
    let end = end.max(start);
    (line_start, line_start + start..line_start + end)
}

fn render_one(d: &Diagnostic, sources: &SourceMap, color: bool) -> String {
    let level = match d.severity {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let mut group = Group::with_title(level.primary_title(d.message.as_str()));
    if let Some(span) = d.span {
        let file = sources.get(span.file);
        let (_, range) = byte_range(&file.text, span);
        let mut snippet = Snippet::source(file.text.as_str())
            .path(file.display.as_str())
            .annotation(AnnotationKind::Primary.span(range));
        for (rspan, label) in &d.related {
            if rspan.file == span.file {
                let (_, r) = byte_range(&file.text, *rspan);
                snippet = snippet.annotation(AnnotationKind::Context.span(r).label(label.as_str()));
            }
        }
        group = group.element(snippet);
        for (rspan, label) in &d.related {
            if rspan.file != span.file {
                let other = sources.get(rspan.file);
                let (_, r) = byte_range(&other.text, *rspan);
                group = group.element(
                    Snippet::source(other.text.as_str())
                        .path(other.display.as_str())
                        .annotation(AnnotationKind::Context.span(r).label(label.as_str())),
                );
            }
        }
    }
    if let Some(help) = &d.help {
        group = group.element(Level::HELP.message(help.as_str()));
    }
    let report: Vec<Group<'_>> = vec![group];
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    renderer.render(&report)
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// The known name closest to `name`, if it is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    known
        .into_iter()
        .map(|k| {
            // Case-insensitive similarity decides; the exact-case one breaks ties.
            let score = strsim::jaro_winkler(&lower, &k.to_lowercase())
                + 0.01 * strsim::jaro_winkler(name, k);
            (score, k)
        })
        .filter(|(score, _)| *score >= 0.83)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// "did you mean `x`?" or an empty string.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    suggest(name, known).map_or_else(String::new, |k| format!("did you mean `{k}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc_with_path_line_and_caret() {
        let mut sources = SourceMap::default();
        let file = sources.add("flows/a.yml".into(), "tasks:\n  - name: T1\n".into());
        let mut diags = Diagnostics::default();
        diags.error(
            Span {
                file,
                line: 2,
                column: 11,
                end_line: 2,
                end_column: 13,
            },
            "something is wrong",
            "fix it",
        );
        let text = diags.render(&sources, false);
        assert!(text.contains("error: something is wrong"), "{text}");
        assert!(text.contains("--> flows/a.yml:2:11"), "{text}");
        assert!(text.contains("^^"), "{text}");
        assert!(text.contains("help: fix it"), "{text}");
        assert!(text.ends_with("1 error, 0 warnings\n"), "{text}");
    }

    #[test]
    fn suggests_near_miss_names() {
        let known = ["fieldLenLess", "fieldLenGreater", "fieldEqual"];
        assert_eq!(suggest("fieldLenLes", known), Some("fieldLenLess"));
        assert_eq!(suggest("completelyDifferent", known), None);
    }
}
