//! Line framing: payloads separated by a terminator, LF or CRLF.
//!
//! ```text
//!  line:  +------------------------------+------+----+
//!         | payload (any bytes but LF)   | [CR] | LF |   a CR just before the LF
//!         +------------------------------+------+----+   is dropped from the payload
//!
//!  crlf:  +------------------------------+----+----+
//!         | payload (no CR LF pair)      | CR | LF |   a lone LF or lone CR is
//!         +------------------------------+----+----+   part of the payload
//!
//!  line, "hi\r\nyo\n"  ->  "hi", "yo"
//!  crlf, "a\nb\r\n"    ->  "a\nb"
//! ```
//!
//! `max_line` bounds the payload (terminator excluded). Recovery after an
//! over-long line is defined so that a test can go on after one bad line:
//!
//! 1. as soon as the buffered line is certain to exceed `max_line`, `decode`
//!    returns [`FrameError::LineTooLong`] once, for that line;
//! 2. the codec then discards bytes up to and including the next terminator,
//!    holding none of them (at most one CR, for crlf);
//! 3. decoding resumes with the line after it, at the right stream offset.
//!
//! The codec remembers how far it has searched for a terminator, so a long
//! line arriving in many small reads is scanned once, not once per read.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{clamp_limit, FrameError, DEFAULT_MAX_LINE};

/// Which byte sequence ends a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Terminator {
    /// `\n`; a `\r` right before it is stripped from the payload.
    Lf,
    /// `\r\n`; a lone `\n` is payload.
    CrLf,
}

impl Terminator {
    /// "LF" or "CRLF", for messages.
    pub const fn label(self) -> &'static str {
        match self {
            Terminator::Lf => "LF",
            Terminator::CrLf => "CRLF",
        }
    }

    /// The terminator's bytes.
    pub const fn bytes(self) -> &'static [u8] {
        match self {
            Terminator::Lf => b"\n",
            Terminator::CrLf => b"\r\n",
        }
    }
}

/// Position of the first `\n` in `hay`.
///
/// Long haystacks go to the C library's `memchr`, which is vectorised and
/// tuned per CPU; the call costs a few nanoseconds, so short ones (the common
/// case when a line trickles in a few bytes per read) are searched here, two
/// 8-byte words per step.
#[inline]
pub(crate) fn find_lf(hay: &[u8]) -> Option<usize> {
    #[cfg(unix)]
    if hay.len() >= 64 {
        // SAFETY: the pointer and length describe `hay`, a live, initialised
        // slice; memchr reads only those bytes and returns a pointer into them
        // or null.
        let found = unsafe { libc::memchr(hay.as_ptr().cast(), i32::from(b'\n'), hay.len()) };
        return if found.is_null() {
            None
        } else {
            Some(found as usize - hay.as_ptr() as usize)
        };
    }
    find_lf_words(hay)
}

/// Word-at-a-time search: XOR turns LF bytes into zero bytes, and
/// `(x - 0x01..01) & !x & 0x80..80` flags zero bytes; the lowest flag is
/// exact (borrows only spill upwards), hence the little-endian loads.
#[inline]
fn find_lf_words(hay: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let zero_flags = |word: &[u8]| {
        let x = u64::from_le_bytes(word.try_into().expect("8-byte word")) ^ LFS;
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut pairs = hay.chunks_exact(16);
    let mut base = 0;
    for pair in &mut pairs {
        let low = zero_flags(&pair[..8]);
        let high = zero_flags(&pair[8..]);
        if low | high != 0 {
            let (at, flags) = if low != 0 {
                (base, low)
            } else {
                (base + 8, high)
            };
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        base += 16;
    }
    pairs
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| base + i)
}

/// Decoder and encoder for LF or CRLF terminated lines.
///
/// Decoding yields each payload (terminator removed) as [`Bytes`]; the bytes
/// are not required to be UTF-8. A stream that ends part-way through a line is
/// an error from `decode_eof` ([`FrameError::UnterminatedLine`]): the last
/// line of a line protocol must be terminated too.
#[derive(Debug, Clone)]
pub struct LineCodec {
    terminator: Terminator,
    max_line: usize,
    /// Bytes at the start of the buffer already searched without finding a
    /// terminator (for crlf: searched for LF; an LF not after a CR is payload).
    scanned: usize,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    consumed: u64,
    encoded: u64,
}

impl LineCodec {
    /// A codec for `terminator` with `max_line` 64 KiB.
    pub fn new(terminator: Terminator) -> Self {
        LineCodec {
            terminator,
            max_line: DEFAULT_MAX_LINE,
            scanned: 0,
            discarding: false,
            consumed: 0,
            encoded: 0,
        }
    }

    /// LF-terminated lines (a CR before the LF is stripped).
    pub fn lf() -> Self {
        Self::new(Terminator::Lf)
    }

    /// CRLF-terminated lines.
    pub fn crlf() -> Self {
        Self::new(Terminator::CrLf)
    }

    /// Sets the largest payload accepted (decoding) or produced (encoding).
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = clamp_limit(max_line);
        self
    }

    /// The terminator.
    pub fn terminator(&self) -> Terminator {
        self.terminator
    }

    /// The largest payload accepted.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Absolute input offset of the line being decoded (or of the next byte
    /// to discard while skipping an over-long line).
    pub fn stream_offset(&self) -> u64 {
        self.consumed
    }

    /// Whether the codec is skipping the rest of an over-long line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// A line's length is unknowable until its terminator arrives, so this is
    /// 1 (read a byte at a time), or 0 if `buffered` already holds a whole
    /// line.
    pub fn exact_read_hint(&self, buffered: &[u8]) -> usize {
        let complete = match self.terminator {
            Terminator::Lf => find_lf(buffered).is_some(),
            Terminator::CrLf => buffered.windows(2).any(|w| w == b"\r\n"),
        };
        usize::from(!complete)
    }

    /// Whether an LF at `lf` in `buf` ends a line.
    #[inline]
    fn is_terminator(&self, buf: &[u8], lf: usize) -> bool {
        match self.terminator {
            Terminator::Lf => true,
            Terminator::CrLf => lf > 0 && buf[lf - 1] == b'\r',
        }
    }

    /// Drops bytes of an over-long line up to and including the next
    /// terminator. Returns true when normal decoding can resume.
    #[inline(never)]
    fn skip_discarded(&mut self, src: &mut BytesMut) -> bool {
        let mut from = 0;
        while let Some(rel) = find_lf(&src[from..]) {
            let lf = from + rel;
            if self.is_terminator(src, lf) {
                src.advance(lf + 1);
                self.consumed += (lf + 1) as u64;
                self.discarding = false;
                self.scanned = 0;
                return true;
            }
            from = lf + 1;
        }
        // No terminator yet. For crlf keep a trailing CR: the LF completing
        // the pair may be the next byte to arrive.
        let keep = usize::from(self.terminator == Terminator::CrLf && src.last() == Some(&b'\r'));
        let drop = src.len() - keep;
        src.advance(drop);
        self.consumed += drop as u64;
        false
    }

    #[cold]
    fn too_long(&self) -> FrameError {
        FrameError::LineTooLong {
            offset: self.consumed,
            max_line: self.max_line as u64,
            terminator: self.terminator.label(),
        }
    }

    /// Removes the first `frame_end` bytes and returns the first `payload_end`.
    #[inline]
    fn take(&mut self, src: &mut BytesMut, payload_end: usize, frame_end: usize) -> Bytes {
        let mut line = src.split_to(frame_end);
        line.truncate(payload_end);
        self.consumed += frame_end as u64;
        self.scanned = 0;
        line.freeze()
    }

    pub(crate) fn encode_at(
        &self,
        payload: &[u8],
        offset: u64,
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let terminator = self.terminator.label();
        let mut from = 0;
        while let Some(rel) = find_lf(&payload[from..]) {
            let lf = from + rel;
            if self.is_terminator(payload, lf) {
                let position = match self.terminator {
                    Terminator::Lf => lf,
                    Terminator::CrLf => lf - 1,
                } as u64;
                return Err(FrameError::PayloadContainsTerminator {
                    offset,
                    terminator,
                    position,
                });
            }
            from = lf + 1;
        }
        if self.terminator == Terminator::Lf && payload.last() == Some(&b'\r') {
            return Err(FrameError::PayloadEndsWithCr { offset });
        }
        if payload.len() > self.max_line {
            return Err(FrameError::PayloadTooLarge {
                offset,
                what: "line",
                len: payload.len() as u64,
                limit: "max_line",
                max: self.max_line as u64,
            });
        }
        let end = self.terminator.bytes();
        dst.reserve(payload.len() + end.len());
        dst.extend_from_slice(payload);
        dst.extend_from_slice(end);
        Ok(())
    }
}

impl Decoder for LineCodec {
    type Item = Bytes;
    type Error = FrameError;

    // Inlined so that a line trickling in costs the read loop a short scan
    // of the new bytes, not a call; the skip and error paths stay out of line.
    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if self.discarding && !self.skip_discarded(src) {
            return Ok(None);
        }
        // A terminator that ends a legal line has its LF at index
        // max_line + 1 at the latest (payload, then CR, then LF), so nothing
        // past that needs searching: that keeps a terminator-less flood from
        // being buffered or scanned beyond the limit.
        let limit = self.max_line + 2;
        let window = limit.min(src.len());
        while self.scanned < window {
            let Some(rel) = find_lf(&src[self.scanned..window]) else {
                self.scanned = window;
                break;
            };
            let lf = self.scanned + rel;
            match self.terminator {
                Terminator::Lf => {
                    let end = if lf > 0 && src[lf - 1] == b'\r' {
                        lf - 1
                    } else {
                        lf
                    };
                    if end > self.max_line {
                        // Only LF at max_line + 1 with no CR before it: the
                        // whole line is here, so skip it right away.
                        let err = self.too_long();
                        self.take(src, 0, lf + 1);
                        return Err(err);
                    }
                    return Ok(Some(self.take(src, end, lf + 1)));
                }
                Terminator::CrLf => {
                    if lf > 0 && src[lf - 1] == b'\r' {
                        return Ok(Some(self.take(src, lf - 1, lf + 1)));
                    }
                    self.scanned = lf + 1;
                }
            }
        }
        if src.len() >= limit {
            // max_line + 2 bytes and no terminator among them: whatever comes
            // next, the payload is longer than max_line.
            self.discarding = true;
            self.scanned = 0;
            return Err(self.too_long());
        }
        Ok(None)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(line) = self.decode(src)? {
            return Ok(Some(line));
        }
        if src.is_empty() {
            return Ok(None);
        }
        let have = src.len() as u64;
        self.consumed += have;
        src.clear();
        self.scanned = 0;
        if self.discarding {
            // The over-long line was already reported; its tail just ends.
            self.discarding = false;
            return Ok(None);
        }
        Err(FrameError::UnterminatedLine {
            offset: self.consumed - have,
            have,
            terminator: self.terminator.label(),
        })
    }
}

impl Encoder<&[u8]> for LineCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_at(payload, self.encoded, dst)?;
        self.encoded += (payload.len() + self.terminator.bytes().len()) as u64;
        Ok(())
    }
}

impl Encoder<Bytes> for LineCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        Encoder::<&[u8]>::encode(self, &payload, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Outcome = Vec<Result<Bytes, FrameError>>;

    /// Feeds `bytes` in `chunk`-sized reads, collecting frames and errors
    /// (line errors are recoverable, so it carries on after them).
    fn run(codec: &mut LineCodec, bytes: &[u8], chunk: usize) -> Outcome {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(line)) => out.push(Ok(line)),
                    Ok(None) => break,
                    Err(err) => out.push(Err(err)),
                }
            }
        }
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(line)) => out.push(Ok(line)),
                Ok(None) => break,
                Err(err) => {
                    let recoverable = err.is_recoverable();
                    out.push(Err(err));
                    if !recoverable {
                        break;
                    }
                }
            }
        }
        out
    }

    fn ok(lines: &[&'static [u8]]) -> Outcome {
        lines.iter().map(|l| Ok(Bytes::from_static(l))).collect()
    }

    #[test]
    fn find_lf_agrees_with_a_byte_loop() {
        let mut hay = vec![b'a'; 200];
        assert_eq!(find_lf(&hay), None);
        for at in [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 100, 199] {
            hay[at] = b'\n';
            for len in [at + 1, at + 9, 64, 65, 200] {
                let len = len.min(200).max(at + 1);
                assert_eq!(find_lf(&hay[..len]), Some(at), "at {at} len {len}");
                assert_eq!(find_lf_words(&hay[..len]), Some(at), "at {at} len {len}");
            }
            assert_eq!(find_lf(&hay[at + 1..]), None);
            assert_eq!(find_lf_words(&hay[at + 1..]), None);
            hay[at] = b'a';
        }
        // Bytes near LF (0x0a +/- 1, 0x8a) must not confuse the word search.
        let tricky = [0x09u8, 0x0b, 0x8a, 0x0a ^ 0x80, 0x00, 0xff, 0x01, 0x0a];
        assert_eq!(find_lf_words(&tricky), Some(7));
        let mut two = tricky.to_vec();
        two.extend_from_slice(&tricky);
        assert_eq!(find_lf_words(&two), Some(7));
    }

    #[test]
    fn lf_layout() {
        let mut codec = LineCodec::lf();
        assert_eq!(
            run(&mut codec, b"hi\r\nyo\n\n", 64),
            ok(&[b"hi", b"yo", b""])
        );
        assert_eq!(codec.stream_offset(), 8);
        let mut dst = BytesMut::new();
        codec.encode(&b"hello"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], b"hello\n");
        // A CR elsewhere in the line is payload.
        assert_eq!(run(&mut LineCodec::lf(), b"a\rb\n", 1), ok(&[b"a\rb"]));
    }

    #[test]
    fn crlf_layout() {
        let mut codec = LineCodec::crlf();
        assert_eq!(
            run(&mut codec, b"a\nb\r\n\r\n\n\r\r\n", 64),
            ok(&[b"a\nb", b"", b"\n\r"])
        );
        let mut dst = BytesMut::new();
        codec.encode(&b"hello"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], b"hello\r\n");
        // The CR and the LF of one terminator in different reads.
        assert_eq!(
            run(&mut LineCodec::crlf(), b"ab\r\ncd\r\n", 1),
            ok(&[b"ab", b"cd"])
        );
    }

    #[test]
    fn max_line_boundaries() {
        // Exactly max_line bytes is fine, with or without the optional CR.
        for chunk in [1, 2, 100] {
            let mut codec = LineCodec::lf().with_max_line(3);
            assert_eq!(
                run(&mut codec, b"abc\nabc\r\n", chunk),
                ok(&[b"abc", b"abc"])
            );
            let mut codec = LineCodec::crlf().with_max_line(3);
            assert_eq!(
                run(&mut codec, b"abc\r\na\nc\r\n", chunk),
                ok(&[b"abc", b"a\nc"])
            );
        }
    }

    #[test]
    fn over_long_line_errors_once_then_recovers() {
        for terminator in [Terminator::Lf, Terminator::CrLf] {
            let end = terminator.bytes();
            let mut stream = b"ok".to_vec();
            stream.extend_from_slice(end);
            let bad_at = stream.len() as u64;
            stream.extend_from_slice(&[b'x'; 50]);
            stream.extend_from_slice(end);
            stream.extend_from_slice(b"next");
            stream.extend_from_slice(end);
            let next_at = stream.len() as u64 - 4 - end.len() as u64;
            for chunk in [1, 3, 7, 1000] {
                let mut codec = LineCodec::new(terminator).with_max_line(8);
                let out = run(&mut codec, &stream, chunk);
                let err = FrameError::LineTooLong {
                    offset: bad_at,
                    max_line: 8,
                    terminator: terminator.label(),
                };
                assert_eq!(
                    out,
                    vec![
                        Ok(Bytes::from_static(b"ok")),
                        Err(err.clone()),
                        Ok(Bytes::from_static(b"next"))
                    ],
                    "{terminator:?} chunk {chunk}"
                );
                assert_eq!(codec.stream_offset(), stream.len() as u64);
                assert!(next_at > bad_at);
            }
            let msg = FrameError::LineTooLong {
                offset: 4,
                max_line: 8,
                terminator: "LF",
            }
            .to_string();
            assert_eq!(
                msg,
                "line at offset 4: longer than max_line 8 bytes without a LF terminator; \
                 skipping past the next LF"
            );
        }
    }

    #[test]
    fn over_long_line_holds_no_memory_while_skipping() {
        let mut codec = LineCodec::lf().with_max_line(16);
        let mut buf = BytesMut::new();
        let mut errors = 0;
        for _ in 0..10_000 {
            buf.extend_from_slice(&[b'z'; 100]);
            match codec.decode(&mut buf) {
                Ok(None) => {}
                Err(FrameError::LineTooLong { .. }) => errors += 1,
                other => panic!("{other:?}"),
            }
            assert!(buf.len() <= 118, "holding {} bytes", buf.len());
        }
        assert_eq!(errors, 1);
        buf.extend_from_slice(b"tail\nnext\n");
        assert_eq!(
            codec.decode(&mut buf),
            Ok(Some(Bytes::from_static(b"next")))
        );
        assert_eq!(codec.stream_offset(), 1_000_000 + 10);
    }

    #[test]
    fn crlf_skip_keeps_a_pending_cr() {
        let mut codec = LineCodec::crlf().with_max_line(2);
        let mut buf = BytesMut::from(&b"abcdef\r"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::LineTooLong { offset: 0, .. })
        ));
        assert_eq!(codec.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"\r");
        buf.extend_from_slice(b"\nok\r\n");
        assert_eq!(codec.decode(&mut buf), Ok(Some(Bytes::from_static(b"ok"))));
        // A lone LF while skipping does not end the skip.
        let out = run(
            &mut LineCodec::crlf().with_max_line(2),
            b"abcd\nef\r\nok\r\n",
            1,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], Ok(Bytes::from_static(b"ok")));
    }

    #[test]
    fn unterminated_last_line_is_an_error() {
        let out = run(&mut LineCodec::lf(), b"one\ntwo", 64);
        assert_eq!(out[0], Ok(Bytes::from_static(b"one")));
        let err = out[1].clone().unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream ended inside a line at offset 4: 3 bytes without a LF terminator"
        );
        let out = run(&mut LineCodec::crlf(), b"one\r\ntwo\r", 64);
        assert_eq!(
            out[1],
            Err(FrameError::UnterminatedLine {
                offset: 5,
                have: 4,
                terminator: "CRLF"
            })
        );
        // The tail of an over-long line, already reported, just ends.
        let out = run(&mut LineCodec::lf().with_max_line(2), b"abcdef", 1);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn encoding_rejects_what_would_not_come_back() {
        let mut lf = LineCodec::lf();
        let mut dst = BytesMut::new();
        let err = lf.encode(&b"a\nb"[..], &mut dst).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot encode line at offset 0: payload contains the LF terminator at payload byte 1"
        );
        assert_eq!(
            lf.encode(&b"ab\r"[..], &mut dst),
            Err(FrameError::PayloadEndsWithCr { offset: 0 })
        );
        let mut crlf = LineCodec::crlf();
        crlf.encode(&b"ok"[..], &mut dst).unwrap();
        crlf.encode(&b"a\nb\r"[..], &mut dst).unwrap();
        let err = crlf.encode(&b"xx\r\nyy"[..], &mut dst).unwrap_err();
        assert_eq!(
            err,
            FrameError::PayloadContainsTerminator {
                offset: 10,
                terminator: "CRLF",
                position: 2
            }
        );
        let mut short = LineCodec::lf().with_max_line(2);
        assert!(matches!(
            short.encode(&b"abc"[..], &mut dst),
            Err(FrameError::PayloadTooLarge { len: 3, max: 2, .. })
        ));
    }

    #[test]
    fn hint_is_one_until_a_line_is_buffered() {
        let lf = LineCodec::lf();
        assert_eq!(lf.exact_read_hint(b""), 1);
        assert_eq!(lf.exact_read_hint(b"abc"), 1);
        assert_eq!(lf.exact_read_hint(b"abc\n"), 0);
        let crlf = LineCodec::crlf();
        assert_eq!(crlf.exact_read_hint(b"abc\n"), 1);
        assert_eq!(crlf.exact_read_hint(b"abc\r\n"), 0);
    }

    fn line_byte() -> impl Strategy<Value = u8> {
        prop_oneof![4 => b'a'..=b'e', 1 => Just(b'\r'), 1 => Just(b'\n')]
    }

    proptest! {
        /// Any byte soup, including over-long lines, decodes to the same
        /// frames and errors whatever the read sizes.
        #[test]
        fn same_outcome_for_any_read_size(
            bytes in prop::collection::vec(line_byte(), 0..400),
            max_line in 0usize..12,
            chunk in 1usize..40,
            crlf: bool,
        ) {
            let terminator = if crlf { Terminator::CrLf } else { Terminator::Lf };
            let codec = LineCodec::new(terminator).with_max_line(max_line);
            let whole = run(&mut codec.clone(), &bytes, bytes.len());
            let bytewise = run(&mut codec.clone(), &bytes, 1);
            let chunked = run(&mut codec.clone(), &bytes, chunk);
            prop_assert_eq!(&whole, &bytewise);
            prop_assert_eq!(&whole, &chunked);
            for line in whole.iter().flatten() {
                prop_assert!(line.len() <= max_line);
            }
        }
    }
}
