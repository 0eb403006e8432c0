//! Decoding a captured frame down to its TCP segment or UDP datagram.
//!
//! ```text
//! link:      Ethernet (+ 802.1Q/802.1ad tags, PPPoE) | Linux cooked v1/v2 | raw IP
//!            | BSD loopback | PPP
//! network:   IPv4 (options; fragments; total length 0 = TSO) | IPv6 (extension
//!            headers; fragments; payload length 0 = BIG TCP / jumbogram)
//! tunnels:   IP-in-IP (4, 41), GRE (47), VXLAN (UDP 4789), GENEVE (UDP 6081):
//!            the inner packet is decoded in place of the outer one
//! transport: TCP, UDP
//! ```
//!
//! Written by hand rather than through etherparse's slicers because a capture
//! taken on the sender holds what those refuse: IPv4 total length 0 under TSO and
//! BIG TCP, fragments that must be kept for reassembly, tunnels. Every length is
//! checked against the bytes there are; nothing here panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::read::{FrameRef, LinkType};

/// TCP control flags as read from a segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

/// The transport part of a decoded packet.
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

/// A packet decoded down to its addresses and transport payload.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport<'a>,
    /// False when a snap length cut the packet: its payload is not all there.
    pub complete: bool,
}

/// Identifies the fragments of one IP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragmentKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub protocol: u8,
}

/// One fragment of an IP datagram: bytes `offset..offset + payload.len()` of the
/// datagram's payload.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    pub key: FragmentKey,
    pub offset: usize,
    /// More fragments follow this one.
    pub more: bool,
    pub payload: &'a [u8],
    /// False when a snap length cut the fragment.
    pub complete: bool,
}

/// What a frame turned out to be.
#[derive(Debug, Clone, Copy)]
pub enum Decoded<'a> {
    Packet(Packet<'a>),
    Fragment(Fragment<'a>),
    /// Not TCP or UDP (ARP, ICMP, ...): what it is, for the skip count.
    Other(&'static str),
}

/// How deep tunnels may nest before a packet is taken for garbage.
const MAX_DEPTH: u8 = 4;

/// Decodes a frame. `Err` is a frame that cannot be decoded, with the reason.
pub fn decode<'a>(frame: &FrameRef<'a>) -> Result<Decoded<'a>, String> {
    let cut = (frame.data.len() as u64) < u64::from(frame.original_len);
    link(frame.link, frame.data, cut, 0)
}

/// Decodes the payload of a reassembled IP datagram.
pub fn decode_reassembled<'a>(key: &FragmentKey, payload: &'a [u8]) -> Result<Decoded<'a>, String> {
    transport(key.src, key.dst, key.protocol, payload, true, 0)
}

fn link(link: LinkType, data: &[u8], cut: bool, depth: u8) -> Result<Decoded<'_>, String> {
    match link {
        LinkType::Ethernet => ethernet(data, cut, depth),
        LinkType::RawIp => ip_by_version(data, cut, depth),
        LinkType::LinuxSll => {
            let header = data
                .get(..16)
                .ok_or("shorter than a Linux cooked (SLL) header")?;
            ether_type(
                u16::from_be_bytes([header[14], header[15]]),
                &data[16..],
                cut,
                depth,
            )
        }
        LinkType::LinuxSll2 => {
            let header = data
                .get(..20)
                .ok_or("shorter than a Linux cooked (SLL2) header")?;
            ether_type(
                u16::from_be_bytes([header[0], header[1]]),
                &data[20..],
                cut,
                depth,
            )
        }
        // The address family is in the capturing host's byte order (and differs
        // between BSDs for IPv6); the IP version nibble says it all.
        LinkType::Null | LinkType::Loop => {
            let rest = data.get(4..).ok_or("shorter than a loopback header")?;
            ip_by_version(rest, cut, depth)
        }
        LinkType::Ppp => ppp(data, cut, depth),
        LinkType::PppWithDir => ppp(data.get(1..).ok_or("an empty PPP frame")?, cut, depth),
        LinkType::Other(_) => Err(format!("its link type is {}", link.describe())),
    }
}

fn ethernet(data: &[u8], cut: bool, depth: u8) -> Result<Decoded<'_>, String> {
    let header = data.get(..14).ok_or("shorter than an Ethernet header")?;
    let kind = u16::from_be_bytes([header[12], header[13]]);
    if kind < 0x0600 {
        // An 802.3 length field: LLC/SNAP frames (spanning tree, CDP, ...).
        return Ok(Decoded::Other("802.3 LLC frame"));
    }
    ether_type(kind, &data[14..], cut, depth)
}

fn ether_type(kind: u16, data: &[u8], cut: bool, depth: u8) -> Result<Decoded<'_>, String> {
    match kind {
        0x0800 => ipv4(data, cut, depth),
        0x86dd => ipv6(data, cut, depth),
        // 802.1Q, 802.1ad (QinQ) and the old QinQ type: a 4-byte tag, then a type.
        0x8100 | 0x88a8 | 0x9100 => {
            let tag = data.get(..4).ok_or("a VLAN tag is cut short")?;
            if depth >= MAX_DEPTH + 4 {
                return Err("too many VLAN tags".into());
            }
            ether_type(
                u16::from_be_bytes([tag[2], tag[3]]),
                &data[4..],
                cut,
                depth + 1,
            )
        }
        // PPPoE session: 6-byte header, then a PPP protocol number.
        0x8864 => {
            let header = data.get(..8).ok_or("a PPPoE header is cut short")?;
            ppp_protocol(
                u16::from_be_bytes([header[6], header[7]]),
                &data[8..],
                cut,
                depth,
            )
        }
        0x0806 => Ok(Decoded::Other("ARP")),
        0x8035 => Ok(Decoded::Other("RARP")),
        0x88cc => Ok(Decoded::Other("LLDP")),
        0x8863 => Ok(Decoded::Other("PPPoE discovery")),
        0x888e => Ok(Decoded::Other("EAPOL")),
        0x8847 | 0x8848 => Ok(Decoded::Other("MPLS")),
        _ => Ok(Decoded::Other("a non-IP frame")),
    }
}

fn ppp(data: &[u8], cut: bool, depth: u8) -> Result<Decoded<'_>, String> {
    // HDLC-like framing: address 0xff, control 0x03, may be left out.
    let data = match data {
        [0xff, 0x03, rest @ ..] => rest,
        _ => data,
    };
    // A protocol number with an odd first byte is compressed to one byte.
    match data {
        [first, rest @ ..] if first & 1 == 1 => ppp_protocol(u16::from(*first), rest, cut, depth),
        [a, b, rest @ ..] => ppp_protocol(u16::from_be_bytes([*a, *b]), rest, cut, depth),
        _ => Err("a PPP frame is cut short".into()),
    }
}

fn ppp_protocol(protocol: u16, data: &[u8], cut: bool, depth: u8) -> Result<Decoded<'_>, String> {
    match protocol {
        0x0021 => ipv4(data, cut, depth),
        0x0057 => ipv6(data, cut, depth),
        _ => Ok(Decoded::Other("a PPP control frame")),
    }
}

fn ip_by_version(data: &[u8], cut: bool, depth: u8) -> Result<Decoded<'_>, String> {
    match data.first().map(|b| b >> 4) {
        Some(4) => ipv4(data, cut, depth),
        Some(6) => ipv6(data, cut, depth),
        Some(v) => Err(format!("IP version {v} is neither 4 nor 6")),
        None => Err("an empty IP packet".into()),
    }
}

fn ipv4(data: &[u8], cut: bool, depth: u8) -> Result<Decoded<'_>, String> {
    let fixed = data.get(..20).ok_or("shorter than an IPv4 header")?;
    if fixed[0] >> 4 != 4 {
        return Err(format!("an IPv4 packet says version {}", fixed[0] >> 4));
    }
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    if header_len < 20 {
        return Err(format!("an IPv4 header length of {header_len} bytes"));
    }
    if data.len() < header_len {
        return Err("an IPv4 header is cut short".into());
    }
    let total = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    // Total length 0: a packet larger than the field can say, captured on its
    // sender before segmentation (TSO, BIG TCP). The frame holds all of it.
    let (end, cut) = if total == 0 {
        (data.len(), cut)
    } else if total < header_len {
        return Err(format!(
            "an IPv4 total length of {total} bytes, shorter than its {header_len}-byte header"
        ));
    } else if total > data.len() {
        if !cut {
            return Err(format!(
                "an IPv4 total length of {total} bytes but only {} bytes follow",
                data.len()
            ));
        }
        (data.len(), true)
    } else {
        // Bytes after the packet are link padding.
        (total, false)
    };
    let src = IpAddr::V4(Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]));
    let protocol = fixed[9];
    let payload = &data[header_len..end];
    let flags_offset = u16::from_be_bytes([fixed[6], fixed[7]]);
    let more = flags_offset & 0x2000 != 0;
    let offset = usize::from(flags_offset & 0x1fff) * 8;
    if more || offset > 0 {
        return Ok(Decoded::Fragment(Fragment {
            key: FragmentKey {
                src,
                dst,
                id: u32::from(u16::from_be_bytes([fixed[4], fixed[5]])),
                protocol,
            },
            offset,
            more,
            payload,
            complete: !cut,
        }));
    }
    transport(src, dst, protocol, payload, !cut, depth)
}

fn ipv6(data: &[u8], cut: bool, depth: u8) -> Result<Decoded<'_>, String> {
    let fixed = data.get(..40).ok_or("shorter than an IPv6 header")?;
    if fixed[0] >> 4 != 6 {
        return Err(format!("an IPv6 packet says version {}", fixed[0] >> 4));
    }
    let declared = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
    let rest = &data[40..];
    // Payload length 0: a jumbogram or a BIG TCP packet; the frame holds it all.
    let (payload, cut) = if declared == 0 {
        (rest, cut)
    } else if declared > rest.len() {
        if !cut {
            return Err(format!(
                "an IPv6 payload length of {declared} bytes but only {} bytes follow",
                rest.len()
            ));
        }
        (rest, true)
    } else {
        (&rest[..declared], false)
    };
    let mut src = [0u8; 16];
    src.copy_from_slice(&fixed[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&fixed[24..40]);
    let (src, dst) = (
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
    );
    let mut next = fixed[6];
    let mut payload = payload;
    // Extension headers, in any order; a fragment header makes this a fragment.
    for _ in 0..16 {
        match next {
            // Hop-by-hop, routing, destination options, mobility: (next, length in
            // 8-byte units beyond the first 8).
            0 | 43 | 60 | 135 => {
                let header = payload
                    .get(..2)
                    .ok_or("an IPv6 extension header is cut short")?;
                let len = (usize::from(header[1]) + 1) * 8;
                if payload.len() < len {
                    return Err("an IPv6 extension header is cut short".into());
                }
                next = header[0];
                payload = &payload[len..];
            }
            // Authentication header: length in 4-byte units, minus 2.
            51 => {
                let header = payload.get(..2).ok_or("an IPv6 AH header is cut short")?;
                let len = (usize::from(header[1]) + 2) * 4;
                if payload.len() < len {
                    return Err("an IPv6 AH header is cut short".into());
                }
                next = header[0];
                payload = &payload[len..];
            }
            44 => {
                let header = payload
                    .get(..8)
                    .ok_or("an IPv6 fragment header is cut short")?;
                let offset_flags = u16::from_be_bytes([header[2], header[3]]);
                let offset = usize::from(offset_flags >> 3) * 8;
                let more = offset_flags & 1 != 0;
                let id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                let protocol = header[0];
                let rest = &payload[8..];
                if !more && offset == 0 {
                    // An atomic fragment: the whole datagram.
                    next = protocol;
                    payload = rest;
                    continue;
                }
                return Ok(Decoded::Fragment(Fragment {
                    key: FragmentKey {
                        src,
                        dst,
                        id,
                        protocol,
                    },
                    offset,
                    more,
                    payload: rest,
                    complete: !cut,
                }));
            }
            _ => return transport(src, dst, next, payload, !cut, depth),
        }
    }
    Err("too many IPv6 extension headers".into())
}

fn transport(
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    data: &[u8],
    complete: bool,
    depth: u8,
) -> Result<Decoded<'_>, String> {
    match protocol {
        6 => {
            let header = data.get(..20).ok_or("shorter than a TCP header")?;
            let header_len = usize::from(header[12] >> 4) * 4;
            if header_len < 20 || data.len() < header_len {
                return Err(format!(
                    "a TCP header length of {header_len} bytes in a {}-byte segment",
                    data.len()
                ));
            }
            let flags = header[13];
            Ok(Decoded::Packet(Packet {
                src: SocketAddr::new(src, u16::from_be_bytes([header[0], header[1]])),
                dst: SocketAddr::new(dst, u16::from_be_bytes([header[2], header[3]])),
                transport: Transport::Tcp {
                    seq: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
                    ack: u32::from_be_bytes([header[8], header[9], header[10], header[11]]),
                    flags: SegmentFlags {
                        fin: flags & 0x01 != 0,
                        syn: flags & 0x02 != 0,
                        rst: flags & 0x04 != 0,
                        psh: flags & 0x08 != 0,
                        ack: flags & 0x10 != 0,
                    },
                    payload: &data[header_len..],
                },
                complete,
            }))
        }
        17 => {
            let header = data.get(..8).ok_or("shorter than a UDP header")?;
            let src_port = u16::from_be_bytes([header[0], header[1]]);
            let dst_port = u16::from_be_bytes([header[2], header[3]]);
            let declared = usize::from(u16::from_be_bytes([header[4], header[5]]));
            // Length 0 is a jumbogram (or GSO on the sender): the IP length rules.
            let payload = if declared == 0 {
                &data[8..]
            } else if declared < 8 {
                return Err(format!("a UDP length of {declared} bytes"));
            } else if declared > data.len() {
                if complete {
                    return Err(format!(
                        "a UDP length of {declared} bytes but only {} bytes follow",
                        data.len()
                    ));
                }
                &data[8..]
            } else {
                &data[8..declared]
            };
            if complete && depth < MAX_DEPTH {
                // A tunnel whose inner packet decodes stands for that packet.
                let inner = match dst_port {
                    4789 => vxlan(payload, depth),
                    6081 => geneve(payload, depth),
                    _ => None,
                };
                if let Some(inner) = inner {
                    return Ok(inner);
                }
            }
            Ok(Decoded::Packet(Packet {
                src: SocketAddr::new(src, src_port),
                dst: SocketAddr::new(dst, dst_port),
                transport: Transport::Udp { payload },
                complete,
            }))
        }
        4 | 41 if depth < MAX_DEPTH => {
            if protocol == 4 {
                ipv4(data, !complete, depth + 1)
            } else {
                ipv6(data, !complete, depth + 1)
            }
        }
        47 if depth < MAX_DEPTH => gre(data, !complete, depth + 1),
        1 => Ok(Decoded::Other("ICMP")),
        58 => Ok(Decoded::Other("ICMPv6")),
        2 => Ok(Decoded::Other("IGMP")),
        50 => Ok(Decoded::Other("ESP (encrypted)")),
        59 => Ok(Decoded::Other("IPv6 with no next header")),
        89 => Ok(Decoded::Other("OSPF")),
        112 => Ok(Decoded::Other("VRRP")),
        132 => Ok(Decoded::Other("SCTP")),
        _ => Ok(Decoded::Other("an IP protocol other than TCP or UDP")),
    }
}

fn gre(data: &[u8], cut: bool, depth: u8) -> Result<Decoded<'_>, String> {
    let header = data.get(..4).ok_or("a GRE header is cut short")?;
    let flags = u16::from_be_bytes([header[0], header[1]]);
    if flags & 0x0007 != 0 {
        // Version 1 is PPTP's enhanced GRE, which carries PPP.
        let mut len = 8;
        if flags & 0x1000 != 0 {
            len += 4;
        }
        if flags & 0x0080 != 0 {
            len += 4;
        }
        let rest = data.get(len..).ok_or("a GRE header is cut short")?;
        if u16::from_be_bytes([header[2], header[3]]) == 0x880b && !rest.is_empty() {
            return ppp(rest, cut, depth);
        }
        return Ok(Decoded::Other("GRE"));
    }
    let mut len = 4;
    for bit in [0x8000, 0x2000, 0x1000] {
        if flags & bit != 0 {
            len += 4;
        }
    }
    // The checksum and routing-present bits share one 4-byte field.
    if flags & 0x8000 == 0 && flags & 0x4000 != 0 {
        len += 4;
    }
    let rest = data.get(len..).ok_or("a GRE header is cut short")?;
    match u16::from_be_bytes([header[2], header[3]]) {
        0x6558 => ethernet(rest, cut, depth),
        0x0800 => ipv4(rest, cut, depth),
        0x86dd => ipv6(rest, cut, depth),
        _ => Ok(Decoded::Other("GRE")),
    }
}

/// VXLAN: 8 bytes (flags with the I bit, VNI), then an Ethernet frame.
fn vxlan(data: &[u8], depth: u8) -> Option<Decoded<'_>> {
    let header = data.get(..8)?;
    if header[0] & 0x08 == 0 {
        return None;
    }
    inner_packet(ethernet(&data[8..], false, depth + 1))
}

/// GENEVE: 8 bytes plus options (length in 4-byte units), protocol type inside.
fn geneve(data: &[u8], depth: u8) -> Option<Decoded<'_>> {
    let header = data.get(..8)?;
    if header[0] >> 6 != 0 {
        return None;
    }
    let len = 8 + usize::from(header[0] & 0x3f) * 4;
    let rest = data.get(len..)?;
    let inner = match u16::from_be_bytes([header[2], header[3]]) {
        0x6558 => ethernet(rest, false, depth + 1),
        0x0800 => ipv4(rest, false, depth + 1),
        0x86dd => ipv6(rest, false, depth + 1),
        _ => return None,
    };
    inner_packet(inner)
}

/// A tunnel's inner packet stands for the outer one only if it decodes to
/// something: otherwise the outer UDP datagram is just a datagram on that port.
fn inner_packet(inner: Result<Decoded<'_>, String>) -> Option<Decoded<'_>> {
    match inner {
        Ok(Decoded::Other(_)) | Err(_) => None,
        Ok(decoded) => Some(decoded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(link: LinkType, data: &[u8]) -> FrameRef<'_> {
        FrameRef {
            number: 1,
            timestamp: Duration::ZERO,
            link,
            data,
            original_len: data.len() as u32,
        }
    }

    fn ipv4_udp(total_len: u16, flags_offset: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 7, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2,
        ];
        p[2..4].copy_from_slice(&total_len.to_be_bytes());
        p[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn tso_total_length_zero_takes_the_frame() {
        let mut udp = vec![0x30, 0x39, 0, 53, 0, 0, 0, 0];
        udp.extend_from_slice(&[7u8; 70_000]);
        let packet = ipv4_udp(0, 0, &udp);
        let Decoded::Packet(p) = decode(&frame(LinkType::RawIp, &packet)).unwrap() else {
            panic!("not a packet")
        };
        let Transport::Udp { payload } = p.transport else {
            panic!("not UDP")
        };
        assert_eq!(payload.len(), 70_000);
    }

    #[test]
    fn fragments_and_vlan_tags() {
        let packet = ipv4_udp(28, 0x2000, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut ethernet = vec![0u8; 12];
        ethernet.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        ethernet.extend_from_slice(&packet);
        let Decoded::Fragment(f) = decode(&frame(LinkType::Ethernet, &ethernet)).unwrap() else {
            panic!("not a fragment")
        };
        assert!(f.more);
        assert_eq!(f.offset, 0);
        assert_eq!(f.key.id, 7);
        assert_eq!(f.payload.len(), 8);
    }

    #[test]
    fn a_long_claim_is_an_error_unless_the_frame_was_cut() {
        let packet = ipv4_udp(200, 0, &[0, 1, 0, 2, 0, 50, 0, 0]);
        assert!(decode(&frame(LinkType::RawIp, &packet))
            .unwrap_err()
            .contains("total length of 200"));
        let mut cut = frame(LinkType::RawIp, &packet);
        cut.original_len = 200;
        let Decoded::Packet(p) = decode(&cut).unwrap() else {
            panic!("not a packet")
        };
        assert!(!p.complete);
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            for link in [
                LinkType::Ethernet,
                LinkType::RawIp,
                LinkType::LinuxSll,
                LinkType::LinuxSll2,
                LinkType::Null,
                LinkType::Ppp,
                LinkType::PppWithDir,
            ] {
                let _ = decode(&frame(link, &bytes));
            }
        }
    }
}
