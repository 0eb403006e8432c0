//! Synthesis checked by reading its output back: hand-made event logs covering the
//! cases a run can produce (both ends or one end recorded, events recorded out of
//! causal order, resets, refusals, UDP, wrapping sequence numbers, snap lengths).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::decode::{decode, Decoded, Transport};
use super::import::{Content as Item, Conversation};
use super::read::read_frames_from;
use super::reassemble::FlowProto;
use super::*;
use crate::event::{Event, EventKind, Payload, ShutdownHow};

fn at(micros: u64) -> Duration {
    Duration::from_micros(micros)
}

struct Log {
    events: Vec<Event>,
    clock: u64,
}

impl Log {
    fn new() -> Self {
        Self {
            events: Vec::new(),
            clock: 0,
        }
    }

    fn push(&mut self, actor: &str, kind: EventKind) -> &mut Self {
        self.clock += 10;
        self.events.push(Event {
            at: at(self.clock),
            actor: Arc::from(actor),
            kind,
        });
        self
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

const CLIENT: u16 = 40_001;
const SERVER: u16 = 7_000;

fn connect(conn: u64) -> EventKind {
    EventKind::Connect {
        conn,
        local: addr(CLIENT),
        peer: addr(SERVER),
    }
}

fn accept(conn: u64) -> EventKind {
    EventKind::Accept {
        conn,
        local: addr(SERVER),
        peer: addr(CLIENT),
    }
}

fn write(conn: u64, data: &'static [u8]) -> EventKind {
    EventKind::Write {
        conn,
        data: Payload::with_bytes(Bytes::from_static(data)),
    }
}

fn read(conn: u64, data: &'static [u8]) -> EventKind {
    EventKind::Read {
        conn,
        data: Payload::with_bytes(Bytes::from_static(data)),
    }
}

struct Synthesized {
    bytes: Vec<u8>,
    stats: SynthStats,
}

fn synthesize(events: &[Event], settings: &TraceSettings) -> Synthesized {
    let (bytes, stats) = synthesize_into(
        Vec::new(),
        events,
        "test",
        "unit test",
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        settings,
    )
    .expect("synthesis writes to memory");
    Synthesized { bytes, stats }
}

/// Reads a trace from memory back into flows, checking timestamps never go back.
fn flows(trace: &[u8]) -> Vec<Conversation> {
    let mut last = Duration::ZERO;
    read_frames_from(trace, Path::new("memory"), |frame| {
        assert!(frame.timestamp >= last, "timestamps went backwards");
        last = frame.timestamp;
        assert!(
            matches!(decode(&frame), Ok(Decoded::Packet(_))),
            "packet {} is not a whole TCP or UDP packet",
            frame.number
        );
        Ok(())
    })
    .expect("the trace reads back");
    let conversations = import::conversations(trace, Path::new("memory")).expect("it reads");
    for conversation in &conversations {
        assert_eq!(
            conversation.gap,
            None,
            "a gap in {}",
            conversation.describe()
        );
    }
    conversations
}

fn data(from_client: bool, bytes: &[u8]) -> Item {
    Item::Data {
        from_client,
        bytes: bytes.to_vec(),
    }
}

#[test]
fn both_ends_recorded_out_of_order_still_shows_the_question_first() {
    let mut log = Log::new();
    log.push("client1", connect(1))
        .push("srv", accept(2))
        // The server's read and answer are recorded before the client's write.
        .push("srv", read(2, b"ping"))
        .push("srv", write(2, b"pong"))
        .push("client1", write(1, b"ping"))
        .push("client1", read(1, b"pong"))
        .push("client1", EventKind::PeerEof { conn: 1 })
        .push(
            "client1",
            EventKind::Close {
                conn: 1,
                reset: false,
            },
        )
        // The server closed first, but its Close was recorded after the client's EOF.
        .push(
            "srv",
            EventKind::Close {
                conn: 2,
                reset: false,
            },
        )
        .push("srv", EventKind::PeerEof { conn: 2 });
    let out = synthesize(&log.events, &TraceSettings::default());
    let flows = flows(&out.bytes);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].client, addr(CLIENT));
    assert_eq!(
        flows[0].items,
        vec![
            data(true, b"ping"),
            data(false, b"pong"),
            Item::Fin { from_client: false },
            Item::Fin { from_client: true },
        ]
    );
    // 3 handshake + 2 x (data + ack) + 2 x (fin + ack).
    assert_eq!(out.stats.packets, 11);
}

#[test]
fn one_recorded_end_gives_both_directions() {
    let mut log = Log::new();
    log.push("client1", connect(1))
        .push("client1", write(1, b"GET"))
        .push("client1", read(1, b"20"))
        .push("client1", read(1, b"0 OK"))
        .push("client1", EventKind::PeerEof { conn: 1 })
        .push(
            "client1",
            EventKind::Shutdown {
                conn: 1,
                how: ShutdownHow::Both,
            },
        )
        .push(
            "client1",
            EventKind::Close {
                conn: 1,
                reset: false,
            },
        );
    let out = synthesize(&log.events, &TraceSettings::default());
    let flows = flows(&out.bytes);
    assert_eq!(
        flows[0].items,
        vec![
            data(true, b"GET"),
            data(false, b"200 OK"),
            Item::Fin { from_client: false },
            Item::Fin { from_client: true },
        ]
    );
}

#[test]
fn sequence_numbers_wrap() {
    let mut log = Log::new();
    log.push("client1", connect(1)).push("srv", accept(2));
    let chunk: &'static [u8] = &[0xab; 100];
    for _ in 0..5 {
        log.push("client1", write(1, chunk))
            .push("srv", read(2, chunk));
    }
    log.push("srv", write(2, b"done"))
        .push("client1", read(1, b"done"))
        .push(
            "client1",
            EventKind::Close {
                conn: 1,
                reset: false,
            },
        )
        .push("srv", EventKind::PeerEof { conn: 2 })
        .push(
            "srv",
            EventKind::Close {
                conn: 2,
                reset: false,
            },
        );
    let settings = TraceSettings {
        fixed_isn: Some(u32::MAX - 150),
        ..Default::default()
    };
    let out = synthesize(&log.events, &settings);
    // Both sides' numbers cross 2^32: the client's after 150 bytes, the server's
    // (ISN 1000 lower) never, so look at the raw numbers too.
    let mut seqs = Vec::new();
    read_frames_from(&out.bytes[..], Path::new("memory"), |frame| {
        if let Decoded::Packet(packet) = decode(&frame).unwrap() {
            if let Transport::Tcp { seq, payload, .. } = packet.transport {
                if packet.src == addr(CLIENT) && !payload.is_empty() {
                    seqs.push(seq);
                }
            }
        }
        Ok(())
    })
    .unwrap();
    assert!(seqs.iter().any(|&s| s < 1000), "never wrapped: {seqs:?}");
    let flows = flows(&out.bytes);
    assert_eq!(flows[0].items[0], data(true, &[0xab; 500]));
    assert_eq!(flows[0].items[1], data(false, b"done"));
}

#[test]
fn linger_zero_and_unread_data_reset() {
    let mut log = Log::new();
    log.push("client1", connect(1))
        .push("srv", accept(2))
        .push("client1", write(1, b"hi"))
        .push("srv", read(2, b"hi"))
        .push(
            "srv",
            EventKind::Close {
                conn: 2,
                reset: true,
            },
        )
        .push("client1", EventKind::PeerReset { conn: 1 });
    let flows_a = flows(&synthesize(&log.events, &TraceSettings::default()).bytes);
    assert_eq!(
        flows_a[0].items,
        vec![data(true, b"hi"), Item::Reset { from_client: false }]
    );

    // The server closes without reading what arrived: Linux answers with RST.
    let mut log = Log::new();
    log.push("client1", connect(1))
        .push("srv", accept(2))
        .push("client1", write(1, b"unread"))
        .push(
            "srv",
            EventKind::Close {
                conn: 2,
                reset: false,
            },
        );
    let flows_b = flows(&synthesize(&log.events, &TraceSettings::default()).bytes);
    assert_eq!(
        flows_b[0].items,
        vec![data(true, b"unread"), Item::Reset { from_client: false }]
    );
}

#[test]
fn a_refused_connect_is_syn_then_rst() {
    let mut log = Log::new();
    log.push(
        "client1",
        EventKind::ConnectFailed {
            peer: addr(SERVER),
            error: "Connection refused (os error 111)".into(),
        },
    );
    let out = synthesize(&log.events, &TraceSettings::default());
    assert_eq!(out.stats.packets, 2);
    let flows = flows(&out.bytes);
    assert!(flows[0].refused);
    assert_eq!(flows[0].server, addr(SERVER));
}

#[test]
fn udp_datagrams_appear_once_in_causal_order() {
    let (c, s) = (addr(50_000), addr(5_353));
    let mut log = Log::new();
    log.push("srv", EventKind::UdpBound { conn: 1, local: s })
        .push("client1", EventKind::UdpBound { conn: 2, local: c })
        // The server's receipt is recorded before the client's send.
        .push(
            "srv",
            EventKind::DatagramReceived {
                conn: 1,
                from: c,
                to: s,
                data: Payload::with_bytes(Bytes::from_static(b"one")),
            },
        )
        .push(
            "srv",
            EventKind::DatagramSent {
                conn: 1,
                from: s,
                to: c,
                data: Payload::with_bytes(Bytes::from_static(b"ONE")),
            },
        )
        .push(
            "client1",
            EventKind::DatagramSent {
                conn: 2,
                from: c,
                to: s,
                data: Payload::with_bytes(Bytes::from_static(b"one")),
            },
        )
        .push(
            "client1",
            EventKind::DatagramReceived {
                conn: 2,
                from: s,
                to: c,
                data: Payload::with_bytes(Bytes::from_static(b"ONE")),
            },
        )
        // A datagram from a peer nobody recorded.
        .push(
            "srv",
            EventKind::DatagramReceived {
                conn: 1,
                from: addr(50_001),
                to: s,
                data: Payload::with_bytes(Bytes::from_static(b"stranger")),
            },
        );
    let out = synthesize(&log.events, &TraceSettings::default());
    assert_eq!(out.stats.udp_datagrams, 3);
    let flows = flows(&out.bytes);
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].proto, FlowProto::Udp);
    assert_eq!(flows[0].client, c);
    assert_eq!(
        flows[0].items,
        vec![data(true, b"one"), data(false, b"ONE")]
    );
    assert_eq!(flows[1].items, vec![data(true, b"stranger")]);
}

#[test]
fn large_writes_are_cut_at_the_mss_and_the_snap_length_keeps_lengths() {
    let big: &'static [u8] = Box::leak(vec![7u8; 200_000].into_boxed_slice());
    let mut log = Log::new();
    log.push("client1", connect(1))
        .push("srv", accept(2))
        .push("client1", write(1, big))
        .push("srv", read(2, big));
    let whole = synthesize(&log.events, &TraceSettings::default());
    let mut sizes = Vec::new();
    read_frames_from(&whole.bytes[..], Path::new("memory"), |frame| {
        if let Decoded::Packet(packet) = decode(&frame).unwrap() {
            if let Transport::Tcp { payload, .. } = packet.transport {
                if !payload.is_empty() {
                    sizes.push(payload.len());
                }
            }
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(sizes, vec![65_483, 65_483, 65_483, 3_551]);

    let cut = synthesize(
        &log.events,
        &TraceSettings {
            snaplen: Some(128),
            ..Default::default()
        },
    );
    let mut lengths = Vec::new();
    read_frames_from(&cut.bytes[..], Path::new("memory"), |frame| {
        assert!(frame.data.len() <= 128);
        lengths.push(frame.original_len);
        Ok(())
    })
    .unwrap();
    assert!(lengths.contains(&(65_483 + 54)));
    assert!(cut.bytes.len() < 10_000);
}

#[test]
fn classic_pcap_reads_back_too() {
    let mut log = Log::new();
    log.push("client1", connect(1))
        .push("client1", write(1, b"x"));
    let out = synthesize(
        &log.events,
        &TraceSettings {
            format: TraceFormat::Pcap,
            ..Default::default()
        },
    );
    assert_eq!(&out.bytes[..4], &0xa1b2_3c4du32.to_ne_bytes());
    let flows = flows(&out.bytes);
    assert_eq!(flows[0].items, vec![data(true, b"x")]);
}

#[test]
fn ipv6_connections() {
    let (c, s): (SocketAddr, SocketAddr) =
        ("[::1]:40000".parse().unwrap(), "[::1]:7".parse().unwrap());
    let mut log = Log::new();
    log.push(
        "client1",
        EventKind::Connect {
            conn: 1,
            local: c,
            peer: s,
        },
    )
    .push(
        "srv",
        EventKind::Accept {
            conn: 2,
            local: s,
            peer: c,
        },
    )
    .push("client1", write(1, b"six"))
    .push("srv", read(2, b"six"));
    let flows = flows(&synthesize(&log.events, &TraceSettings::default()).bytes);
    assert_eq!(flows[0].client, c);
    assert_eq!(flows[0].items, vec![data(true, b"six")]);
}

#[test]
fn a_half_open_connection_still_makes_a_well_formed_file() {
    let mut log = Log::new();
    log.push("client1", connect(1))
        .push("client1", write(1, b"no answer"));
    let out = synthesize(&log.events, &TraceSettings::default());
    let flows = flows(&out.bytes);
    assert_eq!(flows[0].items, vec![data(true, b"no answer")]);
}

/// Rewrites an Ethernet trace's frames for another link type, as tcpdump on
/// `any` (Linux cooked capture) or a raw-IP capture would have recorded them.
fn relink(ethernet_trace: &[u8], link: pcap_file::DataLink) -> Vec<u8> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let header = PcapHeader {
        datalink: link,
        snaplen: 262_144,
        ..Default::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
    read_frames_from(ethernet_trace, Path::new("memory"), |frame| {
        let ether_type = [frame.data[12], frame.data[13]];
        let ip = &frame.data[14..];
        let mut data = Vec::new();
        match link {
            pcap_file::DataLink::LINUX_SLL => {
                // packet type, ARPHRD_LOOPBACK, address length, address, protocol
                data.extend_from_slice(&[0, 0, 0x03, 0x04, 0, 6]);
                data.extend_from_slice(&[0; 8]);
                data.extend_from_slice(&ether_type);
            }
            pcap_file::DataLink::LINUX_SLL2 => {
                data.extend_from_slice(&ether_type);
                data.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6]);
                data.extend_from_slice(&[0; 8]);
            }
            _ => {}
        }
        data.extend_from_slice(ip);
        let packet = PcapPacket::new(frame.timestamp, data.len() as u32, &data);
        writer.write_packet(&packet).unwrap();
        Ok(())
    })
    .unwrap();
    writer.into_writer()
}

#[test]
fn cooked_and_raw_ip_captures_read_like_ethernet_ones() {
    let mut log = Log::new();
    log.push("client1", connect(1))
        .push("srv", accept(2))
        .push("client1", write(1, b"over any link"))
        .push("srv", read(2, b"over any link"))
        .push("srv", write(2, b"ok"))
        .push("client1", read(1, b"ok"))
        .push(
            "client1",
            EventKind::Close {
                conn: 1,
                reset: false,
            },
        );
    let ethernet = synthesize(
        &log.events,
        &TraceSettings {
            format: TraceFormat::Pcap,
            ..Default::default()
        },
    );
    let expected = flows(&ethernet.bytes);
    for link in [
        pcap_file::DataLink::LINUX_SLL,
        pcap_file::DataLink::LINUX_SLL2,
        pcap_file::DataLink::RAW,
    ] {
        let relinked = relink(&ethernet.bytes, link);
        let got = flows(&relinked);
        assert_eq!(got[0].items, expected[0].items, "{link:?}");
        let imported = import::import_from(&relinked[..], Path::new("x.pcap"), &Default::default())
            .unwrap_or_else(|e| panic!("{link:?}: {e}"));
        assert!(
            imported.toml.contains("\"over any link\""),
            "{}",
            imported.toml
        );
    }
}
