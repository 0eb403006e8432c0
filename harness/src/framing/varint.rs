//! Varint-delimited framing: an unsigned LEB128 length, then the payload.
//! This is how protobuf's `writeDelimitedTo` / `parseDelimitedFrom` frame
//! messages on a stream.
//!
//! ```text
//!  frame offset  0                        V                     V + N
//!                +------------------------+---------------------+
//!                | N as LEB128 (V bytes)  | payload (N bytes)   |  next frame...
//!                +------------------------+---------------------+
//!
//!  each length byte:  bit 7 = "more bytes follow", bits 0-6 = 7 bits of N,
//!                     least significant group first; 1 <= V <= 10
//!
//!  N = 5:     05                       N = 300:   ac 02
//!  N = 0:     00                       0x80 0x00: rejected, overlong (0 is 00)
//! ```
//!
//! Only the minimal encoding is accepted (a multi-byte varint may not end in
//! a zero group), so every length has exactly one spelling; a test harness
//! would rather flag a peer's sloppy encoder than silently accept it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{clamp_limit, FrameError, VarintProblem, DEFAULT_MAX_FRAME};

/// The longest LEB128 encoding of a `u64`.
pub const MAX_VARINT_LEN: usize = 10;

/// Parses a LEB128 varint at the start of `buf`: `Ok(Some((value, len)))`
/// when complete, `Ok(None)` when more bytes are needed.
pub fn parse_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, VarintProblem> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        if i == MAX_VARINT_LEN - 1 {
            // Nine bytes carried 63 bits; the tenth may only hold bit 63.
            if byte & 0x80 != 0 {
                return Err(VarintProblem::TooLong);
            }
            if byte > 1 {
                return Err(VarintProblem::Overflow);
            }
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(VarintProblem::Overlong);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Ok(None)
}

/// Appends `value` as a minimal LEB128 varint.
pub fn put_varint(mut value: u64, dst: &mut BytesMut) {
    while value >= 0x80 {
        dst.put_u8(value as u8 | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

/// Number of bytes [`put_varint`] writes for `value`.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Decoder and encoder for varint-delimited frames.
///
/// Decoding yields payloads as [`Bytes`]. A length above `max_frame` is an
/// error as soon as the varint is complete; every decoding error is fatal
/// (afterwards `decode` keeps returning it).
#[derive(Debug, Clone)]
pub struct VarintCodec {
    max_frame: usize,
    /// (varint length, payload length) of the frame at the start of the
    /// buffer once its prefix is parsed, while the body is still arriving.
    pending: Option<(usize, usize)>,
    consumed: u64,
    failed: Option<FrameError>,
    encoded: u64,
}

impl Default for VarintCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl VarintCodec {
    /// A codec with `max_frame` 8 MiB.
    pub fn new() -> Self {
        VarintCodec {
            max_frame: DEFAULT_MAX_FRAME,
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

    /// The largest payload accepted.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Absolute input offset of the frame being decoded.
    pub fn stream_offset(&self) -> u64 {
        self.consumed
    }

    /// How many bytes may be read now without reading past the current frame:
    /// 1 while the varint is incomplete (its length is unknowable until its
    /// last byte), then what is left of the body; 0 when `buffered` holds the
    /// whole frame; 1 when the prefix is invalid (decoding will say why).
    pub fn exact_read_hint(&self, buffered: &[u8]) -> usize {
        match self.prefix(buffered, 0) {
            Ok(Some((vlen, len))) => (vlen + len).saturating_sub(buffered.len()),
            Ok(None) | Err(_) => 1,
        }
    }

    /// Parses and checks the varint at the start of `buf`: (varint length,
    /// payload length).
    fn prefix(&self, buf: &[u8], offset: u64) -> Result<Option<(usize, usize)>, FrameError> {
        // Fast path: most frames are shorter than 128 bytes or already have
        // their whole varint buffered.
        let (value, vlen) = match buf.first() {
            Some(&b) if b < 0x80 => (u64::from(b), 1),
            _ => match parse_varint(buf) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(None),
                Err(problem) => return Err(FrameError::BadVarint { offset, problem }),
            },
        };
        if value > self.max_frame as u64 {
            return Err(FrameError::TooLarge {
                offset,
                what: "varint length",
                length: value,
                limit: "max_frame",
                max: self.max_frame as u64,
            });
        }
        Ok(Some((vlen, value as usize)))
    }

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
        dst.reserve(varint_len(len) + payload.len());
        put_varint(len, dst);
        dst.put_slice(payload);
        Ok(())
    }
}

impl Decoder for VarintCodec {
    type Item = Bytes;
    type Error = FrameError;

    // Inlined for the same reason as the length-prefixed decoder: a body
    // arriving in small reads should cost one comparison per read.
    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let (vlen, len) = match self.pending {
            Some(parsed) => parsed,
            None => {
                if let Some(err) = &self.failed {
                    return Err(err.clone());
                }
                match self.prefix(src, self.consumed) {
                    Ok(Some(parsed)) => parsed,
                    Ok(None) => return Ok(None),
                    Err(err) => {
                        self.failed = Some(err.clone());
                        return Err(err);
                    }
                }
            }
        };
        let total = vlen + len;
        if src.len() < total {
            if self.pending.is_none() {
                self.pending = Some((vlen, len));
                // Bounded by max_frame + 10: the length passed the check.
                src.reserve(total - src.len());
            }
            return Ok(None);
        }
        self.pending = None;
        self.consumed += total as u64;
        src.advance(vlen);
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
            expected: self.pending.map(|(vlen, len)| (vlen + len) as u64),
        };
        self.consumed += src.len() as u64;
        src.clear();
        self.pending = None;
        Err(err)
    }
}

impl Encoder<&[u8]> for VarintCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_at(payload, self.encoded, dst)?;
        self.encoded += (varint_len(payload.len() as u64) + payload.len()) as u64;
        Ok(())
    }
}

impl Encoder<Bytes> for VarintCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        Encoder::<&[u8]>::encode(self, &payload, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) -> Vec<Result<Bytes, FrameError>> {
        let mut codec = VarintCodec::new();
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

    #[test]
    fn literal_layouts() {
        let mut dst = BytesMut::new();
        let mut codec = VarintCodec::new();
        codec.encode(&b"hello"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], &[0x05, b'h', b'e', b'l', b'l', b'o']);

        let payload = vec![7u8; 300];
        let mut dst = BytesMut::new();
        codec.encode(&payload[..], &mut dst).unwrap();
        assert_eq!(&dst[..2], &[0xac, 0x02]);
        assert_eq!(dst.len(), 302);
        assert_eq!(decode_all(&dst), vec![Ok(Bytes::from(payload))]);

        assert_eq!(
            decode_all(&[0x00, 0x02, b'h', b'i']),
            vec![Ok(Bytes::new()), Ok(Bytes::from_static(b"hi"))]
        );
    }

    #[test]
    fn parse_edges() {
        assert_eq!(parse_varint(&[]), Ok(None));
        assert_eq!(parse_varint(&[0x80]), Ok(None));
        assert_eq!(parse_varint(&[0x7f]), Ok(Some((127, 1))));
        assert_eq!(parse_varint(&[0x80, 0x01]), Ok(Some((128, 2))));
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(parse_varint(&max), Ok(Some((u64::MAX, 10))));
        assert_eq!(parse_varint(&[0x80, 0x00]), Err(VarintProblem::Overlong));
        assert_eq!(
            parse_varint(&[0xff, 0x80, 0x00]),
            Err(VarintProblem::Overlong)
        );
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert_eq!(parse_varint(&overflow), Err(VarintProblem::Overflow));
        // Ten continuation bytes: too long, known without waiting for an 11th.
        assert_eq!(parse_varint(&[0x80; 10]), Err(VarintProblem::TooLong));
        assert_eq!(parse_varint(&[0x80; 9]), Ok(None));
    }

    #[test]
    fn overlong_varint_is_an_error_with_offset() {
        let res = decode_all(&[0x01, b'a', 0x80, 0x00]);
        assert_eq!(res[0], Ok(Bytes::from_static(b"a")));
        let err = res[1].clone().unwrap_err();
        assert_eq!(
            err,
            FrameError::BadVarint {
                offset: 2,
                problem: VarintProblem::Overlong
            }
        );
        assert_eq!(
            err.to_string(),
            "frame at offset 2: varint length prefix is overlong (a shorter encoding of the \
             same value exists)"
        );
    }

    #[test]
    fn eleven_byte_varint_is_an_error() {
        let mut bytes = vec![0x80; 10];
        bytes.push(0x01);
        let err = decode_all(&bytes).pop().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame at offset 0: varint length prefix is longer than 10 bytes"
        );
        let mut overflow = vec![0xff; 9];
        overflow.push(0x7f);
        let err = decode_all(&overflow).pop().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame at offset 0: varint length prefix overflows u64"
        );
    }

    #[test]
    fn over_max_frame_is_reported_before_the_body() {
        let mut codec = VarintCodec::new().with_max_frame(100);
        let mut buf = BytesMut::from(&[0xe5, 0x8e, 0x26][..]); // 624485
        let err = codec.decode(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame at offset 0: varint length 624485 exceeds max_frame 100"
        );
        assert!(buf.capacity() < 64);
        assert_eq!(codec.decode(&mut buf).unwrap_err(), err);
    }

    #[test]
    fn truncated_stream() {
        assert_eq!(
            decode_all(&[0x05, b'a', b'b'])
                .pop()
                .unwrap()
                .unwrap_err()
                .to_string(),
            "stream ended inside a frame at offset 0: 3 of 6 bytes"
        );
        assert_eq!(
            decode_all(&[0x80]).pop().unwrap().unwrap_err(),
            FrameError::Truncated {
                offset: 0,
                have: 1,
                expected: None
            }
        );
    }

    #[test]
    fn encode_over_max_frame() {
        let mut codec = VarintCodec::new().with_max_frame(3);
        let err = codec
            .encode(&b"four"[..], &mut BytesMut::new())
            .unwrap_err();
        assert_eq!(err.offset(), 0);
        assert!(matches!(
            err,
            FrameError::PayloadTooLarge { len: 4, max: 3, .. }
        ));
    }

    #[test]
    fn hint() {
        let codec = VarintCodec::new();
        assert_eq!(codec.exact_read_hint(&[]), 1);
        assert_eq!(codec.exact_read_hint(&[0xac]), 1);
        assert_eq!(codec.exact_read_hint(&[0xac, 0x02]), 300);
        assert_eq!(codec.exact_read_hint(&[0x02, 1]), 1);
        assert_eq!(codec.exact_read_hint(&[0x02, 1, 2]), 0);
    }

    proptest! {
        #[test]
        fn varint_roundtrip(value: u64) {
            let mut dst = BytesMut::new();
            put_varint(value, &mut dst);
            prop_assert_eq!(dst.len(), varint_len(value));
            prop_assert_eq!(parse_varint(&dst), Ok(Some((value, dst.len()))));
            // Every proper prefix is incomplete, never an error.
            for cut in 0..dst.len() {
                prop_assert_eq!(parse_varint(&dst[..cut]), Ok(None));
            }
        }
    }
}
