//! Socket plumbing shared by scripted actors and reference servers: socket options,
//! the kernel's receive-queue size, and reads/writes that record events.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::event::{ConnId, EventKind, EventStream};
use crate::vocab::SocketOptions;

/// Applies the options a scenario gave an actor. Buffer sizes must be set before
/// `connect`/`listen` to affect the window the handshake advertises, so callers
/// apply them to the raw socket first.
pub fn apply_socket_options(socket: SockRef<'_>, options: &SocketOptions) -> io::Result<()> {
    if let Some(size) = options.recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = options.send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    if let Some(linger) = options.linger {
        socket.set_linger(Some(linger))?;
    }
    if let Some(nodelay) = options.nodelay {
        // UDP sockets have no Nagle algorithm; the option only exists for TCP.
        if socket.r#type()? == socket2::Type::STREAM {
            socket.set_nodelay(nodelay)?;
        }
    }
    Ok(())
}

/// Bytes waiting in the socket's receive queue (FIONREAD). For UDP, Linux reports
/// the size of the next datagram.
pub fn queued_bytes(socket: &impl AsRawFd) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at a live
    // local; the descriptor is owned by `socket` for the duration of the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONREAD, &mut queued) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(queued.max(0) as usize)
}

/// One non-blocking `recv(MSG_PEEK)`: copies queued bytes into `buf` without
/// taking them off the socket. `Ok(0)` means the peer closed its side and nothing
/// is queued; `WouldBlock` means nothing is queued yet.
pub fn peek(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    use nix::sys::socket::{recv, MsgFlags};
    recv(
        socket.as_raw_fd(),
        buf,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)
}

/// Whether an I/O error means the peer reset the connection.
pub fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// One TCP connection's identity in the event log: reads and writes through it are
/// recorded, so servers and scripted actors describe the wire the same way.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub log: EventStream,
    pub actor: Arc<str>,
    pub conn: ConnId,
}

impl Recorder {
    /// The recorder of a connection (or UDP socket) that starts now: its events get
    /// a fresh connection id from the run's stream.
    pub fn for_new_connection(log: &EventStream, actor: Arc<str>) -> Self {
        Recorder {
            conn: log.next_conn_id(),
            log: log.clone(),
            actor,
        }
    }

    pub fn record(&self, kind: EventKind) {
        self.log.record(&self.actor, kind);
    }

    /// One read call. Records the bytes, an EOF, or a reset.
    pub async fn read(&self, stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        match stream.read(buf).await {
            Ok(0) => {
                self.record(EventKind::PeerEof { conn: self.conn });
                Ok(0)
            }
            Ok(n) => {
                self.record(EventKind::Read {
                    conn: self.conn,
                    data: self.log.payload_of(&buf[..n]),
                });
                Ok(n)
            }
            Err(e) => {
                if is_reset(&e) {
                    self.record(EventKind::PeerReset { conn: self.conn });
                }
                Err(e)
            }
        }
    }

    /// Writes everything, recording what the kernel accepted call by call.
    pub async fn write_all(&self, stream: &mut TcpStream, data: &Bytes) -> io::Result<()> {
        let mut written = 0;
        self.write_all_counting(stream, data, &mut written).await
    }

    /// [`Self::write_all`], adding each call's bytes to `progress` as it goes, so a
    /// caller whose deadline cancels the write still knows how far it got.
    pub async fn write_all_counting(
        &self,
        stream: &mut TcpStream,
        data: &Bytes,
        progress: &mut usize,
    ) -> io::Result<()> {
        let mut written = 0;
        while written < data.len() {
            match stream.write(&data[written..]).await {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.record(EventKind::Write {
                        conn: self.conn,
                        data: self.log.payload_shared(&data.slice(written..written + n)),
                    });
                    written += n;
                    *progress += n;
                }
                Err(e) => {
                    if is_reset(&e) {
                        self.record(EventKind::PeerReset { conn: self.conn });
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
