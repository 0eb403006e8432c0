//! The one contract between the runner and everything that reports on a run.
//!
//! Every actor, built-in server and external process writes [`Event`]s into a shared
//! [`EventLog`]; console and JUnit reports, JSON output and packet traces are all
//! derived from that log afterwards. Keeping payload bytes in the log (as cheap,
//! reference-counted [`Bytes`]) is what lets a trace show exactly what was on the wire.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

/// Identifies one TCP connection or one UDP socket within a scenario run, so reports
/// can group reads and writes into streams.
pub type ConnId = u64;

/// Something that happened during a run, stamped with a monotonic time.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Time since the scenario started; monotonic, never goes backwards.
    #[serde(serialize_with = "serialize_nanos")]
    pub at: Duration,
    /// The actor that saw it: `client1`, `srv`, `srv#2`, `client1#3`.
    pub actor: Arc<str>,
    pub kind: EventKind,
}

/// What happened. Socket events carry the connection id and both endpoints as
/// seen from the actor, which is all a trace needs to rebuild packets.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A TCP client connected.
    Connect {
        conn: ConnId,
        local: SocketAddr,
        peer: SocketAddr,
    },
    /// A TCP client's connection attempt was refused or failed.
    ConnectFailed { peer: SocketAddr, error: String },
    /// A TCP server accepted a connection.
    Accept {
        conn: ConnId,
        local: SocketAddr,
        peer: SocketAddr,
    },
    /// One write call's bytes, as the kernel accepted them.
    Write {
        conn: ConnId,
        #[serde(serialize_with = "serialize_len")]
        data: Bytes,
    },
    /// One read call's bytes.
    Read {
        conn: ConnId,
        #[serde(serialize_with = "serialize_len")]
        data: Bytes,
    },
    /// A UDP socket was bound (client or server).
    UdpBound { conn: ConnId, local: SocketAddr },
    /// A UDP datagram was sent.
    DatagramSent {
        conn: ConnId,
        from: SocketAddr,
        to: SocketAddr,
        #[serde(serialize_with = "serialize_len")]
        data: Bytes,
    },
    /// A UDP datagram was received (possibly truncated to the read size).
    DatagramReceived {
        conn: ConnId,
        from: SocketAddr,
        to: SocketAddr,
        #[serde(serialize_with = "serialize_len")]
        data: Bytes,
    },
    /// This side half-closed the connection.
    Shutdown { conn: ConnId, how: ShutdownHow },
    /// This side closed the socket (a FIN if data was all sent, a RST with linger 0).
    Close { conn: ConnId, reset: bool },
    /// The peer reset the connection (a read or write failed with ECONNRESET/EPIPE).
    PeerReset { conn: ConnId },
    /// The peer closed its side: a read returned 0 bytes.
    PeerEof { conn: ConnId },
    /// A script step began.
    StepStarted { index: usize, step: String },
    /// A script step succeeded.
    StepPassed { index: usize },
    /// A script step failed; the message is the full explanation.
    StepFailed { index: usize, message: String },
    /// A line an external server printed.
    ProcessOutput { stream: OutputStream, line: String },
    /// An external server exited (or was stopped by us).
    ProcessExited { status: String },
}

/// Which half (or both) of a TCP connection a `shutdown` closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownHow {
    Write,
    Read,
    Both,
}

/// Which output stream a process line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// The shared, append-only event log of one scenario run.
///
/// A mutex-protected vector is enough: events are appended at socket-call rate, and
/// a single lock keeps every actor's events in one global order that matches their
/// timestamps.
#[derive(Debug, Clone)]
pub struct EventLog {
    inner: Arc<EventLogInner>,
}

#[derive(Debug)]
struct EventLogInner {
    started: Instant,
    /// A disabled log drops every event: standalone servers (`wirecheck serve`) run
    /// for hours and must not accumulate a record nobody reads.
    enabled: bool,
    events: Mutex<Vec<Event>>,
    next_conn: std::sync::atomic::AtomicU64,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLog {
    /// Starts a log whose clock reads zero now.
    pub fn new() -> Self {
        Self::with_recording(true)
    }

    /// A log that hands out connection ids and time but keeps no events.
    pub fn disabled() -> Self {
        Self::with_recording(false)
    }

    fn with_recording(enabled: bool) -> Self {
        Self {
            inner: Arc::new(EventLogInner {
                started: Instant::now(),
                enabled,
                events: Mutex::new(Vec::new()),
                next_conn: std::sync::atomic::AtomicU64::new(1),
            }),
        }
    }

    /// A fresh connection id, unique within this log.
    pub fn next_conn_id(&self) -> ConnId {
        self.inner
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Time since the log started.
    pub fn elapsed(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Appends an event for `actor`, stamped now. The timestamp is taken under the
    /// lock so the log's order and its times always agree.
    pub fn record(&self, actor: &Arc<str>, kind: EventKind) {
        if !self.inner.enabled {
            return;
        }
        let mut events = self.inner.events.lock().unwrap_or_else(|e| e.into_inner());
        let at = self.inner.started.elapsed();
        events.push(Event {
            at,
            actor: Arc::clone(actor),
            kind,
        });
    }

    /// A copy of every event so far, in order.
    pub fn snapshot(&self) -> Vec<Event> {
        self.inner
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn serialize_nanos<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_nanos())
}

fn serialize_len<S: serde::Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(data.len() as u64)
}
