//! Length-prefixed framing: a fixed-width integer giving the payload length,
//! then the payload.
//!
//! ```text
//!  frame offset  0                  W                           W + N
//!                +------------------+---------------------------+
//!                | length (W bytes) | payload (N bytes)         |  next frame...
//!                +------------------+---------------------------+
//!
//!  W = 1 (u8), 2 (u16be/u16le), 4 (u32*/i32*) or 8 (u64*)
//!  length = N        by default
//!  length = W + N    with length_includes_header (so a length < W is an error)
//!
//!  u32le, 5-byte payload "hello":   05 00 00 00 68 65 6c 6c 6f
//!  u16be, 5-byte payload "hello":   00 05 68 65 6c 6c 6f
//! ```
//!
//! The prefix stays in the buffer until the whole frame has arrived, so the
//! buffer always starts at the current frame's first byte; that is what lets
//! [`LengthPrefixedCodec::exact_read_hint`] work from the buffer alone. The
//! parsed length is kept in the codec so that a body arriving in many small
//! reads costs one comparison per read, not a re-parse.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{clamp_limit, FrameError, DEFAULT_MAX_FRAME};

/// Width, byte order and signedness of a length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LengthPrefix {
    /// One byte, 0..=255.
    U8,
    /// Two bytes, big-endian (network order).
    U16Be,
    /// Two bytes, little-endian.
    U16Le,
    /// Four bytes, big-endian (network order).
    U32Be,
    /// Four bytes, little-endian.
    U32Le,
    /// Four bytes, little-endian, signed: a negative length is an error (the
    /// shape of C and Python `struct.pack("<i", n)` senders).
    I32Le,
    /// Four bytes, big-endian, signed: a negative length is an error (the
    /// shape of Java `DataOutputStream.writeInt` senders).
    I32Be,
    /// Eight bytes, big-endian.
    U64Be,
    /// Eight bytes, little-endian.
    U64Le,
}

impl LengthPrefix {
    /// Every prefix, in scenario-name order.
    pub const ALL: [LengthPrefix; 9] = [
        LengthPrefix::U8,
        LengthPrefix::U16Be,
        LengthPrefix::U16Le,
        LengthPrefix::U32Be,
        LengthPrefix::U32Le,
        LengthPrefix::I32Le,
        LengthPrefix::I32Be,
        LengthPrefix::U64Be,
        LengthPrefix::U64Le,
    ];

    /// Width of the prefix in bytes.
    pub const fn width(self) -> usize {
        match self {
            LengthPrefix::U8 => 1,
            LengthPrefix::U16Be | LengthPrefix::U16Le => 2,
            LengthPrefix::U32Be
            | LengthPrefix::U32Le
            | LengthPrefix::I32Le
            | LengthPrefix::I32Be => 4,
            LengthPrefix::U64Be | LengthPrefix::U64Le => 8,
        }
    }

    /// The scenario-file name: "u8", "u16be", ...
    pub const fn name(self) -> &'static str {
        match self {
            LengthPrefix::U8 => "u8",
            LengthPrefix::U16Be => "u16be",
            LengthPrefix::U16Le => "u16le",
            LengthPrefix::U32Be => "u32be",
            LengthPrefix::U32Le => "u32le",
            LengthPrefix::I32Le => "i32le",
            LengthPrefix::I32Be => "i32be",
            LengthPrefix::U64Be => "u64be",
            LengthPrefix::U64Le => "u64le",
        }
    }

    /// The largest length the prefix can hold (for signed prefixes, the
    /// largest non-negative one).
    pub const fn max_value(self) -> u64 {
        match self {
            LengthPrefix::U8 => u8::MAX as u64,
            LengthPrefix::U16Be | LengthPrefix::U16Le => u16::MAX as u64,
            LengthPrefix::U32Be | LengthPrefix::U32Le => u32::MAX as u64,
            LengthPrefix::I32Le | LengthPrefix::I32Be => i32::MAX as u64,
            LengthPrefix::U64Be | LengthPrefix::U64Le => u64::MAX,
        }
    }

    /// "u32le length" etc., for error messages.
    const fn length_label(self) -> &'static str {
        match self {
            LengthPrefix::U8 => "u8 length",
            LengthPrefix::U16Be => "u16be length",
            LengthPrefix::U16Le => "u16le length",
            LengthPrefix::U32Be => "u32be length",
            LengthPrefix::U32Le => "u32le length",
            LengthPrefix::I32Le => "i32le length",
            LengthPrefix::I32Be => "i32be length",
            LengthPrefix::U64Be => "u64be length",
            LengthPrefix::U64Le => "u64le length",
        }
    }

    /// "what a u8 length prefix can express" etc., for encoding errors.
    const fn capacity_label(self) -> &'static str {
        match self {
            LengthPrefix::U8 => "what a u8 length prefix can express",
            LengthPrefix::U16Be => "what a u16be length prefix can express",
            LengthPrefix::U16Le => "what a u16le length prefix can express",
            LengthPrefix::U32Be => "what a u32be length prefix can express",
            LengthPrefix::U32Le => "what a u32le length prefix can express",
            LengthPrefix::I32Le => "what an i32le length prefix can express",
            LengthPrefix::I32Be => "what an i32be length prefix can express",
            LengthPrefix::U64Be => "what a u64be length prefix can express",
            LengthPrefix::U64Le => "what a u64le length prefix can express",
        }
    }

    /// Reads the prefix from the first `width()` bytes of `head` (which must
    /// hold at least that many). A negative signed value comes back as `Err`.
    fn read(self, head: &[u8]) -> Result<u64, i64> {
        fn arr<const N: usize>(head: &[u8]) -> [u8; N] {
            let mut out = [0; N];
            out.copy_from_slice(&head[..N]);
            out
        }
        Ok(match self {
            LengthPrefix::U8 => u64::from(head[0]),
            LengthPrefix::U16Be => u64::from(u16::from_be_bytes(arr(head))),
            LengthPrefix::U16Le => u64::from(u16::from_le_bytes(arr(head))),
            LengthPrefix::U32Be => u64::from(u32::from_be_bytes(arr(head))),
            LengthPrefix::U32Le => u64::from(u32::from_le_bytes(arr(head))),
            LengthPrefix::I32Le | LengthPrefix::I32Be => {
                let v = if self == LengthPrefix::I32Le {
                    i32::from_le_bytes(arr(head))
                } else {
                    i32::from_be_bytes(arr(head))
                };
                return u64::try_from(v).map_err(|_| i64::from(v));
            }
            LengthPrefix::U64Be => u64::from_be_bytes(arr(head)),
            LengthPrefix::U64Le => u64::from_le_bytes(arr(head)),
        })
    }

    /// Appends `value` (already checked against `max_value`) in this format.
    fn write(self, value: u64, dst: &mut BytesMut) {
        // The casts cannot truncate: the caller checked value <= max_value().
        match self {
            LengthPrefix::U8 => dst.put_u8(value as u8),
            LengthPrefix::U16Be => dst.put_u16(value as u16),
            LengthPrefix::U16Le => dst.put_u16_le(value as u16),
            LengthPrefix::U32Be => dst.put_u32(value as u32),
            LengthPrefix::U32Le => dst.put_u32_le(value as u32),
            LengthPrefix::I32Le => dst.put_i32_le(value as i32),
            LengthPrefix::I32Be => dst.put_i32(value as i32),
            LengthPrefix::U64Be => dst.put_u64(value),
            LengthPrefix::U64Le => dst.put_u64_le(value),
        }
    }
}

/// Decoder and encoder for one [`LengthPrefix`] framing.
///
/// Decoding yields each payload (without its prefix) as [`Bytes`]. Memory is
/// bounded by what has arrived plus `max_frame`: a claimed length above
/// `max_frame` is an error the moment the prefix is complete, and the buffer
/// is only ever grown towards a length that passed that check.
///
/// Every decoding error is fatal: afterwards `decode` keeps returning it.
#[derive(Debug, Clone)]
pub struct LengthPrefixedCodec {
    prefix: LengthPrefix,
    max_frame: usize,
    includes_header: bool,
    /// Payload length of the frame at the start of the buffer, once its prefix
    /// has been parsed and checked and while its body is still arriving.
    pending: Option<usize>,
    /// Bytes removed from the input so far: the offset of the current frame.
    consumed: u64,
    failed: Option<FrameError>,
    /// Bytes produced by the encoder so far.
    encoded: u64,
}

impl LengthPrefixedCodec {
    /// A codec for `prefix` with `max_frame` 8 MiB and the length counting
    /// the payload only.
    pub fn new(prefix: LengthPrefix) -> Self {
        LengthPrefixedCodec {
            prefix,
            max_frame: DEFAULT_MAX_FRAME,
            includes_header: false,
            pending: None,
            consumed: 0,
            failed: None,
            encoded: 0,
        }
    }

    /// Sets the largest payload accepted (decoding) or produced (encoding).
    pub fn with_max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = clamp_limit(max_frame);
        self
    }

    /// Whether the length on the wire counts the prefix's own bytes too.
    pub fn with_length_includes_header(mut self, includes_header: bool) -> Self {
        self.includes_header = includes_header;
        self
    }

    /// The prefix format.
    pub fn prefix(&self) -> LengthPrefix {
        self.prefix
    }

    /// The largest payload accepted.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Whether the length counts the prefix too.
    pub fn length_includes_header(&self) -> bool {
        self.includes_header
    }

    /// Absolute input offset of the next byte the decoder has not consumed
    /// (the start of the frame being decoded).
    pub fn stream_offset(&self) -> u64 {
        self.consumed
    }

    /// How many bytes may be read now without reading past the current frame,
    /// given the frame's bytes buffered so far (see
    /// [`FramingConfig::exact_read_hint`](super::FramingConfig::exact_read_hint)).
    /// 0 when `buffered` already holds the whole frame; 1 when the prefix is
    /// invalid (decoding will report why).
    pub fn exact_read_hint(&self, buffered: &[u8]) -> usize {
        let width = self.prefix.width();
        if buffered.len() < width {
            return width - buffered.len();
        }
        match self.payload_len(buffered, 0) {
            Ok(len) => (width + len).saturating_sub(buffered.len()),
            Err(_) => 1,
        }
    }

    /// Parses and checks the prefix at the start of `head`.
    fn payload_len(&self, head: &[u8], offset: u64) -> Result<usize, FrameError> {
        let what = self.prefix.length_label();
        let wire = self
            .prefix
            .read(head)
            .map_err(|value| FrameError::NegativeLength {
                offset,
                what,
                value,
            })?;
        let payload = if self.includes_header {
            let width = self.prefix.width() as u64;
            wire.checked_sub(width)
                .ok_or(FrameError::LengthBelowHeader {
                    offset,
                    what,
                    length: wire,
                    header_len: width,
                })?
        } else {
            wire
        };
        if payload > self.max_frame as u64 {
            return Err(FrameError::TooLarge {
                offset,
                what,
                length: wire,
                limit: "max_frame",
                max: self.max_frame as u64,
            });
        }
        // Fits: payload <= max_frame, a usize.
        Ok(payload as usize)
    }

    /// Appends one frame for `payload` to `dst`; `offset` only labels errors.
    pub(crate) fn encode_at(
        &self,
        payload: &[u8],
        offset: u64,
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let len = payload.len() as u64;
        if payload.len() > self.max_frame {
            return Err(FrameError::PayloadTooLarge {
                offset,
                what: "payload",
                len,
                limit: "max_frame",
                max: self.max_frame as u64,
            });
        }
        let width = self.prefix.width();
        let overhead = if self.includes_header {
            width as u64
        } else {
            0
        };
        let max_payload = self.prefix.max_value().saturating_sub(overhead);
        if len > max_payload {
            return Err(FrameError::PayloadTooLarge {
                offset,
                what: "payload",
                len,
                limit: self.prefix.capacity_label(),
                max: max_payload,
            });
        }
        dst.reserve(width + payload.len());
        self.prefix.write(len + overhead, dst);
        dst.put_slice(payload);
        Ok(())
    }

    /// Parses the prefix at the start of `src` once it is complete.
    #[inline]
    fn decode_prefix(&mut self, src: &[u8]) -> Result<Option<usize>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if src.len() < self.prefix.width() {
            return Ok(None);
        }
        match self.payload_len(src, self.consumed) {
            Ok(len) => Ok(Some(len)),
            Err(err) => Err(self.fail(err)),
        }
    }

    /// Records a checked length whose body has not fully arrived and makes
    /// room for it: bounded by max_frame + width, as the length passed the
    /// check.
    #[inline(never)]
    fn await_body(&mut self, src: &mut BytesMut, len: usize, total: usize) {
        self.pending = Some(len);
        src.reserve(total - src.len());
    }

    #[cold]
    fn fail(&mut self, err: FrameError) -> FrameError {
        self.failed = Some(err.clone());
        err
    }
}

impl Decoder for LengthPrefixedCodec {
    type Item = Bytes;
    type Error = FrameError;

    // Inlined so that a read loop's per-call cost while a body trickles in is
    // one comparison; the prefix parsing and error paths stay out of line.
    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let len = match self.pending {
            Some(len) => len,
            None => match self.decode_prefix(src)? {
                Some(len) => len,
                None => return Ok(None),
            },
        };
        let width = self.prefix.width();
        // Cannot overflow: len <= max_frame, which clamp_limit keeps far
        // below usize::MAX.
        let total = width + len;
        if src.len() < total {
            if self.pending.is_none() {
                self.await_body(src, len, total);
            }
            return Ok(None);
        }
        self.pending = None;
        self.consumed += total as u64;
        src.advance(width);
        Ok(Some(src.split_to(len).freeze()))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        if src.is_empty() {
            return Ok(None);
        }
        let err = FrameError::Truncated {
            offset: self.consumed,
            have: src.len() as u64,
            expected: self.pending.map(|len| (self.prefix.width() + len) as u64),
        };
        // The partial frame is dropped so that a caller polling again sees a
        // clean end of stream rather than the same error forever.
        self.consumed += src.len() as u64;
        src.clear();
        self.pending = None;
        Err(err)
    }
}

impl Encoder<&[u8]> for LengthPrefixedCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_at(payload, self.encoded, dst)?;
        self.encoded += (self.prefix.width() + payload.len()) as u64;
        Ok(())
    }
}

impl Encoder<Bytes> for LengthPrefixedCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        Encoder::<&[u8]>::encode(self, &payload, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LengthPrefixedCodec, bytes: &[u8]) -> Vec<Result<Bytes, FrameError>> {
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

    fn encode(codec: &mut LengthPrefixedCodec, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut dst = BytesMut::new();
        codec.encode(payload, &mut dst)?;
        Ok(dst.to_vec())
    }

    #[test]
    fn layouts_of_every_prefix() {
        let cases: [(LengthPrefix, &[u8]); 9] = [
            (LengthPrefix::U8, &[0x05]),
            (LengthPrefix::U16Be, &[0x00, 0x05]),
            (LengthPrefix::U16Le, &[0x05, 0x00]),
            (LengthPrefix::U32Be, &[0x00, 0x00, 0x00, 0x05]),
            (LengthPrefix::U32Le, &[0x05, 0x00, 0x00, 0x00]),
            (LengthPrefix::I32Le, &[0x05, 0x00, 0x00, 0x00]),
            (LengthPrefix::I32Be, &[0x00, 0x00, 0x00, 0x05]),
            (LengthPrefix::U64Be, &[0, 0, 0, 0, 0, 0, 0, 0x05]),
            (LengthPrefix::U64Le, &[0x05, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (prefix, head) in cases {
            let mut wire = head.to_vec();
            wire.extend_from_slice(b"hello");
            let mut codec = LengthPrefixedCodec::new(prefix);
            assert_eq!(encode(&mut codec, b"hello").unwrap(), wire, "{prefix:?}");
            let frames = decode_all(&mut LengthPrefixedCodec::new(prefix), &wire);
            assert_eq!(frames, vec![Ok(Bytes::from_static(b"hello"))], "{prefix:?}");
        }
    }

    #[test]
    fn u32le_hello_literal() {
        let wire = [0x05, 0x00, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f];
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U32Le);
        assert_eq!(encode(&mut codec, b"hello").unwrap(), wire);
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U32Le);
        assert_eq!(
            decode_all(&mut codec, &wire),
            vec![Ok(Bytes::from_static(b"hello"))]
        );
    }

    #[test]
    fn empty_payloads_are_frames() {
        let wire = [0x00, 0x00, 0x00, 0x02, b'h', b'i'];
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U16Be);
        assert_eq!(
            decode_all(&mut codec, &wire),
            vec![Ok(Bytes::new()), Ok(Bytes::from_static(b"hi"))]
        );
        assert_eq!(codec.stream_offset(), 6);
    }

    #[test]
    fn length_includes_header() {
        // u16be length 7 = 2-byte prefix + "hello".
        let wire = [0x00, 0x07, b'h', b'e', b'l', b'l', b'o'];
        let mut codec =
            LengthPrefixedCodec::new(LengthPrefix::U16Be).with_length_includes_header(true);
        assert_eq!(encode(&mut codec, b"hello").unwrap(), wire);
        let mut codec =
            LengthPrefixedCodec::new(LengthPrefix::U16Be).with_length_includes_header(true);
        assert_eq!(
            decode_all(&mut codec, &wire),
            vec![Ok(Bytes::from_static(b"hello"))]
        );
        // Exactly the header: an empty payload.
        let mut codec =
            LengthPrefixedCodec::new(LengthPrefix::U16Be).with_length_includes_header(true);
        assert_eq!(
            decode_all(&mut codec, &[0x00, 0x02]),
            vec![Ok(Bytes::new())]
        );
    }

    #[test]
    fn length_below_header_is_an_error() {
        let mut codec =
            LengthPrefixedCodec::new(LengthPrefix::U32Be).with_length_includes_header(true);
        let err = decode_all(&mut codec, &[0, 0, 0, 4, 0, 0, 0, 3])
            .pop()
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err,
            FrameError::LengthBelowHeader {
                offset: 4,
                what: "u32be length",
                length: 3,
                header_len: 4
            }
        );
        assert_eq!(
            err.to_string(),
            "frame at offset 4: u32be length 3 is smaller than its own 4-byte prefix \
             (length_includes_header is set)"
        );
    }

    #[test]
    fn negative_signed_length_is_an_error_not_an_allocation() {
        for (prefix, head) in [
            (LengthPrefix::I32Le, [0xff, 0xff, 0xff, 0xff]),
            (LengthPrefix::I32Be, [0x80, 0x00, 0x00, 0x00]),
        ] {
            let mut codec = LengthPrefixedCodec::new(prefix);
            let mut buf = BytesMut::from(&head[..]);
            let err = codec.decode(&mut buf).unwrap_err();
            assert_eq!(err.offset(), 0);
            assert!(matches!(err, FrameError::NegativeLength { .. }), "{err:?}");
            assert!(buf.capacity() < 64, "grew to {}", buf.capacity());
        }
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::I32Le);
        let err = codec
            .decode(&mut BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame at offset 0: i32le length -1 is negative"
        );
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::I32Be);
        let err = codec
            .decode(&mut BytesMut::from(&[0x80, 0, 0, 0][..]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame at offset 0: i32be length -2147483648 is negative"
        );
    }

    #[test]
    fn over_max_is_reported_as_soon_as_the_prefix_arrives() {
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U32Le);
        // One good empty frame, then a prefix claiming 4 GiB and no body.
        let mut buf = BytesMut::from(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Bytes::new()));
        let err = codec.decode(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame at offset 4: u32le length 4294967295 exceeds max_frame 8388608"
        );
        assert_eq!(err.offset(), 4);
        assert!(buf.capacity() < 64, "grew to {}", buf.capacity());
        // Fatal: the same error again, whatever arrives next.
        buf.extend_from_slice(b"more");
        assert_eq!(codec.decode(&mut buf).unwrap_err(), err);
        assert_eq!(codec.decode_eof(&mut buf).unwrap_err(), err);
    }

    #[test]
    fn max_frame_boundary() {
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U8).with_max_frame(3);
        assert_eq!(
            decode_all(&mut codec, &[3, 1, 2, 3]),
            vec![Ok(Bytes::from_static(&[1, 2, 3]))]
        );
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U8).with_max_frame(3);
        let err = decode_all(&mut codec, &[4]).pop().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame at offset 0: u8 length 4 exceeds max_frame 3"
        );
        // With the header counted, the limit still applies to the payload.
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U8)
            .with_max_frame(3)
            .with_length_includes_header(true);
        assert_eq!(
            decode_all(&mut codec, &[4, 1, 2, 3]),
            vec![Ok(Bytes::from_static(&[1, 2, 3]))]
        );
    }

    #[test]
    fn buffer_growth_is_bounded_by_max_frame() {
        // A u64 prefix claiming 2^62 bytes with max_frame 1 KiB: no allocation.
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U64Be).with_max_frame(1024);
        let mut buf = BytesMut::from(&(1u64 << 62).to_be_bytes()[..]);
        assert!(codec.decode(&mut buf).is_err());
        assert!(buf.capacity() < 64);
        // A legal claim reserves at most prefix + max_frame.
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U64Be).with_max_frame(1024);
        let mut buf = BytesMut::from(&1000u64.to_be_bytes()[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() >= 1008 && buf.capacity() <= 2 * (1024 + 8));
    }

    #[test]
    fn truncated_stream_errors() {
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U32Be);
        let res = decode_all(&mut codec, &[0, 0, 0, 1, b'x', 0, 0, 0, 10, b'a', b'b']);
        assert_eq!(res[0], Ok(Bytes::from_static(b"x")));
        let err = res[1].clone().unwrap_err();
        assert_eq!(
            err,
            FrameError::Truncated {
                offset: 5,
                have: 6,
                expected: Some(14)
            }
        );
        assert_eq!(
            err.to_string(),
            "stream ended inside a frame at offset 5: 6 of 14 bytes"
        );
        // Inside the prefix itself the total is not known yet.
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U32Be);
        let err = decode_all(&mut codec, &[0, 0]).pop().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream ended inside a frame at offset 0: 2 bytes, before its length was known"
        );
        // After the error the leftover is gone: a clean end of stream.
        assert_eq!(codec.decode_eof(&mut BytesMut::new()), Ok(None));
    }

    #[test]
    fn encoding_limits() {
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U8);
        let err = encode(&mut codec, &[0; 256]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot encode frame at offset 0: payload of 256 bytes exceeds what a u8 length \
             prefix can express (255 bytes)"
        );
        let mut codec =
            LengthPrefixedCodec::new(LengthPrefix::U8).with_length_includes_header(true);
        assert!(encode(&mut codec, &[0; 254]).is_ok());
        let err = encode(&mut codec, &[0; 255]).unwrap_err();
        // The failed frame would have started after the 255 bytes already encoded.
        assert_eq!(
            err,
            FrameError::PayloadTooLarge {
                offset: 255,
                what: "payload",
                len: 255,
                limit: "what a u8 length prefix can express",
                max: 254
            }
        );
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::U32Be).with_max_frame(10);
        let err = encode(&mut codec, &[0; 11]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot encode frame at offset 0: payload of 11 bytes exceeds max_frame (10 bytes)"
        );
        let mut codec = LengthPrefixedCodec::new(LengthPrefix::I32Le);
        let mut dst = BytesMut::new();
        Encoder::<Bytes>::encode(&mut codec, Bytes::from_static(b"ab"), &mut dst).unwrap();
        assert_eq!(&dst[..], &[2, 0, 0, 0, b'a', b'b']);
    }

    #[test]
    fn hint_walks_prefix_then_body() {
        let codec = LengthPrefixedCodec::new(LengthPrefix::U32Be);
        assert_eq!(codec.exact_read_hint(&[]), 4);
        assert_eq!(codec.exact_read_hint(&[0, 0]), 2);
        assert_eq!(codec.exact_read_hint(&[0, 0, 0, 5]), 5);
        assert_eq!(codec.exact_read_hint(&[0, 0, 0, 5, 1, 2]), 3);
        assert_eq!(codec.exact_read_hint(&[0, 0, 0, 5, 1, 2, 3, 4, 5]), 0);
        assert_eq!(codec.exact_read_hint(&[0xff, 0xff, 0xff, 0xff]), 1);
    }
}
