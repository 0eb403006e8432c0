//! The UDP fault pipeline of one direction of one client: a pure transform of a
//! datagram sequence, driven by a seeded RNG and a clock the caller passes in (the
//! datagram twin of [`super::pipeline`]).
//!
//! Faults apply to each datagram in the order the proxy lists them. `latency` with
//! `jitter` may reorder datagrams, as a real path does; `reorder` holds a datagram
//! back until the next one has passed it (or its `window` is over).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::fault::FaultKind;
use super::pipeline::FaultNote;
use super::rng::FaultRng;
use crate::duration::format_duration;

/// At most this many datagrams wait in one direction's queue; a datagram that
/// finds it full is dropped (and the drop noted), as a router's full queue would.
pub const MAX_QUEUED_DATAGRAMS: usize = 1024;

/// One datagram leaving the pipeline, or the note of one that a fault discarded
/// (`data` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub at: Duration,
    pub data: Option<Bytes>,
    pub notes: Vec<FaultNote>,
}

#[derive(Debug)]
enum Stage {
    Drop(f64),
    Duplicate(f64),
    Corrupt(f64),
    Truncate(usize),
    Latency {
        delay: Duration,
        jitter: Duration,
    },
    Reorder {
        probability: f64,
        window: Duration,
        held: Option<Datagram>,
    },
}

/// The pipeline of one direction of one client.
#[derive(Debug)]
pub struct DatagramPipeline {
    stages: Vec<(Stage, FaultRng)>,
    /// In time order.
    ready: VecDeque<Datagram>,
    notes: bool,
}

impl DatagramPipeline {
    /// A pipeline of `faults` in order (TCP-only faults are ignored: the loader
    /// refuses them on UDP). Each stage draws from its own stream derived from `rng`.
    pub fn new(faults: &[FaultKind], mut rng: FaultRng, notes: bool) -> Self {
        let stages = faults
            .iter()
            .filter_map(|kind| {
                let stage = match kind {
                    FaultKind::Drop(p) => Stage::Drop(*p),
                    FaultKind::Duplicate(p) => Stage::Duplicate(*p),
                    FaultKind::Corrupt(p) => Stage::Corrupt(*p),
                    FaultKind::Truncate(n) => Stage::Truncate(*n),
                    FaultKind::Latency { delay, jitter } => Stage::Latency {
                        delay: *delay,
                        jitter: *jitter,
                    },
                    FaultKind::Reorder {
                        probability,
                        window,
                    } => Stage::Reorder {
                        probability: *probability,
                        window: *window,
                        held: None,
                    },
                    _ => return None,
                };
                Some((stage, FaultRng::from_seed(rng.next_u64())))
            })
            .collect();
        Self {
            stages,
            ready: VecDeque::new(),
            notes,
        }
    }

    /// A datagram arrived at `now`.
    pub fn push(&mut self, now: Duration, data: Bytes) {
        self.advance(now);
        if self.ready.len() >= MAX_QUEUED_DATAGRAMS {
            let len = data.len();
            let notes = self.note("queue", || {
                format!(
                    "dropped a {len}-byte datagram: {MAX_QUEUED_DATAGRAMS} datagrams already wait"
                )
            });
            self.insert(Datagram {
                at: now,
                data: None,
                notes,
            });
            return;
        }
        self.feed(
            0,
            vec![Datagram {
                at: now,
                data: Some(data),
                notes: Vec::new(),
            }],
        );
    }

    /// Lets time pass: held datagrams whose window is over move on.
    pub fn advance(&mut self, now: Duration) {
        for index in 0..self.stages.len() {
            if let (
                Stage::Reorder {
                    window, held: slot, ..
                },
                _,
            ) = &mut self.stages[index]
            {
                if slot.as_ref().is_some_and(|d| d.at + *window <= now) {
                    let mut held = slot.take().expect("checked");
                    held.at += *window;
                    self.feed(index + 1, vec![held]);
                }
            }
        }
    }

    pub fn pop_due(&mut self, now: Duration) -> Option<Datagram> {
        if self.ready.front()?.at > now {
            return None;
        }
        self.ready.pop_front()
    }

    pub fn next_wake(&self) -> Option<Duration> {
        let held = self.stages.iter().filter_map(|(stage, _)| match stage {
            Stage::Reorder {
                window,
                held: Some(d),
                ..
            } => Some(d.at + *window),
            _ => None,
        });
        held.chain(self.ready.front().map(|d| d.at)).min()
    }

    /// Drives the pipeline with a virtual clock until it is idle, collecting every
    /// datagram: for tests and benchmarks.
    pub fn drain(&mut self, mut now: Duration, out: &mut Vec<Datagram>) {
        loop {
            self.advance(now);
            while let Some(datagram) = self.pop_due(now) {
                out.push(datagram);
            }
            match self.next_wake() {
                Some(wake) => now = now.max(wake),
                None => return,
            }
        }
    }

    fn note(&self, fault: &'static str, action: impl FnOnce() -> String) -> Vec<FaultNote> {
        if self.notes {
            vec![FaultNote {
                fault,
                action: action(),
            }]
        } else {
            Vec::new()
        }
    }

    fn insert(&mut self, datagram: Datagram) {
        let at = datagram.at;
        let position = self.ready.partition_point(|d| d.at <= at);
        self.ready.insert(position, datagram);
    }

    fn feed(&mut self, start: usize, mut batch: Vec<Datagram>) {
        let notes = self.notes;
        for (stage, rng) in &mut self.stages[start..] {
            let mut next = Vec::with_capacity(batch.len());
            for mut datagram in batch {
                let Some(data) = datagram.data.take() else {
                    next.push(datagram);
                    continue;
                };
                let mut add_note = |fault: &'static str, action: String| {
                    if notes {
                        datagram.notes.push(FaultNote { fault, action });
                    }
                };
                match stage {
                    Stage::Drop(p) => {
                        if rng.chance(*p) {
                            add_note("drop", format!("dropped a {}-byte datagram", data.len()));
                        } else {
                            datagram.data = Some(data);
                        }
                        next.push(datagram);
                    }
                    Stage::Duplicate(p) => {
                        if rng.chance(*p) {
                            let mut copy = datagram.clone();
                            copy.data = Some(data.clone());
                            if notes {
                                copy.notes.push(FaultNote {
                                    fault: "duplicate",
                                    action: format!("the copy of a {}-byte datagram", data.len()),
                                });
                            }
                            datagram.data = Some(data);
                            next.push(datagram);
                            next.push(copy);
                        } else {
                            datagram.data = Some(data);
                            next.push(datagram);
                        }
                    }
                    Stage::Corrupt(p) => {
                        if !data.is_empty() && rng.chance(*p) {
                            let at = rng.between(0, data.len() as u64 - 1) as usize;
                            let mut bytes = BytesMut::from(&data[..]);
                            bytes[at] = !bytes[at];
                            add_note(
                                "corrupt",
                                format!(
                                    "flipped byte {at} of {}: {:#04x} -> {:#04x}",
                                    data.len(),
                                    data[at],
                                    bytes[at]
                                ),
                            );
                            datagram.data = Some(bytes.freeze());
                        } else {
                            datagram.data = Some(data);
                        }
                        next.push(datagram);
                    }
                    Stage::Truncate(n) => {
                        if data.len() > *n {
                            add_note(
                                "truncate",
                                format!("cut a {}-byte datagram to {n} bytes", data.len()),
                            );
                            datagram.data = Some(data.slice(..*n));
                        } else {
                            datagram.data = Some(data);
                        }
                        next.push(datagram);
                    }
                    Stage::Latency { delay, jitter } => {
                        let wait = rng.jittered(*delay, *jitter);
                        add_note(
                            "latency",
                            format!(
                                "{}-byte datagram held for {}",
                                data.len(),
                                format_duration(wait)
                            ),
                        );
                        datagram.at += wait;
                        datagram.data = Some(data);
                        next.push(datagram);
                    }
                    Stage::Reorder {
                        probability, held, ..
                    } => {
                        datagram.data = Some(data);
                        match held.take() {
                            Some(mut earlier) => {
                                // The held one leaves right after the one that passed it.
                                earlier.at = earlier.at.max(datagram.at);
                                next.push(datagram);
                                next.push(earlier);
                            }
                            None if rng.chance(*probability) => {
                                if notes {
                                    let len = datagram.data.as_ref().map_or(0, Bytes::len);
                                    datagram.notes.push(FaultNote {
                                        fault: "reorder",
                                        action: format!(
                                            "a {len}-byte datagram held back until the next one passed it"
                                        ),
                                    });
                                }
                                *held = Some(datagram);
                            }
                            None => next.push(datagram),
                        }
                    }
                }
            }
            batch = next;
            if batch.is_empty() {
                return;
            }
        }
        for datagram in batch {
            self.insert(datagram);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn run(faults: &[FaultKind], seed: u64, count: u8) -> Vec<Datagram> {
        let mut p = DatagramPipeline::new(faults, FaultRng::from_seed(seed), true);
        for i in 0..count {
            p.push(ms(u64::from(i)), Bytes::from(vec![i; 4]));
        }
        let mut out = Vec::new();
        p.drain(ms(u64::from(count)), &mut out);
        out
    }

    fn sent(out: &[Datagram]) -> Vec<u8> {
        out.iter()
            .filter_map(|d| d.data.as_ref().map(|b| b[0]))
            .collect()
    }

    #[test]
    fn drop_with_a_seed_drops_the_same_datagrams_every_time() {
        let a = sent(&run(&[FaultKind::Drop(0.3)], 7, 100));
        assert_eq!(a, sent(&run(&[FaultKind::Drop(0.3)], 7, 100)));
        assert_ne!(a, sent(&run(&[FaultKind::Drop(0.3)], 8, 100)));
        assert!((50..90).contains(&a.len()), "{}", a.len());
        let notes = run(&[FaultKind::Drop(1.0)], 1, 3);
        assert!(notes
            .iter()
            .all(|d| d.data.is_none() && d.notes[0].fault == "drop"));
    }

    #[test]
    fn duplicate_corrupt_and_truncate_do_what_they_say() {
        assert_eq!(
            sent(&run(&[FaultKind::Duplicate(1.0)], 1, 2)),
            vec![0, 0, 1, 1]
        );
        let out = run(&[FaultKind::Corrupt(1.0)], 1, 1);
        let data = out[0].data.as_ref().unwrap();
        assert_eq!(data.iter().filter(|b| **b == 0xff).count(), 1);
        let out = run(&[FaultKind::Truncate(2)], 1, 1);
        assert_eq!(out[0].data.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn reorder_swaps_a_datagram_with_the_next() {
        let out = run(
            &[FaultKind::Reorder {
                probability: 1.0,
                window: ms(100),
            }],
            1,
            2,
        );
        assert_eq!(sent(&out), vec![1, 0]);
        // A lone held datagram leaves when its window is over.
        let out = run(
            &[FaultKind::Reorder {
                probability: 1.0,
                window: ms(100),
            }],
            1,
            1,
        );
        assert_eq!(out[0].at, ms(100));
    }

    #[test]
    fn latency_delays_every_datagram() {
        let out = run(
            &[FaultKind::Latency {
                delay: ms(20),
                jitter: Duration::ZERO,
            }],
            1,
            3,
        );
        assert_eq!(
            out.iter().map(|d| d.at).collect::<Vec<_>>(),
            vec![ms(20), ms(21), ms(22)]
        );
    }
}
