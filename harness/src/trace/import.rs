//! `wirecheck import`: a trace becomes a scenario that replays its conversation.
//!
//! Each TCP connection (reassembled by sequence number) and each UDP flow becomes
//! a client whose script sends what the client side sent and `expect`s what the
//! server side sent, in the order the bytes appeared; its server is a scripted server
//! doing the mirror image (or, with `--address`, the real server at that address).
//! A change of direction is a change from `send` to `expect`, a FIN is
//! `shutdown = "write"` on one side and `expect_eof` on the other, a reset is a
//! `close` with `linger = "0s"` against an `expect_reset`. Identical connections are
//! folded into one client with `count` and one server with `connections`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::io::Read;

use toml_write::ToTomlValue as _;

use super::read::{decode, read_frames_from, ReadError};
use super::reassemble::{Flow, FlowProto, Item, Reassembler};

/// Options of `wirecheck import`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Replay against this server (`HOST:PORT`) instead of scripted servers.
    pub address: Option<String>,
    /// The scenario's name (default: `imported from FILE`).
    pub name: Option<String>,
}

/// An imported scenario.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The scenario file's text.
    pub toml: String,
    pub tcp_connections: usize,
    pub udp_flows: usize,
    /// Connection attempts that were refused; they are listed as comments only.
    pub refused: usize,
    pub frames: u64,
}

/// Why a trace could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: {reason}")]
    Stream { path: PathBuf, reason: String },
    #[error("{path} holds no TCP or UDP conversation ({frames} packets read)")]
    Empty { path: PathBuf, frames: u64 },
    #[error("the generated scenario is not valid (this is a bug in wirecheck import):\n{0}")]
    Invalid(String),
}

/// Reads the trace at `path` and writes the replay scenario.
pub fn import_trace(path: &Path, options: &ImportOptions) -> Result<Imported, ImportError> {
    let file = std::fs::File::open(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    import_from(file, path, options)
}

/// [`import_trace`] from any reader; `path` names the trace in messages.
pub fn import_from(
    reader: impl Read,
    path: &Path,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let mut reassembler = Reassembler::new();
    let summary = read_frames_from(reader, path, |frame| {
        match decode(&frame) {
            Ok(Some(packet)) => reassembler.push(frame.timestamp, &packet),
            Ok(None) => reassembler.skipped += 1,
            Err(reason) => {
                return Err(ReadError::Packet {
                    path: path.to_owned(),
                    packet: frame.number,
                    reason,
                })
            }
        }
        Ok(())
    })?;
    let flows = reassembler.finish().map_err(|reason| ImportError::Stream {
        path: path.to_owned(),
        reason,
    })?;
    // Refused connection attempts are only listed as comments, so a trace that holds
    // nothing else has no conversation to replay.
    if flows.iter().all(|flow| flow.refused) {
        return Err(ImportError::Empty {
            path: path.to_owned(),
            frames: summary.frames,
        });
    }
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let mut imported = scenario_from_flows(&flows, &source, options);
    imported.frames = summary.frames;
    // What we write must load: check it with the real loader.
    let check_path = Path::new("imported.toml");
    crate::scenario::load_str(check_path, &imported.toml)
        .map_err(|e| ImportError::Invalid(format!("{}\n{}", e.render(), imported.toml)))?;
    Ok(imported)
}

/// The two scripts of one flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scripts {
    proto: FlowProto,
    ipv6: bool,
    client: Vec<String>,
    server: Vec<String>,
    client_resets: bool,
    server_resets: bool,
}

fn scripts_of(flow: &Flow) -> Scripts {
    let mut scripts = Scripts {
        proto: flow.proto,
        ipv6: flow.server.is_ipv6(),
        client: Vec::new(),
        server: Vec::new(),
        client_resets: false,
        server_resets: false,
    };
    for item in &flow.items {
        let from_client = match item {
            Item::Data { from_client, .. }
            | Item::Fin { from_client }
            | Item::Reset { from_client } => *from_client,
        };
        let (sender, receiver) = if from_client {
            (&mut scripts.client, &mut scripts.server)
        } else {
            (&mut scripts.server, &mut scripts.client)
        };
        match item {
            Item::Data { bytes, .. } => {
                let data = data_literal(bytes);
                sender.push(format!("{{ send = {data} }}"));
                receiver.push(format!("{{ expect = {data} }}"));
            }
            Item::Fin { .. } => {
                sender.push("{ shutdown = \"write\" }".into());
                receiver.push("{ expect_eof = true }".into());
            }
            Item::Reset { .. } => {
                sender.push("{ close = true }".into());
                receiver.push("{ expect_reset = true }".into());
                if from_client {
                    scripts.client_resets = true;
                } else {
                    scripts.server_resets = true;
                }
                break;
            }
        }
    }
    scripts
}

/// Builds the scenario text for `flows`.
pub fn scenario_from_flows(flows: &[Flow], source: &str, options: &ImportOptions) -> Imported {
    let mut groups: Vec<(Scripts, Vec<&Flow>)> = Vec::new();
    let mut refused = Vec::new();
    let mut tcp_connections = 0;
    let mut udp_flows = 0;
    for flow in flows {
        if flow.refused {
            refused.push(flow);
            continue;
        }
        match flow.proto {
            FlowProto::Tcp => tcp_connections += 1,
            FlowProto::Udp => udp_flows += 1,
        }
        let scripts = scripts_of(flow);
        // A UDP server serves one peer, so only TCP connections are folded together.
        let group = groups
            .iter_mut()
            .find(|(s, _)| *s == scripts && scripts.proto == FlowProto::Tcp);
        match group {
            Some((_, members)) => members.push(flow),
            None => groups.push((scripts, vec![flow])),
        }
    }
    let first = flows.iter().map(|f| f.first_seen).min().unwrap_or_default();
    let last = flows.iter().map(|f| f.last_seen).max().unwrap_or_default();
    let bytes: u64 = flows
        .iter()
        .flat_map(|f| &f.items)
        .map(|item| match item {
            Item::Data { bytes, .. } => bytes.len() as u64,
            _ => 0,
        })
        .sum();
    let (step_timeout, timeout) = timeouts(last.saturating_sub(first), bytes);

    let mut out = String::new();
    let _ = writeln!(out, "# Imported by `wirecheck import` from {source}.");
    let _ = writeln!(
        out,
        "# Each client replays one side of a recorded conversation; its server{}.",
        if options.address.is_some() {
            " is the real one at the given address"
        } else {
            " replays the other side"
        }
    );
    for (number, (_, members)) in groups.iter().enumerate() {
        for flow in members {
            let _ = writeln!(
                out,
                "#   client{}: {} {} -> {}",
                number + 1,
                proto_name(flow.proto),
                flow.client,
                flow.server
            );
        }
    }
    for flow in &refused {
        let _ = writeln!(
            out,
            "#   not replayed: {} refused the connection from {}",
            flow.server, flow.client
        );
    }
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| format!("imported from {source}"));
    let _ = writeln!(out, "name = {}", basic_string(&name));
    let _ = writeln!(
        out,
        "description = {}",
        basic_string(&format!(
            "Replays the {tcp_connections} TCP connection(s) and {udp_flows} UDP flow(s) of {source}."
        ))
    );
    let seconds = |d: Duration| basic_string(&format!("{}s", d.as_secs()));
    let _ = writeln!(out, "timeout = {}", seconds(timeout));
    let _ = writeln!(out, "step_timeout = {}", seconds(step_timeout));
    let _ = writeln!(out, "tags = [\"imported\"]");

    match &options.address {
        Some(address) => {
            let protos: Vec<FlowProto> = [FlowProto::Tcp, FlowProto::Udp]
                .into_iter()
                .filter(|p| groups.iter().any(|(s, _)| s.proto == *p))
                .collect();
            for proto in protos {
                let _ = writeln!(out, "\n[servers.{}]", target_name(proto));
                let _ = writeln!(out, "address = {}", basic_string(address));
                if proto == FlowProto::Udp {
                    let _ = writeln!(out, "proto = \"udp\"");
                }
            }
        }
        None => {
            for (number, (scripts, members)) in groups.iter().enumerate() {
                let _ = writeln!(out, "\n[servers.server{}]", number + 1);
                if scripts.proto == FlowProto::Udp {
                    let _ = writeln!(out, "proto = \"udp\"");
                }
                if scripts.ipv6 {
                    let _ = writeln!(out, "bind = \"[::1]:0\"");
                }
                if members.len() > 1 {
                    let _ = writeln!(out, "connections = {}", members.len());
                }
                if scripts.server_resets {
                    let _ = writeln!(out, "linger = \"0s\"");
                }
                write_script(&mut out, &scripts.server);
            }
        }
    }
    for (number, (scripts, members)) in groups.iter().enumerate() {
        let _ = writeln!(out, "\n[[clients]]");
        let _ = writeln!(
            out,
            "name = {}",
            basic_string(&format!("client{}", number + 1))
        );
        let server = match &options.address {
            Some(_) => target_name(scripts.proto).to_owned(),
            None => format!("server{}", number + 1),
        };
        let _ = writeln!(out, "connect = {}", basic_string(&server));
        if members.len() > 1 {
            let _ = writeln!(out, "count = {}", members.len());
        }
        if scripts.client_resets {
            let _ = writeln!(out, "linger = \"0s\"");
        }
        write_script(&mut out, &scripts.client);
    }
    Imported {
        toml: out,
        tcp_connections,
        udp_flows,
        refused: refused.len(),
        frames: 0,
    }
}

fn target_name(proto: FlowProto) -> &'static str {
    match proto {
        FlowProto::Tcp => "target",
        FlowProto::Udp => "target_udp",
    }
}

fn proto_name(proto: FlowProto) -> &'static str {
    match proto {
        FlowProto::Tcp => "tcp",
        FlowProto::Udp => "udp",
    }
}

fn write_script(out: &mut String, steps: &[String]) {
    if steps.is_empty() {
        out.push_str("script = []\n");
        return;
    }
    out.push_str("script = [\n");
    for step in steps {
        let _ = writeln!(out, "  {step},");
    }
    out.push_str("]\n");
}

/// Deadlines with room for the recorded pace: twice the trace's duration plus time
/// to move its bytes, never below the format's defaults (2 s per step, 10 s total).
fn timeouts(duration: Duration, bytes: u64) -> (Duration, Duration) {
    const DAY: u64 = 24 * 3600;
    let transfer = bytes / (50 << 20);
    let step = (2 * duration.as_secs() + 1 + transfer).clamp(2, DAY);
    let total = (4 * step).clamp(10, DAY);
    (Duration::from_secs(step), Duration::from_secs(total))
}

/// The bytes as scenario data: a `repeat` for a long run of one short unit, a string
/// when they are printable UTF-8, else `{ hex = ... }`.
pub fn data_literal(bytes: &[u8]) -> String {
    if let Some((unit, times)) = repetition(bytes) {
        return format!("{{ repeat = {}, times = {times} }}", basic_string(unit));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if printable(text) => basic_string(text),
        _ => {
            let digits = hex::encode(bytes);
            let pairs: Vec<&str> = (0..bytes.len())
                .map(|i| &digits[2 * i..2 * i + 2])
                .collect();
            format!("{{ hex = \"{}\" }}", pairs.join(" "))
        }
    }
}

/// `bytes` as `unit` repeated `times` times, when that is shorter to write: a
/// printable unit of at most 64 bytes, repeated at least 4 times, 64 bytes or more.
fn repetition(bytes: &[u8]) -> Option<(&str, usize)> {
    if bytes.len() < 64 {
        return None;
    }
    for unit_len in 1..=64usize.min(bytes.len() / 4) {
        if bytes.len() % unit_len != 0 {
            continue;
        }
        let unit = &bytes[..unit_len];
        if bytes.chunks_exact(unit_len).all(|chunk| chunk == unit) {
            return match std::str::from_utf8(unit) {
                Ok(text) if printable(text) => Some((text, bytes.len() / unit_len)),
                _ => None,
            };
        }
    }
    None
}

/// Text a scenario shows as a string: no control characters but tab, CR and LF.
fn printable(text: &str) -> bool {
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

/// A TOML basic string: one line in double quotes, escaped by toml_edit's own
/// encoder (toml_write). toml_edit's `Value` would choose the style itself and
/// write data with a newline as a multi-line string; scenarios keep `"hello\n"`.
pub fn basic_string(text: &str) -> String {
    toml_write::TomlStringBuilder::new(text)
        .as_basic()
        .to_toml_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_literals() {
        assert_eq!(data_literal(b"hello\n"), "\"hello\\n\"");
        assert_eq!(
            data_literal(b"say \"hi\" \\o/"),
            "\"say \\\"hi\\\" \\\\o/\""
        );
        assert_eq!(data_literal(&[0, 1, 0xff]), "{ hex = \"00 01 ff\" }");
        assert_eq!(
            data_literal("abc".repeat(100).as_bytes()),
            "{ repeat = \"abc\", times = 100 }"
        );
        assert_eq!(
            data_literal(&[0u8; 100]),
            format!("{{ hex = \"{}\" }}", vec!["00"; 100].join(" "))
        );
        assert_eq!(data_literal("é".as_bytes()), "\"é\"");
    }

    #[test]
    fn basic_strings_read_back_as_the_same_text() {
        assert_eq!(basic_string("a\"b\\c\n\r\t"), r#""a\"b\\c\n\r\t""#);
        assert_eq!(basic_string("\u{1}\u{7f}"), r#""\u0001\u007F""#);
        let text = "say \"hi\" \\o/ 'quoted'\r\n\t\u{1b}[0m é";
        let document: toml_edit::DocumentMut =
            format!("value = {}", basic_string(text)).parse().unwrap();
        assert_eq!(document["value"].as_str(), Some(text));
    }

    #[test]
    fn deadlines_grow_with_the_trace() {
        assert_eq!(
            timeouts(Duration::from_millis(5), 10),
            (Duration::from_secs(2), Duration::from_secs(10))
        );
        let (step, total) = timeouts(Duration::from_secs(3), 512 << 20);
        assert_eq!(step, Duration::from_secs(2 * 3 + 1 + 10));
        assert_eq!(total, 4 * step);
    }
}
