//! Conversations from packets: each TCP stream reassembled by sequence number
//! (retransmissions and overlaps trimmed, out-of-order segments held until the gap
//! before them fills), each UDP flow as its datagrams.
//!
//! The result is, per connection or flow, the order in which bytes *became
//! available* to the other side: `Data` from the client, `Data` from the server, a
//! FIN, a reset. That order is what a replay script follows.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use super::frame::normalize;
use super::read::{Decoded, SegmentFlags, Transport};

/// Transport of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowProto {
    Tcp,
    Udp,
}

/// Something one side of a flow did, in the order the other side could see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Bytes (TCP: a run of the stream; UDP: one datagram).
    Data { from_client: bool, bytes: Vec<u8> },
    /// An orderly close of that side's sending half.
    Fin { from_client: bool },
    /// A reset: the connection ends here.
    Reset { from_client: bool },
}

/// One TCP connection or UDP flow.
#[derive(Debug, Clone)]
pub struct Flow {
    pub proto: FlowProto,
    /// The side that opened it (sent the SYN, or the first datagram).
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub items: Vec<Item>,
    pub first_seen: Duration,
    pub last_seen: Duration,
    /// A connection attempt answered by a reset instead of a SYN-ACK.
    pub refused: bool,
}

/// Half of a TCP connection: the stream one side sends.
#[derive(Debug, Default)]
struct Half {
    /// Sequence number of the stream's first byte (the SYN's plus one).
    base: Option<u32>,
    /// Offset of the next byte expected.
    next: u64,
    /// Segments that arrived ahead of `next`, by offset.
    pending: BTreeMap<u64, Vec<u8>>,
    /// Offset of the FIN, once seen.
    fin_at: Option<u64>,
    fin_done: bool,
}

impl Half {
    /// Converts a sequence number to a stream offset near `next` (so streams longer
    /// than 4 GiB and sequence numbers that wrap both work). Negative means the
    /// segment starts before the stream.
    fn offset(&self, base: u32, seq: u32) -> i128 {
        let relative = seq.wrapping_sub(base);
        let near = self.next as u32;
        let delta = relative.wrapping_sub(near) as i32;
        i128::from(self.next) + i128::from(delta)
    }
}

#[derive(Debug)]
struct TcpState {
    flow: Flow,
    halves: [Half; 2],
    client_isn: Option<u32>,
    syn_ack_seen: bool,
    reset: bool,
}

/// Collects packets into flows.
#[derive(Debug, Default)]
pub struct Reassembler {
    tcp: Vec<TcpState>,
    udp: Vec<Flow>,
    tcp_index: HashMap<(SocketAddr, SocketAddr), usize>,
    udp_index: HashMap<(SocketAddr, SocketAddr), usize>,
    /// Frames that were neither TCP nor UDP.
    pub skipped: u64,
}

fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one decoded packet.
    pub fn push(&mut self, at: Duration, packet: &Decoded<'_>) {
        let (src, dst) = (normalize(packet.src), normalize(packet.dst));
        match packet.transport {
            Transport::Udp { payload } => self.udp(at, src, dst, payload),
            Transport::Tcp {
                seq,
                flags,
                payload,
                ..
            } => self.tcp(at, src, dst, seq, flags, payload),
        }
    }

    fn udp(&mut self, at: Duration, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let index = *self.udp_index.entry(key(src, dst)).or_insert_with(|| {
            self.udp.push(Flow {
                proto: FlowProto::Udp,
                client: src,
                server: dst,
                items: Vec::new(),
                first_seen: at,
                last_seen: at,
                refused: false,
            });
            self.udp.len() - 1
        });
        let flow = &mut self.udp[index];
        flow.last_seen = at;
        flow.items.push(Item::Data {
            from_client: src == flow.client,
            bytes: payload.to_vec(),
        });
    }

    fn tcp(
        &mut self,
        at: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        flags: SegmentFlags,
        payload: &[u8],
    ) {
        let opening = flags.syn && !flags.ack;
        let existing = self.tcp_index.get(&key(src, dst)).copied();
        // A new SYN on a 4-tuple that already carried a different connection starts
        // a new one (ports get reused).
        let reuse = existing.is_some_and(|i| {
            let state = &self.tcp[i];
            opening && state.client_isn.is_some_and(|isn| isn != seq)
        });
        let index = match existing {
            Some(i) if !reuse => i,
            _ => {
                // The SYN's sender is the client; without a SYN, guess that the
                // listening side has the lower port.
                let (client, server) = if flags.syn {
                    if flags.ack {
                        (dst, src)
                    } else {
                        (src, dst)
                    }
                } else if src.port() > dst.port() {
                    (src, dst)
                } else {
                    (dst, src)
                };
                self.tcp.push(TcpState {
                    flow: Flow {
                        proto: FlowProto::Tcp,
                        client,
                        server,
                        items: Vec::new(),
                        first_seen: at,
                        last_seen: at,
                        refused: false,
                    },
                    halves: [Half::default(), Half::default()],
                    client_isn: None,
                    syn_ack_seen: false,
                    reset: false,
                });
                let index = self.tcp.len() - 1;
                self.tcp_index.insert(key(src, dst), index);
                index
            }
        };
        let state = &mut self.tcp[index];
        state.flow.last_seen = at;
        if state.reset {
            return;
        }
        let from_client = src == state.flow.client;
        let half = &mut state.halves[usize::from(!from_client)];
        if flags.syn {
            if opening {
                state.client_isn.get_or_insert(seq);
            } else {
                state.syn_ack_seen = true;
            }
            half.base.get_or_insert(seq.wrapping_add(1));
            return;
        }
        if flags.rst {
            if !state.syn_ack_seen && state.client_isn.is_some() && !from_client {
                state.flow.refused = true;
            }
            state.reset = true;
            state.flow.items.push(Item::Reset { from_client });
            return;
        }
        let base = *half.base.get_or_insert(seq);
        let mut start = half.offset(base, seq);
        let mut payload = payload;
        if start < 0 {
            // Bytes from before the stream began (a keep-alive probe, say).
            let skip = usize::try_from(-start)
                .unwrap_or(usize::MAX)
                .min(payload.len());
            payload = &payload[skip..];
            start = 0;
        }
        let start = u64::try_from(start).unwrap_or(0);
        if flags.fin {
            half.fin_at.get_or_insert(start + payload.len() as u64);
        }
        if !payload.is_empty() && start + payload.len() as u64 > half.next {
            half.pending
                .entry(start)
                .and_modify(|held| {
                    if held.len() < payload.len() {
                        *held = payload.to_vec();
                    }
                })
                .or_insert_with(|| payload.to_vec());
        }
        // Move every segment that now touches the stream's end into it.
        let mut delivered = Vec::new();
        while let Some(entry) = half.pending.first_entry() {
            let offset = *entry.key();
            if offset > half.next {
                break;
            }
            let bytes = entry.remove();
            let end = offset + bytes.len() as u64;
            if end > half.next {
                let skip = usize::try_from(half.next - offset).unwrap_or(0);
                delivered.extend_from_slice(&bytes[skip..]);
                half.next = end;
            }
        }
        let fin_now = !half.fin_done && half.fin_at == Some(half.next);
        if fin_now {
            half.fin_done = true;
        }
        if !delivered.is_empty() {
            match state.flow.items.last_mut() {
                Some(Item::Data {
                    from_client: same,
                    bytes,
                }) if *same == from_client => bytes.extend_from_slice(&delivered),
                _ => state.flow.items.push(Item::Data {
                    from_client,
                    bytes: delivered,
                }),
            }
        }
        if fin_now {
            state.flow.items.push(Item::Fin { from_client });
        }
    }

    /// The flows, TCP first, each in the order it started. Fails if a TCP stream
    /// has a gap (packets missing from the capture).
    pub fn finish(self) -> Result<Vec<Flow>, String> {
        let mut flows = Vec::new();
        for state in self.tcp {
            for (number, half) in state.halves.iter().enumerate() {
                if let Some((&offset, _)) = half.pending.first_key_value() {
                    let (from, to) = if number == 0 {
                        (state.flow.client, state.flow.server)
                    } else {
                        (state.flow.server, state.flow.client)
                    };
                    return Err(format!(
                        "the TCP stream {from} -> {to} has a gap: bytes {} to {} never appear \
                         (packets are missing from the capture), so it cannot be replayed",
                        half.next, offset
                    ));
                }
            }
            flows.push(state.flow);
        }
        flows.extend(self.udp);
        Ok(flows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn segment(
        r: &mut Reassembler,
        from: u16,
        to: u16,
        seq: u32,
        flags: SegmentFlags,
        payload: &[u8],
    ) {
        let packet = Decoded {
            src: addr(from),
            dst: addr(to),
            transport: Transport::Tcp {
                seq,
                ack: 0,
                flags,
                payload,
            },
        };
        r.push(Duration::ZERO, &packet);
    }

    const SYN: SegmentFlags = SegmentFlags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
    };
    const SYN_ACK: SegmentFlags = SegmentFlags {
        syn: true,
        ack: true,
        fin: false,
        rst: false,
    };
    const ACK: SegmentFlags = SegmentFlags {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
    };
    const FIN: SegmentFlags = SegmentFlags {
        syn: false,
        ack: true,
        fin: true,
        rst: false,
    };

    #[test]
    fn out_of_order_overlapping_and_wrapping_segments_reassemble() {
        let mut r = Reassembler::new();
        let isn = u32::MAX - 3;
        segment(&mut r, 5000, 80, isn, SYN, b"");
        segment(&mut r, 80, 5000, 77, SYN_ACK, b"");
        let base = isn.wrapping_add(1);
        // "abcdefghij" sent as: "fghij" first (out of order), then "abc", then a
        // retransmission "bcde" that overlaps, then FIN.
        segment(&mut r, 5000, 80, base.wrapping_add(5), ACK, b"fghij");
        segment(&mut r, 5000, 80, base, ACK, b"abc");
        segment(&mut r, 5000, 80, base.wrapping_add(1), ACK, b"bcde");
        segment(&mut r, 5000, 80, base.wrapping_add(1), ACK, b"bcde");
        segment(&mut r, 80, 5000, 78, ACK, b"ok");
        segment(&mut r, 5000, 80, base.wrapping_add(10), FIN, b"");
        let flows = r.finish().unwrap();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].client, addr(5000));
        assert_eq!(
            flows[0].items,
            vec![
                Item::Data {
                    from_client: true,
                    bytes: b"abcdefghij".to_vec()
                },
                Item::Data {
                    from_client: false,
                    bytes: b"ok".to_vec()
                },
                Item::Fin { from_client: true },
            ]
        );
    }

    #[test]
    fn a_gap_is_an_error() {
        let mut r = Reassembler::new();
        segment(&mut r, 5000, 80, 1, SYN, b"");
        segment(&mut r, 5000, 80, 10, ACK, b"late");
        let error = r.finish().unwrap_err();
        assert!(error.contains("gap"), "{error}");
    }
}
