//! Structure-aware mutations of a fuzz input.
//!
//! The choice of mutation is an [`arbitrary`] value read from random bytes: the enum
//! below is the whole menu, and `arbitrary` turns a seeded byte stream into a
//! well-formed choice (which op, which lie, which chunk sizes) with no hand-written
//! decoding. The seeded RNG only produces those bytes, so `--seed N` replays the
//! same choices.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use super::input::{Input, LengthLie, Op};
use crate::event::ShutdownHow;

/// Most ops an input may grow to (duplication and splicing stop there).
pub const MAX_OPS: usize = 64;
/// Most bytes one send may grow to.
pub const MAX_SEND: usize = 64 * 1024;

/// One mutation. Op and byte positions are taken modulo the input's sizes, so every
/// value is applicable to every input.
#[derive(Debug, Clone, Arbitrary)]
pub enum Mutation {
    /// Byte-level havoc inside one send (a frame's payload, a raw send's bytes).
    Havoc { op: u8, havoc: Havoc },
    /// The frame's length prefix lies (or stops lying).
    Lie { op: u8, lie: Option<LengthLie> },
    /// A payload replaced by a value known to break parsers.
    Special { op: u8, special: Special },
    /// A send dropped.
    Drop { op: u8 },
    /// A send sent twice.
    Duplicate { op: u8 },
    /// A send from another corpus input put here.
    Splice { donor: u16, from: u8, at: u8 },
    /// Two ops swapped.
    Swap { a: u8, b: u8 },
    /// A send written in other pieces, with pauses between them.
    Rechunk {
        op: u8,
        sizes: [u8; 3],
        pause_us: u8,
    },
    /// The connection ends early: ops from here are replaced by a close, a reset
    /// or a half-close.
    EarlyEnd { at: u8, how: EarlyEnd },
    /// A send cut short.
    Truncate { op: u8, keep: u16 },
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum EarlyEnd {
    Close,
    Reset,
    HalfClose,
}

/// Byte havoc, AFL-style.
#[derive(Debug, Clone, Arbitrary)]
pub enum Havoc {
    FlipBit { pos: u16, bit: u8 },
    SetByte { pos: u16, value: u8 },
    Interesting { pos: u16, which: u8 },
    Insert { pos: u16, bytes: [u8; 4], len: u8 },
    Delete { pos: u16, len: u8 },
    Repeat { pos: u16, len: u8, times: u8 },
    AddSub { pos: u16, delta: i8 },
}

/// Payloads known to break parsers: not UTF-8, NUL bytes, huge, empty, format
/// strings, numbers at their limits.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Special {
    InvalidUtf8,
    LoneContinuation,
    Overlong,
    Nul,
    Empty,
    Big,
    FormatString,
    Digits,
    Newlines,
}

const INTERESTING: &[u8] = &[0x00, 0x01, 0x7f, 0x80, 0xc0, 0xc3, 0xe2, 0xef, 0xfe, 0xff];

/// Reads a mutation (1 to 4 of them, stacked) from `noise` and applies it; `donors`
/// are the corpus inputs a splice may take from.
pub fn mutate(input: &mut Input, noise: &[u8], donors: &[&Input]) {
    let mut u = Unstructured::new(noise);
    let stack = u.int_in_range(1..=4u8).unwrap_or(1);
    for _ in 0..stack {
        let Ok(mutation) = Mutation::arbitrary(&mut u) else {
            break;
        };
        apply(input, &mutation, donors);
    }
    input.ops.truncate(MAX_OPS);
}

/// Index of the `n`th (modulo) op that sends, if any.
fn send_index(input: &Input, n: u8) -> Option<usize> {
    let sends: Vec<usize> = (0..input.ops.len())
        .filter(|&i| input.ops[i].sends())
        .collect();
    (!sends.is_empty()).then(|| sends[n as usize % sends.len()])
}

pub fn apply(input: &mut Input, mutation: &Mutation, donors: &[&Input]) {
    match mutation {
        Mutation::Havoc { op, havoc } => {
            if let Some(i) = send_index(input, *op) {
                if let Some(bytes) = input.ops[i].payload_mut() {
                    havoc_bytes(bytes, havoc);
                }
            }
        }
        Mutation::Lie { op, lie } => {
            let frames: Vec<usize> = (0..input.ops.len())
                .filter(|&i| matches!(input.ops[i], Op::Frame { .. }))
                .collect();
            if !frames.is_empty() {
                if let Op::Frame { lie: slot, .. } =
                    &mut input.ops[frames[*op as usize % frames.len()]]
                {
                    *slot = *lie;
                }
            }
        }
        Mutation::Special { op, special } => {
            if let Some(i) = send_index(input, *op) {
                if let Some(bytes) = input.ops[i].payload_mut() {
                    *bytes = special_payload(*special, bytes);
                }
            }
        }
        Mutation::Drop { op } => {
            if let Some(i) = send_index(input, *op) {
                input.ops.remove(i);
            }
        }
        Mutation::Duplicate { op } => {
            if let Some(i) = send_index(input, *op) {
                let copy = input.ops[i].clone();
                input.ops.insert(i + 1, copy);
            }
        }
        Mutation::Splice { donor, from, at } => {
            if donors.is_empty() {
                return;
            }
            let donor = donors[*donor as usize % donors.len()];
            if let Some(i) = send_index(donor, *from) {
                let at = *at as usize % (input.ops.len() + 1);
                input.ops.insert(at, donor.ops[i].clone());
            }
        }
        Mutation::Swap { a, b } => {
            if input.ops.len() > 1 {
                let n = input.ops.len();
                input.ops.swap(*a as usize % n, *b as usize % n);
            }
        }
        Mutation::Rechunk {
            op,
            sizes,
            pause_us,
        } => {
            if let Some(i) = send_index(input, *op) {
                if let Some((chunks, pause)) = input.ops[i].chunking_mut() {
                    *chunks = sizes
                        .iter()
                        .filter(|&&s| s > 0)
                        .map(|&s| usize::from(s % 16).max(1))
                        .collect();
                    // Mostly no pause: a pause costs wall time on every execution.
                    *pause = if *pause_us > 200 {
                        Duration::from_micros(u64::from(*pause_us - 200) * 10)
                    } else {
                        Duration::ZERO
                    };
                }
            }
        }
        Mutation::EarlyEnd { at, how } => {
            let at = *at as usize % (input.ops.len() + 1);
            input.ops.truncate(at);
            input.ops.push(match how {
                EarlyEnd::Close => Op::Close,
                EarlyEnd::Reset => Op::Reset,
                EarlyEnd::HalfClose => Op::Shutdown(ShutdownHow::Write),
            });
        }
        Mutation::Truncate { op, keep } => {
            if let Some(i) = send_index(input, *op) {
                if let Some(bytes) = input.ops[i].payload_mut() {
                    if !bytes.is_empty() {
                        let keep = *keep as usize % bytes.len();
                        bytes.truncate(keep);
                    }
                }
            }
        }
    }
}

fn havoc_bytes(bytes: &mut Vec<u8>, havoc: &Havoc) {
    let at = |pos: u16, len: usize| if len == 0 { 0 } else { pos as usize % len };
    match *havoc {
        Havoc::FlipBit { pos, bit } => {
            if !bytes.is_empty() {
                let i = at(pos, bytes.len());
                bytes[i] ^= 1 << (bit % 8);
            }
        }
        Havoc::SetByte { pos, value } => {
            if !bytes.is_empty() {
                let i = at(pos, bytes.len());
                bytes[i] = value;
            }
        }
        Havoc::Interesting { pos, which } => {
            if !bytes.is_empty() {
                let i = at(pos, bytes.len());
                bytes[i] = INTERESTING[which as usize % INTERESTING.len()];
            }
        }
        Havoc::Insert {
            pos,
            bytes: new,
            len,
        } => {
            if bytes.len() < MAX_SEND {
                let i = at(pos, bytes.len() + 1);
                let n = usize::from(len % 4) + 1;
                bytes.splice(i..i, new[..n].iter().copied());
            }
        }
        Havoc::Delete { pos, len } => {
            if !bytes.is_empty() {
                let i = at(pos, bytes.len());
                let end = (i + usize::from(len % 8) + 1).min(bytes.len());
                bytes.drain(i..end);
            }
        }
        Havoc::Repeat { pos, len, times } => {
            if !bytes.is_empty() {
                let i = at(pos, bytes.len());
                let end = (i + usize::from(len % 16) + 1).min(bytes.len());
                let piece = bytes[i..end].to_vec();
                let times = usize::from(times % 64) + 1;
                if bytes.len() + piece.len() * times <= MAX_SEND {
                    let copies: Vec<u8> = piece
                        .iter()
                        .copied()
                        .cycle()
                        .take(piece.len() * times)
                        .collect();
                    bytes.splice(end..end, copies);
                }
            }
        }
        Havoc::AddSub { pos, delta } => {
            if !bytes.is_empty() {
                let i = at(pos, bytes.len());
                bytes[i] = bytes[i].wrapping_add(delta as u8);
            }
        }
    }
}

fn special_payload(special: Special, old: &[u8]) -> Vec<u8> {
    match special {
        // Valid bytes around one that is never UTF-8.
        Special::InvalidUtf8 => {
            let mut bytes = old.to_vec();
            bytes.insert(bytes.len() / 2, 0xff);
            bytes
        }
        Special::LoneContinuation => {
            let mut bytes = old.to_vec();
            bytes.push(0x80);
            bytes
        }
        Special::Overlong => vec![0xc0, 0xaf, b'x'],
        Special::Nul => {
            let mut bytes = old.to_vec();
            bytes.insert(0, 0);
            bytes
        }
        Special::Empty => Vec::new(),
        Special::Big => old
            .iter()
            .copied()
            .cycle()
            .take(MAX_SEND.min(old.len().max(1) * 512))
            .chain(std::iter::repeat_n(
                b'A',
                if old.is_empty() { 4096 } else { 0 },
            ))
            .collect(),
        Special::FormatString => b"%s%s%n%x{0}{}${x}".to_vec(),
        Special::Digits => b"-9223372036854775809".to_vec(),
        Special::Newlines => b"\n\r\n\n".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{FramingConfig, FramingKind};

    fn seed() -> Input {
        Input {
            ops: vec![
                Op::Frame {
                    framing: FramingConfig::new(FramingKind::I32Le),
                    payload: b"hello".to_vec(),
                    lie: None,
                    chunks: Vec::new(),
                    pause: Duration::ZERO,
                },
                Op::Read { want: 9 },
                Op::Write {
                    bytes: b"raw".to_vec(),
                    chunks: Vec::new(),
                    pause: Duration::ZERO,
                },
            ],
        }
    }

    #[test]
    fn every_mutation_applies_to_every_input_without_panicking() {
        let mut rng = fastrand::Rng::with_seed(7);
        let empty = Input { ops: Vec::new() };
        for _ in 0..20_000 {
            let noise: Vec<u8> = (0..48).map(|_| rng.u8(..)).collect();
            let mut input = if rng.bool() { seed() } else { empty.clone() };
            mutate(&mut input, &noise, &[&seed()]);
            assert!(input.ops.len() <= MAX_OPS);
            for op in &input.ops {
                assert!(op.wire_bytes().len() <= MAX_SEND + 64);
            }
        }
    }

    #[test]
    fn the_same_noise_gives_the_same_mutation() {
        let noise: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
        let (mut a, mut b) = (seed(), seed());
        mutate(&mut a, &noise, &[]);
        mutate(&mut b, &noise, &[]);
        assert_eq!(a, b);
    }

    #[test]
    fn a_lie_changes_only_the_prefix() {
        let mut input = seed();
        apply(
            &mut input,
            &Mutation::Lie {
                op: 0,
                lie: Some(LengthLie::Negative),
            },
            &[],
        );
        let wire = input.ops[0].wire_bytes();
        assert_eq!(wire[..4], (-5i32).to_le_bytes());
        assert_eq!(&wire[4..], b"hello");
    }
}
