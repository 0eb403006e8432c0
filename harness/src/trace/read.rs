//! Reading traces back: pcap and pcapng files, one frame at a time, with one
//! reused buffer (memory does not grow with the file).
//!
//! The reader is written here rather than taken from pcap-file: tried on 915 real
//! captures, pcap-file refused readable files that tshark reads (a pcapng whose
//! options lack the end-of-options marker, big-endian files, a file cut inside its
//! last packet) and allocates 8 MB per reader. This one follows the formats as
//! tshark reads them:
//!
//! ```text
//! pcap:    header (24: magic, version, zone, sigfigs, snaplen, link type)
//!          then records (16: seconds, fraction, captured length, original length)
//!          + captured bytes; magic a1b2c3d4 (microseconds) or a1b23c4d
//!          (nanoseconds), in either byte order; a1b2cd34 has 8 more bytes per record
//! pcapng:  blocks (type, total length, body, total length), byte order from each
//!          section header's 1a2b3c4d; interfaces (link type, if_tsresol,
//!          if_tsoffset) numbered per section; enhanced, simple and obsolete packet
//!          blocks carry frames; every other block is skipped
//! ```
//!
//! A file cut inside its last packet is read up to that packet, and the summary
//! says so ([`ReadSummary::truncated_at`]). Everything else that is wrong with the
//! file is a [`ReadError`] that names the packet and the problem; nothing here
//! panics or allocates more than [`MAX_BLOCK`] bytes on bad input.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sink::TraceFormat;

/// The largest packet record or pcapng block read. No link carries frames
/// anywhere near this (BIG TCP packets are at most 512 KiB), so a larger length
/// is damage, not data.
pub const MAX_BLOCK: usize = 16 << 20;

/// A link-layer header type: how a frame starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II, with any number of 802.1Q / 802.1ad (QinQ) tags.
    Ethernet,
    /// Raw IPv4 or IPv6, the version read from the packet (LINKTYPE_RAW, _IPV4, _IPV6).
    RawIp,
    /// Linux cooked capture v1 (`tcpdump -i any`).
    LinuxSll,
    /// Linux cooked capture v2.
    LinuxSll2,
    /// BSD loopback: a 4-byte address family, host (NULL) or network (LOOP) order.
    Null,
    Loop,
    /// PPP, with or without the HDLC address and control bytes.
    Ppp,
    /// PPP with a direction byte first (LINKTYPE_PPP_WITH_DIR).
    PppWithDir,
    /// Anything else, by its LINKTYPE_ number.
    Other(u32),
}

/// The link types import reads, with their LINKTYPE_ numbers and names (the list
/// `docs/cli.md` gives).
pub const SUPPORTED_LINK_TYPES: &[(u32, &str)] = &[
    (0, "NULL (BSD loopback)"),
    (1, "ETHERNET (with VLAN and QinQ tags)"),
    (9, "PPP"),
    (12, "RAW (raw IP, OpenBSD's number)"),
    (14, "RAW (raw IP, some BSDs' number)"),
    (50, "PPP_HDLC"),
    (101, "RAW (raw IPv4 or IPv6)"),
    (108, "LOOP (OpenBSD loopback)"),
    (113, "LINUX_SLL (Linux cooked capture v1)"),
    (204, "PPP_WITH_DIR"),
    (228, "IPV4"),
    (229, "IPV6"),
    (276, "LINUX_SLL2 (Linux cooked capture v2)"),
];

/// Names of well-known link types import does not read, so a refusal names them.
const OTHER_LINK_TYPE_NAMES: &[(u32, &str)] = &[
    (6, "IEEE802_5 (Token Ring)"),
    (10, "FDDI"),
    (105, "IEEE802_11 (Wi-Fi)"),
    (119, "IEEE802_11_PRISM (Wi-Fi with Prism header)"),
    (127, "IEEE802_11_RADIOTAP (Wi-Fi with radiotap header)"),
    (163, "IEEE802_11_AVS (Wi-Fi with AVS header)"),
    (189, "USB_LINUX"),
    (192, "PPI"),
    (195, "IEEE802_15_4_WITHFCS"),
    (201, "BLUETOOTH_HCI_H4_WITH_PHDR"),
    (215, "IEEE802_15_4_NONASK_PHY"),
    (220, "USB_LINUX_MMAPPED"),
    (227, "CAN_SOCKETCAN"),
    (230, "IEEE802_15_4_NOFCS"),
    (249, "NETLINK"),
    (252, "WIRESHARK_UPPER_PDU"),
    (253, "NETANALYZER"),
    (263, "VPP_DISPATCH"),
];

impl LinkType {
    /// The link type of a LINKTYPE_ number (the upper bits of a pcap header's
    /// field carry FCS information and are ignored).
    pub fn from_code(code: u32) -> Self {
        match code & 0xffff {
            1 => LinkType::Ethernet,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            9 | 50 => LinkType::Ppp,
            204 => LinkType::PppWithDir,
            other => LinkType::Other(other),
        }
    }

    pub fn is_supported(self) -> bool {
        !matches!(self, LinkType::Other(_))
    }

    /// A name for messages: `ETHERNET`, or `link type 127 (IEEE802_11_RADIOTAP ...)`.
    pub fn describe(self) -> String {
        match self {
            LinkType::Ethernet => "Ethernet".into(),
            LinkType::RawIp => "raw IP".into(),
            LinkType::LinuxSll => "Linux cooked capture v1".into(),
            LinkType::LinuxSll2 => "Linux cooked capture v2".into(),
            LinkType::Null => "BSD loopback (NULL)".into(),
            LinkType::Loop => "OpenBSD loopback (LOOP)".into(),
            LinkType::Ppp => "PPP".into(),
            LinkType::PppWithDir => "PPP with direction".into(),
            LinkType::Other(code) => match OTHER_LINK_TYPE_NAMES.iter().find(|(c, _)| *c == code) {
                Some((_, name)) => format!("link type {code} ({name})"),
                None => format!("link type {code} (not one wirecheck knows)"),
            },
        }
    }
}

/// The supported link types as one line, for messages.
pub fn supported_link_types() -> String {
    SUPPORTED_LINK_TYPES
        .iter()
        .map(|(code, name)| format!("{name} = {code}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One frame of a trace, borrowed from the reader.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// 1-based packet number, as Wireshark counts.
    pub number: u64,
    /// Since the Unix epoch.
    pub timestamp: Duration,
    pub link: LinkType,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire (more than `data.len()` if cut by a snap length).
    pub original_len: u32,
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a pcap or pcapng file: {reason}")]
    NotATrace { path: PathBuf, reason: String },
    #[error("{path} cannot be imported: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path} is damaged at packet {packet}: {reason}")]
    Malformed {
        path: PathBuf,
        packet: u64,
        reason: String,
    },
    #[error("{path}, packet {packet}: {reason}")]
    Packet {
        path: PathBuf,
        packet: u64,
        reason: String,
    },
}

/// What was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    pub format: TraceFormat,
    /// Complete frames handed to the visitor.
    pub frames: u64,
    /// The file ends inside this packet, which was skipped.
    pub truncated_at: Option<u64>,
}

/// Reads every frame of the trace at `path`, in file order, and hands it to `visit`.
/// `visit` may stop the reading by returning an error.
pub fn read_frames(
    path: &Path,
    visit: impl FnMut(FrameRef<'_>) -> Result<(), ReadError>,
) -> Result<ReadSummary, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_frames_from(file, path, visit)
}

/// [`read_frames`] from any reader; `path` only names the trace in errors.
pub fn read_frames_from<R: Read>(
    reader: R,
    path: &Path,
    mut visit: impl FnMut(FrameRef<'_>) -> Result<(), ReadError>,
) -> Result<ReadSummary, ReadError> {
    let mut input = Input {
        reader: BufReader::with_capacity(64 << 10, reader),
        path,
    };
    let mut magic = [0u8; 4];
    match input.fill(&mut magic)? {
        4 => {}
        got => {
            return Err(input.not_a_trace(format!("it holds only {got} bytes")));
        }
    }
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => read_pcapng(&mut input, &mut visit),
        [0xa1, 0xb2, 0xc3, 0xd4]
        | [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xcd, 0x34]
        | [0x34, 0xcd, 0xb2, 0xa1] => read_pcap(&mut input, magic, &mut visit),
        _ => Err(input.not_a_trace(format!(
            "it starts with {}, which is neither a pcap nor a pcapng magic number",
            hex_bytes(&magic)
        ))),
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Input<'p, R> {
    reader: BufReader<R>,
    path: &'p Path,
}

impl<R: Read> Input<'_, R> {
    /// Reads until `buf` is full or the file ends; returns how many bytes came.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        let mut got = 0;
        while got < buf.len() {
            match self.reader.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ReadError::Io {
                        path: self.path.to_owned(),
                        source,
                    })
                }
            }
        }
        Ok(got)
    }

    /// Reads `len` bytes into `buf` (cleared first); false if the file ended first.
    fn fill_vec(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<bool, ReadError> {
        buf.clear();
        self.append(buf, len)
    }

    /// Appends `len` bytes to `buf`; false if the file ended first.
    fn append(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<bool, ReadError> {
        let got = (&mut self.reader)
            .take(len as u64)
            .read_to_end(buf)
            .map_err(|source| ReadError::Io {
                path: self.path.to_owned(),
                source,
            })?;
        Ok(got == len)
    }

    fn not_a_trace(&self, reason: impl Into<String>) -> ReadError {
        ReadError::NotATrace {
            path: self.path.to_owned(),
            reason: reason.into(),
        }
    }

    fn damaged(&self, packet: u64, reason: impl Into<String>) -> ReadError {
        ReadError::Malformed {
            path: self.path.to_owned(),
            packet,
            reason: reason.into(),
        }
    }
}

#[derive(Clone, Copy)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u16(self, b: &[u8]) -> u16 {
        let b = [b[0], b[1]];
        match self {
            Order::Little => u16::from_le_bytes(b),
            Order::Big => u16::from_be_bytes(b),
        }
    }

    fn u32(self, b: &[u8]) -> u32 {
        let b = [b[0], b[1], b[2], b[3]];
        match self {
            Order::Little => u32::from_le_bytes(b),
            Order::Big => u32::from_be_bytes(b),
        }
    }
}

fn read_pcap<R: Read>(
    input: &mut Input<'_, R>,
    magic: [u8; 4],
    visit: &mut dyn FnMut(FrameRef<'_>) -> Result<(), ReadError>,
) -> Result<ReadSummary, ReadError> {
    let order = if magic[0] == 0xa1 {
        Order::Big
    } else {
        Order::Little
    };
    let native = order.u32(&magic);
    let nanos_per_unit: u64 = if native == 0xa1b2_3c4d { 1 } else { 1_000 };
    // The "modified" format of some old Linux tcpdumps: 8 more bytes per record.
    let record_len = if native == 0xa1b2_cd34 { 24 } else { 16 };
    let mut header = [0u8; 20];
    if input.fill(&mut header)? < header.len() {
        return Err(input.not_a_trace("the file ends inside its 24-byte header"));
    }
    let major = order.u16(&header[0..2]);
    if major != 2 {
        return Err(input.not_a_trace(format!(
            "its header says version {major}.{}; pcap files are version 2",
            order.u16(&header[2..4])
        )));
    }
    let link = LinkType::from_code(order.u32(&header[16..20]));
    if !link.is_supported() {
        return Err(ReadError::Unsupported {
            path: input.path.to_owned(),
            reason: format!(
                "its frames are {}, which import does not read; it reads {}",
                link.describe(),
                supported_link_types()
            ),
        });
    }
    let mut record = [0u8; 24];
    let mut data = Vec::new();
    let mut frames = 0u64;
    loop {
        let number = frames + 1;
        match input.fill(&mut record[..record_len])? {
            0 => break,
            n if n < record_len => {
                return Ok(ReadSummary {
                    format: TraceFormat::Pcap,
                    frames,
                    truncated_at: Some(number),
                })
            }
            _ => {}
        }
        let seconds = order.u32(&record[0..4]);
        let fraction = order.u32(&record[4..8]);
        let captured = order.u32(&record[8..12]) as usize;
        let original = order.u32(&record[12..16]);
        if captured > MAX_BLOCK {
            return Err(input.damaged(
                number,
                format!(
                    "its record claims {captured} captured bytes; no frame is larger than {MAX_BLOCK}"
                ),
            ));
        }
        if !input.fill_vec(&mut data, captured)? {
            return Ok(ReadSummary {
                format: TraceFormat::Pcap,
                frames,
                truncated_at: Some(number),
            });
        }
        let timestamp = Duration::from_secs(u64::from(seconds))
            + Duration::from_nanos(u64::from(fraction).saturating_mul(nanos_per_unit));
        visit(FrameRef {
            number,
            timestamp,
            link,
            data: &data,
            // Some writers put a smaller original length than the captured one.
            original_len: original.max(captured as u32),
        })?;
        frames = number;
    }
    Ok(ReadSummary {
        format: TraceFormat::Pcap,
        frames,
        truncated_at: None,
    })
}

/// An interface of a pcapng section.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second (`if_tsresol`).
    units_per_second: u128,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_seconds: i64,
}

const SECTION_HEADER: u32 = 0x0a0d_0d0a;
const INTERFACE_DESCRIPTION: u32 = 1;
const OBSOLETE_PACKET: u32 = 2;
const SIMPLE_PACKET: u32 = 3;
const ENHANCED_PACKET: u32 = 6;

fn read_pcapng<R: Read>(
    input: &mut Input<'_, R>,
    visit: &mut dyn FnMut(FrameRef<'_>) -> Result<(), ReadError>,
) -> Result<ReadSummary, ReadError> {
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut frames = 0u64;
    let mut order = Order::Little;
    let mut body = Vec::new();
    let mut first = true;
    let mut any_supported = false;
    let mut unsupported: Vec<LinkType> = Vec::new();
    let truncated = |frames: u64| {
        Ok(ReadSummary {
            format: TraceFormat::Pcapng,
            frames,
            truncated_at: Some(frames + 1),
        })
    };
    loop {
        let number = frames + 1;
        let mut head = [0u8; 12];
        // The first block's type was read as the magic number.
        let wanted = if first { 8 } else { 12 };
        let start = 12 - wanted;
        if first {
            head[..4].copy_from_slice(&SECTION_HEADER.to_le_bytes());
        }
        match input.fill(&mut head[start..])? {
            0 if !first => break,
            n if n < wanted => {
                if first {
                    return Err(input.not_a_trace("the file ends inside its section header"));
                }
                // A section header's byte order comes after its length; either way
                // the file ends inside a block.
                return truncated(frames);
            }
            _ => {}
        }
        let raw_type = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let is_section = raw_type == SECTION_HEADER;
        if is_section {
            order = match head[8..12] {
                [0x4d, 0x3c, 0x2b, 0x1a] => Order::Little,
                [0x1a, 0x2b, 0x3c, 0x4d] => Order::Big,
                _ if first => {
                    return Err(
                        input.not_a_trace("its section header has no byte-order magic (1a2b3c4d)")
                    )
                }
                _ => {
                    return Err(input.damaged(
                        number,
                        "a section header has no byte-order magic (1a2b3c4d)",
                    ))
                }
            };
        } else if first {
            return Err(input.not_a_trace("it does not start with a section header"));
        }
        first = false;
        let block_type = order.u32(&head[0..4]);
        let total = order.u32(&head[4..8]) as usize;
        if !(12..=MAX_BLOCK).contains(&total) {
            return Err(input.damaged(
                number,
                format!("a block of type {block_type:#x} claims a length of {total} bytes"),
            ));
        }
        // The 4 bytes after the length are the byte-order magic of a section
        // header and the start of the body of any other block.
        body.clear();
        if !is_section {
            body.extend_from_slice(&head[8..12]);
        }
        if !input.append(&mut body, total - 12)? {
            return truncated(frames);
        }
        if body.len() < 4 {
            return Err(input.damaged(number, "a section header is too short"));
        }
        // `body` now holds the block's body followed by its trailing length.
        let (content, trailer) = body.split_at(body.len() - 4);
        if order.u32(trailer) as usize != total {
            return Err(input.damaged(
                number,
                format!(
                    "a block of type {block_type:#x} ends with length {} but starts with {total}",
                    order.u32(trailer)
                ),
            ));
        }
        let packet = match block_type {
            SECTION_HEADER => {
                interfaces.clear();
                None
            }
            INTERFACE_DESCRIPTION => {
                if content.len() < 8 {
                    return Err(input.damaged(number, "an interface description is too short"));
                }
                let link = LinkType::from_code(u32::from(order.u16(&content[0..2])));
                if link.is_supported() {
                    any_supported = true;
                } else if !unsupported.contains(&link) {
                    unsupported.push(link);
                }
                let mut interface = Interface {
                    link,
                    units_per_second: 1_000_000,
                    offset_seconds: 0,
                };
                for (code, value) in options(order, &content[8..]) {
                    match code {
                        9 if !value.is_empty() => {
                            interface.units_per_second =
                                units_per_second_of(value[0]).ok_or_else(|| {
                                    input.damaged(
                                        number,
                                        format!(
                                            "an interface has timestamp resolution {:#04x}",
                                            value[0]
                                        ),
                                    )
                                })?;
                        }
                        14 if value.len() >= 8 => {
                            let mut raw = [0u8; 8];
                            raw.copy_from_slice(&value[..8]);
                            interface.offset_seconds = match order {
                                Order::Little => i64::from_le_bytes(raw),
                                Order::Big => i64::from_be_bytes(raw),
                            };
                        }
                        _ => {}
                    }
                }
                interfaces.push(interface);
                None
            }
            // The obsolete packet block is the enhanced one with a 16-bit interface
            // id (and drop count, unused here) where the enhanced has 32 bits.
            kind @ (ENHANCED_PACKET | OBSOLETE_PACKET) if content.len() >= 20 => {
                let captured = order.u32(&content[12..16]) as usize;
                if captured > content.len() - 20 {
                    return Err(input.damaged(
                        number,
                        format!(
                            "a packet block claims {captured} captured bytes but holds {}",
                            content.len() - 20
                        ),
                    ));
                }
                let interface = if kind == ENHANCED_PACKET {
                    order.u32(&content[0..4])
                } else {
                    u32::from(order.u16(&content[0..2]))
                };
                let raw_time = (u64::from(order.u32(&content[4..8])) << 32)
                    | u64::from(order.u32(&content[8..12]));
                Some((
                    interface,
                    raw_time,
                    20..20 + captured,
                    order.u32(&content[16..20]),
                ))
            }
            SIMPLE_PACKET if content.len() >= 4 => {
                let original = order.u32(&content[0..4]);
                let captured = (original as usize).min(content.len() - 4);
                Some((0, 0, 4..4 + captured, original))
            }
            ENHANCED_PACKET | OBSOLETE_PACKET | SIMPLE_PACKET => {
                return Err(input.damaged(number, "a packet block is too short for its header"))
            }
            _ => None,
        };
        let Some((interface_id, raw_time, range, original)) = packet else {
            continue;
        };
        let Some(interface) = interfaces.get(interface_id as usize).copied() else {
            return Err(input.damaged(
                number,
                format!("it refers to interface {interface_id}, which was never described"),
            ));
        };
        let nanos = u128::from(raw_time).saturating_mul(1_000_000_000) / interface.units_per_second;
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        let mut timestamp = Duration::from_nanos(nanos);
        let shift = Duration::from_secs(interface.offset_seconds.unsigned_abs());
        timestamp = if interface.offset_seconds >= 0 {
            timestamp.saturating_add(shift)
        } else {
            timestamp.saturating_sub(shift)
        };
        let data = &content[range];
        visit(FrameRef {
            number,
            timestamp,
            link: interface.link,
            data,
            original_len: original.max(data.len() as u32),
        })?;
        frames = number;
    }
    if frames == 0 && !any_supported && !unsupported.is_empty() {
        let names: Vec<String> = unsupported.iter().map(|l| l.describe()).collect();
        return Err(ReadError::Unsupported {
            path: input.path.to_owned(),
            reason: format!(
                "its interfaces capture {}, which import does not read; it reads {}",
                names.join(", "),
                supported_link_types()
            ),
        });
    }
    Ok(ReadSummary {
        format: TraceFormat::Pcapng,
        frames,
        truncated_at: None,
    })
}

/// The options of a pcapng block: (code, value) until the end-of-options marker
/// or the end of the block, whichever comes first (some writers leave the marker
/// out, and tshark reads them). An option that runs past the block ends the list.
fn options(order: Order, mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut found = Vec::new();
    while bytes.len() >= 4 {
        let code = order.u16(&bytes[0..2]);
        let len = usize::from(order.u16(&bytes[2..4]));
        if code == 0 {
            break;
        }
        let padded = len.div_ceil(4) * 4;
        if bytes.len() < 4 + len {
            break;
        }
        found.push((code, &bytes[4..4 + len]));
        bytes = &bytes[(4 + padded).min(bytes.len())..];
    }
    found
}

/// `if_tsresol`: the high bit chooses base 2, else base 10; the rest is the exponent.
fn units_per_second_of(resolution: u8) -> Option<u128> {
    let exponent = u32::from(resolution & 0x7f);
    if resolution & 0x80 == 0 {
        10u128.checked_pow(exponent).filter(|_| exponent <= 18)
    } else {
        2u128.checked_pow(exponent).filter(|_| exponent <= 63)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(units_per_second_of(6), Some(1_000_000));
        assert_eq!(units_per_second_of(9), Some(1_000_000_000));
        assert_eq!(units_per_second_of(0x80 | 10), Some(1024));
        assert_eq!(units_per_second_of(127), None);
    }

    #[test]
    fn options_end_at_the_marker_or_the_block() {
        let with_marker = [9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0];
        assert_eq!(options(Order::Little, &with_marker), vec![(9, &[9u8][..])]);
        let without = [9, 0, 1, 0, 6, 0, 0, 0];
        assert_eq!(options(Order::Little, &without), vec![(9, &[6u8][..])]);
        let overlong = [9, 0, 200, 0, 6, 0, 0, 0];
        assert!(options(Order::Little, &overlong).is_empty());
    }

    #[test]
    fn link_types_have_names() {
        assert_eq!(LinkType::from_code(1), LinkType::Ethernet);
        assert_eq!(LinkType::from_code(0x0400_0001), LinkType::Ethernet);
        assert!(LinkType::from_code(127)
            .describe()
            .contains("IEEE802_11_RADIOTAP"));
        for (code, _) in SUPPORTED_LINK_TYPES {
            assert!(LinkType::from_code(*code).is_supported(), "{code}");
        }
    }
}
