//! The TCP fault pipeline of one direction of one connection: a pure transform of
//! a byte stream, driven by a seeded RNG and a clock the caller passes in.
//!
//! ```text
//!  push(now, bytes) / end(now)          advance(now)             pop_due(now)
//!  ---------------------------> stage 1 -> stage 2 -> ... -> ready queue ------> socket writes
//! ```
//!
//! Nothing here touches a socket or reads a clock: time is a `Duration` since the
//! proxy started, given by the caller. The socket layer (`tcp.rs`) is a loop that
//! reads, pushes, sleeps until [`Pipeline::next_wake`], and writes what
//! [`Pipeline::pop_due`] hands it; the fuzz target and the unit tests drive the
//! same code with a virtual clock.
//!
//! Every piece that leaves carries a time no earlier than the previous piece's, so
//! order is kept whatever the faults. Stages that split data (`slice`,
//! `bandwidth`) cut lazily, at most [`SPLIT_BATCH`] pieces per call, so a
//! megabyte sliced into single bytes never sits in memory as a million pieces; the
//! bytes a pipeline holds are reported by [`Pipeline::held_bytes`] for the socket
//! layer's backpressure.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::fault::FaultKind;
use super::rng::FaultRng;
use crate::duration::format_duration;

/// What leaves the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceKind {
    /// One write of these bytes.
    Data(Bytes),
    /// The source half-closed: shut down the sink's write side.
    Eof,
    /// Close both connections (`close_after`).
    Close,
    /// Reset both connections (`reset_after`).
    Reset,
    /// Nothing to do: bytes (or a close) a fault discarded. It travels the pipeline
    /// only so its note reaches the event stream in order.
    Dropped(usize),
}

/// One thing to do to the sink at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// When, as time since the proxy started.
    pub at: Duration,
    pub kind: PieceKind,
    /// The fault actions that touched this piece (built only when asked for).
    pub notes: Vec<FaultNote>,
}

/// One fault action, for the event stream and the trace comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultNote {
    pub fault: &'static str,
    /// What it did, in words: "sliced 10 bytes into 10 writes".
    pub action: String,
}

/// A bandwidth budget shared by every connection of a proxy (`shared = true`): the
/// time at which the link is next free.
pub type SharedLink = Arc<Mutex<Duration>>;

/// A fault as the pipeline takes it: the kind, and the shared link of a shared
/// `bandwidth`.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub kind: FaultKind,
    pub link: Option<SharedLink>,
}

/// At most this many pieces a splitting stage cuts per call.
pub const SPLIT_BATCH: usize = 256;

#[derive(Debug)]
enum Stage {
    Latency {
        delay: Duration,
        jitter: Duration,
        last: Duration,
        rng: FaultRng,
    },
    /// `slice` and `bandwidth`: cut pending data into pieces over time.
    Split {
        pending: VecDeque<Piece>,
        pending_bytes: usize,
        rule: SplitRule,
        /// When the previous piece left.
        last: Option<Duration>,
        /// Pieces cut from the front piece so far, and their count in all.
        cut: usize,
        rng: FaultRng,
    },
    Coalesce {
        bytes: usize,
        window: Duration,
        held: BytesMut,
        first: Duration,
        reads: usize,
    },
    Cut {
        after: u64,
        seen: u64,
        reset: bool,
        done: bool,
    },
    Blackhole,
    SlowClose {
        delay: Duration,
        last: Duration,
    },
}

#[derive(Debug)]
enum SplitRule {
    Slice {
        min: usize,
        max: usize,
        delay: Duration,
    },
    Bandwidth {
        bytes_per_second: u64,
        link: Link,
    },
}

#[derive(Debug)]
enum Link {
    Own(Duration),
    Shared(SharedLink),
}

impl Link {
    fn next_free(&self) -> Duration {
        match self {
            Link::Own(at) => *at,
            Link::Shared(link) => *link.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn set_next_free(&mut self, at: Duration) {
        match self {
            Link::Own(own) => *own = at,
            Link::Shared(link) => *link.lock().unwrap_or_else(|e| e.into_inner()) = at,
        }
    }
}

/// The pipeline of one direction.
#[derive(Debug)]
pub struct Pipeline {
    stages: Vec<Stage>,
    ready: VecDeque<Piece>,
    ready_bytes: usize,
    last_at: Duration,
    notes: bool,
}

impl Pipeline {
    /// A pipeline of `faults` in order. Each stage draws from its own stream,
    /// derived from `rng`, so stages never shift each other's decisions. With
    /// `notes`, pieces carry the words of what each fault did.
    pub fn new(faults: &[StageSpec], mut rng: FaultRng, notes: bool) -> Self {
        let stages = faults
            .iter()
            .map(|spec| {
                let stage_rng = FaultRng::from_seed(rng.next_u64());
                Stage::of(spec, stage_rng)
            })
            .collect();
        Self {
            stages,
            ready: VecDeque::new(),
            ready_bytes: 0,
            last_at: Duration::ZERO,
            notes,
        }
    }

    /// Whether the pipeline changes nothing (no fault applies): the socket layer
    /// may then forward without scheduling.
    pub fn is_transparent(&self) -> bool {
        self.stages.is_empty()
    }

    /// Bytes read from the source at `now`.
    pub fn push(&mut self, now: Duration, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.advance(now);
        self.feed(
            0,
            now,
            vec![Piece {
                at: now,
                kind: PieceKind::Data(data),
                notes: Vec::new(),
            }],
        );
    }

    /// The source half-closed at `now`.
    pub fn end(&mut self, now: Duration) {
        self.advance(now);
        self.feed(
            0,
            now,
            vec![Piece {
                at: now,
                kind: PieceKind::Eof,
                notes: Vec::new(),
            }],
        );
    }

    /// Lets time pass to `now`: windows expire, delayed slices are cut.
    pub fn advance(&mut self, now: Duration) {
        for index in 0..self.stages.len() {
            let mut out = Vec::new();
            self.stages[index].advance(now, self.notes, &mut out);
            if !out.is_empty() {
                self.feed(index + 1, now, out);
            }
        }
    }

    /// The next piece whose time has come, if any.
    pub fn pop_due(&mut self, now: Duration) -> Option<Piece> {
        if self.ready.front()?.at > now {
            return None;
        }
        let piece = self.ready.pop_front()?;
        if let PieceKind::Data(data) = &piece.kind {
            self.ready_bytes -= data.len();
        }
        Some(piece)
    }

    /// When something next happens: a piece falls due or a stage wants time to
    /// pass. `None` when the pipeline is idle.
    pub fn next_wake(&self) -> Option<Duration> {
        let ready = self.ready.front().map(|p| p.at);
        self.stages
            .iter()
            .filter_map(Stage::deadline)
            .chain(ready)
            .min()
    }

    /// Bytes held anywhere in the pipeline: the socket layer stops reading the
    /// source while this is over its bound.
    pub fn held_bytes(&self) -> usize {
        self.ready_bytes + self.stages.iter().map(Stage::held_bytes).sum::<usize>()
    }

    /// Whether nothing is held or waiting.
    pub fn is_idle(&self) -> bool {
        self.ready.is_empty() && self.next_wake().is_none()
    }

    fn feed(&mut self, start: usize, now: Duration, mut batch: Vec<Piece>) {
        for stage in &mut self.stages[start..] {
            let mut next = Vec::with_capacity(batch.len());
            for piece in batch {
                stage.push(piece, now, self.notes, &mut next);
            }
            batch = next;
            if batch.is_empty() {
                return;
            }
        }
        for mut piece in batch {
            piece.at = piece.at.max(self.last_at);
            self.last_at = piece.at;
            if let PieceKind::Data(data) = &piece.kind {
                self.ready_bytes += data.len();
            }
            self.ready.push_back(piece);
        }
    }

    /// Drives the pipeline with a virtual clock until it is idle, collecting every
    /// piece: for tests, benchmarks and the fuzz target.
    pub fn drain(&mut self, mut now: Duration, out: &mut Vec<Piece>) -> Duration {
        loop {
            self.advance(now);
            while let Some(piece) = self.pop_due(now) {
                out.push(piece);
            }
            match self.next_wake() {
                Some(wake) => now = now.max(wake),
                None => return now,
            }
            // A stage that wants to be woken "now" again (a split batch) gets it.
        }
    }
}

fn note(notes: bool, fault: &'static str, action: impl FnOnce() -> String) -> Option<FaultNote> {
    notes.then(|| FaultNote {
        fault,
        action: action(),
    })
}

impl Stage {
    fn of(spec: &StageSpec, rng: FaultRng) -> Stage {
        match &spec.kind {
            FaultKind::Latency { delay, jitter } => Stage::Latency {
                delay: *delay,
                jitter: *jitter,
                last: Duration::ZERO,
                rng,
            },
            FaultKind::Bandwidth {
                bytes_per_second, ..
            } => Stage::split(
                SplitRule::Bandwidth {
                    bytes_per_second: (*bytes_per_second).max(1),
                    link: match &spec.link {
                        Some(link) => Link::Shared(Arc::clone(link)),
                        None => Link::Own(Duration::ZERO),
                    },
                },
                rng,
            ),
            FaultKind::Slice { min, max, delay } => Stage::split(
                SplitRule::Slice {
                    min: (*min).max(1),
                    max: (*max).max((*min).max(1)),
                    delay: *delay,
                },
                rng,
            ),
            FaultKind::Coalesce { bytes, window } => Stage::Coalesce {
                bytes: (*bytes).max(1),
                window: *window,
                held: BytesMut::new(),
                first: Duration::ZERO,
                reads: 0,
            },
            FaultKind::ResetAfter(after) => Stage::Cut {
                after: *after,
                seen: 0,
                reset: true,
                done: false,
            },
            FaultKind::CloseAfter(after) => Stage::Cut {
                after: *after,
                seen: 0,
                reset: false,
                done: false,
            },
            FaultKind::Blackhole => Stage::Blackhole,
            FaultKind::SlowClose(delay) => Stage::SlowClose {
                delay: *delay,
                last: Duration::ZERO,
            },
            // Datagram faults never reach a stream pipeline (the loader refuses
            // them on TCP); passing data through unchanged is the safe reading.
            FaultKind::Drop(_)
            | FaultKind::Duplicate(_)
            | FaultKind::Reorder { .. }
            | FaultKind::Corrupt(_)
            | FaultKind::Truncate(_) => Stage::SlowClose {
                delay: Duration::ZERO,
                last: Duration::ZERO,
            },
        }
    }

    fn split(rule: SplitRule, rng: FaultRng) -> Stage {
        Stage::Split {
            pending: VecDeque::new(),
            pending_bytes: 0,
            rule,
            last: None,
            cut: 0,
            rng,
        }
    }

    fn held_bytes(&self) -> usize {
        match self {
            Stage::Split { pending_bytes, .. } => *pending_bytes,
            Stage::Coalesce { held, .. } => held.len(),
            _ => 0,
        }
    }

    fn deadline(&self) -> Option<Duration> {
        match self {
            Stage::Split {
                pending,
                rule,
                last,
                ..
            } => {
                let front = pending.front()?;
                Some(match (rule, last) {
                    (SplitRule::Slice { delay, .. }, Some(last)) => front.at.max(*last + *delay),
                    (SplitRule::Bandwidth { link, .. }, _) => front.at.max(link.next_free()),
                    _ => front.at,
                })
            }
            Stage::Coalesce {
                held,
                first,
                window,
                ..
            } if !held.is_empty() => Some(*first + *window),
            _ => None,
        }
    }

    fn push(&mut self, mut piece: Piece, now: Duration, notes: bool, out: &mut Vec<Piece>) {
        match self {
            Stage::Latency {
                delay,
                jitter,
                last,
                rng,
            } => {
                let wait = rng.jittered(*delay, *jitter);
                let at = (piece.at + wait).max(*last);
                *last = at;
                let held_for = at - piece.at;
                piece.notes.extend(note(notes, "latency", || {
                    format!(
                        "{} held for {}",
                        describe(&piece.kind),
                        format_duration(held_for)
                    )
                }));
                piece.at = at;
                out.push(piece);
            }
            Stage::Split {
                pending,
                pending_bytes,
                ..
            } => {
                if let PieceKind::Data(data) = &piece.kind {
                    *pending_bytes += data.len();
                }
                pending.push_back(piece);
                self.advance(now, notes, out);
            }
            Stage::Coalesce {
                bytes,
                window,
                held,
                first,
                reads,
            } => {
                if !held.is_empty() && piece.at >= *first + *window {
                    let at = *first + *window;
                    out.push(flush(held, reads, *first, at, "window", notes));
                }
                match piece.kind {
                    PieceKind::Data(data) => {
                        if held.is_empty() {
                            *first = piece.at;
                            *reads = 0;
                        }
                        held.extend_from_slice(&data);
                        *reads += 1;
                        if held.len() >= *bytes {
                            out.push(flush(held, reads, *first, piece.at, "size", notes));
                        }
                    }
                    PieceKind::Reset => {
                        // A reset loses what was still held, as it would in flight.
                        held.clear();
                        out.push(piece);
                    }
                    PieceKind::Dropped(_) => out.push(piece),
                    PieceKind::Eof | PieceKind::Close => {
                        if !held.is_empty() {
                            out.push(flush(held, reads, *first, piece.at, "close", notes));
                        }
                        out.push(piece);
                    }
                }
            }
            Stage::Cut {
                after,
                seen,
                reset,
                done,
            } => {
                if *done {
                    return;
                }
                let PieceKind::Data(data) = &piece.kind else {
                    if matches!(piece.kind, PieceKind::Eof | PieceKind::Dropped(_)) {
                        out.push(piece);
                    } else {
                        // A close or reset from an earlier fault ends this one too.
                        *done = true;
                        out.push(piece);
                    }
                    return;
                };
                let room = *after - *seen;
                if (data.len() as u64) < room {
                    *seen += data.len() as u64;
                    out.push(piece);
                    return;
                }
                let keep = data.slice(..room as usize);
                *seen = *after;
                *done = true;
                let at = piece.at;
                if !keep.is_empty() {
                    out.push(Piece {
                        at,
                        kind: PieceKind::Data(keep),
                        notes: std::mem::take(&mut piece.notes),
                    });
                }
                let (fault, what) = if *reset {
                    ("reset_after", "reset")
                } else {
                    ("close_after", "closed")
                };
                let total = *after;
                let dropped = data.len() as u64 - room;
                out.push(Piece {
                    at,
                    kind: if *reset {
                        PieceKind::Reset
                    } else {
                        PieceKind::Close
                    },
                    notes: note(notes, fault, || {
                        format!(
                            "{what} both connections after {total} bytes ({dropped} bytes of this read dropped)"
                        )
                    })
                    .into_iter()
                    .collect(),
                });
            }
            Stage::Blackhole => {
                let dropped = match &piece.kind {
                    PieceKind::Data(data) => Some(data.len()),
                    PieceKind::Eof => Some(0),
                    _ => None,
                };
                if let Some(len) = dropped {
                    piece.notes.extend(note(notes, "blackhole", || {
                        if len == 0 {
                            "the close was not forwarded".into()
                        } else {
                            format!("dropped {len} bytes")
                        }
                    }));
                    piece.kind = PieceKind::Dropped(len);
                }
                out.push(piece);
            }
            Stage::SlowClose { delay, last } => {
                if matches!(piece.kind, PieceKind::Eof | PieceKind::Close) {
                    let late = *delay;
                    piece.notes.extend(note(notes, "slow_close", || {
                        format!("close forwarded {} late", format_duration(late))
                    }));
                    piece.at += *delay;
                }
                piece.at = piece.at.max(*last);
                *last = piece.at;
                out.push(piece);
            }
        }
    }

    fn advance(&mut self, now: Duration, notes: bool, out: &mut Vec<Piece>) {
        match self {
            Stage::Coalesce {
                held,
                first,
                window,
                reads,
                ..
            } if !held.is_empty() && now >= *first + *window => {
                let at = *first + *window;
                out.push(flush(held, reads, *first, at, "window", notes));
            }
            Stage::Split {
                pending,
                pending_bytes,
                rule,
                last,
                cut,
                rng,
            } => {
                let mut made = 0;
                while made < SPLIT_BATCH {
                    let Some(front) = pending.front_mut() else {
                        break;
                    };
                    let at = match (&*rule, &*last) {
                        (SplitRule::Slice { delay, .. }, Some(last)) => {
                            front.at.max(*last + *delay)
                        }
                        (SplitRule::Bandwidth { link, .. }, _) => front.at.max(link.next_free()),
                        _ => front.at,
                    };
                    if at > now {
                        break;
                    }
                    made += 1;
                    let PieceKind::Data(data) = &mut front.kind else {
                        let mut piece = pending.pop_front().expect("front exists");
                        piece.at = at;
                        *last = Some(at);
                        out.push(piece);
                        continue;
                    };
                    let (size, delivered) = match rule {
                        SplitRule::Slice { min, max, .. } => {
                            (rng.between(*min as u64, *max as u64) as usize, at)
                        }
                        SplitRule::Bandwidth {
                            bytes_per_second,
                            link,
                        } => {
                            // Pieces of about 20 ms of the rate, so pacing is smooth
                            // without a piece per byte.
                            let size = (*bytes_per_second / 50).clamp(1, 64 * 1024) as usize;
                            let size = size.min(data.len());
                            let nanos = (size as u128 * 1_000_000_000)
                                .div_ceil(u128::from(*bytes_per_second));
                            let done =
                                at + Duration::from_nanos(nanos.min(u64::MAX as u128) as u64);
                            link.set_next_free(done);
                            (size, done)
                        }
                    };
                    let size = size.min(data.len());
                    let piece_bytes = data.split_to(size);
                    *pending_bytes -= size;
                    *cut += 1;
                    let mut piece_notes = if *cut == 1 {
                        std::mem::take(&mut front.notes)
                    } else {
                        Vec::new()
                    };
                    let finished = data.is_empty();
                    let number = *cut;
                    if notes {
                        piece_notes.push(match rule {
                            SplitRule::Slice { .. } => FaultNote {
                                fault: "slice",
                                action: format!(
                                    "write {number} of a sliced read ({size} bytes{})",
                                    if finished { ", the last" } else { "" }
                                ),
                            },
                            SplitRule::Bandwidth {
                                bytes_per_second, ..
                            } => FaultNote {
                                fault: "bandwidth",
                                action: format!(
                                    "{size} bytes paced at {bytes_per_second} B/s, delivered {} after they arrived",
                                    format_duration(delivered.saturating_sub(front.at))
                                ),
                            },
                        });
                    }
                    if finished {
                        pending.pop_front();
                        *cut = 0;
                    }
                    *last = Some(at);
                    out.push(Piece {
                        at: delivered,
                        kind: PieceKind::Data(piece_bytes),
                        notes: piece_notes,
                    });
                }
            }
            _ => {}
        }
    }
}

/// Everything a `coalesce` holds, as one write at `at`.
fn flush(
    held: &mut BytesMut,
    reads: &mut usize,
    first: Duration,
    at: Duration,
    why: &str,
    notes: bool,
) -> Piece {
    let data = held.split().freeze();
    let count = std::mem::take(reads);
    let len = data.len();
    Piece {
        at,
        notes: note(notes, "coalesce", || {
            format!(
                "held {len} bytes of {count} read(s) for {}, forwarded in one write ({})",
                format_duration(at.saturating_sub(first)),
                match why {
                    "size" => "enough bytes held",
                    "window" => "window over",
                    _ => "the stream ended",
                }
            )
        })
        .into_iter()
        .collect(),
        kind: PieceKind::Data(data),
    }
}

fn describe(kind: &PieceKind) -> String {
    match kind {
        PieceKind::Data(data) => format!("{} bytes", data.len()),
        PieceKind::Eof => "the close".into(),
        PieceKind::Close => "a close of both connections".into(),
        PieceKind::Reset => "a reset".into(),
        PieceKind::Dropped(len) => format!("a note on {len} dropped bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pipeline(faults: &[FaultKind]) -> Pipeline {
        let specs: Vec<StageSpec> = faults
            .iter()
            .map(|kind| StageSpec {
                kind: kind.clone(),
                link: None,
            })
            .collect();
        Pipeline::new(&specs, FaultRng::from_seed(7), true)
    }

    fn data_of(pieces: &[Piece]) -> Vec<(Duration, Vec<u8>)> {
        pieces
            .iter()
            .filter_map(|p| match &p.kind {
                PieceKind::Data(d) => Some((p.at, d.to_vec())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn slice_cuts_a_read_into_writes_of_n_bytes_d_apart() {
        let mut p = pipeline(&[FaultKind::Slice {
            min: 1,
            max: 1,
            delay: ms(1),
        }]);
        p.push(ms(0), Bytes::from_static(b"hello"));
        let mut out = Vec::new();
        p.drain(ms(0), &mut out);
        let data = data_of(&out);
        assert_eq!(data.len(), 5);
        for (i, (at, bytes)) in data.iter().enumerate() {
            assert_eq!(*at, ms(i as u64));
            assert_eq!(bytes, &vec![b"hello"[i]]);
        }
        assert!(
            out[0].notes[0].action.contains("write 1"),
            "{:?}",
            out[0].notes
        );
    }

    #[test]
    fn coalesce_merges_reads_until_n_bytes_or_the_window() {
        let mut p = pipeline(&[FaultKind::Coalesce {
            bytes: 10,
            window: ms(50),
        }]);
        p.push(ms(0), Bytes::from_static(b"hello"));
        assert_eq!(p.pop_due(ms(0)), None);
        assert_eq!(p.next_wake(), Some(ms(50)));
        p.push(ms(3), Bytes::from_static(b"eggo2"));
        let mut out = Vec::new();
        p.drain(ms(3), &mut out);
        assert_eq!(data_of(&out), vec![(ms(3), b"helloeggo2".to_vec())]);
        assert!(out[0].notes[0]
            .action
            .contains("held 10 bytes of 2 read(s)"));
        // A lone short read leaves when the window is over.
        p.push(ms(10), Bytes::from_static(b"abc"));
        let mut out = Vec::new();
        p.drain(ms(10), &mut out);
        assert_eq!(data_of(&out), vec![(ms(60), b"abc".to_vec())]);
    }

    #[test]
    fn latency_with_jitter_keeps_order_and_stays_within_bounds() {
        let mut p = pipeline(&[FaultKind::Latency {
            delay: ms(20),
            jitter: ms(5),
        }]);
        for i in 0..50u64 {
            p.push(ms(i), Bytes::from(vec![i as u8]));
        }
        let mut out = Vec::new();
        p.drain(ms(0), &mut out);
        let data = data_of(&out);
        assert_eq!(data.len(), 50);
        let mut last = Duration::ZERO;
        for (i, (at, bytes)) in data.iter().enumerate() {
            assert_eq!(bytes, &vec![i as u8], "order kept");
            assert!(*at >= last);
            assert!(*at <= ms(i as u64 + 25) && *at >= ms(i as u64 + 15).min(last.max(ms(15))));
            last = *at;
        }
    }

    #[test]
    fn reset_after_passes_n_bytes_then_resets_and_drops_the_rest() {
        let mut p = pipeline(&[FaultKind::ResetAfter(7)]);
        p.push(ms(0), Bytes::from_static(b"hello"));
        p.push(ms(1), Bytes::from_static(b"world"));
        p.push(ms(2), Bytes::from_static(b"more"));
        p.end(ms(3));
        let mut out = Vec::new();
        p.drain(ms(3), &mut out);
        let kinds: Vec<PieceKind> = out.into_iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            vec![
                PieceKind::Data(Bytes::from_static(b"hello")),
                PieceKind::Data(Bytes::from_static(b"wo")),
                PieceKind::Reset,
            ]
        );
    }

    #[test]
    fn close_after_zero_closes_at_the_first_byte() {
        let mut p = pipeline(&[FaultKind::CloseAfter(0)]);
        p.push(ms(0), Bytes::from_static(b"x"));
        let mut out = Vec::new();
        p.drain(ms(0), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, PieceKind::Close);
    }

    #[test]
    fn blackhole_forwards_nothing_not_even_the_close() {
        let mut p = pipeline(&[FaultKind::Blackhole]);
        p.push(ms(0), Bytes::from_static(b"hello"));
        p.end(ms(1));
        let mut out = Vec::new();
        p.drain(ms(1), &mut out);
        let kinds: Vec<PieceKind> = out.iter().map(|p| p.kind.clone()).collect();
        assert_eq!(kinds, vec![PieceKind::Dropped(5), PieceKind::Dropped(0)]);
        assert!(out[0].notes[0].action.contains("dropped 5 bytes"));
        assert!(p.is_idle());
    }

    #[test]
    fn slow_close_delays_only_the_close() {
        let mut p = pipeline(&[FaultKind::SlowClose(ms(30))]);
        p.push(ms(0), Bytes::from_static(b"hi"));
        p.end(ms(1));
        let mut out = Vec::new();
        p.drain(ms(1), &mut out);
        assert_eq!(out[0].at, ms(0));
        assert_eq!(out[1].kind, PieceKind::Eof);
        assert_eq!(out[1].at, ms(31));
        assert!(out[1].notes[0].action.contains("late"));
    }

    #[test]
    fn bandwidth_paces_delivery() {
        // 1,000 B/s: 100 bytes take 100 ms, in pieces of 20 bytes.
        let mut p = pipeline(&[FaultKind::Bandwidth {
            bytes_per_second: 1000,
            shared: false,
        }]);
        p.push(ms(0), Bytes::from(vec![1u8; 100]));
        let mut out = Vec::new();
        p.drain(ms(0), &mut out);
        let data = data_of(&out);
        assert_eq!(data.len(), 5);
        assert_eq!(data.last().unwrap().0, ms(100));
        assert_eq!(data.iter().map(|d| d.1.len()).sum::<usize>(), 100);
    }

    #[test]
    fn a_shared_link_paces_two_pipelines_together() {
        let link: SharedLink = Arc::default();
        let spec = [StageSpec {
            kind: FaultKind::Bandwidth {
                bytes_per_second: 1000,
                shared: true,
            },
            link: Some(link),
        }];
        let mut a = Pipeline::new(&spec, FaultRng::from_seed(1), false);
        let mut b = Pipeline::new(&spec, FaultRng::from_seed(2), false);
        a.push(ms(0), Bytes::from(vec![1u8; 100]));
        b.push(ms(0), Bytes::from(vec![2u8; 100]));
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        a.drain(ms(0), &mut out_a);
        b.drain(ms(0), &mut out_b);
        assert_eq!(
            out_b.last().unwrap().at,
            ms(200),
            "b waited for a's 100 bytes"
        );
    }

    #[test]
    fn a_big_read_sliced_to_single_bytes_is_cut_in_bounded_batches() {
        let mut p = pipeline(&[FaultKind::Slice {
            min: 1,
            max: 1,
            delay: Duration::ZERO,
        }]);
        p.push(ms(0), Bytes::from(vec![0u8; 10_000]));
        assert!(p.ready.len() <= SPLIT_BATCH);
        assert_eq!(p.held_bytes(), 10_000);
        let mut out = Vec::new();
        p.drain(ms(0), &mut out);
        assert_eq!(out.len(), 10_000);
        assert_eq!(p.held_bytes(), 0);
    }

    #[test]
    fn the_same_seed_slices_the_same_way() {
        let run = || {
            let mut p = pipeline(&[FaultKind::Slice {
                min: 1,
                max: 9,
                delay: Duration::ZERO,
            }]);
            p.push(ms(0), Bytes::from(vec![0u8; 1000]));
            let mut out = Vec::new();
            p.drain(ms(0), &mut out);
            data_of(&out)
                .into_iter()
                .map(|d| d.1.len())
                .collect::<Vec<_>>()
        };
        let sizes = run();
        assert_eq!(sizes, run());
        assert!(
            sizes.iter().any(|s| *s != sizes[0]),
            "sizes vary: {sizes:?}"
        );
        assert!(sizes.iter().all(|s| (1..=9).contains(s)));
    }
}
