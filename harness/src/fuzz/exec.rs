//! The lean executor: one fuzz input replayed over one TCP connection to a target
//! that is already running, without the scenario runner (no plan, no actors, no
//! event stream), so an execution costs a connect, the writes and the reads.
//!
//! What the server did is summed up as a short sequence of [`Reply`] classes, one per
//! read plus the connection's end; the corpus keeps inputs whose sequence shows a
//! transition between classes never seen before (AFLNet's idea of protocol state,
//! with the reply class standing in for a response code).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::input::{Input, Op};
use crate::net::is_reset;
use crate::runner::split_chunks;
use crate::vocab::Proto;

/// The wait of a read once the execution has stalled: long enough to take what
/// already sits in the socket, not to wait for more.
const NO_WAIT: Duration = Duration::from_micros(50);

/// A send's first pieces follow its chunk sizes and pauses; the rest goes in one
/// write, so a rechunked 64 KiB payload costs 16 writes, not 65,536. Each write is
/// a segment the kernel carries to the server, the largest part of an execution's
/// cost; sixteen pieces already split any header and its payload every way.
const MAX_PIECES: usize = 16;

/// The pause of a rechunked send separates its first pieces only; later pieces
/// follow at once. The first gaps already show the server a frame that arrives in
/// parts; fifty more would only make the execution fifty times as long.
const MAX_PAUSED_PIECES: usize = 8;

/// Reply windows shorter than this are waited out by checking the socket between
/// scheduler turns rather than with a timer (whose resolution is a millisecond).
pub const SPIN_BELOW: Duration = Duration::from_millis(2);

/// Most bytes drained at the end of an execution.
const MAX_DRAIN: usize = 1 << 20;

/// What a read (or the end of a connection) saw, compact enough to be a corpus key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reply {
    /// Nothing arrived within the reply window.
    Nothing,
    /// Bytes arrived: how many (as a power-of-two bucket), the first byte's class,
    /// and whether fewer than the seed read there.
    Data { bucket: u8, first: u8, short: bool },
    /// The server closed its side.
    Eof,
    /// The server reset the connection (or a write found it gone).
    Reset,
    /// The connection could not be made.
    Refused,
    /// The connection was still open when the client finished.
    Open,
}

impl Reply {
    fn data(bytes: &[u8], want: usize) -> Self {
        let bucket = (usize::BITS - bytes.len().leading_zeros()) as u8;
        let first = match bytes.first() {
            Some(b) if b.is_ascii_digit() => 1,
            Some(b) if b.is_ascii_alphabetic() => 2,
            Some(b) if b.is_ascii_punctuation() || b.is_ascii_whitespace() => 3,
            Some(0) => 4,
            Some(b) if *b < 0x20 => 5,
            Some(b) if *b >= 0x80 => 6,
            _ => 0,
        };
        Reply::Data {
            bucket,
            first,
            short: bytes.len() < want,
        }
    }

    /// Whether this read got an answer.
    pub fn answered(self) -> bool {
        matches!(self, Reply::Data { .. })
    }
}

/// What one execution observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// One class per read op that ran, then the end of the connection.
    pub replies: Vec<Reply>,
    /// Reads that got nothing within the reply window.
    pub stalls: usize,
    /// Whether the connection could not be made at all.
    pub refused: bool,
}

/// How long an execution waits.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// Each read waits this long for a first byte, and the connection's end this
    /// long after the client's half-close; no answer is a class, not an error.
    pub reply: Duration,
    /// Connecting.
    pub connect: Duration,
}

/// Replays `input` against the server at `addr` (one TCP connection, or UDP
/// datagrams). Never fails: what went wrong is the observation.
pub async fn execute(
    addr: SocketAddr,
    proto: Proto,
    input: &Input,
    windows: Windows,
) -> Observation {
    match proto {
        Proto::Tcp => execute_tcp(addr, input, windows).await,
        Proto::Udp => execute_udp(addr, input, windows).await,
    }
}

async fn execute_tcp(addr: SocketAddr, input: &Input, windows: Windows) -> Observation {
    let mut observation = Observation::default();
    let stream = match tokio::time::timeout(windows.connect, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        _ => {
            observation.refused = true;
            observation.replies.push(Reply::Refused);
            return observation;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buffer: vec![0; 64 * 1024],
    };
    let mut ended = false;
    // After the first read that got nothing, the server is waiting for bytes the
    // mutation took away; later reads only take what has already arrived, so an
    // execution waits out at most one reply window.
    let mut window = windows.reply;
    for op in &input.ops {
        match op {
            Op::Write {
                bytes,
                chunks,
                pause,
            } => {
                if let Err(reply) = conn.write(bytes, chunks, *pause).await {
                    observation.replies.push(reply);
                    return observation;
                }
            }
            Op::Frame { chunks, pause, .. } => {
                let bytes = op.wire_bytes();
                if let Err(reply) = conn.write(&bytes, chunks, *pause).await {
                    observation.replies.push(reply);
                    return observation;
                }
            }
            Op::Read { want } => {
                let reply = conn.read(*want, window).await;
                observation.replies.push(reply);
                match reply {
                    Reply::Nothing => {
                        observation.stalls += 1;
                        window = NO_WAIT;
                    }
                    Reply::Eof | Reply::Reset => return observation,
                    _ => {}
                }
            }
            Op::ReadEnd => {
                let reply = conn.read_end(windows.reply).await;
                observation.replies.push(reply);
                if reply != Reply::Open {
                    return observation;
                }
            }
            Op::Shutdown(how) => {
                use crate::event::ShutdownHow;
                let how = match how {
                    ShutdownHow::Write => std::net::Shutdown::Write,
                    ShutdownHow::Read => std::net::Shutdown::Read,
                    ShutdownHow::Both => std::net::Shutdown::Both,
                };
                let _ = socket2::SockRef::from(&conn.stream).shutdown(how);
            }
            Op::Close => {
                ended = true;
                break;
            }
            Op::Reset => {
                let _ = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
                ended = true;
                break;
            }
            Op::Pause(d) => tokio::time::sleep(*d).await,
        }
    }
    if !ended {
        // Half-close, so a server that reads to the end answers and closes now
        // instead of after a timeout: the execution ends as soon as the server does.
        let _ = conn.stream.shutdown().await;
        observation.replies.push(conn.read_end(windows.reply).await);
    }
    observation
}

struct Conn {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Conn {
    async fn write(
        &mut self,
        bytes: &[u8],
        chunks: &[usize],
        pause: Duration,
    ) -> Result<(), Reply> {
        let pieces = split_chunks(&Bytes::copy_from_slice(bytes), chunks);
        let mut written = 0;
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 && i < MAX_PAUSED_PIECES && !pause.is_zero() {
                pause_between_pieces(pause).await;
            }
            let piece = if i + 1 == MAX_PIECES {
                &bytes[written..]
            } else {
                &piece[..]
            };
            written += piece.len();
            if let Err(e) = self.stream.write_all(piece).await {
                return Err(if is_reset(&e) {
                    Reply::Reset
                } else {
                    Reply::Eof
                });
            }
            if i + 1 == MAX_PIECES {
                break;
            }
        }
        Ok(())
    }

    /// Waits up to `window` for the answer's first bytes, then takes what follows
    /// it at once, up to `want` bytes. A shorter answer is a class of its own, not
    /// a reason to wait: a timer costs a millisecond, many executions' worth. Like
    /// the seed's `expect`, it never reads past `want` bytes, so two answers that
    /// arrive together are still read by two reads.
    async fn read(&mut self, want: usize, window: Duration) -> Reply {
        let want = want.clamp(1, self.buffer.len());
        let n = match self.first_read(want, window).await {
            Err(_) => return Reply::Nothing,
            Ok(Ok(0)) => return Reply::Eof,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return read_error(&e),
        };
        let mut got = self.buffer[..n].to_vec();
        // The rest of an answer written in pieces is a few microseconds behind on
        // loopback: give it a few turns of the scheduler, not a timer.
        let mut turns = 0;
        while got.len() < want && turns < 4 {
            let room = want - got.len();
            match self.stream.try_read(&mut self.buffer[..room]) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&self.buffer[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    turns += 1;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        Reply::data(&got, want)
    }

    /// Drains whatever the server still sends until it ends the connection or a
    /// window passes in silence.
    /// A server that never stops talking counts as open after [`MAX_DRAIN`] bytes.
    async fn read_end(&mut self, window: Duration) -> Reply {
        let mut drained = 0;
        let room = self.buffer.len();
        while drained < MAX_DRAIN {
            match self.first_read(room, window).await {
                Err(_) => return Reply::Open,
                Ok(Ok(0)) => return Reply::Eof,
                Ok(Ok(n)) => drained += n,
                Ok(Err(e)) => return read_error(&e),
            }
        }
        Reply::Open
    }

    /// One read of at most `max` bytes, waiting at most `window` (`Err` when it
    /// passed). A window under [`SPIN_BELOW`] is shorter than the timer's
    /// millisecond: the wait checks the socket between turns of the scheduler
    /// instead, which lets an in-process server run and keeps a stall at the
    /// window it was calibrated to. Its end is one more look at the socket's
    /// readiness, never a timer: tokio rounds a timer up to the next millisecond,
    /// which would cost a stalled execution a millisecond per read.
    async fn first_read(&mut self, max: usize, window: Duration) -> Result<io::Result<usize>, ()> {
        if window >= SPIN_BELOW {
            return tokio::time::timeout(window, self.stream.read(&mut self.buffer[..max]))
                .await
                .map_err(|_| ());
        }
        let started = std::time::Instant::now();
        loop {
            match self.stream.try_read(&mut self.buffer[..max]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Ok(other),
            }
            if started.elapsed() >= window {
                return self.last_look(max).await;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Polls the socket's readiness once (the reactor has just run, after a
    /// yield) and reads if it is ready; `Err` when nothing is there.
    async fn last_look(&mut self, max: usize) -> Result<io::Result<usize>, ()> {
        let stream = &self.stream;
        let ready = std::future::poll_fn(|cx| match stream.poll_read_ready(cx) {
            std::task::Poll::Ready(result) => std::task::Poll::Ready(Some(result)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await;
        match ready {
            None => Err(()),
            Some(Err(e)) => Ok(Err(e)),
            Some(Ok(())) => match self.stream.try_read(&mut self.buffer[..max]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(()),
                other => Ok(other),
            },
        }
    }
}

/// Waits `pause` between two pieces of a send. A pause under [`SPIN_BELOW`]
/// yields to the scheduler until it has passed instead of sleeping on the timer,
/// which would round it up to the next millisecond (a rechunked send has up to
/// [`MAX_PAUSED_PIECES`] of them).
async fn pause_between_pieces(pause: Duration) {
    if pause >= SPIN_BELOW {
        tokio::time::sleep(pause).await;
        return;
    }
    let started = std::time::Instant::now();
    while started.elapsed() < pause {
        tokio::task::yield_now().await;
    }
}

/// Replays `input` as datagrams to the UDP server at `addr`: each write (each
/// piece of a rechunked one) is one datagram, as a scenario's UDP `send` is; each
/// read takes one datagram. A datagram has no connection to end, so an end of the
/// input (close, reset, half-close, an `expect_eof`) only stops the replay. An
/// ICMP "port unreachable" (the server is gone) is `Refused`.
async fn execute_udp(addr: SocketAddr, input: &Input, windows: Windows) -> Observation {
    let mut observation = Observation::default();
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) if socket.connect(addr).await.is_ok() => socket,
        _ => {
            observation.refused = true;
            observation.replies.push(Reply::Refused);
            return observation;
        }
    };
    let mut buffer = vec![0; 64 * 1024];
    let mut window = windows.reply;
    for op in &input.ops {
        let sent = match op {
            Op::Write {
                bytes,
                chunks,
                pause,
            } => send_datagrams(&socket, bytes, chunks, *pause).await,
            Op::Frame { chunks, pause, .. } => {
                send_datagrams(&socket, &op.wire_bytes(), chunks, *pause).await
            }
            Op::Read { want } => {
                let reply = recv_datagram(&socket, &mut buffer, *want, window).await;
                observation.replies.push(reply);
                match reply {
                    Reply::Nothing => {
                        observation.stalls += 1;
                        window = NO_WAIT;
                    }
                    Reply::Refused => {
                        observation.refused = true;
                        return observation;
                    }
                    _ => {}
                }
                Ok(())
            }
            Op::Pause(d) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
            Op::ReadEnd => Ok(()),
            Op::Shutdown(_) | Op::Close | Op::Reset => break,
        };
        if sent.is_err() {
            observation.refused = true;
            observation.replies.push(Reply::Refused);
            return observation;
        }
    }
    observation
}

/// Sends `bytes` as datagrams of the chunk sizes (one datagram without chunks);
/// `Err` when the server's port is unreachable.
async fn send_datagrams(
    socket: &UdpSocket,
    bytes: &[u8],
    chunks: &[usize],
    pause: Duration,
) -> Result<(), ()> {
    let pieces = split_chunks(&Bytes::copy_from_slice(bytes), chunks);
    let mut sent = 0;
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 && i < MAX_PAUSED_PIECES && !pause.is_zero() {
            pause_between_pieces(pause).await;
        }
        let piece = if i + 1 == MAX_PIECES {
            &bytes[sent..]
        } else {
            &piece[..]
        };
        sent += piece.len();
        match socket.send(piece).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(()),
            // A datagram too large for the socket is a mutation's excess, not the
            // server's doing: it is simply not sent.
            _ => {}
        }
        if i + 1 == MAX_PIECES {
            break;
        }
    }
    Ok(())
}

/// Waits up to `window` for one datagram (spinning under [`SPIN_BELOW`], like a
/// TCP read) and classifies it against the `want` bytes the seed got there.
async fn recv_datagram(
    socket: &UdpSocket,
    buffer: &mut [u8],
    want: usize,
    window: Duration,
) -> Reply {
    let received = if window >= SPIN_BELOW {
        tokio::time::timeout(window, socket.recv(buffer))
            .await
            .map_err(|_| ())
    } else {
        let started = std::time::Instant::now();
        loop {
            match socket.try_recv(buffer) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => break Ok(other),
            }
            if started.elapsed() >= window {
                let ready = std::future::poll_fn(|cx| match socket.poll_recv_ready(cx) {
                    std::task::Poll::Ready(result) => std::task::Poll::Ready(Some(result)),
                    std::task::Poll::Pending => std::task::Poll::Ready(None),
                })
                .await;
                break match ready {
                    Some(Ok(())) => match socket.try_recv(buffer) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(()),
                        other => Ok(other),
                    },
                    Some(Err(e)) => Ok(Err(e)),
                    None => Err(()),
                };
            }
            tokio::task::yield_now().await;
        }
    };
    match received {
        Err(()) => Reply::Nothing,
        Ok(Ok(n)) => Reply::data(&buffer[..n], want),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Reply::Refused,
        Ok(Err(_)) => Reply::Eof,
    }
}

fn read_error(error: &io::Error) -> Reply {
    if is_reset(error) {
        Reply::Reset
    } else {
        Reply::Eof
    }
}
