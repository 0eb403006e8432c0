//! Reading traces back: pcap or pcapng files (through pcap-file's readers), one
//! frame at a time, and decoding each frame down to its TCP segment or UDP datagram
//! (through etherparse). Link types: Ethernet, raw IP, Linux cooked capture (SLL and
//! SLL2), BSD loopback.
//!
//! Every problem with the file is a [`ReadError`] that says which packet and what is
//! wrong; nothing in here panics on bad input.

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, PcapError, TsResolution};

use super::sink::TraceFormat;

/// A link-layer header type (the pcap LINKTYPE_ values we understand by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// Raw IPv4 or IPv6 (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6).
    RawIp,
    /// Linux cooked capture v1 (`tcpdump -i any`).
    LinuxSll,
    /// Linux cooked capture v2.
    LinuxSll2,
    /// BSD loopback: a 4-byte address family in host order (NULL) or network order (LOOP).
    Null,
    Loop,
    Other(u32),
}

impl LinkType {
    fn from_datalink(link: DataLink) -> Self {
        match link {
            DataLink::ETHERNET => LinkType::Ethernet,
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => LinkType::RawIp,
            DataLink::LINUX_SLL => LinkType::LinuxSll,
            DataLink::LINUX_SLL2 => LinkType::LinuxSll2,
            DataLink::NULL => LinkType::Null,
            DataLink::LOOP => LinkType::Loop,
            other => LinkType::Other(u32::from(other)),
        }
    }
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
    #[error("{path} is truncated: the file ends inside packet {packet} (after {complete} complete packets)")]
    Truncated {
        path: PathBuf,
        packet: u64,
        complete: u64,
    },
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
    pub frames: u64,
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
    mut reader: R,
    path: &Path,
    mut visit: impl FnMut(FrameRef<'_>) -> Result<(), ReadError>,
) -> Result<ReadSummary, ReadError> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ReadError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
    if got < 4 {
        return Err(ReadError::NotATrace {
            path: path.to_owned(),
            reason: format!("it holds only {got} bytes"),
        });
    }
    let whole = io::Cursor::new(magic).chain(reader);
    match u32::from_be_bytes(magic) {
        0x0a0d_0d0a => read_pcapng(path, whole, &mut visit),
        0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => read_pcap(path, whole, &mut visit),
        other => Err(ReadError::NotATrace {
            path: path.to_owned(),
            reason: format!(
                "it starts with {other:08x}, which is neither a pcap nor a pcapng magic number"
            ),
        }),
    }
}

fn read_pcap<R: Read>(
    path: &Path,
    file: R,
    visit: &mut dyn FnMut(FrameRef<'_>) -> Result<(), ReadError>,
) -> Result<ReadSummary, ReadError> {
    let mut reader = PcapReader::new(file).map_err(|e| pcap_error(path, 0, 0, e))?;
    let header = reader.header();
    let link = LinkType::from_datalink(header.datalink);
    let nanos_per_unit = match header.ts_resolution {
        TsResolution::MicroSecond => 1_000,
        TsResolution::NanoSecond => 1,
    };
    let mut frames = 0u64;
    while let Some(packet) = reader.next_raw_packet() {
        let number = frames + 1;
        let packet = packet.map_err(|e| pcap_error(path, number, frames, e))?;
        if packet.incl_len > packet.orig_len {
            return Err(ReadError::Malformed {
                path: path.to_owned(),
                packet: number,
                reason: format!(
                    "it claims {} captured bytes of a {}-byte frame",
                    packet.incl_len, packet.orig_len
                ),
            });
        }
        let timestamp = Duration::from_secs(u64::from(packet.ts_sec))
            + Duration::from_nanos(u64::from(packet.ts_frac) * nanos_per_unit);
        visit(FrameRef {
            number,
            timestamp,
            link,
            data: &packet.data,
            original_len: packet.orig_len,
        })?;
        frames = number;
    }
    Ok(ReadSummary {
        format: TraceFormat::Pcap,
        frames,
    })
}

/// An interface of a pcapng section: its link type and nanoseconds per timestamp unit.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    units_per_second: u128,
}

fn read_pcapng<R: Read>(
    path: &Path,
    file: R,
    visit: &mut dyn FnMut(FrameRef<'_>) -> Result<(), ReadError>,
) -> Result<ReadSummary, ReadError> {
    let mut reader = PcapNgReader::new(file).map_err(|e| pcap_error(path, 0, 0, e))?;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut frames = 0u64;
    while let Some(block) = reader.next_block() {
        let number = frames + 1;
        let block = block.map_err(|e| pcap_error(path, number, frames, e))?;
        let (interface_id, raw_time, data, original_len) = match block {
            Block::SectionHeader(_) => {
                interfaces.clear();
                continue;
            }
            Block::InterfaceDescription(idb) => {
                let mut units_per_second = 1_000_000u128;
                for option in &idb.options {
                    if let InterfaceDescriptionOption::IfTsResol(resolution) = option {
                        units_per_second = units_per_second_of(*resolution).ok_or_else(|| {
                            ReadError::Malformed {
                                path: path.to_owned(),
                                packet: number,
                                reason: format!(
                                    "unsupported timestamp resolution {resolution:#04x}"
                                ),
                            }
                        })?;
                    }
                }
                interfaces.push(Interface {
                    link: LinkType::from_datalink(idb.linktype),
                    units_per_second,
                });
                continue;
            }
            Block::EnhancedPacket(epb) => (
                epb.interface_id,
                // pcap-file hands the raw 64-bit count over as nanoseconds.
                epb.timestamp.as_nanos(),
                epb.data,
                epb.original_len,
            ),
            Block::SimplePacket(spb) => (0, 0, spb.data, spb.original_len),
            Block::Packet(pb) => (
                u32::from(pb.interface_id),
                u128::from(pb.timestamp),
                pb.data,
                pb.original_len,
            ),
            _ => continue,
        };
        let Some(interface) = interfaces.get(interface_id as usize).copied() else {
            return Err(ReadError::Malformed {
                path: path.to_owned(),
                packet: number,
                reason: format!("it refers to interface {interface_id}, which was never described"),
            });
        };
        let nanos = raw_time.saturating_mul(1_000_000_000) / interface.units_per_second;
        let timestamp = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        // A simple packet block has no captured length; it holds min(snaplen, len).
        let original_len = original_len.max(u32::try_from(data.len()).unwrap_or(u32::MAX));
        visit(FrameRef {
            number,
            timestamp,
            link: interface.link,
            data: &data,
            original_len,
        })?;
        frames = number;
    }
    Ok(ReadSummary {
        format: TraceFormat::Pcapng,
        frames,
    })
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

fn pcap_error(path: &Path, packet: u64, complete: u64, error: PcapError) -> ReadError {
    match error {
        PcapError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            if packet == 0 {
                ReadError::NotATrace {
                    path: path.to_owned(),
                    reason: "the file ends inside its header".into(),
                }
            } else {
                ReadError::Truncated {
                    path: path.to_owned(),
                    packet,
                    complete,
                }
            }
        }
        PcapError::IoError(source) => ReadError::Io {
            path: path.to_owned(),
            source,
        },
        other if packet == 0 => ReadError::NotATrace {
            path: path.to_owned(),
            reason: other.to_string(),
        },
        other => ReadError::Malformed {
            path: path.to_owned(),
            packet,
            reason: other.to_string(),
        },
    }
}

/// TCP control flags as read from a segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// The transport part of a decoded frame.
#[derive(Debug, Clone, Copy)]
pub enum Transport<'a> {
    Tcp {
        seq: u32,
        ack: u32,
        flags: SegmentFlags,
        payload: &'a [u8],
    },
    Udp {
        payload: &'a [u8],
    },
}

/// A frame decoded down to its addresses and transport payload.
#[derive(Debug, Clone, Copy)]
pub struct Decoded<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport<'a>,
}

/// Decodes a frame to TCP or UDP. `Ok(None)` for anything else (ARP, ICMP, IP
/// fragments), which a conversation does not need. A frame cut short by a snap
/// length is an error: its payload is not all there.
pub fn decode<'a>(frame: &FrameRef<'a>) -> Result<Option<Decoded<'a>>, String> {
    if (frame.data.len() as u64) < u64::from(frame.original_len) {
        return Err(format!(
            "only {} of its {} bytes were captured (a snap length cut it)",
            frame.data.len(),
            frame.original_len
        ));
    }
    let data = frame.data;
    let sliced = match frame.link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(data),
        LinkType::RawIp => SlicedPacket::from_ip(data),
        LinkType::LinuxSll => {
            // 16-byte header ending in the protocol (an EtherType). Read by hand:
            // etherparse refuses the ARPHRD_LOOPBACK type `tcpdump -i any` gives `lo`.
            if data.len() < 16 {
                return Err("shorter than a Linux cooked (SLL) header".into());
            }
            let ether_type = EtherType(u16::from_be_bytes([data[14], data[15]]));
            SlicedPacket::from_ether_type(ether_type, &data[16..])
        }
        LinkType::LinuxSll2 => {
            // 20-byte header; the protocol type (an EtherType) comes first.
            if data.len() < 20 {
                return Err("shorter than a Linux cooked (SLL2) header".into());
            }
            let ether_type = EtherType(u16::from_be_bytes([data[0], data[1]]));
            SlicedPacket::from_ether_type(ether_type, &data[20..])
        }
        LinkType::Null | LinkType::Loop => {
            if data.len() < 4 {
                return Err("shorter than a loopback header".into());
            }
            SlicedPacket::from_ip(&data[4..])
        }
        LinkType::Other(code) => {
            return Err(format!(
                "link type {code} is not supported (Ethernet, raw IP and Linux cooked captures are)"
            ))
        }
    };
    let sliced = match sliced {
        Ok(sliced) => sliced,
        Err(e) => return Err(format!("cannot decode the packet: {e}")),
    };
    let (src_ip, dst_ip, fragmented) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            let header = ip.header();
            (
                IpAddr::from(header.source_addr()),
                IpAddr::from(header.destination_addr()),
                ip.is_payload_fragmented(),
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            let header = ip.header();
            (
                IpAddr::from(header.source_addr()),
                IpAddr::from(header.destination_addr()),
                ip.is_payload_fragmented(),
            )
        }
        _ => return Ok(None),
    };
    if fragmented {
        return Ok(None);
    }
    let decoded = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Decoded {
            src: SocketAddr::new(src_ip, tcp.source_port()),
            dst: SocketAddr::new(dst_ip, tcp.destination_port()),
            transport: Transport::Tcp {
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                flags: SegmentFlags {
                    syn: tcp.syn(),
                    ack: tcp.ack(),
                    fin: tcp.fin(),
                    rst: tcp.rst(),
                },
                payload: tcp.payload(),
            },
        },
        Some(TransportSlice::Udp(udp)) => Decoded {
            src: SocketAddr::new(src_ip, udp.source_port()),
            dst: SocketAddr::new(dst_ip, udp.destination_port()),
            transport: Transport::Udp {
                payload: udp.payload(),
            },
        },
        _ => return Ok(None),
    };
    Ok(Some(decoded))
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
}
