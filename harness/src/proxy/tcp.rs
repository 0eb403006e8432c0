//! The TCP socket loop of a proxy: accept, connect upstream, and pump each
//! direction through its fault pipeline.
//!
//! Each connection is one task running two pumps (client to server, server to
//! client). A direction no fault touches is a plain forwarding loop: read into a
//! per-thread scratch buffer, write from it at once, no timer and no copy unless
//! the sink takes only part. A direction with faults reads only while its pipeline
//! holds less than [`MAX_HELD`] bytes, so a `latency` or `coalesce` queue pushes
//! back on the sender (TCP flow control does the rest) instead of growing; it
//! keeps exactly the bytes read, so an idle connection costs no buffer. Reads go
//! through `poll_read`, whose short reads mark the socket drained (no extra read
//! call per forwarded read). Half-closes are forwarded as half-closes, resets as
//! resets (linger 0), and when the proxy stops every connection is closed with it.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fault::{FaultKind, Flow};
use super::pipeline::{FaultNote, PieceKind, Pipeline, SharedLink, StageSpec};
use super::rng::{FaultRng, StreamOf};
use super::ProxyConfig;
use crate::event::{EventKind, EventStream, ShutdownHow};
use crate::net::{is_reset, Recorder};
use crate::servers::accept::Acceptor;
use crate::vocab::SocketOptions;

/// A pump stops reading its source while its pipeline holds this many bytes.
pub const MAX_HELD: usize = 256 * 1024;
/// The largest single read.
const READ_SIZE: usize = 64 * 1024;

thread_local! {
    /// Where reads land before the bytes read are copied out at their exact size.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_SIZE]);
}

/// Runs a TCP proxy on `listener` until `shutdown`; then closes every connection.
pub async fn run(
    listener: TcpListener,
    config: Arc<ProxyConfig>,
    log: EventStream,
    shutdown: CancellationToken,
) {
    let base = Instant::now();
    let links = SharedLinks::new(&config.faults.iter().map(|f| &f.kind).collect::<Vec<_>>());
    let options = SocketOptions {
        nodelay: Some(true),
        ..SocketOptions::default()
    };
    let mut acceptor = Acceptor::new(listener, options, Arc::clone(&config.name));
    let mut connections = JoinSet::new();
    let mut number = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = acceptor.accept() => match accepted {
                Ok(accepted) => {
                    number += 1;
                    let task = connection(
                        accepted.stream,
                        accepted.local,
                        accepted.peer,
                        number,
                        Arc::clone(&config),
                        log.clone(),
                        base,
                        links.clone(),
                    );
                    connections.spawn(task);
                }
                Err(error) => acceptor.report_options_error(&error),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Dropping the tasks closes their sockets: no connection outlives the proxy.
    connections.shutdown().await;
}

/// The shared bandwidth budgets of a proxy, one per shared fault and direction.
#[derive(Debug, Clone, Default)]
pub struct SharedLinks {
    links: Vec<Option<[SharedLink; 2]>>,
}

impl SharedLinks {
    pub fn new(faults: &[&FaultKind]) -> Self {
        Self {
            links: faults
                .iter()
                .map(|kind| {
                    matches!(kind, FaultKind::Bandwidth { shared: true, .. }).then(|| {
                        [
                            Arc::new(Mutex::new(Duration::ZERO)),
                            Arc::new(Mutex::new(Duration::ZERO)),
                        ]
                    })
                })
                .collect(),
        }
    }

    fn get(&self, index: usize, flow: Flow) -> Option<SharedLink> {
        let pair = self.links.get(index)?.as_ref()?;
        Some(Arc::clone(&pair[flow as usize]))
    }
}

/// The faults that apply to connection `number`, per direction: `connections`
/// filters, then `probability` is drawn from the connection's own stream.
pub fn stages_for(
    config: &ProxyConfig,
    number: u64,
    links: &SharedLinks,
) -> ([Vec<StageSpec>; 2], Vec<String>) {
    let mut choices = FaultRng::new(config.seed, &config.name, number, StreamOf::Choices);
    let mut stages: [Vec<StageSpec>; 2] = [Vec::new(), Vec::new()];
    let mut skipped = Vec::new();
    for (index, fault) in config.faults.iter().enumerate() {
        if let Some(list) = &fault.connections {
            if !list.contains(&number) {
                continue;
            }
        }
        if !choices.chance(fault.probability) {
            skipped.push(format!(
                "`{}` does not apply to this connection (probability {})",
                fault.kind.name(),
                fault.probability
            ));
            continue;
        }
        for flow in [Flow::Up, Flow::Down] {
            if fault.direction.covers(flow) {
                stages[flow as usize].push(StageSpec {
                    kind: fault.kind.clone(),
                    link: links.get(index, flow),
                });
            }
        }
    }
    (stages, skipped)
}

/// How a connection ended early.
const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const RESET: u8 = 2;

/// What both pumps of a connection share: the signal to stop, and why.
struct Ending {
    stop: CancellationToken,
    how: AtomicU8,
}

impl Ending {
    fn end(&self, how: u8) {
        let _ = self
            .how
            .compare_exchange(OPEN, how, Ordering::AcqRel, Ordering::Acquire);
        self.stop.cancel();
    }

    fn how(&self) -> u8 {
        self.how.load(Ordering::Acquire)
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    client: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    number: u64,
    config: Arc<ProxyConfig>,
    log: EventStream,
    base: Instant,
    links: SharedLinks,
) {
    let actor: Arc<str> = Arc::from(format!("{}#{number}", config.name));
    let client_side = Recorder::for_new_connection(&log, Arc::clone(&actor));
    client_side.record(EventKind::Accept {
        conn: client_side.conn,
        local,
        peer,
    });
    let server = match connect(config.upstream).await {
        Ok(server) => server,
        Err(error) => {
            // The upstream refused: so does the proxy, with a reset, the nearest
            // thing to the refusal the client would have seen without it.
            client_side.record(EventKind::ConnectFailed {
                peer: config.upstream,
                error: error.to_string(),
            });
            let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
            drop(client);
            client_side.record(EventKind::Close {
                conn: client_side.conn,
                reset: true,
            });
            return;
        }
    };
    let server_side = Recorder::for_new_connection(&log, Arc::clone(&actor));
    if let (Ok(local), Ok(peer)) = (server.local_addr(), server.peer_addr()) {
        server_side.record(EventKind::Connect {
            conn: server_side.conn,
            local,
            peer,
        });
    }
    let ([up, down], skipped) = stages_for(&config, number, &links);
    for reason in skipped {
        server_side.record(EventKind::Fault {
            conn: server_side.conn,
            flow: Flow::Up,
            fault: "probability",
            action: reason,
            discarded: false,
        });
    }
    let notes = log.enabled();
    // A direction holds at most MAX_HELD bytes, or one whole `coalesce` if larger.
    let bound = |stages: &[StageSpec]| {
        stages
            .iter()
            .filter_map(|stage| match stage.kind {
                FaultKind::Coalesce { bytes, .. } => Some(bytes),
                _ => None,
            })
            .fold(MAX_HELD, usize::max)
    };
    let (up_bound, down_bound) = (bound(&up), bound(&down));
    let seed_of = |flow| FaultRng::new(config.seed, &config.name, number, StreamOf::Flow(flow));
    let up = Pipeline::new(&up, seed_of(Flow::Up), notes);
    let down = Pipeline::new(&down, seed_of(Flow::Down), notes);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let ending = Ending {
        stop: CancellationToken::new(),
        how: AtomicU8::new(OPEN),
    };
    let up_pump = Pump {
        flow: Flow::Up,
        max_held: up_bound,
        from: &client_side,
        to: &server_side,
        base,
        ending: &ending,
    };
    let down_pump = Pump {
        flow: Flow::Down,
        max_held: down_bound,
        from: &server_side,
        to: &client_side,
        base,
        ending: &ending,
    };
    let ((client_read, server_write), (server_read, client_write)) = tokio::join!(
        up_pump.run(client_read, server_write, up),
        down_pump.run(server_read, client_write, down),
    );
    let reset = ending.how() == RESET;
    for (read, write, side) in [
        (client_read, client_write, &client_side),
        (server_read, server_write, &server_side),
    ] {
        if let Ok(stream) = read.reunite(write) {
            if reset {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
            drop(stream);
        }
        side.record(EventKind::Close {
            conn: side.conn,
            reset,
        });
    }
}

async fn connect(upstream: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One direction of a connection.
struct Pump<'a> {
    flow: Flow,
    /// Stop reading the source while the pipeline holds this many bytes.
    max_held: usize,
    from: &'a Recorder,
    to: &'a Recorder,
    base: Instant,
    ending: &'a Ending,
}

impl Pump<'_> {
    /// Pumps until the direction is over (its close forwarded) or the connection
    /// ends; hands the halves back so the connection closes them as it should.
    async fn run(
        &self,
        mut source: OwnedReadHalf,
        mut sink: OwnedWriteHalf,
        pipeline: Pipeline,
    ) -> (OwnedReadHalf, OwnedWriteHalf) {
        if pipeline.is_transparent() {
            // No fault touches this direction: a plain forwarding loop, with no
            // scheduling, timers or per-read buffers (the proxy's cost with no
            // faults is what every exchange through it pays).
            tokio::select! {
                biased;
                _ = self.ending.stop.cancelled() => {}
                () = self.forward(&mut source, &mut sink) => {}
            }
            return (source, sink);
        }
        self.shape(source, sink, pipeline).await
    }

    /// Forwards reads to the sink as they come: each read lands in the thread's
    /// scratch buffer and is written from there at once; only what the sink does
    /// not take at once is copied, and written before the next read (so a slow
    /// sink pushes back on the source, and at most one read is ever held).
    async fn forward(&self, source: &mut OwnedReadHalf, sink: &mut OwnedWriteHalf) {
        loop {
            let forwarded = std::future::poll_fn(|cx| self.poll_forward(cx, source, sink)).await;
            let leftover = match forwarded {
                Forwarded::Whole => continue,
                Forwarded::Partly(leftover) => leftover,
                Forwarded::SourceClosed => {
                    let _ = sink.shutdown().await;
                    self.to.record(EventKind::Shutdown {
                        conn: self.to.conn,
                        how: ShutdownHow::Write,
                    });
                    return;
                }
                Forwarded::SourceFailed(error) => {
                    if is_reset(&error) {
                        self.from.record(EventKind::PeerReset {
                            conn: self.from.conn,
                        });
                    }
                    // A reset from one side is a reset to the other.
                    self.ending.end(RESET);
                    return;
                }
                Forwarded::SinkFailed(error) => {
                    self.sink_failed(&error);
                    return;
                }
            };
            if let Err(error) = self.write_all(sink, &leftover).await {
                self.sink_failed(&error);
                return;
            }
        }
    }

    /// One read from `source` and one attempt to write it all to `sink`, within a
    /// single poll so that the scratch buffer is never held across a wait. Reading
    /// through `poll_read` lets a short read mark the socket drained, which saves
    /// the read call that would only say "nothing more".
    fn poll_forward(
        &self,
        cx: &mut Context<'_>,
        source: &mut OwnedReadHalf,
        sink: &mut OwnedWriteHalf,
    ) -> Poll<Forwarded> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut *source).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Forwarded::SourceFailed(error)),
                Poll::Ready(Ok(())) => {}
            }
            let read = buf.filled();
            if read.is_empty() {
                self.from.record(EventKind::PeerEof {
                    conn: self.from.conn,
                });
                return Poll::Ready(Forwarded::SourceClosed);
            }
            self.from.record(EventKind::Read {
                conn: self.from.conn,
                data: self.from.log.payload_of(read),
            });
            let written = match sink.try_write(read) {
                Ok(written) => written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
                Err(error) => return Poll::Ready(Forwarded::SinkFailed(error)),
            };
            if written > 0 {
                self.to.record(EventKind::Write {
                    conn: self.to.conn,
                    data: self.to.log.payload_of(&read[..written]),
                });
            }
            Poll::Ready(if written == read.len() {
                Forwarded::Whole
            } else {
                Forwarded::Partly(Bytes::copy_from_slice(&read[written..]))
            })
        })
    }

    /// The sink's peer is gone: tell the source the same way.
    fn sink_failed(&self, error: &io::Error) {
        if is_reset(error) {
            self.to.record(EventKind::PeerReset { conn: self.to.conn });
        }
        self.ending.end(RESET);
    }

    /// Pumps through the direction's fault pipeline: reads while it holds less than
    /// the bound, writes each piece when it falls due, sleeps until the next one.
    async fn shape(
        &self,
        mut source: OwnedReadHalf,
        mut sink: OwnedWriteHalf,
        mut pipeline: Pipeline,
    ) -> (OwnedReadHalf, OwnedWriteHalf) {
        let mut source_done = false;
        loop {
            let now = self.base.elapsed();
            pipeline.advance(now);
            while let Some(piece) = pipeline.pop_due(now) {
                self.notes(piece.notes, matches!(piece.kind, PieceKind::Dropped(_)));
                match piece.kind {
                    PieceKind::Data(data) => {
                        let written = tokio::select! {
                            _ = self.ending.stop.cancelled() => return (source, sink),
                            written = self.write_all(&mut sink, &data) => written,
                        };
                        if let Err(error) = written {
                            self.sink_failed(&error);
                            return (source, sink);
                        }
                    }
                    PieceKind::Eof => {
                        let _ = sink.shutdown().await;
                        self.to.record(EventKind::Shutdown {
                            conn: self.to.conn,
                            how: ShutdownHow::Write,
                        });
                        return (source, sink);
                    }
                    PieceKind::Close => {
                        self.ending.end(CLOSED);
                        return (source, sink);
                    }
                    PieceKind::Reset => {
                        self.ending.end(RESET);
                        return (source, sink);
                    }
                    PieceKind::Dropped(_) => {}
                }
            }
            if source_done && pipeline.is_idle() {
                // The close itself was swallowed (`blackhole`): the direction stays
                // silent until the connection ends.
                self.ending.stop.cancelled().await;
                return (source, sink);
            }
            let wake = pipeline.next_wake();
            let can_read = !source_done && pipeline.held_bytes() < self.max_held;
            // The timer exists only while the pipeline waits for a time.
            let timer = async {
                match wake {
                    Some(wake) => tokio::time::sleep_until(self.base + wake).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.ending.stop.cancelled() => return (source, sink),
                read = std::future::poll_fn(|cx| read_shared(cx, &mut source)), if can_read => {
                    let now = self.base.elapsed();
                    match read {
                        Ok(data) if data.is_empty() => {
                            self.from.record(EventKind::PeerEof { conn: self.from.conn });
                            source_done = true;
                            pipeline.end(now);
                        }
                        Ok(data) => {
                            self.from.record(EventKind::Read {
                                conn: self.from.conn,
                                data: self.from.log.payload_shared(&data),
                            });
                            pipeline.push(now, data);
                        }
                        Err(error) => {
                            if is_reset(&error) {
                                self.from.record(EventKind::PeerReset { conn: self.from.conn });
                            }
                            // A reset from one side is a reset to the other.
                            self.ending.end(RESET);
                            return (source, sink);
                        }
                    }
                }
                () = timer => {}
            }
        }
    }

    /// Records what the faults did to a piece: on the connection it is sent on,
    /// or, for bytes thrown away, on the connection they came in on.
    fn notes(&self, notes: Vec<FaultNote>, discarded: bool) {
        let on = if discarded { self.from } else { self.to };
        for note in notes {
            on.record(EventKind::Fault {
                conn: on.conn,
                flow: self.flow,
                fault: note.fault,
                action: note.action,
                discarded,
            });
        }
    }

    /// Writes everything, recording each write call the kernel accepted.
    async fn write_all(&self, sink: &mut OwnedWriteHalf, data: &Bytes) -> io::Result<()> {
        let mut written = 0;
        while written < data.len() {
            let n = sink.write(&data[written..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.to.record(EventKind::Write {
                conn: self.to.conn,
                data: self
                    .to
                    .log
                    .payload_shared(&data.slice(written..written + n)),
            });
            written += n;
        }
        Ok(())
    }
}

/// What one [`Pump::poll_forward`] did.
enum Forwarded {
    /// The read was written whole.
    Whole,
    /// The sink took only part of the read: the rest, to write before reading on.
    Partly(Bytes),
    /// The source half-closed.
    SourceClosed,
    SourceFailed(io::Error),
    SinkFailed(io::Error),
}

/// One read into the thread's scratch buffer, kept at its exact size (an empty
/// read is the source's half-close). The buffer is borrowed only within the poll.
fn read_shared(cx: &mut Context<'_>, source: &mut OwnedReadHalf) -> Poll<io::Result<Bytes>> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let mut buf = ReadBuf::new(&mut scratch[..]);
        match Pin::new(source).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                Poll::Ready(result.map(|()| Bytes::copy_from_slice(buf.filled())))
            }
        }
    })
}
