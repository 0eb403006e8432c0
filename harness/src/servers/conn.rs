//! A framed TCP connection, shared by the servers that speak a framing: read
//! frames with a bounded buffer, write replies, and close in an orderly way.
//!
//! Memory per connection is the read scratch buffer plus what the codec holds:
//! at most one partial frame, which the codec bounds by its `max_frame` /
//! `max_line` / `max_header` whatever length the peer claims.
//!
//! [`FramedConn`] works on a whole `TcpStream` or on the read half of a split
//! one (the chat server writes from a second future); reads and writes are
//! recorded as events the same way [`Recorder`] records them.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::event::{EventKind, ShutdownHow};
use crate::framing::{Frame, FrameCodec, FrameError, FramingConfig};
use crate::net::{is_reset, Recorder};

/// Size of each read call.
const SCRATCH: usize = 16 * 1024;

/// After an orderly close, how long and how much we keep reading (and
/// dropping) what the peer still sends, so that unread input does not turn
/// our close into a reset that could destroy a reply the peer has yet to read.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// One read call, recorded: the bytes, an end of stream, or a reset.
pub async fn read_recorded<R: AsyncRead + Unpin>(
    recorder: &Recorder,
    reader: &mut R,
    buf: &mut [u8],
) -> io::Result<usize> {
    match reader.read(buf).await {
        Ok(0) => {
            recorder.record(EventKind::PeerEof {
                conn: recorder.conn,
            });
            Ok(0)
        }
        Ok(n) => {
            recorder.record(EventKind::Read {
                conn: recorder.conn,
                data: recorder.log.payload_of(&buf[..n]),
            });
            Ok(n)
        }
        Err(e) => {
            if is_reset(&e) {
                recorder.record(EventKind::PeerReset {
                    conn: recorder.conn,
                });
            }
            Err(e)
        }
    }
}

/// Writes all of `data`, recording what each write call took.
pub async fn write_recorded<W: AsyncWrite + Unpin>(
    recorder: &Recorder,
    writer: &mut W,
    data: &Bytes,
) -> io::Result<()> {
    let mut written = 0;
    while written < data.len() {
        match writer.write(&data[written..]).await {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                recorder.record(EventKind::Write {
                    conn: recorder.conn,
                    data: recorder
                        .log
                        .payload_shared(&data.slice(written..written + n)),
                });
                written += n;
            }
            Err(e) => {
                if is_reset(&e) {
                    recorder.record(EventKind::PeerReset {
                        conn: recorder.conn,
                    });
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Shuts down the write side (the peer reads an end of stream after the
/// last byte sent), recording it.
pub async fn shutdown_recorded<W: AsyncWrite + Unpin>(recorder: &Recorder, writer: &mut W) {
    if writer.shutdown().await.is_ok() {
        recorder.record(EventKind::Shutdown {
            conn: recorder.conn,
            how: ShutdownHow::Write,
        });
    }
}

/// What [`FramedConn::next`] found.
#[derive(Debug)]
pub enum Next {
    /// One whole frame.
    Frame(Frame),
    /// A recoverable decoding error (an over-long line): the codec skips the
    /// bad input and decoding goes on.
    Skipped(FrameError),
    /// A fatal decoding error, including the stream ending inside a frame.
    /// Nothing more can be decoded from this connection.
    Fatal(FrameError),
    /// The peer closed its write side between two frames.
    Eof,
    /// The server is stopping (or this connection was told to go).
    Stopped,
}

pub struct FramedConn<S = TcpStream> {
    stream: S,
    recorder: Recorder,
    codec: FrameCodec,
    buf: BytesMut,
    scratch: Box<[u8]>,
    eof: bool,
    stop: CancellationToken,
}

impl<S: AsyncRead + Unpin> FramedConn<S> {
    pub fn new(
        stream: S,
        recorder: Recorder,
        framing: &FramingConfig,
        stop: CancellationToken,
    ) -> Self {
        Self {
            stream,
            recorder,
            codec: framing.codec(),
            buf: BytesMut::new(),
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            eof: false,
            stop,
        }
    }

    /// The next frame, or why there is none. Cancel-safe: dropping the future
    /// loses no input (bytes read stay buffered).
    pub async fn next(&mut self) -> io::Result<Next> {
        loop {
            let decoded = if self.eof {
                self.codec.decode_eof(&mut self.buf)
            } else {
                self.codec.decode(&mut self.buf)
            };
            match decoded {
                Ok(Some(frame)) => return Ok(Next::Frame(frame)),
                Ok(None) if self.eof => return Ok(Next::Eof),
                Ok(None) => {}
                Err(e) if e.is_recoverable() => return Ok(Next::Skipped(e)),
                Err(e) => return Ok(Next::Fatal(e)),
            }
            let n = tokio::select! {
                _ = self.stop.cancelled() => return Ok(Next::Stopped),
                n = read_recorded(&self.recorder, &mut self.stream, &mut self.scratch) => n?,
            };
            if n == 0 {
                self.eof = true;
            } else {
                self.buf.extend_from_slice(&self.scratch[..n]);
            }
        }
    }

    /// After our write side is shut down: reads and drops what the peer still
    /// sends until it closes too, bounded by [`LINGER_TIME`] and
    /// [`LINGER_BYTES`].
    pub async fn linger(&mut self) {
        if self.eof {
            return;
        }
        let deadline = Instant::now() + LINGER_TIME;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            let read = tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => return,
                read = read_recorded(&self.recorder, &mut self.stream, &mut self.scratch) => read,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramedConn<S> {
    /// Writes all of `data`. `Ok(false)`: stopped before it was all written.
    pub async fn send(&mut self, data: Bytes) -> io::Result<bool> {
        if data.is_empty() {
            return Ok(true);
        }
        tokio::select! {
            _ = self.stop.cancelled() => Ok(false),
            written = write_recorded(&self.recorder, &mut self.stream, &data) => {
                written.map(|()| true)
            }
        }
    }

    /// Ends the connection in order: shuts down our write side, so the peer
    /// reads everything we sent and then an end of stream, then
    /// [lingers](FramedConn::linger) until the peer closes too.
    pub async fn close(mut self) -> io::Result<()> {
        shutdown_recorded(&self.recorder, &mut self.stream).await;
        self.linger().await;
        Ok(())
    }
}
