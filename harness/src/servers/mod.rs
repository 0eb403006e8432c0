//! Reference servers, run in-process for scenarios (`builtin = "NAME"`) and standalone
//! (`wirecheck serve NAME`).
//!
//! Every server has the same shape: it takes an already-bound socket and a
//! cancellation token, serves until cancelled, and holds a bounded amount of memory
//! per connection. Taking the socket (rather than an address) lets tests and the
//! runner bind port 0 and know the port before the server starts.

pub mod accept;
mod chat;
mod command;
mod conn;
mod discard;
mod echo;
mod file;
mod framed_echo;
pub mod options;
mod readsplit;
mod time;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use strum::{EnumIter, EnumString, IntoEnumIterator, IntoStaticStr};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::event::{EventKind, EventStream};
use crate::framing::{FramingConfig, FramingKind};
use crate::net::{apply_socket_options, Recorder};
use crate::vocab::{Proto, SocketOptions};

pub use accept::{
    accept_exactly, serve_connections, AcceptExactly, Accepted, Acceptor, SocketOptionsError,
    DEFAULT_MAX_CONNECTIONS,
};
pub use options::{CommandLineOptions, OptionKind, OptionSpec, OptionValue, SOCKET_OPTIONS};

pub use chat::{DEFAULT_CHAT_MAX_LINE, DEFAULT_QUEUE, MAX_NAME};
pub use command::{DEFAULT_MAX_REPLY, HELP};
pub use file::{validate_file_name, DEFAULT_MAX_FILES, DEFAULT_MAX_STORE, MAX_FILE_NAME};
pub use time::{format_time, DEFAULT_TIME_MAX_LINE, MAX_FORMAT};

/// Pending connections a listener queues before the kernel drops SYNs (it caps
/// this at `net.core.somaxconn`). A run of thousands of clients connects faster than
/// any accept loop; a dropped SYN costs its client a one-second retransmission.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Read buffer of servers that stream bytes through: large enough for bulk
/// transfers, small enough that thousands of connections stay cheap.
pub const IO_BUFFER: usize = 64 * 1024;

/// Which reference server. Its scenario-file name (`"framed-echo"`) comes from
/// strum: `name()`, `from_name()` and [`BuiltinKind::iter`] (every server, in
/// this order) all derive from this one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, EnumIter)]
#[strum(serialize_all = "kebab-case")]
pub enum BuiltinKind {
    /// Sends back every byte it reads (TCP) or every datagram (UDP).
    Echo,
    /// Reads and drops everything.
    Discard,
    /// Answers each read call with that call's bytes behind a length prefix, so a
    /// client can watch how the stream was split or coalesced.
    #[strum(serialize = "readsplit")]
    ReadSplit,
    /// Decodes frames in a framing and echoes each one back as a frame.
    FramedEcho,
    /// The tutorials' "remote command" server, with a fixed allow-list of commands.
    Command,
    /// JSON-header file upload and download, stored in memory.
    File,
    /// A line-based chat room: `iam:NAME`, `msg:TEXT`.
    Chat,
    /// Formats the current (or a fixed) time with a strftime format, TCP and UDP.
    Time,
}

impl BuiltinKind {
    /// The server with this scenario-file name (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        name.parse().ok()
    }

    /// The scenario-file name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Every server, in declaration order (the order of `serve --list`).
    pub fn all() -> impl Iterator<Item = Self> {
        Self::iter()
    }

    /// Every server's name, in declaration order.
    pub fn names() -> Vec<&'static str> {
        Self::all().map(Self::name).collect()
    }

    /// One line for `wirecheck serve --list` and the docs.
    pub fn summary(self) -> &'static str {
        match self {
            Self::Echo => "sends back every byte (TCP) or datagram (UDP) it receives",
            Self::Discard => "reads and drops everything (TCP and UDP)",
            Self::ReadSplit => {
                "answers each read call with its bytes behind a length prefix (`framing`, default u32be; `read_size`, default 65536)"
            }
            Self::FramedEcho => {
                "decodes frames (`framing`, default u32be) and echoes each one back as a frame"
            }
            Self::Command => {
                "line requests `echo TEXT`, `repeat N TEXT`, `bytes N`, `help`; replies framed i32le (`framing`; \"none\" reproduces the sticky-packet bug)"
            }
            Self::File => {
                "json-header file upload and download (md5-checked), stored in memory"
            }
            Self::Chat => "line chat room: `iam:NAME` logs in, `msg:TEXT` goes to everyone else",
            Self::Time => {
                "a strftime format in, the formatted time out (TCP lines, UDP datagrams; `clock` fixes the time)"
            }
        }
    }

    pub fn supports(self, proto: Proto) -> bool {
        match self {
            Self::Echo | Self::Discard | Self::Time => true,
            Self::ReadSplit | Self::FramedEcho | Self::Command | Self::File | Self::Chat => {
                proto == Proto::Tcp
            }
        }
    }

    /// The server's option schema: the keys a scenario may set beside
    /// `builtin = "NAME"` (and `wirecheck serve --set` may set), each with its
    /// type, range, default and description. Each server's module owns its list.
    pub fn options(self) -> &'static [OptionSpec<BuiltinConfig>] {
        match self {
            Self::Echo => echo::OPTIONS,
            Self::Discard => discard::OPTIONS,
            Self::ReadSplit => readsplit::OPTIONS,
            Self::FramedEcho => framed_echo::OPTIONS,
            Self::Command => command::OPTIONS,
            Self::File => file::OPTIONS,
            Self::Chat => chat::OPTIONS,
            Self::Time => time::OPTIONS,
        }
    }

    /// The keys of [`BuiltinKind::options`].
    pub fn option_keys(self) -> impl Iterator<Item = &'static str> {
        self.options().iter().map(|option| option.key)
    }

    /// The `framing` option, if the server has one.
    fn framing_option(self) -> Option<&'static OptionKind<BuiltinConfig>> {
        self.options()
            .iter()
            .find(|option| option.key == "framing")
            .map(|option| &option.kind)
    }

    /// The `framing` values this server accepts (empty: it has no `framing` option).
    pub fn framing_names(self) -> &'static [&'static str] {
        match self.framing_option() {
            Some(OptionKind::Framing { accepted, .. }) => accepted,
            _ => &[],
        }
    }

    /// Why `framing` cannot be `name` for this server, for diagnostics.
    pub fn framing_requirement(self) -> &'static str {
        match self.framing_option() {
            Some(OptionKind::Framing { requirement, .. }) => requirement,
            _ => "this server has no framing",
        }
    }
}

/// A reference server and its options. [`BuiltinConfig::new`] fills in each
/// kind's defaults (from its option schema); the loader and the CLI then adjust
/// the public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinConfig {
    pub kind: BuiltinKind,
    /// Size of each read call (readsplit).
    pub read_size: usize,
    /// How frames are encoded and decoded: readsplit's report prefix, framed-echo's
    /// framing, the command server's reply framing (its requests are always lines
    /// limited by `max_line`), the file server's json-header limits (`max_frame` is
    /// its `max_body`), and chat's and time's line framing.
    pub framing: FramingConfig,
    /// command: `framing = "none"`, replies written raw with no framing at all, the
    /// tutorial's sticky-packet bug.
    pub raw_replies: bool,
    /// command: the largest reply `bytes N` or `repeat N TEXT` may ask for.
    pub max_reply: usize,
    /// file: the most bytes stored at once, over all files.
    pub max_store: usize,
    /// file: the most files stored at once.
    pub max_files: usize,
    /// chat: each client's outgoing queue, in lines; a client that lets it fill
    /// up is disconnected.
    pub queue: usize,
    /// time: a fixed instant to report instead of the real clock.
    pub clock: Option<DateTime<FixedOffset>>,
    /// TCP: the most connections served at once; more wait in the listen
    /// backlog until one ends.
    pub max_connections: usize,
}

impl BuiltinConfig {
    pub fn new(kind: BuiltinKind) -> Self {
        let mut config = Self {
            kind,
            read_size: IO_BUFFER,
            framing: FramingConfig::new(FramingKind::U32Be),
            raw_replies: false,
            max_reply: DEFAULT_MAX_REPLY,
            max_store: DEFAULT_MAX_STORE,
            max_files: DEFAULT_MAX_FILES,
            queue: DEFAULT_QUEUE,
            clock: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        };
        for option in kind.options() {
            option.apply_default(&mut config);
        }
        config
    }

    /// Checks what the loader checks, for configurations built elsewhere.
    pub fn validate(&self) -> Result<(), String> {
        let names = self.kind.framing_names();
        let framing = if self.raw_replies {
            "none"
        } else {
            self.framing.kind.name()
        };
        if !names.is_empty() && !names.contains(&framing) {
            return Err(format!(
                "{}; `{}` takes framing {}",
                self.kind.framing_requirement(),
                self.kind.name(),
                names.join(", ")
            ));
        }
        Ok(())
    }
}

/// What a running server needs besides its socket.
#[derive(Debug, Clone)]
pub struct ServerContext {
    /// Where its events go (disabled when run standalone).
    pub log: EventStream,
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
            Ok(Bound::Tcp(socket.listen(LISTEN_BACKLOG)?))
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
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    match bound {
        Bound::Udp(socket) => match config.kind {
            BuiltinKind::Echo => {
                serve_datagrams(socket, context, shutdown, |d| Some(d.clone())).await
            }
            BuiltinKind::Discard => serve_datagrams(socket, context, shutdown, |_| None).await,
            BuiltinKind::Time => time::serve_udp(socket, context, shutdown, &config).await,
            kind => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("{} is TCP only", kind.name()),
            )),
        },
        Bound::Tcp(listener) => {
            let config = Arc::new(config);
            // State shared by the connections of this one server instance.
            let store = file::Store::shared(&config);
            let room = chat::Room::shared();
            serve_tcp(
                listener,
                config.max_connections,
                context,
                shutdown,
                move |stream, recorder, stop| {
                    let config = Arc::clone(&config);
                    let store = Arc::clone(&store);
                    let room = Arc::clone(&room);
                    async move {
                        match config.kind {
                            BuiltinKind::Echo => echo::serve_tcp(stream, recorder, stop).await,
                            BuiltinKind::Discard => {
                                discard::serve_tcp(stream, recorder, stop).await
                            }
                            BuiltinKind::ReadSplit => {
                                readsplit::serve_tcp(stream, recorder, stop, &config).await
                            }
                            BuiltinKind::FramedEcho => {
                                framed_echo::serve_tcp(stream, recorder, stop, &config).await
                            }
                            BuiltinKind::Command => {
                                command::serve_tcp(stream, recorder, stop, &config).await
                            }
                            BuiltinKind::File => {
                                file::serve_tcp(stream, recorder, stop, &config, &store).await
                            }
                            BuiltinKind::Chat => {
                                chat::serve_tcp(stream, recorder, stop, &config, &room).await
                            }
                            BuiltinKind::Time => {
                                time::serve_tcp(stream, recorder, stop, &config).await
                            }
                        }
                    }
                },
            )
            .await;
            Ok(())
        }
    }
}

/// Serves TCP connections through the one accept loop
/// ([`accept::serve_connections`]), each on its own task so one slow or
/// hostile client never holds up another, at most `max_connections` at once.
/// Records each connection's accept and close; a connection's error ends only
/// that connection.
async fn serve_tcp<F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    context: ServerContext,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(TcpStream, Recorder, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let acceptor = Acceptor::new(
        listener,
        context.options.clone(),
        Arc::clone(&context.actor),
    );
    let mut accepted = 0u64;
    let stop = shutdown.clone();
    serve_connections(acceptor, max_connections, shutdown, move |connection| {
        accepted += 1;
        let actor = if accepted == 1 {
            Arc::clone(&context.actor)
        } else {
            Arc::from(format!("{}#{accepted}", context.actor))
        };
        let recorder = Recorder::for_new_connection(&context.log, actor);
        recorder.record(EventKind::Accept {
            conn: recorder.conn,
            local: connection.local,
            peer: connection.peer,
        });
        let finish = recorder.clone();
        let work = handler(connection.stream, recorder, stop.child_token());
        async move {
            let reset = matches!(&work.await, Err(e) if crate::net::is_reset(e));
            finish.record(EventKind::Close {
                conn: finish.conn,
                reset,
            });
        }
    })
    .await;
}

/// Serves datagrams until cancelled: each one received is recorded and handed to
/// `answer`, whose reply (if any) goes back to its sender. Every UDP reference
/// server is this loop with a different `answer`.
pub(crate) async fn serve_datagrams(
    socket: UdpSocket,
    context: ServerContext,
    shutdown: CancellationToken,
    mut answer: impl FnMut(&Bytes) -> Option<Bytes>,
) -> std::io::Result<()> {
    let conn = context.log.next_conn_id();
    let local = socket.local_addr()?;
    let actor: Arc<str> = Arc::clone(&context.actor);
    context
        .log
        .record(&actor, EventKind::UdpBound { conn, local });
    // 64 KiB holds the largest possible UDP payload, so nothing is truncated.
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            received = socket.recv_from(&mut buf) => match received {
                Ok(pair) => pair,
                // An ICMP error from an earlier reply surfaces here on Linux; it
                // concerns that one peer, not the server.
                Err(_) => continue,
            },
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        context.log.record(
            &actor,
            EventKind::DatagramReceived {
                conn,
                from,
                to: local,
                data: context.log.payload_shared(&data),
            },
        );
        let Some(reply) = answer(&data) else {
            continue;
        };
        if socket.send_to(&reply, from).await.is_ok() {
            context.log.record(
                &actor,
                EventKind::DatagramSent {
                    conn,
                    from: local,
                    to: from,
                    data: context.log.payload_shared(&reply),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let names = BuiltinKind::names();
        assert_eq!(
            names,
            [
                "echo",
                "discard",
                "readsplit",
                "framed-echo",
                "command",
                "file",
                "chat",
                "time"
            ]
        );
        for name in names {
            let kind = BuiltinKind::from_name(name).expect("listed names parse");
            assert_eq!(kind.name(), name);
            assert!(!kind.summary().is_empty());
        }
        assert_eq!(BuiltinKind::from_name("framed_echo"), None);
        assert_eq!(BuiltinKind::from_name("Echo"), None);
        assert_eq!(BuiltinKind::from_name("read-split"), None);
    }

    #[test]
    fn a_framing_option_goes_with_framing_names() {
        for kind in BuiltinKind::all() {
            let name = kind.name();
            assert_eq!(
                kind.option_keys().any(|key| key == "framing"),
                !kind.framing_names().is_empty(),
                "{name}"
            );
            for framing in kind.framing_names() {
                assert!(
                    *framing == "none" || FramingKind::from_name(framing).is_some(),
                    "{framing}"
                );
            }
            let config = BuiltinConfig::new(kind);
            assert_eq!(config.validate(), Ok(()), "{name}: defaults are valid");
        }
    }

    #[test]
    fn validate_refuses_a_framing_the_server_does_not_speak() {
        let mut file = BuiltinConfig::new(BuiltinKind::File);
        file.framing = FramingConfig::new(FramingKind::U32Be);
        assert_eq!(
            file.validate(),
            Err(
                "the file server speaks json-header framing; `file` takes framing json-header"
                    .into()
            )
        );
        let mut chat = BuiltinConfig::new(BuiltinKind::Chat);
        chat.framing.kind = FramingKind::Crlf;
        assert_eq!(chat.validate(), Ok(()));
        chat.framing.kind = FramingKind::Varint;
        assert!(chat.validate().is_err());
        let mut echo = BuiltinConfig::new(BuiltinKind::FramedEcho);
        echo.framing.kind = FramingKind::JsonHeader;
        assert_eq!(echo.validate(), Ok(()));
    }
}
