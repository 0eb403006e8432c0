//! Decode throughput of wirecheck's framing codecs next to tokio-util's.
//!
//! Two pairs, each configured alike:
//! * `u32be`: wirecheck's `LengthPrefixedCodec(U32Be)` against
//!   `LengthDelimitedCodec` with a 4-byte big-endian length, same max frame;
//! * `line`: wirecheck's `LineCodec::lf()` against `LinesCodec`, same max line.
//!
//! Each pair decodes a stream of 16-byte, 1 KiB or 1 MiB frames fed to the
//! decoder whole, in 1,500-byte reads (one Ethernet MTU) and in 1-byte reads
//! (the worst case for codecs that rescan or re-parse on every call). The
//! 1-byte streams are shorter so that the run stays quick; throughput is
//! reported in bytes of stream per second, so the numbers stay comparable.
//!
//! Run: `cargo bench --bench decode_throughput -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio_util::codec::{Decoder, LengthDelimitedCodec, LinesCodec};
use wirecheck::framing::{LengthPrefix, LengthPrefixedCodec, LineCodec};

/// Max frame for the length-prefixed pair (both codecs).
const MAX_FRAME: usize = 8 * 1024 * 1024;
/// Max line for the line pair (both codecs); must fit the 1 MiB lines.
const MAX_LINE: usize = 2 * 1024 * 1024;
/// Stream size when fed whole or in 1,500-byte reads.
const BIG_STREAM: usize = 4 * 1024 * 1024;
/// Stream size when fed a byte at a time.
const SMALL_STREAM: usize = 64 * 1024;

const SIZES: [(usize, &str); 3] = [(16, "16B"), (1024, "1KiB"), (1024 * 1024, "1MiB")];

#[derive(Clone, Copy)]
enum Feed {
    Whole,
    Mtu,
    Byte,
}

impl Feed {
    const ALL: [Feed; 3] = [Feed::Whole, Feed::Mtu, Feed::Byte];

    fn name(self) -> &'static str {
        match self {
            Feed::Whole => "whole",
            Feed::Mtu => "1500B-reads",
            Feed::Byte => "1B-reads",
        }
    }

    fn read_size(self, stream_len: usize) -> usize {
        match self {
            Feed::Whole => stream_len.max(1),
            Feed::Mtu => 1500,
            Feed::Byte => 1,
        }
    }

    /// Frames in the stream: enough to fill the target size, at least one.
    fn frames(self, frame: usize) -> usize {
        let total = match self {
            Feed::Whole | Feed::Mtu => BIG_STREAM,
            Feed::Byte => SMALL_STREAM,
        };
        (total / frame).max(1)
    }
}

/// Printable, LF-free payload bytes (so LinesCodec's UTF-8 check passes).
fn payload(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + ((i + seed) % 26) as u8).collect()
}

fn u32be_stream(frame: usize, count: usize) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(count * (frame + 4));
    for i in 0..count {
        out.put_u32(frame as u32);
        out.put_slice(&payload(frame, i));
    }
    out.to_vec()
}

fn line_stream(frame: usize, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (frame + 1));
    for i in 0..count {
        out.extend_from_slice(&payload(frame, i));
        out.push(b'\n');
    }
    out
}

/// Feeds `stream` to `codec` in `read`-byte pieces the way a read loop
/// would, decoding after every read; returns the number of frames.
fn feed<D>(mut codec: D, stream: &[u8], read: usize) -> usize
where
    D: Decoder,
    D::Error: std::fmt::Debug,
{
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut frames = 0;
    for piece in stream.chunks(read) {
        buf.extend_from_slice(piece);
        while let Some(frame) = codec.decode(&mut buf).expect("valid stream") {
            black_box(frame);
            frames += 1;
        }
    }
    frames
}

fn bench_pair<W, T>(
    c: &mut Criterion,
    pair: &str,
    make_stream: fn(usize, usize) -> Vec<u8>,
    wirecheck: impl Fn() -> W,
    tokio: impl Fn() -> T,
) where
    W: Decoder,
    W::Error: std::fmt::Debug,
    T: Decoder,
    T::Error: std::fmt::Debug,
{
    for (frame, size_name) in SIZES {
        for feed_kind in Feed::ALL {
            let count = feed_kind.frames(frame);
            let stream = make_stream(frame, count);
            let read = feed_kind.read_size(stream.len());
            assert_eq!(feed(wirecheck(), &stream, read), count);
            assert_eq!(feed(tokio(), &stream, read), count);

            let mut group = c.benchmark_group(format!("{pair}/{size_name}/{}", feed_kind.name()));
            group.throughput(Throughput::Bytes(stream.len() as u64));
            group.sample_size(20);
            group.bench_function("wirecheck", |b| b.iter(|| feed(wirecheck(), &stream, read)));
            group.bench_function("tokio-util", |b| b.iter(|| feed(tokio(), &stream, read)));
            group.finish();
        }
    }
}

fn u32be(c: &mut Criterion) {
    bench_pair(
        c,
        "u32be",
        u32be_stream,
        || LengthPrefixedCodec::new(LengthPrefix::U32Be).with_max_frame(MAX_FRAME),
        || {
            LengthDelimitedCodec::builder()
                .length_field_length(4)
                .big_endian()
                .max_frame_length(MAX_FRAME)
                .new_codec()
        },
    );
}

fn line(c: &mut Criterion) {
    bench_pair(
        c,
        "line",
        line_stream,
        || LineCodec::lf().with_max_line(MAX_LINE),
        || LinesCodec::new_with_max_length(MAX_LINE),
    );
}

criterion_group!(benches, u32be, line);
criterion_main!(benches);
