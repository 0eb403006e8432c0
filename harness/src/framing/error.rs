//! The one error type shared by every framing codec.
//!
//! Every variant records the absolute stream offset of the frame it is about
//! (the offset of the frame's first byte, counting from the first byte the
//! codec ever saw), because a protocol test failure that says *what* was wrong
//! but not *where* sends the reader off to diff hex dumps by hand.

use std::fmt;
use std::io;

/// What was wrong with a varint length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VarintProblem {
    /// The last byte of a multi-byte varint is `0x00`: a shorter encoding of
    /// the same value exists. Rejected so that one value has one encoding.
    Overlong,
    /// The 10th byte still has its continuation bit set: no `u64` needs more
    /// than 10 LEB128 bytes.
    TooLong,
    /// The 10th byte carries bits above bit 63.
    Overflow,
}

impl fmt::Display for VarintProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VarintProblem::Overlong => "is overlong (a shorter encoding of the same value exists)",
            VarintProblem::TooLong => "is longer than 10 bytes",
            VarintProblem::Overflow => "overflows u64",
        })
    }
}

/// What was wrong with a json-header frame's JSON header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JsonHeaderProblem {
    /// The header bytes are not UTF-8; `valid_up_to` is the length of the
    /// longest valid prefix.
    NotUtf8 {
        /// Bytes of the header that were valid UTF-8 before the first bad one.
        valid_up_to: usize,
    },
    /// The header is UTF-8 but not JSON; `message` is serde_json's reason.
    NotJson {
        /// serde_json's description, with line and column inside the header.
        message: String,
    },
    /// The header is JSON but not an object (`found` names what it is).
    NotObject {
        /// "array", "string", "number", "boolean" or "null".
        found: &'static str,
    },
    /// The header object has no `file_size` member.
    MissingFileSize,
    /// `file_size` is present but not a non-negative integer; `value` is its
    /// JSON text.
    InvalidFileSize {
        /// The offending value, as compact JSON.
        value: String,
    },
}

impl fmt::Display for JsonHeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonHeaderProblem::NotUtf8 { valid_up_to } => write!(
                f,
                "is not valid UTF-8 (first bad byte at header byte {valid_up_to})"
            ),
            JsonHeaderProblem::NotJson { message } => write!(f, "is not valid JSON: {message}"),
            JsonHeaderProblem::NotObject { found } => {
                write!(f, "is a JSON {found}, not an object")
            }
            JsonHeaderProblem::MissingFileSize => f.write_str("has no \"file_size\" member"),
            JsonHeaderProblem::InvalidFileSize { value } => write!(
                f,
                "has \"file_size\": {value}, which is not a non-negative integer"
            ),
        }
    }
}

/// Why a frame could not be decoded or encoded.
///
/// Decoding errors other than [`FrameError::LineTooLong`] are fatal for the
/// stream: a length-prefixed stream cannot be resynchronised once a length is
/// untrustworthy, so the codec that returned one returns the same error from
/// every later `decode` call (see [`FrameError::is_recoverable`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A signed length prefix holds a negative value.
    #[error("frame at offset {offset}: {what} {value} is negative")]
    NegativeLength {
        /// Offset of the frame's first byte.
        offset: u64,
        /// Which length, e.g. "i32le length" or "json-header header length".
        what: &'static str,
        /// The value as read.
        value: i64,
    },

    /// A length read from the stream is above the configured limit. Reported
    /// as soon as the length itself has arrived, before any of the body.
    #[error("frame at offset {offset}: {what} {length} exceeds {limit} {max}")]
    TooLarge {
        /// Offset of the frame's first byte.
        offset: u64,
        /// Which length, e.g. "u32le length" or "json-header file_size".
        what: &'static str,
        /// The length as it appeared on the wire.
        length: u64,
        /// The limit's configuration name: "max_frame", "max_header", "max_body".
        limit: &'static str,
        /// The limit's value.
        max: u64,
    },

    /// With `length_includes_header`, a length smaller than the prefix itself.
    #[error(
        "frame at offset {offset}: {what} {length} is smaller than its own \
         {header_len}-byte prefix (length_includes_header is set)"
    )]
    LengthBelowHeader {
        /// Offset of the frame's first byte.
        offset: u64,
        /// Which length, e.g. "u16be length".
        what: &'static str,
        /// The length as it appeared on the wire.
        length: u64,
        /// Width of the prefix in bytes.
        header_len: u64,
    },

    /// A malformed varint length prefix.
    #[error("frame at offset {offset}: varint length prefix {problem}")]
    BadVarint {
        /// Offset of the frame's first byte.
        offset: u64,
        /// What was wrong with it.
        problem: VarintProblem,
    },

    /// A line longer than `max_line`. The line codec reports this once per
    /// line, then skips to just after the next terminator and carries on.
    #[error(
        "line at offset {offset}: longer than max_line {max_line} bytes without a \
         {terminator} terminator; skipping past the next {terminator}"
    )]
    LineTooLong {
        /// Offset of the line's first byte.
        offset: u64,
        /// The configured limit.
        max_line: u64,
        /// "LF" or "CRLF".
        terminator: &'static str,
    },

    /// A json-header frame whose header is not a usable JSON object.
    #[error("frame at offset {offset}: json-header header {problem}")]
    BadJsonHeader {
        /// Offset of the frame's first byte (its 4-byte header length).
        offset: u64,
        /// What was wrong with it.
        problem: JsonHeaderProblem,
    },

    /// The stream ended part-way through a frame.
    #[error("stream ended inside a frame at offset {offset}: {}", truncation(*.have, *.expected))]
    Truncated {
        /// Offset of the frame's first byte.
        offset: u64,
        /// Bytes of the frame that did arrive.
        have: u64,
        /// The frame's full size on the wire, when its header got far enough
        /// to tell.
        expected: Option<u64>,
    },

    /// The stream ended part-way through a line (no terminator after it).
    #[error(
        "stream ended inside a line at offset {offset}: {have} bytes without a \
         {terminator} terminator"
    )]
    UnterminatedLine {
        /// Offset of the line's first byte.
        offset: u64,
        /// Bytes of the line that did arrive.
        have: u64,
        /// "LF" or "CRLF".
        terminator: &'static str,
    },

    /// Encoding: the payload is too big for the limit or for the prefix.
    #[error(
        "cannot encode frame at offset {offset}: {what} of {len} bytes exceeds {limit} \
         ({max} bytes)"
    )]
    PayloadTooLarge {
        /// Offset in the encoded output where the frame would have started.
        offset: u64,
        /// What is too large: "payload", "line", "body" or "JSON header".
        what: &'static str,
        /// Its length.
        len: u64,
        /// Which limit, e.g. "max_frame" or "what a u8 length prefix can express".
        limit: &'static str,
        /// Largest payload the limit allows.
        max: u64,
    },

    /// Encoding: a line payload contains its own terminator, so it would come
    /// back as two lines.
    #[error(
        "cannot encode line at offset {offset}: payload contains the {terminator} \
         terminator at payload byte {position}"
    )]
    PayloadContainsTerminator {
        /// Offset in the encoded output where the line would have started.
        offset: u64,
        /// "LF" or "CRLF".
        terminator: &'static str,
        /// Index in the payload where the terminator starts.
        position: u64,
    },

    /// Encoding (LF lines): the payload ends in CR, which the decoder would
    /// strip, so it would not come back as sent.
    #[error(
        "cannot encode line at offset {offset}: payload ends with CR, which the LF \
         line decoder strips (use crlf framing to send it)"
    )]
    PayloadEndsWithCr {
        /// Offset in the encoded output where the line would have started.
        offset: u64,
    },

    /// Encoding (json-header): the header's `file_size` disagrees with the body.
    #[error(
        "cannot encode frame at offset {offset}: json-header file_size {declared} does \
         not match the {body_len}-byte body"
    )]
    FileSizeMismatch {
        /// Offset in the encoded output where the frame would have started.
        offset: u64,
        /// The header's `file_size`, as compact JSON.
        declared: String,
        /// The body's actual length.
        body_len: u64,
    },

    /// An I/O error from the reader or writer around the codec (tokio-util's
    /// `Decoder` requires `From<io::Error>`). The codec never produces this
    /// itself, so it has no stream offset: [`FrameError::offset`] returns
    /// [`FrameError::UNKNOWN_OFFSET`].
    #[error("I/O error around the frame codec ({kind:?}): {message}")]
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// Its message (io::Error is neither Clone nor Eq, so it is kept as text).
        message: String,
    },
}

fn truncation(have: u64, expected: Option<u64>) -> String {
    match expected {
        Some(total) => format!("{have} of {total} bytes"),
        None => format!("{have} bytes, before its length was known"),
    }
}

impl FrameError {
    /// The value [`FrameError::offset`] returns for errors not tied to a
    /// stream position ([`FrameError::Io`]).
    pub const UNKNOWN_OFFSET: u64 = u64::MAX;

    /// The stream offset of the frame the error is about: for decoding, the
    /// absolute offset of the frame's first byte in the input stream; for
    /// encoding, where the frame would have started in the output.
    pub fn offset(&self) -> u64 {
        match self {
            FrameError::NegativeLength { offset, .. }
            | FrameError::TooLarge { offset, .. }
            | FrameError::LengthBelowHeader { offset, .. }
            | FrameError::BadVarint { offset, .. }
            | FrameError::LineTooLong { offset, .. }
            | FrameError::BadJsonHeader { offset, .. }
            | FrameError::Truncated { offset, .. }
            | FrameError::UnterminatedLine { offset, .. }
            | FrameError::PayloadTooLarge { offset, .. }
            | FrameError::PayloadContainsTerminator { offset, .. }
            | FrameError::PayloadEndsWithCr { offset }
            | FrameError::FileSizeMismatch { offset, .. } => *offset,
            FrameError::Io { .. } => Self::UNKNOWN_OFFSET,
        }
    }

    /// Whether decoding can go on after this error. Only an over-long line is
    /// recoverable (the line codec skips to the next terminator); after any
    /// other decoding error the codec keeps returning that error.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, FrameError::LineTooLong { .. })
    }
}

impl From<io::Error> for FrameError {
    fn from(err: io::Error) -> Self {
        FrameError::Io {
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}
