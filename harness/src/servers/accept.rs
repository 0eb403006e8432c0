//! The one TCP accept loop of wirecheck. Built-in servers serve through
//! [`serve_connections`]; scripted servers take exactly the connections they
//! want with [`accept_exactly`]. Both go through an [`Acceptor`], which
//!
//! * applies the server's socket options to every accepted connection and
//!   reports when that fails (the connection is then not served: it would not
//!   behave as the scenario asked);
//! * backs off when accepting fails for want of resources (`EMFILE`, `ENFILE`,
//!   `ENOBUFS`, `ENOMEM`) or for any other reason that is not about the one
//!   connection: 10 ms, doubling up to 1 s, back to none after the next
//!   success. The error is reported once per server, on standard error. A
//!   loop that retried at once would spin at full speed for as long as the
//!   descriptors stay exhausted;
//! * retries at once when the error only concerns the connection being
//!   accepted (it was aborted while it waited in the backlog): the next one is
//!   unaffected.
//!
//! [`serve_connections`] also bounds how many connections a server serves at
//! once. At the limit it stops accepting until a connection ends: new clients
//! wait in the kernel's listen backlog (their connect succeeds, nothing is
//! read), rather than being refused or costing the server memory.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::net::apply_socket_options;
use crate::vocab::SocketOptions;

/// Default `max_connections` of a built-in TCP server.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The first wait after a failed accept, doubled after each further failure.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// The longest wait between two accept attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// An accepted connection, its socket options applied.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// The socket options could not be applied to an accepted connection, which
/// has been closed.
#[derive(Debug)]
pub struct SocketOptionsError {
    pub peer: SocketAddr,
    pub error: io::Error,
}

impl fmt::Display for SocketOptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot apply the socket options to the connection from {}: {}",
            self.peer, self.error
        )
    }
}

impl std::error::Error for SocketOptionsError {}

/// Whether an accept error is about the one connection being accepted (it
/// died in the backlog), so the next accept can go ahead at once. Linux
/// reports such pending network errors from `accept` (see accept(2)).
pub fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) || matches!(
        error.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::EHOSTUNREACH
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP
        )
    )
}

/// Whether an accept error means the process or the system is out of
/// descriptors or memory: it lasts until something is freed.
pub fn is_resource_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The wait between failed accepts.
#[derive(Debug, Default)]
struct Backoff {
    /// The last wait; zero while accepting works.
    delay: Duration,
    /// No accept before this. Kept across a cancelled wait.
    retry_at: Option<Instant>,
}

impl Backoff {
    /// The next wait: [`BACKOFF_FIRST`], doubling up to [`BACKOFF_MAX`].
    fn next_delay(delay: Duration) -> Duration {
        if delay.is_zero() {
            BACKOFF_FIRST
        } else {
            (delay * 2).min(BACKOFF_MAX)
        }
    }

    fn failed(&mut self) {
        self.delay = Self::next_delay(self.delay);
        self.retry_at = Some(Instant::now() + self.delay);
    }

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
        self.retry_at = None;
    }

    async fn wait(&self) {
        if let Some(at) = self.retry_at {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// Accepts connections from one listener, with the server's socket options,
/// backing off on errors (see the [module docs](self)).
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    options: SocketOptions,
    /// The server's name in reports.
    name: Arc<str>,
    backoff: Backoff,
    accept_error_reported: bool,
    options_error_reported: bool,
}

impl Acceptor {
    /// `name` is how reports on standard error name the server.
    pub fn new(listener: TcpListener, options: SocketOptions, name: Arc<str>) -> Self {
        Self {
            listener,
            options,
            name,
            backoff: Backoff::default(),
            accept_error_reported: false,
            options_error_reported: false,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, its socket options applied. Errors of the
    /// listener are retried (with back-off) rather than returned; the only
    /// error is a connection whose socket options could not be set, which is
    /// closed. Cancel-safe: dropping the future loses no connection and keeps
    /// the back-off.
    pub async fn accept(&mut self) -> Result<Accepted, SocketOptionsError> {
        loop {
            self.backoff.wait().await;
            let (stream, peer) = match self.listener.accept().await {
                Ok(pair) => pair,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    self.report_accept_error(&e);
                    self.backoff.failed();
                    continue;
                }
            };
            self.backoff.succeeded();
            // Without an address the connection is already gone.
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            if let Err(error) = apply_socket_options(socket2::SockRef::from(&stream), &self.options)
            {
                return Err(SocketOptionsError { peer, error });
            }
            return Ok(Accepted {
                stream,
                peer,
                local,
            });
        }
    }

    fn report_accept_error(&mut self, error: &io::Error) {
        if std::mem::replace(&mut self.accept_error_reported, true) {
            return;
        }
        let why = if is_resource_error(error) {
            "out of descriptors or memory"
        } else {
            "unexpected error"
        };
        eprintln!(
            "warning: server `{}` cannot accept a connection ({why}: {error}); it retries with a back-off of up to {}s (reported once)",
            self.name,
            BACKOFF_MAX.as_secs()
        );
    }

    /// Reports, once per server, a connection closed unserved because its
    /// socket options could not be applied.
    pub fn report_options_error(&mut self, error: &SocketOptionsError) {
        if std::mem::replace(&mut self.options_error_reported, true) {
            return;
        }
        eprintln!(
            "warning: server `{}`: {error}; such connections are closed unserved (reported once)",
            self.name
        );
    }
}

/// Accepts connections until `shutdown` and serves each on its own task with
/// `serve`, at most `max_connections` at a time (at least 1): at the limit no
/// connection is accepted until one of the served ones ends. On `shutdown` the
/// listener closes and the connections still running are stopped.
pub async fn serve_connections<F, Fut>(
    mut acceptor: Acceptor,
    max_connections: usize,
    shutdown: CancellationToken,
    mut serve: F,
) where
    F: FnMut(Accepted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut connections = JoinSet::new();
    // A free slot, taken before accepting; it goes with the connection's task.
    let mut slot = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // Finished connections are reaped as they end, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            taken = Arc::clone(&slots).acquire_owned(), if slot.is_none() => {
                slot = Some(taken.expect("the semaphore is never closed"));
            }
            accepted = acceptor.accept(), if slot.is_some() => match accepted {
                Ok(accepted) => {
                    let held = slot.take();
                    let work = serve(accepted);
                    connections.spawn(async move {
                        work.await;
                        drop(held);
                    });
                }
                Err(e) => acceptor.report_options_error(&e),
            },
        }
    }
    drop(acceptor);
    connections.shutdown().await;
}

/// Accepts exactly `count` connections from `listener`, for a scripted
/// server; see [`AcceptExactly::next`].
pub fn accept_exactly(
    listener: TcpListener,
    count: usize,
    options: SocketOptions,
    name: Arc<str>,
) -> AcceptExactly {
    AcceptExactly {
        acceptor: (count > 0).then(|| Acceptor::new(listener, options, name)),
        left: count,
    }
}

/// Hands out the connections of [`accept_exactly`], one per call of
/// [`next`](AcceptExactly::next).
#[derive(Debug)]
pub struct AcceptExactly {
    /// `None` once every connection has been accepted: the listener is closed.
    acceptor: Option<Acceptor>,
    left: usize,
}

impl AcceptExactly {
    /// The next connection (socket options applied, accept errors retried with
    /// back-off), or `None` once `count` connections have been accepted. The
    /// listener is closed as soon as the last one is, so later clients are
    /// refused instead of waiting in the backlog. `Some(Err(..))`: the options
    /// could not be applied to a connection, which counts as accepted and has
    /// been closed. Cancel-safe, so it can wait in a `select!` beside the
    /// sessions already running.
    pub async fn next(&mut self) -> Option<Result<Accepted, SocketOptionsError>> {
        let acceptor = self.acceptor.as_mut()?;
        let accepted = acceptor.accept().await;
        self.left -= 1;
        if self.left == 0 {
            self.acceptor = None;
        }
        Some(accepted)
    }

    /// How many connections are still to be accepted.
    pub fn remaining(&self) -> usize {
        self.left
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    #[test]
    fn the_back_off_doubles_up_to_a_second() {
        let mut delay = Duration::ZERO;
        let mut delays = Vec::new();
        for _ in 0..10 {
            delay = Backoff::next_delay(delay);
            delays.push(delay.as_millis());
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        let mut backoff = Backoff::default();
        backoff.failed();
        backoff.failed();
        assert_eq!(backoff.delay, Duration::from_millis(20));
        backoff.succeeded();
        assert_eq!((backoff.delay, backoff.retry_at), (Duration::ZERO, None));
    }

    #[test]
    fn errors_are_classified() {
        let os = io::Error::from_raw_os_error;
        assert!(is_resource_error(&os(libc::EMFILE)));
        assert!(is_resource_error(&os(libc::ENFILE)));
        assert!(is_resource_error(&os(libc::ENOBUFS)));
        assert!(!is_connection_error(&os(libc::EMFILE)));
        assert!(is_connection_error(&os(libc::ECONNABORTED)));
        assert!(is_connection_error(&os(libc::EPROTO)));
        assert!(!is_connection_error(&os(libc::EINVAL)));
        assert!(!is_resource_error(&os(libc::EINVAL)));
    }

    /// At the limit, a further client waits in the backlog: it is served
    /// (here: greeted) only once a served connection has ended.
    #[tokio::test]
    async fn connections_over_the_limit_wait_until_one_ends() {
        let (listener, addr) = listener().await;
        let acceptor = Acceptor::new(listener, SocketOptions::default(), Arc::from("limit"));
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_connections(acceptor, 2, shutdown.clone(), {
            let log = Arc::clone(&log);
            let mut number = 0;
            move |mut accepted: Accepted| {
                number += 1;
                let log = Arc::clone(&log);
                async move {
                    log.lock().unwrap().push(format!("start {number}"));
                    let _ = accepted.stream.write_all(&[number]).await;
                    let mut rest = Vec::new();
                    let _ = accepted.stream.read_to_end(&mut rest).await;
                    log.lock().unwrap().push(format!("end {number}"));
                }
            }
        }));
        let greeting = |mut stream: TcpStream| async move {
            let mut byte = [0u8];
            stream.read_exact(&mut byte).await.unwrap();
            (stream, byte[0])
        };
        let (first, one) = greeting(TcpStream::connect(addr).await.unwrap()).await;
        let (second, two) = greeting(TcpStream::connect(addr).await.unwrap()).await;
        assert_eq!((one, two), (1, 2));
        // The third handshake completes in the backlog, but nothing serves it.
        let third = TcpStream::connect(addr).await.unwrap();
        let mut waiting = [0u8];
        assert_eq!(
            third.try_read(&mut waiting).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "the third connection was served while two were open"
        );
        drop(first);
        let (third, three) = greeting(third).await;
        assert_eq!(three, 3);
        assert_eq!(
            *log.lock().unwrap(),
            ["start 1", "start 2", "end 1", "start 3"]
        );
        shutdown.cancel();
        server.await.unwrap();
        drop((second, third));
    }

    #[tokio::test]
    async fn accept_exactly_closes_the_listener_after_the_last() {
        let (listener, addr) = listener().await;
        let options = SocketOptions {
            nodelay: Some(true),
            ..SocketOptions::default()
        };
        let mut incoming = accept_exactly(listener, 2, options, Arc::from("srv"));
        assert_eq!(incoming.remaining(), 2);
        let client = TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert_eq!(accepted.peer, client.local_addr().unwrap());
        assert_eq!(accepted.local, addr);
        assert!(
            accepted.stream.nodelay().unwrap(),
            "the options are applied"
        );
        let _second_client = TcpStream::connect(addr).await.unwrap();
        let _second = incoming.next().await.unwrap().unwrap();
        assert_eq!(incoming.remaining(), 0);
        assert!(incoming.next().await.is_none());
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }
}
