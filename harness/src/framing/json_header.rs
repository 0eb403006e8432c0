//! json-header framing: the file-transfer layout from the classic Python
//! socket tutorials, where a sender announces a file with a small JSON header
//! and then streams its bytes.
//!
//! ```text
//!  frame offset 0              4                        4 + H              4 + H + S
//!               +--------------+------------------------+------------------+
//!               | H as i32le   | JSON object (H bytes)  | body (S bytes)   |
//!               +--------------+------------------------+------------------+
//!                                {"file_name": "a.txt",
//!                                 "file_size": S,        <- required, integer >= 0
//!                                 "md5": "..."}
//!
//!  {"file_size":2} + "hi":
//!    0f 00 00 00  7b 22 66 69 6c 65 5f 73 69 7a 65 22 3a 32 7d  68 69
//! ```
//!
//! The header is parsed as soon as its bytes are in, so a bad header or a
//! `file_size` above `max_body` fails before any body is read. The whole frame
//! stays in the buffer until its last byte arrives, then is split off once:
//! the decoded [`JsonHeaderFrame`] shares that allocation for its header text,
//! body and wire bytes.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use tokio_util::codec::{Decoder, Encoder};

use super::{clamp_limit, FrameError, JsonHeaderProblem, DEFAULT_MAX_FRAME, DEFAULT_MAX_HEADER};

/// Size of the header-length field.
const LEN_WIDTH: usize = 4;

/// One decoded json-header frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonHeaderFrame {
    /// The parsed header; `file_size` is guaranteed to be present and to equal
    /// `body.len()`.
    pub header: Map<String, Value>,
    /// The `file_size` bytes after the header.
    pub body: Bytes,
    /// The whole frame as received.
    wire: Bytes,
}

impl JsonHeaderFrame {
    /// The whole frame exactly as it was on the wire: the 4-byte header
    /// length, the header text (whitespace and key order as sent) and the
    /// body. This is the frame's payload representation when a test compares
    /// whole frames or records them in a trace.
    pub fn wire_bytes(&self) -> &Bytes {
        &self.wire
    }

    /// The header's JSON text, as sent.
    pub fn raw_header(&self) -> Bytes {
        self.wire
            .slice(LEN_WIDTH..self.wire.len() - self.body.len())
    }

    /// The header's `file_size` (the body length).
    pub fn file_size(&self) -> u64 {
        self.body.len() as u64
    }

    /// The header's `file_name`, if it is a string.
    pub fn file_name(&self) -> Option<&str> {
        self.header.get("file_name").and_then(Value::as_str)
    }

    /// The header's `md5`, if it is a string.
    pub fn md5(&self) -> Option<&str> {
        self.header.get("md5").and_then(Value::as_str)
    }
}

/// Where the decoder is inside the current frame. The frame's bytes stay in
/// the buffer throughout; the state only remembers what has been learnt.
#[derive(Debug, Clone)]
enum State {
    /// Waiting for the 4-byte header length.
    Start,
    /// Header length known and checked; waiting for the header text.
    Header { header_len: usize },
    /// Header parsed; waiting for the body.
    Body {
        header_len: usize,
        header: Map<String, Value>,
        body_len: usize,
    },
}

/// Decoder and encoder for json-header frames.
///
/// Decoding yields [`JsonHeaderFrame`]s. Memory is bounded by what has
/// arrived plus `4 + max_header + max_body`. Every decoding error is fatal
/// (afterwards `decode` keeps returning it).
///
/// Encoding a plain `&[u8]` or [`Bytes`] sends it as the body with the header
/// `{"file_size": len}`; [`JsonHeaderCodec::encode_with_header`] takes a
/// header of the caller's own.
#[derive(Debug, Clone)]
pub struct JsonHeaderCodec {
    max_header: usize,
    max_body: usize,
    state: State,
    consumed: u64,
    failed: Option<FrameError>,
    encoded: u64,
}

impl Default for JsonHeaderCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonHeaderCodec {
    /// A codec with `max_header` 64 KiB and `max_body` 8 MiB.
    pub fn new() -> Self {
        JsonHeaderCodec {
            max_header: DEFAULT_MAX_HEADER,
            max_body: DEFAULT_MAX_FRAME,
            state: State::Start,
            consumed: 0,
            failed: None,
            encoded: 0,
        }
    }

    /// Sets the largest header text accepted or produced.
    pub fn with_max_header(mut self, max_header: usize) -> Self {
        self.max_header = clamp_limit(max_header);
        self
    }

    /// Sets the largest body (`file_size`) accepted or produced.
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = clamp_limit(max_body);
        self
    }

    /// The largest header accepted.
    pub fn max_header(&self) -> usize {
        self.max_header
    }

    /// The largest body accepted.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Absolute input offset of the frame being decoded.
    pub fn stream_offset(&self) -> u64 {
        self.consumed
    }

    /// How many bytes may be read now without reading past the current frame:
    /// the rest of the header length, then the rest of the header, then the
    /// rest of the body; 0 when `buffered` holds the whole frame; 1 when what
    /// is buffered is invalid (decoding will say why).
    pub fn exact_read_hint(&self, buffered: &[u8]) -> usize {
        if buffered.len() < LEN_WIDTH {
            return LEN_WIDTH - buffered.len();
        }
        let Ok(header_len) = self.header_len(buffered, 0) else {
            return 1;
        };
        let header_end = LEN_WIDTH + header_len;
        if buffered.len() < header_end {
            return header_end - buffered.len();
        }
        match self.parse_header(&buffered[LEN_WIDTH..header_end], 0) {
            Ok((_, body_len)) => (header_end + body_len).saturating_sub(buffered.len()),
            Err(_) => 1,
        }
    }

    /// Reads and checks the header length at the start of `buf`.
    fn header_len(&self, buf: &[u8], offset: u64) -> Result<usize, FrameError> {
        const WHAT: &str = "json-header header length";
        let raw = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let len = u64::try_from(raw).map_err(|_| FrameError::NegativeLength {
            offset,
            what: WHAT,
            value: i64::from(raw),
        })?;
        if len > self.max_header as u64 {
            return Err(FrameError::TooLarge {
                offset,
                what: WHAT,
                length: len,
                limit: "max_header",
                max: self.max_header as u64,
            });
        }
        Ok(len as usize)
    }

    /// Parses the header text and checks `file_size`.
    fn parse_header(
        &self,
        text: &[u8],
        offset: u64,
    ) -> Result<(Map<String, Value>, usize), FrameError> {
        let bad = |problem| FrameError::BadJsonHeader { offset, problem };
        let text = std::str::from_utf8(text).map_err(|e| {
            bad(JsonHeaderProblem::NotUtf8 {
                valid_up_to: e.valid_up_to(),
            })
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            bad(JsonHeaderProblem::NotJson {
                message: e.to_string(),
            })
        })?;
        let header = match value {
            Value::Object(map) => map,
            other => {
                return Err(bad(JsonHeaderProblem::NotObject {
                    found: json_type(&other),
                }))
            }
        };
        let size = header
            .get("file_size")
            .ok_or_else(|| bad(JsonHeaderProblem::MissingFileSize))?;
        let size = size.as_u64().ok_or_else(|| {
            bad(JsonHeaderProblem::InvalidFileSize {
                value: size.to_string(),
            })
        })?;
        if size > self.max_body as u64 {
            return Err(FrameError::TooLarge {
                offset,
                what: "json-header file_size",
                length: size,
                limit: "max_body",
                max: self.max_body as u64,
            });
        }
        Ok((header, size as usize))
    }

    /// Appends one frame to `dst` with the caller's `header`. `file_size` is
    /// added if absent and must equal `body.len()` if present.
    pub fn encode_with_header(
        &mut self,
        header: &Map<String, Value>,
        body: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let written = self.encode_at(Some(header), body, self.encoded, dst)?;
        self.encoded += written as u64;
        Ok(())
    }

    /// Appends one frame; returns its size. `offset` only labels errors.
    pub(crate) fn encode_at(
        &self,
        header: Option<&Map<String, Value>>,
        body: &[u8],
        offset: u64,
        dst: &mut BytesMut,
    ) -> Result<usize, FrameError> {
        let body_len = body.len() as u64;
        if body.len() > self.max_body {
            return Err(FrameError::PayloadTooLarge {
                offset,
                what: "body",
                len: body_len,
                limit: "max_body",
                max: self.max_body as u64,
            });
        }
        let text = match header {
            None => format!("{{\"file_size\":{body_len}}}").into_bytes(),
            Some(header) => match header.get("file_size") {
                Some(declared) if declared.as_u64() == Some(body_len) => to_json(header),
                Some(declared) => {
                    return Err(FrameError::FileSizeMismatch {
                        offset,
                        declared: declared.to_string(),
                        body_len,
                    })
                }
                None => {
                    let mut header = header.clone();
                    header.insert("file_size".to_owned(), Value::from(body_len));
                    to_json(&header)
                }
            },
        };
        // i32::MAX is what the i32le length can say; clamp_limit keeps
        // max_header far below usize::MAX.
        let max_text = self.max_header.min(i32::MAX as usize);
        if text.len() > max_text {
            return Err(FrameError::PayloadTooLarge {
                offset,
                what: "JSON header",
                len: text.len() as u64,
                limit: if max_text == self.max_header {
                    "max_header"
                } else {
                    "what an i32le header length can express"
                },
                max: max_text as u64,
            });
        }
        let total = LEN_WIDTH + text.len() + body.len();
        dst.reserve(total);
        // Cannot truncate: text.len() <= i32::MAX was checked above.
        dst.put_i32_le(text.len() as i32);
        dst.put_slice(&text);
        dst.put_slice(body);
        Ok(total)
    }

    fn step(&mut self, src: &mut BytesMut) -> Result<Option<JsonHeaderFrame>, FrameError> {
        let offset = self.consumed;
        if let State::Start = self.state {
            if src.len() < LEN_WIDTH {
                return Ok(None);
            }
            let header_len = self.header_len(src, offset)?;
            self.state = State::Header { header_len };
        }
        if let State::Header { header_len } = self.state {
            let header_end = LEN_WIDTH + header_len;
            if src.len() < header_end {
                src.reserve(header_end - src.len());
                return Ok(None);
            }
            let (header, body_len) = self.parse_header(&src[LEN_WIDTH..header_end], offset)?;
            self.state = State::Body {
                header_len,
                header,
                body_len,
            };
        }
        let State::Body {
            header_len,
            body_len,
            ..
        } = self.state
        else {
            unreachable!("the Start and Header states were advanced above");
        };
        let header_end = LEN_WIDTH + header_len;
        let total = header_end + body_len;
        if src.len() < total {
            // Bounded by 4 + max_header + max_body: both lengths were checked.
            src.reserve(total - src.len());
            return Ok(None);
        }
        let State::Body { header, .. } = std::mem::replace(&mut self.state, State::Start) else {
            unreachable!("matched just above");
        };
        let wire = src.split_to(total).freeze();
        self.consumed += total as u64;
        Ok(Some(JsonHeaderFrame {
            header,
            body: wire.slice(header_end..),
            wire,
        }))
    }

    /// Bytes of the current frame's size known so far, for truncation errors.
    fn expected_total(&self) -> Option<u64> {
        match &self.state {
            State::Body {
                header_len,
                body_len,
                ..
            } => Some((LEN_WIDTH + header_len + body_len) as u64),
            State::Start | State::Header { .. } => None,
        }
    }
}

fn to_json(header: &Map<String, Value>) -> Vec<u8> {
    // A map with string keys always serialises.
    serde_json::to_vec(header).expect("a JSON object always serialises")
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Decoder for JsonHeaderCodec {
    type Item = JsonHeaderFrame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<JsonHeaderFrame>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.step(src)
            .inspect_err(|err| self.failed = Some(err.clone()))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<JsonHeaderFrame>, FrameError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        if src.is_empty() {
            return Ok(None);
        }
        let err = FrameError::Truncated {
            offset: self.consumed,
            have: src.len() as u64,
            expected: self.expected_total(),
        };
        self.consumed += src.len() as u64;
        src.clear();
        self.state = State::Start;
        Err(err)
    }
}

impl Encoder<&[u8]> for JsonHeaderCodec {
    type Error = FrameError;

    fn encode(&mut self, body: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        let written = self.encode_at(None, body, self.encoded, dst)?;
        self.encoded += written as u64;
        Ok(())
    }
}

impl Encoder<Bytes> for JsonHeaderCodec {
    type Error = FrameError;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        Encoder::<&[u8]>::encode(self, &body, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame_bytes(header: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as i32).to_le_bytes().to_vec();
        out.extend_from_slice(header);
        out.extend_from_slice(body);
        out
    }

    fn decode_all(
        codec: &mut JsonHeaderCodec,
        bytes: &[u8],
    ) -> Vec<Result<JsonHeaderFrame, FrameError>> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => return out,
                Err(err) => {
                    out.push(Err(err));
                    return out;
                }
            }
        }
    }

    fn first_error(bytes: &[u8]) -> FrameError {
        decode_all(&mut JsonHeaderCodec::new(), bytes)
            .into_iter()
            .find_map(Result::err)
            .expect("an error")
    }

    fn as_map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn literal_layout() {
        let wire = [
            0x0f, 0x00, 0x00, 0x00, b'{', b'"', b'f', b'i', b'l', b'e', b'_', b's', b'i', b'z',
            b'e', b'"', b':', b'2', b'}', b'h', b'i',
        ];
        let mut dst = BytesMut::new();
        JsonHeaderCodec::new().encode(&b"hi"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], &wire[..]);
        let frames = decode_all(&mut JsonHeaderCodec::new(), &wire);
        let frame = frames[0].clone().unwrap();
        assert_eq!(frame.body, Bytes::from_static(b"hi"));
        assert_eq!(frame.header, as_map(json!({"file_size": 2})));
        assert_eq!(&frame.wire_bytes()[..], &wire[..]);
        assert_eq!(&frame.raw_header()[..], br#"{"file_size":2}"#);
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn tutorial_header_with_name_and_md5() {
        let header: &[u8] = concat!(
            r#"{ "file_name": "a.txt", "file_size": 5, "#,
            r#""md5": "5d41402abc4b2a76b9719d911017c592" }"#
        )
        .as_bytes();
        let mut bytes = frame_bytes(header, b"hello");
        bytes.extend(frame_bytes(br#"{"file_size":0}"#, b""));
        let frames = decode_all(&mut JsonHeaderCodec::new(), &bytes);
        let first = frames[0].clone().unwrap();
        assert_eq!(first.file_name(), Some("a.txt"));
        assert_eq!(first.md5(), Some("5d41402abc4b2a76b9719d911017c592"));
        assert_eq!(first.file_size(), 5);
        assert_eq!(&first.raw_header()[..], header);
        let second = frames[1].clone().unwrap();
        assert!(second.body.is_empty());
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn encode_with_header_fills_and_checks_file_size() {
        let mut codec = JsonHeaderCodec::new();
        let mut dst = BytesMut::new();
        let header = as_map(json!({"file_name": "x.bin", "md5": "00"}));
        codec.encode_with_header(&header, b"abc", &mut dst).unwrap();
        let frame = decode_all(&mut JsonHeaderCodec::new(), &dst)[0]
            .clone()
            .unwrap();
        assert_eq!(
            frame.header,
            as_map(json!({"file_name": "x.bin", "md5": "00", "file_size": 3}))
        );
        assert_eq!(&frame.body[..], b"abc");

        let ok = as_map(json!({"file_size": 3}));
        codec.encode_with_header(&ok, b"abc", &mut dst).unwrap();
        let wrong = as_map(json!({"file_size": 4}));
        let offset = dst.len() as u64;
        let err = codec
            .encode_with_header(&wrong, b"abc", &mut dst)
            .unwrap_err();
        assert_eq!(
            err,
            FrameError::FileSizeMismatch {
                offset,
                declared: "4".into(),
                body_len: 3
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cannot encode frame at offset {offset}: json-header file_size 4 does not match \
                 the 3-byte body"
            )
        );
    }

    #[test]
    fn encode_limits() {
        let mut codec = JsonHeaderCodec::new().with_max_body(2).with_max_header(20);
        let mut dst = BytesMut::new();
        assert!(matches!(
            codec.encode(&b"abc"[..], &mut dst),
            Err(FrameError::PayloadTooLarge { what: "body", .. })
        ));
        let big = as_map(json!({"file_name": "a-rather-long-name.txt"}));
        let err = codec.encode_with_header(&big, b"", &mut dst).unwrap_err();
        assert!(err.to_string().contains("JSON header of"), "{err}");
        assert!(
            err.to_string().ends_with("exceeds max_header (20 bytes)"),
            "{err}"
        );
    }

    #[test]
    fn bad_json_and_bad_headers() {
        let cases: [(&[u8], &str); 8] = [
            (
                b"{\"file_size\":",
                "is not valid JSON: EOF while parsing a value at line 1 column 13",
            ),
            (
                b"\xff{}",
                "is not valid UTF-8 (first bad byte at header byte 0)",
            ),
            (b"[1,2]", "is a JSON array, not an object"),
            (b"{\"file_name\":\"a\"}", "has no \"file_size\" member"),
            (
                b"{\"file_size\":-3}",
                "has \"file_size\": -3, which is not a non-negative integer",
            ),
            (
                b"{\"file_size\":1.5}",
                "has \"file_size\": 1.5, which is not a non-negative integer",
            ),
            (
                b"{\"file_size\":\"3\"}",
                "has \"file_size\": \"3\", which is not a non-negative integer",
            ),
            (
                b"",
                "is not valid JSON: EOF while parsing a value at line 1 column 0",
            ),
        ];
        for (header, problem) in cases {
            // One good frame first, so the offset is not just 0.
            let mut bytes = frame_bytes(br#"{"file_size":1}"#, b"x");
            let offset = bytes.len();
            bytes.extend(frame_bytes(header, b"body"));
            let err = first_error(&bytes);
            assert_eq!(
                err.to_string(),
                format!("frame at offset {offset}: json-header header {problem}")
            );
            assert_eq!(err.offset(), offset as u64);
        }
    }

    #[test]
    fn length_errors() {
        let err = first_error(&(-1i32).to_le_bytes());
        assert_eq!(
            err.to_string(),
            "frame at offset 0: json-header header length -1 is negative"
        );
        let err = first_error(&(1i32 << 20).to_le_bytes());
        assert_eq!(
            err.to_string(),
            "frame at offset 0: json-header header length 1048576 exceeds max_header 65536"
        );
        // file_size over max_body fails once the header is in, before the body.
        let mut codec = JsonHeaderCodec::new().with_max_body(10);
        let mut buf = BytesMut::from(&frame_bytes(br#"{"file_size":11}"#, b"")[..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame at offset 0: json-header file_size 11 exceeds max_body 10"
        );
        assert_eq!(codec.decode(&mut buf).unwrap_err(), err);
        // A huge file_size does not allocate.
        let mut codec = JsonHeaderCodec::new();
        let mut buf = BytesMut::from(&frame_bytes(br#"{"file_size":99999999999999}"#, b"")[..]);
        assert!(codec.decode(&mut buf).is_err());
        assert!(buf.capacity() < 256);
    }

    #[test]
    fn truncated_stream() {
        let bytes = frame_bytes(br#"{"file_size":10}"#, b"abc");
        let err = first_error(&bytes);
        assert_eq!(
            err.to_string(),
            "stream ended inside a frame at offset 0: 23 of 30 bytes"
        );
        let err = first_error(&bytes[..10]);
        assert_eq!(
            err,
            FrameError::Truncated {
                offset: 0,
                have: 10,
                expected: None
            }
        );
    }

    #[test]
    fn hint_walks_length_header_body() {
        let codec = JsonHeaderCodec::new();
        let bytes = frame_bytes(br#"{"file_size":10}"#, &[7; 10]);
        assert_eq!(codec.exact_read_hint(&bytes[..0]), 4);
        assert_eq!(codec.exact_read_hint(&bytes[..3]), 1);
        assert_eq!(codec.exact_read_hint(&bytes[..4]), 16);
        assert_eq!(codec.exact_read_hint(&bytes[..10]), 10);
        assert_eq!(codec.exact_read_hint(&bytes[..20]), 10);
        assert_eq!(codec.exact_read_hint(&bytes[..25]), 5);
        assert_eq!(codec.exact_read_hint(&bytes), 0);
        assert_eq!(codec.exact_read_hint(&frame_bytes(b"nope", b"")), 1);
    }
}
