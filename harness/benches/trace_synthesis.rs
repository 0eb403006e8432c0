//! What a synthesized trace costs, without the run around it: the event log of a
//! 256 MiB bulk echo (1,024 client writes of 256 KiB, the echo server's 64 KiB reads
//! and writes, the client's 64 KiB reads) turned into a pcapng trace, written
//! nowhere (packet building and checksums only), to a new file as `run --pcap`
//! does, and to a new file cut to 128 bytes per packet (`--snaplen 128`).
//!
//! Run: `cargo bench -p wirecheck --bench trace_synthesis`

use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wirecheck::event::{Event, EventKind, Payload};
use wirecheck::trace::{synthesize_into, TraceSettings};

const WRITE: usize = 256 * 1024;
const READ: usize = 64 * 1024;
const ROUNDS: usize = 1024;

fn bulk_echo_events() -> Vec<Event> {
    let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let server: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let data = Bytes::from(
        (0..WRITE)
            .map(|i| b"0123456789abcdef"[i % 16])
            .collect::<Vec<u8>>(),
    );
    let (c, s): (Arc<str>, Arc<str>) = (Arc::from("client1"), Arc::from("echo"));
    let mut events = Vec::new();
    let mut at = Duration::ZERO;
    let mut push = |actor: &Arc<str>, kind: EventKind| {
        at += Duration::from_micros(1);
        events.push(Event {
            at,
            actor: Arc::clone(actor),
            kind,
        });
    };
    push(
        &c,
        EventKind::Connect {
            conn: 1,
            local: client,
            peer: server,
        },
    );
    push(
        &s,
        EventKind::Accept {
            conn: 2,
            local: server,
            peer: client,
        },
    );
    for _ in 0..ROUNDS {
        push(
            &c,
            EventKind::Write {
                conn: 1,
                data: Payload::with_bytes(data.clone()),
            },
        );
        for offset in (0..WRITE).step_by(READ) {
            let piece = data.slice(offset..offset + READ);
            push(
                &s,
                EventKind::Read {
                    conn: 2,
                    data: Payload::with_bytes(piece.clone()),
                },
            );
            push(
                &s,
                EventKind::Write {
                    conn: 2,
                    data: Payload::with_bytes(piece.clone()),
                },
            );
            push(
                &c,
                EventKind::Read {
                    conn: 1,
                    data: Payload::with_bytes(piece),
                },
            );
        }
    }
    push(
        &c,
        EventKind::Close {
            conn: 1,
            reset: false,
        },
    );
    events
}

fn bench(c: &mut Criterion) {
    let events = bulk_echo_events();
    let dir = tempfile::tempdir().unwrap();
    let start = SystemTime::now();
    let mut group = c.benchmark_group("trace_256MiB_echo");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((2 * WRITE * ROUNDS) as u64));
    let whole = TraceSettings::default();
    let cut = TraceSettings {
        snaplen: Some(128),
        ..Default::default()
    };
    group.bench_function("synthesize_only", |b| {
        b.iter(|| synthesize_into(std::io::sink(), &events, "bench", "", start, &whole).unwrap())
    });
    let to_file = |name: &str, settings: &TraceSettings, b: &mut criterion::Bencher<'_>| {
        let path = dir.path().join(name);
        b.iter_batched(
            // A new file each time, as in a fresh --pcap folder: truncating the
            // previous 512 MiB file would be timed too.
            || {
                let _ = std::fs::remove_file(&path);
            },
            |()| write_file(&path, &events, start, settings),
            BatchSize::PerIteration,
        )
    };
    group.bench_function("to_file", |b| to_file("whole.pcapng", &whole, b));
    group.bench_function("to_file_snaplen_128", |b| to_file("cut.pcapng", &cut, b));
    group.finish();
}

fn write_file(path: &Path, events: &[Event], start: SystemTime, settings: &TraceSettings) {
    let file = std::fs::File::create(path).unwrap();
    let writer = BufWriter::with_capacity(1 << 20, file);
    let (writer, _) = synthesize_into(writer, events, "bench", "", start, settings).unwrap();
    writer.into_inner().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
