//! The options of the built-in servers: one schema per server (each server's
//! module has its `OPTIONS`), read both by the scenario loader (the keys beside
//! `builtin = "NAME"`) and by `wirecheck serve --set KEY=VALUE`, so the two take
//! the same options, with the same defaults, ranges and error messages.
//!
//! A schema entry ([`OptionSpec`]) names the key, its type and range, its
//! default and a one-line description, and how it changes the configuration.
//! [`BuiltinConfig::new`](super::BuiltinConfig::new) starts from the defaults
//! written here, so the defaults in the docs (checked against these tables by a
//! test) cannot drift from the ones the servers use.

use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use super::{accept::DEFAULT_MAX_CONNECTIONS, BuiltinConfig, BuiltinKind};
use crate::duration::{parse_duration, DURATION_HINT};
use crate::framing::{FramingKind, DEFAULT_MAX_FRAME, DEFAULT_MAX_HEADER, DEFAULT_MAX_LINE};
use crate::scenario::diag::did_you_mean;
use crate::scenario::{Diagnostic, LoadError};
use crate::vocab::SocketOptions;

/// The largest size or count limit an option takes: 1 GiB.
pub const MAX_LIMIT: usize = 1 << 30;
/// The largest `read_size`: 64 MiB.
pub const MAX_READ_SIZE: usize = 64 << 20;
/// The largest `max_connections`.
pub const MAX_MAX_CONNECTIONS: usize = 100_000;

/// How `wirecheck serve` names its options in error reports.
pub const COMMAND_LINE_SOURCE: &str = "<wirecheck serve options>";

/// An option's value as written, before it is checked: a TOML value from a
/// scenario file, or a `--set` value from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    Str(String),
    Int(i64),
    Bool(bool),
    /// Any other TOML type (float, date-time, array, table), by the name a
    /// type error uses (`"a float"`).
    Other(&'static str),
}

impl OptionValue {
    /// The TOML type name, as a user would say it in an error.
    pub fn type_name(&self) -> &'static str {
        match self {
            OptionValue::Str(_) => "a string",
            OptionValue::Int(_) => "an integer",
            OptionValue::Bool(_) => "a boolean",
            OptionValue::Other(name) => name,
        }
    }

    /// A value from the command line: a TOML value (a number, a boolean, a
    /// quoted string) as given; anything else, a bare date-time included, is
    /// taken as a string (`clock` takes RFC 3339 text).
    pub fn from_command_line(text: &str) -> Self {
        match toml_edit::Value::from_str(text) {
            Ok(toml_edit::Value::String(s)) => OptionValue::Str(s.into_value()),
            Ok(toml_edit::Value::Integer(i)) => OptionValue::Int(i.into_value()),
            Ok(toml_edit::Value::Boolean(b)) => OptionValue::Bool(b.into_value()),
            Ok(toml_edit::Value::Float(_)) => OptionValue::Other("a float"),
            Ok(toml_edit::Value::Array(_)) => OptionValue::Other("an array"),
            Ok(toml_edit::Value::InlineTable(_)) => OptionValue::Other("a table"),
            Ok(toml_edit::Value::Datetime(_)) | Err(_) => OptionValue::Str(text.to_owned()),
        }
    }
}

/// Whether a count is bytes (shown as KiB or MiB where exact) or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Number,
}

/// An option's type, range and default, and what setting it does to `T`.
#[derive(Debug)]
pub enum OptionKind<T: 'static> {
    /// An integer in `min..=max`.
    Count {
        min: usize,
        max: usize,
        default: usize,
        unit: Unit,
        set: fn(&mut T, usize),
    },
    /// `true` or `false`.
    Bool {
        default: bool,
        set: fn(&mut T, bool),
    },
    /// A duration string (`"250ms"`); no default (the OS's).
    Duration { set: fn(&mut T, Duration) },
    /// One of the framing names `accepted` (`None`: `"none"`, the command
    /// server's unframed replies). `requirement` says why another known
    /// framing is refused.
    Framing {
        accepted: &'static [&'static str],
        default: &'static str,
        requirement: &'static str,
        set: fn(&mut T, Option<FramingKind>),
    },
    /// An RFC 3339 timestamp; no default (the real clock).
    Timestamp {
        set: fn(&mut T, DateTime<FixedOffset>),
    },
}

/// One option of a schema.
#[derive(Debug)]
pub struct OptionSpec<T: 'static> {
    /// The key, as written in a scenario and after `--set`.
    pub key: &'static str,
    /// One line saying what it does.
    pub doc: &'static str,
    pub kind: OptionKind<T>,
}

impl<T> OptionSpec<T> {
    /// Checks `value` and sets it on `target`. `server` names the server in
    /// messages. The error has an empty span: the caller points it at the value.
    pub fn apply(
        &self,
        server: &str,
        target: &mut T,
        value: &OptionValue,
    ) -> Result<(), Diagnostic> {
        let key = self.key;
        match (&self.kind, value) {
            (OptionKind::Count { min, max, set, .. }, OptionValue::Int(i)) => {
                if *i >= *min as i64 && (*i as u64) <= *max as u64 {
                    set(target, *i as usize);
                    Ok(())
                } else {
                    Err(
                        Diagnostic::new(0..0, format!("`{key}` is {i}, outside {min}..={max}"))
                            .label(format!("must be between {min} and {max}")),
                    )
                }
            }
            (OptionKind::Count { .. }, _) => Err(type_error(key, "an integer", value)),
            (OptionKind::Bool { set, .. }, OptionValue::Bool(b)) => {
                set(target, *b);
                Ok(())
            }
            (OptionKind::Bool { .. }, _) => Err(type_error(key, "`true` or `false`", value)),
            (OptionKind::Duration { set }, OptionValue::Str(text)) => match parse_duration(text) {
                Ok(duration) => {
                    set(target, duration);
                    Ok(())
                }
                Err(reason) => Err(Diagnostic::new(
                    0..0,
                    format!("`{key}` is not a valid duration"),
                )
                .label(reason)
                .hint(DURATION_HINT)),
            },
            (OptionKind::Duration { .. }, _) => {
                Err(type_error(key, "a duration string", value).hint(DURATION_HINT))
            }
            (
                OptionKind::Framing {
                    accepted,
                    requirement,
                    set,
                    ..
                },
                OptionValue::Str(name),
            ) => {
                if accepted.contains(&name.as_str()) {
                    set(target, FramingKind::from_name(name));
                    return Ok(());
                }
                let framings = format!("framing for `{server}`: {}", accepted.join(", "));
                if FramingKind::from_name(name).is_some() {
                    return Err(Diagnostic::new(0..0, *requirement)
                        .label(format!("`{server}` does not take framing `{name}`"))
                        .hint(framings));
                }
                let mut d = Diagnostic::new(0..0, format!("unknown framing `{name}`"))
                    .label("not a framing wirecheck knows");
                if let Some(best) = did_you_mean(name, accepted) {
                    d = d.hint(format!("did you mean `{best}`?"));
                }
                Err(d.hint(framings))
            }
            (OptionKind::Framing { .. }, _) => Err(type_error(key, "a string", value)),
            (OptionKind::Timestamp { set }, OptionValue::Str(text)) => {
                match DateTime::parse_from_rfc3339(text) {
                    Ok(time) => {
                        set(target, time);
                        Ok(())
                    }
                    Err(e) => Err(Diagnostic::new(
                        0..0,
                        format!("`{key}` is not an RFC 3339 timestamp"),
                    )
                    .label(format!("`{text}`: {e}"))
                    .hint(format!(
                        "write a date, `T`, a time and an offset, e.g. {key} = \"2024-01-02T03:04:05Z\" or \"2024-01-02T12:04:05+09:00\""
                    ))),
                }
            }
            (OptionKind::Timestamp { .. }, _) => Err(type_error(key, "a string", value)),
        }
    }

    /// Sets the default on `target` (options without one leave it as it is).
    pub fn apply_default(&self, target: &mut T) {
        match &self.kind {
            OptionKind::Count { default, set, .. } => set(target, *default),
            OptionKind::Bool { default, set } => set(target, *default),
            OptionKind::Framing { default, set, .. } => {
                set(target, FramingKind::from_name(default))
            }
            OptionKind::Duration { .. } | OptionKind::Timestamp { .. } => {}
        }
    }

    /// The default as the docs write it: `65536`, `8 MiB`, `` `"u32be"` ``,
    /// `` `false` ``.
    pub fn default_text(&self) -> String {
        match &self.kind {
            OptionKind::Count {
                default,
                unit: Unit::Bytes,
                ..
            } => bytes_text(*default),
            OptionKind::Count { default, .. } => default.to_string(),
            OptionKind::Bool { default, .. } => format!("`{default}`"),
            OptionKind::Framing { default, .. } => format!("`\"{default}\"`"),
            OptionKind::Duration { .. } => "OS default".into(),
            OptionKind::Timestamp { .. } => "none: the real time, UTC".into(),
        }
    }
}

/// `64 KiB`, `8 MiB`, or the plain number when neither is exact.
fn bytes_text(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n % KIB == 0 {
        format!("{} KiB", n / KIB)
    } else {
        n.to_string()
    }
}

fn type_error(key: &str, expected: &str, value: &OptionValue) -> Diagnostic {
    Diagnostic::new(
        0..0,
        format!("`{key}` must be {expected}, not {}", value.type_name()),
    )
    .label(format!("expected {expected}"))
}

// ------------------------------------------------------------ the options

/// Framing names with a length prefix (readsplit's report).
pub const PREFIX_FRAMINGS: &[&str] = &[
    "u8", "u16be", "u16le", "u32be", "u32le", "i32le", "i32be", "u64be", "u64le", "varint",
];
/// Line framings (chat, time).
pub const LINE_FRAMINGS: &[&str] = &["line", "crlf"];

fn set_framing(config: &mut BuiltinConfig, framing: Option<FramingKind>) {
    match framing {
        Some(kind) => {
            config.framing.kind = kind;
            config.raw_replies = false;
        }
        None => config.raw_replies = true,
    }
}

/// The `framing` option: one of `accepted`, `default` unless set.
pub const fn framing(
    accepted: &'static [&'static str],
    default: &'static str,
    requirement: &'static str,
    doc: &'static str,
) -> OptionSpec<BuiltinConfig> {
    OptionSpec {
        key: "framing",
        doc,
        kind: OptionKind::Framing {
            accepted,
            default,
            requirement,
            set: set_framing,
        },
    }
}

/// A size or count limit with its range and default.
pub const fn limit(
    key: &'static str,
    min: usize,
    max: usize,
    default: usize,
    unit: Unit,
    doc: &'static str,
    set: fn(&mut BuiltinConfig, usize),
) -> OptionSpec<BuiltinConfig> {
    OptionSpec {
        key,
        doc,
        kind: OptionKind::Count {
            min,
            max,
            default,
            unit,
            set,
        },
    }
}

fn set_max_frame(config: &mut BuiltinConfig, n: usize) {
    config.framing.max_frame = n;
}
fn set_max_line(config: &mut BuiltinConfig, n: usize) {
    config.framing.max_line = n;
}
fn set_max_header(config: &mut BuiltinConfig, n: usize) {
    config.framing.max_header = n;
}
fn set_max_connections(config: &mut BuiltinConfig, n: usize) {
    config.max_connections = n;
}
fn set_length_includes_header(config: &mut BuiltinConfig, on: bool) {
    config.framing.length_includes_header = on;
}

/// `max_frame`: the largest frame payload.
pub const fn max_frame(doc: &'static str) -> OptionSpec<BuiltinConfig> {
    limit(
        "max_frame",
        1,
        MAX_LIMIT,
        DEFAULT_MAX_FRAME,
        Unit::Bytes,
        doc,
        set_max_frame,
    )
}

/// `max_line`: the largest line, with this server's default.
pub const fn max_line(default: usize, doc: &'static str) -> OptionSpec<BuiltinConfig> {
    limit(
        "max_line",
        1,
        MAX_LIMIT,
        default,
        Unit::Bytes,
        doc,
        set_max_line,
    )
}

/// `max_line` with the framings' default, 64 KiB.
pub const fn max_line_default(doc: &'static str) -> OptionSpec<BuiltinConfig> {
    max_line(DEFAULT_MAX_LINE, doc)
}

/// `max_header`: the largest json-header header.
pub const fn max_header(doc: &'static str) -> OptionSpec<BuiltinConfig> {
    limit(
        "max_header",
        2,
        MAX_LIMIT,
        DEFAULT_MAX_HEADER,
        Unit::Bytes,
        doc,
        set_max_header,
    )
}

/// `length_includes_header`, for length prefixes.
pub const LENGTH_INCLUDES_HEADER: OptionSpec<BuiltinConfig> = OptionSpec {
    key: "length_includes_header",
    doc: "whether a length prefix counts its own bytes too",
    kind: OptionKind::Bool {
        default: false,
        set: set_length_includes_header,
    },
};

/// `max_connections`: every TCP server's bound on connections served at once.
pub const MAX_CONNECTIONS: OptionSpec<BuiltinConfig> = limit(
    "max_connections",
    1,
    MAX_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS,
    Unit::Number,
    "most connections served at once (TCP); further clients wait in the listen backlog until one closes",
    set_max_connections,
);

fn set_nodelay(options: &mut SocketOptions, on: bool) {
    options.nodelay = Some(on);
}
fn set_recv_buffer(options: &mut SocketOptions, n: usize) {
    options.recv_buffer = Some(n);
}
fn set_send_buffer(options: &mut SocketOptions, n: usize) {
    options.send_buffer = Some(n);
}
fn set_linger(options: &mut SocketOptions, linger: Duration) {
    options.linger = Some(linger);
}

/// The socket options every built-in server takes (scenario section 3.2),
/// for `wirecheck serve --set`; none has a default of its own (the OS's).
pub const SOCKET_OPTIONS: &[OptionSpec<SocketOptions>] = &[
    OptionSpec {
        key: "nodelay",
        doc: "TCP_NODELAY (no Nagle delay)",
        kind: OptionKind::Bool {
            // Never applied: a socket option without a value keeps the OS's.
            default: false,
            set: set_nodelay,
        },
    },
    OptionSpec {
        key: "recv_buffer",
        doc: "SO_RCVBUF, bytes",
        kind: OptionKind::Count {
            min: 1,
            max: MAX_LIMIT,
            default: 0,
            unit: Unit::Bytes,
            set: set_recv_buffer,
        },
    },
    OptionSpec {
        key: "send_buffer",
        doc: "SO_SNDBUF, bytes",
        kind: OptionKind::Count {
            min: 1,
            max: MAX_LIMIT,
            default: 0,
            unit: Unit::Bytes,
            set: set_send_buffer,
        },
    },
    OptionSpec {
        key: "linger",
        doc: "SO_LINGER; \"0s\" turns every close into a reset",
        kind: OptionKind::Duration { set: set_linger },
    },
];

// ------------------------------------------------------------ the command line

/// Options given to `wirecheck serve` (`--set KEY=VALUE`, `--framing NAME`,
/// `--read-size N`), checked against a server's schema with the loader's
/// messages. Errors point into the options as written, one per line, under the
/// name [`COMMAND_LINE_SOURCE`].
#[derive(Debug, Default)]
pub struct CommandLineOptions {
    /// Every option as written, one per line: what error reports quote.
    source: String,
    entries: Vec<CommandLineEntry>,
    diagnostics: Vec<Diagnostic>,
}

#[derive(Debug)]
struct CommandLineEntry {
    key: String,
    key_span: Range<usize>,
    value: OptionValue,
    value_span: Range<usize>,
}

/// `text` without surrounding white space, and where that is in `text`.
fn trimmed(text: &str) -> (&str, Range<usize>) {
    let start = text.len() - text.trim_start().len();
    let inner = text.trim();
    (inner, start..start + inner.len())
}

impl CommandLineOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a line to the quoted source; returns where it starts.
    fn line(&mut self, text: &str) -> usize {
        let start = self.source.len();
        self.source.push_str(text);
        self.source.push('\n');
        start
    }

    /// `--set KEY=VALUE`: VALUE is read as a TOML value, else as a string
    /// ([`OptionValue::from_command_line`]).
    pub fn set(&mut self, setting: &str) {
        const FLAG: &str = "--set ";
        let base = self.line(&format!("{FLAG}{setting}")) + FLAG.len();
        let Some(eq) = setting.find('=') else {
            self.diagnostics.push(
                Diagnostic::new(
                    base..base + setting.len(),
                    format!("`--set {setting}` is not KEY=VALUE"),
                )
                .label("expected KEY=VALUE")
                .hint("e.g. --set max_line=1024 or --set clock=2024-01-02T03:04:05Z"),
            );
            return;
        };
        let (key, key_span) = trimmed(&setting[..eq]);
        let (value, value_span) = trimmed(&setting[eq + 1..]);
        let value_offset = base + eq + 1;
        self.entries.push(CommandLineEntry {
            key: key.to_owned(),
            key_span: base + key_span.start..base + key_span.end,
            value: OptionValue::from_command_line(value),
            value_span: value_offset + value_span.start..value_offset + value_span.end,
        });
    }

    /// A flag that stands for one option (`--framing NAME` is `framing`), with
    /// its value as given.
    pub fn flag(&mut self, flag: &str, key: &str, value: &str, parsed: OptionValue) {
        let start = self.line(&format!("{flag} {value}"));
        let value_start = start + flag.len() + 1;
        self.entries.push(CommandLineEntry {
            key: key.to_owned(),
            key_span: start..start + flag.len(),
            value: parsed,
            value_span: value_start..value_start + value.len(),
        });
    }

    /// The configuration of a `kind` server and its socket options, or every
    /// problem found, as a scenario file's problems are reported.
    pub fn configure(self, kind: BuiltinKind) -> Result<(BuiltinConfig, SocketOptions), LoadError> {
        let mut config = BuiltinConfig::new(kind);
        let mut socket = SocketOptions::default();
        let mut diagnostics = self.diagnostics;
        let server = kind.name();
        let mut seen: Vec<&str> = Vec::new();
        for entry in &self.entries {
            let key = entry.key.as_str();
            let at_value = |mut d: Diagnostic| {
                d.span = entry.value_span.clone();
                d
            };
            if seen.contains(&key) {
                diagnostics.push(
                    Diagnostic::new(entry.key_span.clone(), format!("`{key}` is given twice"))
                        .label("given again here")
                        .hint("give each option once (`--framing` is `framing`, `--read-size` is `read_size`)"),
                );
                continue;
            }
            seen.push(key);
            let checked = if matches!(key, "builtin" | "proto" | "bind") {
                Err(Diagnostic::new(
                    entry.key_span.clone(),
                    format!("`{key}` is not set with --set"),
                )
                .label("not an option here")
                .hint("the server, its transport and its address are given with the server name, --proto and --listen"))
            } else if let Some(option) = kind.options().iter().find(|o| o.key == key) {
                option
                    .apply(server, &mut config, &entry.value)
                    .map_err(at_value)
            } else if let Some(option) = SOCKET_OPTIONS.iter().find(|o| o.key == key) {
                option
                    .apply(server, &mut socket, &entry.value)
                    .map_err(at_value)
            } else {
                let valid: Vec<&str> = kind
                    .option_keys()
                    .chain(SOCKET_OPTIONS.iter().map(|o| o.key))
                    .collect();
                let mut d = Diagnostic::new(
                    entry.key_span.clone(),
                    format!("unknown key `{key}` in server `{server}`"),
                )
                .label("not a key here");
                if let Some(best) = did_you_mean(key, &valid) {
                    d = d.hint(format!("did you mean `{best}`?"));
                }
                Err(d.hint(format!("valid keys: {}", valid.join(", "))))
            };
            if let Err(d) = checked {
                diagnostics.push(d);
            }
        }
        if diagnostics.is_empty() {
            return Ok((config, socket));
        }
        diagnostics.sort_by_key(|d| d.span.start);
        Err(LoadError::Invalid {
            path: PathBuf::from(COMMAND_LINE_SOURCE),
            source: Arc::from(self.source),
            diagnostics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn every_server_takes_max_connections_and_its_keys_once() {
        for kind in BuiltinKind::iter() {
            let keys: Vec<&str> = kind.option_keys().collect();
            assert!(keys.contains(&"max_connections"), "{kind:?}");
            for (i, key) in keys.iter().enumerate() {
                assert!(!keys[i + 1..].contains(key), "{kind:?}: `{key}` twice");
                assert!(
                    !SOCKET_OPTIONS.iter().any(|o| o.key == *key),
                    "{kind:?}: `{key}` is a socket option"
                );
            }
            for option in kind.options() {
                assert!(!option.doc.is_empty(), "{kind:?}: `{}`", option.key);
            }
        }
    }

    #[test]
    fn defaults_are_in_range_and_applied() {
        for kind in BuiltinKind::iter() {
            for option in kind.options() {
                if let OptionKind::Count {
                    min, max, default, ..
                } = option.kind
                {
                    assert!((min..=max).contains(&default), "{kind:?} {}", option.key);
                }
                if let OptionKind::Framing {
                    accepted, default, ..
                } = option.kind
                {
                    assert!(accepted.contains(&default), "{kind:?}");
                }
            }
        }
        let chat = BuiltinConfig::new(BuiltinKind::Chat);
        assert_eq!(chat.framing.kind, FramingKind::Line);
        assert_eq!(chat.framing.max_line, 4096);
        assert_eq!(chat.max_connections, DEFAULT_MAX_CONNECTIONS);
        let command = BuiltinConfig::new(BuiltinKind::Command);
        assert_eq!(command.framing.kind, FramingKind::I32Le);
        assert!(!command.raw_replies);
    }

    #[test]
    fn values_are_checked_with_the_loaders_messages() {
        let readsplit = BuiltinKind::ReadSplit;
        let read_size = &readsplit.options()[0];
        let mut config = BuiltinConfig::new(readsplit);
        let error = read_size
            .apply("readsplit", &mut config, &OptionValue::Int(0))
            .unwrap_err();
        assert_eq!(error.message, "`read_size` is 0, outside 1..=67108864");
        assert_eq!(error.label, "must be between 1 and 67108864");
        let error = read_size
            .apply("readsplit", &mut config, &OptionValue::Str("2".into()))
            .unwrap_err();
        assert_eq!(
            error.message,
            "`read_size` must be an integer, not a string"
        );
        read_size
            .apply("readsplit", &mut config, &OptionValue::Int(3))
            .unwrap();
        assert_eq!(config.read_size, 3);
    }

    /// The option tables of docs/scenario-format.md, section 4: for each
    /// server (or `*` for the table every server takes), its keys and defaults.
    fn documented_options() -> Vec<(String, String, String)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/scenario-format.md");
        let text = std::fs::read_to_string(path).expect("the scenario format docs");
        let mut rows = Vec::new();
        let mut servers: Vec<String> = Vec::new();
        let mut in_table = false;
        for line in text.lines() {
            if line.starts_with("## ") {
                servers = if line.starts_with("## 4.") {
                    vec!["*".to_owned()]
                } else {
                    Vec::new()
                };
            } else if line.starts_with("### ") {
                servers = if line.starts_with("### 4.") {
                    line.split('`')
                        .skip(1)
                        .step_by(2)
                        .map(str::to_owned)
                        .collect()
                } else {
                    Vec::new()
                };
            }
            if line == "| key | default | meaning |" {
                in_table = true;
                continue;
            }
            if !line.starts_with('|') {
                in_table = false;
            }
            if !in_table || line.starts_with("|---") {
                continue;
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            for server in &servers {
                rows.push((
                    server.clone(),
                    cells[1].trim_matches('`').to_owned(),
                    cells[2].to_owned(),
                ));
            }
        }
        rows
    }

    #[test]
    fn the_docs_list_every_option_with_its_default() {
        let documented = documented_options();
        for kind in BuiltinKind::iter() {
            let mut listed: Vec<(&str, &str)> = documented
                .iter()
                .filter(|(server, ..)| server == kind.name() || server == "*")
                .map(|(_, key, default)| (key.as_str(), default.as_str()))
                .collect();
            listed.sort();
            let mut keys: Vec<&str> = kind.option_keys().collect();
            keys.sort();
            let listed_keys: Vec<&str> = listed.iter().map(|(key, _)| *key).collect();
            assert_eq!(listed_keys, keys, "the docs' options of `{}`", kind.name());
            for option in kind.options() {
                let default = listed
                    .iter()
                    .find(|(key, _)| *key == option.key)
                    .map(|(_, default)| *default)
                    .unwrap_or_default();
                let expected = option.default_text();
                assert!(
                    default == expected || default.starts_with(&format!("{expected} (")),
                    "`{}` of `{}`: the docs say {default:?}, the schema {expected:?}",
                    option.key,
                    kind.name()
                );
            }
        }
    }

    #[test]
    fn command_line_values_are_toml_or_text() {
        use OptionValue::*;
        assert_eq!(OptionValue::from_command_line("12"), Int(12));
        assert_eq!(OptionValue::from_command_line("0x10"), Int(16));
        assert_eq!(OptionValue::from_command_line("true"), Bool(true));
        assert_eq!(OptionValue::from_command_line("\"a b\""), Str("a b".into()));
        assert_eq!(OptionValue::from_command_line("crlf"), Str("crlf".into()));
        assert_eq!(OptionValue::from_command_line("1.5"), Other("a float"));
        assert_eq!(
            OptionValue::from_command_line("2024-01-02T03:04:05Z"),
            Str("2024-01-02T03:04:05Z".into())
        );
    }

    #[test]
    fn command_line_options_configure_a_server() {
        use OptionValue::Str;
        let mut options = CommandLineOptions::new();
        options.flag("--framing", "framing", "crlf", Str("crlf".into()));
        options.set("max_line = 100");
        options.set("linger=0s");
        options.set("max_connections=3");
        let (config, socket) = options.configure(BuiltinKind::Chat).unwrap();
        assert_eq!(config.framing.kind, FramingKind::Crlf);
        assert_eq!(config.framing.max_line, 100);
        assert_eq!(config.max_connections, 3);
        assert_eq!(socket.linger, Some(Duration::ZERO));
    }

    #[test]
    fn command_line_errors_point_at_the_option() {
        let mut options = CommandLineOptions::new();
        options.set("max_lin=10");
        options.set("queue=0");
        options.set("proto=udp");
        options.set("queue=2");
        options.set("oops");
        let error = options.configure(BuiltinKind::Chat).unwrap_err();
        let LoadError::Invalid { diagnostics, .. } = &error else {
            panic!("{error}")
        };
        let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "unknown key `max_lin` in server `chat`",
                "`queue` is 0, outside 1..=100000",
                "`proto` is not set with --set",
                "`queue` is given twice",
                "`--set oops` is not KEY=VALUE",
            ]
        );
        let rendered = error.render();
        assert!(rendered.contains("did you mean `max_line`?"), "{rendered}");
        assert!(
            rendered.contains("<wirecheck serve options>:2:13"),
            "{rendered}"
        );
    }
}
