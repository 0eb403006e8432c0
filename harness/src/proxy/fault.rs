//! What a fault is: the model shared by the scenario loader, the `wirecheck proxy`
//! command and the fault pipelines. Plain data; the pipelines give it behaviour.

use std::time::Duration;

use serde::Serialize;

use crate::vocab::Proto;

/// Which way bytes flow through a proxy: `Up` from the client to the server,
/// `Down` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    Up,
    Down,
}

impl Flow {
    pub fn name(self) -> &'static str {
        match self {
            Flow::Up => "up",
            Flow::Down => "down",
        }
    }
}

/// The `direction` of a fault: which flows it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    Up,
    Down,
    #[default]
    Both,
}

impl Direction {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "up" => Some(Direction::Up),
            "down" => Some(Direction::Down),
            "both" => Some(Direction::Both),
            _ => None,
        }
    }

    pub fn covers(self, flow: Flow) -> bool {
        matches!(
            (self, flow),
            (Direction::Both, _) | (Direction::Up, Flow::Up) | (Direction::Down, Flow::Down)
        )
    }
}

/// One entry of a proxy's `faults`: what it does and where it applies.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub direction: Direction,
    /// Only these connections (numbered from 1 in accept order; UDP: client
    /// addresses in order of their first datagram); `None` is every one.
    pub connections: Option<Vec<u64>>,
    /// TCP: the fault applies to a whole connection with this probability, drawn
    /// from the seed. UDP: the same, per client address.
    pub probability: f64,
}

impl FaultSpec {
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            direction: Direction::Both,
            connections: None,
            probability: 1.0,
        }
    }
}

/// The faults. TCP ones transform a byte stream, UDP ones a datagram sequence;
/// `latency` (with `jitter`) exists for both.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Deliver each piece `delay` later, plus or minus up to `jitter`, order kept.
    Latency { delay: Duration, jitter: Duration },
    /// Pace delivery to this many bytes per second, per connection or shared by
    /// every connection of the proxy.
    Bandwidth { bytes_per_second: u64, shared: bool },
    /// Forward in writes of `min..=max` bytes, `delay` apart.
    Slice {
        min: usize,
        max: usize,
        delay: Duration,
    },
    /// Hold bytes until `bytes` are held or `window` passed since the first, then
    /// forward everything held in one write.
    Coalesce { bytes: usize, window: Duration },
    /// After this many bytes in the direction, reset both connections.
    ResetAfter(u64),
    /// After this many bytes in the direction, close both connections.
    CloseAfter(u64),
    /// Read and discard; forward nothing (not even the close).
    Blackhole,
    /// Forward a close this much later.
    SlowClose(Duration),
    /// UDP: drop a datagram with this probability.
    Drop(f64),
    /// UDP: send a datagram twice with this probability.
    Duplicate(f64),
    /// UDP: with this probability, hold a datagram back until the next one passed
    /// it (or `window` passed).
    Reorder { probability: f64, window: Duration },
    /// UDP: flip one byte of a datagram with this probability.
    Corrupt(f64),
    /// UDP: cut every datagram to at most this many bytes.
    Truncate(usize),
}

/// The largest byte count, rate or connection number a fault takes (the loader
/// and the JSON schema share it): far beyond any run, small enough to add to.
pub const LARGEST_COUNT: u64 = u64::MAX / 2;
/// The largest `slice` size: a single write of 1 GiB is already no slicing.
pub const LARGEST_SLICE: u64 = 1 << 30;

/// Every fault key, for "did you mean" hints and docs.
pub const FAULT_NAMES: &[&str] = &[
    "latency",
    "jitter",
    "bandwidth",
    "slice",
    "coalesce",
    "reset_after",
    "close_after",
    "blackhole",
    "slow_close",
    "drop",
    "duplicate",
    "reorder",
    "corrupt",
    "truncate",
];

/// The faults each protocol takes.
pub const TCP_FAULTS: &[&str] = &[
    "latency",
    "jitter",
    "bandwidth",
    "slice",
    "coalesce",
    "reset_after",
    "close_after",
    "blackhole",
    "slow_close",
];
pub const UDP_FAULTS: &[&str] = &[
    "latency",
    "jitter",
    "drop",
    "duplicate",
    "reorder",
    "corrupt",
    "truncate",
];

/// The faults `proto` takes.
pub fn faults_for(proto: Proto) -> &'static [&'static str] {
    match proto {
        Proto::Tcp => TCP_FAULTS,
        Proto::Udp => UDP_FAULTS,
    }
}

/// Default `window` of `coalesce`: long enough for a client's back-to-back sends
/// to meet, short enough that a lone short message is not held for a step timeout.
pub const DEFAULT_COALESCE_WINDOW: Duration = Duration::from_millis(100);
/// Default `window` of `reorder`: how long a held datagram waits for a successor.
pub const DEFAULT_REORDER_WINDOW: Duration = Duration::from_millis(100);

impl FaultKind {
    /// The key that names the fault in a scenario (`slice`, `reset_after`).
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Latency { .. } => "latency",
            FaultKind::Bandwidth { .. } => "bandwidth",
            FaultKind::Slice { .. } => "slice",
            FaultKind::Coalesce { .. } => "coalesce",
            FaultKind::ResetAfter(_) => "reset_after",
            FaultKind::CloseAfter(_) => "close_after",
            FaultKind::Blackhole => "blackhole",
            FaultKind::SlowClose(_) => "slow_close",
            FaultKind::Drop(_) => "drop",
            FaultKind::Duplicate(_) => "duplicate",
            FaultKind::Reorder { .. } => "reorder",
            FaultKind::Corrupt(_) => "corrupt",
            FaultKind::Truncate(_) => "truncate",
        }
    }
}
