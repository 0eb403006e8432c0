//! 1,000 request/response exchanges against the echo server: wirecheck running a
//! scenario, next to a minimal hand-written tokio client doing the same exchanges.
//! The ratio is wirecheck's overhead per exchange (step bookkeeping, event log,
//! deadlines) over bare socket calls.
//!
//! Run: `cargo bench -p wirecheck --bench echo_exchanges`

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use wirecheck::event::EventStream;
use wirecheck::scenario::{Proto, SocketOptions};
use wirecheck::servers::{self, BuiltinConfig, BuiltinKind, ServerContext};

const EXCHANGES: usize = 1_000;

fn message(i: usize) -> String {
    format!("request number {i:04}\n")
}

fn scenario_text() -> String {
    let mut text = String::from(
        "name = \"1000 echo exchanges\"\ntimeout = \"60s\"\n[servers.echo]\nbuiltin = \"echo\"\n[[clients]]\nconnect = \"echo\"\nnodelay = true\nscript = [\n",
    );
    for i in 0..EXCHANGES {
        let m = message(i).replace('\n', "\\n");
        text.push_str(&format!(
            "  {{ send = \"{m}\" }},\n  {{ expect = \"{m}\" }},\n"
        ));
    }
    text.push_str("]\n");
    text
}

async fn hand_written(addr: std::net::SocketAddr) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..EXCHANGES {
        let m = message(i);
        stream.write_all(m.as_bytes()).await.unwrap();
        stream.read_exact(&mut buf[..m.len()]).await.unwrap();
        assert_eq!(&buf[..m.len()], m.as_bytes());
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let scenario =
        wirecheck::scenario::load_str(Path::new("bench.toml"), &scenario_text()).unwrap();
    let mut group = c.benchmark_group("echo_1000_exchanges");
    group.sample_size(20);
    group.bench_function("wirecheck_scenario", |b| {
        b.iter(|| {
            let outcome = runtime.block_on(wirecheck::runner::run_scenario(
                &scenario,
                1,
                CancellationToken::new(),
                EventStream::disabled(),
            ));
            assert!(outcome.passed(), "{:?}", outcome.failure);
        })
    });
    group.bench_function("hand_written_tokio_client", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let bound = servers::bind(
                    Proto::Tcp,
                    "127.0.0.1:0".parse().unwrap(),
                    &SocketOptions::default(),
                )
                .unwrap();
                let addr = bound.local_addr().unwrap();
                let shutdown = CancellationToken::new();
                let context = ServerContext {
                    log: EventStream::disabled(),
                    actor: Arc::from("echo"),
                    options: SocketOptions::default(),
                };
                let server = tokio::spawn(servers::serve(
                    BuiltinConfig::new(BuiltinKind::Echo),
                    bound,
                    context,
                    shutdown.clone(),
                ));
                hand_written(addr).await;
                shutdown.cancel();
                let _ = server.await;
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
