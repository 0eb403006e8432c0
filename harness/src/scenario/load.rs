//! Builds a [`Scenario`] from TOML text, checking every key against the format and
//! reporting every problem with its exact position.
//!
//! The loader walks a spanned tree by hand instead of deriving `serde::Deserialize`:
//! the format has shapes serde's derive handles poorly (a step is a table with one
//! action key plus an optional `timeout`; data is a string or one of five tables),
//! and hand-walking lets each error name the key, point at it, and list what would
//! be valid.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;

use super::diag::{did_you_mean, Diagnostic, LineIndex, LoadError};
use super::model::*;
use super::tree::{self, Entry, Node, NodeKind};
use crate::duration::{parse_duration, DURATION_HINT};
use crate::event::ShutdownHow;
use crate::framing::{FramingConfig, FramingKind};
use crate::matcher::{self, Match, MatchSpec};
use crate::programs::placeholders::{Placeholder, Template};
use crate::proxy::fault::{self as faults, Direction, FaultKind, FaultSpec};
use crate::servers::{BuiltinConfig, BuiltinKind, OptionValue};
use crate::size::{parse_size, MAX_SIZE, SIZE_HINT};

/// Data larger than this is almost certainly a mistake in a scenario (`times = 1e12`),
/// and refusing it keeps a malformed file from exhausting memory.
pub const MAX_DATA_BYTES: usize = 1 << 30;

/// A read buffer larger than this is refused for the same reason.
pub const MAX_RECV_BYTES: usize = 64 << 20;

/// The most copies of one client (`count`) a scenario may run.
pub const MAX_CLIENT_COUNT: usize = 100_000;

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "timeout",
    "step_timeout",
    "tags",
    "group",
    "retries",
    "unread",
    "servers",
    "clients",
    "proxies",
];

/// The most retries a scenario (or `run --retries`) may ask for: a scenario that
/// needs more is broken, not flaky.
pub const MAX_RETRIES: usize = 100;
const PROXY_KEYS: &[&str] = &["to", "proto", "seed", "bind", "faults"];
/// Keys every fault takes beside its own.
const FAULT_COMMON_KEYS: &[&str] = &["direction", "connections", "probability"];
/// The largest `coalesce`: what one write may gather. The proxy's read bound grows
/// to it, so a connection never holds more.
pub const MAX_COALESCE_BYTES: usize = 1 << 20;
const SOCKET_OPTION_KEYS: &[&str] = &["nodelay", "recv_buffer", "send_buffer", "linger"];
const SERVER_KIND_KEYS: &[&str] = &["builtin", "script", "command", "address"];
const SERVER_COMMON_KEYS: &[&str] = &["proto", "bind"];
const SCRIPT_SERVER_KEYS: &[&str] = &["connections"];
const COMMAND_KEYS: &[&str] = &[
    "env",
    "cwd",
    "ready_timeout",
    "ready_delay",
    "ready",
    "exit",
    "max_memory",
];
const CLIENT_KEYS: &[&str] = &["name", "connect", "proto", "count", "script"];
/// Keys of a client program (`[[clients]]` with `command`).
const PROGRAM_CLIENT_KEYS: &[&str] = &[
    "name",
    "command",
    "env",
    "cwd",
    "count",
    "stdin",
    "exit",
    "stdout",
    "stderr",
    "wait",
    "signal",
    "max_memory",
];
const DATA_KEYS: &[&str] = &["text", "hex", "base64", "file", "repeat", "template"];
/// Keys of a data table.
const DATA_TABLE_KEYS: &[&str] = &[
    "text", "hex", "base64", "file", "repeat", "template", "times", "offset", "len",
];
/// Keys of a `send` table: its data and how it is written.
static SEND_KEYS: LazyLock<Vec<&str>> =
    LazyLock::new(|| [DATA_TABLE_KEYS, &["chunks", "delay", "await_read"]].concat());
/// The keys that make a table a matcher instead of DATA.
const MATCHER_KEYS: &[&str] = &["regex", "contains", "len", "json"];
const MATCH_HINT: &str = "a MATCH is DATA (exact bytes), or `{ regex = \"...\" }`, `{ contains = \"...\" }`, `{ len = N }` or `{ json = { key = value } }`";
/// How a frame is made: the keys `send_frame` and `expect_frame` share.
const FRAME_KEYS: &[&str] = &[
    "framing",
    "max_frame",
    "max_line",
    "length_includes_header",
    "header",
];
/// Keys of a `send_frame`: the payload's data and the frame's options.
static SEND_FRAME_KEYS: LazyLock<Vec<&str>> =
    LazyLock::new(|| [DATA_TABLE_KEYS, FRAME_KEYS].concat());
/// Keys of an `expect_frame`: a payload MATCH (data or a matcher, or a json-header
/// frame's `body`) and the frame's options.
static EXPECT_FRAME_KEYS: LazyLock<Vec<&str>> =
    LazyLock::new(|| [DATA_TABLE_KEYS, FRAME_KEYS, &["body"], MATCHER_KEYS].concat());
mod proxies;
pub use proxies::fault_from_text;

const DATA_HINT: &str = "data is a string, or a table with one of `text`, `hex`, `base64`, `file` (with `offset` and `len` for a slice), or `repeat` (with `times`)";

/// Reads and loads a scenario file.
pub fn load_file(path: &Path) -> Result<Scenario, LoadError> {
    load_file_then(path, |loaded| loaded)
}

/// Reads and loads a scenario file, and hands the result to `deliver` before the
/// file's syntax tree is freed. Freeing a long script's tree is about a tenth of
/// its load: a caller that loads on a thread of its own (`wirecheck run`) passes
/// the scenario on, and that thread frees the tree while the run starts.
pub fn load_file_then<T>(path: &Path, deliver: impl FnOnce(Result<Scenario, LoadError>) -> T) -> T {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            return deliver(Err(LoadError::Io {
                path: path.to_owned(),
                error: e.to_string(),
            }))
        }
    };
    match String::from_utf8(bytes) {
        Ok(source) => load_str_then(path, &source, deliver),
        Err(e) => deliver(Err(not_utf8(path, e.as_bytes(), e.utf8_error()))),
    }
}

/// A file that is not UTF-8 (a GBK or Latin-1 file from an editor that does not
/// default to UTF-8) gets the line and column of its first bad byte, quoted, and
/// what to do about it.
fn not_utf8(path: &Path, bytes: &[u8], error: std::str::Utf8Error) -> LoadError {
    let at = error.valid_up_to();
    let bad_len = error.error_len().unwrap_or(bytes.len() - at).max(1);
    let bad: Vec<String> = bytes[at..(at + bad_len).min(bytes.len())]
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect();
    // Up to the bad byte the lossy text is the file itself, so the span is exact;
    // the bad bytes show as U+FFFD (3 bytes) in the quoted line.
    let text = String::from_utf8_lossy(bytes).into_owned();
    let span = at..(at + 3).min(text.len());
    let diagnostic = Diagnostic::new(span, "this file is not UTF-8 text")
        .label(format!("byte {} is not UTF-8", bad.join(" ")))
        .hint("scenario files are UTF-8; the file seems to be saved in another encoding (GBK, Latin-1, ...)")
        .hint("save it as UTF-8 (in most editors: \"Save with encoding\" > UTF-8), or write the bytes as `{ hex = \"...\" }` data");
    LoadError::Invalid {
        path: path.to_owned(),
        source: Arc::from(text),
        diagnostics: vec![diagnostic],
    }
}

/// Loads a scenario from text; `path` names it in errors and anchors relative paths
/// (`file = ...`, `cwd`).
pub fn load_str(path: &Path, source: &str) -> Result<Scenario, LoadError> {
    load_str_then(path, source, |loaded| loaded)
}

/// [`load_str`], handing the result to `deliver` before the syntax tree and the
/// loader's tables are freed (see [`load_file_then`]).
fn load_str_then<T>(
    path: &Path,
    source: &str,
    deliver: impl FnOnce(Result<Scenario, LoadError>) -> T,
) -> T {
    let source: Arc<str> = Arc::from(source);
    let invalid = |diagnostics| LoadError::Invalid {
        path: path.to_owned(),
        source: Arc::clone(&source),
        diagnostics,
    };
    let arena = tree::arena_for(&source);
    let parsed = tree::parse(source.as_ref(), &arena).map_err(|error| {
        // The parser's message may span several lines; the first goes under the
        // caret, the rest become notes so the rendering keeps its margin.
        let mut lines = error.message.lines().map(str::trim).filter(|l| !l.is_empty());
        let mut diagnostic = Diagnostic::new(error.span, "this is not valid TOML")
            .label(lines.next().unwrap_or("invalid syntax").to_owned());
        for line in lines {
            diagnostic = diagnostic.hint(line.to_owned());
        }
        invalid(vec![diagnostic.hint("see https://toml.io for the syntax; strings need quotes, steps are inline tables `{ send = \"hi\" }`")])
    });
    let root = match parsed {
        Ok(root) => root,
        Err(error) => return deliver(Err(error)),
    };
    let mut loader = Loader::new(path, &source);
    let scenario = loader.scenario(&root);
    let loaded = match scenario {
        Some(scenario) if loader.diagnostics.is_empty() => Ok(scenario),
        _ => {
            let mut diagnostics = std::mem::take(&mut loader.diagnostics);
            diagnostics.sort_by_key(|d| d.span.start);
            diagnostics.dedup();
            Err(invalid(diagnostics))
        }
    };
    let delivered = deliver(loaded);
    // Freed only now, after the result is on its way: the loader's tables, and
    // the tree with its arena.
    drop(loader);
    drop(arena);
    delivered
}

type Check<T> = Result<T, Diagnostic>;

/// The valid servers, as clients look them up.
struct Servers<'s> {
    list: &'s [ServerSpec],
    protos: HashMap<&'s str, Proto>,
    /// Valid proxies by name, with their protocol.
    proxies: HashMap<&'s str, Proto>,
}

struct Loader<'a> {
    path: &'a Path,
    dir: PathBuf,
    source: &'a Arc<str>,
    /// Line starts of `source`: every step's line and column comes from here.
    lines: LineIndex,
    diagnostics: Vec<Diagnostic>,
    /// Every `[servers.NAME]`, valid or not: a client naming a server that has
    /// its own errors gets no second, misleading "no such server" error.
    declared_servers: HashSet<String>,
    /// Every `[proxies.NAME]`, valid or not, for the same reason.
    declared_proxies: HashSet<String>,
    /// Bytes of `file` and `repeat` data of every step so far, counted per step even
    /// when steps share one copy: each step is capped, and so is the file, so a
    /// scenario's data (and what a run sends and compares) stays bounded.
    data_total: Cell<usize>,
    /// Data already built in this load, so equal data is one allocation.
    shared: RefCell<SharedData>,
    /// Every `{VAR}` a template uses, with where: checked against the regexes'
    /// capture names once the whole file is read.
    variable_uses: RefCell<Vec<(String, Range<usize>)>>,
}

/// Payloads built so far in one load. `Bytes` clones share one buffer, so a
/// thousand steps of `{ repeat = "0123456789abcdef", times = 16384 }` hold 256 KiB
/// once, not a thousand times.
#[derive(Default)]
struct SharedData {
    /// `repeat` data by pattern and `times`, found before it is materialized.
    /// (Keyed by the pattern, then by `times`, so a lookup needs no owned key.)
    repeats: HashMap<String, HashMap<usize, Bytes>>,
    /// `file` data read at load time (frames), by path, offset and length: each
    /// slice is read once per load.
    files: HashMap<(PathBuf, u64, u64), Bytes>,
    /// Every other payload (strings, `text`, `hex`, `base64`) by content.
    inline: HashSet<Bytes>,
    /// `{ template }` data by its text, parsed once.
    templates: HashMap<String, Arc<Template>>,
    /// The payload shared last, and the `repeat` pattern and `times` that made it
    /// (`None` for inline data). Steps come in runs with the same data (a send and
    /// the expect of its echo, a load test's identical exchanges), and comparing
    /// with the last one is cheaper than hashing it again.
    last: Option<(Bytes, Option<(String, usize)>)>,
}

impl SharedData {
    /// The shared copy of `bytes`, made on first sight.
    fn inline(&mut self, bytes: &[u8]) -> Bytes {
        if let Some((last, None)) = &self.last {
            if last.as_ref() == bytes {
                return last.clone();
            }
        }
        let shared = match self.inline.get(bytes) {
            Some(shared) => shared.clone(),
            None => {
                let shared = Bytes::copy_from_slice(bytes);
                self.inline.insert(shared.clone());
                shared
            }
        };
        self.last = Some((shared.clone(), None));
        shared
    }

    /// The shared copy of `unit` repeated `times` times, made on first sight.
    fn repeat(&mut self, unit: &str, times: usize) -> Bytes {
        if let Some((last, Some((last_unit, last_times)))) = &self.last {
            if *last_times == times && last_unit == unit {
                return last.clone();
            }
        }
        let by_times = match self.repeats.get_mut(unit) {
            Some(by_times) => by_times,
            None => self.repeats.entry(unit.to_owned()).or_default(),
        };
        let shared = by_times
            .entry(times)
            .or_insert_with(|| Bytes::from(unit.repeat(times).into_bytes()))
            .clone();
        self.last = Some((shared.clone(), Some((unit.to_owned(), times))));
        shared
    }
}

/// A table being read: remembers which keys were used so leftovers can be reported
/// as unknown, with a suggestion.
struct Fields<'n> {
    entries: &'n [Entry<'n>],
    used: UsedEntries,
    span: Range<usize>,
}

/// Which entries of a table were read: one bit per entry, so reading one of a
/// script's thousands of small step tables allocates nothing. A table of more than
/// 64 keys keeps the rest in a vector.
struct UsedEntries {
    first: u64,
    rest: Vec<bool>,
}

impl UsedEntries {
    fn new(entries: usize) -> Self {
        UsedEntries {
            first: 0,
            rest: vec![false; entries.saturating_sub(64)],
        }
    }

    fn mark(&mut self, index: usize) {
        match index.checked_sub(64) {
            None => self.first |= 1 << index,
            Some(rest) => self.rest[rest] = true,
        }
    }

    fn mark_all(&mut self) {
        self.first = u64::MAX;
        self.rest.fill(true);
    }

    fn is_marked(&self, index: usize) -> bool {
        match index.checked_sub(64) {
            None => self.first & (1 << index) != 0,
            Some(rest) => self.rest[rest],
        }
    }
}

impl<'n> Fields<'n> {
    /// `what` names the table in the error; formatted only if there is one.
    fn of(node: &'n Node<'n>, what: impl std::fmt::Display) -> Check<Self> {
        match &node.kind {
            NodeKind::Table(entries) => Ok(Self {
                entries,
                used: UsedEntries::new(entries.len()),
                span: node.span.clone(),
            }),
            other => Err(Diagnostic::new(
                node.span.clone(),
                format!("{what} must be a table, not {}", other.type_name()),
            )
            .label("expected a table")),
        }
    }

    fn get(&mut self, key: &str) -> Option<&'n Node<'n>> {
        let index = self.entries.iter().position(|e| e.key == key)?;
        self.used.mark(index);
        Some(&self.entries[index].value)
    }

    fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    fn key_span(&self, key: &str) -> Range<usize> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map_or_else(|| self.span.clone(), |e| e.key_span.clone())
    }

    /// Whether every key was read or is valid here: no [`Self::unknown_keys`].
    fn all_known(&self, valid: &[&str]) -> bool {
        self.entries
            .iter()
            .enumerate()
            .all(|(index, entry)| self.used.is_marked(index) || valid.contains(&entry.key))
    }

    /// Diagnostics for every key that was neither read nor valid here, naming the
    /// valid ones. A valid key left unread (reading stopped at an earlier error) is
    /// not reported: that error already explains it.
    fn unknown_keys(&self, context: &str, valid: &[&str]) -> Vec<Diagnostic> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(index, entry)| !self.used.is_marked(*index) && !valid.contains(&entry.key))
            .map(|(_, entry)| {
                let mut d = Diagnostic::new(
                    entry.key_span.clone(),
                    format!("unknown key `{}` in {context}", entry.key),
                )
                .label("not a key here");
                if let Some(best) = did_you_mean(entry.key, valid) {
                    d = d.hint(format!("did you mean `{best}`?"));
                }
                d.hint(format!("valid keys: {}", valid.join(", ")))
            })
            .collect()
    }
}

fn type_error(node: &Node, key: &str, expected: &str) -> Diagnostic {
    Diagnostic::new(
        node.span.clone(),
        format!("`{key}` must be {expected}, not {}", node.kind.type_name()),
    )
    .label(format!("expected {expected}"))
}

fn string(node: &Node, key: &str) -> Check<String> {
    text(node, key).map(str::to_owned)
}

/// A string value, borrowed from the tree.
fn text<'n>(node: &'n Node, key: &str) -> Check<&'n str> {
    match &node.kind {
        NodeKind::Str(s) => Ok(s),
        _ => Err(type_error(node, key, "a string")),
    }
}

/// `group = "NAME"`: scenarios sharing a name never run at once, so an empty name
/// (which would look like "no group") is refused.
fn group_name(node: &Node) -> Check<String> {
    let name = string(node, "group")?;
    if name.trim().is_empty() {
        return Err(Diagnostic::new(node.span.clone(), "`group` is empty")
            .label("name the resource the scenarios share")
            .hint("e.g. `group = \"port-8080\"`, or remove the key"));
    }
    Ok(name)
}

fn boolean(node: &Node, key: &str) -> Check<bool> {
    match &node.kind {
        NodeKind::Bool(b) => Ok(*b),
        _ => Err(type_error(node, key, "`true` or `false`")),
    }
}

/// Step flags like `close = true`: `false` would mean "do nothing", which is never
/// what the author meant, so it is refused.
fn must_be_true(node: &Node, key: &str) -> Check<()> {
    if boolean(node, key)? {
        Ok(())
    } else {
        Err(
            Diagnostic::new(node.span.clone(), format!("`{key}` can only be `true`"))
                .label("a step with `false` would do nothing")
                .hint("remove the step instead"),
        )
    }
}

fn count(node: &Node, key: &str, min: usize, max: usize) -> Check<usize> {
    match &node.kind {
        NodeKind::Int(i) if *i >= min as i64 && (*i as u64) <= max as u64 => Ok(*i as usize),
        NodeKind::Int(i) => Err(Diagnostic::new(
            node.span.clone(),
            format!("`{key}` is {i}, outside {min}..={max}"),
        )
        .label(format!("must be between {min} and {max}"))),
        _ => Err(type_error(node, key, "an integer")),
    }
}

fn duration(node: &Node, key: &str) -> Check<Duration> {
    let text = match &node.kind {
        NodeKind::Str(s) => s,
        _ => {
            return Err(type_error(node, key, "a duration string").hint(DURATION_HINT));
        }
    };
    parse_duration(text).map_err(|reason| {
        Diagnostic::new(
            node.span.clone(),
            format!("`{key}` is not a valid duration"),
        )
        .label(reason)
        .hint(DURATION_HINT)
    })
}

/// A deadline: zero would make whatever it bounds fail (or pass) by chance, so it
/// is refused.
fn nonzero_duration(node: &Node, key: &str) -> Check<Duration> {
    let value = duration(node, key)?;
    if value.is_zero() {
        return Err(Diagnostic::new(node.span.clone(), format!("`{key}` is zero"))
            .label("a deadline of zero leaves no time at all")
            .hint(format!(
                "give it time, e.g. `{key} = \"{}\"`; to wait without a limit, use a long deadline such as \"1h\"",
                if key == "timeout" { "10s" } else { "2s" }
            )));
    }
    Ok(value)
}

/// `ready = "listening" | "connect" | "none" | { log = "REGEX" } | { delay = "D" }`.
fn readiness(node: &Node, source: &str) -> Check<Readiness> {
    const HINT: &str = "ready = \"listening\" (default), \"connect\", \"none\", { log = \"REGEX\" } or { delay = \"300ms\" }";
    match &node.kind {
        NodeKind::Str(text) => match *text {
            "listening" => Ok(Readiness::Listening),
            "connect" => Ok(Readiness::Connect),
            "none" => Ok(Readiness::Immediately),
            other => {
                let mut d =
                    Diagnostic::new(node.span.clone(), format!("unknown readiness `{other}`"))
                        .label("not a way to wait for a server");
                if let Some(best) = did_you_mean(other, &["listening", "connect", "none"]) {
                    d = d.hint(format!("did you mean `{best}`?"));
                }
                Err(d.hint(HINT))
            }
        },
        NodeKind::Table(entries) => match entries {
            [entry] if entry.key == "log" => {
                let text = string(&entry.value, "log")?;
                let regex = regex::Regex::new(&text).map_err(|e| {
                    Diagnostic::new(entry.value.span.clone(), "`log` is not a valid regex")
                        .label(
                            e.to_string()
                                .lines()
                                .last()
                                .unwrap_or("invalid")
                                .trim()
                                .to_owned(),
                        )
                        .hint("Rust regex syntax: https://docs.rs/regex/latest/regex/#syntax")
                })?;
                // Named groups capture variables, as a MATCH's regex does.
                for name in regex.capture_names().flatten() {
                    let at = text.find(&format!("<{name}>")).map_or(0, |at| at + 1);
                    let span = char_span_in_string(&entry.value, source, at, name.len());
                    if !matcher::is_variable_name(name) {
                        return Err(Diagnostic::new(
                            span,
                            format!("the group name `{name}` is not a valid variable name"),
                        )
                        .label("letters, digits and `_`, not starting with a digit"));
                    }
                    if matcher::RESERVED_NAMES.contains(&name) {
                        return Err(Diagnostic::new(
                            span,
                            format!("`{name}` is a placeholder of its own and cannot be captured"),
                        )
                        .label("pick another group name"));
                    }
                }
                Ok(Readiness::Log(regex))
            }
            [entry] if entry.key == "delay" => {
                Ok(Readiness::Delay(duration(&entry.value, "delay")?))
            }
            _ => Err(Diagnostic::new(
                node.span.clone(),
                "`ready` as a table takes exactly one of `log` or `delay`",
            )
            .label("expected { log = \"REGEX\" } or { delay = \"300ms\" }")
            .hint(HINT)),
        },
        _ => Err(type_error(node, "ready", "a string or a table").hint(HINT)),
    }
}

/// The smallest `max_memory`: below a mebibyte no program runs at all, so a
/// smaller value is a mistake (an integer is bytes: `max_memory = 100` meant MiB).
pub const MIN_MEMORY_LIMIT: u64 = 1 << 20;

/// `max_memory = BYTES` (an integer) or `max_memory = "600MiB"` (a string with a
/// unit; see [`crate::size`]), at least [`MIN_MEMORY_LIMIT`].
fn memory_limit(node: &Node) -> Check<u64> {
    let bytes = match &node.kind {
        NodeKind::Int(bytes) if *bytes < 0 => {
            return Err(Diagnostic::new(
                node.span.clone(),
                format!("`max_memory` is {bytes}: a size cannot be negative"),
            )
            .label("expected a size")
            .hint(SIZE_HINT));
        }
        NodeKind::Int(bytes) => *bytes as u64,
        NodeKind::Str(text) => parse_size(text).map_err(|reason| {
            Diagnostic::new(node.span.clone(), "`max_memory` is not a valid size")
                .label(reason)
                .hint(SIZE_HINT)
        })?,
        _ => return Err(type_error(node, "max_memory", "a size").hint(SIZE_HINT)),
    };
    if bytes < MIN_MEMORY_LIMIT {
        let mut d = Diagnostic::new(
            node.span.clone(),
            format!("`max_memory` is {bytes} bytes, less than 1 MiB"),
        )
        .label("no program runs in less than a mebibyte");
        if let NodeKind::Int(n) = &node.kind {
            d = d.hint(format!(
                "an integer is a number of bytes; did you mean `max_memory = \"{n}MiB\"`?"
            ));
        }
        return Err(d);
    }
    if bytes > MAX_SIZE {
        return Err(
            Diagnostic::new(node.span.clone(), "`max_memory` is more than 1 PiB")
                .label("no machine has that much memory")
                .hint(SIZE_HINT),
        );
    }
    Ok(bytes)
}

/// `exit = N` (0 to 255) or `exit = "any"`.
fn exit_expectation(node: &Node) -> Check<ExitExpectation> {
    match &node.kind {
        NodeKind::Int(code) if (0..=255).contains(code) => {
            Ok(ExitExpectation::Status(*code as i32))
        }
        NodeKind::Int(code) => Err(Diagnostic::new(
            node.span.clone(),
            format!("`exit` is {code}, outside 0..=255"),
        )
        .label("an exit status is between 0 and 255")),
        NodeKind::Str(text) if *text == "any" => Ok(ExitExpectation::Any),
        _ => Err(type_error(
            node,
            "exit",
            "an exit status (0 to 255) or \"any\"",
        )),
    }
}

fn string_list(node: &Node, key: &str) -> Check<Vec<String>> {
    match &node.kind {
        NodeKind::Array(items) => items.iter().map(|item| string(item, key)).collect(),
        _ => Err(type_error(node, key, "an array of strings")),
    }
}

/// The examples every address error ends with.
const ADDRESS_HINT: &str =
    "only loopback literal addresses or localhost are accepted: \"127.0.0.1:8080\", \"[::1]:8080\" or \"localhost:8080\"";

/// A loopback `HOST:PORT`, read without any name lookup, so that loading (and
/// `wirecheck check`) works offline and means the same on every machine. HOST is a
/// literal IP address (IPv6 in brackets) or `localhost`, which is 127.0.0.1.
fn loopback_addr(node: &Node, key: &str) -> Check<SocketAddr> {
    let text = string(node, key)?;
    let addr = parse_addr(&text).map_err(|label| {
        Diagnostic::new(
            node.span.clone(),
            format!("`{key}` is not a loopback IP address or localhost"),
        )
        .label(label)
        .hint(ADDRESS_HINT)
    })?;
    if !is_loopback(addr.ip()) {
        return Err(Diagnostic::new(
            node.span.clone(),
            format!("`{key}` is not a loopback address"),
        )
        .label(format!("{addr} is outside 127.0.0.0/8 and ::1"))
        .hint("wirecheck only sends traffic on this machine's loopback interface"));
    }
    Ok(addr)
}

/// `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`; the error is the caret's label.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = SocketAddr::from_str(text) {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("`{text}` is not HOST:PORT"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("`{port}` is not a port (0 to 65535)"));
    };
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if host.parse::<IpAddr>().is_ok() {
        // `::1:80`: without brackets the port cannot be told from the address.
        return Err(format!(
            "write the IPv6 address in brackets: \"[{host}]:{port}\""
        ));
    }
    Err(format!(
        "`{host}` is a host name; wirecheck looks up no names"
    ))
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

impl<'a> Loader<'a> {
    /// A loader for the file at `path`, whose text is `source`.
    fn new(path: &'a Path, source: &'a Arc<str>) -> Self {
        Loader {
            path,
            dir: path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            source,
            lines: LineIndex::new(source),
            diagnostics: Vec::new(),
            declared_servers: HashSet::new(),
            declared_proxies: HashSet::new(),
            data_total: Cell::new(0),
            shared: RefCell::default(),
            variable_uses: RefCell::default(),
        }
    }
}

impl Loader<'_> {
    fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Records the error of a check and turns it into `None`, so loading goes on and
    /// the user sees every problem at once.
    fn ok<T>(&mut self, check: Check<T>) -> Option<T> {
        check.map_err(|d| self.push(d)).ok()
    }

    /// Counts `len` bytes of data against the whole file's limit.
    fn reserve_data(&self, len: usize, span: &Range<usize>) -> Check<()> {
        let total = self.data_total.get().saturating_add(len);
        if total > MAX_DATA_BYTES {
            return Err(Diagnostic::new(
                span.clone(),
                "the scenario's data adds up to more than 1 GiB",
            )
            .label("this step goes over the limit")
            .hint("a scenario holds at most 1 GiB of `file` and `repeat` data in all"));
        }
        self.data_total.set(total);
        Ok(())
    }

    fn location(&self, span: &Range<usize>) -> Location {
        self.lines.location(span.clone())
    }

    fn scenario(&mut self, root: &Node) -> Option<Scenario> {
        let mut top = self.ok(Fields::of(root, "the file"))?;
        let name = match top.get("name") {
            Some(node) => self.ok(string(node, "name")),
            None => Some(
                self.path
                    .file_stem()
                    .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned()),
            ),
        };
        let description = top
            .get("description")
            .and_then(|node| self.ok(string(node, "description")));
        let timeout = self.deadline_or(&mut top, "timeout", Duration::from_secs(10));
        let step_timeout = self.deadline_or(&mut top, "step_timeout", Duration::from_secs(2));
        let tags = top
            .get("tags")
            .and_then(|node| self.ok(string_list(node, "tags")))
            .unwrap_or_default();
        let group = top.get("group").and_then(|node| self.ok(group_name(node)));
        let retries = top
            .get("retries")
            .and_then(|node| self.ok(count(node, "retries", 0, MAX_RETRIES)));
        let unread = top
            .get("unread")
            .and_then(|node| self.ok(unread_policy(node)))
            .unwrap_or_default();

        // Proxy names first: a server's `command` may name one in a placeholder.
        if let Some(NodeKind::Table(entries)) = top.get("proxies").map(|node| &node.kind) {
            self.declared_proxies = entries.iter().map(|e| e.key.to_string()).collect();
        }
        let servers = match top.get("servers") {
            Some(node) => {
                if let NodeKind::Table(entries) = &node.kind {
                    self.declared_servers = entries.iter().map(|e| e.key.to_string()).collect();
                }
                self.servers(node)
            }
            None => Vec::new(),
        };
        let proxies = match top.get("proxies") {
            Some(node) => self.proxies(node, &servers),
            None => Vec::new(),
        };
        let (clients, programs) = match top.get("clients") {
            Some(node) => self.clients(node, &servers, &proxies),
            None => (Vec::new(), Vec::new()),
        };
        let unknown = top.unknown_keys("the scenario's top level", TOP_KEYS);
        self.diagnostics.extend(unknown);
        if !top.has("servers") && !top.has("clients") {
            self.push(
                Diagnostic::new(0..0, "the scenario has no servers and no clients")
                    .label("nothing to run")
                    .hint("add a `[servers.NAME]` table and a `[[clients]]` entry"),
            );
        }
        let scenario = Scenario {
            path: self.path.to_owned(),
            source: Arc::clone(self.source),
            name: name?,
            description,
            timeout,
            step_timeout,
            tags,
            group,
            retries,
            unread,
            capturers: Arc::default(),
            servers,
            clients,
            programs,
            proxies,
        };
        // With other errors, some scripts were dropped, and their signals with them:
        // checking waits now would report signals that do exist.
        let mut scenario = scenario;
        if self.diagnostics.is_empty() {
            self.check_signals(&scenario);
            scenario.capturers = Arc::new(capturers(&scenario));
            self.check_variables(&scenario.capturers);
        }
        Some(scenario)
    }

    fn duration_or(&mut self, fields: &mut Fields, key: &str, default: Duration) -> Duration {
        fields
            .get(key)
            .and_then(|node| self.ok(duration(node, key)))
            .unwrap_or(default)
    }

    /// A deadline key of `fields`, refusing zero.
    fn deadline_or(&mut self, fields: &mut Fields, key: &str, default: Duration) -> Duration {
        fields
            .get(key)
            .and_then(|node| self.ok(nonzero_duration(node, key)))
            .unwrap_or(default)
    }

    fn servers(&mut self, node: &Node) -> Vec<ServerSpec> {
        let entries = match &node.kind {
            NodeKind::Table(entries) => entries,
            _ => {
                self.push(
                    type_error(node, "servers", "a table of servers")
                        .hint("declare each server as `[servers.NAME]`"),
                );
                return Vec::new();
            }
        };
        entries
            .iter()
            .filter_map(|entry| self.server(entry))
            .collect()
    }

    fn server(&mut self, entry: &Entry) -> Option<ServerSpec> {
        let name = entry.key.to_string();
        let context = format!("server `{name}`");
        let mut fields = self.ok(Fields::of(&entry.value, &context))?;
        let location = self.location(&entry.key_span);

        let proto = self.proto(&mut fields).unwrap_or(Proto::Tcp);
        let bind = match fields.get("bind") {
            Some(node) => self.ok(loopback_addr(node, "bind"))?,
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let options = self.socket_options(&mut fields);

        let kinds: Vec<&str> = SERVER_KIND_KEYS
            .iter()
            .copied()
            .filter(|k| fields.has(k))
            .collect();
        let mut valid: Vec<&str> = SERVER_COMMON_KEYS.to_vec();
        valid.extend(SOCKET_OPTION_KEYS);
        let kind = match kinds.as_slice() {
            [] => {
                self.push(
                    Diagnostic::new(entry.key_span.clone(), format!("{context} does not say what it is"))
                        .label("needs exactly one of `builtin`, `script`, `command`, `address`")
                        .hint("e.g. `builtin = \"echo\"`, `script = [ ... ]`, `command = [\"python3\", \"srv.py\", \"{port}\"]` or `address = \"127.0.0.1:8080\"`"),
                );
                None
            }
            [one] => {
                valid.push(one);
                match *one {
                    "builtin" => self.builtin_server(&mut fields, proto, &mut valid),
                    "script" => {
                        valid.extend(SCRIPT_SERVER_KEYS);
                        self.script_server(&mut fields, proto, &name)
                    }
                    "command" => {
                        valid.extend(COMMAND_KEYS);
                        self.refuse_socket_options(
                            &fields,
                            &context,
                            "an external server opens its own sockets",
                        );
                        self.command_server(&mut fields, &name, bind, proto)
                    }
                    _ => {
                        self.refuse_socket_options(
                            &fields,
                            &context,
                            "an `address` server is already running",
                        );
                        if fields.has("bind") {
                            self.push(
                                Diagnostic::new(
                                    fields.key_span("bind"),
                                    format!("{context} is already running; `bind` does not apply"),
                                )
                                .label("remove this")
                                .hint("`address` says where the running server listens"),
                            );
                        }
                        let node = fields.get("address")?;
                        let addr = self.ok(loopback_addr(node, "address"))?;
                        Some(ServerKind::Address(addr))
                    }
                }
            }
            [first, second, ..] => {
                // Both keys are known ones; only their combination is wrong.
                valid.extend(kinds.iter().copied());
                self.push(
                    Diagnostic::new(
                        fields.key_span(second),
                        format!("{context} has both `{first}` and `{second}`"),
                    )
                    .label("a server is exactly one of builtin, script, command or address"),
                );
                None
            }
        };
        if !kinds.contains(&"command") {
            self.refuse_max_memory(&mut fields, &context);
        }
        let unknown = fields.unknown_keys(&context, &valid);
        self.diagnostics.extend(unknown);
        Some(ServerSpec {
            name,
            location,
            proto,
            bind,
            options,
            kind: kind?,
        })
    }

    /// `max_memory` on a server or client that is not a program wirecheck starts:
    /// said plainly, rather than as an unknown key.
    fn refuse_max_memory(&mut self, fields: &mut Fields, context: &str) {
        if !fields.has("max_memory") {
            return;
        }
        self.push(
            Diagnostic::new(
                fields.key_span("max_memory"),
                format!("`max_memory` does not apply to {context}"),
            )
            .label("only a program wirecheck starts has memory of its own to limit")
            .hint("`max_memory` limits a `command` server or a client program (a `[[clients]]` entry with `command`)"),
        );
        fields.get("max_memory");
    }

    /// Socket options only make sense on sockets wirecheck itself opens.
    fn refuse_socket_options(&mut self, fields: &Fields, context: &str, why: &str) {
        for key in SOCKET_OPTION_KEYS.iter().filter(|k| fields.has(k)) {
            self.push(
                Diagnostic::new(
                    fields.key_span(key),
                    format!("`{key}` has no effect on {context}"),
                )
                .label("remove this")
                .hint(format!(
                    "{why}; socket options apply to `builtin` and `script` servers and to clients"
                )),
            );
        }
    }

    fn proto(&mut self, fields: &mut Fields) -> Option<Proto> {
        let node = fields.get("proto")?;
        self.proto_of(node)
    }

    fn socket_options(&mut self, fields: &mut Fields) -> SocketOptions {
        let mut options = SocketOptions::default();
        if let Some(node) = fields.get("nodelay") {
            options.nodelay = self.ok(boolean(node, "nodelay"));
        }
        if let Some(node) = fields.get("recv_buffer") {
            options.recv_buffer = self.ok(count(node, "recv_buffer", 1, 1 << 30));
        }
        if let Some(node) = fields.get("send_buffer") {
            options.send_buffer = self.ok(count(node, "send_buffer", 1, 1 << 30));
        }
        if let Some(node) = fields.get("linger") {
            options.linger = self.ok(duration(node, "linger"));
        }
        options
    }

    fn builtin_server(
        &mut self,
        fields: &mut Fields,
        proto: Proto,
        valid: &mut Vec<&'static str>,
    ) -> Option<ServerKind> {
        let node = fields.get("builtin")?;
        let name = self.ok(string(node, "builtin"))?;
        let Some(kind) = BuiltinKind::from_name(&name) else {
            // Which server was meant is unknown, so any server's option may be right.
            for known in BuiltinKind::all() {
                valid.extend(known.option_keys());
            }
            let names = BuiltinKind::names();
            let mut d = Diagnostic::new(
                node.span.clone(),
                format!("unknown builtin server `{name}`"),
            )
            .label("not a reference server of wirecheck");
            if let Some(best) = did_you_mean(&name, &names) {
                d = d.hint(format!("did you mean `{best}`?"));
            }
            self.push(d.hint(format!("builtin servers: {}", names.join(", "))));
            return None;
        };
        if !kind.supports(proto) {
            self.push(
                Diagnostic::new(
                    node.span.clone(),
                    format!("builtin `{name}` does not speak {}", proto.name()),
                )
                .label(format!(
                    "`{name}` is {}",
                    if proto == Proto::Udp {
                        "TCP only"
                    } else {
                        "UDP only"
                    }
                )),
            );
            return None;
        }
        valid.extend(kind.option_keys());
        let mut config = BuiltinConfig::new(kind);
        // The server's own schema checks each option it takes; every option is
        // checked even after one fails, so all errors show at once. Any other key
        // is left for the unknown-key report, so an option that would be ignored
        // is refused.
        let mut failed = false;
        for option in kind.options() {
            let Some(node) = fields.get(option.key) else {
                continue;
            };
            let value = match &node.kind {
                NodeKind::Str(s) => OptionValue::Str(s.to_string()),
                NodeKind::Int(i) => OptionValue::Int(*i),
                NodeKind::Bool(b) => OptionValue::Bool(*b),
                other => OptionValue::Other(other.type_name()),
            };
            if let Err(mut d) = option.apply(kind.name(), &mut config, &value) {
                d.span = node.span.clone();
                self.push(d);
                failed = true;
            }
        }
        if failed {
            return None;
        }
        Some(ServerKind::Builtin(config))
    }

    fn script_server(
        &mut self,
        fields: &mut Fields,
        proto: Proto,
        name: &str,
    ) -> Option<ServerKind> {
        let connections = match fields.get("connections") {
            Some(node) if proto == Proto::Udp => {
                self.push(
                    Diagnostic::new(node.span.clone(), "a UDP scripted server has no connections to count")
                        .label("`connections` needs proto = \"tcp\"")
                        .hint("a UDP scripted server runs its script once on its socket; `send` answers the sender of the last datagram"),
                );
                return None;
            }
            Some(node) => self.ok(count(node, "connections", 1, 100_000))?,
            None => 1,
        };
        let node = fields.get("script")?;
        let script = self.script(node, ActorRole::Server, proto, name)?;
        Some(ServerKind::Script {
            connections,
            script,
        })
    }

    fn command_server(
        &mut self,
        fields: &mut Fields,
        name: &str,
        bind: SocketAddr,
        proto: Proto,
    ) -> Option<ServerKind> {
        let command_span = fields.get("command").map(|node| node.span.clone());
        let ready_timeout = match fields.get("ready_timeout") {
            Some(node) => self.ok(nonzero_duration(node, "ready_timeout"))?,
            None => Duration::from_secs(5),
        };
        let ready_delay = self.duration_or(fields, "ready_delay", Duration::ZERO);
        let ready = match fields.get("ready") {
            Some(node) => {
                let ready = self.ok(readiness(node, self.source))?;
                if matches!(ready, Readiness::Connect) && proto == Proto::Udp {
                    self.push(
                        Diagnostic::new(node.span.clone(), "a UDP server cannot be probed with a connect")
                            .label("UDP has no handshake")
                            .hint("leave `ready` out: \"listening\" sees the server's bound socket in the kernel's socket table"),
                    );
                    return None;
                }
                ready
            }
            None => Readiness::Listening,
        };
        let exit = match fields.get("exit") {
            Some(node) => self.ok(exit_expectation(node))?,
            None => ExitExpectation::Status(0),
        };
        let max_memory = self.max_memory(fields)?;
        let (argv, env, cwd) = self.program(fields, true)?;
        let own_port = |t: &Template| {
            t.placeholders().any(|p| {
                *p == Placeholder::OwnPort
                    || matches!(p, Placeholder::Port(n) | Placeholder::Addr(n) if n == name)
            })
        };
        if bind.port() == 0 && !argv.iter().chain(env.iter().map(|(_, v)| v)).any(own_port) {
            self.push(
                Diagnostic::new(
                    command_span.unwrap_or(0..0),
                    format!("server `{name}` is never told its port"),
                )
                .label("no `{port}` in the command or its `env`, and `bind` picks a free port")
                .hint("pass the port to the program: command = [\"python3\", \"server.py\", \"{port}\"]")
                .hint("or, if the program always listens on one port, say which: bind = \"127.0.0.1:9000\""),
            );
            return None;
        }
        Some(ServerKind::Command(CommandSpec {
            argv,
            env,
            cwd,
            ready_timeout,
            ready_delay,
            ready,
            exit,
            max_memory,
        }))
    }

    /// `max_memory = SIZE` of a program, with where it is written; `Some(None)`
    /// without the key, `None` after a diagnostic.
    fn max_memory(&mut self, fields: &mut Fields) -> Option<Option<Checked<u64>>> {
        let Some(node) = fields.get("max_memory") else {
            return Some(None);
        };
        let bytes = self.ok(memory_limit(node))?;
        Some(Some(self.checked(fields, "max_memory", bytes)))
    }

    /// `command`, `env` and `cwd` of a program, server or client. `own_port`: the
    /// program is a server, so `{port}` means its own port.
    #[allow(clippy::type_complexity)]
    fn program(
        &mut self,
        fields: &mut Fields,
        own_port: bool,
    ) -> Option<(Vec<Template>, Vec<(String, Template)>, PathBuf)> {
        let node = fields.get("command")?;
        let NodeKind::Array(items) = &node.kind else {
            self.push(type_error(node, "command", "an array of strings"));
            return None;
        };
        if items.is_empty() {
            self.push(
                Diagnostic::new(node.span.clone(), "`command` is empty")
                    .label("needs at least the program")
                    .hint("e.g. command = [\"python3\", \"server.py\", \"{port}\"]"),
            );
            return None;
        }
        let argv: Vec<Option<Template>> = items
            .iter()
            .map(|item| {
                let check = self.template(item, "command", own_port);
                self.ok(check)
            })
            .collect();
        let mut env = Vec::new();
        let mut env_ok = true;
        if let Some(node) = fields.get("env") {
            let mut table = self.ok(Fields::of(node, "`env`"))?;
            for entry in table.entries {
                let check = self.template(&entry.value, entry.key, own_port);
                match self.ok(check) {
                    Some(value) => env.push((entry.key.to_string(), value)),
                    None => env_ok = false,
                }
            }
            table.used.mark_all();
        }
        let cwd = match fields.get("cwd") {
            Some(node) => {
                let text = self.ok(string(node, "cwd"))?;
                let cwd = self.dir.join(&text);
                if !cwd.is_dir() {
                    let why = if cwd.exists() {
                        "is not a folder"
                    } else {
                        "does not exist"
                    };
                    self.push(
                        Diagnostic::new(
                            node.span.clone(),
                            format!("`cwd` {why}: {}", cwd.display()),
                        )
                        .label(format!("no such folder ({why})"))
                        .hint("a relative `cwd` is taken relative to the scenario file's folder"),
                    );
                    return None;
                }
                cwd
            }
            None => self.dir.clone(),
        };
        let argv: Option<Vec<Template>> = argv.into_iter().collect();
        Some((argv?, env_ok.then_some(env)?, cwd))
    }

    /// A `command` item or `env` value with placeholders; errors point at the
    /// placeholder itself. A `{VAR}` is checked against the regexes' captures
    /// once the whole file is read.
    fn template(&self, node: &Node, key: &str, own_port: bool) -> Check<Template> {
        let text = string(node, key)?;
        let (servers, proxies) = (&self.declared_servers, &self.declared_proxies);
        let known = |name: &str| servers.contains(name) || proxies.contains(name);
        let template = Template::parse_command(&text, own_port, &known).map_err(|e| {
            Diagnostic::new(
                char_span_in_string(node, self.source, e.range.start, e.range.len()),
                e.message,
            )
            .label("in this placeholder")
            .hint(e.hint)
        })?;
        self.record_variables(&template, &text, node);
        Ok(template)
    }

    /// Notes where each `{VAR}` of `template` (the value of `node`, `text`) is
    /// written, for the check that some regex captures it.
    fn record_variables(&self, template: &Template, text: &str, node: &Node) {
        let mut uses = self.variable_uses.borrow_mut();
        let mut from = 0;
        for name in template.variables() {
            // Point at the placeholder itself.
            let needle = format!("{{{name}}}");
            let at = text[from..].find(&needle).map(|i| from + i);
            let span = match at {
                Some(at) => {
                    from = at + needle.len();
                    char_span_in_string(node, self.source, at, needle.len())
                }
                None => node.span.clone(),
            };
            uses.push((name.to_owned(), span));
        }
    }

    fn clients(
        &mut self,
        node: &Node,
        servers: &[ServerSpec],
        proxies: &[ProxySpec],
    ) -> (Vec<ClientSpec>, Vec<ClientProgram>) {
        let servers = Servers {
            list: servers,
            protos: servers.iter().map(|s| (s.name.as_str(), s.proto)).collect(),
            proxies: proxies.iter().map(|p| (p.name.as_str(), p.proto)).collect(),
        };
        let items = match &node.kind {
            NodeKind::Array(items) => items,
            _ => {
                self.push(
                    type_error(node, "clients", "an array of tables")
                        .hint("declare each client with a `[[clients]]` header"),
                );
                return (Vec::new(), Vec::new());
            }
        };
        let mut clients: Vec<ClientSpec> = Vec::new();
        let mut programs: Vec<ClientProgram> = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        for (index, item) in items.iter().enumerate() {
            let is_program = matches!(&item.kind, NodeKind::Table(entries) if entries.iter().any(|e| e.key == "command"));
            let named = if is_program {
                self.program_client(item, index).map(|program| {
                    let named = (program.name.clone(), program.location.span.clone());
                    programs.push(program);
                    named
                })
            } else {
                self.client(item, index, &servers).map(|client| {
                    let named = (client.name.clone(), client.location.span.clone());
                    clients.push(client);
                    named
                })
            };
            if let Some((name, span)) = named {
                if !names.insert(name.clone()) {
                    self.push(
                        Diagnostic::new(span, format!("two clients are named `{name}`"))
                            .label("client names must be unique"),
                    );
                }
            }
        }
        (clients, programs)
    }

    /// A `[[clients]]` entry with `command`: a client program under test.
    fn program_client(&mut self, node: &Node, index: usize) -> Option<ClientProgram> {
        let mut fields = self.ok(Fields::of(node, "a client"))?;
        let name = match fields.get("name") {
            Some(node) => self.ok(string(node, "name"))?,
            None => format!("client{}", index + 1),
        };
        let context = format!("client program `{name}`");
        let anchor = fields
            .entries
            .first()
            .map_or_else(|| node.span.clone(), |e| e.key_span.clone());
        let location = self.location(&anchor);
        let count = match fields.get("count") {
            Some(node) => self.ok(count(node, "count", 1, MAX_CLIENT_COUNT)),
            None => Some(1),
        };
        let stdin = match fields.get("stdin") {
            Some(node) => {
                let check = self
                    .data(node, "stdin")
                    .and_then(|data| self.bytes_unless_template(data, &node.span, "stdin"));
                self.ok(check)
            }
            None => Some(Data::Bytes(Bytes::new())),
        };
        let exit = match fields.get("exit") {
            Some(node) => self
                .ok(exit_expectation(node))
                .map(|value| self.checked(&fields, "exit", value)),
            None => Some(self.checked(&fields, "command", ExitExpectation::Status(0))),
        };
        let mut outputs = [None, None];
        let mut outputs_ok = true;
        for (slot, key) in outputs.iter_mut().zip(["stdout", "stderr"]) {
            if let Some(node) = fields.get(key) {
                match self.ok(self.output_match(node, key)) {
                    Some(value) => *slot = Some(self.checked(&fields, key, value)),
                    None => outputs_ok = false,
                }
            }
        }
        let command_at = self.checked(&fields, "command", ());
        let wait = match fields.get("wait") {
            Some(node) => self
                .ok(signal_name(node, "wait"))
                .map(|name| Some(self.checked(&fields, "wait", name))),
            None => Some(None),
        };
        let signal = match fields.get("signal") {
            Some(node) => self.ok(signal_name(node, "signal")).map(Some),
            None => Some(None),
        };
        let max_memory = self.max_memory(&mut fields);
        let program = self.program(&mut fields, false);
        for key in ["connect", "script", "proto"]
            .iter()
            .chain(SOCKET_OPTION_KEYS)
        {
            if fields.has(key) {
                self.push(
                    Diagnostic::new(
                        fields.key_span(key),
                        format!("`{key}` does not apply to {context}"),
                    )
                    .label("a client program opens its own sockets")
                    .hint("give it the server's address in its command: \"{addr:NAME}\", \"{port:NAME}\" or \"{host:NAME}\""),
                );
                fields.get(key);
            }
        }
        let unknown = fields.unknown_keys(&context, PROGRAM_CLIENT_KEYS);
        self.diagnostics.extend(unknown);
        let (argv, env, cwd) = program?;
        let [stdout, stderr] = outputs;
        if !outputs_ok {
            return None;
        }
        Some(ClientProgram {
            name,
            location,
            count: count?,
            argv,
            env,
            cwd,
            stdin: stdin?,
            exit: exit?,
            stdout,
            stderr,
            command_at,
            wait: wait?,
            signal: signal?,
            max_memory: max_memory?,
        })
    }

    /// `value` with where `key` is written in `fields`, for reports.
    fn checked<T>(&self, fields: &Fields, key: &str, value: T) -> Checked<T> {
        let entry = fields.entries.iter().find(|e| e.key == key);
        let span = entry.map_or_else(
            || fields.span.clone(),
            |e| e.key_span.start..e.value.span.end.max(e.key_span.end),
        );
        Checked {
            value,
            location: self.location(&span),
            text: self.source.get(span).unwrap_or_default().to_owned(),
        }
    }

    /// DATA read at load time (a program's stdin, a frame's payload): a file
    /// slice is read now and counts against the scenario's data limit; a
    /// `{ template }` stays one, made into bytes when it is used.
    fn bytes_unless_template(&self, data: Data, span: &Range<usize>, key: &str) -> Check<Data> {
        match data {
            Data::Template(template) => Ok(Data::Template(template)),
            data => self.loaded_bytes(data, span, key).map(Data::Bytes),
        }
    }

    /// A MATCH on a program's whole output: DATA (exact bytes), or one of
    /// `{ regex }`, `{ contains = DATA }`, `{ len = N }`, `{ json = { ... } }`.
    /// A client program's `stdout`/`stderr`: a MATCH on the whole output, the
    /// same matchers as the steps'.
    fn output_match(&self, node: &Node, key: &str) -> Check<OutputMatch> {
        self.matcher(node, key)
    }

    fn client(&mut self, node: &Node, index: usize, servers: &Servers) -> Option<ClientSpec> {
        let mut fields = self.ok(Fields::of(node, "a client"))?;
        let name = match fields.get("name") {
            Some(node) => self.ok(string(node, "name"))?,
            None => format!("client{}", index + 1),
        };
        let context = format!("client `{name}`");
        // Anchor the client at its first key (where a reader looks for it), or at
        // its `[[clients]]` header when it has none.
        let anchor = fields
            .entries
            .first()
            .map_or_else(|| node.span.clone(), |e| e.key_span.clone());
        let location = self.location(&anchor);
        // A missing or unknown `connect` is reported, but the rest of the client is
        // still checked so the user sees every problem at once.
        let target = match fields.get("connect") {
            Some(node) => self.target(node, servers),
            None if servers.list.len() == 1 && self.declared_servers.len() == 1 => Some((
                Target::Server(servers.list[0].name.clone()),
                Some(servers.list[0].proto),
            )),
            None if self.declared_servers.len() == 1 => None,
            None => {
                self.push(
                    Diagnostic::new(anchor.clone(), format!("{context} has no `connect`"))
                        .label("which server should it talk to?")
                        .hint("add `connect = \"SERVER_NAME\"` or `connect = \"127.0.0.1:PORT\"`"),
                );
                None
            }
        };
        let server_proto = target.as_ref().and_then(|(_, proto)| *proto);
        let own_proto = self.proto(&mut fields);
        if let (Some(own), Some(server)) = (own_proto, server_proto) {
            if own != server {
                self.push(
                    Diagnostic::new(
                        fields.key_span("proto"),
                        format!(
                            "{context} speaks {} to a {} server",
                            own.name(),
                            server.name()
                        ),
                    )
                    .label("does not match the server's `proto`")
                    .hint("leave `proto` out: a client speaks its server's protocol"),
                );
            }
        }
        let proto = own_proto.or(server_proto).unwrap_or(Proto::Tcp);
        let count = match fields.get("count") {
            Some(node) => self.ok(count(node, "count", 1, MAX_CLIENT_COUNT)),
            None => Some(1),
        };
        let options = self.socket_options(&mut fields);
        let script = match fields.get("script") {
            Some(node) => self.script(node, ActorRole::Client, proto, &name),
            None => Some(Script::default()),
        };
        let mut valid = CLIENT_KEYS.to_vec();
        valid.extend(SOCKET_OPTION_KEYS);
        self.refuse_max_memory(&mut fields, &context);
        let unknown = fields.unknown_keys(&context, &valid);
        self.diagnostics.extend(unknown);
        let (connect, _) = target?;
        let script = script?;
        let count = count?;
        Some(ClientSpec {
            name,
            location,
            connect,
            proto,
            count,
            options,
            script,
        })
    }

    fn target(&mut self, node: &Node, servers: &Servers) -> Option<(Target, Option<Proto>)> {
        let text = self.ok(string(node, "connect"))?;
        if let Some(&proto) = servers.protos.get(text.as_str()) {
            return Some((Target::Server(text), Some(proto)));
        }
        if let Some(&proto) = servers.proxies.get(text.as_str()) {
            return Some((Target::Proxy(text), Some(proto)));
        }
        if self.declared_servers.contains(&text) || self.declared_proxies.contains(&text) {
            // That server has errors of its own, already reported.
            return None;
        }
        if text.contains(':') {
            let addr = self.ok(loopback_addr(node, "connect"))?;
            return Some((Target::Address(addr), None));
        }
        let mut names: Vec<&str> = servers.list.iter().map(|s| s.name.as_str()).collect();
        let mut proxy_names: Vec<&str> = servers.proxies.keys().copied().collect();
        proxy_names.sort_unstable();
        names.extend(proxy_names);
        // Files without proxies keep the plain wording.
        let what = if self.declared_proxies.is_empty() {
            "server"
        } else {
            "server or proxy"
        };
        let mut d = Diagnostic::new(node.span.clone(), format!("no {what} is named `{text}`"))
            .label(format!(
                "`connect` names a {what} of this file, or a \"host:port\""
            ));
        if let Some(best) = did_you_mean(&text, &names) {
            d = d.hint(format!("did you mean `{best}`?"));
        }
        if names.is_empty() {
            d = d.hint("this file declares no servers; use an address like \"127.0.0.1:8080\"");
        } else {
            let listed = if self.declared_proxies.is_empty() {
                "servers"
            } else {
                "servers and proxies"
            };
            d = d.hint(format!("{listed} in this file: {}", names.join(", ")));
        }
        self.push(d);
        None
    }

    fn script(
        &mut self,
        node: &Node,
        role: ActorRole,
        proto: Proto,
        actor: &str,
    ) -> Option<Script> {
        let items = match &node.kind {
            NodeKind::Array(items) => items,
            _ => {
                self.push(
                    type_error(node, "script", "an array of steps")
                        .hint("write `script = [ { send = \"hi\" }, { expect = \"hi\" } ]`"),
                );
                return None;
            }
        };
        let before = self.diagnostics.len();
        // Sized once: a long script's steps are a large block, and growing it by
        // doubling would copy it into ever fresh pages.
        let mut steps = Vec::with_capacity(items.len());
        for item in *items {
            let Some(step) = self.ok(self.step(item)) else {
                continue;
            };
            if self
                .ok(check_step_fits(&step, role, proto, actor))
                .is_some()
            {
                steps.push(step);
            }
        }
        self.check_holds(&steps);
        let connects = steps.iter().filter(|s| s.action == Action::Connect).count();
        if connects > 1 {
            let second = steps
                .iter()
                .filter(|s| s.action == Action::Connect)
                .nth(1)?;
            self.push(
                Diagnostic::new(second.location.span.clone(), "a client connects only once")
                    .label("second `connect` step"),
            );
        }
        (self.diagnostics.len() == before).then(|| Arc::new(steps))
    }

    /// Every `hold` is followed by a `flush` before the next `hold` and before the
    /// script ends (held bytes would silently never be sent), and every `flush`
    /// has a `hold` before it (it would write nothing).
    fn check_holds(&mut self, steps: &[Step]) {
        let mut open: Option<&Step> = None;
        for step in steps {
            match step.action {
                Action::Hold => {
                    if let Some(earlier) = open {
                        self.push(
                            Diagnostic::new(step.location.span.clone(), "a second `hold` before a `flush`")
                                .label("the sends are already held")
                                .hint(format!("the earlier `hold` is on line {}; add `{{ flush = true }}` between them", earlier.location.line)),
                        );
                    }
                    open = Some(step);
                }
                Action::AwaitRead
                | Action::Send {
                    await_read: true, ..
                } if open.is_some() => {
                    self.push(
                        Diagnostic::new(
                            step.location.span.clone(),
                            "`await_read` while sends are held",
                        )
                        .label("nothing held has been written yet, so there is nothing to wait for")
                        .hint("move it after the `flush`"),
                    );
                }
                Action::Flush if open.take().is_none() => {
                    self.push(
                        Diagnostic::new(
                            step.location.span.clone(),
                            "`flush` without a `hold` before it",
                        )
                        .label("nothing is held here")
                        .hint("put `{ hold = true }` before the sends to write in one call"),
                    );
                }
                _ => {}
            }
        }
        if let Some(hold) = open {
            self.push(
                Diagnostic::new(hold.location.span.clone(), "`hold` is never flushed")
                    .label("the sends after this would never be written")
                    .hint("add `{ flush = true }` after the held sends"),
            );
        }
    }

    fn step(&self, node: &Node) -> Check<Step> {
        match self.common_step(node) {
            Some(step) => Ok(step),
            None => self.general_step(node),
        }
    }

    /// Any step: every key looked up in what the step kind may hold.
    fn general_step(&self, node: &Node) -> Check<Step> {
        let mut fields = Fields::of(node, "a step").map_err(|d| {
            d.hint("each step is an inline table with one action, e.g. `{ send = \"hi\" }`")
        })?;
        let mut actions = fields
            .entries
            .iter()
            .filter_map(|e| Some((StepKind::from_str(e.key).ok()?, e)));
        let (kind, entry) = match (actions.next(), actions.next()) {
            (Some(one), None) => one,
            (None, _) => {
                let unknown = fields
                    .entries
                    .iter()
                    .find(|e| e.key != "timeout")
                    .map(|e| (e.key, e.key_span.clone()));
                let mut d = match unknown {
                    Some((key, ref span)) => {
                        Diagnostic::new(span.clone(), format!("unknown step `{key}`"))
                            .label("not a step kind")
                    }
                    None => Diagnostic::new(node.span.clone(), "this step has no action")
                        .label("empty step"),
                };
                if let Some(best) = unknown.and_then(|(key, _)| did_you_mean(key, STEP_KEYWORDS)) {
                    d = d.hint(format!("did you mean `{best}`?"));
                }
                return Err(d.hint(format!("steps: {}", STEP_KEYWORDS.join(", "))));
            }
            (Some((_, first)), Some((_, second))) => {
                return Err(Diagnostic::new(
                    second.key_span.clone(),
                    format!(
                        "a step does one thing, but this one has `{}` and `{}`",
                        first.key, second.key
                    ),
                )
                .label("second action")
                .hint("split it into two steps"));
            }
        };
        fields.get(entry.key);
        let action = self.action(kind, &entry.value)?;
        let timeout = match fields.get("timeout") {
            Some(t) => {
                if !action.waits() {
                    return Err(Diagnostic::new(
                        fields.key_span("timeout"),
                        format!(
                            "`{}` does not wait for anything, so it takes no `timeout`",
                            entry.key
                        ),
                    )
                    .label("remove this"));
                }
                Some(nonzero_duration(t, "timeout")?)
            }
            None => None,
        };
        first_unknown(
            &fields,
            format_args!("the `{}` step", entry.key),
            &["timeout"],
        )?;
        Ok(self.step_at(node, action, timeout))
    }

    /// The two shapes nearly every step of a long script has: a `send` or an
    /// `expect` of a string or of `{ repeat, times }`, with nothing else in the
    /// step. Generated and imported scripts are thousands of these, and the
    /// general path below looks every key up in the tables of what each step and
    /// data form may hold: for the 2,000-step file of BENCHMARKS.md that was half
    /// the load. `None` for any other shape, and for anything the general path
    /// would refuse, which then reads the step again and says what is wrong: the
    /// step this returns is the one the general path makes.
    fn common_step(&self, node: &Node) -> Option<Step> {
        let NodeKind::Table([entry]) = &node.kind else {
            return None;
        };
        let expect = match entry.key {
            "send" => false,
            "expect" => true,
            _ => return None,
        };
        let data = match &entry.value.kind {
            NodeKind::Str(_) => self.data(&entry.value, entry.key).ok()?,
            NodeKind::Table(fields) => self.common_repeat(fields)?,
            _ => return None,
        };
        let action = if expect {
            Action::Expect(Expected::Data(data))
        } else {
            Action::Send {
                data,
                chunks: Vec::new(),
                delay: None,
                await_read: false,
            }
        };
        Some(self.step_at(node, action, None))
    }

    /// The step that `node` is, doing `action`.
    fn step_at(&self, node: &Node, action: Action, timeout: Option<Duration>) -> Step {
        Step {
            action,
            timeout,
            location: self.location(&node.span),
            source_text: Snippet::new(self.source, node.span.clone()),
        }
    }

    /// `{ repeat = UNIT, times = N }` and nothing else, within the limits of
    /// [`Self::repeated`], which takes its share of the data budget only when it
    /// returns the data.
    fn common_repeat(&self, fields: &[Entry]) -> Option<Data> {
        let (unit, times) = match fields {
            [a, b] if a.key == "repeat" && b.key == "times" => (a, b),
            [a, b] if a.key == "times" && b.key == "repeat" => (b, a),
            _ => return None,
        };
        let NodeKind::Str(unit) = &unit.value.kind else {
            return None;
        };
        self.repeated(unit, &times.value, &times.key_span).ok()
    }

    /// `unit` repeated as many times as `times` says, within the limits of one
    /// step's data, counted against the scenario's data budget (only when it is
    /// returned: an error takes nothing from the budget). `times_span` is where a
    /// too large product is reported.
    fn repeated(&self, unit: &str, times: &Node, times_span: &Range<usize>) -> Check<Data> {
        let times = count(times, "times", 0, MAX_DATA_BYTES)?;
        if unit.len().saturating_mul(times) > MAX_DATA_BYTES {
            return Err(Diagnostic::new(
                times_span.clone(),
                "the repeated data would be larger than 1 GiB",
            )
            .label("too large for a scenario"));
        }
        self.reserve_data(unit.len() * times, times_span)?;
        Ok(Data::Bytes(self.shared.borrow_mut().repeat(unit, times)))
    }

    /// The action of a step of kind `kind`, whose value is `node`. One arm per
    /// [`StepKind`]: a new step kind does not compile until it has its parser here.
    fn action(&self, kind: StepKind, node: &Node) -> Check<Action> {
        let key = kind.keyword();
        Ok(match kind {
            StepKind::Send => self.send(node)?,
            StepKind::Recv => self.recv(node)?,
            StepKind::Expect => Action::Expect(self.expected(node, key, true)?),
            StepKind::ExpectLine => Action::ExpectLine(self.matcher(node, key)?),
            StepKind::ExpectSilence => Action::ExpectSilence(duration(node, key)?),
            StepKind::SendFrame => self.send_frame(node)?,
            StepKind::ExpectFrame => self.expect_frame(node)?,
            StepKind::ExpectEof => {
                must_be_true(node, key)?;
                Action::ExpectEof
            }
            StepKind::ExpectReset => {
                must_be_true(node, key)?;
                Action::ExpectReset
            }
            StepKind::Close => {
                must_be_true(node, key)?;
                Action::Close
            }
            StepKind::Connect => {
                must_be_true(node, key)?;
                Action::Connect
            }
            StepKind::AwaitQueued => Action::AwaitQueued(count(node, key, 1, MAX_DATA_BYTES)?),
            StepKind::Shutdown => Action::Shutdown(match string(node, key)?.as_str() {
                "write" => ShutdownHow::Write,
                "read" => ShutdownHow::Read,
                "both" => ShutdownHow::Both,
                other => {
                    return Err(Diagnostic::new(
                        node.span.clone(),
                        format!("cannot shut down `{other}`"),
                    )
                    .label("expected \"write\", \"read\" or \"both\""))
                }
            }),
            StepKind::Sleep => Action::Sleep(duration(node, key)?),
            StepKind::Hold => {
                must_be_true(node, key)?;
                Action::Hold
            }
            StepKind::Flush => {
                must_be_true(node, key)?;
                Action::Flush
            }
            StepKind::AwaitRead => {
                must_be_true(node, key)?;
                Action::AwaitRead
            }
            StepKind::Signal => Action::Signal(signal_name(node, key)?),
            StepKind::Wait => Action::Wait(signal_name(node, key)?),
        })
    }

    fn send(&self, node: &Node) -> Check<Action> {
        if let NodeKind::Str(_) = node.kind {
            return Ok(Action::Send {
                data: self.data(node, "send")?,
                chunks: Vec::new(),
                delay: None,
                await_read: false,
            });
        }
        let mut fields = Fields::of(node, "`send`").map_err(|d| d.hint(DATA_HINT))?;
        let data = self.data_fields(&mut fields, "send")?;
        let chunks = match fields.get("chunks") {
            Some(node) => match &node.kind {
                NodeKind::Array(items) if !items.is_empty() => items
                    .iter()
                    .map(|item| count(item, "chunks", 1, MAX_DATA_BYTES))
                    .collect::<Check<Vec<usize>>>()?,
                _ => {
                    return Err(type_error(node, "chunks", "a non-empty array of sizes")
                        .hint("e.g. `chunks = [1, 2, 3]`: the last size repeats"))
                }
            },
            None => Vec::new(),
        };
        let delay = fields
            .get("delay")
            .map(|n| duration(n, "delay"))
            .transpose()?;
        let await_read = match fields.get("await_read") {
            Some(node) => boolean(node, "await_read")?,
            None => false,
        };
        first_unknown(&fields, "`send`", &SEND_KEYS)?;
        Ok(Action::Send {
            data,
            chunks,
            delay,
            await_read,
        })
    }

    fn recv(&self, node: &Node) -> Check<Action> {
        let mut fields = Fields::of(node, "`recv`").map_err(|d| {
            d.hint("write `recv = { max = 1024 }` or `recv = { max = 1024, expect = \"hi\" }`")
        })?;
        let max = match fields.get("max") {
            Some(node) => count(node, "max", 1, MAX_RECV_BYTES)?,
            None => {
                return Err(Diagnostic::new(node.span.clone(), "`recv` needs `max`")
                    .label("how large is the read buffer?")
                    .hint("e.g. `recv = { max = 1024 }`, like Python's sock.recv(1024)"))
            }
        };
        let expect = match fields.get("expect") {
            Some(node) => {
                let expected = self.expected(node, "expect", false)?;
                let needs = match &expected {
                    Expected::Data(data) => data.len(),
                    Expected::Match {
                        matcher: Match::Len(n),
                        ..
                    } => *n as u64,
                    Expected::Match { .. } => 0,
                };
                if needs > max as u64 {
                    return Err(Diagnostic::new(
                        node.span.clone(),
                        format!(
                            "one read of at most {max} bytes can never return these {needs} bytes"
                        ),
                    )
                    .label("longer than `max`")
                    .hint("raise `max`, or use `expect = ...` to read across several calls"));
                }
                Some(expected)
            }
            None => None,
        };
        first_unknown(&fields, "`recv`", &["max", "expect"])?;
        Ok(Action::Recv { max, expect })
    }

    fn send_frame(&self, node: &Node) -> Check<Action> {
        let key = "send_frame";
        let mut fields = self.frame_fields(node, key)?;
        let framing = self.framing(node, &mut fields, key)?;
        let header = match fields.get("header") {
            Some(header) => Some(Arc::new(self.frame_header(header, &framing, key)?)),
            None => None,
        };
        let payload = self.frame_payload(&mut fields, key)?;
        // Refuse at load time what could never be sent, rather than mid-run. With
        // a header the frame is built when the step runs (its `file_size` may lie
        // on purpose); a template's bytes are only known then too.
        if let (None, Data::Bytes(payload)) = (&header, &payload) {
            let mut scratch = bytes::BytesMut::new();
            framing.encode(payload, &mut scratch).map_err(|e| {
                Diagnostic::new(
                    node.span.clone(),
                    format!("this payload cannot be a {} frame", framing.kind.name()),
                )
                .label(e.to_string())
            })?;
        }
        first_unknown(&fields, format_args!("`{key}`"), &SEND_FRAME_KEYS)?;
        Ok(Action::SendFrame {
            framing,
            payload,
            header,
        })
    }

    /// A json-header `header = { ... }`: a table, on a json-header frame; its
    /// strings are templates (checked now) where `{md5}` and `{size}` are the
    /// body's.
    fn frame_header(
        &self,
        node: &Node,
        framing: &FramingConfig,
        key: &str,
    ) -> Check<serde_json::Map<String, serde_json::Value>> {
        if framing.kind != FramingKind::JsonHeader {
            return Err(Diagnostic::new(
                node.span.clone(),
                format!(
                    "`header` is for `framing = \"json-header\"`, not `{}`",
                    framing.kind.name()
                ),
            )
            .label("this framing has no header")
            .hint(format!(
                "remove `header`, or use json-header in this `{key}`"
            )));
        }
        let serde_json::Value::Object(map) = json_value(node)? else {
            return Err(type_error(node, "header", "a table")
                .hint("e.g. `header = { file_name = \"a.txt\", md5 = \"{md5}\" }`"));
        };
        if key == "send_frame" {
            self.check_header_templates(node)?;
        }
        Ok(map)
    }

    /// Parses every string of a send_frame header as a template, so a stray brace
    /// or an unknown name is a load error; `{md5}` and `{size}` are the body's.
    fn check_header_templates(&self, node: &Node) -> Check<()> {
        match &node.kind {
            NodeKind::Str(text) => {
                let (servers, proxies) = (&self.declared_servers, &self.declared_proxies);
                let known = |name: &str| servers.contains(name) || proxies.contains(name);
                let template = Template::parse_data(text, &known).map_err(|e| {
                    Diagnostic::new(
                        char_span_in_string(node, self.source, e.range.start, e.range.len()),
                        e.message,
                    )
                    .label("in this header value")
                    .hint(format!("{}; in a header also {{md5}} and {{size}}", e.hint))
                })?;
                let mut uses = self.variable_uses.borrow_mut();
                for name in template.variables() {
                    if name != "md5" && name != "size" {
                        uses.push((name.to_owned(), node.span.clone()));
                    }
                }
                Ok(())
            }
            NodeKind::Array(items) => items
                .iter()
                .try_for_each(|i| self.check_header_templates(i)),
            NodeKind::Table(entries) => entries
                .iter()
                .try_for_each(|e| self.check_header_templates(&e.value)),
            _ => Ok(()),
        }
    }

    /// `expect_frame`: the framing keys, and a MATCH for the payload whose keys
    /// (`regex`, `contains`, `len`, `json`, or DATA's) sit beside `framing`, or
    /// sit in `body = MATCH`; json-header frames may give `header = { ... }`.
    fn expect_frame(&self, node: &Node) -> Check<Action> {
        let key = "expect_frame";
        let mut fields = self.frame_fields(node, key)?;
        let framing = self.framing(node, &mut fields, key)?;
        let header = match fields.get("header") {
            Some(header) => Some(Match::Json(Arc::new(serde_json::Value::Object(
                self.frame_header(header, &framing, key)?,
            )))),
            None => None,
        };
        let payload = if let Some(body) = fields.get("body") {
            if let Some(other) = DATA_KEYS.iter().chain(MATCHER_KEYS).find(|k| fields.has(k)) {
                return Err(Diagnostic::new(
                    fields.key_span(other),
                    format!("`{key}` has both `body` and `{other}`"),
                )
                .label("give the payload one way"));
            }
            self.matcher(body, "body")?
        } else {
            match self.matcher_fields(&mut fields, key)? {
                Some(matcher) => matcher,
                None if header.is_some() && !DATA_KEYS.iter().any(|k| fields.has(k)) => {
                    // Only the header is checked: the empty regex matches any body.
                    Match::compile(MatchSpec::Regex(String::new()))
                        .map_err(|e| Diagnostic::new(node.span.clone(), e.message))?
                }
                None => {
                    let span = fields.span.clone();
                    let data = self
                        .frame_payload(&mut fields, key)
                        .map_err(|d| d.hint(MATCH_HINT))?;
                    self.data_match(data, &span, key, false)?
                }
            }
        };
        first_unknown(&fields, format_args!("`{key}`"), &EXPECT_FRAME_KEYS)?;
        Ok(Action::ExpectFrame {
            framing,
            payload,
            header,
        })
    }

    fn frame_fields<'n>(&self, node: &'n Node, key: &str) -> Check<Fields<'n>> {
        Fields::of(node, format_args!("`{key}`")).map_err(|d| {
            d.hint(format!(
                "write `{key} = {{ framing = \"u32le\", text = \"hi\" }}`"
            ))
        })
    }

    /// The framing keys of a frame step: `framing` and its limits.
    fn framing(&self, node: &Node, fields: &mut Fields, key: &str) -> Check<FramingConfig> {
        let framing = match fields.get("framing") {
            Some(node) => {
                let name = string(node, "framing")?;
                FramingKind::from_name(&name)
                    .map(FramingConfig::new)
                    .ok_or_else(|| {
                        let mut d =
                            Diagnostic::new(node.span.clone(), format!("unknown framing `{name}`"))
                                .label("not a framing wirecheck knows");
                        if let Some(best) = did_you_mean(&name, FramingKind::NAMES) {
                            d = d.hint(format!("did you mean `{best}`?"));
                        }
                        d.hint(format!("framings: {}", FramingKind::NAMES.join(", ")))
                    })?
            }
            None => {
                return Err(
                    Diagnostic::new(node.span.clone(), format!("`{key}` needs `framing`"))
                        .label("which framing?")
                        .hint(format!("framings: {}", FramingKind::NAMES.join(", "))),
                )
            }
        };
        let mut framing = framing;
        if let Some(node) = fields.get("max_frame") {
            framing.max_frame = count(node, "max_frame", 1, MAX_DATA_BYTES)?;
        }
        if let Some(node) = fields.get("max_line") {
            framing.max_line = count(node, "max_line", 1, MAX_DATA_BYTES)?;
        }
        if let Some(node) = fields.get("length_includes_header") {
            framing.length_includes_header = boolean(node, "length_includes_header")?;
        }
        Ok(framing)
    }

    /// MATCH judged on a whole buffer (`expect_line`, a frame's `body`, a
    /// program's output): a file slice is read now; a `{ template }` stays one,
    /// made into bytes when its step runs.
    fn matcher(&self, node: &Node, key: &str) -> Check<Match> {
        Ok(match self.expected(node, key, false)? {
            Expected::Data(data) => self.data_match(data, &node.span, key, false)?,
            Expected::Match { matcher, .. } => matcher,
        })
    }

    /// DATA as a MATCH: exact bytes, or with `contains` the bytes to find. A
    /// `{ template }` becomes [`Match::Template`], resolved when its step runs.
    fn data_match(
        &self,
        data: Data,
        span: &Range<usize>,
        key: &str,
        contains: bool,
    ) -> Check<Match> {
        if let Data::Template(template) = data {
            return Ok(Match::Template(Arc::new(matcher::TemplateMatch {
                contains,
                template,
            })));
        }
        let bytes = self.loaded_bytes(data, span, key)?;
        if !contains {
            return Ok(Match::Exact(bytes));
        }
        Match::compile(MatchSpec::Contains(bytes)).map_err(|e| {
            Diagnostic::new(span.clone(), format!("invalid `contains` in `{key}`"))
                .label(e.message)
                .hint(MATCH_HINT)
        })
    }

    /// MATCH: DATA (exact bytes), or a table with one of `regex`, `contains`, `len`,
    /// `json`. With `with_max`, a regex, `contains` or `json` may carry `max`: the
    /// most bytes a stream expectation reads.
    fn expected(&self, node: &Node, key: &str, with_max: bool) -> Check<Expected> {
        if let NodeKind::Str(_) = &node.kind {
            return Ok(Expected::Data(self.data(node, key)?));
        }
        let mut fields = Fields::of(node, format_args!("`{key}`"))
            .map_err(|_| type_error(node, key, "a MATCH").hint(MATCH_HINT))?;
        let max =
            match (with_max, fields.get("max")) {
                (true, Some(n)) => Some(count(n, "max", 1, MAX_RECV_BYTES)?),
                (false, Some(_)) => return Err(Diagnostic::new(
                    fields.key_span("max"),
                    format!("`max` has no meaning in this `{key}`"),
                )
                .label("not a key here")
                .hint("`max` limits how far `expect = { regex | contains | json }` reads a stream")
                .hint(if key == "expect" {
                    "in `recv`, `max` sits beside `expect`: `recv = { max = 10, expect = ... }`"
                } else {
                    "a line is at most 65536 bytes"
                })),
                (_, None) => None,
            };
        match self.matcher_fields(&mut fields, key)? {
            Some(matcher) => {
                if max.is_some() && matches!(matcher, Match::Len(_)) {
                    return Err(Diagnostic::new(
                        fields.key_span("max"),
                        "`max` has no meaning beside `len`",
                    )
                    .label("`len` reads exactly its length"));
                }
                first_unknown(&fields, format_args!("`{key}`"), &["max"])?;
                Ok(Expected::Match {
                    matcher,
                    max: max.unwrap_or(matcher::DEFAULT_STREAM_MAX),
                })
            }
            None => {
                let data = self
                    .data_fields(&mut fields, key)
                    .map_err(|d| d.hint(MATCH_HINT))?;
                if max.is_some() {
                    return Err(Diagnostic::new(
                        fields.key_span("max"),
                        "`max` has no meaning beside exact data",
                    )
                    .label("exact data reads exactly its length"));
                }
                first_unknown(&fields, format_args!("`{key}`"), DATA_TABLE_KEYS)
                    .map_err(|d| d.hint(MATCH_HINT))?;
                Ok(Expected::Data(data))
            }
        }
    }

    /// The matcher a table's `regex`, `contains`, `len` or `json` key makes, or
    /// `None` when it has none of them (it is DATA then).
    fn matcher_fields(&self, fields: &mut Fields, key: &str) -> Check<Option<Match>> {
        // Beside `file`, `len` is the length of the file slice, not a matcher.
        let mut present = MATCHER_KEYS
            .iter()
            .copied()
            .filter(|k| fields.has(k) && !(*k == "len" && fields.has("file")));
        let which = match (present.next(), present.next()) {
            (None, _) => return Ok(None),
            (Some(one), None) => one,
            (Some(first), Some(second)) => {
                return Err(Diagnostic::new(
                    fields.key_span(second),
                    format!("`{key}` has both `{first}` and `{second}`"),
                )
                .label("one matcher per MATCH")
                .hint(MATCH_HINT))
            }
        };
        if let Some(data_key) = DATA_KEYS.iter().find(|k| fields.has(k)) {
            return Err(Diagnostic::new(
                fields.key_span(data_key),
                format!("`{key}` has both `{which}` and `{data_key}`"),
            )
            .label("exact data and a matcher cannot both apply")
            .hint(MATCH_HINT));
        }
        let node = fields.get(which).expect("key is present");
        if which == "contains" {
            let data = self.data(node, which)?;
            return self.data_match(data, &node.span, key, true).map(Some);
        }
        let spec = match which {
            "regex" => MatchSpec::Regex(string(node, which)?),
            "len" => MatchSpec::Len(count(node, which, 0, MAX_RECV_BYTES)?),
            _ => {
                if !matches!(node.kind, NodeKind::Table(_)) {
                    return Err(type_error(node, "json", "a table of the keys to find")
                        .hint("e.g. `{ json = { status = \"ok\", user = { id = 7 } } }`"));
                }
                MatchSpec::Json(json_value(node)?)
            }
        };
        Match::compile(spec).map(Some).map_err(|e| {
            let span = match &e.pattern_span {
                Some(range) => {
                    char_span_in_string(node, self.source, range.start, range.end - range.start)
                }
                None => node.span.clone(),
            };
            Diagnostic::new(span, format!("invalid `{which}` in `{key}`"))
                .label(e.message)
                .hint("regex syntax: https://docs.rs/regex/latest/regex/#syntax; named groups `(?P<name>...)` capture variables")
        })
    }

    /// `{ template = "..." }`: placeholders parsed now (a stray brace or an unknown
    /// server or proxy is an error here); variables are checked once the file is
    /// read. Equal templates are parsed once and shared, like equal data.
    fn data_template(&self, node: &Node) -> Check<Arc<Template>> {
        let text = string(node, "template")?;
        let shared = self.shared.borrow().templates.get(text.as_str()).cloned();
        let template = match shared {
            Some(template) => template,
            None => {
                let (servers, proxies) = (&self.declared_servers, &self.declared_proxies);
                let known = |name: &str| servers.contains(name) || proxies.contains(name);
                let template = Template::parse_data(&text, &known).map_err(|e| {
                    Diagnostic::new(
                        char_span_in_string(node, self.source, e.range.start, e.range.len()),
                        e.message,
                    )
                    .label("in this template")
                    .hint(e.hint)
                })?;
                let template = Arc::new(template);
                self.shared
                    .borrow_mut()
                    .templates
                    .insert(text.clone(), Arc::clone(&template));
                template
            }
        };
        self.record_variables(&template, &text, node);
        Ok(template)
    }

    /// Bytes needed at load time from DATA that is not a template.
    fn loaded_bytes(&self, data: Data, span: &Range<usize>, key: &str) -> Check<Bytes> {
        match data {
            Data::Bytes(bytes) => Ok(bytes),
            Data::File(slice) => self.read_slice(&slice, span),
            Data::Template(_) => Err(Diagnostic::new(
                span.clone(),
                format!("`{key}` cannot be a template"),
            )
            .label("its bytes are needed before the run starts")),
        }
    }

    /// DATA: a string, or a table with exactly one data key.
    fn data(&self, node: &Node, key: &str) -> Check<Data> {
        if let NodeKind::Str(s) = &node.kind {
            return Ok(Data::Bytes(self.shared.borrow_mut().inline(s.as_bytes())));
        }
        let mut fields = Fields::of(node, format_args!("`{key}`"))
            .map_err(|_| type_error(node, key, "data").hint(DATA_HINT))?;
        let data = self.data_fields(&mut fields, key)?;
        first_unknown(&fields, format_args!("`{key}` data"), DATA_TABLE_KEYS)?;
        Ok(data)
    }

    /// A frame's payload: a file slice is read here (a frame is encoded and
    /// checked when the file loads) and counts against the scenario's data limit;
    /// a `{ template }` stays one, made into bytes when the step runs.
    fn frame_payload(&self, fields: &mut Fields, key: &str) -> Check<Data> {
        let span = fields.span.clone();
        let data = self.data_fields(fields, key)?;
        self.bytes_unless_template(data, &span, key)
    }

    fn data_fields(&self, fields: &mut Fields, key: &str) -> Check<Data> {
        let mut present = DATA_KEYS.iter().copied().filter(|k| fields.has(k));
        let which = match (present.next(), present.next()) {
            (Some(one), None) => one,
            (None, _) => {
                return Err(
                    Diagnostic::new(fields.span.clone(), format!("`{key}` has no data"))
                        .label("where are the bytes?")
                        .hint(DATA_HINT),
                )
            }
            (Some(first), Some(second)) => {
                return Err(Diagnostic::new(
                    fields.key_span(second),
                    format!("`{key}` has both `{first}` and `{second}`"),
                )
                .label("give the bytes one way")
                .hint(DATA_HINT))
            }
        };
        let node = fields.get(which).expect("key is present");
        let inline = |bytes: &[u8]| Data::Bytes(self.shared.borrow_mut().inline(bytes));
        let data = match which {
            "text" => inline(string(node, which)?.as_bytes()),
            "hex" => inline(&decode_hex(node, self.source)?),
            "base64" => {
                let text = string(node, which)?;
                let compact: String = text.split_whitespace().collect();
                inline(
                    &base64::engine::general_purpose::STANDARD
                        .decode(compact.as_bytes())
                        .map_err(|e| {
                            Diagnostic::new(node.span.clone(), "this is not valid base64")
                                .label(e.to_string())
                                .hint("standard alphabet with `=` padding, e.g. \"aGVsbG8=\"")
                        })?,
                )
            }
            "file" => Data::File(self.file_slice(node, fields)?),
            "template" => Data::Template(self.data_template(node)?),
            _ => {
                let unit = text(node, "repeat")?;
                let Some(times) = fields.get("times") else {
                    return Err(Diagnostic::new(
                        fields.key_span("repeat"),
                        "`repeat` needs `times`",
                    )
                    .label("how many times?")
                    .hint("e.g. `{ repeat = \"ab\", times = 1000 }`"));
                };
                self.repeated(unit, times, &fields.key_span("times"))?
            }
        };
        if which != "repeat" && fields.has("times") {
            return Err(
                Diagnostic::new(fields.key_span("times"), "`times` goes with `repeat`")
                    .label("nothing to repeat"),
            );
        }
        if which != "file" {
            for slice_key in ["offset", "len"] {
                if fields.has(slice_key) {
                    return Err(Diagnostic::new(
                        fields.key_span(slice_key),
                        format!("`{slice_key}` goes with `file`"),
                    )
                    .label("a slice of which file?")
                    .hint("e.g. `{ file = \"payload.bin\", offset = 1024, len = 4096 }`"));
                }
            }
        }
        Ok(data)
    }

    /// `{ file = NAME, offset = N, len = N }`: checks that the file exists and holds
    /// the slice, without reading it (the runner reads it when the step runs).
    fn file_slice(&self, node: &Node, fields: &mut Fields) -> Check<FileSlice> {
        let name = string(node, "file")?;
        let path = self.dir.join(&name);
        let metadata = std::fs::metadata(&path).map_err(|e| {
            Diagnostic::new(node.span.clone(), format!("cannot read `{name}`"))
                .label(format!("{}: {e}", path.display()))
                .hint("`file` is relative to the scenario file's folder")
        })?;
        // A device or FIFO reports length 0 and could be read forever.
        if !metadata.is_file() {
            return Err(Diagnostic::new(
                node.span.clone(),
                format!("`{name}` is not a regular file"),
            )
            .label("devices, pipes and folders cannot be scenario data"));
        }
        let size = metadata.len();
        let number = |key: &str| -> Check<Option<(u64, Range<usize>)>> {
            match fields.entries.iter().find(|e| e.key == key) {
                Some(entry) => match entry.value.kind {
                    NodeKind::Int(i) if i >= 0 => Ok(Some((i as u64, entry.value.span.clone()))),
                    NodeKind::Int(i) => Err(Diagnostic::new(
                        entry.value.span.clone(),
                        format!("`{key}` is {i}, a negative number of bytes"),
                    )
                    .label("must be 0 or more")),
                    _ => Err(type_error(&entry.value, key, "a number of bytes")),
                },
                None => Ok(None),
            }
        };
        let offset = number("offset")?;
        let len = number("len")?;
        fields.get("offset");
        fields.get("len");
        let start = match &offset {
            Some((offset, span)) if *offset > size => {
                return Err(Diagnostic::new(
                    span.clone(),
                    format!("`offset` {offset} is past the end of `{name}` ({size} bytes)"),
                )
                .label(format!("the file ends at {size}"))
                .hint(format!("offsets into `{name}` go from 0 to {size}")))
            }
            Some((offset, _)) => *offset,
            None => 0,
        };
        let len = match &len {
            Some((len, span)) if start.checked_add(*len).is_none_or(|end| end > size) => {
                return Err(Diagnostic::new(
                    span.clone(),
                    format!(
                        "`len` {len} from offset {start} goes past the end of `{name}` ({size} bytes)"
                    ),
                )
                .label(format!("at most {} bytes from there", size - start))
                .hint("a slice must lie inside the file; leave out `len` to read to the end"))
            }
            Some((len, _)) => *len,
            None => size - start,
        };
        Ok(FileSlice {
            path: Arc::from(path.as_path()),
            name: Arc::from(name.as_str()),
            offset: start,
            len,
        })
    }

    /// Reads a file slice at load time, for data that is encoded when the file
    /// loads; each slice is read once per load, later steps naming it share it.
    fn read_slice(&self, slice: &FileSlice, span: &Range<usize>) -> Check<Bytes> {
        if slice.len > MAX_DATA_BYTES as u64 {
            return Err(Diagnostic::new(
                span.clone(),
                format!("`{}` is larger than 1 GiB", slice.name),
            )
            .label("too large for a scenario"));
        }
        self.reserve_data(slice.len as usize, span)?;
        let key = (slice.path.to_path_buf(), slice.offset, slice.len);
        if let Some(bytes) = self.shared.borrow().files.get(&key) {
            return Ok(bytes.clone());
        }
        let bytes = slice.read(0, slice.len as usize).map_err(|e| {
            Diagnostic::new(span.clone(), format!("cannot read `{}`", slice.name))
                .label(e.to_string())
        })?;
        self.shared.borrow_mut().files.insert(key, bytes.clone());
        Ok(bytes)
    }

    /// Every `{VAR}` of a template must be captured by some regex of the scenario,
    /// or it could never have a value.
    fn check_variables(&mut self, capturers: &HashMap<String, String>) {
        let uses = std::mem::take(&mut *self.variable_uses.borrow_mut());
        let known: Vec<&str> = capturers.keys().map(String::as_str).collect();
        for (name, span) in uses {
            if capturers.contains_key(&name) {
                continue;
            }
            let mut d = Diagnostic::new(span, format!("unknown placeholder `{{{name}}}`"))
                .label(format!("no regex in this scenario captures `{name}`"));
            // `{prot}` in a command most likely meant the server's own port.
            if let Some(best) =
                did_you_mean(&name, &known).or_else(|| did_you_mean(&name, &["port"]))
            {
                d = d.hint(format!("did you mean `{{{best}}}`?"));
            }
            self.push(d.hint(
                "capture it with a named group, e.g. `{ expect_line = { regex = '^TOKEN (?P<token>\\w+)$' } }`; other placeholders: {port} (in a server's own command), {port:NAME}, {host:NAME}, {addr:NAME}; `{{` and `}}` are literal braces",
            ));
        }
    }

    /// Every `wait` must have a `signal` somewhere, or it can only time out.
    fn check_signals(&mut self, scenario: &Scenario) {
        let scripts = scenario
            .servers
            .iter()
            .filter_map(|s| match &s.kind {
                ServerKind::Script { script, .. } => Some(script),
                _ => None,
            })
            .chain(scenario.clients.iter().map(|c| &c.script));
        let mut signals = BTreeSet::new();
        let mut waits: BTreeMap<String, Vec<Range<usize>>> = BTreeMap::new();
        for program in &scenario.programs {
            signals.extend(program.signal.clone());
            if let Some(wait) = &program.wait {
                waits
                    .entry(wait.value.clone())
                    .or_default()
                    .push(wait.location.span.clone());
            }
        }
        for step in scripts.flat_map(|script| script.iter()) {
            match &step.action {
                Action::Signal(name) => {
                    signals.insert(name.clone());
                }
                Action::Wait(name) => waits
                    .entry(name.clone())
                    .or_default()
                    .push(step.location.span.clone()),
                _ => {}
            }
        }
        let known: Vec<&str> = signals.iter().map(String::as_str).collect();
        for (name, spans) in waits {
            if signals.contains(&name) {
                continue;
            }
            for span in spans {
                let mut d = Diagnostic::new(span, format!("nothing ever signals `{name}`"))
                    .label("this wait could only time out");
                if let Some(best) = did_you_mean(&name, &known) {
                    d = d.hint(format!("did you mean `{best}`?"));
                }
                self.push(d.hint(format!(
                    "add `{{ signal = \"{name}\" }}` to the actor that should release it"
                )));
            }
        }
    }
}

/// Which step captures each variable, as a report names it: `step 2 of
/// `client1` (line 12:5)`. The first capturing step in file order wins.
fn capturers(scenario: &Scenario) -> HashMap<String, String> {
    let scripts = scenario
        .servers
        .iter()
        .filter_map(|s| match &s.kind {
            ServerKind::Script { script, .. } => Some((s.name.as_str(), script)),
            _ => None,
        })
        .chain(
            scenario
                .clients
                .iter()
                .map(|c| (c.name.as_str(), &c.script)),
        );
    let mut found = HashMap::new();
    for (actor, script) in scripts {
        for (index, step) in script.iter().enumerate() {
            for name in step.action.capture_names() {
                found.entry(name.to_owned()).or_insert_with(|| {
                    format!(
                        "step {} of `{actor}` (line {}:{})",
                        index + 1,
                        step.location.line,
                        step.location.column
                    )
                });
            }
        }
    }
    // A server's `ready = { log }` captures when it is ready, before any step.
    for server in &scenario.servers {
        let ServerKind::Command(CommandSpec {
            ready: Readiness::Log(regex),
            ..
        }) = &server.kind
        else {
            continue;
        };
        for name in regex.capture_names().flatten() {
            found.entry(name.to_owned()).or_insert_with(|| {
                format!(
                    "`ready = {{ log }}` of server `{}` (line {})",
                    server.name, server.location.line
                )
            });
        }
    }
    // A client program's output regexes capture when it has exited, after the
    // steps that run meanwhile; a step of a script captures first if both do.
    for program in &scenario.programs {
        for check in [&program.stdout, &program.stderr].into_iter().flatten() {
            for name in check.value.capture_names() {
                found.entry(name.to_owned()).or_insert_with(|| {
                    format!(
                        "`{}` of client program `{}` (line {}:{})",
                        check.text.split('=').next().unwrap_or_default().trim(),
                        program.name,
                        check.location.line,
                        check.location.column
                    )
                });
            }
        }
    }
    found
}

/// The top-level `unread` policy.
fn unread_policy(node: &Node) -> Check<UnreadPolicy> {
    let text = string(node, "unread")?;
    UnreadPolicy::from_str(&text).map_err(|_| {
        Diagnostic::new(node.span.clone(), format!("`unread` cannot be `{text}`"))
            .label("expected \"warn\", \"fail\" or \"ignore\"")
            .hint("what happens when a TCP actor's script ends with bytes no step read; default \"warn\"")
    })
}

/// A TOML value as the JSON a `json` matcher looks for.
fn json_value(node: &Node) -> Check<serde_json::Value> {
    use serde_json::Value;
    Ok(match &node.kind {
        NodeKind::Str(s) => Value::String(s.to_string()),
        NodeKind::Int(i) => Value::from(*i),
        NodeKind::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| {
                Diagnostic::new(node.span.clone(), "JSON has no infinity or NaN")
                    .label("not a JSON number")
            })?,
        NodeKind::Bool(b) => Value::Bool(*b),
        NodeKind::Datetime => {
            return Err(
                Diagnostic::new(node.span.clone(), "JSON has no date-time values")
                    .label("write it as a string")
                    .hint("quote it: `at = \"2024-01-01T00:00:00Z\"`"),
            )
        }
        NodeKind::Array(items) => Value::Array(items.iter().map(json_value).collect::<Check<_>>()?),
        NodeKind::Table(entries) => Value::Object(
            entries
                .iter()
                .map(|e| Ok((e.key.to_string(), json_value(&e.value)?)))
                .collect::<Check<_>>()?,
        ),
    })
}

/// The first unknown key of `fields`, as an error. The context is only formatted
/// when there is one, so the common case allocates nothing.
fn first_unknown(fields: &Fields, context: impl std::fmt::Display, valid: &[&str]) -> Check<()> {
    if fields.all_known(valid) {
        return Ok(());
    }
    match fields
        .unknown_keys(&context.to_string(), valid)
        .into_iter()
        .next()
    {
        Some(d) => Err(d),
        None => Ok(()),
    }
}

fn signal_name(node: &Node, key: &str) -> Check<String> {
    let name = string(node, key)?;
    if name.is_empty() {
        return Err(Diagnostic::new(node.span.clone(), "a signal needs a name").label("empty name"));
    }
    Ok(name)
}

/// Where the character at byte `offset` of a string value's decoded text sits in the
/// file. Walks the literal as written (quotes, escapes, line-ending backslashes) so
/// the caret lands on the very character; falls back to the whole value if the
/// literal cannot be followed.
fn char_span_in_string(node: &Node, source: &str, offset: usize, len: usize) -> Range<usize> {
    let Some(raw) = source.get(node.span.clone()) else {
        return node.span.clone();
    };
    let literal = raw.starts_with('\'');
    let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        3
    } else {
        1
    };
    if raw.len() < 2 * quote {
        return node.span.clone();
    }
    let mut start = node.span.start + quote;
    let mut inner = &raw[quote..raw.len() - quote];
    // A newline right after a multi-line string's opening quotes is not part of it.
    if quote == 3 {
        for newline in ["\r\n", "\n"] {
            if let Some(rest) = inner.strip_prefix(newline) {
                start += newline.len();
                inner = rest;
                break;
            }
        }
    }
    match raw_offset(inner, literal, offset) {
        Some(at) => start + at..start + at + len,
        None => node.span.clone(),
    }
}

/// Maps a byte offset in a TOML string's decoded value to one in its source text.
fn raw_offset(inner: &str, literal: bool, decoded: usize) -> Option<usize> {
    let (mut raw, mut dec) = (0, 0);
    while dec < decoded {
        let c = inner.get(raw..)?.chars().next()?;
        if literal || c != '\\' {
            raw += c.len_utf8();
            dec += c.len_utf8();
            continue;
        }
        let escaped = inner.get(raw + 1..)?.chars().next()?;
        match escaped {
            'u' | 'U' => {
                let digits = if escaped == 'u' { 4 } else { 8 };
                let hex = inner.get(raw + 2..raw + 2 + digits)?;
                let value = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                raw += 2 + digits;
                dec += value.len_utf8();
            }
            // A backslash at the end of a line swallows the line break and the
            // white space after it.
            w if w.is_whitespace() => {
                raw += 1;
                while let Some(next) = inner.get(raw..)?.chars().next() {
                    if !next.is_whitespace() {
                        break;
                    }
                    raw += next.len_utf8();
                }
            }
            _ => {
                raw += 2;
                dec += 1;
            }
        }
    }
    (dec == decoded).then_some(raw)
}

fn decode_hex(node: &Node, source: &str) -> Check<Vec<u8>> {
    let text = string(node, "hex")?;
    let digits: Vec<(usize, char)> = text
        .char_indices()
        .filter(|(_, c)| !c.is_whitespace())
        .collect();
    if let Some((offset, c)) = digits.iter().find(|(_, c)| !c.is_ascii_hexdigit()) {
        let span = char_span_in_string(node, source, *offset, c.len_utf8());
        return Err(Diagnostic::new(span, format!("`{c}` is not a hex digit"))
            .label("not 0-9, a-f")
            .hint("write bytes as pairs of hex digits; spaces are ignored: \"de ad be ef\""));
    }
    if digits.len() % 2 == 1 {
        return Err(
            Diagnostic::new(node.span.clone(), "odd number of hex digits")
                .label(format!("{} digits do not make whole bytes", digits.len()))
                .hint("each byte is two hex digits: \"0a\", not \"a\""),
        );
    }
    Ok(digits
        .chunks(2)
        .map(|pair| {
            let hi = pair[0].1.to_digit(16).unwrap_or(0);
            let lo = pair[1].1.to_digit(16).unwrap_or(0);
            (hi * 16 + lo) as u8
        })
        .collect())
}

/// Who runs a script: some steps only make sense on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActorRole {
    Server,
    Client,
}

/// Rejects steps that cannot work for this actor's role and protocol.
fn check_step_fits(step: &Step, role: ActorRole, proto: Proto, actor: &str) -> Check<()> {
    let refuse = |why: String| {
        Err(Diagnostic::new(step.location.span.clone(), why)
            .label(format!("in `{actor}` ({})", proto.name())))
    };
    match (&step.action, proto) {
        (Action::Connect, _) if role == ActorRole::Server => {
            refuse("a server accepts connections; `connect` is a client step".into())
        }
        (Action::Connect, Proto::Udp) => {
            refuse("UDP has no connection to open; remove `connect`".into())
        }
        (Action::Hold | Action::Flush, Proto::Udp) => refuse(format!(
            "`{}` merges sends into one write of a byte stream; UDP keeps every datagram apart",
            step.action.keyword()
        )),
        (Action::ExpectEof | Action::ExpectReset | Action::Shutdown(_), Proto::Udp) => {
            refuse(format!(
                "`{}` needs a TCP connection; UDP has no end of stream",
                step.action.keyword()
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut for common steps makes exactly the step the general path
    /// makes, takes the same share of the data budget, and leaves every shape it
    /// does not know, or that the general path refuses, to the general path.
    #[test]
    fn common_steps_load_as_the_general_path_loads_them() {
        let text = r#"script = [
  { send = "hi" }, { expect = "hi" }, { send = "" },
  { send = { repeat = "ab", times = 3 } }, { expect = { times = 0, repeat = "" } },
  { expect = { repeat = "xyz", times = 1000 } },
  { send = "hi", timeout = "1s" }, { send = { repeat = "a", times = -1 } },
  { send = { repeat = 1, times = 2 } }, { send = { repeat = "a" } },
  { send = { repeat = "a", times = 2, chunks = [1] } }, { expect_eof = true },
  { expect = { regex = "h" } }, { send = { text = "hi" } },
]"#;
        let source: Arc<str> = Arc::from(text);
        let arena = tree::arena_for(&source);
        let root = tree::parse(&source, &arena).unwrap();
        let path = Path::new("common.toml");
        let (common, general) = (Loader::new(path, &source), Loader::new(path, &source));
        let NodeKind::Table([script]) = &root.kind else {
            panic!("one key")
        };
        let NodeKind::Array(steps) = &script.value.kind else {
            panic!("an array")
        };
        let mut taken = 0;
        for node in *steps {
            let reference = general.general_step(node);
            match common.common_step(node) {
                Some(step) => {
                    taken += 1;
                    let reference = reference.expect("the general path takes it too");
                    assert!(
                        step.action == reference.action,
                        "{}",
                        &source[node.span.clone()]
                    );
                    assert_eq!(step.timeout, reference.timeout);
                    assert_eq!(step.location, reference.location);
                    assert_eq!(step.source_text.as_str(), reference.source_text.as_str());
                }
                // Another shape, or one the general path refuses: it reads
                // the step then, as `step` does.
                None => assert_eq!(
                    common.general_step(node).is_ok(),
                    reference.is_ok(),
                    "{}",
                    &source[node.span.clone()]
                ),
            }
            assert_eq!(common.data_total.get(), general.data_total.get());
        }
        // The first six steps are the common shapes; the rest are not, or are
        // refused (a negative `times`, a number to repeat, no `times`).
        assert_eq!(taken, 6);
    }

    #[test]
    fn addresses_are_parsed_without_lookups() {
        let ok = |text: &str| parse_addr(text).unwrap().to_string();
        assert_eq!(ok("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(ok("[::1]:80"), "[::1]:80");
        assert_eq!(ok("localhost:80"), "127.0.0.1:80");
        assert_eq!(ok("10.0.0.1:80"), "10.0.0.1:80"); // refused later: not loopback
        assert!(parse_addr("localhost").is_err());
        assert!(parse_addr("localhost:").is_err());
        assert!(parse_addr("::1:80").unwrap_err().contains("brackets"));
        assert!(parse_addr("a.example:80")
            .unwrap_err()
            .contains("host name"));
    }
}
