//! Framing codecs: how a byte stream is cut into messages.
//!
//! A scenario names its framing (`"u32be"`, `"varint"`, `"line"`, ...);
//! [`FramingKind::from_name`] turns the name into a kind, [`FramingConfig`]
//! adds the limits, and [`FramingConfig::codec`] builds a [`FrameCodec`], a
//! tokio-util `Decoder` + `Encoder` covering every kind. The per-kind codecs
//! ([`LengthPrefixedCodec`], [`VarintCodec`], [`LineCodec`],
//! [`JsonHeaderCodec`]) are public too, for the fuzz targets and benchmarks.
//!
//! ```text
//!  u8 .. u64le   [len: 1/2/4/8 bytes][payload]            length.rs
//!  varint        [len: LEB128 1..10 bytes][payload]       varint.rs
//!  line          [payload][CR?][LF]                       line.rs
//!  crlf          [payload][CR][LF]                        line.rs
//!  json-header   [H: i32le][H bytes of JSON][file_size]   json_header.rs
//! ```
//!
//! Every codec keeps three promises, because a test harness has to be more
//! trustworthy than the code it tests:
//!
//! * **Split-invariance.** The frames (and errors) decoded from a stream do
//!   not depend on how the stream was cut into reads, one byte at a time
//!   included. The property tests check this for every kind.
//! * **Bounded memory.** A codec never holds or reserves more than what has
//!   arrived plus its configured maximum, whatever length the peer claims: an
//!   over-limit or negative length is an error the moment it is readable.
//! * **Located errors.** Every [`FrameError`] carries the absolute stream
//!   offset of the frame it is about, so a failure report can point at it.
//!
//! Decoders never consume part of a frame: the buffer always starts at the
//! current frame's first byte (except while a line codec skips an over-long
//! line). That is what lets [`FramingConfig::exact_read_hint`] work from the
//! buffered bytes alone, so the runner can read exactly one frame from a
//! socket and leave the rest in the kernel.

mod error;
mod json_header;
mod length;
mod line;
mod varint;

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};
use tokio_util::codec::{Decoder, Encoder};

pub use error::{FrameError, JsonHeaderProblem, VarintProblem};
pub use json_header::{JsonHeaderCodec, JsonHeaderFrame};
pub use length::{LengthPrefix, LengthPrefixedCodec};
pub use line::{LineCodec, Terminator};
pub use varint::{parse_varint, put_varint, varint_len, VarintCodec, MAX_VARINT_LEN};

/// Default `max_frame` (and json-header `max_body`): 8 MiB.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;
/// Default `max_line`: 64 KiB.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Default json-header `max_header`: 64 KiB.
pub const DEFAULT_MAX_HEADER: usize = 64 * 1024;

/// Limits are clamped to this so that header + limit (+ limit) arithmetic can
/// never overflow; nothing that large could be allocated anyway.
const LIMIT_CEILING: usize = isize::MAX as usize / 4;

pub(crate) const fn clamp_limit(limit: usize) -> usize {
    if limit > LIMIT_CEILING {
        LIMIT_CEILING
    } else {
        limit
    }
}

/// Which framing, by its scenario-file name. The enum is the one description of the
/// kinds: names, the list in error hints and the iteration order all derive from it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::EnumIter,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
pub enum FramingKind {
    /// `u8`: 1-byte length prefix.
    #[strum(serialize = "u8")]
    U8,
    /// `u16be`: 2-byte big-endian length prefix.
    #[strum(serialize = "u16be")]
    U16Be,
    /// `u16le`: 2-byte little-endian length prefix.
    #[strum(serialize = "u16le")]
    U16Le,
    /// `u32be`: 4-byte big-endian length prefix.
    #[strum(serialize = "u32be")]
    U32Be,
    /// `u32le`: 4-byte little-endian length prefix.
    #[strum(serialize = "u32le")]
    U32Le,
    /// `i32le`: 4-byte little-endian signed length prefix.
    #[strum(serialize = "i32le")]
    I32Le,
    /// `i32be`: 4-byte big-endian signed length prefix.
    #[strum(serialize = "i32be")]
    I32Be,
    /// `u64be`: 8-byte big-endian length prefix.
    #[strum(serialize = "u64be")]
    U64Be,
    /// `u64le`: 8-byte little-endian length prefix.
    #[strum(serialize = "u64le")]
    U64Le,
    /// `varint`: unsigned LEB128 length prefix (protobuf delimited).
    #[strum(serialize = "varint")]
    Varint,
    /// `line`: LF-terminated, a CR before the LF stripped.
    #[strum(serialize = "line")]
    Line,
    /// `crlf`: CRLF-terminated.
    #[strum(serialize = "crlf")]
    Crlf,
    /// `json-header`: i32le header length, JSON header with `file_size`, body.
    #[strum(serialize = "json-header")]
    JsonHeader,
}

impl FramingKind {
    /// Every kind, in the same order as [`FramingKind::NAMES`].
    pub fn all() -> impl Iterator<Item = FramingKind> {
        <Self as strum::IntoEnumIterator>::iter()
    }

    /// Every scenario-file name, in declaration order.
    pub const NAMES: &'static [&'static str] = <Self as strum::VariantNames>::VARIANTS;

    /// The kind with this scenario-file name (exact, case-sensitive match).
    pub fn from_name(name: &str) -> Option<FramingKind> {
        name.parse().ok()
    }

    /// The scenario-file name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The prefix format, for the fixed-width length-prefixed kinds.
    pub fn length_prefix(self) -> Option<LengthPrefix> {
        Some(match self {
            FramingKind::U8 => LengthPrefix::U8,
            FramingKind::U16Be => LengthPrefix::U16Be,
            FramingKind::U16Le => LengthPrefix::U16Le,
            FramingKind::U32Be => LengthPrefix::U32Be,
            FramingKind::U32Le => LengthPrefix::U32Le,
            FramingKind::I32Le => LengthPrefix::I32Le,
            FramingKind::I32Be => LengthPrefix::I32Be,
            FramingKind::U64Be => LengthPrefix::U64Be,
            FramingKind::U64Le => LengthPrefix::U64Le,
            FramingKind::Varint
            | FramingKind::Line
            | FramingKind::Crlf
            | FramingKind::JsonHeader => return None,
        })
    }
}

impl fmt::Display for FramingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A framing plus its limits. Build one with [`FramingConfig::new`], which
/// fills in the defaults, then adjust the public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingConfig {
    /// The framing.
    pub kind: FramingKind,
    /// Largest payload for length-prefixed and varint kinds, and largest body
    /// (`max_body`) for json-header. Default 8 MiB.
    pub max_frame: usize,
    /// Largest line payload (terminator excluded) for line and crlf. Default
    /// 64 KiB.
    pub max_line: usize,
    /// Largest JSON header text for json-header. Default 64 KiB.
    pub max_header: usize,
    /// Length-prefixed kinds only: whether the length counts the prefix's own
    /// bytes as well as the payload. Default false.
    pub length_includes_header: bool,
}

impl FramingConfig {
    /// `kind` with the default limits.
    pub fn new(kind: FramingKind) -> Self {
        FramingConfig {
            kind,
            max_frame: DEFAULT_MAX_FRAME,
            max_line: DEFAULT_MAX_LINE,
            max_header: DEFAULT_MAX_HEADER,
            length_includes_header: false,
        }
    }

    /// A fresh codec (decode state starts empty, stream offsets at 0).
    pub fn codec(&self) -> FrameCodec {
        let inner = match self.kind {
            FramingKind::Varint => Inner::Varint(VarintCodec::new().with_max_frame(self.max_frame)),
            FramingKind::Line => Inner::Line(LineCodec::lf().with_max_line(self.max_line)),
            FramingKind::Crlf => Inner::Line(LineCodec::crlf().with_max_line(self.max_line)),
            FramingKind::JsonHeader => Inner::Json(
                JsonHeaderCodec::new()
                    .with_max_header(self.max_header)
                    .with_max_body(self.max_frame),
            ),
            kind => Inner::Length(
                LengthPrefixedCodec::new(
                    kind.length_prefix()
                        .expect("the other kinds are length-prefixed"),
                )
                .with_max_frame(self.max_frame)
                .with_length_includes_header(self.length_includes_header),
            ),
        };
        FrameCodec {
            kind: self.kind,
            inner,
        }
    }

    /// Appends `payload` to `dst` as one frame. For json-header, `payload` is
    /// the body and the header is `{"file_size":len}`; use
    /// [`FramingConfig::encode_json_header`] to choose the header. Error
    /// offsets are positions in `dst` (where the frame would have started).
    pub fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        let offset = dst.len() as u64;
        self.codec().encode_at(payload, offset, dst)
    }

    /// Appends one json-header frame with the given header and body to `dst`,
    /// using this config's `max_header` and `max_frame` (as `max_body`),
    /// whatever `kind` is. `file_size` is added when absent and must equal
    /// `body.len()` when present.
    pub fn encode_json_header(
        &self,
        header: &Map<String, Value>,
        body: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let offset = dst.len() as u64;
        JsonHeaderCodec::new()
            .with_max_header(self.max_header)
            .with_max_body(self.max_frame)
            .encode_at(Some(header), body, offset, dst)
            .map(drop)
    }

    /// How many more bytes a reader may read from the socket right now
    /// without reading past the end of the frame being decoded, given the
    /// frame's bytes already buffered (`buffered` starts at the frame's first
    /// byte, which is what a [`FrameCodec`]'s buffer holds between calls).
    ///
    /// At least 1 while the frame is incomplete; 0 once `buffered` holds the
    /// whole frame (decode it instead of reading). Per kind:
    ///
    /// * length-prefixed: the rest of the prefix, then the rest of the body;
    /// * varint: 1 until the varint is complete, then the rest of the body;
    /// * line, crlf: 1 (a line's length is unknown until its terminator);
    /// * json-header: the rest of the 4-byte length, of the header, of the body.
    ///
    /// When the buffered bytes are already invalid (negative or over-limit
    /// length, bad header) it returns 1: decoding reports the error.
    pub fn exact_read_hint(&self, buffered: &[u8]) -> usize {
        self.codec().exact_read_hint(buffered)
    }
}

/// One codec covering every [`FramingKind`]: a tokio-util `Decoder` with
/// `Item = Frame` and an `Encoder` for `&[u8]` and [`Bytes`] payloads.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    kind: FramingKind,
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Length(LengthPrefixedCodec),
    Varint(VarintCodec),
    Line(LineCodec),
    Json(JsonHeaderCodec),
}

impl FrameCodec {
    /// The framing this codec speaks.
    pub fn kind(&self) -> FramingKind {
        self.kind
    }

    /// Absolute input offset of the frame being decoded: the number of input
    /// bytes consumed so far.
    pub fn stream_offset(&self) -> u64 {
        match &self.inner {
            Inner::Length(c) => c.stream_offset(),
            Inner::Varint(c) => c.stream_offset(),
            Inner::Line(c) => c.stream_offset(),
            Inner::Json(c) => c.stream_offset(),
        }
    }

    /// See [`FramingConfig::exact_read_hint`]; pass the codec's buffer.
    pub fn exact_read_hint(&self, buffered: &[u8]) -> usize {
        match &self.inner {
            Inner::Length(c) => c.exact_read_hint(buffered),
            Inner::Varint(c) => c.exact_read_hint(buffered),
            Inner::Line(c) => c.exact_read_hint(buffered),
            Inner::Json(c) => c.exact_read_hint(buffered),
        }
    }

    fn encode_at(&self, payload: &[u8], offset: u64, dst: &mut BytesMut) -> Result<(), FrameError> {
        match &self.inner {
            Inner::Length(c) => c.encode_at(payload, offset, dst),
            Inner::Varint(c) => c.encode_at(payload, offset, dst),
            Inner::Line(c) => c.encode_at(payload, offset, dst),
            Inner::Json(c) => c.encode_at(None, payload, offset, dst).map(drop),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        Ok(match &mut self.inner {
            Inner::Length(c) => c.decode(src)?.map(Frame::new),
            Inner::Varint(c) => c.decode(src)?.map(Frame::new),
            Inner::Line(c) => c.decode(src)?.map(Frame::new),
            Inner::Json(c) => c.decode(src)?.map(Frame::from),
        })
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        Ok(match &mut self.inner {
            Inner::Length(c) => c.decode_eof(src)?.map(Frame::new),
            Inner::Varint(c) => c.decode_eof(src)?.map(Frame::new),
            Inner::Line(c) => c.decode_eof(src)?.map(Frame::new),
            Inner::Json(c) => c.decode_eof(src)?.map(Frame::from),
        })
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        match &mut self.inner {
            Inner::Length(c) => c.encode(payload, dst),
            Inner::Varint(c) => c.encode(payload, dst),
            Inner::Line(c) => c.encode(payload, dst),
            Inner::Json(c) => c.encode(payload, dst),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        Encoder::<&[u8]>::encode(self, &payload, dst)
    }
}

/// A decoded frame: its payload (for json-header, the body) and, for
/// json-header, the parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The payload bytes, without prefix or terminator.
    pub payload: Bytes,
    /// The parsed JSON header (json-header frames only).
    pub header: Option<Map<String, Value>>,
}

impl Frame {
    /// A frame with no header.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Frame {
            payload: payload.into(),
            header: None,
        }
    }
}

impl From<JsonHeaderFrame> for Frame {
    fn from(frame: JsonHeaderFrame) -> Self {
        Frame {
            payload: frame.body,
            header: Some(frame.header),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    type Outcome = Vec<Result<Frame, FrameError>>;

    /// Feeds `stream` to a fresh codec in reads of the given sizes (cycled),
    /// collecting frames and errors until a fatal error or the end.
    fn decode_stream(config: &FramingConfig, stream: &[u8], sizes: &[usize]) -> Outcome {
        let mut codec = config.codec();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut sizes = sizes.iter().copied().cycle();
        while pos < stream.len() {
            let n = sizes
                .next()
                .unwrap_or(stream.len())
                .clamp(1, stream.len() - pos);
            buf.extend_from_slice(&stream[pos..pos + n]);
            pos += n;
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(frame)) => out.push(Ok(frame)),
                    Ok(None) => break,
                    Err(err) => {
                        let recoverable = err.is_recoverable();
                        out.push(Err(err));
                        if !recoverable {
                            return out;
                        }
                    }
                }
            }
        }
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => return out,
                Err(err) => {
                    let recoverable = err.is_recoverable();
                    out.push(Err(err));
                    if !recoverable {
                        return out;
                    }
                }
            }
        }
    }

    /// Makes a random payload encodable by `kind` (and round-trippable).
    fn encodable(kind: FramingKind, mut payload: Vec<u8>) -> Vec<u8> {
        match kind {
            FramingKind::U8 => payload.truncate(255),
            FramingKind::Line => {
                for b in &mut payload {
                    if *b == b'\n' {
                        *b = b'n';
                    }
                }
                if let Some(last @ b'\r') = payload.last_mut() {
                    *last = b'r';
                }
            }
            FramingKind::Crlf => {
                for i in 1..payload.len() {
                    if payload[i] == b'\n' && payload[i - 1] == b'\r' {
                        payload[i - 1] = b'r';
                    }
                }
            }
            _ => {}
        }
        payload
    }

    fn any_kind() -> impl Strategy<Value = FramingKind> {
        prop::sample::select(FramingKind::all().collect::<Vec<_>>())
    }

    /// Bytes rich in the values framings care about.
    fn wire_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            6 => any::<u8>(),
            1 => Just(b'\r'),
            1 => Just(b'\n'),
            1 => Just(0x80u8),
            1 => Just(0u8),
        ]
    }

    fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(wire_byte(), 0..300), 0..12)
    }

    fn encode_all(config: &FramingConfig, msgs: &[Vec<u8>]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        for msg in msgs {
            config.encode(msg, &mut dst).expect("encodable");
        }
        dst.to_vec()
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(FramingKind::NAMES.len(), FramingKind::all().count());
        for (kind, name) in FramingKind::all().zip(FramingKind::NAMES) {
            assert_eq!(kind.name(), *name);
            assert_eq!(FramingKind::from_name(name), Some(kind));
            assert_eq!(kind.to_string(), *name);
        }
        assert_eq!(FramingKind::from_name("U32BE"), None);
        assert_eq!(FramingKind::from_name("json_header"), None);
        assert_eq!(FramingKind::from_name(""), None);
    }

    #[test]
    fn config_defaults() {
        let config = FramingConfig::new(FramingKind::U32Be);
        assert_eq!(config.max_frame, 8 * 1024 * 1024);
        assert_eq!(config.max_line, 64 * 1024);
        assert_eq!(config.max_header, 64 * 1024);
        assert!(!config.length_includes_header);
        assert_eq!(config.codec().kind(), FramingKind::U32Be);
    }

    #[test]
    fn config_encodes_each_kind() {
        let expect: [(FramingKind, &[u8]); 13] = [
            (FramingKind::U8, b"\x02hi"),
            (FramingKind::U16Be, b"\x00\x02hi"),
            (FramingKind::U16Le, b"\x02\x00hi"),
            (FramingKind::U32Be, b"\x00\x00\x00\x02hi"),
            (FramingKind::U32Le, b"\x02\x00\x00\x00hi"),
            (FramingKind::I32Le, b"\x02\x00\x00\x00hi"),
            (FramingKind::I32Be, b"\x00\x00\x00\x02hi"),
            (FramingKind::U64Be, b"\x00\x00\x00\x00\x00\x00\x00\x02hi"),
            (FramingKind::U64Le, b"\x02\x00\x00\x00\x00\x00\x00\x00hi"),
            (FramingKind::Varint, b"\x02hi"),
            (FramingKind::Line, b"hi\n"),
            (FramingKind::Crlf, b"hi\r\n"),
            (
                FramingKind::JsonHeader,
                b"\x0f\x00\x00\x00{\"file_size\":2}hi",
            ),
        ];
        for (kind, wire) in expect {
            let config = FramingConfig::new(kind);
            let mut dst = BytesMut::new();
            config.encode(b"hi", &mut dst).unwrap();
            assert_eq!(&dst[..], wire, "{kind}");
            let mut codec = config.codec();
            let mut via_codec = BytesMut::new();
            codec.encode(&b"hi"[..], &mut via_codec).unwrap();
            assert_eq!(&via_codec[..], wire, "{kind}");
            let frames = decode_stream(&config, wire, &[wire.len()]);
            assert_eq!(frames.len(), 1, "{kind}");
            let frame = frames[0].clone().unwrap();
            assert_eq!(&frame.payload[..], b"hi", "{kind}");
            assert_eq!(
                frame.header.is_some(),
                kind == FramingKind::JsonHeader,
                "{kind}"
            );
        }
    }

    #[test]
    fn config_limits_reach_the_codec() {
        let mut config = FramingConfig::new(FramingKind::U16Le);
        config.max_frame = 3;
        config.length_includes_header = true;
        let out = decode_stream(&config, &[5, 0, 1, 2, 3, 6, 0], &[100]);
        assert_eq!(out[0], Ok(Frame::new(Bytes::from_static(&[1, 2, 3]))));
        assert_eq!(
            out[1].clone().unwrap_err().to_string(),
            "frame at offset 5: u16le length 6 exceeds max_frame 3"
        );
        let mut config = FramingConfig::new(FramingKind::JsonHeader);
        config.max_frame = 1;
        let mut dst = BytesMut::new();
        assert!(config.encode(b"ab", &mut dst).is_err());
        config.max_header = 4;
        assert!(matches!(
            config.encode(b"a", &mut dst),
            Err(FrameError::PayloadTooLarge {
                what: "JSON header",
                ..
            })
        ));
        let mut config = FramingConfig::new(FramingKind::Crlf);
        config.max_line = 1;
        assert!(matches!(
            decode_stream(&config, b"abc\r\n", &[1])[0],
            Err(FrameError::LineTooLong { offset: 0, .. })
        ));
    }

    #[test]
    fn encode_errors_locate_the_frame_in_dst() {
        let config = FramingConfig::new(FramingKind::Line);
        let mut dst = BytesMut::from(&b"earlier\n"[..]);
        let err = config.encode(b"a\nb", &mut dst).unwrap_err();
        assert_eq!(err.offset(), 8);
        assert_eq!(&dst[..], b"earlier\n", "nothing appended on error");
    }

    #[test]
    fn encode_json_header_through_config() {
        let config = FramingConfig::new(FramingKind::JsonHeader);
        let header = match json!({"file_name": "f", "md5": "x"}) {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let mut dst = BytesMut::new();
        config
            .encode_json_header(&header, b"body", &mut dst)
            .unwrap();
        let out = decode_stream(&config, &dst, &[3]);
        let frame = out[0].clone().unwrap();
        assert_eq!(&frame.payload[..], b"body");
        let header = frame.header.unwrap();
        assert_eq!(header["file_size"], json!(4));
        assert_eq!(header["file_name"], json!("f"));
    }

    #[test]
    fn io_errors_convert_without_an_offset() {
        let err = FrameError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "peer reset",
        ));
        assert_eq!(err.offset(), FrameError::UNKNOWN_OFFSET);
        assert!(!err.is_recoverable());
        assert_eq!(
            err.to_string(),
            "I/O error around the frame codec (ConnectionReset): peer reset"
        );
    }

    #[test]
    fn truncation_through_frame_codec() {
        for kind in FramingKind::all() {
            let config = FramingConfig::new(kind);
            let mut stream = BytesMut::new();
            config.encode(b"whole", &mut stream).unwrap();
            let cut = stream.len() - 1;
            config.encode(b"cut", &mut stream).unwrap();
            let end = stream.len() - 1;
            let out = decode_stream(&config, &stream[..end], &[2]);
            assert_eq!(out.len(), 2, "{kind}");
            assert_eq!(&out[0].clone().unwrap().payload[..], b"whole", "{kind}");
            let err = out[1].clone().unwrap_err();
            assert_eq!(err.offset(), cut as u64 + 1, "{kind}");
            assert!(
                err.to_string().starts_with("stream ended inside a "),
                "{kind}: {err}"
            );
        }
    }

    proptest! {
        /// Random messages, random read sizes, every kind: what comes out is
        /// what went in, and one byte at a time agrees with all at once.
        #[test]
        fn round_trip_under_any_chunking(
            kind in any_kind(),
            msgs in messages(),
            sizes in prop::collection::vec(1usize..80, 1..40),
        ) {
            let config = FramingConfig::new(kind);
            let msgs: Vec<Vec<u8>> = msgs.into_iter().map(|m| encodable(kind, m)).collect();
            let stream = encode_all(&config, &msgs);

            let chunked = decode_stream(&config, &stream, &sizes);
            let decoded: Vec<Vec<u8>> = chunked
                .iter()
                .map(|r| r.as_ref().map(|f| f.payload.to_vec()).map_err(Clone::clone))
                .collect::<Result<_, _>>()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&decoded, &msgs);
            if kind == FramingKind::JsonHeader {
                for (frame, msg) in chunked.iter().flatten().zip(&msgs) {
                    let header = frame.header.as_ref().expect("json-header frames have headers");
                    prop_assert_eq!(header.get("file_size"), Some(&json!(msg.len())));
                }
            }

            let whole = decode_stream(&config, &stream, &[stream.len().max(1)]);
            let bytewise = decode_stream(&config, &stream, &[1]);
            prop_assert_eq!(&whole, &chunked);
            prop_assert_eq!(&whole, &bytewise);
        }

        /// A reader that reads at most `exact_read_hint` bytes (or fewer,
        /// as sockets do) never takes a byte of the next frame: each frame
        /// decodes exactly when its last byte is read.
        #[test]
        fn exact_read_hint_never_reads_past_the_frame(
            kind in any_kind(),
            first in prop::collection::vec(wire_byte(), 0..300),
            second in prop::collection::vec(wire_byte(), 0..300),
            caps in prop::collection::vec(1usize..64, 1..10),
        ) {
            let config = FramingConfig::new(kind);
            let first = encodable(kind, first);
            let second = encodable(kind, second);
            let mut stream = BytesMut::new();
            config.encode(&first, &mut stream).unwrap();
            let first_end = stream.len();
            config.encode(&second, &mut stream).unwrap();

            let mut codec = config.codec();
            let mut buf = BytesMut::new();
            let mut pos = 0;
            let mut caps = caps.iter().copied().cycle();
            for (expected, frame_end) in [(&first, first_end), (&second, stream.len())] {
                let frame = loop {
                    let decoded = codec.decode(&mut buf);
                    if let Some(frame) = decoded.map_err(|e| TestCaseError::fail(e.to_string()))? {
                        break frame;
                    }
                    let hint = config.exact_read_hint(&buf);
                    prop_assert_eq!(hint, codec.exact_read_hint(&buf));
                    prop_assert!(hint >= 1, "hint 0 for an incomplete frame");
                    let n = hint.min(caps.next().unwrap_or(1));
                    prop_assert!(
                        pos + n <= frame_end,
                        "hint {} at {} reads past the frame end {}", hint, pos, frame_end
                    );
                    buf.extend_from_slice(&stream[pos..pos + n]);
                    pos += n;
                };
                prop_assert_eq!(&frame.payload[..], &expected[..]);
                prop_assert_eq!(pos, frame_end);
                prop_assert!(buf.is_empty());
                prop_assert_eq!(codec.stream_offset(), frame_end as u64);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Corrupted and truncated streams under tight limits: the frames and
        /// the errors (kind, message, offset) do not depend on read sizes.
        /// Cheap per case and the likeliest to catch a split bug, so it runs
        /// more cases than the others.
        #[test]
        fn same_outcome_for_any_chunking_even_when_corrupt(
            kind in any_kind(),
            msgs in prop::collection::vec(prop::collection::vec(wire_byte(), 0..60), 0..8),
            flips in prop::collection::vec((any::<prop::sample::Index>(), wire_byte()), 0..4),
            truncate in prop::option::of(any::<prop::sample::Index>()),
            sizes in prop::collection::vec(1usize..20, 1..20),
            includes_header: bool,
        ) {
            let msgs: Vec<Vec<u8>> = msgs.into_iter().map(|m| encodable(kind, m)).collect();
            let mut stream = encode_all(&FramingConfig::new(kind), &msgs);
            if !stream.is_empty() {
                for (at, byte) in &flips {
                    let i = at.index(stream.len());
                    stream[i] = *byte;
                }
                if let Some(at) = truncate {
                    stream.truncate(at.index(stream.len()));
                }
            }
            let mut config = FramingConfig::new(kind);
            config.max_frame = 40;
            config.max_line = 30;
            config.max_header = 24;
            config.length_includes_header = includes_header;

            let whole = decode_stream(&config, &stream, &[stream.len().max(1)]);
            let bytewise = decode_stream(&config, &stream, &[1]);
            let chunked = decode_stream(&config, &stream, &sizes);
            prop_assert_eq!(&whole, &bytewise);
            prop_assert_eq!(&whole, &chunked);
            for result in &whole {
                match result {
                    Ok(frame) => prop_assert!(frame.payload.len() <= 40),
                    Err(err) => prop_assert!(err.offset() < stream.len() as u64),
                }
            }
        }
    }
}
