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

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::frame::{self, normalize, TcpFlags, TcpSegment, WINDOW};
use crate::event::{ConnId, Event, EventKind, ShutdownHow};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The bytes this end sends, in the pieces the trace cuts them into.
    chunks: VecDeque<Bytes>,
    /// Bytes of this end's stream already in the trace.
    sent: u64,
    /// Bytes this end's own `Write` events reported.
    written: u64,
    /// Bytes this end's own `Read` events returned.
    read: u64,
    fin: bool,
    /// Pre-pass scratch: this end's writes and reads.
    writes: VecDeque<Bytes>,
    reads: VecDeque<Bytes>,
}

impl End {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            actor: None,
            isn: 0,
            snd_nxt: 0,
            chunks: VecDeque::new(),
            sent: 0,
            written: 0,
            read: 0,
            fin: false,
            writes: VecDeque::new(),
            reads: VecDeque::new(),
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

/// Builds the packets of `events` and hands them to `emit` in time order.
pub fn synthesize(
    events: &[Event],
    scenario: &str,
    options: &SynthOptions,
    emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
) -> io::Result<SynthStats> {
    let mut synth = Synth::prepare(events, scenario, options);
    for (index, event) in events.iter().enumerate() {
        synth.event(index, event, emit)?;
    }
    synth.stats.tcp_connections = synth.conns.len();
    Ok(synth.stats)
}

struct Synth<'e> {
    events: &'e [Event],
    scenario: &'e str,
    snaplen: usize,
    conns: Vec<TcpConn>,
    by_conn: HashMap<ConnId, (usize, Side)>,
    /// UDP endpoints some actor owns: their datagrams are taken as sent.
    udp_recorded: HashSet<SocketAddr>,
    /// Per (from, to): indexes of `DatagramSent` events not yet in the trace.
    udp_pending: HashMap<(SocketAddr, SocketAddr), VecDeque<usize>>,
    /// Each actor's current step: number and text.
    steps: HashMap<Arc<str>, (usize, String)>,
    used_ports: HashSet<u16>,
    next_port: u16,
    ip_id: u16,
    last_at: Duration,
    now: Duration,
    frame: Vec<u8>,
    comment: String,
    stats: SynthStats,
}

impl<'e> Synth<'e> {
    /// The pre-pass: pairs connection ends and collects each direction's bytes.
    fn prepare(events: &'e [Event], scenario: &'e str, options: &SynthOptions) -> Self {
        let mut conns: Vec<TcpConn> = Vec::new();
        let mut by_conn = HashMap::new();
        // Connections still missing their client (0) or server (1) end, by 4-tuple.
        let mut waiting: HashMap<(SocketAddr, SocketAddr, usize), VecDeque<usize>> = HashMap::new();
        let mut udp_recorded = HashSet::new();
        let mut udp_pending: HashMap<(SocketAddr, SocketAddr), VecDeque<usize>> = HashMap::new();
        let mut used_ports = HashSet::new();
        for (index, event) in events.iter().enumerate() {
            match &event.kind {
                EventKind::Connect { conn, local, peer }
                | EventKind::Accept { conn, local, peer } => {
                    let side = if matches!(event.kind, EventKind::Connect { .. }) {
                        Side::Client
                    } else {
                        Side::Server
                    };
                    let (local, peer) = (normalize(*local), normalize(*peer));
                    used_ports.extend([local.port(), peer.port()]);
                    let (client, server) = match side {
                        Side::Client => (local, peer),
                        Side::Server => (peer, local),
                    };
                    let found = waiting
                        .get_mut(&(client, server, side as usize))
                        .and_then(VecDeque::pop_front);
                    let number = match found {
                        Some(number) => number,
                        None => {
                            let number = conns.len();
                            conns.push(TcpConn {
                                ends: [End::new(client), End::new(server)],
                                mss: usize::from(frame::mss_for(&client)),
                                established: false,
                                reset: false,
                            });
                            waiting
                                .entry((client, server, side.other() as usize))
                                .or_default()
                                .push_back(number);
                            number
                        }
                    };
                    conns[number].ends[side as usize].actor = Some(Arc::clone(&event.actor));
                    by_conn.insert(*conn, (number, side));
                }
                EventKind::Write { conn, data } => {
                    if let Some(&(number, side)) = by_conn.get(conn) {
                        conns[number].ends[side as usize]
                            .writes
                            .push_back(data.clone());
                    }
                }
                EventKind::Read { conn, data } => {
                    if let Some(&(number, side)) = by_conn.get(conn) {
                        conns[number].ends[side as usize]
                            .reads
                            .push_back(data.clone());
                    }
                }
                EventKind::UdpBound { local, .. } => {
                    let local = normalize(*local);
                    used_ports.insert(local.port());
                    udp_recorded.insert(local);
                }
                EventKind::DatagramSent { from, to, .. } => {
                    let (from, to) = (normalize(*from), normalize(*to));
                    udp_recorded.insert(from);
                    udp_pending.entry((from, to)).or_default().push_back(index);
                }
                EventKind::ConnectFailed { peer, .. } => {
                    used_ports.insert(peer.port());
                }
                _ => {}
            }
        }
        for (number, conn) in conns.iter_mut().enumerate() {
            let (client_isn, server_isn) = match options.fixed_isn {
                Some(isn) => (isn, isn.wrapping_sub(1000)),
                None => {
                    let seed = isn_seed(conn.ends[0].addr, conn.ends[1].addr, number);
                    (seed, seed.rotate_left(16) ^ 0x5bd1_e995)
                }
            };
            conn.ends[0].isn = client_isn;
            conn.ends[1].isn = server_isn;
            for side in [Side::Client, Side::Server] {
                let other = side.other() as usize;
                let recorded = conn.ends[side as usize].actor.is_some();
                let chunks = if recorded {
                    std::mem::take(&mut conn.ends[side as usize].writes)
                } else {
                    std::mem::take(&mut conn.ends[other].reads)
                };
                conn.ends[side as usize].chunks = chunks;
            }
            for end in &mut conn.ends {
                end.writes = VecDeque::new();
                end.reads = VecDeque::new();
                end.snd_nxt = end.isn;
            }
        }
        Synth {
            events,
            scenario,
            snaplen: options.snaplen,
            conns,
            by_conn,
            udp_recorded,
            udp_pending,
            steps: HashMap::new(),
            used_ports,
            next_port: 40_000,
            ip_id: 0,
            last_at: Duration::ZERO,
            now: Duration::ZERO,
            frame: Vec::with_capacity(frame::MAX_FRAME),
            comment: String::new(),
            stats: SynthStats::default(),
        }
    }

    fn event(
        &mut self,
        index: usize,
        event: &Event,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        self.now = event.at.max(self.last_at);
        match &event.kind {
            EventKind::StepStarted { index, step } => {
                self.steps
                    .insert(Arc::clone(&event.actor), (*index, step.clone()));
            }
            EventKind::Connect { conn, .. } | EventKind::Accept { conn, .. } => {
                if let Some(&(number, _)) = self.by_conn.get(conn) {
                    if !self.conns[number].established {
                        self.handshake(number, emit)?;
                    }
                }
            }
            EventKind::Write { conn, data } => {
                if let Some(&(number, side)) = self.by_conn.get(conn) {
                    let end = &mut self.conns[number].ends[side as usize];
                    end.written += data.len() as u64;
                    let upto = end.written;
                    self.flush(number, side, upto, emit)?;
                }
            }
            EventKind::Read { conn, data } => {
                if let Some(&(number, side)) = self.by_conn.get(conn) {
                    let end = &mut self.conns[number].ends[side as usize];
                    end.read += data.len() as u64;
                    let upto = end.read;
                    self.flush(number, side.other(), upto, emit)?;
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
                    self.fin(number, side.other(), emit)?;
                }
            }
            EventKind::ConnectFailed { peer, error } => {
                self.refused(&event.actor, normalize(*peer), error, emit)?;
            }
            EventKind::DatagramSent { .. } => self.datagram_sent(index, emit)?,
            EventKind::DatagramReceived { from, to, data, .. } => {
                let (from, to) = (normalize(*from), normalize(*to));
                if self.udp_recorded.contains(&from) {
                    self.datagram_seen(from, to, data, emit)?;
                } else {
                    let label = format!("peer of {} (not recorded)", event.actor);
                    self.comment = self.label(None, &label);
                    self.udp(from, to, data, emit)?;
                }
            }
            _ => {}
        }
        Ok(())
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

    /// Puts `side`'s next chunks on the wire until `upto` bytes of its stream are.
    fn flush(
        &mut self,
        number: usize,
        side: Side,
        upto: u64,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        loop {
            let tcp = &mut self.conns[number];
            if tcp.reset || !tcp.established {
                return Ok(());
            }
            let end = &mut tcp.ends[side as usize];
            if end.sent >= upto || end.fin {
                return Ok(());
            }
            let Some(chunk) = end.chunks.pop_front() else {
                return Ok(());
            };
            end.sent += chunk.len() as u64;
            let mss = tcp.mss;
            for piece in chunk.chunks(mss) {
                self.tcp(number, side, TcpFlags::PSH_ACK, piece, None, emit)?;
                let end = &mut self.conns[number].ends[side as usize];
                end.snd_nxt = end.snd_nxt.wrapping_add(piece.len() as u32);
                self.stats.payload_bytes += piece.len() as u64;
                self.tcp(number, side.other(), TcpFlags::ACK, &[], None, emit)?;
            }
        }
    }

    /// All of `side`'s remaining bytes, then its FIN, acknowledged by the peer.
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
        self.flush(number, side, u64::MAX, emit)?;
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
        let id = self.next_ip_id();
        let len = frame::build_tcp(&mut self.frame, &segment, id, self.snaplen)?;
        self.send(len, emit)
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
        self.send(len, emit)?;
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
            self.send(len, emit)?;
        }
        Ok(())
    }

    /// The `DatagramSent` event at `index`, unless a receiver already showed it.
    fn datagram_sent(
        &mut self,
        index: usize,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let EventKind::DatagramSent { from, to, .. } = &self.events[index].kind else {
            return Ok(());
        };
        let key = (normalize(*from), normalize(*to));
        let due = self
            .udp_pending
            .get_mut(&key)
            .is_some_and(|queue| queue.front() == Some(&index));
        if due {
            if let Some(queue) = self.udp_pending.get_mut(&key) {
                queue.pop_front();
            }
            self.emit_sent(index, emit)?;
        }
        Ok(())
    }

    /// A receiver got a datagram from a recorded sender: if the sender's record of
    /// it comes later in the log, put it (and any before it) on the wire now.
    fn datagram_seen(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        data: &Bytes,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let Some(queue) = self.udp_pending.get(&(from, to)) else {
            return Ok(());
        };
        // A datagram read into a short buffer arrives truncated: match by prefix.
        let position = queue
            .iter()
            .take(64)
            .position(|&i| match &self.events[i].kind {
                EventKind::DatagramSent { data: sent, .. } => sent.starts_with(data),
                _ => false,
            });
        let Some(position) = position else {
            return Ok(());
        };
        let due: Vec<usize> = self
            .udp_pending
            .get_mut(&(from, to))
            .map(|queue| queue.drain(..=position).collect())
            .unwrap_or_default();
        for index in due {
            self.emit_sent(index, emit)?;
        }
        Ok(())
    }

    fn emit_sent(
        &mut self,
        index: usize,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let event = &self.events[index];
        if let EventKind::DatagramSent { from, to, data, .. } = &event.kind {
            self.comment = self.label(Some(&event.actor), "");
            self.udp(normalize(*from), normalize(*to), data, emit)?;
        }
        Ok(())
    }

    fn udp(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let id = self.next_ip_id();
        let len = frame::build_udp(&mut self.frame, from, to, data, id, self.snaplen)?;
        self.stats.udp_datagrams += 1;
        self.stats.payload_bytes += data.len() as u64;
        self.send(len, emit)
    }

    /// Hands the frame in `self.frame` (with `self.comment`) to the callback.
    fn send(
        &mut self,
        original_len: usize,
        emit: &mut dyn FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        self.last_at = self.now;
        self.stats.packets += 1;
        emit(Packet {
            at: self.now,
            data: &self.frame,
            original_len,
            comment: &self.comment,
        })
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
