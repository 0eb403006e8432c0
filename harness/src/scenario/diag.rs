//! Errors in scenario files, rendered rustc-style with the file, line, column, the
//! source line with a caret, and a hint that says what would be valid.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::NoColor, Config};

use super::model::Location;

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the file the problem is about.
    pub span: Range<usize>,
    /// The headline: what is wrong (`unknown key `sned` in step`).
    pub message: String,
    /// A short note under the caret.
    pub label: String,
    /// What would be valid, "did you mean", and similar help.
    pub hints: Vec<String>,
}

impl Diagnostic {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
            label: String::new(),
            hints: Vec::new(),
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

/// Why a scenario file could not be loaded.
#[derive(Debug, Clone)]
pub enum LoadError {
    /// The file could not be read at all.
    Io { path: PathBuf, error: String },
    /// The file was read but is not a valid scenario; every problem found is listed.
    Invalid {
        path: PathBuf,
        source: Arc<str>,
        diagnostics: Vec<Diagnostic>,
    },
}

impl LoadError {
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Io { path, .. } | LoadError::Invalid { path, .. } => path,
        }
    }

    /// The full human-readable report: one rustc-style block per problem.
    pub fn render(&self) -> String {
        match self {
            LoadError::Io { path, error } => {
                format!("error: cannot read {}: {error}\n", path.display())
            }
            LoadError::Invalid {
                path,
                source,
                diagnostics,
            } => {
                let file = SimpleFile::new(path.display().to_string(), source.as_ref());
                let mut out = NoColor::new(Vec::new());
                let config = Config::default();
                for diagnostic in diagnostics {
                    let span = clamp_span(&diagnostic.span, source);
                    let cs = CsDiagnostic::error()
                        .with_message(&diagnostic.message)
                        .with_labels(vec![
                            Label::primary((), span).with_message(&diagnostic.label)
                        ])
                        .with_notes(diagnostic.hints.clone());
                    // Writing into a Vec cannot fail; a rendering bug must not hide the
                    // error itself, so fall back to the headline.
                    if term::emit(&mut out, &config, &file, &cs).is_err() {
                        return format!("error: {}: {}\n", path.display(), diagnostic.message);
                    }
                }
                String::from_utf8_lossy(&out.into_inner()).into_owned()
            }
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for LoadError {}

/// Keeps a span inside the file and on character boundaries, so rendering never panics.
fn clamp_span(span: &Range<usize>, source: &str) -> Range<usize> {
    let len = source.len();
    let mut start = span.start.min(len);
    let mut end = span.end.clamp(start, len);
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    while !source.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// 1-based line and column (in characters) of a byte offset.
///
/// This scans the text up to `offset`: fine for one position, quadratic for many.
/// To locate many positions in one text, build a [`LineIndex`] once.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut index: usize) -> usize {
    while !s.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Where the lines of one text start, so that the line and column of any byte offset
/// take two binary searches instead of a scan from the start of the text.
///
/// Columns count characters, like [`line_column`]: the index also keeps the offsets
/// of the text's UTF-8 continuation bytes (none in an ASCII file), so a column is the
/// byte distance from the line's start less the continuation bytes in between, even
/// on a very long line.
#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    /// Byte offset of the first byte of every line; `line_starts[0]` is 0.
    line_starts: Vec<usize>,
    /// Byte offsets of every UTF-8 continuation byte (`0b10xx_xxxx`), ascending.
    continuation: Vec<usize>,
    len: usize,
    /// The line (0-based) of the last offset asked about. The loader asks in file
    /// order, step after step, so the answer is mostly this line or the next, and
    /// the search through every line start is skipped.
    recent_line: std::cell::Cell<usize>,
}

impl LineIndex {
    /// Indexes `source` in one pass.
    pub fn new(source: &str) -> Self {
        let bytes = source.as_bytes();
        // Newlines through `memchr` (a vectorized search), not byte by byte: this
        // runs once per file, but files of 100,000 steps exist. Sized from a
        // first count, so the index is not copied as it grows.
        let mut line_starts = Vec::with_capacity(memchr::memchr_iter(b'\n', bytes).count() + 1);
        line_starts.push(0);
        line_starts.extend(memchr::memchr_iter(b'\n', bytes).map(|i| i + 1));
        // Most scenario files are ASCII and have no continuation bytes to record.
        let continuation = if source.is_ascii() {
            Vec::new()
        } else {
            bytes
                .iter()
                .enumerate()
                .filter(|(_, &b)| b & 0xC0 == 0x80)
                .map(|(i, _)| i)
                .collect()
        };
        Self {
            line_starts,
            continuation,
            len: bytes.len(),
            recent_line: std::cell::Cell::new(0),
        }
    }

    /// Number of lines (a text ending in a newline has an empty last line).
    pub fn lines(&self) -> usize {
        self.line_starts.len()
    }

    /// 1-based line and column (in characters) of a byte offset; the same as
    /// [`line_column`] on the indexed text. Offsets past the end count as the end,
    /// offsets inside a character as that character.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.len);
        while offset > 0 && self.continuation.binary_search(&offset).is_ok() {
            offset -= 1;
        }
        let on_line = |index: usize| {
            self.line_starts
                .get(index)
                .is_some_and(|&start| start <= offset)
                && self
                    .line_starts
                    .get(index + 1)
                    .is_none_or(|&next| offset < next)
        };
        let recent = self.recent_line.get();
        let line = if on_line(recent) {
            recent + 1
        } else if on_line(recent + 1) {
            recent + 2
        } else {
            self.line_starts.partition_point(|&start| start <= offset)
        };
        self.recent_line.set(line - 1);
        let line_start = self.line_starts[line - 1];
        let skipped = if self.continuation.is_empty() {
            0
        } else {
            self.continuation.partition_point(|&c| c < offset)
                - self.continuation.partition_point(|&c| c < line_start)
        };
        (line, offset - line_start - skipped + 1)
    }

    /// The [`Location`] of a span: the span and the line and column of its start.
    pub fn location(&self, span: Range<usize>) -> Location {
        let (line, column) = self.line_column(span.start);
        Location { span, line, column }
    }

    /// Byte range of 1-based line `line`, without its line break.
    fn line_range(&self, source: &str, line: usize) -> Option<Range<usize>> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        let end = self
            .line_starts
            .get(line)
            .map_or(source.len(), |next| next - 1);
        let end = if source.as_bytes().get(start..end)?.ends_with(b"\r") {
            end - 1
        } else {
            end
        };
        Some(start..end)
    }

    /// The byte offset of 1-based `line` and `column` (in characters), if the text has
    /// such a position (the column just past a line's last character counts).
    pub fn offset(&self, source: &str, line: usize, column: usize) -> Option<usize> {
        let range = self.line_range(source, line)?;
        let text = source.get(range.clone())?;
        let index = column.checked_sub(1)?;
        text.char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .nth(index)
            .map(|i| range.start + i)
    }
}

/// Quotes the line of `source` where `span` starts, with carets under the span (up to
/// the end of that line), in the layout of load errors:
///
/// ```text
///    ┌─ scenarios/echo.toml:12:5
///    │
/// 12 │   { expect = "pong" },
///    │   ^^^^^^^^^^^^^^^^^^^ label
/// ```
///
/// For reports of things that went wrong after loading, such as a step that failed
/// at run time. An empty `label` prints carets only.
pub fn quote_span(path: &Path, source: &str, span: Range<usize>, label: &str) -> String {
    let index = LineIndex::new(source);
    let span = clamp_span(&span, source);
    let (line, column) = index.line_column(span.start);
    let range = index
        .line_range(source, line)
        .unwrap_or(span.start..span.start);
    let text = &source[range.clone()];
    let caret_start = span.start.clamp(range.start, range.end) - range.start;
    let caret_end = span.end.clamp(range.start, range.end) - range.start;
    // Tabs stay tabs under the quoted line, so the carets line up however the
    // terminal expands them.
    let indent: String = text[..caret_start]
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let carets = "^".repeat(text[caret_start..caret_end].chars().count().max(1));
    let width = line.to_string().len();
    let pad = " ".repeat(width);
    let label = if label.is_empty() {
        String::new()
    } else {
        format!(" {label}")
    };
    format!(
        "{pad} ┌─ {}:{line}:{column}\n{pad} │\n{line} │ {text}\n{pad} │ {indent}{carets}{label}\n",
        path.display()
    )
}

/// Re-reads the scenario file at `path` and quotes its line `line` with a caret under
/// `column` (1-based, in characters), like [`quote_span`]. For a reporter that has a
/// step's [`Location`] from a run but not the scenario's text.
///
/// `None` when the file cannot be read or no longer has that position (it changed
/// since it was loaded); a report then goes without the quote.
pub fn quote_source(path: &Path, line: usize, column: usize) -> Option<String> {
    let source = std::fs::read_to_string(path).ok()?;
    let index = LineIndex::new(&source);
    let offset = index.offset(&source, line, column)?;
    let end = source[offset..]
        .chars()
        .next()
        .map_or(offset, |c| offset + c.len_utf8());
    Some(quote_span(path, &source, offset..end, ""))
}

/// Re-reads the scenario file at `path` and quotes a step's [`Location`] with
/// [`quote_span`], carets under the whole step (on its first line) and `label` after
/// them. `None` when the file cannot be read or no longer has the step where it was
/// loaded (its span no longer starts at the location's line and column).
pub fn quote_location(path: &Path, location: &Location, label: &str) -> Option<String> {
    let source = std::fs::read_to_string(path).ok()?;
    let index = LineIndex::new(&source);
    let still_there = location.span.start <= location.span.end
        && location.span.end <= source.len()
        && source.is_char_boundary(location.span.start)
        && index.line_column(location.span.start) == (location.line, location.column);
    still_there.then(|| quote_span(path, &source, location.span.clone(), label))
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `one of `a`, `b`, `c``, for hints.
pub fn one_of(candidates: &[&str]) -> String {
    let quoted: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
    format!("one of {}", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one_in_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_column(src, 9), (2, 3));
    }

    #[test]
    fn line_index_agrees_with_line_column_everywhere() {
        let texts = [
            "",
            "a",
            "\n",
            "a = 1\nbé = 2\n",
            "x\r\ny = \"日本語\"\r\n\n  { send = \"é€𝄞\" },\nlast",
            "𝄞𝄞\n\n\né",
        ];
        for text in texts {
            let index = LineIndex::new(text);
            assert_eq!(index.lines(), text.matches('\n').count() + 1);
            // Every offset, including ones inside a character and past the end,
            // asked in file order (as the loader does, where the index starts
            // from the line it answered last), backwards, and jumping about.
            let forward = 0..=text.len() + 2;
            let jumping = (0..=text.len() + 2).map(|i| (i * 7 + 3) % (text.len() + 3));
            for offset in forward.clone().chain(forward.rev()).chain(jumping) {
                assert_eq!(
                    index.line_column(offset),
                    line_column(text, offset),
                    "{text:?} at {offset}"
                );
            }
        }
    }

    #[test]
    fn line_index_offsets_invert_positions() {
        let text = "a = 1\nbé = \"x\"\r\n\tz";
        let index = LineIndex::new(text);
        for (offset, _) in text
            .char_indices()
            .filter(|(_, c)| !matches!(c, '\r' | '\n'))
        {
            let (line, column) = index.line_column(offset);
            assert_eq!(index.offset(text, line, column), Some(offset));
        }
        assert_eq!(index.offset(text, 2, 9), Some(text.find('\r').unwrap()));
        assert_eq!(index.offset(text, 2, 10), None);
        assert_eq!(index.offset(text, 4, 1), None);
        assert_eq!(index.offset(text, 0, 1), None);
        assert_eq!(index.offset(text, 1, 0), None);
    }

    #[test]
    fn a_location_quotes_its_line_with_carets() {
        let source = "[[clients]]\nscript = [\n\t{ send = \"é\" }, { expect = \"x\" },\n]\n";
        let start = source.find("{ expect").unwrap();
        let end = start + "{ expect = \"x\" }".len();
        let quoted = quote_span(Path::new("dir/a.toml"), source, start..end, "timed out");
        assert_eq!(
            quoted,
            "  ┌─ dir/a.toml:3:18\n  │\n3 │ \t{ send = \"é\" }, { expect = \"x\" },\n  │ \t                ^^^^^^^^^^^^^^^^ timed out\n"
        );
        // A span over several lines is underlined to the end of its first line.
        let quoted = quote_span(Path::new("a.toml"), source, 12..source.len(), "");
        assert!(
            quoted.ends_with("2 │ script = [\n  │ ^^^^^^^^^^\n"),
            "{quoted}"
        );
    }

    #[test]
    fn quote_source_rereads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        let lines: Vec<String> = (1..=12).map(|i| format!("# line {i}")).collect();
        std::fs::write(&path, lines.join("\n") + "\n  { send = \"hi\" },\n").unwrap();
        let quoted = quote_source(&path, 13, 3).expect("the position exists");
        let shown = path.display();
        assert_eq!(
            quoted,
            format!("   ┌─ {shown}:13:3\n   │\n13 │   {{ send = \"hi\" }},\n   │   ^\n")
        );
        assert_eq!(quote_source(&path, 40, 1), None);
        assert_eq!(quote_source(&path, 13, 40), None);
        assert_eq!(quote_source(&dir.path().join("missing.toml"), 1, 1), None);

        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("{ send").unwrap();
        let location = LineIndex::new(&text).location(start..start + "{ send = \"hi\" }".len());
        assert_eq!(
            quote_location(&path, &location, "timed out").unwrap(),
            format!("   ┌─ {shown}:13:3\n   │\n13 │   {{ send = \"hi\" }},\n   │   ^^^^^^^^^^^^^^^ timed out\n")
        );
        // The file changed under the report: no quote rather than a wrong one.
        std::fs::write(&path, "# shorter\n").unwrap();
        assert_eq!(quote_location(&path, &location, ""), None);
    }

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(did_you_mean("sned", &["send", "recv"]), Some("send"));
        assert_eq!(did_you_mean("zzz", &["send", "recv"]), None);
    }
}
