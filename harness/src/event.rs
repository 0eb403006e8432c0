//! The one contract between the runner and everything that reports on a run.
//!
//! ```text
//! actors, servers, programs --record--> EventStream (bounded, per run)
//!                                           |
//!                       run subscriber thread: pcapng writer, JSON events, capture ports
//! ```
//!
//! Every actor, built-in server and external process records [`Event`]s into the
//! [`EventStream`] of its run. The stream is a bounded queue drained by one thread per
//! run that hands each event to the subscribers the CLI chose (see
//! [`RunSubscriber`]); a producer that finds the queue full waits until the thread
//! has caught up, so a run never holds more than a fixed number of events, whatever
//! traffic it moves. With no subscriber the stream is disabled and recording costs
//! one branch. Payload bytes travel only when a subscriber asked for them
//! ([`EventStream::wants_payloads`]); otherwise events carry lengths.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;

pub use crate::vocab::ShutdownHow;

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

/// The bytes of one socket call: always their length, and the bytes themselves only
/// when a subscriber of the run asked for payloads (a packet trace does; a console
/// run does not, so a bulk transfer costs no copies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    len: usize,
    bytes: Option<Bytes>,
}

impl Payload {
    /// A payload that carries its bytes.
    pub fn with_bytes(bytes: Bytes) -> Self {
        Self {
            len: bytes.len(),
            bytes: Some(bytes),
        }
    }

    /// A payload that only tells its length.
    pub fn len_only(len: usize) -> Self {
        Self { len, bytes: None }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, when the stream carried them.
    pub fn bytes(&self) -> Option<&Bytes> {
        self.bytes.as_ref()
    }
}

impl Serialize for Payload {
    /// Reports show lengths; bytes belong in traces.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.len as u64)
    }
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
    Write { conn: ConnId, data: Payload },
    /// One read call's bytes.
    Read { conn: ConnId, data: Payload },
    /// A UDP socket was bound (client or server).
    UdpBound { conn: ConnId, local: SocketAddr },
    /// A UDP datagram was sent.
    DatagramSent {
        conn: ConnId,
        from: SocketAddr,
        to: SocketAddr,
        data: Payload,
    },
    /// A UDP datagram was received (possibly truncated to the read size).
    DatagramReceived {
        conn: ConnId,
        from: SocketAddr,
        to: SocketAddr,
        data: Payload,
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
    StepStarted { index: usize, step: Arc<str> },
    /// A script step succeeded.
    StepPassed { index: usize },
    /// A script step failed; the message is the full explanation.
    StepFailed { index: usize, message: String },
    /// A line an external server printed.
    ProcessOutput { stream: OutputStream, line: String },
    /// An external server exited (or was stopped by us).
    ProcessExited { status: String },
    /// A fault of a proxy acted. Either on what the proxy is about to send on
    /// `conn` (bytes, a close or a reset: the trace comments the packet that
    /// carries it), or, when `discarded`, on bytes or datagrams that arrived on
    /// `conn` and were thrown away (the trace comments the packet that brought
    /// them).
    Fault {
        conn: ConnId,
        flow: crate::proxy::Flow,
        fault: &'static str,
        action: String,
        discarded: bool,
    },
    /// A proxy started with this seed: every decision of its faults follows from it.
    ProxyStarted {
        listen: SocketAddr,
        upstream: SocketAddr,
        seed: u64,
    },
}

/// Which output stream a process line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn name(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// What the subscribers of a run asked the stream to carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interest {
    /// Some subscriber wants events at all.
    pub events: bool,
    /// Some subscriber wants payload bytes (a synthesized trace).
    pub payloads: bool,
}

/// At most this many events wait in a run's queue before producers wait.
const QUEUE_EVENTS: usize = 4096;
/// At most this many payload bytes wait in a run's queue before producers wait:
/// the bound that keeps a traced bulk transfer's memory flat.
const QUEUE_BYTES: usize = 4 << 20;
/// The subscriber thread is woken early once this many events are queued; below
/// that it drains on its own schedule, so quiet runs cost producers no wake-ups.
const WAKE_EVENTS: usize = 1024;
/// How often the subscriber thread drains a queue nobody woke it for.
const DRAIN_EVERY: Duration = Duration::from_millis(5);

/// The producer side of a run's event stream. Cheap to clone; every actor, server
/// and process of the run holds one.
#[derive(Debug, Clone)]
pub struct EventStream {
    inner: Arc<StreamInner>,
}

#[derive(Debug)]
struct StreamInner {
    started: Instant,
    /// The wall-clock time at which `started` was taken: traces give packets real
    /// times as `started_at + event.at`.
    started_at: SystemTime,
    interest: Interest,
    next_conn: AtomicU64,
    queue: Mutex<Queue>,
    /// The subscriber thread waits here for events.
    filled: Condvar,
    /// Producers wait here for room.
    drained: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    events: Vec<Event>,
    bytes: usize,
    /// No more events are accepted (the run is over).
    closed: bool,
    /// Nobody reads any more: producers drop events instead of waiting forever.
    abandoned: bool,
}

/// The consumer side of a run's event stream.
#[derive(Debug)]
pub struct EventReceiver {
    inner: Arc<StreamInner>,
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        let mut queue = self.inner.lock();
        queue.abandoned = true;
        queue.events = Vec::new();
        self.inner.drained.notify_all();
    }
}

impl StreamInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EventStream {
    /// A stream whose events go to a [`EventReceiver`], carrying what `interest` asks.
    pub fn new(interest: Interest) -> (Self, EventReceiver) {
        let inner = Arc::new(StreamInner {
            started: Instant::now(),
            started_at: SystemTime::now(),
            interest,
            next_conn: AtomicU64::new(1),
            queue: Mutex::new(Queue::default()),
            filled: Condvar::new(),
            drained: Condvar::new(),
        });
        (
            Self {
                inner: Arc::clone(&inner),
            },
            EventReceiver { inner },
        )
    }

    /// A stream nobody subscribed to: it hands out connection ids and time and keeps
    /// nothing (standalone servers, runs reported only by their outcome).
    pub fn disabled() -> Self {
        Self::new(Interest::default()).0
    }

    /// Whether recording an event does anything; callers skip building costly
    /// events (formatted text) when it does not.
    pub fn enabled(&self) -> bool {
        self.inner.interest.events
    }

    /// Whether socket events should carry their bytes.
    pub fn wants_payloads(&self) -> bool {
        self.inner.interest.payloads
    }

    /// The payload of a read: copied only when a subscriber wants bytes.
    pub fn payload_of(&self, data: &[u8]) -> Payload {
        if self.wants_payloads() {
            Payload::with_bytes(Bytes::copy_from_slice(data))
        } else {
            Payload::len_only(data.len())
        }
    }

    /// The payload of a write of shared bytes: never copied.
    pub fn payload_shared(&self, data: &Bytes) -> Payload {
        if self.wants_payloads() {
            Payload::with_bytes(data.clone())
        } else {
            Payload::len_only(data.len())
        }
    }

    /// A fresh connection id, unique within this run.
    pub fn next_conn_id(&self) -> ConnId {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The wall-clock time at which this stream's clock read zero.
    pub fn started_at(&self) -> SystemTime {
        self.inner.started_at
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Appends an event for `actor`, stamped now. The timestamp is taken under the
    /// lock so the stream's order and its times always agree. Waits (briefly, on
    /// this thread) while the queue is full: the subscriber thread never waits on
    /// producers, so the wait always ends.
    pub fn record(&self, actor: &Arc<str>, kind: EventKind) {
        if !self.inner.interest.events {
            return;
        }
        let bytes = match &kind {
            EventKind::Write { data, .. }
            | EventKind::Read { data, .. }
            | EventKind::DatagramSent { data, .. }
            | EventKind::DatagramReceived { data, .. } => {
                data.bytes().map_or(0, |bytes| bytes.len())
            }
            _ => 0,
        };
        let mut queue = self.inner.lock();
        while !queue.abandoned
            && !queue.closed
            && (queue.events.len() >= QUEUE_EVENTS
                || (queue.bytes > 0 && queue.bytes + bytes > QUEUE_BYTES))
        {
            self.inner.filled.notify_one();
            queue = self
                .inner
                .drained
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
        if queue.abandoned || queue.closed {
            return;
        }
        let at = self.inner.started.elapsed();
        queue.events.push(Event {
            at,
            actor: Arc::clone(actor),
            kind,
        });
        queue.bytes += bytes;
        if queue.events.len() == WAKE_EVENTS || queue.bytes >= QUEUE_BYTES / 2 {
            self.inner.filled.notify_one();
        }
    }

    /// Ends the stream: later events are dropped, and the receiver returns `None`
    /// once it has taken what is queued. Called by whoever drives the run, after the
    /// runner returned (tasks it could not stop may still hold clones).
    pub fn close(&self) {
        let mut queue = self.inner.lock();
        queue.closed = true;
        self.inner.filled.notify_all();
        self.inner.drained.notify_all();
    }
}

impl EventReceiver {
    /// The next batch of events, in order; `None` once the stream is closed and
    /// everything was taken. Blocks the calling thread: call it from the run's
    /// subscriber thread, never from an async task.
    pub fn next_batch(&self, batch: &mut Vec<Event>) -> Option<()> {
        batch.clear();
        let mut queue = self.inner.lock();
        loop {
            if !queue.events.is_empty() {
                std::mem::swap(&mut queue.events, batch);
                queue.bytes = 0;
                self.inner.drained.notify_all();
                return Some(());
            }
            if queue.closed {
                return None;
            }
            queue = self
                .inner
                .filled
                .wait_timeout(queue, DRAIN_EVERY)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Whether the stream carries payload bytes.
    pub fn interest(&self) -> Interest {
        self.inner.interest
    }
}

/// One consumer of a run's events, fed on the run's subscriber thread while the run
/// goes. Reporters that need only the outcome subscribe to the suite instead.
pub trait RunSubscriber: Send {
    /// What this subscriber needs the stream to carry.
    fn interest(&self) -> Interest;
    /// One event, in stream order.
    fn event(&mut self, event: &Event);
    /// The stream closed: finish writing. An error is reported by the caller and
    /// makes the command fail.
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Feeds every event of `receiver` to `subscribers` until the stream closes, then
/// finishes each; returns their errors. Runs on its own thread so that slow file
/// I/O never stalls the run's sockets.
pub fn feed(receiver: EventReceiver, subscribers: &mut [Box<dyn RunSubscriber>]) -> Vec<String> {
    let mut batch = Vec::new();
    while receiver.next_batch(&mut batch).is_some() {
        for event in &batch {
            for subscriber in subscribers.iter_mut() {
                subscriber.event(event);
            }
        }
    }
    drop(receiver);
    subscribers
        .iter_mut()
        .filter_map(|subscriber| subscriber.finish().err())
        .collect()
}

/// The union of what `subscribers` need the stream to carry.
pub fn interest_of(subscribers: &[Box<dyn RunSubscriber>]) -> Interest {
    subscribers
        .iter()
        .map(|s| s.interest())
        .fold(Interest::default(), |a, b| Interest {
            events: a.events || b.events,
            payloads: a.payloads || b.payloads,
        })
}

/// A subscriber that keeps every event in memory: for tests and small tools that
/// want to look at a whole run afterwards. Never used by `wirecheck run`.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    events: Arc<Mutex<Vec<Event>>>,
    payloads: bool,
}

impl Collected {
    /// Collects events; with `payloads`, their bytes too.
    pub fn new(payloads: bool) -> Self {
        Self {
            events: Arc::default(),
            payloads,
        }
    }

    /// Everything collected so far.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl RunSubscriber for Collected {
    fn interest(&self) -> Interest {
        Interest {
            events: true,
            payloads: self.payloads,
        }
    }

    fn event(&mut self, event: &Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
    }
}

fn serialize_nanos<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(len: usize) -> EventKind {
        EventKind::Write {
            conn: 1,
            data: Payload::with_bytes(Bytes::from(vec![7u8; len])),
        }
    }

    #[test]
    fn a_full_queue_makes_producers_wait_for_the_subscriber() {
        let (stream, receiver) = EventStream::new(Interest {
            events: true,
            payloads: true,
        });
        let actor: Arc<str> = Arc::from("a");
        // Far more payload than the queue may hold at once.
        let total = QUEUE_BYTES * 8;
        let chunk = 64 * 1024;
        let producer = std::thread::spawn({
            let stream = stream.clone();
            move || {
                for _ in 0..total / chunk {
                    stream.record(&actor, write(chunk));
                }
                stream.close();
            }
        });
        let mut batch = Vec::new();
        let mut seen = 0;
        let mut largest_batch_bytes = 0;
        while receiver.next_batch(&mut batch).is_some() {
            let bytes: usize = batch
                .iter()
                .map(|e| match &e.kind {
                    EventKind::Write { data, .. } => data.len(),
                    _ => 0,
                })
                .sum();
            largest_batch_bytes = largest_batch_bytes.max(bytes);
            seen += bytes;
        }
        producer.join().unwrap();
        assert_eq!(seen, total, "no event is lost");
        assert!(
            largest_batch_bytes <= QUEUE_BYTES,
            "the queue never held more than its bound: {largest_batch_bytes}"
        );
    }

    #[test]
    fn a_disabled_stream_keeps_nothing_and_copies_nothing() {
        let stream = EventStream::disabled();
        assert!(!stream.enabled());
        let payload = stream.payload_of(b"hello");
        assert_eq!(payload.len(), 5);
        assert!(payload.bytes().is_none());
        stream.record(&Arc::from("a"), write(10));
    }

    #[test]
    fn a_dropped_receiver_never_blocks_producers() {
        let (stream, receiver) = EventStream::new(Interest {
            events: true,
            payloads: false,
        });
        drop(receiver);
        let actor: Arc<str> = Arc::from("a");
        for _ in 0..QUEUE_EVENTS * 2 {
            stream.record(&actor, EventKind::PeerEof { conn: 1 });
        }
    }
}
