//! What the fuzzer sends: one client connection's script, reduced to the operations
//! that matter on the wire, with the structure of the scenario kept (a frame stays a
//! payload plus a framing, so a mutation inside the payload still gets an honest
//! length prefix unless the mutation is the length itself).

use std::time::Duration;

use bytes::{BufMut, BytesMut};

use crate::event::ShutdownHow;
use crate::framing::{FramingConfig, FramingKind, LengthPrefix};
use crate::scenario::{Action, Data, Expected, Step};

/// Longest pause a seed's `sleep` keeps in a fuzz input: pauses cost executions per
/// second, and the scenario's own timing is tried by the chunking mutations.
pub const MAX_PAUSE: Duration = Duration::from_millis(5);

/// One connection's worth of operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub ops: Vec<Op>,
}

/// One thing the fuzz client does on its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Raw bytes (a seed `send`), written in calls of `chunks` sizes (the last size
    /// repeats; empty: one call), `pause` apart.
    Write {
        bytes: Vec<u8>,
        chunks: Vec<usize>,
        pause: Duration,
    },
    /// A frame (a seed `send_frame`): the payload encoded in `framing`, with the
    /// length prefix (or terminator, or json-header `file_size`) replaced when `lie`
    /// is set.
    Frame {
        framing: FramingConfig,
        payload: Vec<u8>,
        lie: Option<LengthLie>,
        chunks: Vec<usize>,
        pause: Duration,
    },
    /// Wait for the server's answer (a seed `expect`, `recv` or `expect_frame`):
    /// `want` is how many bytes the seed read there.
    Read {
        want: usize,
    },
    /// Wait for the server to end the connection (a seed `expect_eof` or
    /// `expect_reset`).
    ReadEnd,
    Shutdown(ShutdownHow),
    /// Close the socket in order (FIN).
    Close,
    /// Close the socket with a reset (RST: `SO_LINGER` 0).
    Reset,
    Pause(Duration),
}

/// How a frame's length may lie about its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum LengthLie {
    /// A negative number where the prefix is signed, the top bit set where not.
    Negative,
    /// The largest value the prefix holds.
    Huge,
    /// One more than the payload.
    PlusOne,
    /// One less than the payload.
    MinusOne,
    /// Zero, with the payload still sent.
    Zero,
    /// Any value (truncated to the prefix's width).
    Value(u64),
}

impl LengthLie {
    /// The length field's value for a payload of `real` bytes in a prefix whose
    /// largest value is `max` (as an unsigned bit pattern of the prefix's width).
    fn apply(self, real: u64, max: u64, signed: bool, width: usize) -> u64 {
        let mask = if width >= 8 {
            u64::MAX
        } else {
            (1u64 << (width * 8)) - 1
        };
        let value = match self {
            LengthLie::Negative if signed => (-(real as i64).max(1)) as u64,
            LengthLie::Negative => 1u64 << (width * 8 - 1),
            LengthLie::Huge => max,
            LengthLie::PlusOne => real.wrapping_add(1),
            LengthLie::MinusOne => real.wrapping_sub(1),
            LengthLie::Zero => 0,
            LengthLie::Value(v) => v,
        };
        value & mask
    }

    /// Words for the reproducer's comment.
    pub fn describe(self) -> String {
        match self {
            LengthLie::Negative => "a negative length".into(),
            LengthLie::Huge => "the largest length the prefix holds".into(),
            LengthLie::PlusOne => "one byte more than sent".into(),
            LengthLie::MinusOne => "one byte less than sent".into(),
            LengthLie::Zero => "length 0".into(),
            LengthLie::Value(_) => "a made-up length".into(),
        }
    }
}

impl Op {
    /// Whether the op puts bytes on the wire.
    pub fn sends(&self) -> bool {
        matches!(self, Op::Write { .. } | Op::Frame { .. })
    }

    /// The bytes this op writes (a frame encoded, its lie applied).
    pub fn wire_bytes(&self) -> Vec<u8> {
        match self {
            Op::Write { bytes, .. } => bytes.clone(),
            Op::Frame {
                framing,
                payload,
                lie,
                ..
            } => encode_frame(framing, payload, *lie),
            _ => Vec::new(),
        }
    }

    /// The mutable byte payload of a send (a frame's payload, not its prefix).
    pub fn payload_mut(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            Op::Write { bytes, .. } => Some(bytes),
            Op::Frame { payload, .. } => Some(payload),
            _ => None,
        }
    }

    pub fn chunking_mut(&mut self) -> Option<(&mut Vec<usize>, &mut Duration)> {
        match self {
            Op::Write { chunks, pause, .. } | Op::Frame { chunks, pause, .. } => {
                Some((chunks, pause))
            }
            _ => None,
        }
    }
}

/// Encodes one frame by hand, so the length may lie. Without a lie the bytes are
/// what [`FramingConfig::encode`] would write.
pub fn encode_frame(framing: &FramingConfig, payload: &[u8], lie: Option<LengthLie>) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(payload.len() + 16);
    match framing.kind {
        FramingKind::Line | FramingKind::Crlf => {
            let terminator: &[u8] = if framing.kind == FramingKind::Line {
                b"\n"
            } else {
                b"\r\n"
            };
            out.put_slice(payload);
            // A line has no length to lie with: the lie is a missing terminator
            // (the server must wait or give up) or an extra one.
            match lie {
                None => out.put_slice(terminator),
                Some(LengthLie::Zero | LengthLie::Huge | LengthLie::Value(_)) => {}
                Some(_) => {
                    out.put_slice(terminator);
                    out.put_slice(terminator);
                }
            }
        }
        FramingKind::Varint => {
            let real = payload.len() as u64;
            let value = lie.map_or(real, |lie| lie.apply(real, u64::MAX, false, 8));
            crate::framing::put_varint(value, &mut out);
            out.put_slice(payload);
        }
        FramingKind::JsonHeader => {
            let real = payload.len() as u64;
            let size: serde_json::Value = match lie {
                None => real.into(),
                Some(LengthLie::Negative) => (-(real as i64).max(1)).into(),
                Some(lie) => lie.apply(real, u64::MAX, false, 8).into(),
            };
            let header = serde_json::json!({ "file_size": size }).to_string();
            out.put_i32_le(header.len() as i32);
            out.put_slice(header.as_bytes());
            out.put_slice(payload);
        }
        kind => {
            let prefix = kind
                .length_prefix()
                .expect("the other kinds are length-prefixed");
            let width = prefix.width();
            let header = if framing.length_includes_header {
                width as u64
            } else {
                0
            };
            let real = payload.len() as u64 + header;
            let signed = matches!(prefix, LengthPrefix::I32Le | LengthPrefix::I32Be);
            let value = lie.map_or(real, |lie| {
                lie.apply(real, prefix.max_value(), signed, width)
            });
            let big_endian = matches!(
                prefix,
                LengthPrefix::U16Be
                    | LengthPrefix::U32Be
                    | LengthPrefix::I32Be
                    | LengthPrefix::U64Be
            );
            let bytes = value.to_be_bytes();
            let field = &bytes[8 - width..];
            if big_endian || width == 1 {
                out.put_slice(field);
            } else {
                out.extend(field.iter().rev());
            }
            out.put_slice(payload);
        }
    }
    out.to_vec()
}

/// Most bytes of one seed send taken from a file slice.
const MAX_SEED_SEND: usize = 1 << 20;

/// A seed send's bytes; a `file` slice is read here (its first MiB), and one that
/// cannot be read any more is an empty send.
pub fn seed_bytes(data: &Data) -> Vec<u8> {
    data.head(MAX_SEED_SEND)
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

/// What a read takes when the seed's step has no fixed length (a regex, a JSON
/// match): whatever arrives, up to this much.
const UNKNOWN_LEN: usize = 64 * 1024;

/// How many bytes a seed's `expect` read.
fn expected_len(expected: &Expected) -> usize {
    match expected {
        Expected::Data(data) => usize::try_from(data.len()).unwrap_or(usize::MAX),
        Expected::Match { matcher, max } => matcher
            .exact()
            .map(|bytes| bytes.len())
            .or(match matcher {
                crate::matcher::Match::Len(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(*max),
    }
}

/// The fuzz input a client script stands for: its sends, frames, reads, closes and
/// pauses, in order. Signals, waits, `await_queued` and `connect` have no meaning on
/// a lone connection and are left out.
pub fn from_script<'a>(steps: impl IntoIterator<Item = &'a Step>) -> Input {
    let mut ops = Vec::new();
    for step in steps {
        let op = match &step.action {
            Action::Send {
                data,
                chunks,
                delay,
                ..
            } => Op::Write {
                bytes: seed_bytes(data),
                chunks: chunks.clone(),
                pause: delay.unwrap_or_default().min(MAX_PAUSE),
            },
            Action::SendFrame {
                framing, payload, ..
            } => Op::Frame {
                framing: framing.clone(),
                payload: payload.as_bytes().map(|b| b.to_vec()).unwrap_or_default(),
                lie: None,
                chunks: Vec::new(),
                pause: Duration::ZERO,
            },
            Action::Recv { max, .. } => Op::Read { want: *max },
            Action::Expect(expected) => Op::Read {
                want: expected_len(expected),
            },
            Action::ExpectLine(matcher) => Op::Read {
                want: matcher.exact().map_or(UNKNOWN_LEN, |line| line.len() + 1),
            },
            Action::ExpectSilence(d) => Op::Pause((*d).min(MAX_PAUSE)),
            Action::ExpectFrame {
                framing, payload, ..
            } => Op::Read {
                want: payload.exact().map_or(UNKNOWN_LEN, |bytes| {
                    encode_frame(framing, bytes, None).len()
                }),
            },
            Action::ExpectEof | Action::ExpectReset => Op::ReadEnd,
            Action::Shutdown(how) => Op::Shutdown(*how),
            Action::Close => Op::Close,
            Action::Sleep(d) => Op::Pause((*d).min(MAX_PAUSE)),
            // Holding and flushing only regroup the same bytes into writes, which
            // the rechunking mutations vary anyway.
            Action::AwaitQueued(_)
            | Action::Signal(_)
            | Action::Wait(_)
            | Action::Connect
            | Action::Hold
            | Action::Flush
            | Action::AwaitRead => continue,
        };
        ops.push(op);
    }
    Input { ops }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(kind: FramingKind) -> FramingConfig {
        FramingConfig::new(kind)
    }

    #[test]
    fn an_honest_frame_is_what_the_codec_writes() {
        for kind in FramingKind::all() {
            let config = framing(kind);
            let mut expected = BytesMut::new();
            config.encode(b"hello", &mut expected).unwrap();
            assert_eq!(
                encode_frame(&config, b"hello", None),
                expected.to_vec(),
                "{kind}"
            );
        }
    }

    #[test]
    fn lengths_lie_as_asked() {
        let i32le = framing(FramingKind::I32Le);
        assert_eq!(
            encode_frame(&i32le, b"hi", Some(LengthLie::Negative))[..4],
            (-2i32).to_le_bytes()
        );
        let u16be = framing(FramingKind::U16Be);
        assert_eq!(
            encode_frame(&u16be, b"hi", Some(LengthLie::Huge))[..2],
            [0xff, 0xff]
        );
        assert_eq!(
            encode_frame(&u16be, b"hi", Some(LengthLie::PlusOne))[..2],
            [0, 3]
        );
        assert_eq!(
            encode_frame(&u16be, b"hi", Some(LengthLie::Negative))[..2],
            [0x80, 0]
        );
        let u8 = framing(FramingKind::U8);
        assert_eq!(
            encode_frame(&u8, b"", Some(LengthLie::MinusOne)),
            vec![0xff]
        );
    }
}
