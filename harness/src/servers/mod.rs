//! Reference servers, run in-process for scenarios (`builtin = "NAME"`) and standalone
//! (`wirecheck serve NAME`).
//!
//! Every server has the same shape: it takes an already-bound socket and a
//! cancellation token, serves until cancelled, and holds a bounded amount of memory
//! per connection. Taking the socket (rather than an address) lets tests and the
//! runner bind port 0 and know the port before the server starts.

mod discard;
mod echo;
mod readsplit;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::event::{EventKind, EventLog};
use crate::framing::{FramingConfig, FramingKind};
use crate::net::{apply_socket_options, Recorder};
use crate::scenario::{Proto, SocketOptions};

/// Read buffer of servers that stream bytes through: large enough for bulk
/// transfers, small enough that thousands of connections stay cheap.
pub const IO_BUFFER: usize = 64 * 1024;

/// Which reference server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinKind {
    /// Sends back every byte it reads (TCP) or every datagram (UDP).
    Echo,
    /// Reads and drops everything.
    Discard,
    /// Answers each read call with that call's bytes behind a length prefix, so a
    /// client can watch how the stream was split or coalesced.
    ReadSplit,
}

impl BuiltinKind {
    pub const NAMES: &'static [&'static str] = &["echo", "discard", "readsplit"];

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "echo" => Self::Echo,
            "discard" => Self::Discard,
            "readsplit" => Self::ReadSplit,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Discard => "discard",
            Self::ReadSplit => "readsplit",
        }
    }

    /// One line for `wirecheck serve --list` and the docs.
    pub fn summary(self) -> &'static str {
        match self {
            Self::Echo => "sends back every byte (TCP) or datagram (UDP) it receives",
            Self::Discard => "reads and drops everything (TCP and UDP)",
            Self::ReadSplit => {
                "answers each read call with its bytes behind a length prefix (`framing`, default u32be; `read_size`, default 65536)"
            }
        }
    }

    pub fn supports(self, proto: Proto) -> bool {
        match self {
            Self::Echo | Self::Discard => true,
            Self::ReadSplit => proto == Proto::Tcp,
        }
    }

    /// Keys a scenario may set beside `builtin = "NAME"`.
    pub fn option_keys(self) -> &'static [&'static str] {
        match self {
            Self::Echo | Self::Discard => &[],
            Self::ReadSplit => &[
                "read_size",
                "framing",
                "max_frame",
                "length_includes_header",
            ],
        }
    }
}

/// A reference server and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinConfig {
    pub kind: BuiltinKind,
    /// Size of each read call (readsplit).
    pub read_size: usize,
    /// How frames are encoded (readsplit: the prefix of each report).
    pub framing: FramingConfig,
}

impl BuiltinConfig {
    pub fn new(kind: BuiltinKind) -> Self {
        Self {
            kind,
            read_size: IO_BUFFER,
            framing: FramingConfig::new(FramingKind::U32Be),
        }
    }
}

/// What a running server needs besides its socket.
#[derive(Debug, Clone)]
pub struct ServerContext {
    /// Where its events go (disabled when run standalone).
    pub log: EventLog,
    /// Its actor name in events.
    pub actor: Arc<str>,
    /// Options applied to each accepted connection.
    pub options: SocketOptions,
}

/// A bound socket for a server.
pub enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Bound {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Bound::Tcp(l) => l.local_addr(),
            Bound::Udp(s) => s.local_addr(),
        }
    }
}

/// Binds a socket for `proto` at `addr`, with the options that must precede
/// `listen` (buffer sizes, so accepted sockets inherit them).
pub fn bind(proto: Proto, addr: SocketAddr, options: &SocketOptions) -> std::io::Result<Bound> {
    match proto {
        Proto::Tcp => {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            if let Some(size) = options.recv_buffer {
                socket.set_recv_buffer_size(size as u32)?;
            }
            if let Some(size) = options.send_buffer {
                socket.set_send_buffer_size(size as u32)?;
            }
            socket.bind(addr)?;
            Ok(Bound::Tcp(socket.listen(1024)?))
        }
        Proto::Udp => {
            let socket = std::net::UdpSocket::bind(addr)?;
            socket.set_nonblocking(true)?;
            apply_socket_options(socket2::SockRef::from(&socket), options)?;
            Ok(Bound::Udp(UdpSocket::from_std(socket)?))
        }
    }
}

/// Runs a reference server on `bound` until `shutdown` is cancelled.
pub async fn serve(
    config: BuiltinConfig,
    bound: Bound,
    context: ServerContext,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    match bound {
        Bound::Udp(socket) => match config.kind {
            BuiltinKind::Echo => echo::serve_udp(socket, context, shutdown, true).await,
            BuiltinKind::Discard => echo::serve_udp(socket, context, shutdown, false).await,
            BuiltinKind::ReadSplit => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "readsplit is TCP only",
            )),
        },
        Bound::Tcp(listener) => {
            let config = Arc::new(config);
            accept_loop(
                listener,
                context,
                shutdown,
                move |stream, recorder, stop| {
                    let config = Arc::clone(&config);
                    async move {
                        match config.kind {
                            BuiltinKind::Echo => echo::serve_tcp(stream, recorder, stop).await,
                            BuiltinKind::Discard => {
                                discard::serve_tcp(stream, recorder, stop).await
                            }
                            BuiltinKind::ReadSplit => {
                                readsplit::serve_tcp(stream, recorder, stop, &config).await
                            }
                        }
                    }
                },
            )
            .await
        }
    }
}

/// Accepts connections until cancelled and serves each on its own task, so one slow
/// or hostile client never holds up another. A connection's error ends only that
/// connection.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    context: ServerContext,
    shutdown: CancellationToken,
    handler: F,
) -> std::io::Result<()>
where
    F: Fn(TcpStream, Recorder, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    let mut accepted = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // Running out of descriptors or a connection reset before accept
                // must not stop the server for everyone else.
                Err(_) => continue,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        accepted += 1;
        let _ = apply_socket_options(socket2::SockRef::from(&stream), &context.options);
        let recorder = Recorder {
            log: context.log.clone(),
            actor: if accepted == 1 {
                Arc::clone(&context.actor)
            } else {
                Arc::from(format!("{}#{accepted}", context.actor))
            },
            conn: context.log.next_conn_id(),
        };
        let local = stream.local_addr()?;
        recorder.record(EventKind::Accept {
            conn: recorder.conn,
            local,
            peer,
        });
        let finish = recorder.clone();
        let work = handler(stream, recorder, shutdown.child_token());
        connections.spawn(async move {
            let reset = matches!(&work.await, Err(e) if crate::net::is_reset(e));
            finish.record(EventKind::Close {
                conn: finish.conn,
                reset,
            });
        });
    }
    connections.shutdown().await;
    Ok(())
}
