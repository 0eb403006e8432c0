//! `wirecheck import`: a capture becomes a scenario that replays its conversations.
//!
//! ```text
//! TRACE --read--> frames --decode--> packets / fragments --defragment-->
//!   --reassemble--> flows (payloads appended to a scratch store, items name ranges)
//!   --select, refuse what cannot be replayed--> scripts
//!   --payloads copied in script order--> NAME.bin  +  NAME.toml (slices of it)
//! ```
//!
//! Each TCP connection and UDP flow becomes a client whose script sends what the
//! client side sent and `expect`s what the server side sent, in the order the bytes
//! appeared; its server is a scripted server doing the mirror image (or, with
//! `--address`, the real server at that address). By default each recorded segment
//! is one write call (`send` with `chunks`), so a replay writes what the sender
//! wrote, and the recorded gaps are kept as `sleep` steps. A FIN is
//! `shutdown = "write"` against `expect_eof`, a reset a `close` with `linger = "0s"`
//! against `expect_reset` (a reset Linux cannot replay, after the resetting side's
//! own FIN, is a comment). Payloads are slices of one binary file beside the
//! scenario, copied there in script order, so the TOML stays small and import,
//! check and run hold no payload in memory.
//!
//! What cannot be replayed is refused, naming the conversation: a TCP stream with
//! bytes missing, a UDP datagram larger than loopback carries. Packets that belong
//! to no conversation or cannot be decoded are skipped, one warning line per kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml_write::ToTomlValue as _;

use super::decode::{decode, decode_reassembled, Decoded};
use super::read::{read_frames_from, ReadError};
use super::reassemble::{Defragmenter, Flow, FlowProto, Item, Reassembler, Store};

/// Payload an import prints inline (no `-o`) at most; beyond it the scenario needs
/// a payload file.
pub const INLINE_LIMIT: usize = 16 << 20;

/// The largest UDP payload one datagram carries over IPv4 (65,535 - 20 - 8).
pub const MAX_UDP_V4: u64 = 65_507;
/// The same over IPv6 (65,535 - 8; the IPv6 header is not counted).
pub const MAX_UDP_V6: u64 = 65_527;

/// A run of at most this many writes of one side is written as one `send` per
/// write; a longer run is one `send` with `chunks`, which keeps a bulk transfer to
/// one line.
pub const SEPARATE_WRITES: usize = 16;

/// Recorded gaps shorter than this are not replayed: a sleep that short is below
/// what a timer and a scheduler can reproduce.
pub const MIN_DELAY: Duration = Duration::from_millis(1);
/// The longest delay or step deadline an import writes. A longer recorded gap (an
/// idle hour, a stray timestamp) is cut to this, with a warning.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// How recorded segments become write calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Boundaries {
    /// Each recorded segment is one write call (a `send` with `chunks`).
    #[default]
    Keep,
    /// A run of one side's bytes is one `send`.
    Merge,
}

impl FromStr for Boundaries {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "keep" => Ok(Boundaries::Keep),
            "merge" => Ok(Boundaries::Merge),
            other => Err(format!("`{other}` is not `keep` or `merge`")),
        }
    }
}

/// Whether the recorded gaps are replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Timing {
    /// The recorded gaps as `sleep` steps (each at most [`MAX_DELAY`]).
    #[default]
    Keep,
    /// As fast as the peers go.
    None,
    /// The recorded gaps times this factor.
    Scaled(f64),
}

impl FromStr for Timing {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "keep" => Ok(Timing::Keep),
            "none" => Ok(Timing::None),
            _ => {
                let factor = text
                    .strip_prefix("scaled:")
                    .ok_or_else(|| format!("`{text}` is not `keep`, `none` or `scaled:F`"))?;
                match factor.parse::<f64>() {
                    Ok(f) if (0.0..=1000.0).contains(&f) => Ok(Timing::Scaled(f)),
                    _ => Err(format!(
                        "`{factor}` is not a factor from 0 to 1000 (e.g. `scaled:0.5`)"
                    )),
                }
            }
        }
    }
}

impl Timing {
    fn factor(self) -> f64 {
        match self {
            Timing::Keep => 1.0,
            Timing::None => 0.0,
            Timing::Scaled(f) => f,
        }
    }
}

/// Which conversations `--conversation` keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `tcp:N`, `udp:N` or a bare `N` (TCP): the Nth conversation of that protocol,
    /// counted from 0 in the order they start, like tshark's `tcp.stream`.
    Stream(FlowProto, usize),
    /// `port:P` or `:P`: either end uses that port.
    Port(u16),
    /// `ADDR`: either end has that address.
    Address(IpAddr),
    /// `ADDR:PORT` (`[v6]:PORT`): either end is exactly that.
    Endpoint(SocketAddr),
}

impl FromStr for Selector {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a conversation: give tcp:N or udp:N (as --list numbers them), \
                 port:P, an address, or ADDRESS:PORT"
            )
        };
        if let Ok(n) = text.parse::<usize>() {
            return Ok(Selector::Stream(FlowProto::Tcp, n));
        }
        for (prefix, proto) in [("tcp:", FlowProto::Tcp), ("udp:", FlowProto::Udp)] {
            if let Some(n) = text.strip_prefix(prefix) {
                return n
                    .parse()
                    .map(|n| Selector::Stream(proto, n))
                    .map_err(|_| bad());
            }
        }
        if let Some(port) = text
            .strip_prefix("port:")
            .or_else(|| text.strip_prefix(':'))
        {
            return port.parse().map(Selector::Port).map_err(|_| bad());
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Selector::Address(ip));
        }
        text.parse::<SocketAddr>()
            .map(Selector::Endpoint)
            .map_err(|_| bad())
    }
}

impl Selector {
    pub fn matches(&self, flow: &Flow) -> bool {
        match *self {
            Selector::Stream(proto, index) => flow.proto == proto && flow.index == index,
            Selector::Port(port) => flow.client.port() == port || flow.server.port() == port,
            Selector::Address(ip) => flow.client.ip() == ip || flow.server.ip() == ip,
            Selector::Endpoint(addr) => flow.client == addr || flow.server == addr,
        }
    }
}

/// Options of `wirecheck import`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Replay against this server (`HOST:PORT`) instead of scripted servers.
    pub address: Option<String>,
    /// The scenario's name (default: `imported from FILE`).
    pub name: Option<String>,
    pub boundaries: Boundaries,
    pub timing: Timing,
    /// Keep only conversations some selector matches (all when empty).
    pub conversations: Vec<Selector>,
    /// Where the scenario will be written. Its payloads then go to a binary file
    /// beside it (same stem, `.bin`); without it they are written inline in the
    /// TOML (up to [`INLINE_LIMIT`]).
    pub output: Option<PathBuf>,
}

/// An imported scenario.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The scenario file's text.
    pub toml: String,
    pub tcp_connections: usize,
    pub udp_flows: usize,
    /// Connection attempts refused or never answered; listed as comments only.
    pub refused: usize,
    pub frames: u64,
    /// One line per kind of packet skipped, and per limit applied.
    pub warnings: Vec<String>,
    /// The binary file the scenario's payloads are in, with its size.
    pub payload_file: Option<(PathBuf, u64)>,
}

/// Why a trace could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path} cannot be replayed:\n{}", reasons.join("\n"))]
    Refused { path: PathBuf, reasons: Vec<String> },
    #[error("{path} holds no TCP or UDP conversation to replay ({frames} packets read{detail})")]
    Empty {
        path: PathBuf,
        frames: u64,
        detail: String,
    },
    #[error("{0}")]
    Output(String),
    #[error("the generated scenario is not valid (this is a bug in wirecheck import):\n{0}")]
    Invalid(String),
}

/// Counts of what was skipped, for one warning line per kind.
#[derive(Debug, Default)]
struct Skipped {
    /// Not TCP or UDP, by kind.
    other: BTreeMap<&'static str, u64>,
    /// Cannot be decoded: count, first packet and its reason.
    undecodable: u64,
    first_undecodable: Option<(u64, String)>,
    /// Cut by a snap length and not TCP or UDP as far as it could be read.
    cut_other: u64,
    fragments_cut: u64,
    truncated_at: Option<u64>,
}

impl Skipped {
    fn lines(&self, defrag: &Defragmenter) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.other.is_empty() {
            let total: u64 = self.other.values().sum();
            let kinds: Vec<String> = self
                .other
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect();
            lines.push(format!(
                "skipped {total} packet(s) that are not TCP or UDP ({})",
                kinds.join(", ")
            ));
        }
        if let Some((packet, reason)) = &self.first_undecodable {
            lines.push(format!(
                "skipped {} packet(s) that cannot be decoded (the first, packet {packet}: {reason})",
                self.undecodable
            ));
        }
        if self.cut_other > 0 {
            lines.push(format!(
                "skipped {} packet(s) cut by the snap length that belong to no TCP or UDP conversation",
                self.cut_other
            ));
        }
        if self.fragments_cut > 0 {
            lines.push(format!(
                "skipped {} IP datagram(s) whose fragments were cut by the snap length",
                self.fragments_cut
            ));
        }
        if defrag.incomplete() > 0 {
            lines.push(format!(
                "skipped {} IP datagram(s) whose fragments are not all in the capture",
                defrag.incomplete()
            ));
        }
        if defrag.dropped > 0 {
            lines.push(format!(
                "skipped {} IP datagram(s) whose fragments are inconsistent or too many to hold",
                defrag.dropped
            ));
        }
        if let Some(packet) = self.truncated_at {
            lines.push(format!(
                "the file ends inside packet {packet}, which was skipped (the capture was cut short)"
            ));
        }
        lines
    }
}

/// What one pass over a capture found.
pub struct Scan {
    pub flows: Vec<Flow>,
    pub frames: u64,
    pub warnings: Vec<String>,
}

/// Reads a capture into flows, storing the payloads of the selected ones.
pub fn scan(
    reader: impl Read,
    path: &Path,
    store: &mut Store,
    select: impl Fn(&Flow) -> bool,
) -> Result<Scan, ImportError> {
    let mut reassembler = Reassembler::selecting(store, select);
    let mut defrag = Defragmenter::default();
    let mut skipped = Skipped::default();
    let summary = read_frames_from(reader, path, |frame| {
        let cut = (frame.data.len() as u64) < u64::from(frame.original_len);
        match decode(&frame) {
            Ok(Decoded::Packet(packet)) => reassembler.push(frame.timestamp, &packet),
            Ok(Decoded::Fragment(fragment)) => match defrag.push(&fragment) {
                Some(Ok(datagram)) => match decode_reassembled(&fragment.key, &datagram) {
                    Ok(Decoded::Packet(packet)) => reassembler.push(frame.timestamp, &packet),
                    Ok(Decoded::Other(kind)) => *skipped.other.entry(kind).or_default() += 1,
                    Ok(Decoded::Fragment(_)) => {
                        *skipped
                            .other
                            .entry("a fragment inside a fragment")
                            .or_default() += 1
                    }
                    Err(reason) => {
                        skipped.undecodable += 1;
                        skipped
                            .first_undecodable
                            .get_or_insert((frame.number, format!("reassembled, {reason}")));
                    }
                },
                Some(Err(_)) => skipped.fragments_cut += 1,
                None => {}
            },
            Ok(Decoded::Other(_)) if cut => skipped.cut_other += 1,
            Ok(Decoded::Other(kind)) => *skipped.other.entry(kind).or_default() += 1,
            Err(_) if cut => skipped.cut_other += 1,
            Err(reason) => {
                skipped.undecodable += 1;
                skipped
                    .first_undecodable
                    .get_or_insert((frame.number, reason));
            }
        }
        Ok(())
    })?;
    skipped.truncated_at = summary.truncated_at;
    let flows = reassembler
        .finish()
        .map_err(|e| ImportError::Output(format!("cannot store the capture's payloads: {e}")))?;
    let mut warnings = skipped.lines(&defrag);
    for flow in flows.iter().filter(|f| f.selected && f.cut_packets > 0) {
        if flow.proto == FlowProto::Udp {
            warnings.push(format!(
                "{}: {} datagram(s) were cut by the snap length and are left out",
                flow.describe(),
                flow.cut_packets
            ));
        }
    }
    Ok(Scan {
        flows,
        frames: summary.frames,
        warnings,
    })
}

/// A flow's items with their bytes, one direction's consecutive TCP data joined:
/// the byte-stream view that tests compare with what tshark reassembles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Data { from_client: bool, bytes: Vec<u8> },
    Fin { from_client: bool },
    Reset { from_client: bool },
}

/// A flow with its contents.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub flow: Flow,
    pub items: Vec<Content>,
}

impl std::ops::Deref for Conversation {
    type Target = Flow;
    fn deref(&self) -> &Flow {
        &self.flow
    }
}

/// Every conversation of a capture with its bytes, held in memory (up to
/// [`INLINE_LIMIT`]): for tests and small captures.
pub fn conversations(reader: impl Read, path: &Path) -> Result<Vec<Conversation>, ImportError> {
    let mut store = Store::memory(INLINE_LIMIT);
    let scan = scan(reader, path, &mut store, |_| true)?;
    let mut conversations = Vec::new();
    for flow in scan.flows {
        let mut items: Vec<Content> = Vec::new();
        for item in &flow.items {
            match *item {
                Item::Data {
                    from_client,
                    offset,
                    len,
                    ..
                } => {
                    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
                    store.read(offset, &mut bytes).map_err(|e| {
                        ImportError::Output(format!("cannot read the payloads back: {e}"))
                    })?;
                    match items.last_mut() {
                        Some(Content::Data {
                            from_client: same,
                            bytes: run,
                        }) if *same == from_client && flow.proto == FlowProto::Tcp => {
                            run.extend_from_slice(&bytes)
                        }
                        _ => items.push(Content::Data { from_client, bytes }),
                    }
                }
                Item::Fin { from_client, .. } => items.push(Content::Fin { from_client }),
                Item::Reset { from_client, .. } => items.push(Content::Reset { from_client }),
            }
        }
        conversations.push(Conversation { flow, items });
    }
    Ok(conversations)
}

/// `wirecheck import --list`: the conversations of a capture, stored nowhere.
pub fn list_conversations(reader: impl Read, path: &Path) -> Result<Scan, ImportError> {
    let mut store = Store::memory(0);
    scan(reader, path, &mut store, |_| false)
}

/// The `--list` table.
pub fn render_list(flows: &[Flow]) -> String {
    let mut rows = vec![[
        "conversation".to_owned(),
        "client -> server".to_owned(),
        "bytes c->s".to_owned(),
        "bytes s->c".to_owned(),
        "packets".to_owned(),
        "notes".to_owned(),
    ]];
    for flow in flows {
        let mut notes = Vec::new();
        if let Some(gap) = flow.gap {
            notes.push(format!(
                "gap in the {} stream at byte {} ({} bytes missing)",
                if gap.from_client {
                    "client's"
                } else {
                    "server's"
                },
                gap.start,
                gap.end.saturating_sub(gap.start)
            ));
        }
        if flow.refused {
            notes.push("refused".into());
        }
        if flow.unanswered {
            notes.push("never answered".into());
        }
        if flow.cut_packets > 0 {
            notes.push(format!(
                "{} packet(s) cut by the snap length",
                flow.cut_packets
            ));
        }
        if let Some(limit) = udp_limit(flow) {
            notes.push(format!(
                "a {}-byte datagram (loopback carries {limit})",
                flow.largest_datagram
            ));
        }
        rows.push([
            flow.label(),
            format!("{} -> {}", flow.client, flow.server),
            flow.bytes[0].to_string(),
            flow.bytes[1].to_string(),
            flow.packets.to_string(),
            if notes.is_empty() {
                "-".into()
            } else {
                notes.join("; ")
            },
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else if (2..5).contains(&i) {
                let _ = write!(line, "{cell:>width$}  ");
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The UDP payload limit a flow's largest datagram goes over, if it does.
fn udp_limit(flow: &Flow) -> Option<u64> {
    let limit = if flow.server.is_ipv6() {
        MAX_UDP_V6
    } else {
        MAX_UDP_V4
    };
    (flow.proto == FlowProto::Udp && flow.largest_datagram > limit).then_some(limit)
}

/// Reads the trace at `path` and writes the replay scenario.
pub fn import_trace(path: &Path, options: &ImportOptions) -> Result<Imported, ImportError> {
    let file = std::fs::File::open(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    import_from(file, path, options)
}

/// The payload file of a scenario written to `output`: same folder and stem, `.bin`.
pub fn payload_path(output: &Path) -> PathBuf {
    output.with_extension("bin")
}

/// [`import_trace`] from any reader; `path` names the trace in messages.
pub fn import_from(
    reader: impl Read,
    path: &Path,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let scratch_path = options.output.as_deref().map(|output| {
        let bin = payload_path(output);
        bin.with_file_name(format!(
            ".{}.partial",
            bin.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ))
    });
    let mut store = match &scratch_path {
        Some(scratch) => Store::file(scratch)
            .map_err(|e| ImportError::Output(format!("cannot write {}: {e}", scratch.display())))?,
        None => Store::memory(INLINE_LIMIT),
    };
    let result = import_into(reader, path, options, &mut store);
    if let Some(scratch) = &scratch_path {
        let _ = std::fs::remove_file(scratch);
    }
    result
}

fn import_into(
    reader: impl Read,
    path: &Path,
    options: &ImportOptions,
    store: &mut Store,
) -> Result<Imported, ImportError> {
    let selectors = options.conversations.clone();
    let scan = scan(reader, path, store, move |flow| {
        selectors.is_empty() || selectors.iter().any(|s| s.matches(flow))
    })
    .map_err(|e| match e {
        ImportError::Output(reason) if options.output.is_none() => ImportError::Output(format!(
            "{reason}: too much to write inline; give -o OUT.toml to put the payloads in a binary file beside the scenario"
        )),
        other => other,
    })?;
    store
        .flush()
        .map_err(|e| ImportError::Output(format!("cannot store the capture's payloads: {e}")))?;
    let selected: Vec<&Flow> = scan.flows.iter().filter(|f| f.selected).collect();
    // What cannot be replayed, all of it at once.
    let mut reasons = Vec::new();
    for flow in &selected {
        if let Some(gap) = flow.gap {
            let (from, to) = if gap.from_client {
                (flow.client, flow.server)
            } else {
                (flow.server, flow.client)
            };
            let why = if flow.cut_packets > 0 {
                format!(
                    "{} of its packets were cut by the snap length",
                    flow.cut_packets
                )
            } else {
                "packets are missing from the capture".to_owned()
            };
            reasons.push(format!(
                "  {}: the stream {from} -> {to} has a gap: bytes {} to {} never appear ({why})",
                flow.describe(),
                gap.start,
                gap.end
            ));
        }
        if let Some(limit) = udp_limit(flow) {
            reasons.push(format!(
                "  {}: a datagram of {} bytes is larger than one UDP datagram on loopback can be \
                 ({limit} bytes of payload over {})",
                flow.describe(),
                flow.largest_datagram,
                if flow.server.is_ipv6() {
                    "IPv6"
                } else {
                    "IPv4"
                }
            ));
        }
    }
    if !reasons.is_empty() {
        reasons
            .push("  (leave a conversation out with --conversation; --list shows them all)".into());
        return Err(ImportError::Refused {
            path: path.to_owned(),
            reasons,
        });
    }
    let replayable: Vec<&Flow> = selected
        .iter()
        .copied()
        .filter(|f| !f.refused && !f.unanswered)
        .collect();
    if replayable.is_empty() {
        let detail = if scan.flows.is_empty() {
            String::new()
        } else if selected.is_empty() {
            format!(
                "; --conversation matched none of its {} conversations, see --list",
                scan.flows.len()
            )
        } else {
            "; its connection attempts were refused or never answered".into()
        };
        return Err(ImportError::Empty {
            path: path.to_owned(),
            frames: scan.frames,
            detail,
        });
    }
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let mut warnings = scan.warnings;
    let mut payloads = match &options.output {
        Some(output) => {
            let bin = payload_path(output);
            Payloads::File {
                writer: std::io::BufWriter::with_capacity(
                    1 << 20,
                    std::fs::File::create(&bin).map_err(|e| {
                        ImportError::Output(format!("cannot write {}: {e}", bin.display()))
                    })?,
                ),
                name: bin
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path: bin,
                written: 0,
            }
        }
        None => Payloads::Inline(Vec::new()),
    };
    let refused: Vec<&Flow> = selected
        .iter()
        .copied()
        .filter(|f| f.refused || f.unanswered)
        .collect();
    let mut imported = write_scenario(
        &replayable,
        &refused,
        &source,
        options,
        store,
        &mut payloads,
        &mut warnings,
    )
    .map_err(|e| ImportError::Output(format!("cannot write the payloads: {e}")))?;
    imported.frames = scan.frames;
    imported.warnings = warnings;
    if let Payloads::File {
        mut writer,
        path: bin,
        written,
        ..
    } = payloads
    {
        writer
            .flush()
            .map_err(|e| ImportError::Output(format!("cannot write {}: {e}", bin.display())))?;
        imported.payload_file = Some((bin, written));
    }
    // What we write must load: check it with the real loader, from where it goes.
    let check_path = options
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("imported.toml"));
    crate::scenario::load_str(&check_path, &imported.toml)
        .map_err(|e| ImportError::Invalid(format!("{}\n{}", e.render(), imported.toml)))?;
    Ok(imported)
}

/// Where the scenario's payloads go, in script order.
enum Payloads {
    /// Written into the TOML as strings or hex.
    Inline(Vec<u8>),
    /// A binary file beside the scenario; steps are slices of it.
    File {
        writer: std::io::BufWriter<std::fs::File>,
        path: PathBuf,
        name: String,
        written: u64,
    },
}

impl Payloads {
    /// Copies `len` bytes at `offset` of the store; returns their offset here.
    fn copy(&mut self, store: &Store, offset: u64, len: u64) -> io::Result<u64> {
        let mut buf = vec![0u8; usize::try_from(len.min(1 << 20)).unwrap_or(1 << 20)];
        let at = match self {
            Payloads::Inline(bytes) => bytes.len() as u64,
            Payloads::File { written, .. } => *written,
        };
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
            store.read(offset + done, &mut buf[..n])?;
            match self {
                Payloads::Inline(bytes) => bytes.extend_from_slice(&buf[..n]),
                Payloads::File {
                    writer, written, ..
                } => {
                    writer.write_all(&buf[..n])?;
                    *written += n as u64;
                }
            }
            done += n as u64;
        }
        Ok(at)
    }

    /// DATA for bytes `offset..offset + len` of the payloads.
    fn data(&self, offset: u64, len: u64) -> String {
        match self {
            Payloads::Inline(bytes) => {
                let start = offset as usize;
                data_literal(&bytes[start..start + len as usize])
            }
            Payloads::File { name, .. } => format!(
                "{{ file = {}, offset = {offset}, len = {len} }}",
                basic_string(name)
            ),
        }
    }
}

/// One step of a generated script.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Bytes `offset..offset + len` of the payloads, in write calls of `chunks`.
    Send {
        offset: u64,
        len: u64,
        chunks: Vec<u64>,
    },
    Expect {
        offset: u64,
        len: u64,
    },
    Sleep(Duration),
    Connect,
    Shutdown,
    ExpectEof,
    Close,
    ExpectReset,
    Comment(String),
}

/// The two scripts of one flow.
#[derive(Debug, Clone)]
struct Scripts {
    client: Vec<Step>,
    server: Vec<Step>,
    client_resets: bool,
    server_resets: bool,
    /// The longest delay a step of the other side waits through.
    longest_wait: Duration,
    /// The sum of this flow's delays: how long its replay takes at least.
    total_delay: Duration,
    largest_step: u64,
}

/// Delays of one flow, after scaling and the [`MAX_DELAY`] cap.
struct Delays {
    factor: f64,
    capped: u64,
}

impl Delays {
    fn of(&mut self, gap: Duration) -> Option<Duration> {
        if self.factor == 0.0 {
            return None;
        }
        let scaled = gap.mul_f64(self.factor);
        if scaled < MIN_DELAY {
            return None;
        }
        if scaled > MAX_DELAY {
            self.capped += 1;
            return Some(MAX_DELAY);
        }
        Some(scaled)
    }
}

#[allow(clippy::too_many_arguments)]
fn scripts_of(
    flow: &Flow,
    capture_start: Duration,
    options: &ImportOptions,
    store: &Store,
    payloads: &mut Payloads,
    delays: &mut Delays,
) -> io::Result<Scripts> {
    let mut scripts = Scripts {
        client: Vec::new(),
        server: Vec::new(),
        client_resets: false,
        server_resets: false,
        longest_wait: Duration::ZERO,
        total_delay: Duration::ZERO,
        largest_step: 0,
    };
    let tcp = flow.proto == FlowProto::Tcp;
    if let Some(delay) = delays.of(flow.first_seen.saturating_sub(capture_start)) {
        scripts.client.push(Step::Sleep(delay));
        scripts.total_delay += delay;
        if tcp {
            scripts.client.push(Step::Connect);
        }
    }
    let mut fins = [false, false];
    let mut previous = flow.first_seen;
    for item in &flow.items {
        let from_client = item.from_client();
        let gap = item.at().saturating_sub(previous);
        previous = previous.max(item.at());
        let delay = delays.of(gap);
        let (sender, receiver) = if from_client {
            (&mut scripts.client, &mut scripts.server)
        } else {
            (&mut scripts.server, &mut scripts.client)
        };
        if let Some(delay) = delay {
            sender.push(Step::Sleep(delay));
            scripts.total_delay += delay;
            scripts.longest_wait = scripts.longest_wait.max(delay);
        }
        match *item {
            Item::Data { offset, len, .. } => {
                let at = payloads.copy(store, offset, len)?;
                // A run of one side's bytes (nothing else in between, no delay)
                // is one send and, on TCP, one expect.
                // (A UDP datagram is a chunk of its own size, so an empty one
                // cannot join a run.)
                let extends = delay.is_none()
                    && (tcp || len > 0)
                    && matches!(sender.last(), Some(Step::Send { offset: o, len: l, chunks })
                        if o + l == at && chunks.iter().all(|&c| c > 0));
                if extends {
                    let Some(Step::Send {
                        len: run, chunks, ..
                    }) = sender.last_mut()
                    else {
                        unreachable!("checked above");
                    };
                    *run += len;
                    chunks.push(len);
                    scripts.largest_step = scripts.largest_step.max(*run);
                } else {
                    sender.push(Step::Send {
                        offset: at,
                        len,
                        chunks: vec![len],
                    });
                    scripts.largest_step = scripts.largest_step.max(len);
                }
                match receiver.last_mut() {
                    Some(Step::Expect {
                        offset: o,
                        len: run,
                    }) if tcp && *o + *run == at => *run += len,
                    _ => receiver.push(Step::Expect { offset: at, len }),
                }
            }
            Item::Fin { .. } => {
                fins[usize::from(!from_client)] = true;
                sender.push(Step::Shutdown);
                receiver.push(Step::ExpectEof);
            }
            Item::Reset { .. } => {
                let who = if from_client { "client" } else { "server" };
                if fins[usize::from(!from_client)] {
                    // After its own FIN, the resetting side's peer has seen the
                    // end of the stream; Linux reports no reset there, so the
                    // replay ends with the FINs.
                    let both = fins[0] && fins[1];
                    let comment = format!(
                        "the capture ends with a reset from the {who} after {}; Linux cannot \
                         replay that, so the replay ends with the FIN{}",
                        if both { "both FINs" } else { "its own FIN" },
                        if both { "s" } else { "" }
                    );
                    sender.push(Step::Comment(comment.clone()));
                    receiver.push(Step::Comment(comment));
                } else {
                    sender.push(Step::Close);
                    receiver.push(Step::ExpectReset);
                    if from_client {
                        scripts.client_resets = true;
                    } else {
                        scripts.server_resets = true;
                    }
                }
                break;
            }
        }
    }
    for script in [&mut scripts.client, &mut scripts.server] {
        let steps = std::mem::take(script);
        for step in steps {
            let Step::Send {
                offset,
                len,
                mut chunks,
            } = step
            else {
                script.push(step);
                continue;
            };
            if options.boundaries == Boundaries::Merge && tcp {
                chunks.clear();
            } else if chunks.len() <= SEPARATE_WRITES {
                // A few writes read best as a `send` each.
                let mut at = offset;
                for size in chunks {
                    script.push(Step::Send {
                        offset: at,
                        len: size,
                        chunks: Vec::new(),
                    });
                    at += size;
                }
                continue;
            } else {
                chunks = compress_chunks(&chunks);
                // One write of everything needs no `chunks`.
                if chunks.len() == 1 && chunks[0] >= len {
                    chunks.clear();
                }
            }
            script.push(Step::Send {
                offset,
                len,
                chunks,
            });
        }
    }
    Ok(scripts)
}

/// The shortest `chunks` list that splits data the same way as `sizes` (the last
/// size repeats until the data is used up, and the final call takes what is left).
pub fn compress_chunks(sizes: &[u64]) -> Vec<u64> {
    let mut chunks = sizes.to_vec();
    // A final size no larger than the one before is what repeating that one leaves.
    if chunks.len() >= 2 && chunks[chunks.len() - 1] <= chunks[chunks.len() - 2] {
        chunks.pop();
    }
    while chunks.len() >= 2 && chunks[chunks.len() - 1] == chunks[chunks.len() - 2] {
        chunks.pop();
    }
    chunks
}

fn write_scenario(
    flows: &[&Flow],
    refused: &[&Flow],
    source: &str,
    options: &ImportOptions,
    store: &Store,
    payloads: &mut Payloads,
    warnings: &mut Vec<String>,
) -> io::Result<Imported> {
    let capture_start = flows.iter().map(|f| f.first_seen).min().unwrap_or_default();
    let mut delays = Delays {
        factor: options.timing.factor(),
        capped: 0,
    };
    let mut tcp_connections = 0;
    let mut udp_flows = 0;
    // Groups of identical TCP connections (folded into `count` and `connections`
    // when the timing is not replayed: with it, each keeps its own start).
    let mut groups: Vec<(Scripts, Vec<&Flow>)> = Vec::new();
    for &flow in flows {
        match flow.proto {
            FlowProto::Tcp => tcp_connections += 1,
            FlowProto::Udp => udp_flows += 1,
        }
        if flow.proto == FlowProto::Tcp && options.timing == Timing::None {
            if let Some((_, members)) = groups.iter_mut().find(|(_, members)| {
                members[0].proto == FlowProto::Tcp && same_conversation(store, members[0], flow)
            }) {
                members.push(flow);
                continue;
            }
        }
        let scripts = scripts_of(flow, capture_start, options, store, payloads, &mut delays)?;
        groups.push((scripts, vec![flow]));
    }
    if delays.capped > 0 {
        warnings.push(format!(
            "{} recorded gap(s) longer than {}s were replayed as {}s each (idle time or a \
             stray timestamp)",
            delays.capped,
            MAX_DELAY.as_secs(),
            MAX_DELAY.as_secs()
        ));
    }
    let longest_wait = groups
        .iter()
        .map(|(s, _)| s.longest_wait)
        .max()
        .unwrap_or_default();
    let longest_flow = groups
        .iter()
        .map(|(s, _)| s.total_delay)
        .max()
        .unwrap_or_default();
    let largest_step = groups
        .iter()
        .map(|(s, _)| s.largest_step)
        .max()
        .unwrap_or_default();
    let total_bytes: u64 = flows.iter().map(|f| f.bytes[0] + f.bytes[1]).sum();
    let (step_timeout, timeout) = timeouts(longest_wait, longest_flow, largest_step, total_bytes);

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
    let _ = writeln!(
        out,
        "# Write calls: {}; timing: {}.",
        match options.boundaries {
            Boundaries::Keep => "one per recorded segment (--boundaries keep)",
            Boundaries::Merge => "one per run of one side's bytes (--boundaries merge)",
        },
        match options.timing {
            Timing::Keep => "the recorded gaps (--timing keep)".to_owned(),
            Timing::None => "none (--timing none)".to_owned(),
            Timing::Scaled(f) => format!("the recorded gaps x {f} (--timing scaled:{f})"),
        }
    );
    for (number, (_, members)) in groups.iter().enumerate() {
        for flow in members {
            let _ = writeln!(
                out,
                "#   client{}: {} {} -> {} ({})",
                number + 1,
                flow.proto.name(),
                flow.client,
                flow.server,
                flow.label()
            );
        }
    }
    for flow in refused {
        let _ = writeln!(
            out,
            "#   not replayed: {} {} the connection from {} ({})",
            flow.server,
            if flow.refused {
                "refused"
            } else {
                "never answered"
            },
            flow.client,
            flow.label()
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
    let _ = writeln!(out, "timeout = {}", duration_text(timeout));
    let _ = writeln!(out, "step_timeout = {}", duration_text(step_timeout));
    let _ = writeln!(out, "tags = [\"imported\"]");

    match &options.address {
        Some(address) => {
            let protos: Vec<FlowProto> = [FlowProto::Tcp, FlowProto::Udp]
                .into_iter()
                .filter(|p| groups.iter().any(|(_, m)| m[0].proto == *p))
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
                if members[0].proto == FlowProto::Udp {
                    let _ = writeln!(out, "proto = \"udp\"");
                }
                if members[0].server.is_ipv6() {
                    let _ = writeln!(out, "bind = \"[::1]:0\"");
                }
                if members.len() > 1 {
                    let _ = writeln!(out, "connections = {}", members.len());
                }
                if scripts.server_resets {
                    let _ = writeln!(out, "linger = \"0s\"");
                }
                write_script(&mut out, &scripts.server, payloads);
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
            Some(_) => target_name(members[0].proto).to_owned(),
            None => format!("server{}", number + 1),
        };
        let _ = writeln!(out, "connect = {}", basic_string(&server));
        if members.len() > 1 {
            let _ = writeln!(out, "count = {}", members.len());
        }
        if scripts.client_resets {
            let _ = writeln!(out, "linger = \"0s\"");
        }
        write_script(&mut out, &scripts.client, payloads);
    }
    Ok(Imported {
        toml: out,
        tcp_connections,
        udp_flows,
        refused: refused.len(),
        frames: 0,
        warnings: Vec::new(),
        payload_file: None,
    })
}

/// Whether two TCP connections replay identically: the same items, lengths and
/// bytes (read back from the store).
fn same_conversation(store: &Store, a: &Flow, b: &Flow) -> bool {
    if a.items.len() != b.items.len() || a.server.is_ipv6() != b.server.is_ipv6() {
        return false;
    }
    let mut left = Vec::new();
    let mut right = Vec::new();
    for (x, y) in a.items.iter().zip(&b.items) {
        match (*x, *y) {
            (
                Item::Data {
                    from_client: fa,
                    offset: oa,
                    len: la,
                    ..
                },
                Item::Data {
                    from_client: fb,
                    offset: ob,
                    len: lb,
                    ..
                },
            ) => {
                if fa != fb || la != lb {
                    return false;
                }
                let mut done = 0;
                while done < la {
                    let n = (la - done).min(64 << 10) as usize;
                    left.resize(n, 0);
                    right.resize(n, 0);
                    if store.read(oa + done, &mut left).is_err()
                        || store.read(ob + done, &mut right).is_err()
                        || left != right
                    {
                        return false;
                    }
                    done += n as u64;
                }
            }
            (
                Item::Fin {
                    from_client: fa, ..
                },
                Item::Fin {
                    from_client: fb, ..
                },
            )
            | (
                Item::Reset {
                    from_client: fa, ..
                },
                Item::Reset {
                    from_client: fb, ..
                },
            ) if fa == fb => {}
            _ => return false,
        }
    }
    true
}

fn target_name(proto: FlowProto) -> &'static str {
    match proto {
        FlowProto::Tcp => "target",
        FlowProto::Udp => "target_udp",
    }
}

fn write_script(out: &mut String, steps: &[Step], payloads: &Payloads) {
    if steps.is_empty() {
        out.push_str("script = []\n");
        return;
    }
    out.push_str("script = [\n");
    for step in steps {
        let text = match step {
            Step::Send {
                offset,
                len,
                chunks,
            } => {
                let data = payloads.data(*offset, *len);
                if chunks.is_empty() {
                    format!("{{ send = {data} }}")
                } else {
                    let sizes: Vec<String> = chunks.iter().map(u64::to_string).collect();
                    let table = data
                        .strip_prefix("{ ")
                        .and_then(|d| d.strip_suffix(" }"))
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("text = {data}"));
                    format!(
                        "{{ send = {{ {table}, chunks = [{}] }} }}",
                        sizes.join(", ")
                    )
                }
            }
            Step::Expect { offset, len } => {
                format!("{{ expect = {} }}", payloads.data(*offset, *len))
            }
            Step::Sleep(delay) => format!("{{ sleep = {} }}", duration_text(*delay)),
            Step::Connect => "{ connect = true }".into(),
            Step::Shutdown => "{ shutdown = \"write\" }".into(),
            Step::ExpectEof => "{ expect_eof = true }".into(),
            Step::Close => "{ close = true }".into(),
            Step::ExpectReset => "{ expect_reset = true }".into(),
            Step::Comment(text) => {
                let _ = writeln!(out, "  # {text}");
                continue;
            }
        };
        let _ = writeln!(out, "  {text},");
    }
    out.push_str("]\n");
}

/// A duration as the format writes it: whole seconds, whole milliseconds, or
/// microseconds below 10 ms.
fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("\"{}s\"", d.as_secs())
    } else if d >= Duration::from_millis(10) || d.subsec_micros() % 1000 == 0 {
        format!("\"{}ms\"", d.as_millis())
    } else {
        format!("\"{}us\"", d.as_micros())
    }
}

/// Deadlines with room for the recorded pace. A step waits at most through the
/// longest delay the peer replays, plus the time to move the largest step at a
/// slow 50 MiB/s, plus the format's default 2 s; the whole scenario through its
/// longest conversation, twice, plus its bytes at that rate, at least 10 s. The
/// format caps durations at 24 h.
fn timeouts(
    longest_wait: Duration,
    longest_flow: Duration,
    largest_step: u64,
    total_bytes: u64,
) -> (Duration, Duration) {
    const RATE: u64 = 50 << 20;
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let step = (Duration::from_secs(2)
        + longest_wait.min(MAX_DELAY) * 2
        + Duration::from_secs(largest_step / RATE))
    .min(DAY);
    let total = (Duration::from_secs(10)
        + longest_flow * 2
        + step * 2
        + Duration::from_secs(total_bytes / RATE))
    .min(DAY);
    (step, total)
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

    /// The compressed list splits data exactly as the recorded sizes did.
    #[test]
    fn chunks_compress_without_changing_the_split() {
        let cases: &[&[u64]] = &[
            &[5, 5],
            &[1448, 1448, 1448, 500],
            &[5, 3, 3, 2],
            &[1, 2, 3],
            &[3, 2, 1],
            &[7],
            &[2, 9, 9, 9],
            &[4, 4, 4, 4, 4],
        ];
        for sizes in cases {
            let total: u64 = sizes.iter().sum();
            let data = bytes::Bytes::from(vec![0u8; total as usize]);
            let chunks: Vec<usize> = compress_chunks(sizes).iter().map(|&c| c as usize).collect();
            let split: Vec<u64> = crate::runner::split_chunks(&data, &chunks)
                .iter()
                .map(|p| p.len() as u64)
                .collect();
            assert_eq!(&split, sizes, "{sizes:?} -> {chunks:?}");
        }
        assert_eq!(compress_chunks(&[1448, 1448, 1448, 500]), vec![1448]);
    }

    #[test]
    fn options_parse() {
        assert_eq!("keep".parse::<Timing>(), Ok(Timing::Keep));
        assert_eq!("scaled:0.5".parse::<Timing>(), Ok(Timing::Scaled(0.5)));
        assert!("scaled:-1".parse::<Timing>().is_err());
        assert!("fast".parse::<Timing>().is_err());
        assert_eq!(
            "3".parse::<Selector>(),
            Ok(Selector::Stream(FlowProto::Tcp, 3))
        );
        assert_eq!(
            "udp:0".parse::<Selector>(),
            Ok(Selector::Stream(FlowProto::Udp, 0))
        );
        assert_eq!(":443".parse::<Selector>(), Ok(Selector::Port(443)));
        assert_eq!(
            "10.0.0.1".parse::<Selector>(),
            Ok(Selector::Address("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            "[::1]:80".parse::<Selector>(),
            Ok(Selector::Endpoint("[::1]:80".parse().unwrap()))
        );
        assert!("tcp:x".parse::<Selector>().is_err());
    }

    #[test]
    fn deadlines_follow_the_recorded_gaps_with_a_cap() {
        let (step, total) = timeouts(Duration::ZERO, Duration::ZERO, 10, 10);
        assert_eq!(step, Duration::from_secs(2));
        assert_eq!(total, Duration::from_secs(14));
        let (step, _) = timeouts(Duration::from_secs(3600), Duration::ZERO, 0, 0);
        assert_eq!(step, Duration::from_secs(2) + MAX_DELAY * 2);
    }
}
