//! Packets from events: a synthesized trace that needs no privileges.
//!
//! The runner records what each socket call did; this module turns that record into
//! the packets a capture on `lo` would plausibly have shown, packet by packet, in
//! time order, handing each one to a callback so nothing is held in memory.
//!
//! # TCP
//!
//! A connection may have been recorded at both ends (a client talking to a scripted
//! or built-in server) or at one end only (an external `command` or `address`
//! server). Ends are paired by their address 4-tuple: a client's `local`/`peer` is
//! the server's `peer`/`local`. Each direction is one byte stream whose bytes come
//! from the sender's `Write` events when the sender was recorded, else from the
//! receiver's `Read` events, so every byte appears exactly once, cut where the
//! program cut it (each write, or read, becomes PSH|ACK segments of at most the MSS).
//!
//! Bytes go on the wire at the first event that proves they were there: the
//! sender's write, or the receiver's read when that was recorded first (two threads
//! record in whichever order the scheduler lets them). A trace therefore never shows
//! an answer before its question.
//!
//! Every connection starts with SYN, SYN-ACK, ACK (MSS option, window 65535, no
//! window scaling). Each data segment is acknowledged right away by a pure ACK, so
//! an ACK never covers bytes the trace has not shown and the bytes in flight never
//! exceed the window. Teardown follows the record: `shutdown` (write or both) and
//! `close` send a FIN, `close` with linger 0 (and `close` with unread data, as Linux
//! does) sends RST|ACK; a `PeerEof`/`PeerReset` seen by one end stands for the FIN or
//! RST of an end that was not recorded (or was recorded later). A connection still
//! open when the events end simply stops; a refused `connect` is a SYN answered by
//! RST|ACK.
//!
//! # UDP
//!
//! Each datagram appears once, as sent (`DatagramSent`); datagrams of a sender that
//! was not recorded appear as received (`DatagramReceived`).
//!
//! # Proxy faults
//!
//! Every fault action of a proxy is a comment on the packet it touched. An action
//! on what the proxy sends (bytes it slices, holds or delays, a close or reset it
//! causes) is recorded before the send, and goes on the first packet that carries
//! it out of the proxy's end, whichever event puts that packet on the wire (the
//! proxy's write or its peer's read). An action on what the proxy threw away
//! (bytes a `blackhole` swallowed, a dropped datagram) is recorded after the
//! packet that brought them was already made: so once a run has a proxy, the last
//! [`HOLD_PACKETS`] packets are held back before they are written, and that
//! packet's comment is amended there. A note whose packet cannot be found (long
//! gone, or never sent) goes on the next packet of the same end, or on the last
//! packet of the trace: none is lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::frame::{self, normalize, TcpFlags, TcpSegment, WINDOW};
use crate::event::{ConnId, Event, EventKind, Payload, ShutdownHow};

/// How to synthesize.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Keep at most this many bytes of each frame (the snap length).
    pub snaplen: usize,
    /// Use these initial sequence numbers for every connection (client: the value,
    /// server: the value minus 1000) instead of ones derived from the addresses.
    /// Tests pick values just below 2^32 to check that sequence numbers wrap.
    pub fixed_isn: Option<u32>,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            snaplen: usize::MAX,
            fixed_isn: None,
        }
    }
}

/// Packets held back (once a run has a proxy) so that a fault note about bytes
/// already on the wire can still be added to the packet that carried them.
pub const HOLD_PACKETS: usize = 256;
/// The longest run of fault notes one packet's comment collects; then "...".
const MAX_NOTES_LEN: usize = 2048;

/// One synthesized packet, lent to the callback.
#[derive(Debug)]
pub struct Packet<'a> {
    /// Time since the scenario started (never less than the previous packet's).
    pub at: Duration,
    /// The captured bytes (at most the snap length).
    pub data: &'a [u8],
    /// The frame's full length.
    pub original_len: usize,
    /// Scenario, actor and step of the packet's sender.
    pub comment: &'a str,
}

/// What a synthesis produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SynthStats {
    pub packets: u64,
    pub tcp_connections: usize,
    pub udp_datagrams: u64,
    /// Payload bytes in TCP data segments and UDP datagrams.
    pub payload_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Client = 0,
    Server = 1,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// One end of a TCP connection, as a sender.
#[derive(Debug)]
struct End {
    addr: SocketAddr,
    /// The actor that owns this end, if it was recorded.
    actor: Option<Arc<str>>,
    isn: u32,
    /// Sequence number of the next byte (or FIN) this end sends.
    snd_nxt: u32,
    /// Bytes of this end's stream already in the trace.
    sent: u64,
    /// Bytes this end's own `Write` events reported.
    written: u64,
    /// Bytes this end's own `Read` events returned.
    read: u64,
    /// This end's own `PeerEof`: it read its peer's FIN.
    eof_read: bool,
    fin: bool,
}

impl End {
    fn new(addr: SocketAddr, isn: u32) -> Self {
        Self {
            addr,
            actor: None,
            isn,
            snd_nxt: isn,
            sent: 0,
            written: 0,
            read: 0,
            eof_read: false,
            fin: false,
        }
    }
}

#[derive(Debug)]
struct TcpConn {
    ends: [End; 2],
    mss: usize,
    established: bool,
    reset: bool,
}

/// Builds the packets of `events` and hands them to `emit` in time order: the
/// whole-log form of [`Synthesizer`], for tests and tools that hold a log.
pub fn synthesize(
    events: &[Event],
    scenario: &str,
    options: &SynthOptions,
    emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
) -> io::Result<SynthStats> {
    let mut synth = Synthesizer::new(scenario, options);
    for event in events {
        synth.event(event, emit)?;
    }
    synth.finish(emit)?;
    Ok(synth.stats())
}

/// Turns a run's events into packets as they arrive, holding no payload: every byte
/// goes on the wire at the first event that proves it was sent (the sender's write,
/// or the receiver's read when that was recorded first), and later events about the
/// same bytes only move counters. State is a few counters per connection.
pub struct Synthesizer {
    scenario: Arc<str>,
    snaplen: usize,
    fixed_isn: Option<u32>,
    conns: Vec<TcpConn>,
    by_conn: HashMap<ConnId, (usize, Side)>,
    /// Connections still missing their client (0) or server (1) end, by 4-tuple.
    waiting: HashMap<(SocketAddr, SocketAddr, usize), VecDeque<usize>>,
    /// UDP endpoints some actor owns: their datagrams are taken as sent.
    udp_recorded: HashSet<SocketAddr>,
    /// Per (from, to): datagrams put on the wire from the sender's record that no
    /// receive has matched yet.
    udp_unseen: HashMap<(SocketAddr, SocketAddr), u64>,
    /// Per (from, to): datagrams put on the wire from the receiver's record before
    /// the sender's record came; those sender records are skipped.
    udp_skip: HashMap<(SocketAddr, SocketAddr), u64>,
    /// Each actor's current step: number and text.
    steps: HashMap<Arc<str>, (usize, Arc<str>)>,
    used_ports: HashSet<u16>,
    next_port: u16,
    ip_id: u16,
    last_at: Duration,
    now: Duration,
    frame: Vec<u8>,
    comment: String,
    /// Fault notes waiting for the next packet that carries bytes, a FIN or a RST
    /// out of a proxy's end (a TCP end, or a UDP socket by its address).
    notes_out: HashMap<Outlet, String>,
    /// Fault notes on a connection not known yet, placed when it appears.
    notes_early: HashMap<ConnId, Vec<(String, bool)>>,
    /// The local address of each UDP socket, by the id it records under.
    udp_local: HashMap<ConnId, SocketAddr>,
    /// Whether packets are held back (a proxy started), and the packets held.
    hold: bool,
    held: VecDeque<Held>,
    stats: SynthStats,
}

/// Where a packet leaves from, for the fault notes waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Outlet {
    Tcp(usize, Side),
    Udp(SocketAddr),
}

/// What a packet is, for finding it again among the held ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A TCP segment from an end: its first sequence number and payload length;
    /// `carries` when it has bytes, a FIN or a RST.
    Tcp {
        number: usize,
        side: Side,
        carries: bool,
        fin: bool,
        seq: u32,
        len: u32,
    },
    /// A datagram to this address.
    Udp {
        to: SocketAddr,
    },
    Other,
}

/// Whether a held packet is the one looked for.
type IsPacket = Box<dyn Fn(&Origin) -> bool>;

/// A packet held back before it is written.
#[derive(Debug)]
struct Held {
    at: Duration,
    frame: Vec<u8>,
    original_len: usize,
    comment: String,
    origin: Origin,
}

impl Synthesizer {
    pub fn new(scenario: &str, options: &SynthOptions) -> Self {
        Self {
            scenario: Arc::from(scenario),
            snaplen: options.snaplen,
            fixed_isn: options.fixed_isn,
            conns: Vec::new(),
            by_conn: HashMap::new(),
            waiting: HashMap::new(),
            udp_recorded: HashSet::new(),
            udp_unseen: HashMap::new(),
            udp_skip: HashMap::new(),
            steps: HashMap::new(),
            used_ports: HashSet::new(),
            next_port: 40_000,
            ip_id: 0,
            last_at: Duration::ZERO,
            now: Duration::ZERO,
            frame: Vec::with_capacity(frame::MAX_FRAME),
            comment: String::new(),
            notes_out: HashMap::new(),
            notes_early: HashMap::new(),
            udp_local: HashMap::new(),
            hold: false,
            held: VecDeque::new(),
            stats: SynthStats::default(),
        }
    }

    /// What was written so far.
    pub fn stats(&self) -> SynthStats {
        SynthStats {
            tcp_connections: self.conns.len(),
            ..self.stats.clone()
        }
    }

    /// The packets one event proves, handed to `emit`.
    pub fn event(
        &mut self,
        event: &Event,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        self.now = event.at.max(self.last_at);
        match &event.kind {
            EventKind::ProxyStarted { .. } => self.hold = true,
            EventKind::Fault {
                conn,
                fault,
                action,
                discarded,
                ..
            } => {
                let note = format!("{fault}: {action}");
                self.fault_note(*conn, note, *discarded);
            }
            EventKind::StepStarted { index, step } => {
                self.steps
                    .insert(Arc::clone(&event.actor), (*index, Arc::clone(step)));
            }
            EventKind::Connect { conn, local, peer } | EventKind::Accept { conn, local, peer } => {
                let side = if matches!(event.kind, EventKind::Connect { .. }) {
                    Side::Client
                } else {
                    Side::Server
                };
                let number = self.pair(side, normalize(*local), normalize(*peer));
                self.conns[number].ends[side as usize].actor = Some(Arc::clone(&event.actor));
                self.by_conn.insert(*conn, (number, side));
                if !self.conns[number].established {
                    self.handshake(number, emit)?;
                }
                self.place_early_notes(*conn);
            }
            EventKind::Write { conn, data } => {
                if let Some(&(number, side)) = self.by_conn.get(conn) {
                    let end = &mut self.conns[number].ends[side as usize];
                    end.written += data.len() as u64;
                    let upto = end.written;
                    self.put_on_wire(number, side, upto, data, emit)?;
                }
            }
            EventKind::Read { conn, data } => {
                if let Some(&(number, side)) = self.by_conn.get(conn) {
                    let end = &mut self.conns[number].ends[side as usize];
                    end.read += data.len() as u64;
                    let upto = end.read;
                    self.put_on_wire(number, side.other(), upto, data, emit)?;
                }
            }
            EventKind::Shutdown { conn, how } => {
                if let Some(&(number, side)) = self.by_conn.get(conn) {
                    if *how != ShutdownHow::Read {
                        self.fin(number, side, emit)?;
                    }
                }
            }
            EventKind::Close { conn, reset } => {
                if let Some(&(number, side)) = self.by_conn.get(conn) {
                    let tcp = &self.conns[number];
                    let end = &tcp.ends[side as usize];
                    let unread = tcp.ends[side.other() as usize].sent > end.read;
                    if *reset || (unread && !end.fin) {
                        self.reset(number, side, emit)?;
                    } else {
                        self.fin(number, side, emit)?;
                    }
                }
            }
            EventKind::PeerReset { conn } => {
                if let Some(&(number, side)) = self.by_conn.get(conn) {
                    self.reset(number, side.other(), emit)?;
                }
            }
            EventKind::PeerEof { conn } => {
                if let Some(&(number, side)) = self.by_conn.get(conn) {
                    self.conns[number].ends[side as usize].eof_read = true;
                    self.fin(number, side.other(), emit)?;
                }
            }
            EventKind::ConnectFailed { peer, error } => {
                self.used_ports.insert(peer.port());
                self.refused(&event.actor, normalize(*peer), error, emit)?;
            }
            EventKind::UdpBound { conn, local } => {
                let local = normalize(*local);
                self.used_ports.insert(local.port());
                self.udp_recorded.insert(local);
                self.udp_local.insert(*conn, local);
                self.place_early_notes(*conn);
            }
            EventKind::DatagramSent { from, to, data, .. } => {
                let key = (normalize(*from), normalize(*to));
                self.udp_recorded.insert(key.0);
                match self.udp_skip.get_mut(&key) {
                    Some(skip) if *skip > 0 => *skip -= 1,
                    _ => {
                        *self.udp_unseen.entry(key).or_default() += 1;
                        self.comment = self.label(Some(&event.actor), "");
                        self.udp(key.0, key.1, data, emit)?;
                    }
                }
            }
            EventKind::DatagramReceived { from, to, data, .. } => {
                let key = (normalize(*from), normalize(*to));
                if self.udp_recorded.contains(&key.0) {
                    match self.udp_unseen.get_mut(&key) {
                        Some(unseen) if *unseen > 0 => *unseen -= 1,
                        _ => {
                            // The receiver's record came first: show the datagram
                            // now, and skip the sender's record of it when it comes.
                            *self.udp_skip.entry(key).or_default() += 1;
                            self.comment = self.label(Some(&event.actor), "");
                            self.udp(key.0, key.1, data, emit)?;
                        }
                    }
                } else {
                    let label = format!("peer of {} (not recorded)", event.actor);
                    self.comment = self.label(None, &label);
                    self.udp(key.0, key.1, data, emit)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The connection a `side` end with these addresses belongs to: the one whose
    /// other end is already known by the same 4-tuple, or a new one.
    fn pair(&mut self, side: Side, local: SocketAddr, peer: SocketAddr) -> usize {
        self.used_ports.extend([local.port(), peer.port()]);
        let (client, server) = match side {
            Side::Client => (local, peer),
            Side::Server => (peer, local),
        };
        let key = (client, server, side as usize);
        if let Some(queue) = self.waiting.get_mut(&key) {
            if let Some(number) = queue.pop_front() {
                if queue.is_empty() {
                    self.waiting.remove(&key);
                }
                return number;
            }
        }
        let number = self.conns.len();
        let (client_isn, server_isn) = match self.fixed_isn {
            Some(isn) => (isn, isn.wrapping_sub(1000)),
            None => {
                let seed = isn_seed(client, server, number);
                (seed, seed.rotate_left(16) ^ 0x5bd1_e995)
            }
        };
        self.conns.push(TcpConn {
            ends: [End::new(client, client_isn), End::new(server, server_isn)],
            mss: usize::from(frame::mss_for(&client)),
            established: false,
            reset: false,
        });
        self.waiting
            .entry((client, server, side.other() as usize))
            .or_default()
            .push_back(number);
        number
    }

    /// SYN, SYN-ACK, ACK.
    fn handshake(
        &mut self,
        number: usize,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        self.conns[number].established = true;
        let mss = frame::mss_for(&self.conns[number].ends[0].addr);
        self.tcp(number, Side::Client, TcpFlags::SYN, &[], Some(mss), emit)?;
        self.conns[number].ends[0].snd_nxt = self.conns[number].ends[0].isn.wrapping_add(1);
        self.tcp(
            number,
            Side::Server,
            TcpFlags::SYN_ACK,
            &[],
            Some(mss),
            emit,
        )?;
        self.conns[number].ends[1].snd_nxt = self.conns[number].ends[1].isn.wrapping_add(1);
        self.tcp(number, Side::Client, TcpFlags::ACK, &[], None, emit)
    }

    /// Puts the part of `data` beyond what `side` already has on the wire there:
    /// `data` is the latest piece of `side`'s stream as one end saw it (a write by
    /// `side`, or a read by its peer), ending at stream offset `upto`.
    fn put_on_wire(
        &mut self,
        number: usize,
        side: Side,
        upto: u64,
        data: &Payload,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let tcp = &mut self.conns[number];
        if tcp.reset || !tcp.established {
            return Ok(());
        }
        let end = &mut tcp.ends[side as usize];
        if end.sent >= upto || end.fin {
            return Ok(());
        }
        let Some(bytes) = data.bytes() else {
            // The stream carried lengths only; nothing to show.
            return Ok(());
        };
        let new = (upto - end.sent).min(bytes.len() as u64) as usize;
        let bytes = bytes.slice(bytes.len() - new..);
        end.sent = upto;
        let mss = tcp.mss;
        for piece in bytes.chunks(mss) {
            self.tcp(number, side, TcpFlags::PSH_ACK, piece, None, emit)?;
            let end = &mut self.conns[number].ends[side as usize];
            end.snd_nxt = end.snd_nxt.wrapping_add(piece.len() as u32);
            self.stats.payload_bytes += piece.len() as u64;
            self.tcp(number, side.other(), TcpFlags::ACK, &[], None, emit)?;
        }
        Ok(())
    }

    /// `side`'s FIN, acknowledged by the peer.
    fn fin(
        &mut self,
        number: usize,
        side: Side,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.conns[number].reset || self.conns[number].ends[side as usize].fin {
            return Ok(());
        }
        if !self.conns[number].established {
            self.handshake(number, emit)?;
        }
        self.tcp(number, side, TcpFlags::FIN_ACK, &[], None, emit)?;
        let end = &mut self.conns[number].ends[side as usize];
        end.snd_nxt = end.snd_nxt.wrapping_add(1);
        end.fin = true;
        self.tcp(number, side.other(), TcpFlags::ACK, &[], None, emit)
    }

    /// RST|ACK from `side`; the connection is over.
    fn reset(
        &mut self,
        number: usize,
        side: Side,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.conns[number].reset {
            return Ok(());
        }
        if !self.conns[number].established {
            self.handshake(number, emit)?;
        }
        self.tcp(number, side, TcpFlags::RST_ACK, &[], None, emit)?;
        self.conns[number].reset = true;
        Ok(())
    }

    /// One segment from `side` of connection `number`, with its current numbers.
    fn tcp(
        &mut self,
        number: usize,
        side: Side,
        flags: TcpFlags,
        payload: &[u8],
        mss: Option<u16>,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let tcp = &self.conns[number];
        let (from, to) = (&tcp.ends[side as usize], &tcp.ends[side.other() as usize]);
        let segment = TcpSegment {
            src: from.addr,
            dst: to.addr,
            seq: from.snd_nxt,
            ack: to.snd_nxt,
            flags,
            window: WINDOW,
            mss,
            payload,
        };
        let fallback = match side {
            Side::Client => format!("client at {} (not recorded)", from.addr),
            Side::Server => format!("server at {} (not recorded)", from.addr),
        };
        self.comment = self.label(from.actor.as_ref(), &fallback);
        let carries = !payload.is_empty() || flags.fin || flags.rst;
        if carries {
            if let Some(notes) = self.notes_out.remove(&Outlet::Tcp(number, side)) {
                self.comment.push_str(" | fault ");
                self.comment.push_str(&notes);
            }
        }
        let id = self.next_ip_id();
        let len = frame::build_tcp(&mut self.frame, &segment, id, self.snaplen)?;
        let origin = Origin::Tcp {
            number,
            side,
            carries,
            fin: flags.fin,
            seq: segment.seq,
            len: payload.len() as u32,
        };
        self.send(len, origin, emit)
    }

    /// A refused (or otherwise failed) connect: a SYN, and RST|ACK if refused.
    fn refused(
        &mut self,
        actor: &Arc<str>,
        peer: SocketAddr,
        error: &str,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let ip = match peer.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let local = SocketAddr::new(ip, self.free_port());
        let isn = isn_seed(local, peer, usize::MAX);
        let syn = TcpSegment {
            src: local,
            dst: peer,
            seq: isn,
            ack: 0,
            flags: TcpFlags::SYN,
            window: WINDOW,
            mss: Some(frame::mss_for(&peer)),
            payload: &[],
        };
        self.comment = self.label(Some(actor), "");
        let id = self.next_ip_id();
        let len = frame::build_tcp(&mut self.frame, &syn, id, self.snaplen)?;
        self.send(len, Origin::Other, emit)?;
        let refused = error.to_ascii_lowercase().contains("refused");
        if refused {
            let rst = TcpSegment {
                src: peer,
                dst: local,
                seq: 0,
                ack: isn.wrapping_add(1),
                flags: TcpFlags::RST_ACK,
                window: 0,
                mss: None,
                payload: &[],
            };
            self.comment = self.label(None, &format!("{peer} refused {actor}'s connection"));
            let id = self.next_ip_id();
            let len = frame::build_tcp(&mut self.frame, &rst, id, self.snaplen)?;
            self.send(len, Origin::Other, emit)?;
        }
        Ok(())
    }

    fn udp(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        data: &Payload,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let data: &[u8] = data.bytes().map_or(&[], |bytes| &bytes[..]);
        if let Some(notes) = self.notes_out.remove(&Outlet::Udp(from)) {
            self.comment.push_str(" | fault ");
            self.comment.push_str(&notes);
        }
        let id = self.next_ip_id();
        let len = frame::build_udp(&mut self.frame, from, to, data, id, self.snaplen)?;
        self.stats.udp_datagrams += 1;
        self.stats.payload_bytes += data.len() as u64;
        self.send(len, Origin::Udp { to }, emit)
    }

    /// Hands the frame in `self.frame` (with `self.comment`) to the callback, or
    /// holds it back while a proxy's fault notes may still amend it.
    fn send(
        &mut self,
        original_len: usize,
        origin: Origin,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        self.last_at = self.now;
        self.stats.packets += 1;
        if !self.hold {
            return emit(Packet {
                at: self.now,
                data: &self.frame,
                original_len,
                comment: &self.comment,
            });
        }
        self.held.push_back(Held {
            at: self.now,
            frame: self.frame.clone(),
            original_len,
            comment: self.comment.clone(),
            origin,
        });
        while self.held.len() > HOLD_PACKETS {
            if let Some(packet) = self.held.pop_front() {
                emit_held(&packet, emit)?;
            }
        }
        Ok(())
    }

    /// Writes every packet still held back; notes that found no packet go on the
    /// last one. Call once the events are over.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>) -> io::Result<()> {
        let mut unplaced: Vec<String> = self.notes_out.drain().map(|(_, notes)| notes).collect();
        unplaced.extend(
            self.notes_early
                .drain()
                .flat_map(|(_, notes)| notes.into_iter().map(|(note, _)| note)),
        );
        unplaced.sort();
        if let Some(last) = self.held.back_mut() {
            for notes in unplaced {
                add_note(&mut last.comment, &format!("(never sent) {notes}"));
            }
        }
        while let Some(packet) = self.held.pop_front() {
            emit_held(&packet, emit)?;
        }
        Ok(())
    }

    /// A proxy's fault note on `conn`: on the next packet out of that end, or
    /// (`discarded`) on the held packet that brought the bytes thrown away.
    fn fault_note(&mut self, conn: ConnId, note: String, discarded: bool) {
        // The packet that brought what was discarded: for a TCP end, the FIN it
        // read if it read one, else the segment with the last byte it read.
        let (outlet, arrived): (Outlet, IsPacket) =
            if let Some(&(number, side)) = self.by_conn.get(&conn) {
                let receiver = &self.conns[number].ends[side as usize];
                let sender = side.other();
                let eof_read = receiver.eof_read;
                let last_byte = self.conns[number].ends[sender as usize]
                    .isn
                    .wrapping_add(receiver.read as u32);
                (
                    Outlet::Tcp(number, side),
                    Box::new(move |origin: &Origin| match *origin {
                        Origin::Tcp {
                            number: n,
                            side: s,
                            fin,
                            seq,
                            len,
                            ..
                        } if n == number && s == sender => {
                            if eof_read {
                                fin
                            } else {
                                last_byte.wrapping_sub(seq) < len
                            }
                        }
                        _ => false,
                    }),
                )
            } else if let Some(&local) = self.udp_local.get(&conn) {
                (
                    Outlet::Udp(local),
                    Box::new(move |origin: &Origin| *origin == Origin::Udp { to: local }),
                )
            } else {
                self.notes_early
                    .entry(conn)
                    .or_default()
                    .push((note, discarded));
                return;
            };
        if discarded {
            if let Some(packet) = self.held.iter_mut().rev().find(|p| arrived(&p.origin)) {
                add_note(&mut packet.comment, &note);
                return;
            }
        }
        let notes = self.notes_out.entry(outlet).or_default();
        if notes.len() < MAX_NOTES_LEN {
            if !notes.is_empty() {
                notes.push_str("; ");
            }
            notes.push_str(&note);
        }
    }

    /// Notes recorded on `conn` before its connection or socket was known.
    fn place_early_notes(&mut self, conn: ConnId) {
        if let Some(notes) = self.notes_early.remove(&conn) {
            for (note, discarded) in notes {
                self.fault_note(conn, note, discarded);
            }
        }
    }

    /// `scenario | actor | step N: text`, or the fallback when no actor is known.
    fn label(&self, actor: Option<&Arc<str>>, fallback: &str) -> String {
        match actor {
            Some(actor) => match self.steps.get(actor) {
                Some((index, text)) => {
                    format!("{} | {actor} | step {index}: {text}", self.scenario)
                }
                None => format!("{} | {actor}", self.scenario),
            },
            None => format!("{} | {fallback}", self.scenario),
        }
    }

    fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }

    /// A port no endpoint of the run used, for the local end of a refused connect.
    fn free_port(&mut self) -> u16 {
        loop {
            let port = self.next_port;
            self.next_port = if port >= 60_999 { 40_000 } else { port + 1 };
            if self.used_ports.insert(port) {
                return port;
            }
        }
    }
}

/// An initial sequence number that looks arbitrary but is the same for the same run.
fn isn_seed(client: SocketAddr, server: SocketAddr, number: usize) -> u32 {
    // FNV-1a over the endpoints and the connection's position.
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(client.to_string().as_bytes());
    feed(server.to_string().as_bytes());
    feed(&number.to_le_bytes());
    hash
}

fn emit_held(packet: &Held, emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>) -> io::Result<()> {
    emit(Packet {
        at: packet.at,
        data: &packet.frame,
        original_len: packet.original_len,
        comment: &packet.comment,
    })
}

/// Adds a fault note to a packet's comment (the first after " | fault ").
fn add_note(comment: &mut String, note: &str) {
    if comment.len() >= MAX_NOTES_LEN * 2 {
        return;
    }
    comment.push_str(if comment.contains(" | fault ") {
        "; "
    } else {
        " | fault "
    });
    comment.push_str(note);
}
