//! One actor running its script: a client, or one accepted connection of a scripted
//! server. Each step is carried out with exactly the socket calls the format
//! promises (one read for `recv`, reads that never over-read for `expect`), so what a
//! scenario asserts is what a real program would see.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};
use tokio_util::codec::Decoder;

use super::peeked::PeekedAhead;
use super::step_timer::{StepTimer, TimedOut};
use super::{Doing, RunContext};
use crate::event::{EventKind, ShutdownHow};
use crate::framing::FramingConfig;
use crate::matcher::{self, Captures, GiveUp, LineSplitter, Match, Mismatch, Progress};
use crate::net::{apply_socket_options, is_reset, peek, queued_bytes, Recorder};
use crate::outcome::{Failure, FailureKind, StepRef};
use crate::programs::sockets;
use crate::scenario::{Action, Data, Expected, Script, Step, UnreadPolicy};
use crate::vocab::{Proto, SocketOptions};

/// How often `await_queued` looks at the receive queue. The kernel offers no
/// "wake me at N bytes" for a socket we must not read, so we poll, briefly.
const QUEUE_POLL: Duration = Duration::from_millis(1);

/// The socket an actor talks through.
pub enum Conn {
    /// A TCP client before its `connect` step; `source` is the local address to
    /// connect from, when it is not the kernel's choice.
    NotConnected {
        target: SocketAddr,
        source: Option<std::net::IpAddr>,
    },
    Tcp {
        stream: TcpStream,
        recorder: Recorder,
    },
    Udp {
        socket: UdpSocket,
        recorder: Recorder,
        local: SocketAddr,
        /// Client: the server. Server: the sender of the last datagram received.
        peer: Option<SocketAddr>,
        /// A client's socket is `connect`ed, so it only hears from its server.
        connected: bool,
    },
    /// After `close`.
    Closed,
}

/// Why a step failed; the runner adds the actor, step and timing.
pub struct StepError {
    pub message: String,
    pub expected: Option<Bytes>,
    pub actual: Option<Bytes>,
    pub timed_out: bool,
}

impl StepError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            expected: None,
            actual: None,
            timed_out: false,
        }
    }

    fn timeout(message: impl Into<String>) -> Self {
        Self {
            timed_out: true,
            ..Self::new(message)
        }
    }

    /// The expected bytes and what arrived, for an `expect` that failed after
    /// `matched` bytes equal to the expectation followed by `got`. A file slice's
    /// bytes are read back for the report, at most [`REPORT_BYTES`] of them.
    fn bytes_of(self, expected: &Data, matched: u64, got: &[u8]) -> Self {
        let shown = usize::try_from(matched)
            .unwrap_or(usize::MAX)
            .saturating_add(got.len() + 4096)
            .min(REPORT_BYTES);
        let Ok(expected) = expected.head(shown) else {
            return self;
        };
        let prefix = usize::try_from(matched)
            .unwrap_or(usize::MAX)
            .min(expected.len());
        let mut actual = BytesMut::with_capacity(prefix + got.len());
        actual.extend_from_slice(&expected[..prefix]);
        actual.extend_from_slice(got);
        self.bytes(Some(expected), Some(actual.freeze()))
    }

    /// A matcher's verdict, with the bytes it judged.
    fn mismatch(mismatch: Mismatch, actual: &[u8]) -> Self {
        Self::new(mismatch.message).bytes(mismatch.expected, Some(Bytes::copy_from_slice(actual)))
    }

    fn bytes(mut self, expected: Option<Bytes>, actual: Option<Bytes>) -> Self {
        self.expected = expected;
        self.actual = actual;
        self
    }
}

type StepResult = Result<(), StepError>;

pub struct Actor {
    pub name: Arc<str>,
    pub conn: Conn,
    pub options: SocketOptions,
    pub context: Arc<RunContext>,
    /// Set by our own `shutdown = "write"`/`"both"`: a later send is the script's
    /// mistake, not the peer's reset, and is reported as such.
    write_closed: bool,
    /// Between `hold` and `flush`: the bytes sends would have written.
    held: Option<BytesMut>,
    /// Bytes written on this connection so far, for saying how much the peer read.
    sent_total: u64,
    /// The buffer `expect` reads into, kept across steps so a bulk transfer does
    /// not allocate (and zero) a buffer per step.
    read_buf: Vec<u8>,
    /// Bytes that were waiting unread when a `close` step closed the socket, with
    /// the first of them, for the `unread` policy at the end of the script.
    unread_at_close: Option<(usize, Bytes)>,
    /// What the last peek saw that no read took yet: the next peeking step judges
    /// it without a new peek (see [`PeekedAhead`]).
    peeked: PeekedAhead,
    /// Every step's deadline, on one timer armed once (see [`StepTimer`]).
    timer: StepTimer,
    /// When the current step started: what a slow send reports its time from,
    /// without reading the clock again.
    step_started: Instant,
}

/// How many steps ahead of the one running [`prefetch`] asks for.
const STEPS_AHEAD: usize = 2;

/// Asks the CPU to bring `step` into its cache, without waiting for it.
///
/// A script is a block of steps the loader wrote on its own thread, about 200
/// bytes (three or four cache lines) each, and the runner reads each step once, a
/// round trip after the one before. Read cold, every step missed the cache:
/// `perf annotate` put a third of `Actor::step`'s samples on the first load from
/// the step, in a run of 20,000 exchanges. Asked for two steps (one exchange)
/// early, the lines are there when the step starts. A prefetch never faults and
/// changes nothing but timing.
#[inline]
fn prefetch(step: &Step) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = std::ptr::from_ref(step).cast::<i8>();
        for offset in (0..std::mem::size_of::<Step>()).step_by(64) {
            // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has; the
            // address is inside `step`, and a prefetch reads nothing anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = step;
}

/// How much a peeking step looks at first; the window doubles while the matcher
/// needs more and more is queued, up to the step's limit.
const PEEK_START: usize = 4096;

/// How many unread bytes an `unread` note or failure quotes.
const UNREAD_QUOTE: usize = 64;

/// What a peeking read saw when it stopped without a verdict.
enum PeekEnd {
    /// The peer closed its side (possibly after bytes that are still queued).
    Eof,
    Timeout,
    Failed(StepError),
}

/// Largest single read of an `expect`. Reading big pieces keeps the receive
/// window open: with small reads the kernel delays window updates and a bulk peer
/// stalls.
const EXPECT_READ: usize = 256 * 1024;

/// The most bytes of a file slice a failure report reads back to show.
const REPORT_BYTES: usize = 16 << 20;

impl Actor {
    pub fn new(
        name: Arc<str>,
        conn: Conn,
        options: SocketOptions,
        context: Arc<RunContext>,
    ) -> Self {
        Self {
            name,
            conn,
            options,
            context,
            write_closed: false,
            read_buf: Vec::new(),
            unread_at_close: None,
            peeked: PeekedAhead::default(),
            timer: StepTimer::default(),
            step_started: Instant::now(),
            held: None,
            sent_total: 0,
        }
    }

    /// Runs every step in order; the first failure ends the script.
    pub async fn run(mut self, script: &Script) -> Result<(), Failure> {
        // A TCP client connects before its first step unless it asks to connect later.
        if matches!(self.conn, Conn::NotConnected { .. })
            && !script.iter().any(|s| s.action == Action::Connect)
        {
            let deadline = Instant::now() + self.context.step_timeout;
            self.context.board.set(&self.name, Doing::Connecting);
            if let Err(e) = self.connect(deadline).await {
                let mut failure = Failure::new(
                    if e.timed_out {
                        FailureKind::StepTimeout
                    } else {
                        FailureKind::Step
                    },
                    e.message,
                );
                failure.actor = Some(self.name.to_string());
                return Err(failure);
            }
        }
        let slot = self.context.board.slot(&self.name);
        for step in script.iter().take(STEPS_AHEAD) {
            prefetch(step);
        }
        for (index, step) in script.iter().enumerate() {
            let number = index + 1;
            if let Some(later) = script.get(index + STEPS_AHEAD) {
                prefetch(later);
            }
            let log = &self.context.log;
            if log.enabled() {
                log.record(
                    &self.name,
                    EventKind::StepStarted {
                        index: number,
                        step: Arc::from(step.source_text.as_str()),
                    },
                );
            }
            let started = Instant::now();
            self.step_started = started;
            slot.set(
                Doing::Step {
                    index: number,
                    script: Arc::clone(script),
                },
                started,
            );
            let deadline = started + step.timeout.unwrap_or(self.context.step_timeout);
            let resolved;
            let action = if step.action.has_template() {
                match self.resolve(&step.action) {
                    Ok(action) => {
                        resolved = action;
                        Ok(&resolved)
                    }
                    Err(e) => Err(e),
                }
            } else {
                Ok(&step.action)
            };
            let result = match action {
                Ok(action) => self.step(action, deadline).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => self
                    .context
                    .log
                    .record(&self.name, EventKind::StepPassed { index: number }),
                Err(e) => {
                    self.context.log.record(
                        &self.name,
                        EventKind::StepFailed {
                            index: number,
                            message: e.message.clone(),
                        },
                    );
                    self.park();
                    return Err(Failure {
                        kind: if e.timed_out {
                            FailureKind::StepTimeout
                        } else {
                            FailureKind::Step
                        },
                        actor: Some(self.name.to_string()),
                        step: Some(StepRef {
                            index: number,
                            keyword: step.action.keyword(),
                            location: (&step.location).into(),
                            text: step.source_text.to_string(),
                        }),
                        message: e.message,
                        expected: e.expected,
                        actual: e.actual,
                        waited: Some(started.elapsed()),
                        notes: Vec::new(),
                    });
                }
            }
        }
        self.context.board.done(&self.name);
        self.check_unread(script)
    }

    /// Applies the scenario's `unread` policy to bytes that arrived but that no
    /// step read: still queued at the end of the script, or dropped by `close`.
    fn check_unread(&mut self, script: &[Step]) -> Result<(), Failure> {
        let policy = self.context.unread;
        if policy == UnreadPolicy::Ignore {
            return Ok(());
        }
        let unread = match (&self.conn, self.unread_at_close.take()) {
            (_, Some(at_close)) => Some(at_close),
            (Conn::Tcp { stream, .. }, None) => unread_bytes(stream),
            _ => None,
        };
        let Some((count, first)) = unread else {
            return Ok(());
        };
        let message = format!(
            "{count} bytes arrived that no step read: {}",
            matcher::quote(&first)
        );
        if policy == UnreadPolicy::Warn {
            self.context.note(format!(
                "{}: {message} (top-level `unread = \"fail\"` makes this a failure, `\"ignore\"` hides it)",
                self.name
            ));
            return Ok(());
        }
        let mut failure = Failure::new(
            FailureKind::Step,
            format!("the script ended, but {message} (top-level `unread = \"fail\"`)"),
        );
        failure.actor = Some(self.name.to_string());
        failure.actual = Some(first);
        if let Some(last) = script.last() {
            failure.step = Some(StepRef {
                index: script.len(),
                keyword: last.action.keyword(),
                location: (&last.location).into(),
                text: last.source_text.to_string(),
            });
        }
        Err(failure)
    }

    async fn step(&mut self, action: &Action, deadline: Instant) -> StepResult {
        match action {
            Action::Send {
                data,
                chunks,
                delay,
                await_read,
            } => self.send(data, chunks, *delay, *await_read, deadline).await,
            Action::Recv { max, expect } => self.recv(*max, expect.as_ref(), deadline).await,
            Action::Expect(Expected::Data(data)) => self.expect(data, deadline).await,
            Action::Expect(Expected::Match { matcher, max }) => {
                self.expect_match(matcher, *max, deadline).await
            }
            Action::ExpectLine(matcher) => self.expect_line(matcher, deadline).await,
            Action::ExpectSilence(quiet) => self.expect_silence(*quiet).await,
            Action::SendFrame {
                framing,
                payload,
                header,
            } => {
                // A template was made into bytes before the step started.
                let payload = payload
                    .head(usize::MAX)
                    .map_err(|e| StepError::new(e.to_string()))?;
                let payload = &payload;
                let frame = match header {
                    Some(header) => self.json_header_frame(header, payload)?,
                    None => {
                        let mut frame = BytesMut::new();
                        framing
                            .encode(payload, &mut frame)
                            .map_err(|e| StepError::new(format!("cannot encode the frame: {e}")))?;
                        frame.freeze()
                    }
                };
                self.send(&Data::Bytes(frame), &[], None, false, deadline)
                    .await
            }
            Action::ExpectFrame {
                framing,
                payload,
                header,
            } => {
                self.expect_frame(framing, payload, header.as_ref(), deadline)
                    .await
            }
            Action::ExpectEof => self.expect_eof(deadline).await,
            Action::ExpectReset => self.expect_reset(deadline).await,
            Action::AwaitQueued(n) => self.await_queued(*n, deadline).await,
            Action::Shutdown(how) => self.shutdown(*how),
            Action::Close => match &self.conn {
                Conn::Tcp { stream, .. } => {
                    self.unread_at_close = unread_bytes(stream);
                    self.close();
                    Ok(())
                }
                Conn::Udp { .. } => {
                    self.close();
                    Ok(())
                }
                other => Err(not_open(other)),
            },
            Action::Sleep(duration) => {
                tokio::time::sleep(*duration).await;
                Ok(())
            }
            Action::Signal(name) => {
                self.context.signals.raise(name);
                Ok(())
            }
            Action::Wait(name) => self
                .timer
                .bound(deadline, self.context.signals.wait(name))
                .await
                .map_err(|_| StepError::timeout(format!("timed out waiting for signal `{name}`"))),
            Action::Connect => self.connect(deadline).await,
            Action::Hold => {
                self.held = Some(BytesMut::new());
                Ok(())
            }
            Action::Flush => self.flush(deadline).await,
            Action::AwaitRead => self.await_read(deadline).await,
        }
    }

    async fn connect(&mut self, deadline: Instant) -> StepResult {
        let (target, source) = match self.conn {
            Conn::NotConnected { target, source } => (target, source),
            _ => return Err(StepError::new("already connected")),
        };
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| StepError::new(format!("cannot create a socket: {e}")))?;
        // Buffer sizes must be set before the handshake to shape the window.
        apply_socket_options(socket2::SockRef::from(&socket), &self.buffer_options())
            .map_err(|e| StepError::new(format!("cannot set socket options: {e}")))?;
        if let Some(source) = source {
            // Port 0 at bind time would reserve a port for any destination; let
            // connect pick it for this one (IP_BIND_ADDRESS_NO_PORT).
            let _ = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::IpBindAddressNoPort,
                &true,
            );
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(|e| StepError::new(format!("cannot bind the client to {source}: {e}")))?;
        }
        let stream = match self.timer.bound(deadline, socket.connect(target)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                self.context.log.record(
                    &self.name,
                    EventKind::ConnectFailed {
                        peer: target,
                        error: e.to_string(),
                    },
                );
                return Err(StepError::new(format!("cannot connect to {target}: {e}")));
            }
            Err(_) => {
                return Err(StepError::timeout(format!(
                    "timed out connecting to {target}"
                )))
            }
        };
        apply_socket_options(socket2::SockRef::from(&stream), &self.options)
            .map_err(|e| StepError::new(format!("cannot set socket options: {e}")))?;
        let recorder = Recorder::for_new_connection(&self.context.log, Arc::clone(&self.name));
        let local = stream.local_addr().map_err(io_error)?;
        recorder.record(EventKind::Connect {
            conn: recorder.conn,
            local,
            peer: target,
        });
        self.conn = Conn::Tcp { stream, recorder };
        Ok(())
    }

    fn buffer_options(&self) -> SocketOptions {
        SocketOptions {
            recv_buffer: self.options.recv_buffer,
            send_buffer: self.options.send_buffer,
            ..SocketOptions::default()
        }
    }

    async fn send(
        &mut self,
        data: &Data,
        chunks: &[usize],
        delay: Option<Duration>,
        await_read: bool,
        deadline: Instant,
    ) -> StepResult {
        if self.write_closed {
            return Err(StepError::new(
                "cannot send: this actor already shut down its write side with an earlier `shutdown` step",
            ));
        }
        // A file slice is read here, piece by piece as it is written, so a large
        // payload never sits whole in memory.
        let mut reader = data.reader().map_err(data_error)?;
        if let Some(held) = self.held.as_mut() {
            // Held, not written: `flush` writes it all in one call.
            while reader.remaining() > 0 {
                held.extend_from_slice(&reader.next(usize::MAX).map_err(data_error)?);
            }
            return Ok(());
        }
        let started = self.step_started;
        let total = reader.remaining();
        let mut written = 0usize;
        let datagrams = matches!(self.conn, Conn::Udp { .. });
        let mut calls = 0usize;
        loop {
            let piece = match chunks.get(calls).or(chunks.last()) {
                Some(&size) => reader.next_exact(size),
                // A datagram is one call whatever its size; a stream without
                // `chunks` is written whole, one read piece after another.
                None if datagrams => reader.next_exact(usize::MAX),
                None => reader.next(usize::MAX),
            }
            .map_err(data_error)?;
            // Empty data is still one (empty) call: an empty datagram is a datagram.
            if piece.is_empty() && calls > 0 {
                break;
            }
            calls += 1;
            match &mut self.conn {
                Conn::Tcp { stream, recorder } => {
                    let before = written;
                    let result = self
                        .timer
                        .bound(
                            deadline,
                            recorder.write_all_counting(stream, &piece, &mut written),
                        )
                        .await;
                    self.sent_total += (written - before) as u64;
                    match result {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) if is_reset(&e) => {
                            return Err(StepError::new(format!(
                                "the peer reset the connection while we were sending: {e}"
                            )))
                        }
                        Ok(Err(e)) => return Err(StepError::new(format!("send failed: {e}"))),
                        Err(_) => {
                            return Err(StepError::timeout(self.slow_send(
                                written,
                                total,
                                started.elapsed(),
                            )))
                        }
                    }
                }
                Conn::Udp {
                    socket,
                    recorder,
                    local,
                    peer,
                    connected,
                } => {
                    let to = peer.ok_or_else(|| {
                        StepError::new(
                            "no datagram has arrived yet, so there is no peer to send to",
                        )
                    })?;
                    let sent = if *connected {
                        self.timer.bound(deadline, socket.send(&piece)).await
                    } else {
                        self.timer.bound(deadline, socket.send_to(&piece, to)).await
                    };
                    match sent {
                        Ok(Ok(_)) => recorder.record(EventKind::DatagramSent {
                            conn: recorder.conn,
                            from: *local,
                            to,
                            data: recorder.log.payload_shared(&piece),
                        }),
                        Ok(Err(e)) => return Err(StepError::new(format!("send failed: {e}"))),
                        Err(_) => return Err(StepError::timeout("timed out sending a datagram")),
                    }
                }
                other => return Err(not_open(other)),
            }
            if await_read && !chunks.is_empty() {
                // Each chunk reaches the peer's program as a read of its own.
                self.await_read(deadline).await?;
            }
            if reader.remaining() == 0 {
                break;
            }
            if let (Some(delay), false) = (delay, chunks.is_empty()) {
                tokio::time::sleep(delay).await;
            }
        }
        if await_read && chunks.is_empty() {
            self.await_read(deadline).await?;
        }
        Ok(())
    }

    /// What a send that ran out of time did: how much it wrote in how long, and
    /// where the rest is (the peer's receive queue, ours), from the kernel's table.
    fn slow_send(&self, written: usize, total: u64, elapsed: Duration) -> String {
        let mut message = format!(
            "timed out sending: {written} of {total} bytes written in {}",
            crate::duration::format_duration(elapsed)
        );
        if let Some((unsent, unread)) = self.queues() {
            let read = self.sent_total.saturating_sub(unsent + unread);
            message.push_str(&format!(
                "; the peer's program has read {read} of the {} bytes sent on this connection, \
                 {unread} wait unread in its receive queue and {unsent} in ours",
                self.sent_total
            ));
            if unread > 0 && read == 0 {
                message.push_str(" (it has not read anything: is it reading at all?)");
            } else if unread > 0 {
                message.push_str(" (it reads, but more slowly than this step's timeout allows)");
            }
        }
        message
    }

    /// Bytes not yet acknowledged in our send queue, and bytes unread in the peer's
    /// receive queue, from the kernel's socket table (loopback peers only).
    fn queues(&self) -> Option<(u64, u64)> {
        let (proto, local, peer) = self.endpoints()?;
        if !peer.ip().is_loopback() {
            return None;
        }
        let (ours, theirs) = sockets::pair(proto, local, peer).ok()?;
        Some((
            ours.map_or(0, |e| e.tx_queue),
            theirs.map_or(0, |e| e.rx_queue),
        ))
    }

    /// Protocol, local and peer address of the open socket.
    fn endpoints(&self) -> Option<(Proto, SocketAddr, SocketAddr)> {
        match &self.conn {
            Conn::Tcp { stream, .. } => Some((
                Proto::Tcp,
                stream.local_addr().ok()?,
                stream.peer_addr().ok()?,
            )),
            Conn::Udp { local, peer, .. } => Some((Proto::Udp, *local, (*peer)?)),
            _ => None,
        }
    }

    /// `flush`: everything held, in one write call (two messages, one read at the
    /// peer); the hold ends.
    async fn flush(&mut self, deadline: Instant) -> StepResult {
        let held = self.held.take().unwrap_or_default().freeze();
        if held.is_empty() {
            return Ok(());
        }
        self.send(&Data::Bytes(held), &[], None, false, deadline)
            .await
    }

    /// `await_read`: wait until the peer's program has read every byte this actor
    /// sent: nothing waits in our send queue (not yet acknowledged, so not yet in
    /// the peer's) and the peer's receive queue is empty. The queues come from the
    /// kernel's socket table, so the peer must be on this machine (loopback).
    async fn await_read(&mut self, deadline: Instant) -> StepResult {
        let Some((proto, local, peer)) = self.endpoints() else {
            return Err(match &self.conn {
                Conn::Udp { .. } => StepError::new(
                    "no datagram has arrived yet, so there is no peer whose reads to wait for",
                ),
                other => not_open(other),
            });
        };
        if !peer.ip().is_loopback() {
            return Err(StepError::new(format!(
                "`await_read` reads the peer's receive queue from this machine's socket table, \
                 so the peer must be on loopback; {peer} is not"
            )));
        }
        loop {
            let (ours, theirs) = sockets::pair(proto, local, peer).map_err(|e| {
                StepError::new(format!("cannot read the kernel's socket table: {e}"))
            })?;
            let unsent = ours.map_or(0, |e| e.tx_queue);
            let unread = theirs.map_or(0, |e| e.rx_queue);
            if unsent == 0 && unread == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepError::timeout(format!(
                    "timed out: the peer's program has not read everything sent: {unread} bytes \
                     wait in its receive queue and {unsent} in ours"
                )));
            }
            tokio::time::sleep(QUEUE_POLL).await;
        }
    }

    async fn recv(
        &mut self,
        max: usize,
        expect: Option<&Expected>,
        deadline: Instant,
    ) -> StepResult {
        // The loader made sure exact bytes fit in one read of `max`.
        let exact_data;
        let expect = match expect {
            None => None,
            Some(Expected::Data(data)) => {
                exact_data = Match::Exact(data.head(max).map_err(data_error)?);
                Some(&exact_data)
            }
            Some(Expected::Match { matcher, .. }) => Some(matcher),
        };
        let mut buf = vec![0u8; max];
        let exact = expect.and_then(Match::exact);
        let got = match &mut self.conn {
            Conn::Tcp { stream, recorder } => {
                match read_front(
                    &mut self.timer,
                    deadline,
                    stream,
                    recorder,
                    &mut self.peeked,
                    &mut buf,
                )
                .await
                {
                    Ok(Ok(n)) => Bytes::copy_from_slice(&buf[..n]),
                    Ok(Err(e)) => return Err(read_error(e, exact)),
                    Err(_) => {
                        return Err(StepError::timeout(format!(
                            "timed out: no bytes arrived for a recv of up to {max}"
                        ))
                        .bytes(exact.cloned(), None))
                    }
                }
            }
            Conn::Udp { .. } => self.recv_datagram(&mut buf, deadline, exact).await?,
            other => return Err(not_open(other)),
        };
        let Some(matcher) = expect else {
            return Ok(());
        };
        let mismatch = match matcher.match_whole(&got) {
            Ok(captures) => {
                self.captured(captures);
                return Ok(());
            }
            Err(mismatch) => mismatch,
        };
        let Some(expected) = exact else {
            let message = if got.is_empty() && matches!(self.conn, Conn::Tcp { .. }) {
                format!(
                    "recv returned 0 bytes (the peer closed the connection); expected {}",
                    matcher.describe()
                )
            } else {
                format!("one recv of up to {max} bytes: {}", mismatch.message)
            };
            return Err(StepError::new(message).bytes(None, Some(got)));
        };
        let message = if got.is_empty() && !expected.is_empty() {
            "recv returned 0 bytes: the peer closed the connection".to_owned()
        } else if got.len() != expected.len() {
            format!(
                "one recv of up to {max} bytes returned {} bytes, expected {}",
                got.len(),
                expected.len()
            )
        } else {
            format!(
                "one recv returned the expected length ({}) but different bytes",
                got.len()
            )
        };
        Err(StepError::new(message).bytes(Some(expected.clone()), Some(got)))
    }

    /// The step with its `{ template }` data made into bytes from the run's
    /// variables and addresses. A variable no step captured yet fails the step,
    /// naming the step that captures it.
    fn resolve(&self, action: &Action) -> Result<Action, StepError> {
        super::resolve::action(&self.context, action).map_err(StepError::new)
    }

    /// One json-header frame with the step's header: its strings expanded (`{md5}`
    /// and `{size}` of the body, variables, addresses; a string that is exactly
    /// `{size}` becomes a number), `file_size` added from the body unless the
    /// header gives one, which is sent as given, true or not.
    fn json_header_frame(
        &self,
        header: &serde_json::Map<String, serde_json::Value>,
        body: &Bytes,
    ) -> Result<Bytes, StepError> {
        use md5::Digest as _;
        let md5 = hex::encode(md5::Md5::digest(body));
        let size = body.len().to_string();
        let mut map = header.clone();
        for value in map.values_mut() {
            self.expand_header_value(value, &md5, &size)?;
        }
        map.entry("file_size")
            .or_insert_with(|| serde_json::Value::from(body.len() as u64));
        let text = serde_json::to_vec(&map)
            .map_err(|e| StepError::new(format!("cannot write the header: {e}")))?;
        let mut frame = BytesMut::with_capacity(4 + text.len() + body.len());
        frame.extend_from_slice(&(text.len() as i32).to_le_bytes());
        frame.extend_from_slice(&text);
        frame.extend_from_slice(body);
        Ok(frame.freeze())
    }

    fn expand_header_value(
        &self,
        value: &mut serde_json::Value,
        md5: &str,
        size: &str,
    ) -> Result<(), StepError> {
        match value {
            serde_json::Value::String(text) if text == "{size}" => {
                *value = serde_json::Value::from(size.parse::<u64>().unwrap_or(0));
            }
            serde_json::Value::String(text) if text.contains(['{', '}']) => {
                let template = crate::programs::placeholders::Template::parse_data(text, &|_| true)
                    .map_err(|e| StepError::new(format!("header value {text:?}: {}", e.message)))?;
                let addresses = self.context.addresses.get();
                let bytes = template
                    .expand_bytes(
                        &|server| addresses.and_then(|a| a.get(server).copied()),
                        &|name| match name {
                            "md5" => Some(Bytes::from(md5.to_owned())),
                            "size" => Some(Bytes::from(size.to_owned())),
                            other => self.context.variables.get(other),
                        },
                    )
                    .map_err(|name| {
                        StepError::new(super::resolve::missing_variable(
                            &self.context,
                            &name,
                            "before this step started",
                            super::resolve::ORDER_STEPS,
                        ))
                    })?;
                *value = serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned());
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.expand_header_value(item, md5, size)?;
                }
            }
            serde_json::Value::Object(map) => {
                for item in map.values_mut() {
                    self.expand_header_value(item, md5, size)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Makes a step's captures visible to every actor of the run.
    fn captured(&self, captures: Captures) {
        if !captures.is_empty() {
            self.context.variables.set(captures);
        }
    }

    /// Receives one datagram into `buf` (truncated to its size, as the kernel does).
    async fn recv_datagram(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        expect: Option<&Bytes>,
    ) -> Result<Bytes, StepError> {
        let Conn::Udp {
            socket,
            recorder,
            local,
            peer,
            connected,
        } = &mut self.conn
        else {
            return Err(StepError::new("not a UDP socket"));
        };
        let received = if *connected {
            self.timer
                .bound(deadline, socket.recv(buf))
                .await
                .map(|r| r.map(|n| (n, peer.unwrap_or(*local))))
        } else {
            self.timer.bound(deadline, socket.recv_from(buf)).await
        };
        match received {
            Ok(Ok((n, from))) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                recorder.record(EventKind::DatagramReceived {
                    conn: recorder.conn,
                    from,
                    to: *local,
                    data: recorder.log.payload_shared(&data),
                });
                if !*connected {
                    *peer = Some(from);
                }
                Ok(data)
            }
            Ok(Err(e)) => Err(StepError::new(format!(
                "receiving a datagram failed: {e} (is anything listening on the other side?)"
            ))),
            Err(_) => {
                Err(StepError::timeout("timed out: no datagram arrived")
                    .bytes(expect.cloned(), None))
            }
        }
    }

    async fn expect(&mut self, expected: &Data, deadline: Instant) -> StepResult {
        if let Conn::Udp { .. } = self.conn {
            // One datagram: more than 64 KiB can never match, so no more is read.
            let expected = expected.head(65_536 + 1).map_err(data_error)?;
            let mut buf = vec![0u8; 65_536];
            let got = self
                .recv_datagram(&mut buf, deadline, Some(&expected))
                .await?;
            if got == expected {
                return Ok(());
            }
            return Err(StepError::new(format!(
                "the datagram holds {} bytes that differ from the {} expected",
                got.len(),
                expected.len()
            ))
            .bytes(Some(expected.clone()), Some(got)));
        }
        let Conn::Tcp { stream, recorder } = &mut self.conn else {
            return Err(not_open(&self.conn));
        };
        let total = expected.len();
        // The expected bytes come in windows: all of in-memory data at once, a file
        // slice a piece at a time as the bytes to compare arrive.
        let mut source = expected.reader().map_err(data_error)?;
        let mut window = Bytes::new();
        let mut window_start = 0u64;
        // Every byte that arrived so far equals the expected prefix (we fail at the
        // first difference), so the bytes themselves need not be kept: a failure
        // rebuilds them from the expectation.
        let mut matched = 0u64;
        let size = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .clamp(1, EXPECT_READ);
        if self.read_buf.len() < size {
            self.read_buf.resize(size, 0);
        }
        let buf = &mut self.read_buf;
        while matched < total {
            if matched == window_start + window.len() as u64 {
                window_start = matched;
                window = source.next(usize::MAX).map_err(data_error)?;
            }
            let in_window = usize::try_from(matched - window_start).unwrap_or(usize::MAX);
            // Never ask for more than is still expected: later steps own later bytes.
            let want = (window.len() - in_window).min(buf.len());
            let n = match read_front(
                &mut self.timer,
                deadline,
                stream,
                recorder,
                &mut self.peeked,
                &mut buf[..want],
            )
            .await
            {
                Ok(Ok(0)) => {
                    return Err(StepError::new(format!(
                        "the peer closed the connection after {matched} of {total} expected bytes",
                    ))
                    .bytes_of(expected, matched, &[]))
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(read_error(e, None).bytes_of(expected, matched, &[])),
                Err(_) => {
                    return Err(StepError::timeout(format!(
                        "timed out after {matched} of {total} expected bytes arrived",
                    ))
                    .bytes_of(expected, matched, &[]))
                }
            };
            // Fail as soon as the bytes diverge instead of waiting for the rest.
            if buf[..n] != window[in_window..in_window + n] {
                return Err(
                    StepError::new("the bytes that arrived differ from the expected ones")
                        .bytes_of(expected, matched, &buf[..n]),
                );
            }
            matched += n as u64;
        }
        Ok(())
    }

    /// `expect = MATCH` for everything but exact data: `len` reads exactly its
    /// length; a regex, `contains` or `json` peeks at the stream until the bytes so
    /// far match and then reads only through the match, so the rest stays queued
    /// for the next step (and for `await_queued`, `recv`, `unread`).
    async fn expect_match(&mut self, matcher: &Match, max: usize, deadline: Instant) -> StepResult {
        if let Conn::Udp { .. } = self.conn {
            return self.expect_datagram(matcher, deadline, |d| d).await;
        }
        let mut judge = matcher.stream(max);
        let limit = judge.limit();
        let prefix_safe = !matches!(matcher, Match::Regex(_));
        let outcome = self
            .peek_until(limit, prefix_safe, deadline, |bytes| judge.advance(bytes))
            .await;
        match outcome {
            Ok(captures) => {
                self.captured(captures);
                Ok(())
            }
            Err((end, arrived)) => Err(match end {
                PeekEnd::Failed(error) => error,
                PeekEnd::Eof => StepError::mismatch(judge.give_up(&arrived, GiveUp::Eof), &arrived),
                PeekEnd::Timeout => {
                    let mut e =
                        StepError::mismatch(judge.give_up(&arrived, GiveUp::Timeout), &arrived);
                    e.timed_out = true;
                    e
                }
            }),
        }
    }

    /// `expect_line = MATCH`: one line, found by peeking so only the line and its
    /// end are read; matched without its LF (and a CR before it).
    async fn expect_line(&mut self, matcher: &Match, deadline: Instant) -> StepResult {
        if let Conn::Udp { .. } = self.conn {
            return self
                .expect_datagram(matcher, deadline, |d| {
                    let d = d.strip_suffix(b"\n").unwrap_or(d);
                    d.strip_suffix(b"\r").unwrap_or(d)
                })
                .await;
        }
        let mut lines = LineSplitter::default();
        let outcome = self
            .peek_until(lines.limit(), true, deadline, |bytes| {
                match lines.advance(bytes) {
                    Ok(None) => Progress::NeedMore {
                        up_to: matcher::MAX_LINE + 2,
                    },
                    Ok(Some(line)) => match matcher.match_whole(&bytes[..line.content]) {
                        Ok(captures) => Progress::Matched {
                            consumed: line.consumed,
                            captures,
                        },
                        Err(mismatch) => Progress::Failed(Mismatch {
                            message: format!(
                                "the line {}: {}",
                                matcher::quote(&bytes[..line.content]),
                                mismatch.message
                            ),
                            ..mismatch
                        }),
                    },
                    Err(too_long) => Progress::Failed(too_long),
                }
            })
            .await;
        match outcome {
            Ok(captures) => {
                self.captured(captures);
                Ok(())
            }
            Err((PeekEnd::Failed(error), _)) => Err(error),
            Err((PeekEnd::Eof, arrived)) => Err(StepError::new(format!(
                "the peer closed the connection after {} bytes without a line end (LF); expected a line matching {}",
                arrived.len(),
                matcher.describe()
            ))
            .bytes(None, Some(arrived))),
            Err((PeekEnd::Timeout, arrived)) => Err(StepError::timeout(format!(
                "timed out after {} bytes without a line end (LF); expected a line matching {}",
                arrived.len(),
                matcher.describe()
            ))
            .bytes(None, Some(arrived))),
        }
    }

    /// The next datagram, cut by `view` (a line's end), judged whole.
    async fn expect_datagram(
        &mut self,
        matcher: &Match,
        deadline: Instant,
        view: impl Fn(&[u8]) -> &[u8],
    ) -> StepResult {
        let mut buf = vec![0u8; 65_536];
        let got = self
            .recv_datagram(&mut buf, deadline, matcher.exact())
            .await?;
        match matcher.match_whole(view(&got)) {
            Ok(captures) => {
                self.captured(captures);
                Ok(())
            }
            Err(mismatch) => Err(
                StepError::new(format!("the datagram: {}", mismatch.message))
                    .bytes(mismatch.expected, Some(got)),
            ),
        }
    }

    /// Judges the front of the TCP stream with `judge` until it gives a verdict, then
    /// reads exactly the bytes it consumed. Bytes an earlier peek saw and no read
    /// took are judged first, with no system call (see [`PeekedAhead`]); only when
    /// `judge` needs more does the step peek, window by window. Each call of `judge`
    /// sees the previous bytes plus what arrived since.
    ///
    /// `prefix_safe`: whether a verdict on the first bytes of the queue stands
    /// whatever follows them (a line, `contains`, `json`). A regex's match can grow
    /// with the bytes after it (`\d+`), so a regex is only shown bytes that end
    /// where the queue ended when they were peeked (or at `limit`), as one read of
    /// `limit` bytes would have returned them: a peek that filled a smaller window
    /// is made again with a larger one before the regex sees it.
    async fn peek_until(
        &mut self,
        limit: usize,
        prefix_safe: bool,
        deadline: Instant,
        mut judge: impl FnMut(&[u8]) -> Progress,
    ) -> Result<Captures, (PeekEnd, Bytes)> {
        let Conn::Tcp { stream, recorder } = &mut self.conn else {
            return Err((PeekEnd::Failed(not_open(&self.conn)), Bytes::new()));
        };
        let conn = recorder.conn;
        let peeked = &mut self.peeked;
        let limit = limit.max(1);
        let mut window = PEEK_START.min(limit);
        // How many bytes from the queue's front `judge` has seen.
        let mut judged = 0;
        loop {
            let front = peeked.front(conn);
            let known = front.len().min(limit);
            let judgeable = prefix_safe || known == limit || peeked.saw_queue_end(conn);
            if known > judged && judgeable {
                judged = known;
                let bytes = &front[..known];
                match judge(bytes) {
                    Progress::NeedMore { .. } if known == limit => {
                        // The matchers give up at their limit; never spin here.
                        let got = Bytes::copy_from_slice(bytes);
                        let error = StepError::new(format!(
                            "no verdict within the step's limit of {limit} bytes"
                        ))
                        .bytes(None, Some(got.clone()));
                        return Err((PeekEnd::Failed(error), got));
                    }
                    Progress::NeedMore { .. } => {}
                    Progress::Failed(mismatch) => {
                        let got = Bytes::copy_from_slice(bytes);
                        return Err((PeekEnd::Failed(StepError::mismatch(mismatch, &got)), got));
                    }
                    Progress::Matched { consumed, captures } => {
                        take_judged(stream, recorder, peeked, &mut self.read_buf, consumed)
                            .await
                            .map_err(|e| (PeekEnd::Failed(e), Bytes::new()))?;
                        return Ok(captures);
                    }
                }
            }
            // Peek a window larger than what is known, so new bytes can show. Known
            // bytes not judged yet make the peek return at once (they are queued).
            while window <= known && window < limit {
                window = (window * 2).min(limit);
            }
            let buf = peeked.peek_buffer(window);
            let result = self
                .timer
                .bound(deadline, peek_more(stream, buf, judged))
                .await;
            let arrived = |peeked: &PeekedAhead| {
                let front = peeked.front(conn);
                Bytes::copy_from_slice(&front[..front.len().min(limit)])
            };
            match result {
                Err(_) => return Err((PeekEnd::Timeout, arrived(peeked))),
                Ok(Ok(None)) => return Err((PeekEnd::Eof, arrived(peeked))),
                Ok(Err(e)) => {
                    let got = arrived(peeked);
                    peeked.forget();
                    if is_reset(&e) {
                        recorder.record(EventKind::PeerReset {
                            conn: recorder.conn,
                        });
                    }
                    return Err((PeekEnd::Failed(read_error(e, None)), got));
                }
                Ok(Ok(Some(n))) => peeked.peeked(conn, n, window),
            }
        }
    }

    /// `expect_silence`: nothing arrives (no byte, no end of stream, no datagram)
    /// for `quiet`. Bytes that arrived earlier and wait unread fail it too: the
    /// peer was not silent.
    async fn expect_silence(&mut self, quiet: Duration) -> StepResult {
        let until = Instant::now() + quiet;
        let mut probe = [0u8; UNREAD_QUOTE];
        let noise = |n: usize, probe: &[u8], queued: usize| {
            StepError::new(format!(
                "expected {} of silence, but {queued} bytes arrived",
                crate::duration::format_duration(quiet)
            ))
            .bytes(None, Some(Bytes::copy_from_slice(&probe[..n])))
        };
        match &mut self.conn {
            Conn::Tcp { stream, .. } => loop {
                let ready = match timeout_at(until, stream.ready(Interest::READABLE)).await {
                    Err(_) => return Ok(()),
                    Ok(Err(e)) => return Err(read_error(e, None)),
                    Ok(Ok(ready)) => ready,
                };
                match stream.try_io(Interest::READABLE, || peek(stream, &mut probe)) {
                    Ok(0) => {
                        return Err(StepError::new(format!(
                            "expected {} of silence, but the peer closed the connection",
                            crate::duration::format_duration(quiet)
                        )))
                    }
                    Ok(n) => {
                        let queued = queued_bytes(stream).unwrap_or(n).max(n);
                        return Err(noise(n, &probe, queued));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if ready.is_read_closed() {
                            return Err(StepError::new(format!(
                                "expected {} of silence, but the peer closed the connection",
                                crate::duration::format_duration(quiet)
                            )));
                        }
                    }
                    Err(e) if is_reset(&e) => {
                        return Err(StepError::new(format!(
                            "expected {} of silence, but the peer reset the connection",
                            crate::duration::format_duration(quiet)
                        )))
                    }
                    Err(e) => return Err(read_error(e, None)),
                }
            },
            Conn::Udp { socket, .. } => {
                let mut buf = vec![0u8; 65_536];
                match timeout_at(until, socket.peek_from(&mut buf)).await {
                    Err(_) => Ok(()),
                    Ok(Ok((n, from))) => Err(StepError::new(format!(
                        "expected {} of silence, but a datagram of {n} bytes arrived from {from}",
                        crate::duration::format_duration(quiet)
                    ))
                    .bytes(None, Some(Bytes::copy_from_slice(&buf[..n])))),
                    Ok(Err(e)) => Err(StepError::new(format!(
                        "receiving failed while waiting for silence: {e}"
                    ))),
                }
            }
            other => Err(not_open(other)),
        }
    }

    async fn expect_frame(
        &mut self,
        framing: &FramingConfig,
        payload: &Match,
        header: Option<&Match>,
        deadline: Instant,
    ) -> StepResult {
        let mut codec = framing.codec();
        if let Conn::Udp { .. } = self.conn {
            let mut buf = vec![0u8; 65_536];
            let datagram = self
                .recv_datagram(&mut buf, deadline, payload.exact())
                .await?;
            let mut bytes = BytesMut::from(&datagram[..]);
            let frame = match codec.decode_eof(&mut bytes) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    return Err(StepError::new("the datagram holds no frame")
                        .bytes(payload.exact().cloned(), Some(datagram)))
                }
                Err(e) => {
                    return Err(StepError::new(format!(
                        "the datagram is not a valid {} frame: {e}",
                        framing.kind.name()
                    ))
                    .bytes(None, Some(datagram)))
                }
            };
            if !bytes.is_empty() {
                return Err(StepError::new(format!(
                    "the datagram holds {} bytes after its frame",
                    bytes.len()
                ))
                .bytes(None, Some(datagram)));
            }
            compare_header(header, &frame)?;
            let captures = compare_frame(payload, frame.payload)?;
            self.captured(captures);
            return Ok(());
        }
        let Conn::Tcp { stream, recorder } = &mut self.conn else {
            return Err(not_open(&self.conn));
        };
        let mut buffered = BytesMut::new();
        let mut raw = BytesMut::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match codec.decode(&mut buffered) {
                Ok(Some(frame)) => {
                    compare_header(header, &frame)?;
                    let captures = compare_frame(payload, frame.payload)?;
                    self.captured(captures);
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(StepError::new(format!(
                        "not a valid {} frame: {e}",
                        framing.kind.name()
                    ))
                    .bytes(None, Some(raw.freeze())))
                }
            }
            // Read no further than this frame's end, so the next step sees its bytes.
            let want = framing.exact_read_hint(&buffered).clamp(1, buf.len());
            let n = match read_front(
                &mut self.timer,
                deadline,
                stream,
                recorder,
                &mut self.peeked,
                &mut buf[..want],
            )
            .await
            {
                Ok(Ok(0)) => {
                    return Err(StepError::new(format!(
                        "the peer closed the connection inside a {} frame ({} bytes of it arrived)",
                        framing.kind.name(),
                        raw.len()
                    ))
                    .bytes(None, Some(raw.freeze())))
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(read_error(e, None)),
                Err(_) => {
                    return Err(StepError::timeout(format!(
                        "timed out waiting for a whole {} frame ({} bytes of it arrived)",
                        framing.kind.name(),
                        raw.len()
                    ))
                    .bytes(None, Some(raw.freeze())))
                }
            };
            buffered.extend_from_slice(&buf[..n]);
            raw.extend_from_slice(&buf[..n]);
        }
    }

    async fn expect_eof(&mut self, deadline: Instant) -> StepResult {
        let Conn::Tcp { stream, recorder } = &mut self.conn else {
            return Err(not_open(&self.conn));
        };
        let mut buf = [0u8; 256];
        match read_front(
            &mut self.timer,
            deadline,
            stream,
            recorder,
            &mut self.peeked,
            &mut buf,
        )
        .await
        {
            Ok(Ok(0)) => Ok(()),
            Ok(Ok(n)) => Err(StepError::new(format!(
                "expected the peer to close, but {n} more bytes arrived"
            ))
            .bytes(Some(Bytes::new()), Some(Bytes::copy_from_slice(&buf[..n])))),
            Ok(Err(e)) if is_reset(&e) => Err(StepError::new(
                "expected an orderly close (FIN), but the peer reset the connection",
            )),
            Ok(Err(e)) => Err(StepError::new(format!("read failed: {e}"))),
            Err(_) => Err(StepError::timeout(
                "timed out: the peer kept the connection open",
            )),
        }
    }

    async fn expect_reset(&mut self, deadline: Instant) -> StepResult {
        let Conn::Tcp { stream, recorder } = &mut self.conn else {
            return Err(not_open(&self.conn));
        };
        let mut buf = [0u8; 256];
        match read_front(
            &mut self.timer,
            deadline,
            stream,
            recorder,
            &mut self.peeked,
            &mut buf,
        )
        .await
        {
            Ok(Err(e)) if is_reset(&e) => Ok(()),
            Ok(Ok(0)) => Err(StepError::new(
                "expected a reset, but the peer closed the connection in order (FIN)",
            )),
            Ok(Ok(n)) => Err(
                StepError::new(format!("expected a reset, but {n} bytes arrived"))
                    .bytes(None, Some(Bytes::copy_from_slice(&buf[..n]))),
            ),
            Ok(Err(e)) => Err(StepError::new(format!(
                "expected a reset, but the read failed with: {e}"
            ))),
            Err(_) => Err(StepError::timeout(
                "timed out: the connection was not reset",
            )),
        }
    }

    async fn await_queued(&mut self, want: usize, deadline: Instant) -> StepResult {
        loop {
            let queued = match &self.conn {
                Conn::Tcp { stream, .. } => queued_bytes(stream),
                Conn::Udp { socket, .. } => queued_bytes(socket),
                other => return Err(not_open(other)),
            }
            .map_err(io_error)?;
            if queued >= want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepError::timeout(format!(
                    "timed out with {queued} of {want} bytes in the receive queue"
                )));
            }
            tokio::time::sleep(QUEUE_POLL).await;
        }
    }

    fn shutdown(&mut self, how: ShutdownHow) -> StepResult {
        let Conn::Tcp { stream, recorder } = &self.conn else {
            return Err(not_open(&self.conn));
        };
        let std_how = match how {
            ShutdownHow::Write => std::net::Shutdown::Write,
            ShutdownHow::Read => std::net::Shutdown::Read,
            ShutdownHow::Both => std::net::Shutdown::Both,
        };
        socket2::SockRef::from(stream)
            .shutdown(std_how)
            .map_err(|e| StepError::new(format!("shutdown failed: {e}")))?;
        recorder.record(EventKind::Shutdown {
            conn: recorder.conn,
            how,
        });
        if how != ShutdownHow::Read {
            self.write_closed = true;
        }
        if how != ShutdownHow::Write {
            // Whether the kernel keeps or drops what is queued after SHUT_RD is
            // its business; nothing remembered is trusted past it.
            self.peeked.forget();
        }
        Ok(())
    }

    fn close(&mut self) {
        let reset = self.options.linger == Some(Duration::ZERO);
        match std::mem::replace(&mut self.conn, Conn::Closed) {
            Conn::Tcp { stream, recorder } => {
                drop(stream);
                recorder.record(EventKind::Close {
                    conn: recorder.conn,
                    reset,
                });
            }
            Conn::Udp { recorder, .. } => recorder.record(EventKind::Close {
                conn: recorder.conn,
                reset: false,
            }),
            other => self.conn = other,
        }
    }
}

impl Actor {
    /// Hands the socket to the run, which closes it at cleanup (see
    /// [`RunContext::parked`]).
    fn park(&mut self) {
        if matches!(self.conn, Conn::Tcp { .. } | Conn::Udp { .. }) {
            let conn = std::mem::replace(&mut self.conn, Conn::Closed);
            let mut parked = self
                .context
                .parked
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            parked.push(conn);
        }
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        if matches!(self.conn, Conn::Tcp { .. } | Conn::Udp { .. }) {
            self.close();
        }
    }
}

/// Splits data into write calls of the given sizes; the last size repeats.
pub fn split_chunks(data: &Bytes, chunks: &[usize]) -> Vec<Bytes> {
    if chunks.is_empty() || data.is_empty() {
        return vec![data.clone()];
    }
    let mut pieces = Vec::new();
    let mut offset = 0;
    let mut sizes = chunks
        .iter()
        .copied()
        .chain(std::iter::repeat(chunks[chunks.len() - 1]));
    while offset < data.len() {
        let size = sizes.next().unwrap_or(1).max(1);
        let end = (offset + size).min(data.len());
        pieces.push(data.slice(offset..end));
        offset = end;
    }
    pieces
}

fn compare_frame(expected: &Match, got: Bytes) -> Result<Captures, StepError> {
    expected.match_whole(&got).map_err(|mismatch| {
        let message = match expected.exact() {
            Some(bytes) => format!(
                "the frame's payload ({} bytes) differs from the expected one ({} bytes)",
                got.len(),
                bytes.len()
            ),
            None => format!("the frame's payload: {}", mismatch.message),
        };
        StepError::new(message).bytes(mismatch.expected, Some(got))
    })
}

/// A json-header frame's header against `expect_frame`'s `header` table.
fn compare_header(expected: Option<&Match>, frame: &crate::framing::Frame) -> StepResult {
    let Some(Match::Json(want)) = expected else {
        return Ok(());
    };
    let have = serde_json::Value::Object(frame.header.clone().unwrap_or_default());
    crate::matcher::json_subset(want, &have, &mut String::new()).map_err(|why| {
        StepError::new(format!("the frame's header {have}: {why}"))
            .bytes(None, Some(frame.payload.clone()))
    })
}

/// How many bytes wait unread on `stream`, with the first of them; `None` when
/// nothing does (or the socket cannot tell).
fn unread_bytes(stream: &TcpStream) -> Option<(usize, Bytes)> {
    let queued = queued_bytes(stream).ok().filter(|&n| n > 0)?;
    let mut first = [0u8; UNREAD_QUOTE];
    let n = peek(stream, &mut first).unwrap_or(0);
    Some((queued, Bytes::copy_from_slice(&first[..n])))
}

/// One read from the front of `stream`'s receive queue by the step's `deadline`,
/// with the bytes it took dropped from what the last peek remembered, so that
/// memory stays the queue's front. Every TCP read of a scripted actor goes through
/// here or [`take_judged`].
async fn read_front(
    timer: &mut StepTimer,
    deadline: Instant,
    stream: &mut TcpStream,
    recorder: &Recorder,
    peeked: &mut PeekedAhead,
    buf: &mut [u8],
) -> Result<std::io::Result<usize>, TimedOut> {
    let read = async {
        let result = recorder.read(stream, buf).await;
        match &result {
            Ok(n) => peeked.took(recorder.conn, *n),
            Err(_) => peeked.forget(),
        }
        result
    };
    timer.bound(deadline, read).await
}

/// Reads the `consumed` bytes a peeking step judged (they are queued, so the reads
/// return at once), at most [`EXPECT_READ`] bytes a call into `scratch`, and checks
/// each piece against the bytes judged: the remembered front must be the kernel's,
/// and a difference is reported as the bug it would be rather than passed.
async fn take_judged(
    stream: &mut TcpStream,
    recorder: &Recorder,
    peeked: &mut PeekedAhead,
    scratch: &mut Vec<u8>,
    consumed: usize,
) -> Result<(), StepError> {
    let mut read = 0;
    while read < consumed {
        let want = (consumed - read).min(EXPECT_READ);
        if scratch.len() < want {
            scratch.resize(want, 0);
        }
        let n = match recorder.read(stream, &mut scratch[..want]).await {
            Ok(n) => n,
            Err(e) => {
                peeked.forget();
                return Err(read_error(e, None));
            }
        };
        let judged = &peeked.front(recorder.conn)[..want];
        if n == 0 || scratch[..n] != judged[..n] {
            let error = StepError::new(format!(
                "internal error: the bytes read at offset {read} of the {consumed} the step matched differ from the peeked ones (please report this)"
            ))
            .bytes(
                Some(Bytes::copy_from_slice(judged)),
                Some(Bytes::copy_from_slice(&scratch[..n])),
            );
            peeked.forget();
            return Err(error);
        }
        peeked.took(recorder.conn, n);
        read += n;
    }
    Ok(())
}

/// Waits until a peek of `buf` shows more than the `have` bytes seen before (or
/// fills `buf`); `None` once the peer closed its side and nothing more is queued.
/// Peeking leaves the bytes in the socket, so a step reads only what it consumes.
async fn peek_more(
    stream: &TcpStream,
    buf: &mut [u8],
    have: usize,
) -> std::io::Result<Option<usize>> {
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        // Returning WouldBlock from the closure clears the readiness tokio saw, so
        // the next `ready` waits for new bytes instead of spinning.
        let peeked = stream.try_io(Interest::READABLE, || {
            let n = peek(stream, buf)?;
            if n > have || n == buf.len() {
                Ok(Some(n))
            } else if n == 0 || ready.is_read_closed() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::WouldBlock.into())
            }
        });
        match peeked {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

fn read_error(e: std::io::Error, expected: Option<&Bytes>) -> StepError {
    let message = if is_reset(&e) {
        format!("the peer reset the connection: {e}")
    } else {
        format!("read failed: {e}")
    };
    StepError::new(message).bytes(expected.cloned(), None)
}

/// A file slice that could not be read when its step ran.
fn data_error(e: std::io::Error) -> StepError {
    StepError::new(e.to_string())
}

fn io_error(e: std::io::Error) -> StepError {
    StepError::new(e.to_string())
}

fn not_open(conn: &Conn) -> StepError {
    match conn {
        Conn::Closed => StepError::new("the socket was already closed by an earlier `close` step"),
        Conn::NotConnected { .. } => {
            StepError::new("not connected yet: this step comes before the `connect` step")
        }
        Conn::Tcp { .. } => StepError::new("this step needs a UDP socket"),
        Conn::Udp { .. } => StepError::new("this step needs a TCP connection"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_repeat_the_last_size_until_the_data_is_used_up() {
        let data = Bytes::from_static(b"abcdefghij");
        let lens: Vec<usize> = split_chunks(&data, &[1, 2, 3])
            .iter()
            .map(Bytes::len)
            .collect();
        assert_eq!(lens, vec![1, 2, 3, 3, 1]);
        let joined: Vec<u8> = split_chunks(&data, &[4]).concat();
        assert_eq!(joined, b"abcdefghij");
    }
}
