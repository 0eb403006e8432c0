//! Matchers: what a step (or a program's output) must look like when its bytes are
//! not fixed. A [`Match`] is compiled once, when the scenario loads, and then used two
//! ways:
//!
//! - [`Match::match_whole`] judges a buffer that is already complete: one datagram,
//!   the bytes of one `recv` call, one line, one frame's payload, a program's whole
//!   stdout.
//! - [`StreamMatcher`] judges a TCP stream while it arrives. It is fed the step's
//!   bytes so far, again and again as more arrive, and keeps its own state between
//!   calls (a lazy DFA state for a regex, a search position for `contains`, a nesting
//!   depth for JSON), so each byte is scanned once however the stream is split. It
//!   says how many bytes the step consumes; the rest stay for the next step.
//!
//! [`LineSplitter`] finds the end of one line the same incremental way, for
//! `expect_line`.
//!
//! Like the framing decoders, everything here is a pure function of a buffer plus
//! small state: it is unit-tested, fuzzed and benchmarked without sockets.
//!
//! ```
//! use wirecheck::matcher::{Match, MatchSpec};
//! let m = Match::compile(MatchSpec::Regex(r"^time (?P<hh>\d\d):\d\d".into())).unwrap();
//! let captures = m.match_whole(b"time 12:30\n").unwrap();
//! assert_eq!(captures.get("hh").unwrap().as_ref(), b"12");
//! assert!(m.match_whole(b"no clock here").is_err());
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use regex_automata::hybrid::dfa::{Cache as DfaCache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::Input;
use serde_json::Value;

use crate::programs::placeholders::Template;

/// How many bytes a stream expectation reads at most before it gives up, unless the
/// step sets `max`.
pub const DEFAULT_STREAM_MAX: usize = 65_536;

/// The longest line `expect_line` accepts, terminator excluded.
pub const MAX_LINE: usize = 65_536;

/// What a matcher is built from: the forms of a MATCH value in a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchSpec {
    /// These exact bytes (DATA).
    Exact(Bytes),
    /// A `regex` crate pattern, searched unanchored in the bytes.
    Regex(String),
    /// The bytes contain these.
    Contains(Bytes),
    /// Exactly this many bytes, whatever they are.
    Len(usize),
    /// A JSON document holding at least these keys with these values.
    Json(Value),
}

/// Why a [`MatchSpec`] cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// One line saying what is wrong.
    pub message: String,
    /// Byte range inside the regex pattern the error is about, when known, so the
    /// loader can put its caret on the very character.
    pub pattern_span: Option<std::ops::Range<usize>>,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CompileError {}

/// A compiled matcher. Cheap to clone: a regex and its DFA are shared.
#[derive(Debug, Clone)]
pub enum Match {
    Exact(Bytes),
    Regex(Arc<RegexMatcher>),
    Contains(Bytes),
    Len(usize),
    Json(Arc<Value>),
    /// Exact bytes or `contains` whose DATA is a `{ template }`: its bytes depend
    /// on variables captured while the run goes, so [`Match::resolve`] makes it an
    /// [`Match::Exact`] or [`Match::Contains`] when its step runs. Judging bytes
    /// with it unresolved is a bug of the caller, reported as a mismatch.
    Template(Arc<TemplateMatch>),
}

/// A MATCH made from a `{ template }` (see [`Match::Template`]).
#[derive(Debug, PartialEq, Eq)]
pub struct TemplateMatch {
    /// `{ contains = { template } }` rather than exact `{ template }` bytes.
    pub contains: bool,
    pub template: Arc<Template>,
}

/// A regex compiled twice: as `regex::bytes::Regex` for the match itself and its
/// captures, and as a lazy DFA that can be stepped byte by byte, so a stream is
/// scanned once while it arrives instead of once per read.
#[derive(Debug)]
pub struct RegexMatcher {
    pattern: String,
    regex: regex::bytes::Regex,
    /// `None` when the DFA cannot be built for this pattern; the stream matcher
    /// then searches the buffer again on each read (bounded by `max`).
    dfa: Option<DFA>,
    /// An anchored DFA, used only to explain a failure: how far the bytes got
    /// before they could no longer match.
    anchored: Option<DFA>,
}

/// The variables a match captured, in the order of the pattern's groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    values: Vec<(Arc<str>, Bytes)>,
}

impl Captures {
    /// The value captured under `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.values
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every captured `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.values.iter().map(|(n, v)| (n.as_ref(), v))
    }
}

/// Why bytes did not match: one sentence for the report, and the expected bytes
/// when a side-by-side dump helps (exact DATA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub message: String,
    pub expected: Option<Bytes>,
}

impl Mismatch {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            expected: None,
        }
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Whether `name` may name a variable: a letter or `_`, then letters, digits, `_`
/// (what a Python format-string field can be).
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What judging with an unresolved [`Match::Template`] says: a bug of the caller.
const UNRESOLVED: &str =
    "internal error: the template of this MATCH was not resolved before its step";

/// Names a capture may not take: they are placeholders with a meaning of their own.
pub const RESERVED_NAMES: &[&str] = &["port", "host", "addr", "md5", "size"];

/// Two matchers are equal when they were written the same way.
impl PartialEq for Match {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Match::Exact(a), Match::Exact(b)) | (Match::Contains(a), Match::Contains(b)) => a == b,
            (Match::Regex(a), Match::Regex(b)) => a.pattern == b.pattern,
            (Match::Len(a), Match::Len(b)) => a == b,
            (Match::Json(a), Match::Json(b)) => a == b,
            (Match::Template(a), Match::Template(b)) => a == b,
            _ => false,
        }
    }
}

impl Match {
    /// Compiles a matcher; a regex is checked here, so a bad one is a load error.
    pub fn compile(spec: MatchSpec) -> Result<Match, CompileError> {
        Ok(match spec {
            MatchSpec::Exact(bytes) => Match::Exact(bytes),
            MatchSpec::Contains(bytes) => {
                if bytes.is_empty() {
                    return Err(CompileError {
                        message: "`contains` needs at least one byte: everything contains nothing"
                            .into(),
                        pattern_span: None,
                    });
                }
                Match::Contains(bytes)
            }
            MatchSpec::Len(n) => Match::Len(n),
            MatchSpec::Json(value) => Match::Json(Arc::new(value)),
            MatchSpec::Regex(pattern) => Match::Regex(Arc::new(RegexMatcher::new(pattern)?)),
        })
    }

    /// Whether its bytes come from a template, to be [`Match::resolve`]d first.
    pub fn has_template(&self) -> bool {
        matches!(self, Match::Template(_))
    }

    /// The matcher with its template made into bytes by `expand` (the run's
    /// variables and addresses); any other matcher as it is. A `contains` that
    /// expands to no bytes is refused, as at load time: everything contains nothing.
    pub fn resolve(
        &self,
        expand: &dyn Fn(&Template) -> Result<Bytes, String>,
    ) -> Result<Match, String> {
        let Match::Template(t) = self else {
            return Ok(self.clone());
        };
        let bytes = expand(&t.template)?;
        if !t.contains {
            return Ok(Match::Exact(bytes));
        }
        if bytes.is_empty() {
            return Err(
                "the `contains` template made no bytes: everything contains nothing".into(),
            );
        }
        Ok(Match::Contains(bytes))
    }

    /// The names this matcher captures (a regex's named groups).
    pub fn capture_names(&self) -> Vec<&str> {
        match self {
            Match::Regex(r) => r.regex.capture_names().flatten().collect(),
            _ => Vec::new(),
        }
    }

    /// A short description for reports: `regex "^OK \d+"`, `12 exact bytes`.
    pub fn describe(&self) -> String {
        match self {
            Match::Exact(bytes) => format!("{} exact bytes {}", bytes.len(), quote(bytes)),
            Match::Regex(r) => format!("regex {}", show_pattern(&r.pattern)),
            Match::Contains(bytes) => format!("bytes containing {}", quote(bytes)),
            Match::Len(n) => format!("exactly {n} bytes"),
            Match::Json(value) => format!("a JSON document holding {value}"),
            Match::Template(t) => format!(
                "{}the template {}",
                if t.contains { "bytes containing " } else { "" },
                t.template.source()
            ),
        }
    }

    /// The expected bytes, when this is exact DATA.
    pub fn exact(&self) -> Option<&Bytes> {
        match self {
            Match::Exact(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Judges a complete buffer: exact bytes must be equal, a regex must find a match
    /// somewhere in it, `contains` must occur in it, `len` must be its length, and
    /// `json` must hold for the whole buffer parsed as one JSON document.
    pub fn match_whole(&self, bytes: &[u8]) -> Result<Captures, Mismatch> {
        match self {
            Match::Exact(expected) => {
                if bytes == expected.as_ref() {
                    Ok(Captures::default())
                } else {
                    Err(Mismatch {
                        message: format!(
                            "the {} bytes differ from the {} expected",
                            bytes.len(),
                            expected.len()
                        ),
                        expected: Some(expected.clone()),
                    })
                }
            }
            Match::Len(n) => {
                if bytes.len() == *n {
                    Ok(Captures::default())
                } else {
                    Err(Mismatch::new(format!(
                        "expected exactly {n} bytes, got {}",
                        bytes.len()
                    )))
                }
            }
            Match::Contains(needle) => {
                if memchr::memmem::find(bytes, needle).is_some() {
                    Ok(Captures::default())
                } else {
                    Err(Mismatch::new(format!(
                        "the {} bytes do not contain {}{}",
                        bytes.len(),
                        quote(needle),
                        partial_occurrence(bytes, needle)
                    )))
                }
            }
            Match::Regex(r) => r.captures(bytes).ok_or_else(|| r.no_match(bytes)),
            Match::Json(expected) => {
                let actual: Value = serde_json::from_slice(bytes)
                    .map_err(|e| Mismatch::new(format!("the bytes are not JSON: {e}")))?;
                json_subset(expected, &actual, &mut String::new())
                    .map(|()| Captures::default())
                    .map_err(Mismatch::new)
            }
            Match::Template(_) => Err(Mismatch::new(UNRESOLVED)),
        }
    }

    /// Why `output` does not match, or `None` when it does: [`Self::match_whole`]
    /// for callers that only need the explanation (a program's whole stdout).
    pub fn mismatch(&self, output: &[u8]) -> Option<String> {
        self.match_whole(output).err().map(|m| m.message)
    }

    /// The bytes to show as "expected" beside an output, when there are any.
    pub fn expected_bytes(&self) -> Option<Bytes> {
        match self {
            Match::Exact(bytes) | Match::Contains(bytes) => Some(bytes.clone()),
            _ => None,
        }
    }

    /// A matcher of this stream expectation, reading at most `max` bytes.
    pub fn stream(&self, max: usize) -> StreamMatcher<'_> {
        StreamMatcher::new(self, max)
    }
}

impl RegexMatcher {
    fn new(pattern: String) -> Result<Self, CompileError> {
        // The syntax checker first: its errors carry the span of the bad part.
        if let Err(e) = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(&pattern)
        {
            let (message, span) = match &e {
                regex_syntax::Error::Parse(e) => (e.kind().to_string(), Some(e.span())),
                regex_syntax::Error::Translate(e) => (e.kind().to_string(), Some(e.span())),
                other => (other.to_string(), None),
            };
            return Err(CompileError {
                message: format!("invalid regex: {message}"),
                pattern_span: span.map(|s| s.start.offset..s.end.offset.max(s.start.offset + 1)),
            });
        }
        let regex = regex::bytes::Regex::new(&pattern).map_err(|e| CompileError {
            message: format!("invalid regex: {}", first_line(&e.to_string())),
            pattern_span: None,
        })?;
        for name in regex.capture_names().flatten() {
            if !is_variable_name(name) {
                return Err(CompileError {
                    message: format!(
                        "the group name `{name}` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
                    ),
                    pattern_span: pattern.find(name).map(|at| at..at + name.len()),
                });
            }
            if RESERVED_NAMES.contains(&name) {
                return Err(CompileError {
                    message: format!(
                        "`{name}` is a placeholder of its own and cannot be captured; pick another group name"
                    ),
                    pattern_span: pattern.find(name).map(|at| at..at + name.len()),
                });
            }
        }
        let build = |anchored: bool| {
            let config = DFA::config()
                .unicode_word_boundary(true)
                .starts_for_each_pattern(false);
            let mut builder = DFA::builder();
            builder
                .configure(config)
                .syntax(regex_automata::util::syntax::Config::new().utf8(false))
                .thompson(regex_automata::nfa::thompson::Config::new().utf8(false));
            let dfa = builder.build(&pattern).ok()?;
            // Make sure a start state can be computed at all (look-behind
            // assertions at the start are fine; a quit byte is handled later).
            let mut cache = dfa.create_cache();
            let input = Input::new(&[][..]).anchored(if anchored {
                regex_automata::Anchored::Yes
            } else {
                regex_automata::Anchored::No
            });
            dfa.start_state_forward(&mut cache, &input).ok()?;
            Some(dfa)
        };
        Ok(Self {
            dfa: build(false),
            anchored: build(true),
            regex,
            pattern,
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    fn captures(&self, bytes: &[u8]) -> Option<Captures> {
        let found = self.regex.captures(bytes)?;
        let mut captures = Captures::default();
        for name in self.regex.capture_names().flatten() {
            if let Some(group) = found.name(name) {
                captures
                    .values
                    .push((Arc::from(name), Bytes::copy_from_slice(group.as_bytes())));
            }
        }
        Some(captures)
    }

    /// The explanation of a failed search: the pattern and, where an anchored run
    /// got somewhere, the longest stretch of the bytes that could still have matched.
    fn no_match(&self, bytes: &[u8]) -> Mismatch {
        let mut message = format!(
            "no match for regex {} in the {} bytes",
            show_pattern(&self.pattern),
            bytes.len()
        );
        if let Some((start, len)) = self.longest_viable(bytes) {
            let _ = write!(
                message,
                "; the longest stretch that could still have matched is {len} bytes at offset {start} ({}), and ",
                quote(&bytes[start..start + len])
            );
            match bytes.get(start + len) {
                Some(&b) => {
                    let _ = write!(message, "byte 0x{b:02x} at offset {} ends it", start + len);
                }
                None => message.push_str("the bytes ended there"),
            }
        }
        Mismatch::new(message)
    }

    /// The start and length of the longest run of `bytes` an anchored search could
    /// still extend. Bounded work: only the first 1,024 start offsets and 4,096
    /// bytes from each are tried, as this only explains a failure.
    fn longest_viable(&self, bytes: &[u8]) -> Option<(usize, usize)> {
        let dfa = self.anchored.as_ref()?;
        let mut cache = dfa.create_cache();
        let mut best: Option<(usize, usize)> = None;
        for start in 0..bytes.len().min(1024) {
            let input = Input::new(bytes)
                .range(start..)
                .anchored(regex_automata::Anchored::Yes);
            let mut state = dfa.start_state_forward(&mut cache, &input).ok()?;
            let mut len = 0;
            for &b in bytes[start..].iter().take(4096) {
                state = dfa.next_state(&mut cache, state, b).ok()?;
                if state.is_dead() || state.is_quit() {
                    break;
                }
                len += 1;
            }
            if len > best.map_or(0, |(_, l)| l) {
                best = Some((start, len));
            }
        }
        best
    }
}

/// A pattern the way it is best written in TOML: a literal string, where
/// backslashes are themselves (`'^OK \d+$'`), unless it holds a `'` or a newline.
fn show_pattern(pattern: &str) -> String {
    if pattern.contains(['\'', '\n', '\r']) {
        format!("{pattern:?}")
    } else {
        format!("'{pattern}'")
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| text.lines().next().unwrap_or(text))
}

/// Where the longest prefix of `needle` occurs in `haystack`, as a clause for a
/// failure message (empty when not even its first byte occurs).
fn partial_occurrence(haystack: &[u8], needle: &[u8]) -> String {
    // Bounded: an explanation, not a search engine.
    let haystack = &haystack[..haystack.len().min(64 * 1024)];
    let mut best = (0, 0);
    let (mut low, mut high) = (1, needle.len().saturating_sub(1));
    // Prefixes that occur are closed downwards, so binary search on the length.
    while low <= high {
        let mid = (low + high) / 2;
        match memchr::memmem::find(haystack, &needle[..mid]) {
            Some(at) => {
                best = (at, mid);
                low = mid + 1;
            }
            None => high = mid - 1,
        }
    }
    if best.1 == 0 {
        String::new()
    } else {
        format!(
            "; its first {} bytes ({}) occur at offset {}",
            best.1,
            quote(&needle[..best.1]),
            best.0
        )
    }
}

/// Bytes as a short quoted string for messages: text where printable, escapes
/// otherwise, cut after 64 bytes.
pub fn quote(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(64)];
    let mut out = String::from("\"");
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    if bytes.len() > shown.len() {
        let _ = write!(out, "... ({} bytes)", bytes.len());
    }
    out
}

/// Checks that `actual` holds everything `expected` does: objects need at least
/// the expected keys (recursively), arrays the same length with matching items,
/// numbers the same value (`1` equals `1.0`), everything else equality. `path`
/// names the place of a difference (`user.roles[1]`).
pub fn json_subset(expected: &Value, actual: &Value, path: &mut String) -> Result<(), String> {
    let at = |path: &str| {
        if path.is_empty() {
            "the document".to_owned()
        } else {
            format!("`{path}`")
        }
    };
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, want_value) in want {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let result = match have.get(key) {
                    Some(have_value) => json_subset(want_value, have_value, path),
                    None => Err(format!(
                        "{} is missing (keys there: {})",
                        at(path),
                        have.keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                };
                path.truncate(len);
                result?;
            }
            Ok(())
        }
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                return Err(format!(
                    "{} has {} items, expected {}",
                    at(path),
                    have.len(),
                    want.len()
                ));
            }
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                let result = json_subset(w, h, path);
                path.truncate(len);
                result?;
            }
            Ok(())
        }
        (Value::Number(want), Value::Number(have)) => {
            let equal = match (want.as_i64(), have.as_i64()) {
                (Some(a), Some(b)) => a == b,
                _ => match (want.as_u64(), have.as_u64()) {
                    (Some(a), Some(b)) => a == b,
                    _ => want.as_f64() == have.as_f64(),
                },
            };
            if equal {
                Ok(())
            } else {
                Err(format!("{} is {have}, expected {want}", at(path)))
            }
        }
        (want, have) if want == have => Ok(()),
        (want, have) => Err(format!("{} is {have}, expected {want}", at(path))),
    }
}

/// What a [`StreamMatcher`] or [`LineSplitter`] made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// No verdict yet: read more. The step may look at no more than `up_to` bytes in
    /// all (for exact data and `len`, exactly its length, so nothing is over-read).
    NeedMore { up_to: usize },
    /// The expectation holds; the step consumes the first `consumed` bytes.
    Matched { consumed: usize, captures: Captures },
    /// The expectation can no longer hold, whatever else arrives.
    Failed(Mismatch),
}

/// Judges a TCP stream while it arrives, for `expect = MATCH`.
///
/// Call [`StreamMatcher::advance`] with every byte of the step so far, each time
/// more arrived (earlier bytes unchanged); only the new bytes are scanned. When the
/// stream ends or the step times out, [`StreamMatcher::give_up`] says why it failed.
///
/// - exact DATA and `len` read exactly their length;
/// - `regex` and `contains` match as soon as the bytes so far contain a match and
///   consume through its end (a regex's match is found on the bytes so far, so
///   `\d+` stops at the digits that arrived in the same read);
/// - `json` reads one JSON value (object, array, string, or a scalar ended by a
///   delimiter) and consumes through its end.
#[derive(Debug)]
pub struct StreamMatcher<'m> {
    matcher: &'m Match,
    max: usize,
    /// Bytes already scanned.
    scanned: usize,
    state: StreamState,
}

#[derive(Debug)]
enum StreamState {
    Plain,
    /// A regex stepped through its lazy DFA.
    Dfa {
        /// Boxed: the cache is large, and most steps are not regexes.
        cache: Box<DfaCache>,
        state: LazyStateID,
    },
    /// A regex searched again on each call (no DFA for this pattern, or it gave up).
    Rescan,
    Json(JsonScan),
}

impl<'m> StreamMatcher<'m> {
    pub fn new(matcher: &'m Match, max: usize) -> Self {
        let state = match matcher {
            Match::Regex(r) => match &r.dfa {
                Some(dfa) => {
                    let mut cache = dfa.create_cache();
                    match dfa.start_state_forward(&mut cache, &Input::new(&[][..])) {
                        Ok(state) => StreamState::Dfa {
                            cache: Box::new(cache),
                            state,
                        },
                        Err(_) => StreamState::Rescan,
                    }
                }
                None => StreamState::Rescan,
            },
            Match::Json(_) => StreamState::Json(JsonScan::default()),
            _ => StreamState::Plain,
        };
        Self {
            matcher,
            max,
            scanned: 0,
            state,
        }
    }

    /// The most bytes this step may read in all.
    pub fn limit(&self) -> usize {
        match self.matcher {
            Match::Exact(bytes) => bytes.len(),
            Match::Len(n) => *n,
            _ => self.max,
        }
    }

    /// Whether the step knows its length up front and can read without peeking.
    pub fn fixed_length(&self) -> Option<usize> {
        match self.matcher {
            Match::Exact(bytes) => Some(bytes.len()),
            Match::Len(n) => Some(*n),
            _ => None,
        }
    }

    /// Looks at the step's bytes so far (`buffered` extends what earlier calls saw).
    pub fn advance(&mut self, buffered: &[u8]) -> Progress {
        let limit = self.limit();
        let buffered = &buffered[..buffered.len().min(limit)];
        let new_from = self.scanned.min(buffered.len());
        self.scanned = buffered.len();
        let progress = match self.matcher {
            Match::Exact(expected) => {
                if buffered[new_from..] != expected[new_from..buffered.len()] {
                    Progress::Failed(Mismatch {
                        message: "the bytes that arrived differ from the expected ones".into(),
                        expected: Some(expected.clone()),
                    })
                } else if buffered.len() == expected.len() {
                    Progress::Matched {
                        consumed: expected.len(),
                        captures: Captures::default(),
                    }
                } else {
                    Progress::NeedMore { up_to: limit }
                }
            }
            Match::Len(n) => {
                if buffered.len() == *n {
                    Progress::Matched {
                        consumed: *n,
                        captures: Captures::default(),
                    }
                } else {
                    Progress::NeedMore { up_to: limit }
                }
            }
            Match::Contains(needle) => {
                // Only a match that ends in the new bytes can be new.
                let from = new_from.saturating_sub(needle.len() - 1);
                match memchr::memmem::find(&buffered[from..], needle) {
                    Some(at) => Progress::Matched {
                        consumed: from + at + needle.len(),
                        captures: Captures::default(),
                    },
                    None => Progress::NeedMore { up_to: limit },
                }
            }
            Match::Regex(r) => self.advance_regex(r, buffered, new_from),
            Match::Template(_) => Progress::Failed(Mismatch::new(UNRESOLVED)),
            Match::Json(expected) => {
                let StreamState::Json(scan) = &mut self.state else {
                    unreachable!("a json matcher has a json scan")
                };
                match scan.advance(buffered, new_from) {
                    Ok(Some(end)) => {
                        let mut path = String::new();
                        match serde_json::from_slice::<Value>(&buffered[..end]) {
                            Ok(actual) => match json_subset(expected, &actual, &mut path) {
                                Ok(()) => Progress::Matched {
                                    consumed: end,
                                    captures: Captures::default(),
                                },
                                Err(why) => Progress::Failed(Mismatch::new(why)),
                            },
                            Err(e) => Progress::Failed(Mismatch::new(format!(
                                "the bytes are not JSON: {e}"
                            ))),
                        }
                    }
                    Ok(None) => Progress::NeedMore { up_to: limit },
                    Err(why) => Progress::Failed(Mismatch::new(why)),
                }
            }
        };
        match progress {
            Progress::NeedMore { .. } if buffered.len() >= limit => {
                Progress::Failed(self.give_up(buffered, GiveUp::Limit))
            }
            other => other,
        }
    }

    fn advance_regex(&mut self, r: &RegexMatcher, buffered: &[u8], new_from: usize) -> Progress {
        let limit = self.limit();
        if let (StreamState::Dfa { cache, state }, Some(dfa)) = (&mut self.state, &r.dfa) {
            let mut found = false;
            let mut gave_up = false;
            for &b in &buffered[new_from..] {
                match dfa.next_state(cache, *state, b) {
                    Ok(next) if next.is_quit() => {
                        gave_up = true;
                        break;
                    }
                    Ok(next) => {
                        *state = next;
                        if next.is_match() {
                            found = true;
                            break;
                        }
                        if next.is_dead() {
                            break;
                        }
                    }
                    Err(_) => {
                        gave_up = true;
                        break;
                    }
                }
            }
            if gave_up {
                self.state = StreamState::Rescan;
            } else if !found {
                // A match that ends right at the end of the bytes so far shows only
                // on the end-of-input transition; it does not advance the state.
                match dfa.next_eoi_state(cache, *state) {
                    Ok(eoi) if eoi.is_match() => found = true,
                    Ok(_) if state.is_dead() => {
                        return Progress::Failed(r.no_match(buffered));
                    }
                    Ok(_) => return Progress::NeedMore { up_to: limit },
                    Err(_) => self.state = StreamState::Rescan,
                }
            }
            if found {
                // The DFA only says that a match exists; the regex says where.
                if let Some(progress) = regex_verdict(r, buffered) {
                    return progress;
                }
                // They disagree on where matches end (empty matches inside
                // UTF-8): trust the regex from here on.
                self.state = StreamState::Rescan;
            }
        }
        regex_verdict(r, buffered).unwrap_or(Progress::NeedMore { up_to: limit })
    }

    /// The failure when no more bytes will come: the stream ended, the step timed
    /// out, or `max` bytes arrived without a match.
    pub fn give_up(&self, buffered: &[u8], why: GiveUp) -> Mismatch {
        let limit = self.limit();
        let buffered = &buffered[..buffered.len().min(limit)];
        let ended = match why {
            GiveUp::Eof => "the peer closed the connection",
            GiveUp::Timeout => "the step timed out",
            GiveUp::Limit => "the step's limit was reached",
        };
        match self.matcher {
            Match::Exact(expected) => Mismatch {
                message: format!(
                    "{ended} after {} of {} expected bytes",
                    buffered.len(),
                    expected.len()
                ),
                expected: Some(expected.clone()),
            },
            Match::Len(n) => Mismatch::new(format!(
                "{ended} after {} of {n} expected bytes",
                buffered.len()
            )),
            Match::Regex(r) => {
                let mut m = r.no_match(buffered);
                if why == GiveUp::Limit {
                    m.message.push_str(&format!(
                        " (a stream expectation reads at most {limit} bytes; raise `max` if the match can come later)"
                    ));
                } else {
                    m.message = format!("{ended}: {}", m.message);
                }
                m
            }
            Match::Contains(needle) => Mismatch::new(format!(
                "{ended} after {} bytes that do not contain {}{}{}",
                buffered.len(),
                quote(needle),
                partial_occurrence(buffered, needle),
                if why == GiveUp::Limit {
                    format!(" (a stream expectation reads at most {limit} bytes; raise `max` if the match can come later)")
                } else {
                    String::new()
                }
            )),
            Match::Json(_) => Mismatch::new(format!(
                "{ended} after {} bytes, before one whole JSON value arrived",
                buffered.len()
            )),
            Match::Template(_) => Mismatch::new(UNRESOLVED),
        }
    }
}

/// The regex's own verdict on the bytes so far: matched (with where it ends and
/// its captures), or `None` for "no match yet".
fn regex_verdict(r: &RegexMatcher, buffered: &[u8]) -> Option<Progress> {
    let found = r.regex.captures(buffered)?;
    let end = found.get(0).map_or(0, |m| m.end());
    let mut captures = Captures::default();
    for name in r.regex.capture_names().flatten() {
        if let Some(group) = found.name(name) {
            captures
                .values
                .push((Arc::from(name), Bytes::copy_from_slice(group.as_bytes())));
        }
    }
    Some(Progress::Matched {
        consumed: end,
        captures,
    })
}

/// Why a stream expectation stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    Eof,
    Timeout,
    Limit,
}

/// Finds where one JSON value ends in a stream, without parsing it: nesting depth,
/// whether inside a string, and whether the last byte was a backslash. The value is
/// then parsed once, whole.
#[derive(Debug, Default, Clone)]
struct JsonScan {
    /// The first byte of the value (after white space), once seen.
    kind: Option<u8>,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl JsonScan {
    /// Scans `buffered[from..]`; returns the end of the value once it is complete.
    fn advance(&mut self, buffered: &[u8], from: usize) -> Result<Option<usize>, String> {
        for (i, &b) in buffered.iter().enumerate().skip(from) {
            let Some(kind) = self.kind else {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' | b'[' => {
                        self.kind = Some(b);
                        self.depth = 1;
                    }
                    b'"' => {
                        self.kind = Some(b);
                        self.in_string = true;
                    }
                    b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => self.kind = Some(b),
                    other => {
                        return Err(format!(
                            "the bytes are not JSON: a JSON value cannot start with byte 0x{other:02x} (offset {i})"
                        ))
                    }
                }
                continue;
            };
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if kind == b'"' {
                        return Ok(Some(i + 1));
                    }
                }
                continue;
            }
            match kind {
                b'{' | b'[' => match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            return Ok(Some(i + 1));
                        }
                    }
                    _ => {}
                },
                // A number or literal ends at the first byte that cannot be in it.
                _ => {
                    if matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' | b'}') {
                        return Ok(Some(i));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// Finds the end of one line (LF) in a stream, scanning each byte once, for
/// `expect_line`.
#[derive(Debug, Default)]
pub struct LineSplitter {
    scanned: usize,
}

/// One line found by [`LineSplitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// The line's length without its LF and a CR before it.
    pub content: usize,
    /// The bytes the line takes in the stream, LF included.
    pub consumed: usize,
}

impl LineSplitter {
    /// The first line in `buffered` (which extends what earlier calls saw), or
    /// `Ok(None)` while no LF arrived; an error once more than [`MAX_LINE`] bytes
    /// (plus a CR) arrived without one.
    pub fn advance(&mut self, buffered: &[u8]) -> Result<Option<Line>, Mismatch> {
        let window = &buffered[..buffered.len().min(MAX_LINE + 2)];
        let from = self.scanned.min(window.len());
        self.scanned = window.len();
        if let Some(at) = memchr::memchr(b'\n', &window[from..]) {
            let lf = from + at;
            let content = if lf > 0 && window[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            if content > MAX_LINE {
                return Err(self.too_long());
            }
            return Ok(Some(Line {
                content,
                consumed: lf + 1,
            }));
        }
        if window.len() > MAX_LINE + 1 {
            return Err(self.too_long());
        }
        Ok(None)
    }

    /// The most bytes a line step may look at.
    pub fn limit(&self) -> usize {
        MAX_LINE + 2
    }

    fn too_long(&self) -> Mismatch {
        Mismatch::new(format!(
            "no line end (LF) within the first {MAX_LINE} bytes: a line is at most {MAX_LINE} bytes"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_match_resolves_into_exact_or_contains_bytes() {
        let template = Template::parse_data("id={id}", &|_| false).unwrap();
        let template = Arc::new(template);
        let exact = Match::Template(Arc::new(TemplateMatch {
            contains: false,
            template: Arc::clone(&template),
        }));
        assert!(exact.has_template());
        assert!(
            exact.match_whole(b"id=7").is_err(),
            "unresolved never matches"
        );
        let expand = |t: &Template| {
            t.expand_bytes(&|_| None, &|_| Some(Bytes::from_static(b"7")))
                .map(Bytes::from)
        };
        let resolved = exact.resolve(&expand).unwrap();
        assert_eq!(resolved, Match::Exact(Bytes::from_static(b"id=7")));
        let contains = Match::Template(Arc::new(TemplateMatch {
            contains: true,
            template,
        }));
        let resolved = contains.resolve(&expand).unwrap();
        assert!(resolved.match_whole(b"xx id=7 yy").is_ok());
        let empty = Match::Template(Arc::new(TemplateMatch {
            contains: true,
            template: Arc::new(Template::parse_data("{id}", &|_| false).unwrap()),
        }));
        let nothing = |_: &Template| Ok(Bytes::new());
        assert!(empty.resolve(&nothing).unwrap_err().contains("no bytes"));
        let missing = |_: &Template| Err("the variable `id` has no value yet".to_owned());
        assert!(contains_err(&exact.resolve(&missing)));
    }

    fn contains_err(result: &Result<Match, String>) -> bool {
        matches!(result, Err(e) if e.contains("`id`"))
    }

    fn regex(p: &str) -> Match {
        Match::compile(MatchSpec::Regex(p.into())).unwrap()
    }

    /// Feeds `data` to a stream matcher in the given piece sizes.
    fn stream_in_pieces(m: &Match, data: &[u8], pieces: &[usize]) -> Progress {
        let mut s = m.stream(DEFAULT_STREAM_MAX);
        let mut end = 0;
        let mut sizes = pieces.iter().copied().cycle();
        loop {
            end = (end + sizes.next().unwrap_or(1).max(1)).min(data.len());
            match s.advance(&data[..end]) {
                Progress::NeedMore { .. } if end < data.len() => continue,
                other => return other,
            }
        }
    }

    #[test]
    fn exact_data_must_be_equal_as_a_whole() {
        let m = Match::Exact(Bytes::from_static(b"hello"));
        assert!(m.match_whole(b"hello").is_ok());
        let e = m.match_whole(b"hello!").unwrap_err();
        assert_eq!(e.expected.as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn a_regex_searches_and_captures_named_groups() {
        let m = regex(r"token=(?P<token>[a-f0-9]+)");
        let c = m.match_whole(b"hello token=beef42 bye").unwrap();
        assert_eq!(c.get("token").unwrap().as_ref(), b"beef42");
        let e = m.match_whole(b"hello token=XYZ").unwrap_err();
        assert!(e.message.contains("token="), "{}", e.message);
        assert!(
            e.message.contains("could still have matched"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bad_regexes_and_group_names_are_compile_errors_with_a_span() {
        let e = Match::compile(MatchSpec::Regex("ab(c".into())).unwrap_err();
        assert!(e.message.contains("invalid regex"), "{}", e.message);
        assert!(e.pattern_span.is_some());
        let e = Match::compile(MatchSpec::Regex("(?P<a.b>x)".into())).unwrap_err();
        assert!(e.message.contains("`a.b`"), "{}", e.message);
        assert_eq!(e.pattern_span, Some(4..7));
        let e = Match::compile(MatchSpec::Regex("(?P<port>x)".into())).unwrap_err();
        assert!(e.message.contains("placeholder"), "{}", e.message);
        assert!(Match::compile(MatchSpec::Contains(Bytes::new())).is_err());
    }

    #[test]
    fn contains_len_and_json() {
        let c = Match::Contains(Bytes::from_static(b"10 bytes"));
        assert!(c.match_whole(b"received 10 bytes\n").is_ok());
        let e = c.match_whole(b"received 10 byt").unwrap_err();
        assert!(e.message.contains("first 6 bytes"), "{}", e.message);
        assert!(Match::Len(3).match_whole(b"abc").is_ok());
        assert!(Match::Len(3).match_whole(b"abcd").is_err());
        let j = Match::Json(Arc::new(serde_json::json!({"status": "ok", "n": {"a": 1}})));
        assert!(j
            .match_whole(br#"{"status":"ok","n":{"a":1.0,"b":2},"x":[]}"#)
            .is_ok());
        let e = j
            .match_whole(br#"{"status":"ok","n":{"a":2}}"#)
            .unwrap_err();
        assert!(
            e.message.contains("`n.a` is 2, expected 1"),
            "{}",
            e.message
        );
        let e = j.match_whole(b"not json").unwrap_err();
        assert!(e.message.contains("not JSON"), "{}", e.message);
    }

    #[test]
    fn a_stream_regex_matches_across_reads_and_consumes_through_the_match() {
        let m = regex(r"(?P<n>\d+) apples");
        let data = b"we have 12 apples and more";
        for piece in 1..data.len() {
            match stream_in_pieces(&m, data, &[piece]) {
                Progress::Matched { consumed, captures } => {
                    assert_eq!(consumed, 17, "piece {piece}");
                    assert_eq!(captures.get("n").unwrap().as_ref(), b"12");
                }
                other => panic!("piece {piece}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_stream_regex_that_can_no_longer_match_fails_early() {
        let m = regex(r"^OK\n");
        let mut s = m.stream(DEFAULT_STREAM_MAX);
        assert!(matches!(s.advance(b"O"), Progress::NeedMore { .. }));
        assert!(matches!(s.advance(b"ON"), Progress::Failed(_)));
    }

    #[test]
    fn a_stream_regex_stops_at_max() {
        let m = regex("never");
        let mut s = m.stream(8);
        match s.advance(b"0123456789") {
            Progress::Failed(e) => assert!(e.message.contains("at most 8"), "{}", e.message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stream_contains_finds_a_needle_split_across_reads() {
        let m = Match::Contains(Bytes::from_static(b"END"));
        for piece in 1..6 {
            match stream_in_pieces(&m, b"abcdEND tail", &[piece]) {
                Progress::Matched { consumed, .. } => assert_eq!(consumed, 7),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn stream_json_reads_one_value() {
        let m = Match::Json(Arc::new(serde_json::json!({"a": "}"})));
        for piece in 1..5 {
            match stream_in_pieces(&m, br#" {"a":"}","b":[1,{"c":"\""}]}rest"#, &[piece]) {
                Progress::Matched { consumed, .. } => assert_eq!(consumed, 29),
                other => panic!("{other:?}"),
            }
        }
        let mut s = m.stream(100);
        assert!(matches!(s.advance(b"hello"), Progress::Failed(_)));
    }

    #[test]
    fn lines_are_found_once_and_lose_their_cr() {
        let mut l = LineSplitter::default();
        assert_eq!(l.advance(b"hel").unwrap(), None);
        assert_eq!(
            l.advance(b"hello\r\nnext").unwrap(),
            Some(Line {
                content: 5,
                consumed: 7
            })
        );
        let mut l = LineSplitter::default();
        let long = vec![b'x'; MAX_LINE + 2];
        assert!(l.advance(&long).is_err());
        let mut l = LineSplitter::default();
        let mut exact = vec![b'x'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(l.advance(&exact).unwrap().unwrap().content, MAX_LINE);
    }

    #[test]
    fn quotes_show_text_and_escape_the_rest() {
        assert_eq!(quote(b"a\"b\n\x00\xff"), r#""a\"b\n\u{0}\xff""#);
        assert_eq!(quote("中文".as_bytes()), "\"中文\"");
    }
}
