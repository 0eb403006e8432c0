//! Fault proxies (`[proxies.NAME]`, `wirecheck proxy`): every fault over real
//! loopback sockets, determinism of seeded decisions, faithful half-closes and
//! resets, fault events, and the load errors of bad proxies.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use wirecheck::event::EventKind;
use wirecheck::proxy::datagram::DatagramPipeline;
use wirecheck::proxy::rng::{FaultRng, StreamOf};
use wirecheck::proxy::{FaultKind, Flow};
use wirecheck::scenario::LoadError;

use crate::{
    assert_passed, events_of, failure, load, position_of, rendered, run, write_sizes, Ran,
};

/// Every fault action of a run, as `(actor, fault, action)`.
fn faults(ran: &Ran) -> Vec<(String, &'static str, String)> {
    ran.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Fault { fault, action, .. } => {
                Some((e.actor.to_string(), *fault, action.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_proxy_without_faults_forwards_both_ways_and_closes_everything() {
    let ran = run(r#"
[servers.srv]
builtin = "echo"
[proxies.plain]
to = "srv"
[[clients]]
connect = "plain"
count = 3
script = [ { send = "hello" }, { expect = "hello" }, { shutdown = "write" }, { expect_eof = true } ]
"#)
    .await;
    assert_passed(&ran);
    assert!(faults(&ran).is_empty());
    // Every socket the proxy opened (accepted or upstream) is closed by the end.
    let mut opened = BTreeSet::new();
    let mut closed = BTreeSet::new();
    for event in ran.events.iter().filter(|e| e.actor.starts_with("plain#")) {
        match &event.kind {
            EventKind::Accept { conn, .. } | EventKind::Connect { conn, .. } => {
                opened.insert(*conn);
            }
            EventKind::Close { conn, .. } => {
                closed.insert(*conn);
            }
            _ => {}
        }
    }
    assert_eq!(opened.len(), 6, "three connections, two sockets each");
    assert_eq!(opened, closed);
    let started = ran
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ProxyStarted { listen, .. } => Some(*listen),
            _ => None,
        })
        .expect("a proxy_started event");
    // The listener is gone with the run.
    assert!(std::net::TcpStream::connect(started).is_err());
}

#[tokio::test]
async fn coalesce_merges_two_sends_into_one_read_of_a_server_that_reads_once() {
    // No `await_queued`: the proxy alone decides what one read returns.
    let ran = run(r#"
[servers.srv]
script = [ { recv = { max = 1024, expect = "helloeggo2" } }, { send = "ok" } ]
[proxies.sticky]
to = "srv"
faults = [ { coalesce = 10, window = "2s", direction = "up" } ]
[[clients]]
connect = "sticky"
script = [ { send = "hello" }, { sleep = "20ms" }, { send = "eggo2" }, { expect = "ok" } ]
"#)
    .await;
    assert_passed(&ran);
    assert_eq!(write_sizes(&ran, "sticky#1")[0], 10, "one write upstream");
    let notes = faults(&ran);
    assert!(
        notes.iter().any(|(_, fault, action)| *fault == "coalesce"
            && action.contains("held 10 bytes of 2 read(s)")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn slice_splits_one_send_into_single_byte_reads() {
    let ran = run(r#"
[servers.srv]
script = [ { recv = { max = 1024, expect = "h" } }, { expect = "ello" } ]
[proxies.slicer]
to = "srv"
faults = [ { slice = 1, delay = "5ms" } ]
[[clients]]
connect = "slicer"
script = [ { send = "hello" } ]
"#)
    .await;
    assert_passed(&ran);
    assert_eq!(write_sizes(&ran, "slicer#1"), vec![1, 1, 1, 1, 1]);
}

#[tokio::test]
async fn reset_after_cuts_a_frame_and_resets_both_sides() {
    let ran = run(r#"
[servers.srv]
script = [ { expect = { hex = "0a 00 00 00 68 65" } }, { expect_reset = true } ]
[proxies.cutter]
to = "srv"
faults = [ { reset_after = 6, direction = "up" } ]
[[clients]]
connect = "cutter"
script = [ { send_frame = { framing = "u32le", text = "helloworld" } }, { expect_reset = true } ]
"#)
    .await;
    assert_passed(&ran);
    let closes: Vec<bool> = events_of(&ran, "cutter#1")
        .into_iter()
        .filter_map(|e| match &e.kind {
            EventKind::Close { reset, .. } => Some(*reset),
            _ => None,
        })
        .collect();
    assert_eq!(closes, vec![true, true]);
}

#[tokio::test]
async fn close_after_closes_both_sides_after_n_bytes() {
    let ran = run(r#"
[servers.srv]
script = [ { expect = "abc" }, { expect_eof = true } ]
[proxies.closer]
to = "srv"
faults = [ { close_after = 3 } ]
[[clients]]
connect = "closer"
script = [ { send = "abcdef" }, { expect_eof = true } ]
"#)
    .await;
    assert_passed(&ran);
}

#[tokio::test]
async fn a_client_reset_reaches_the_server_as_a_reset() {
    let ran = run(r#"
[servers.srv]
script = [ { expect = "x" }, { signal = "got-it" }, { expect_reset = true } ]
[proxies.rst]
to = "srv"
[[clients]]
connect = "rst"
linger = "0s"
script = [ { send = "x" }, { wait = "got-it" }, { close = true } ]
"#)
    .await;
    assert_passed(&ran);
}

#[tokio::test]
async fn a_half_close_through_a_latency_proxy_arrives_after_the_data() {
    let ran = run(r#"
[servers.srv]
script = [ { expect = "question" }, { expect_eof = true }, { send = "answer" }, { close = true } ]
[proxies.slow]
to = "srv"
faults = [ { latency = "20ms", jitter = "5ms" }, { slow_close = "10ms" } ]
[[clients]]
connect = "slow"
script = [ { send = "question" }, { shutdown = "write" }, { expect = "answer" }, { expect_eof = true } ]
"#)
    .await;
    assert_passed(&ran);
    let notes = faults(&ran);
    assert!(
        notes
            .iter()
            .any(|(_, f, a)| *f == "latency" && a.contains("held for")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|(_, f, a)| *f == "slow_close" && a.contains("late")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn blackhole_forwards_nothing() {
    let ran = run(r#"
step_timeout = "300ms"
[servers.srv]
script = [ { expect = "anything" } ]
[proxies.hole]
to = "srv"
faults = [ { blackhole = true, direction = "up" } ]
[[clients]]
connect = "hole"
script = [ { send = "anything" } ]
"#)
    .await;
    let failure = failure(&ran);
    assert_eq!(failure.actor.as_deref(), Some("srv"), "{}", rendered(&ran));
    assert!(faults(&ran)
        .iter()
        .any(|(_, f, a)| *f == "blackhole" && a.contains("dropped 8 bytes")));
}

#[tokio::test]
async fn a_chain_of_proxies_reaches_the_server() {
    let ran = run(r#"
[servers.srv]
builtin = "echo"
[proxies.front]
to = "back"
faults = [ { slice = 2 } ]
[proxies.back]
to = "srv"
faults = [ { coalesce = 6, window = "1s" } ]
[[clients]]
connect = "front"
script = [ { send = "abcdef" }, { expect = "abcdef" } ]
"#)
    .await;
    assert_passed(&ran);
    assert_eq!(write_sizes(&ran, "front#1")[..3], [2, 2, 2]);
    assert_eq!(write_sizes(&ran, "back#1")[0], 6);
}

/// The sizes the proxy wrote upstream, for a seeded `slice = [1, 9]`.
async fn sliced_sizes(seed: u64) -> (Vec<usize>, Vec<wirecheck::outcome::ProxySeed>) {
    let ran = run(&format!(
        r#"
[servers.srv]
script = [ {{ expect = {{ repeat = "x", times = 200 }} }} ]
[proxies.random]
to = "srv"
seed = {seed}
faults = [ {{ slice = [1, 9] }} ]
[[clients]]
connect = "random"
script = [ {{ send = {{ repeat = "x", times = 200 }} }} ]
"#
    ))
    .await;
    assert_passed(&ran);
    (write_sizes(&ran, "random#1"), ran.outcome.seeds.clone())
}

#[tokio::test]
async fn the_same_seed_gives_the_same_decisions() {
    let (first, seeds) = sliced_sizes(7).await;
    let (second, _) = sliced_sizes(7).await;
    let (other, _) = sliced_sizes(8).await;
    assert_eq!(first, second);
    assert_ne!(first, other);
    assert_eq!(first.iter().sum::<usize>(), 200);
    assert_eq!(seeds[0].seed, 7);
    assert_eq!(seeds[0].proxy, "random");
}

#[tokio::test]
async fn probability_and_connections_pick_connections_by_seed() {
    let text = r#"
[servers.srv]
script = [ { expect = "ab" } ]
connections = 8
[proxies.some]
to = "srv"
seed = 3
faults = [
  { slice = 1, probability = 0.5 },
  { latency = "1ms", connections = [2] },
]
[[clients]]
connect = "some"
count = 8
script = [ { send = "ab" } ]
"#;
    let sliced = |ran: &Ran| -> BTreeSet<String> {
        faults(ran)
            .into_iter()
            .filter(|(_, f, _)| *f == "slice")
            .map(|(actor, _, _)| actor)
            .collect()
    };
    let first = run(text).await;
    assert_passed(&first);
    let second = run(text).await;
    assert_eq!(
        sliced(&first),
        sliced(&second),
        "the same connections are sliced"
    );
    let chosen = sliced(&first).len();
    assert!((1..8).contains(&chosen), "some but not all: {chosen}");
    let delayed: BTreeSet<String> = faults(&first)
        .into_iter()
        .filter(|(_, f, _)| *f == "latency")
        .map(|(actor, _, _)| actor)
        .collect();
    assert_eq!(delayed, BTreeSet::from(["some#2".to_owned()]));
}

/// Which of `count` datagrams a seeded `drop = 0.3` proxy lets through, computed
/// with the pure pipeline and the stream the proxy gives its first client.
fn survivors(seed: u64, count: usize) -> Vec<String> {
    let rng = FaultRng::new(seed, "lossy", 1, StreamOf::Flow(Flow::Up));
    let mut pipeline = DatagramPipeline::new(&[FaultKind::Drop(0.3)], rng, false);
    for i in 0..count {
        pipeline.push(Duration::ZERO, Bytes::from(format!("d{i:02}")));
    }
    let mut out = Vec::new();
    pipeline.drain(Duration::ZERO, &mut out);
    out.into_iter()
        .filter_map(|d| d.data.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

#[tokio::test]
async fn udp_loss_with_a_seed_drops_exactly_the_datagrams_the_seed_says() {
    let kept = survivors(11, 20);
    assert!(kept.len() < 20 && kept.len() > 5, "{kept:?}");
    let expects: Vec<String> = kept
        .iter()
        .map(|d| format!("{{ expect = \"{d}\" }}"))
        .collect();
    let sends: Vec<String> = (0..20)
        .map(|i| format!("{{ send = \"d{i:02}\" }}"))
        .collect();
    let ran = run(&format!(
        r#"
[servers.srv]
proto = "udp"
script = [ {}, {{ signal = "all-in" }} ]
[proxies.lossy]
to = "srv"
seed = 11
faults = [ {{ drop = 0.3, direction = "up" }} ]
[[clients]]
connect = "lossy"
script = [ {}, {{ wait = "all-in" }} ]
"#,
        expects.join(", "),
        sends.join(", ")
    ))
    .await;
    assert_passed(&ran);
    let dropped = faults(&ran).iter().filter(|(_, f, _)| *f == "drop").count();
    assert_eq!(dropped, 20 - kept.len());
}

#[tokio::test]
async fn udp_duplicate_truncate_and_corrupt_act_on_datagrams() {
    let ran = run(r#"
[servers.srv]
proto = "udp"
script = [ { expect = "abc" }, { expect = "abc" }, { send = "reply" } ]
[proxies.mangler]
to = "srv"
faults = [
  { duplicate = 1.0, direction = "up" },
  { truncate = 3, direction = "up" },
  { corrupt = 1.0, direction = "down" },
]
[[clients]]
connect = "mangler"
script = [ { send = "abcdef" }, { recv = { max = 100 } } ]
"#)
    .await;
    assert_passed(&ran);
    let received = events_of(&ran, "client1")
        .into_iter()
        .find_map(|e| match &e.kind {
            EventKind::DatagramReceived { data, .. } => data.bytes().cloned(),
            _ => None,
        })
        .expect("the client received the reply");
    assert_eq!(received.len(), 5);
    let differing = received
        .iter()
        .zip(b"reply")
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 1, "one byte flipped: {received:?}");
}

/// A scenario that must not load, with the `path:line:col` of `at`.
#[track_caller]
fn refused(source: &str, message: &str, at: &str) {
    let error = match load(source) {
        Ok(_) => panic!("this scenario loaded but should not have:\n{source}"),
        Err(e) => e,
    };
    let rendered = error.render();
    let LoadError::Invalid {
        path, diagnostics, ..
    } = error
    else {
        panic!("{rendered}");
    };
    let diagnostic = diagnostics
        .iter()
        .find(|d| d.message.contains(message))
        .unwrap_or_else(|| panic!("no error says `{message}`:\n{rendered}"));
    assert_eq!(
        diagnostic.span.start,
        source.find(at).expect("anchor in source"),
        "{rendered}"
    );
    assert!(
        rendered.contains(&position_of(&path, source, at)),
        "{rendered}"
    );
}

const BAD_HEAD: &str = "[servers.srv]\nbuiltin = \"echo\"\n";

#[test]
fn bad_proxies_are_errors_at_their_line_and_column() {
    refused(
        &format!("{BAD_HEAD}[proxies.p]\nto = \"srv\"\nfaults = [ {{ slise = 1 }} ]\n"),
        "unknown fault `slise`",
        "slise",
    );
    refused(
        &format!("{BAD_HEAD}[proxies.p]\nto = \"srv\"\nfaults = [ {{ slice = 1, probability = 1.5 }} ]\n"),
        "`probability` is 1.5, outside 0..1",
        "1.5",
    );
    refused(
        &format!("{BAD_HEAD}[proxies.p]\nto = \"srv\"\nfaults = [ {{ slice = -3 }} ]\n"),
        "a size cannot be negative",
        "-3",
    );
    refused(
        "[servers.srv]\nbuiltin = \"echo\"\nproto = \"udp\"\n[proxies.p]\nto = \"srv\"\nfaults = [ { coalesce = 10 } ]\n",
        "`coalesce` does not apply to a UDP proxy",
        "coalesce",
    );
    refused(
        &format!("{BAD_HEAD}[proxies.p]\nto = \"nowhere\"\n"),
        "no server or proxy is named `nowhere`",
        "\"nowhere\"",
    );
    refused(
        &format!("{BAD_HEAD}[proxies.p]\nto = \"p\"\n"),
        "proxy `p` forwards to itself",
        "\"p\"",
    );
    refused(
        &format!("{BAD_HEAD}[proxies.a]\nto = \"b\"\n[proxies.b]\nto = \"a\"\n"),
        "proxies forward to each other in a loop: a -> b -> a",
        "\"b\"",
    );
    refused(
        &format!("{BAD_HEAD}[proxies.p]\nto = \"srv\"\nfaults = [ {{ slice = 1, direction = \"sideways\" }} ]\n"),
        "unknown direction `sideways`",
        "\"sideways\"",
    );
    refused(
        &format!("{BAD_HEAD}[proxies.p]\nto = \"srv\"\nfaults = [ {{ slice = 1, latency = \"1ms\" }} ]\n"),
        "one fault table has both",
        "latency",
    );
    refused(
        &format!("{BAD_HEAD}[proxies.p]\nto = \"srv\"\n[[clients]]\nconnect = \"q\"\n"),
        "no server or proxy is named `q`",
        "\"q\"",
    );
}

// ------------------------------------------------------------ the binary

const BOUND: Duration = Duration::from_secs(30);

async fn wirecheck(args: &[&str]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wirecheck"));
    command.args(args);
    crate::output_within(command, BOUND, &format!("wirecheck {}", args.join(" "))).await
}

const SEEDED_FAILURE: &str = r#"
name = "seeded failure"
[servers.srv]
script = [ { recv = { max = 100, expect = "hello" } } ]
[proxies.random]
to = "srv"
seed = 42
faults = [ { slice = [1, 3], delay = "5ms" } ]
[[clients]]
connect = "random"
script = [ { send = "hello" } ]
"#;

#[tokio::test]
async fn a_failure_report_prints_the_seed_and_the_replay_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seeded.toml");
    std::fs::write(&file, SEEDED_FAILURE).unwrap();
    let file = file.to_str().unwrap();
    let output = wirecheck(&["run", file]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("seed: 42"), "{stdout}");
    assert!(
        stdout.contains(&format!("replay: wirecheck run {file} --seed 42")),
        "{stdout}"
    );
    // `--seed` overrides the file's seed: the JSON report says which one ran.
    let json = dir.path().join("report.json");
    let output = wirecheck(&["run", file, "--seed", "5", "--json", json.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("replay: wirecheck run {file} --seed 5")),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["runs"][0]["seeds"][0]["seed"], 5, "{report}");
    assert_eq!(report["runs"][0]["seeds"][0]["proxy"], "random");
    let fault_events = report["runs"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"]["type"] == "fault")
        .count();
    assert!(
        fault_events > 0,
        "fault actions are events of the JSON report"
    );
}

#[tokio::test]
async fn a_bad_fault_is_a_usage_error_of_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[servers.srv]\nbuiltin = \"echo\"\n[proxies.p]\nto = \"srv\"\nfaults = [ { latency = \"fast\" } ]\n",
    )
    .unwrap();
    let output = wirecheck(&["check", file.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:5:24"), "{stderr}");
}

#[tokio::test]
async fn wirecheck_proxy_forwards_logs_faults_and_stops_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = echo.accept() {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wirecheck"))
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--to",
            &echo_addr.to_string(),
        ])
        .args([
            "--seed",
            "9",
            "--fault",
            "slice=1,delay=1ms",
            "--fault",
            "latency=2ms",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(BOUND, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("seed 9, 2 fault(s)"), "{first}");
    let addr: std::net::SocketAddr = first
        .strip_prefix("proxy listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in `{first}`"));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    tokio::time::timeout(BOUND, stream.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"hello");
    let mut log = Vec::new();
    while log
        .iter()
        .filter(|l: &&String| l.contains("slice:"))
        .count()
        < 10
    {
        let line = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("a log line in time")
            .unwrap()
            .expect("the proxy is still running");
        log.push(line);
    }
    assert!(
        log.iter()
            .any(|l| l.contains("proxy#1 up slice: write 1 of a sliced read")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.contains("latency:")), "{log:?}");
    drop(stream);
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(BOUND, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    assert_eq!(
        rest.last().map(String::as_str),
        Some("proxy stopped"),
        "{rest:?}"
    );
}

#[tokio::test]
async fn wirecheck_proxy_refuses_bad_faults_and_addresses() {
    let output = wirecheck(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        "127.0.0.1:9",
        "--proto",
        "udp",
        "--fault",
        "coalesce=10",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`coalesce` does not apply to a UDP proxy"),
        "{stderr}"
    );
    let output = wirecheck(&["proxy", "--listen", "127.0.0.1:0", "--to", "10.1.2.3:80"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a loopback address"));
}

#[tokio::test]
async fn placeholders_name_proxies_too() {
    // A program server told the proxy's address forwards to it: the chain
    // program -> proxy -> echo answers through the proxy.
    let dir = tempfile::tempdir().unwrap();
    let scenario = crate::scenario_in(
        dir.path(),
        r#"
[servers.srv]
builtin = "echo"
[proxies.front]
to = "srv"
faults = [ { slice = 1 } ]
[servers.relay]
command = ["python3", "-c", "import socket,sys; l=socket.create_server(('127.0.0.1', int(sys.argv[1]))); c,_=l.accept(); u=socket.create_connection(('{host:front}', int(sys.argv[2]))); u.sendall(c.recv(100)); d=b''\nwhile len(d) < 5: d += u.recv(100)\nc.sendall(d); c.close()", "{port}", "{port:front}"]
[[clients]]
connect = "relay"
script = [ { send = "hello" }, { expect = "hello" } ]
"#,
    );
    let ran = crate::run_loaded(&scenario).await;
    assert_passed(&ran);
    assert_eq!(write_sizes(&ran, "front#1")[..5], [1, 1, 1, 1, 1]);
}

/// `scenarios/faults/udp-loss-seeded.toml` expects exactly the datagrams its seed
/// lets through; this recomputes them with the pure pipeline, so a change to the
/// seeded decisions shows up here, with the list the file must hold.
#[test]
fn the_shipped_udp_loss_scenario_expects_what_its_seed_keeps() {
    let path = crate::scenarios_dir().join("faults/udp-loss-seeded.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept = survivors(7, 20);
    let expected: Vec<String> = kept
        .iter()
        .map(|d| format!("{{ expect = \"{d}\" }}"))
        .collect();
    let expected = expected.join(", ");
    assert!(
        text.contains(&expected),
        "{} must expect exactly: {expected}",
        path.display()
    );
    assert!(text.contains("seed = 7") && text.contains("[proxies.lossy]"));
}

#[tokio::test]
async fn a_naive_server_fails_behind_coalesce_every_time() {
    let file = crate::fixtures_dir().join("faults/naive-server-behind-coalesce.toml");
    for _ in 0..3 {
        let scenario = wirecheck::scenario::load_file(&file).unwrap();
        let ran = crate::run_loaded(&scenario).await;
        let failure = failure(&ran);
        assert_eq!(
            failure.actor.as_deref(),
            Some("client1"),
            "{}",
            rendered(&ran)
        );
        // The one answer is for the merged message, "helloworld".
        assert_eq!(
            failure.actual.as_deref(),
            Some(&b"message 1: hellow"[..]),
            "{}",
            rendered(&ran)
        );
    }
}

#[tokio::test]
async fn a_proxy_holds_a_bounded_amount_and_pushes_back_on_the_sender() {
    // The server never reads: the client's 64 MiB send must block (backpressure)
    // rather than the proxy buffering it, whatever the latency queue would take.
    let ran = run(r#"
[servers.srv]
script = [ { wait = "all-sent", timeout = "3s" } ]
[proxies.slow]
to = "srv"
faults = [ { latency = "50ms" } ]
[[clients]]
connect = "slow"
script = [ { send = { repeat = "x", times = 67108864 }, timeout = "1s" }, { signal = "all-sent" } ]
"#)
    .await;
    let failure = failure(&ran);
    assert_eq!(
        failure.actor.as_deref(),
        Some("client1"),
        "{}",
        rendered(&ran)
    );
    // What the proxy read from the client but had not yet written to the server,
    // at every point of the run.
    let mut in_flight: i64 = 0;
    let mut most: i64 = 0;
    let (client_side, server_side) = {
        let conns: Vec<u64> = events_of(&ran, "slow#1")
            .into_iter()
            .filter_map(|e| match &e.kind {
                EventKind::Accept { conn, .. } | EventKind::Connect { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect();
        (conns[0], conns[1])
    };
    for event in events_of(&ran, "slow#1") {
        match &event.kind {
            EventKind::Read { conn, data } if *conn == client_side => {
                in_flight += data.len() as i64
            }
            EventKind::Write { conn, data } if *conn == server_side => {
                in_flight -= data.len() as i64
            }
            _ => {}
        }
        most = most.max(in_flight);
    }
    let bound = (wirecheck::proxy::tcp::MAX_HELD + 64 * 1024) as i64;
    assert!(most > 0, "the proxy forwarded something");
    assert!(
        most <= bound,
        "the proxy held {most} bytes, more than {bound}"
    );
}

#[tokio::test]
async fn a_proxy_listens_where_bind_says() {
    let held = crate::reserved_tcp_port();
    let ran = run(&format!(
        r#"
[servers.srv]
builtin = "echo"
[proxies.fixed]
to = "srv"
bind = "127.0.0.1:{}"
[[clients]]
connect = "fixed"
script = [ {{ send = "hi" }}, {{ expect = "hi" }} ]
"#,
        held.port
    ))
    .await;
    assert_passed(&ran);
    assert_eq!(crate::connected_peer(&ran, "client1"), held.addr());
}

/// One packet of a trace as tshark shows it: its comment, ports and payload length.
#[derive(Debug)]
struct Shown {
    comment: String,
    src_port: u16,
    dst_port: u16,
    payload: usize,
    fin: bool,
    udp: bool,
}

/// Every fault action reaches the pcapng trace as a comment on the packet it
/// touched: what a proxy sends (`slice`) on the proxy's own packet that carries
/// it, what it threw away (`blackhole`, a UDP `drop`) on the packet that brought
/// it. Read back by tshark, the trace's independent judge.
#[tokio::test]
async fn every_fault_action_is_a_comment_on_the_packet_it_touched() {
    let Some(tshark) = crate::traces::Tshark::find() else {
        return;
    };
    let ran = run(r#"
step_timeout = "2s"
[servers.srv]
builtin = "echo"
[servers.sink]
script = [ { wait = "thrown" } ]
[servers.datagrams]
proto = "udp"
script = [ { wait = "lost" } ]
[proxies.shaper]
to = "srv"
faults = [ { slice = 2, direction = "down" } ]
[proxies.hole]
to = "sink"
faults = [ { blackhole = true, direction = "up" } ]
[proxies.lossy]
to = "datagrams"
seed = 3
faults = [ { drop = 1.0, direction = "up" } ]
[[clients]]
connect = "shaper"
script = [ { send = "hello" }, { expect = "hello" } ]
[[clients]]
connect = "hole"
script = [ { send = "drop-me" }, { signal = "thrown" } ]
[[clients]]
connect = "lossy"
script = [ { send = "gone" }, { send = "also gone" }, { signal = "lost" } ]
"#)
    .await;
    assert_passed(&ran);
    let port_of = |proxy: &str| {
        ran.events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::ProxyStarted { listen, .. } if &*e.actor == proxy => Some(listen.port()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{proxy} started"))
    };
    let (shaper, hole, lossy) = (port_of("shaper"), port_of("hole"), port_of("lossy"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faults.pcapng");
    ran.write_trace(&path, &wirecheck::trace::TraceSettings::default())
        .unwrap();
    let path_text = path.to_str().unwrap();
    let output = tshark.run(&[
        "-r",
        path_text,
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-e",
        "frame.comment",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.len",
        "-e",
        "udp.srcport",
        "-e",
        "udp.dstport",
        "-e",
        "udp.length",
        "-e",
        "tcp.flags.fin",
    ]);
    let shown: Vec<Shown> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<usize>().ok());
            let udp = num(4).is_some();
            Shown {
                comment: f[0].to_owned(),
                src_port: num(if udp { 4 } else { 1 }).unwrap_or(0) as u16,
                dst_port: num(if udp { 5 } else { 2 }).unwrap_or(0) as u16,
                // udp.length counts its 8-byte header.
                payload: if udp {
                    num(6).unwrap_or(8) - 8
                } else {
                    num(3).unwrap_or(0)
                },
                fin: matches!(f.get(7).copied(), Some("1" | "True")),
                udp,
            }
        })
        .collect();
    let notes = faults(&ran);
    for kind in ["slice", "blackhole", "drop"] {
        assert!(
            notes.iter().any(|(_, f, _)| *f == kind),
            "{kind}: {notes:?}"
        );
    }
    for (actor, fault, action) in &notes {
        let text = format!("{fault}: {action}");
        let recorded = notes
            .iter()
            .filter(|(_, f, a)| format!("{f}: {a}") == text)
            .count();
        let carriers: Vec<&Shown> = shown.iter().filter(|p| p.comment.contains(&text)).collect();
        let in_comments: usize = shown.iter().map(|p| p.comment.matches(&text).count()).sum();
        assert_eq!(in_comments, recorded, "{actor} {text}: {shown:#?}");
        for packet in carriers {
            let touched = match *fault {
                // The proxy's own packet that carries the slice to the client.
                "slice" => !packet.udp && packet.src_port == shaper && packet.payload > 0,
                // The client's packet with the bytes the proxy threw away, and
                // the client's FIN it did not forward.
                "blackhole" if action.contains("bytes") => {
                    !packet.udp && packet.dst_port == hole && packet.payload == 7
                }
                "blackhole" => !packet.udp && packet.dst_port == hole && packet.fin,
                // The client's datagram the proxy dropped.
                "drop" => packet.udp && packet.dst_port == lossy && packet.payload > 0,
                other => panic!("no fault `{other}` in this scenario"),
            };
            assert!(touched, "{text} is on the wrong packet: {packet:?}");
        }
    }
}
