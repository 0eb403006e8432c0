//! Conversations from packets: IP fragments put back together, each TCP stream
//! reassembled by sequence number (retransmissions and overlaps trimmed,
//! out-of-order segments held until the gap before them fills), each UDP flow as
//! its datagrams.
//!
//! The result is, per connection or flow, the order in which bytes *became
//! available* to the other side: data from the client, data from the server, a
//! FIN, a reset, each with the time of the packet that made it available. Payload
//! bytes are not kept in the flows: they are appended to a [`Store`] (a file, for a
//! real import) and an item names its range there, so memory does not grow with
//! the capture.
//!
//! What a capture proves and nothing more: data on a SYN (TCP Fast Open) is data;
//! a keep-alive or window probe before the first byte seen is not a gap; a capture
//! that starts mid-stream starts the stream where its first data is; a stream with
//! bytes missing is reported ([`Flow::gap`]), not papered over.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::decode::{Fragment, FragmentKey, Packet, SegmentFlags, Transport};
use super::frame::normalize;

/// Out-of-order TCP bytes held per connection before it is given up as having a
/// gap: a real capture reorders within a window, not across megabytes.
pub const MAX_PENDING_PER_FLOW: usize = 16 << 20;

/// Bytes of IP fragments held at once, over all datagrams being reassembled.
pub const MAX_FRAGMENT_BYTES: usize = 64 << 20;

/// The largest IP datagram payload fragments can rebuild.
const MAX_DATAGRAM: usize = 65_535;

/// Where payload bytes go while a capture is read.
pub enum Store {
    /// In memory, up to `limit` bytes (tests, fuzzing, scenarios printed inline).
    Memory { bytes: Vec<u8>, limit: usize },
    /// Appended to a file.
    File {
        writer: BufWriter<File>,
        path: PathBuf,
        written: u64,
    },
}

impl Store {
    pub fn memory(limit: usize) -> Self {
        Store::Memory {
            bytes: Vec::new(),
            limit,
        }
    }

    /// A new file at `path` (replaced if it exists).
    pub fn file(path: &Path) -> io::Result<Self> {
        Ok(Store::File {
            // Read back (`read`) as well as written.
            writer: BufWriter::with_capacity(
                1 << 20,
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(path)?,
            ),
            path: path.to_owned(),
            written: 0,
        })
    }

    /// Bytes stored so far.
    pub fn len(&self) -> u64 {
        match self {
            Store::Memory { bytes, .. } => bytes.len() as u64,
            Store::File { written, .. } => *written,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `data`; returns its offset.
    pub fn append(&mut self, data: &[u8]) -> io::Result<u64> {
        match self {
            Store::Memory { bytes, limit } => {
                if bytes.len() + data.len() > *limit {
                    return Err(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!("more than {} MiB of payload", *limit >> 20),
                    ));
                }
                let at = bytes.len() as u64;
                bytes.extend_from_slice(data);
                Ok(at)
            }
            Store::File {
                writer, written, ..
            } => {
                let at = *written;
                writer.write_all(data)?;
                *written += data.len() as u64;
                Ok(at)
            }
        }
    }

    /// Makes everything appended readable with [`Self::read`].
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Store::Memory { .. } => Ok(()),
            Store::File { writer, .. } => writer.flush(),
        }
    }

    /// Reads `len` bytes at `offset` into `buf` (after [`Self::flush`]).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Store::Memory { bytes, .. } => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let source = bytes
                    .get(start..start.saturating_add(buf.len()))
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(source);
                Ok(())
            }
            Store::File { writer, .. } => writer.get_ref().read_exact_at(buf, offset),
        }
    }

    /// The file behind the store, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Store::Memory { .. } => None,
            Store::File { path, .. } => Some(path),
        }
    }
}

/// Transport of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowProto {
    Tcp,
    Udp,
}

impl FlowProto {
    pub fn name(self) -> &'static str {
        match self {
            FlowProto::Tcp => "tcp",
            FlowProto::Udp => "udp",
        }
    }
}

/// Something one side of a flow did, in the order the other side could see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// Bytes (TCP: the new bytes of one segment; UDP: one datagram), stored at
    /// `offset` in the store.
    Data {
        from_client: bool,
        offset: u64,
        len: u64,
        at: Duration,
    },
    /// An orderly close of that side's sending half.
    Fin { from_client: bool, at: Duration },
    /// A reset: the connection ends here.
    Reset { from_client: bool, at: Duration },
}

impl Item {
    pub fn from_client(&self) -> bool {
        match *self {
            Item::Data { from_client, .. }
            | Item::Fin { from_client, .. }
            | Item::Reset { from_client, .. } => from_client,
        }
    }

    pub fn at(&self) -> Duration {
        match *self {
            Item::Data { at, .. } | Item::Fin { at, .. } | Item::Reset { at, .. } => at,
        }
    }
}

/// Bytes missing from a TCP stream: the capture lost packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from_client: bool,
    /// Stream offsets of the first missing byte and of the next byte seen.
    pub start: u64,
    pub end: u64,
}

/// One TCP connection or UDP flow.
#[derive(Debug, Clone)]
pub struct Flow {
    pub proto: FlowProto,
    /// Numbered per protocol in the order flows first appear, like tshark's
    /// `tcp.stream` and `udp.stream`.
    pub index: usize,
    /// The side that opened it (sent the SYN, or the first datagram).
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Empty for a flow that was not selected (it is still counted and listed).
    pub items: Vec<Item>,
    pub first_seen: Duration,
    pub last_seen: Duration,
    pub packets: u64,
    /// Payload bytes from the client and from the server.
    pub bytes: [u64; 2],
    /// A connection attempt answered by a reset instead of a SYN-ACK.
    pub refused: bool,
    /// A SYN that nothing answered.
    pub unanswered: bool,
    pub gap: Option<Gap>,
    /// Packets of this flow a snap length cut (their payload is not all there).
    pub cut_packets: u64,
    /// The largest UDP datagram, in bytes.
    pub largest_datagram: u64,
    /// Whether its payloads are stored and its items kept.
    pub selected: bool,
}

impl Flow {
    /// `tcp:3`: how `--conversation` and `--list` name it.
    pub fn label(&self) -> String {
        format!("{}:{}", self.proto.name(), self.index)
    }

    /// `tcp:3 (10.0.0.1:5000 -> 10.0.0.2:80)`.
    pub fn describe(&self) -> String {
        format!("{} ({} -> {})", self.label(), self.client, self.server)
    }
}

/// Half of a TCP connection: the stream one side sends.
#[derive(Debug, Default)]
struct Half {
    /// Sequence number of the stream's first byte.
    base: Option<u32>,
    /// Whether `base` comes from a SYN (else from the first data seen).
    from_syn: bool,
    /// Offset of the next byte expected.
    next: u64,
    /// Segments that arrived ahead of `next`, by offset.
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    /// Offset of the FIN, once seen.
    fin_at: Option<u64>,
    fin_done: bool,
    /// The highest acknowledgment the other side sent for this half.
    acked: Option<u32>,
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

/// An IP datagram being put back together from its fragments.
#[derive(Debug, Default)]
struct Partial {
    pieces: BTreeMap<usize, Vec<u8>>,
    /// Known once the last fragment (no "more fragments" flag) arrives.
    total: Option<usize>,
    held: usize,
    cut: bool,
}

/// Puts IP fragments back together (IPv4 and IPv6 alike), within
/// [`MAX_FRAGMENT_BYTES`].
#[derive(Debug, Default)]
pub struct Defragmenter {
    partial: HashMap<FragmentKey, Partial>,
    held: usize,
    /// Datagrams given up: over the memory bound, or inconsistent fragments.
    pub dropped: u64,
}

impl Defragmenter {
    /// Adds a fragment; returns the datagram's payload once every byte is there
    /// (`None` while pieces are missing). A cut fragment spoils its datagram,
    /// which is returned as `Err(key)` when complete so it can be counted.
    pub fn push(&mut self, fragment: &Fragment<'_>) -> Option<Result<Vec<u8>, FragmentKey>> {
        let end = fragment.offset + fragment.payload.len();
        if end > MAX_DATAGRAM || self.held + fragment.payload.len() > MAX_FRAGMENT_BYTES {
            if self.partial.remove(&fragment.key).is_some() || end > MAX_DATAGRAM {
                self.dropped += 1;
            }
            self.recount();
            return None;
        }
        let partial = self.partial.entry(fragment.key).or_default();
        if !fragment.more {
            if partial.total.is_some_and(|total| total != end) {
                // Two different ends: keep the first, as a receiver would.
                return None;
            }
            partial.total = Some(end);
        }
        partial.cut |= !fragment.complete;
        let held = partial.pieces.entry(fragment.offset).or_default();
        if held.len() < fragment.payload.len() {
            partial.held += fragment.payload.len() - held.len();
            self.held += fragment.payload.len() - held.len();
            *held = fragment.payload.to_vec();
        }
        let total = partial.total?;
        // Complete when the pieces cover 0..total without a hole.
        let mut covered = 0;
        for (&offset, bytes) in &partial.pieces {
            if offset > covered {
                return None;
            }
            covered = covered.max(offset + bytes.len());
        }
        if covered < total {
            return None;
        }
        let partial = self.partial.remove(&fragment.key)?;
        self.held -= partial.held;
        if partial.cut {
            return Some(Err(fragment.key));
        }
        let mut datagram = vec![0u8; total];
        for (offset, bytes) in partial.pieces {
            let end = (offset + bytes.len()).min(total);
            if offset < end {
                datagram[offset..end].copy_from_slice(&bytes[..end - offset]);
            }
        }
        Some(Ok(datagram))
    }

    fn recount(&mut self) {
        self.held = self.partial.values().map(|p| p.held).sum();
    }

    /// Datagrams still missing fragments at the end of the capture.
    pub fn incomplete(&self) -> usize {
        self.partial.len()
    }
}

/// Collects packets into flows.
pub struct Reassembler<'s> {
    tcp: Vec<TcpState>,
    udp: Vec<Flow>,
    tcp_index: HashMap<(SocketAddr, SocketAddr), usize>,
    udp_index: HashMap<(SocketAddr, SocketAddr), usize>,
    store: &'s mut Store,
    /// Decides, when a flow appears, whether its payloads are kept.
    select: Box<dyn Fn(&Flow) -> bool + 's>,
    error: Option<io::Error>,
}

fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl<'s> Reassembler<'s> {
    /// Keeps the payloads of every flow in `store`.
    pub fn new(store: &'s mut Store) -> Self {
        Self::selecting(store, |_| true)
    }

    /// Keeps only the flows `select` accepts (the others are still numbered and
    /// counted, for `--list` and stable indexes).
    pub fn selecting(store: &'s mut Store, select: impl Fn(&Flow) -> bool + 's) -> Self {
        Self {
            tcp: Vec::new(),
            udp: Vec::new(),
            tcp_index: HashMap::new(),
            udp_index: HashMap::new(),
            store,
            select: Box::new(select),
            error: None,
        }
    }

    /// Adds one decoded packet.
    pub fn push(&mut self, at: Duration, packet: &Packet<'_>) {
        let (src, dst) = (normalize(packet.src), normalize(packet.dst));
        match packet.transport {
            Transport::Udp { payload } => self.udp(at, src, dst, payload, packet.complete),
            Transport::Tcp {
                seq,
                ack,
                flags,
                payload,
            } => self.tcp(at, src, dst, seq, ack, flags, payload, packet.complete),
        }
    }

    fn store(&mut self, bytes: &[u8]) -> u64 {
        match self.store.append(bytes) {
            Ok(offset) => offset,
            Err(e) => {
                self.error.get_or_insert(e);
                0
            }
        }
    }

    fn new_flow(
        &self,
        proto: FlowProto,
        index: usize,
        client: SocketAddr,
        server: SocketAddr,
        at: Duration,
    ) -> Flow {
        let mut flow = Flow {
            proto,
            index,
            client,
            server,
            items: Vec::new(),
            first_seen: at,
            last_seen: at,
            packets: 0,
            bytes: [0, 0],
            refused: false,
            unanswered: false,
            gap: None,
            cut_packets: 0,
            largest_datagram: 0,
            selected: false,
        };
        flow.selected = (self.select)(&flow);
        flow
    }

    fn udp(
        &mut self,
        at: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        complete: bool,
    ) {
        let index = match self.udp_index.get(&key(src, dst)) {
            Some(&index) => index,
            None => {
                let flow = self.new_flow(FlowProto::Udp, self.udp.len(), src, dst, at);
                self.udp.push(flow);
                self.udp_index.insert(key(src, dst), self.udp.len() - 1);
                self.udp.len() - 1
            }
        };
        let flow = &mut self.udp[index];
        flow.last_seen = at;
        flow.packets += 1;
        if !complete {
            flow.cut_packets += 1;
            return;
        }
        let from_client = src == flow.client;
        flow.bytes[usize::from(!from_client)] += payload.len() as u64;
        flow.largest_datagram = flow.largest_datagram.max(payload.len() as u64);
        if !flow.selected {
            return;
        }
        let offset = self.store(payload);
        self.udp[index].items.push(Item::Data {
            from_client,
            offset,
            len: payload.len() as u64,
            at,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        at: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: SegmentFlags,
        payload: &[u8],
        complete: bool,
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
                let flow = self.new_flow(FlowProto::Tcp, self.tcp.len(), client, server, at);
                self.tcp.push(TcpState {
                    flow,
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
        state.flow.packets += 1;
        if state.reset {
            return;
        }
        let from_client = src == state.flow.client;
        let [client_half, server_half] = &mut state.halves;
        let (half, other) = if from_client {
            (client_half, server_half)
        } else {
            (server_half, client_half)
        };
        if flags.ack {
            // What the other side has acknowledged of its peer's stream.
            other.acked = Some(match other.acked {
                Some(old) if (ack.wrapping_sub(old) as i32) < 0 => old,
                _ => ack,
            });
        }
        if !complete {
            // Its bytes are not all there: leave them out, so the stream shows a
            // gap if nothing else carried them.
            state.flow.cut_packets += 1;
            return;
        }
        let mut seq = seq;
        if flags.syn {
            if opening {
                state.client_isn.get_or_insert(seq);
            } else {
                state.syn_ack_seen = true;
            }
            if !half.from_syn {
                half.base = Some(seq.wrapping_add(1));
                half.from_syn = true;
            }
            // Data on a SYN (TCP Fast Open) starts the stream.
            seq = seq.wrapping_add(1);
        }
        if flags.rst {
            if !state.syn_ack_seen && state.client_isn.is_some() && !from_client {
                state.flow.refused = true;
            }
            state.reset = true;
            if state.flow.selected {
                state.flow.items.push(Item::Reset { from_client, at });
            }
            return;
        }
        if half.base.is_none() {
            // A capture that starts mid-stream: the stream starts with the first
            // data or FIN seen, unless the other side already acknowledged it (a
            // keep-alive or a retransmission of bytes from before the capture).
            // A segment without data says nothing about where the stream starts.
            let acked_already = half.acked.is_some_and(|acked| {
                (acked.wrapping_sub(seq.wrapping_add(payload.len() as u32)) as i32) >= 0
            });
            if (payload.is_empty() && !flags.fin) || acked_already {
                return;
            }
            half.base = Some(seq);
        }
        let base = half.base.expect("set above");
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
        if !payload.is_empty()
            && start + payload.len() as u64 > half.next
            && state.flow.gap.is_none()
        {
            let held = half.pending.entry(start).or_default();
            if held.len() < payload.len() {
                half.pending_bytes += payload.len() - held.len();
                *held = payload.to_vec();
            }
            if half.pending_bytes > MAX_PENDING_PER_FLOW {
                // Megabytes after a hole: the hole is a real gap. Stop holding.
                let end = *half.pending.keys().next().unwrap_or(&half.next);
                state.flow.gap = Some(Gap {
                    from_client,
                    start: half.next,
                    end,
                });
                half.pending.clear();
                half.pending_bytes = 0;
            }
        }
        // Move every segment that now touches the stream's end into it: each
        // segment's new bytes are one item (one write of the sender).
        let mut delivered: Vec<Vec<u8>> = Vec::new();
        while let Some(entry) = half.pending.first_entry() {
            let offset = *entry.key();
            if offset > half.next {
                break;
            }
            let bytes = entry.remove();
            half.pending_bytes -= bytes.len();
            let end = offset + bytes.len() as u64;
            if end > half.next {
                let skip = usize::try_from(half.next - offset).unwrap_or(0);
                half.next = end;
                delivered.push(if skip == 0 {
                    bytes
                } else {
                    bytes[skip..].to_vec()
                });
            }
        }
        let fin_now = !half.fin_done && half.fin_at == Some(half.next);
        if fin_now {
            half.fin_done = true;
        }
        let selected = state.flow.selected;
        for bytes in delivered {
            self.tcp[index].flow.bytes[usize::from(!from_client)] += bytes.len() as u64;
            if selected {
                let offset = self.store(&bytes);
                self.tcp[index].flow.items.push(Item::Data {
                    from_client,
                    offset,
                    len: bytes.len() as u64,
                    at,
                });
            }
        }
        if fin_now && selected {
            self.tcp[index]
                .flow
                .items
                .push(Item::Fin { from_client, at });
        }
    }

    /// The flows, TCP first, each in the order it started; a TCP stream with bytes
    /// missing has its [`Flow::gap`] set. Fails only if the store could not be
    /// written.
    pub fn finish(self) -> io::Result<Vec<Flow>> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut flows = Vec::new();
        for mut state in self.tcp {
            if state.client_isn.is_some() && !state.syn_ack_seen && !state.flow.refused {
                let answered = state.halves[1].base.is_some();
                state.flow.unanswered = !answered;
            }
            for (number, half) in state.halves.iter().enumerate() {
                if state.flow.gap.is_some() {
                    break;
                }
                if let Some((&offset, _)) = half.pending.first_key_value() {
                    state.flow.gap = Some(Gap {
                        from_client: number == 0,
                        start: half.next,
                        end: offset,
                    });
                } else if let Some(fin) = half.fin_at.filter(|_| !half.fin_done) {
                    state.flow.gap = Some(Gap {
                        from_client: number == 0,
                        start: half.next,
                        end: fin,
                    });
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
        let packet = Packet {
            src: addr(from),
            dst: addr(to),
            transport: Transport::Tcp {
                seq,
                ack: 0,
                flags,
                payload,
            },
            complete: true,
        };
        r.push(Duration::ZERO, &packet);
    }

    const SYN: SegmentFlags = SegmentFlags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
        psh: false,
    };
    const SYN_ACK: SegmentFlags = SegmentFlags { ack: true, ..SYN };
    const ACK: SegmentFlags = SegmentFlags {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
        psh: false,
    };
    const FIN: SegmentFlags = SegmentFlags { fin: true, ..ACK };

    /// Items with their bytes read back from the store.
    fn contents(store: &Store, flow: &Flow) -> Vec<(bool, Vec<u8>)> {
        flow.items
            .iter()
            .map(|item| match *item {
                Item::Data {
                    from_client,
                    offset,
                    len,
                    ..
                } => {
                    let mut bytes = vec![0u8; len as usize];
                    store.read(offset, &mut bytes).unwrap();
                    (from_client, bytes)
                }
                Item::Fin { from_client, .. } => (from_client, b"FIN".to_vec()),
                Item::Reset { from_client, .. } => (from_client, b"RST".to_vec()),
            })
            .collect()
    }

    #[test]
    fn out_of_order_overlapping_and_wrapping_segments_reassemble() {
        let mut store = Store::memory(1 << 20);
        let mut r = Reassembler::new(&mut store);
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
        assert_eq!(flows[0].gap, None);
        let got = contents(&store, &flows[0]);
        let joined: Vec<u8> = got
            .iter()
            .filter(|(c, b)| *c && b != b"FIN")
            .flat_map(|(_, b)| b.clone())
            .collect();
        assert_eq!(joined, b"abcdefghij");
        assert_eq!(got.last().unwrap(), &(true, b"FIN".to_vec()));
        assert!(got.contains(&(false, b"ok".to_vec())));
    }

    #[test]
    fn a_gap_is_reported() {
        let mut store = Store::memory(1 << 20);
        let mut r = Reassembler::new(&mut store);
        segment(&mut r, 5000, 80, 1, SYN, b"");
        segment(&mut r, 5000, 80, 10, ACK, b"late");
        let flows = r.finish().unwrap();
        assert_eq!(
            flows[0].gap,
            Some(Gap {
                from_client: true,
                start: 0,
                end: 8
            })
        );
    }

    #[test]
    fn syn_data_is_kept() {
        let mut store = Store::memory(1 << 20);
        let mut r = Reassembler::new(&mut store);
        segment(
            &mut r,
            5000,
            80,
            100,
            SegmentFlags { fin: true, ..SYN },
            b"hello",
        );
        segment(&mut r, 80, 5000, 7, SYN_ACK, b"");
        let flows = r.finish().unwrap();
        assert_eq!(flows[0].gap, None);
        assert_eq!(
            contents(&store, &flows[0]),
            vec![(true, b"hello".to_vec()), (true, b"FIN".to_vec())]
        );
    }

    #[test]
    fn a_keep_alive_before_the_first_byte_is_no_gap() {
        let mut store = Store::memory(1 << 20);
        let mut r = Reassembler::new(&mut store);
        // Mid-stream: a zero-length keep-alive at next - 1, then data at next.
        segment(&mut r, 5000, 80, 999, ACK, b"");
        segment(&mut r, 5000, 80, 1000, ACK, b"data");
        // A one-byte keep-alive that the peer had acknowledged already.
        let packet = Packet {
            src: addr(5000),
            dst: addr(80),
            transport: Transport::Tcp {
                seq: 1004,
                ack: 50,
                flags: ACK,
                payload: b"",
            },
            complete: true,
        };
        r.push(Duration::ZERO, &packet);
        segment(&mut r, 80, 5000, 49, ACK, b"x");
        segment(&mut r, 80, 5000, 50, ACK, b"reply");
        let flows = r.finish().unwrap();
        assert_eq!(flows[0].gap, None);
        assert_eq!(
            contents(&store, &flows[0]),
            vec![(true, b"data".to_vec()), (false, b"reply".to_vec())]
        );
    }

    #[test]
    fn fragments_come_back_together_in_any_order() {
        let key = FragmentKey {
            src: addr(1).ip(),
            dst: addr(2).ip(),
            id: 9,
            protocol: 17,
        };
        let mut d = Defragmenter::default();
        let piece = |offset: usize, more: bool, payload: &'static [u8]| Fragment {
            key,
            offset,
            more,
            payload,
            complete: true,
        };
        assert!(d.push(&piece(16, false, b"tail")).is_none());
        assert!(d.push(&piece(0, true, b"01234567")).is_none());
        assert_eq!(d.incomplete(), 1);
        let whole = d.push(&piece(8, true, b"89abcdef")).unwrap().unwrap();
        assert_eq!(whole, b"0123456789abcdeftail");
        assert_eq!(d.incomplete(), 0);
        assert!(d.push(&piece(65_530, false, b"too far")).is_none());
        assert_eq!(d.dropped, 1);
    }
}
