//! Every step kind, once passing and once failing, over real loopback sockets.
//!
//! Where a step's promise is about socket calls (chunk sizes, single reads, never
//! over-reading), the test checks the event log, which records each call.

use std::time::Duration;

use rstest::rstest;
use wirecheck::event::{EventKind, ShutdownHow};
use wirecheck::runner::FailureKind;

use crate::{
    assert_passed, events_of, failure, position_of, refusing_tcp_port, rendered, run, run_loaded,
    scenario, unreachable_udp_port, write_sizes,
};

/// Byte counts of every read call an actor made (TCP reads and UDP datagrams).
fn read_sizes(outcome: &crate::Ran, actor: &str) -> Vec<usize> {
    events_of(outcome, actor)
        .into_iter()
        .filter_map(|e| match &e.kind {
            EventKind::Read { data, .. } | EventKind::DatagramReceived { data, .. } => {
                Some(data.len())
            }
            _ => None,
        })
        .collect()
}

/// When an actor's step `index` started and passed.
fn step_span(outcome: &crate::Ran, actor: &str, index: usize) -> (Duration, Duration) {
    let events = events_of(outcome, actor);
    let started = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::StepStarted { index: i, .. } if *i == index))
        .map(|e| e.at)
        .unwrap_or_else(|| panic!("{actor} never started step {index}"));
    let passed = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::StepPassed { index: i } if *i == index))
        .map(|e| e.at)
        .unwrap_or_else(|| panic!("{actor} never passed step {index}"));
    (started, passed)
}

/// Bytes as scenario hex data: pairs of digits separated by spaces.
fn hex(bytes: &[u8]) -> String {
    let digits = hex::encode(bytes);
    let pairs: Vec<&str> = (0..bytes.len())
        .map(|i| &digits[2 * i..2 * i + 2])
        .collect();
    pairs.join(" ")
}

/// One frame, encoded by hand (independently of the library's codecs).
fn frame(framing: &str, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = match framing {
        "u32be" => (len as u32).to_be_bytes().to_vec(),
        "u32le" => (len as u32).to_le_bytes().to_vec(),
        "i32le" => (len as i32).to_le_bytes().to_vec(),
        "u16be" => (len as u16).to_be_bytes().to_vec(),
        "line" => Vec::new(),
        other => panic!("no hand encoder for {other}"),
    };
    out.extend_from_slice(payload);
    if framing == "line" {
        out.push(b'\n');
    }
    out
}

// ---------------------------------------------------------------- send

#[tokio::test]
async fn send_writes_in_the_given_chunks_with_the_delay_between_them() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect = "helloeggo2" }, { send = "ok" } ]

[[clients]]
connect = "srv"
nodelay = true
script = [
  { send = { text = "helloeggo2", chunks = [1, 2, 3], delay = "20ms" } },
  { expect = "ok" },
]
"#)
    .await;
    assert_passed(&outcome);
    // The last size repeats until the data is used up.
    assert_eq!(write_sizes(&outcome, "client1"), vec![1, 2, 3, 3, 1]);
    let times: Vec<Duration> = events_of(&outcome, "client1")
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::Write { .. }))
        .map(|e| e.at)
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(20),
            "writes only {:?} apart: {times:?}",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test]
async fn send_to_a_peer_that_reset_fails_at_that_step() {
    let scenario = scenario(
        r#"
[servers.srv]
linger = "0s"
script = [ { expect = "hi" }, { close = true } ]

[[clients]]
connect = "srv"
script = [
  { send = "hi" },
  { expect_reset = true },
  { send = "too late" },
]
"#,
    );
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Step);
    assert_eq!(failure.actor.as_deref(), Some("client1"));
    let step = failure.step.as_ref().expect("the failing step");
    assert_eq!((step.index, step.keyword), (3, "send"));
    assert!(
        failure
            .message
            .contains("reset the connection while we were sending"),
        "{}",
        failure.message
    );
    let text = rendered(&outcome);
    let at = position_of(&scenario.path, &scenario.source, r#"{ send = "too late" }"#);
    assert!(text.contains(&format!("--> {at}")), "{text}");
}

#[tokio::test]
async fn send_times_out_when_the_peer_does_not_read() {
    let outcome = run(r#"
[servers.srv]
recv_buffer = 4096
script = [ { wait = "never", timeout = "5s" } ]

[[clients]]
connect = "srv"
send_buffer = 4096
script = [
  { send = { repeat = "x", times = 4194304 }, timeout = "200ms" },
  { signal = "never" },
]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::StepTimeout);
    assert_eq!(failure.actor.as_deref(), Some("client1"));
    assert!(
        failure
            .message
            .contains("has not read anything: is it reading at all?"),
        "{}",
        failure.message
    );
    assert!(failure.waited.unwrap() >= Duration::from_millis(200));
}

// ---------------------------------------------------------------- recv

#[tokio::test]
async fn recv_without_expect_takes_one_read_and_leaves_the_rest() {
    let outcome = run(r#"
[servers.srv]
script = [
  { await_queued = 9 },
  { recv = { max = 3 } },
  { recv = { max = 100, expect = "lo_egg" } },
]

[[clients]]
connect = "srv"
script = [ { send = "hello_egg" } ]
"#)
    .await;
    assert_passed(&outcome);
    assert_eq!(read_sizes(&outcome, "srv"), vec![3, 6]);
}

#[tokio::test]
async fn recv_that_returns_fewer_bytes_than_expected_fails_with_both_sides() {
    let outcome = run(r#"
[servers.srv]
script = [
  { await_queued = 5 },
  { recv = { max = 10, expect = "helloworld" } },
]

[[clients]]
connect = "srv"
script = [ { send = "hello" }, { expect_eof = true } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Step);
    assert_eq!(failure.actor.as_deref(), Some("srv"));
    assert_eq!(failure.step.as_ref().unwrap().index, 2);
    assert_eq!(
        failure.message,
        "one recv of up to 10 bytes returned 5 bytes, expected 10"
    );
    assert_eq!(failure.expected.as_deref(), Some(&b"helloworld"[..]));
    assert_eq!(failure.actual.as_deref(), Some(&b"hello"[..]));
    let text = rendered(&outcome);
    assert!(
        text.contains("first difference at offset 5 (0x5): expected 0x77 'w', got end of data"),
        "{text}"
    );
    assert!(text.contains("expected (10 bytes)"), "{text}");
    assert!(text.contains("actual (5 bytes)"), "{text}");
}

#[tokio::test]
async fn recv_of_the_right_length_but_other_bytes_fails() {
    let outcome = run(r#"
[servers.srv]
script = [ { await_queued = 4 }, { recv = { max = 4, expect = "pong" } } ]

[[clients]]
connect = "srv"
script = [ { send = "ping" }, { expect_eof = true } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert!(
        failure
            .message
            .contains("expected length (4) but different bytes"),
        "{}",
        failure.message
    );
    assert!(
        rendered(&outcome)
            .contains("first difference at offset 1 (0x1): expected 0x6f 'o', got 0x69 'i'"),
        "{}",
        rendered(&outcome)
    );
}

#[tokio::test]
async fn recv_after_the_peer_closed_reports_zero_bytes() {
    let outcome = run(r#"
[servers.srv]
script = [ { recv = { max = 10, expect = "x" } } ]

[[clients]]
connect = "srv"
script = [ { close = true } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.actor.as_deref(), Some("srv"));
    assert!(
        failure
            .message
            .contains("recv returned 0 bytes: the peer closed the connection"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn recv_expecting_nothing_passes_only_at_end_of_stream() {
    let passing = run(r#"
[servers.srv]
script = [ { recv = { max = 10, expect = "" } } ]

[[clients]]
connect = "srv"
script = [ { close = true } ]
"#)
    .await;
    assert_passed(&passing);
    let failing = run(r#"
[servers.srv]
script = [ { await_queued = 4 }, { recv = { max = 10, expect = "" } } ]

[[clients]]
connect = "srv"
script = [ { send = "data" }, { expect_eof = true } ]
"#)
    .await;
    let failure = failure(&failing);
    assert_eq!(failure.actual.as_deref(), Some(&b"data"[..]));
}

// ---------------------------------------------------------------- expect

#[rstest]
#[case::one_byte_at_a_time(&[1])]
#[case::straddling_the_boundary(&[1, 3])]
#[case::seven_then_three(&[7])]
#[case::irregular(&[2, 5, 1])]
#[tokio::test]
async fn expect_reassembles_however_the_stream_is_split(#[case] chunks: &[usize]) {
    let chunks: Vec<String> = chunks.iter().map(ToString::to_string).collect();
    let outcome = run(&format!(
        r#"
[servers.srv]
script = [ {{ expect = "hello" }}, {{ expect = "eggo2" }}, {{ send = "both ok" }} ]

[[clients]]
connect = "srv"
nodelay = true
script = [
  {{ send = {{ text = "helloeggo2", chunks = [{}], delay = "1ms" }} }},
  {{ expect = "both ok" }},
]
"#,
        chunks.join(", ")
    ))
    .await;
    assert_passed(&outcome);
    // `expect` never reads past its own bytes: some read ends exactly at offset 5.
    let mut total = 0;
    let boundaries: Vec<usize> = read_sizes(&outcome, "srv")
        .into_iter()
        .map(|n| {
            total += n;
            total
        })
        .collect();
    assert!(boundaries.contains(&5), "reads ended at {boundaries:?}");
    assert_eq!(total, 10);
}

#[tokio::test]
async fn expect_mismatch_reports_the_first_differing_offset() {
    let scenario = scenario(
        r#"
[servers.echo]
builtin = "echo"

[[clients]]
connect = "echo"
script = [
  { send = "hello\n" },
  { expect = "hellO\n" },
]
"#,
    );
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Step);
    assert_eq!(
        failure.message,
        "the bytes that arrived differ from the expected ones"
    );
    let text = rendered(&outcome);
    let at = position_of(
        &scenario.path,
        &scenario.source,
        r#"{ expect = "hellO\n" }"#,
    );
    assert!(text.contains(&format!("--> {at}")), "{text}");
    assert!(text.contains("actor `client1`, step 2 (expect)"), "{text}");
    assert!(
        text.contains("first difference at offset 4 (0x4): expected 0x4f 'O', got 0x6f 'o'"),
        "{text}"
    );
    assert!(text.contains("the step waited"), "{text}");
}

#[tokio::test]
async fn expect_fails_when_the_peer_closes_early() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect = "hello" } ]

[[clients]]
connect = "srv"
script = [ { send = "hel" }, { close = true } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.actor.as_deref(), Some("srv"));
    assert_eq!(
        failure.message,
        "the peer closed the connection after 3 of 5 expected bytes"
    );
    assert_eq!(failure.actual.as_deref(), Some(&b"hel"[..]));
}

// ---------------------------------------------------------------- frames

#[rstest]
#[case("u32be")]
#[case("u32le")]
#[case("i32le")]
#[case("u16be")]
#[case("line")]
#[tokio::test]
async fn send_frame_and_expect_frame_match_the_wire_format(#[case] framing: &str) {
    let sent = hex(&frame(framing, b"hi!"));
    // Two frames in one write: `expect_frame` must take exactly one at a time.
    let mut two = frame(framing, b"ok");
    two.extend(frame(framing, b"next"));
    let outcome = run(&format!(
        r#"
[servers.srv]
script = [
  {{ expect = {{ hex = "{sent}" }} }},
  {{ send = {{ hex = "{}" }} }},
]

[[clients]]
connect = "srv"
script = [
  {{ send_frame = {{ framing = "{framing}", text = "hi!" }} }},
  {{ expect_frame = {{ framing = "{framing}", text = "ok" }} }},
  {{ expect_frame = {{ framing = "{framing}", text = "next" }} }},
]
"#,
        hex(&two)
    ))
    .await;
    assert_passed(&outcome);
}

#[rstest]
#[case("u32be")]
#[case("u32le")]
#[case("i32le")]
#[case("u16be")]
#[case("line")]
#[tokio::test]
async fn expect_frame_with_another_payload_fails(#[case] framing: &str) {
    let outcome = run(&format!(
        r#"
[servers.srv]
script = [ {{ send = {{ hex = "{}" }} }}, {{ wait = "done" }} ]

[[clients]]
connect = "srv"
script = [
  {{ expect_frame = {{ framing = "{framing}", text = "hi!" }} }},
  {{ signal = "done" }},
]
"#,
        hex(&frame(framing, b"hi?"))
    ))
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Step);
    assert_eq!(failure.step.as_ref().unwrap().keyword, "expect_frame");
    assert_eq!(
        failure.message,
        "the frame's payload (3 bytes) differs from the expected one (3 bytes)"
    );
    assert_eq!(failure.expected.as_deref(), Some(&b"hi!"[..]));
    assert_eq!(failure.actual.as_deref(), Some(&b"hi?"[..]));
    assert!(
        rendered(&outcome).contains("first difference at offset 2"),
        "{}",
        rendered(&outcome)
    );
}

#[tokio::test]
async fn a_line_frame_strips_a_trailing_cr() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "hello\r\n" } ]

[[clients]]
connect = "srv"
script = [ { expect_frame = { framing = "line", text = "hello" } } ]
"#)
    .await;
    assert_passed(&outcome);
}

#[tokio::test]
async fn a_negative_i32le_length_is_not_a_valid_frame() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = { hex = "ff ff ff ff 00" } }, { wait = "done" } ]

[[clients]]
connect = "srv"
script = [
  { expect_frame = { framing = "i32le", text = "x" } },
  { signal = "done" },
]
"#)
    .await;
    let failure = failure(&outcome);
    assert!(
        failure.message.starts_with("not a valid i32le frame"),
        "{}",
        failure.message
    );
    // Only the 4-byte prefix was read: the byte after it stays in the socket.
    assert_eq!(failure.actual.as_deref(), Some(&[0xff; 4][..]));
}

#[tokio::test]
async fn a_frame_cut_short_by_the_peer_fails() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = { hex = "00 00 00 08 61 62" } }, { close = true } ]

[[clients]]
connect = "srv"
script = [ { expect_frame = { framing = "u32be", text = "abcdefgh" } } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(
        failure.message,
        "the peer closed the connection inside a u32be frame (6 bytes of it arrived)"
    );
    // The dump shows the raw bytes received; there is no expected side.
    assert_eq!(failure.expected, None);
    assert_eq!(
        failure.actual.as_deref(),
        Some(&[0, 0, 0, 8, b'a', b'b'][..])
    );
    assert!(
        rendered(&outcome).contains("received (6 bytes)"),
        "{}",
        rendered(&outcome)
    );
}

// ---------------------------------------------------------------- expect_eof

#[tokio::test]
async fn expect_eof_passes_on_fin() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect = "bye" }, { close = true } ]

[[clients]]
connect = "srv"
script = [ { send = "bye" }, { expect_eof = true } ]
"#)
    .await;
    assert_passed(&outcome);
    assert!(events_of(&outcome, "client1")
        .iter()
        .any(|e| matches!(e.kind, EventKind::PeerEof { .. })));
    assert!(events_of(&outcome, "srv")
        .iter()
        .any(|e| matches!(e.kind, EventKind::Close { reset: false, .. })));
}

#[tokio::test]
async fn expect_eof_fails_when_data_arrives() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "extra" }, { close = true } ]

[[clients]]
connect = "srv"
script = [ { await_queued = 5 }, { expect_eof = true } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.step.as_ref().unwrap().keyword, "expect_eof");
    assert_eq!(
        failure.message,
        "expected the peer to close, but 5 more bytes arrived"
    );
    assert_eq!(failure.actual.as_deref(), Some(&b"extra"[..]));
}

// ---------------------------------------------------------------- expect_reset

#[tokio::test]
async fn expect_reset_passes_when_the_peer_closes_with_linger_zero() {
    let outcome = run(r#"
[servers.srv]
linger = "0s"
script = [ { expect = "hi" }, { close = true } ]

[[clients]]
connect = "srv"
script = [ { send = "hi" }, { expect_reset = true } ]
"#)
    .await;
    assert_passed(&outcome);
    assert!(events_of(&outcome, "srv")
        .iter()
        .any(|e| matches!(e.kind, EventKind::Close { reset: true, .. })));
    assert!(events_of(&outcome, "client1")
        .iter()
        .any(|e| matches!(e.kind, EventKind::PeerReset { .. })));
}

#[tokio::test]
async fn expect_reset_fails_on_an_orderly_close() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect = "hi" }, { close = true } ]

[[clients]]
connect = "srv"
script = [ { send = "hi" }, { expect_reset = true } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Step);
    assert_eq!(
        failure.message,
        "expected a reset, but the peer closed the connection in order (FIN)"
    );
}

// ---------------------------------------------------------------- await_queued

#[tokio::test]
async fn await_queued_makes_two_sends_arrive_in_one_read() {
    let outcome = run(r#"
[servers.srv]
script = [
  { wait = "both-sent" },
  { await_queued = 10 },
  { recv = { max = 1024, expect = "helloeggo2" } },
]

[[clients]]
connect = "srv"
script = [ { send = "hello" }, { send = "eggo2" }, { signal = "both-sent" } ]
"#)
    .await;
    assert_passed(&outcome);
    assert_eq!(write_sizes(&outcome, "client1"), vec![5, 5]);
    assert_eq!(read_sizes(&outcome, "srv"), vec![10]);
}

#[tokio::test]
async fn await_queued_times_out_naming_queued_and_wanted_bytes() {
    let outcome = run(r#"
[servers.srv]
script = [
  { wait = "sent" },
  { await_queued = 10, timeout = "150ms" },
  { signal = "never" },
]

[[clients]]
connect = "srv"
script = [ { send = "abc" }, { signal = "sent" }, { wait = "never", timeout = "5s" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::StepTimeout);
    assert_eq!(failure.actor.as_deref(), Some("srv"));
    assert_eq!(
        failure.message,
        "timed out with 3 of 10 bytes in the receive queue"
    );
    assert!(failure.waited.unwrap() >= Duration::from_millis(150));
}

// ---------------------------------------------------------------- shutdown

#[tokio::test]
async fn shutdown_write_sends_fin_and_keeps_reading() {
    let outcome = run(r#"
[servers.srv]
script = [
  { expect = "request" },
  { expect_eof = true },
  { send = "response" },
]

[[clients]]
connect = "srv"
script = [
  { send = "request" },
  { shutdown = "write" },
  { expect = "response" },
  { expect_eof = true },
]
"#)
    .await;
    assert_passed(&outcome);
    assert!(events_of(&outcome, "client1").iter().any(|e| matches!(
        e.kind,
        EventKind::Shutdown {
            how: ShutdownHow::Write,
            ..
        }
    )));
}

#[tokio::test]
async fn shutdown_read_ends_reading_but_not_writing() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect = "still writing" } ]

[[clients]]
connect = "srv"
script = [
  { shutdown = "read" },
  { expect_eof = true },
  { send = "still writing" },
]
"#)
    .await;
    assert_passed(&outcome);
}

#[tokio::test]
async fn shutdown_both_is_seen_as_eof_by_the_peer() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect = "x" }, { expect_eof = true } ]

[[clients]]
connect = "srv"
script = [ { send = "x" }, { shutdown = "both" } ]
"#)
    .await;
    assert_passed(&outcome);
}

#[tokio::test]
async fn sending_after_shutdown_both_fails() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect_eof = true } ]

[[clients]]
connect = "srv"
script = [ { shutdown = "both" }, { send = "y" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.actor.as_deref(), Some("client1"));
    assert_eq!(failure.step.as_ref().unwrap().index, 2);
    assert!(
        failure.message.contains("already shut down its write side"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn sending_after_our_own_shutdown_does_not_blame_the_peer() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect_eof = true }, { wait = "never" } ]

[[clients]]
connect = "srv"
script = [ { shutdown = "write" }, { send = "y" }, { signal = "never" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.step.as_ref().unwrap().index, 2);
    assert!(
        !failure.message.contains("the peer reset"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn shutdown_after_close_fails() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect_eof = true } ]

[[clients]]
connect = "srv"
script = [ { close = true }, { shutdown = "write" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.step.as_ref().unwrap().keyword, "shutdown");
    assert_eq!(
        failure.message,
        "the socket was already closed by an earlier `close` step"
    );
}

#[tokio::test]
async fn shutdown_before_connect_fails() {
    let outcome = run(r#"
[servers.srv]
builtin = "discard"

[[clients]]
connect = "srv"
script = [ { shutdown = "write" }, { connect = true } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.step.as_ref().unwrap().index, 1);
    assert!(
        failure.message.contains("not connected yet"),
        "{}",
        failure.message
    );
}

// ---------------------------------------------------------------- close

#[tokio::test]
async fn close_sends_fin_to_the_peer() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect = "last words" }, { expect_eof = true } ]

[[clients]]
connect = "srv"
script = [ { send = "last words" }, { close = true } ]
"#)
    .await;
    assert_passed(&outcome);
    assert!(events_of(&outcome, "client1")
        .iter()
        .any(|e| matches!(e.kind, EventKind::Close { reset: false, .. })));
}

#[tokio::test]
async fn a_step_after_close_fails() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect_eof = true } ]

[[clients]]
connect = "srv"
script = [ { close = true }, { send = "zombie" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.step.as_ref().unwrap().index, 2);
    assert_eq!(
        failure.message,
        "the socket was already closed by an earlier `close` step"
    );
}

// ---------------------------------------------------------------- sleep

#[tokio::test]
async fn sleep_pauses_at_least_its_duration() {
    let outcome = run(r#"
[servers.srv]
builtin = "discard"

[[clients]]
connect = "srv"
script = [ { sleep = "40ms" } ]
"#)
    .await;
    assert_passed(&outcome);
    let (started, passed) = step_span(&outcome, "client1", 1);
    assert!(
        passed - started >= Duration::from_millis(40),
        "{:?}",
        passed - started
    );
}

#[tokio::test]
async fn sleep_past_the_scenario_timeout_fails_the_scenario() {
    let outcome = run(r#"
timeout = "200ms"

[servers.srv]
builtin = "discard"

[[clients]]
connect = "srv"
script = [ { sleep = "5s" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::ScenarioTimeout);
    assert!(
        failure
            .notes
            .iter()
            .any(|n| n.starts_with(r#"client1 was at step 1 `{ sleep = "5s" }`"#)),
        "{:?}",
        failure.notes
    );
}

// ---------------------------------------------------------------- signal / wait

#[tokio::test]
async fn signal_wakes_a_waiter_and_stays_raised() {
    let outcome = run(r#"
[servers.srv]
builtin = "discard"

[[clients]]
name = "waiter"
connect = "srv"
script = [ { wait = "go" }, { signal = "back" } ]

[[clients]]
name = "signaller"
connect = "srv"
script = [
  { signal = "go" },
  { wait = "back" },
  { wait = "go" },
]
"#)
    .await;
    assert_passed(&outcome);
    let (go_raised, _) = step_span(&outcome, "signaller", 1);
    let (_, woken) = step_span(&outcome, "waiter", 1);
    assert!(woken >= go_raised, "the wait passed before the signal");
    // The signal latches: the signaller's second wait for `go` passed although
    // nobody raised `go` again (without the latch it would have failed the run with
    // a step timeout).
    step_span(&outcome, "signaller", 3);
}

#[tokio::test]
async fn wait_times_out_when_the_signal_comes_too_late() {
    let outcome = run(r#"
[servers.srv]
builtin = "discard"

[[clients]]
name = "waiter"
connect = "srv"
script = [ { wait = "go", timeout = "100ms" } ]

[[clients]]
name = "slowpoke"
connect = "srv"
script = [ { sleep = "3s" }, { signal = "go" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::StepTimeout);
    assert_eq!(failure.actor.as_deref(), Some("waiter"));
    assert_eq!(failure.message, "timed out waiting for signal `go`");
    assert!(failure.waited.unwrap() >= Duration::from_millis(100));
    // The failure ended the run: the sleeper was stopped mid-sleep, not waited for.
    assert!(
        !events_of(&outcome, "slowpoke")
            .iter()
            .any(|e| matches!(e.kind, EventKind::StepPassed { index: 1 })),
        "the run waited for the sleeper"
    );
}

// ---------------------------------------------------------------- connect

#[tokio::test]
async fn connect_step_connects_late() {
    let outcome = run(r#"
[servers.srv]
connections = 2
script = [ { expect = "hi" }, { send = "ok" } ]

[[clients]]
name = "early"
connect = "srv"
script = [ { send = "hi" }, { expect = "ok" }, { signal = "early-done" } ]

[[clients]]
name = "late"
connect = "srv"
script = [
  { wait = "early-done" },
  { connect = true },
  { send = "hi" },
  { expect = "ok" },
]
"#)
    .await;
    assert_passed(&outcome);
    let late = events_of(&outcome, "late");
    assert!(
        matches!(late[0].kind, EventKind::StepStarted { index: 1, .. }),
        "the late client did something before its first step: {:?}",
        late[0]
    );
    let connected_at = late
        .iter()
        .find(|e| matches!(e.kind, EventKind::Connect { .. }))
        .expect("the late client connected")
        .at;
    let (early_done, _) = step_span(&outcome, "early", 3);
    assert!(
        connected_at > early_done,
        "connected before the `connect` step"
    );
}

#[tokio::test]
async fn connect_step_fails_when_the_server_stopped_accepting() {
    let outcome = run(r#"
[servers.srv]
script = [ { signal = "accepted" }, { wait = "finish" } ]

[[clients]]
name = "first"
connect = "srv"
script = [ { wait = "refused-or-not", timeout = "5s" } ]

[[clients]]
name = "late"
connect = "srv"
script = [
  { wait = "accepted" },
  { connect = true },
  { signal = "refused-or-not" },
  { signal = "finish" },
]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Step);
    assert_eq!(failure.actor.as_deref(), Some("late"));
    assert_eq!(failure.step.as_ref().unwrap().keyword, "connect");
    assert!(
        failure.message.starts_with("cannot connect to 127.0.0.1:"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("refused"), "{}", failure.message);
}

// ---------------------------------------------------------------- UDP

#[tokio::test]
async fn udp_keeps_datagram_boundaries_and_truncates_recv() {
    let outcome = run(r#"
[servers.srv]
proto = "udp"
script = [
  { wait = "all-sent" },
  { recv = { max = 5, expect = "hello" } },
  { expect = "second" },
  { expect = "ab" },
  { expect = "cd" },
  { expect = "e" },
  { send = "reply" },
]

[[clients]]
connect = "srv"
script = [
  { send = "helloworld" },
  { send = "second" },
  { send = { text = "abcde", chunks = [2] } },
  { signal = "all-sent" },
  { expect = "reply" },
]
"#)
    .await;
    assert_passed(&outcome);
    assert_eq!(write_sizes(&outcome, "client1"), vec![10, 6, 2, 2, 1]);
    assert_eq!(read_sizes(&outcome, "srv"), vec![5, 6, 2, 2, 1]);
}

#[tokio::test]
async fn udp_echo_round_trip_passes() {
    let outcome = run(r#"
[servers.echo]
builtin = "echo"
proto = "udp"

[[clients]]
connect = "echo"
script = [
  { send = { hex = "00 ff 10" } },
  { expect = { hex = "00 ff 10" } },
  { send = "two" },
  { recv = { max = 100, expect = "two" } },
]
"#)
    .await;
    assert_passed(&outcome);
}

#[tokio::test]
async fn udp_expect_with_another_datagram_fails() {
    let outcome = run(r#"
[servers.echo]
builtin = "echo"
proto = "udp"

[[clients]]
connect = "echo"
script = [ { send = "ping" }, { expect = "pong" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Step);
    assert_eq!(
        failure.message,
        "the datagram holds 4 bytes that differ from the 4 expected"
    );
    assert_eq!(failure.actual.as_deref(), Some(&b"ping"[..]));
}

#[tokio::test]
async fn a_udp_server_cannot_send_before_a_datagram_arrived() {
    let outcome = run(r#"
[servers.srv]
proto = "udp"
script = [ { send = "hello?" }, { wait = "never" } ]

[[clients]]
connect = "srv"
script = [ { expect = "hello?", timeout = "5s" }, { signal = "never" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.actor.as_deref(), Some("srv"));
    assert!(
        failure.message.contains("no datagram has arrived yet"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn udp_recv_from_a_closed_port_reports_the_refusal() {
    let closed = unreachable_udp_port();
    let port = closed.port;
    let outcome = run(&format!(
        r#"
[[clients]]
connect = "127.0.0.1:{port}"
proto = "udp"
script = [ {{ send = "anyone?" }}, {{ expect = "yes", timeout = "1s" }} ]
"#
    ))
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Step);
    assert!(
        failure.message.starts_with("receiving a datagram failed"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("refused"), "{}", failure.message);
}

// ---------------------------------------------------------------- count

#[tokio::test]
async fn count_runs_that_many_clients_at_once() {
    let outcome = run(r#"
[servers.echo]
builtin = "echo"

[[clients]]
connect = "echo"
count = 5
script = [ { send = "mine\n" }, { expect = "mine\n" } ]
"#)
    .await;
    assert_passed(&outcome);
    for copy in 1..=5 {
        let actor = format!("client1#{copy}");
        assert!(
            events_of(&outcome, &actor)
                .iter()
                .any(|e| matches!(e.kind, EventKind::Connect { .. })),
            "{actor} never connected"
        );
    }
    let accepts = outcome
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Accept { .. }))
        .count();
    assert_eq!(accepts, 5);
}

#[tokio::test]
async fn more_clients_than_the_server_accepts_fail() {
    let outcome = run(r#"
step_timeout = "1s"

[servers.srv]
connections = 2
script = [ { expect = "hi" }, { send = "hi" } ]

[[clients]]
connect = "srv"
count = 3
script = [ { send = "hi" }, { expect = "hi" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert!(
        failure
            .actor
            .as_deref()
            .is_some_and(|a| a.starts_with("client1#")),
        "{failure:?}"
    );
}

// ---------------------------------------------------------------- connections

#[tokio::test]
async fn a_script_server_runs_its_script_on_each_of_n_connections() {
    let outcome = run(r#"
[servers.srv]
connections = 3
script = [ { expect = "hi" }, { send = "bye" }, { close = true } ]

[[clients]]
connect = "srv"
count = 3
script = [ { send = "hi" }, { expect = "bye" }, { expect_eof = true } ]
"#)
    .await;
    assert_passed(&outcome);
    for number in 1..=3 {
        let actor = format!("srv#{number}");
        assert!(
            events_of(&outcome, &actor)
                .iter()
                .any(|e| matches!(e.kind, EventKind::Accept { .. })),
            "{actor} never accepted"
        );
    }
}

#[tokio::test]
async fn a_script_server_missing_a_connection_times_out_naming_it() {
    let outcome = run(r#"
timeout = "300ms"

[servers.srv]
connections = 3
script = [ { expect = "hi" } ]

[[clients]]
connect = "srv"
count = 2
script = [ { send = "hi" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::ScenarioTimeout);
    assert!(
        failure
            .notes
            .iter()
            .any(|n| n.starts_with("srv#3 was at accepting connection 3 of 3")),
        "{:?}",
        failure.notes
    );
}

#[tokio::test]
async fn a_tcp_client_to_a_closed_port_fails_to_connect() {
    let closed = refusing_tcp_port();
    let port = closed.port;
    let outcome = run(&format!(
        r#"
[[clients]]
connect = "127.0.0.1:{port}"
script = [ {{ send = "hello?" }} ]
"#
    ))
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.actor.as_deref(), Some("client1"));
    assert!(
        failure
            .message
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("refused"), "{}", failure.message);
    assert!(outcome
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::ConnectFailed { .. })));
}

/// Regression: with a small `max_line`, the chat server's own error replies were
/// longer than its outgoing line limit and the client was silently dropped.
#[tokio::test]
async fn chat_error_replies_survive_a_small_max_line() {
    let outcome = run(r#"
[servers.chat]
builtin = "chat"
max_line = 16

[[clients]]
script = [
  { send = "iam:a b\n" },
  { expect = "error:name must be 1 to 32 bytes without spaces, colons or control characters\n" },
  { send = "iam:ann\n" },
  { expect = "ok:ann\n" },
]
"#)
    .await;
    assert_passed(&outcome);
}

// ---------------------------------------------------------------- file slices

/// `{ file, offset, len }` works wherever DATA does: a send in chunks, an expect
/// that spans more than one piece of the file, a single recv, UDP datagrams.
#[tokio::test]
async fn file_slices_are_data_for_send_expect_recv_and_chunks() {
    let dir = tempfile::tempdir().unwrap();
    // More than one read piece (1 MiB), so the runner reads the slice in parts.
    let big: Vec<u8> = (0..(3u32 << 20) / 2).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &big).unwrap();
    std::fs::write(dir.path().join("small.bin"), b"..hello,eggo2..").unwrap();
    let len = big.len() - 10;
    let text = format!(
        r#"
[servers.srv]
script = [
  {{ expect = {{ file = "big.bin", offset = 3, len = {len} }} }},
  {{ await_queued = 5 }},
  {{ recv = {{ max = 5, expect = {{ file = "small.bin", offset = 2, len = 5 }} }} }},
  {{ expect = {{ file = "small.bin", offset = 8, len = 5 }} }},
  {{ send = {{ file = "small.bin", offset = 2, len = 11, chunks = [5, 1] }} }},
]

[[clients]]
connect = "srv"
nodelay = true
script = [
  {{ send = {{ file = "big.bin", offset = 3, len = {len} }} }},
  {{ send = {{ file = "small.bin", offset = 2, len = 5 }} }},
  {{ send = {{ file = "small.bin", offset = 8, len = 5, chunks = [2] }} }},
  {{ expect = "hello,eggo2" }},
]
"#
    );
    let outcome = crate::run_loaded(&crate::scenario_in(dir.path(), &text)).await;
    assert_passed(&outcome);
    let writes = write_sizes(&outcome, "client1");
    assert_eq!(writes.iter().sum::<usize>(), len + 10);
    assert_eq!(&writes[writes.len() - 4..], [5, 2, 2, 1]);
    assert_eq!(write_sizes(&outcome, "srv"), vec![5, 1, 1, 1, 1, 1, 1]);

    let udp = r#"
[servers.srv]
proto = "udp"
script = [
  { expect = { file = "small.bin", offset = 2, len = 5 } },
  { send = { file = "small.bin", offset = 8, len = 5 } },
]

[[clients]]
connect = "srv"
script = [
  { send = { file = "small.bin", offset = 2, len = 5 } },
  { expect = "eggo2" },
]
"#;
    let outcome = crate::run_loaded(&crate::scenario_in(dir.path(), udp)).await;
    assert_passed(&outcome);
    assert_eq!(write_sizes(&outcome, "client1"), vec![5]);
}

/// An expect against a file slice that differs fails at the first different byte
/// and shows the expected bytes from the file.
#[tokio::test]
async fn a_file_slice_that_differs_fails_with_both_sides_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.bin"), b"hello world").unwrap();
    let text = r#"
[servers.srv]
script = [ { expect = { file = "x.bin" } } ]

[[clients]]
connect = "srv"
script = [ { send = "hello there" } ]
"#;
    let outcome = crate::run_loaded(&crate::scenario_in(dir.path(), text)).await;
    let failure = failure(&outcome);
    assert_eq!(failure.expected.as_deref(), Some(&b"hello world"[..]));
    let actual = failure.actual.as_deref().unwrap();
    assert!(actual.starts_with(b"hello t"), "{actual:?}");
}

/// The file is read when the step runs: one that shrank since loading is a clear
/// failure of that step, never short data.
#[tokio::test]
async fn a_file_that_shrank_after_loading_fails_its_step() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.bin"), b"0123456789").unwrap();
    let text = r#"
[servers.srv]
builtin = "discard"

[[clients]]
connect = "srv"
script = [ { send = { file = "x.bin", offset = 4, len = 6 } } ]
"#;
    let scenario = crate::scenario_in(dir.path(), text);
    std::fs::write(dir.path().join("x.bin"), b"0123").unwrap();
    let outcome = crate::run_loaded(&scenario).await;
    let message = rendered(&outcome);
    assert!(
        message.contains("`x.bin` no longer holds bytes 4..10"),
        "{message}"
    );
}
