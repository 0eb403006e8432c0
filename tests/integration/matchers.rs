//! Matchers over real loopback sockets: `expect` with a regex, `contains`, `len` and
//! `json`, `expect_line`, `expect_silence`, `recv` with a MATCH, and the top-level
//! `unread` policy.

use wirecheck::event::EventKind;

use crate::{assert_passed, events_of, failure, rendered, run};

/// The bytes of every read call an actor made, in order.
fn reads(outcome: &crate::Ran, actor: &str) -> Vec<Vec<u8>> {
    events_of(outcome, actor)
        .into_iter()
        .filter_map(|e| match &e.kind {
            EventKind::Read { data, .. } | EventKind::DatagramReceived { data, .. } => {
                Some(data.bytes().expect("payloads are collected").to_vec())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_stream_regex_reads_across_sends_and_leaves_the_rest_for_the_next_step() {
    let outcome = run(r#"
[servers.srv]
nodelay = true
script = [ { send = { text = "time 12:34:56\nnext", chunks = [8, 100], delay = "20ms" } } ]

[[clients]]
connect = "srv"
script = [
  { expect = { regex = 'time (?P<hh>\d\d):(?P<mm>\d\d):\d\d\n' } },
  { expect = "next" },
]
"#)
    .await;
    assert_passed(&outcome);
    // Only the match was read by the regex step; `next` was read by the next step.
    let read = reads(&outcome, "client1");
    assert_eq!(read.concat(), b"time 12:34:56\nnext");
    assert_eq!(read.last().unwrap(), b"next", "{read:?}");
}

#[tokio::test]
async fn contains_len_and_json_on_a_stream() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = 'xx OK yy{"status": "ok", "n": {"a": 1, "b": [1, 2]}, "extra": true}ABCD' } ]

[[clients]]
connect = "srv"
script = [
  { expect = { contains = "OK" } },
  { expect = { len = 3 } },
  { expect = { json = { status = "ok", n = { b = [1, 2] } } } },
  { expect = { len = 4 } },
  { expect_eof = true },
]
"#)
    .await;
    assert_passed(&outcome);
}

#[tokio::test]
async fn expect_line_reads_one_line_at_a_time_and_strips_cr() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "HELLO 1\r\nsecond line\nid=42\n" }, { expect_line = "bye" } ]

[[clients]]
connect = "srv"
script = [
  { expect_line = "HELLO 1" },
  { expect_line = { contains = "second" } },
  { expect_line = { regex = '^id=(?P<id>\d+)$' } },
  { send = "bye\r\n" },
]
"#)
    .await;
    assert_passed(&outcome);
    // Each line step read exactly its line: the stream is not over-read.
    let read = reads(&outcome, "client1");
    assert_eq!(
        read,
        vec![
            b"HELLO 1\r\n".to_vec(),
            b"second line\n".to_vec(),
            b"id=42\n".to_vec()
        ]
    );
}

#[tokio::test]
async fn a_line_that_does_not_match_shows_the_pattern_and_the_line() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "ERR nope\n" } ]

[[clients]]
connect = "srv"
script = [ { expect_line = { regex = '^OK \d+$' } } ]
"#)
    .await;
    let report = rendered(&outcome);
    assert!(
        report.contains(r#"the line "ERR nope": no match for regex '^OK \d+$'"#),
        "{report}"
    );
    assert!(report.contains("ERR nope"), "{report}");
}

#[tokio::test]
async fn a_regex_that_can_only_match_after_max_fails_with_what_arrived() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = { repeat = "a", times = 100 } }, { send = "END" } ]

[[clients]]
connect = "srv"
script = [ { expect = { regex = "END", max = 64 } } ]
"#)
    .await;
    let f = failure(&outcome);
    assert!(f.message.contains("at most 64 bytes"), "{}", f.message);
    assert_eq!(f.actual.as_deref(), Some(&[b'a'; 64][..]));
    assert!(
        f.waited.unwrap() < std::time::Duration::from_secs(1),
        "it failed at the limit, not at the deadline"
    );
}

#[tokio::test]
async fn a_stream_expectation_fails_at_eof_with_what_arrived() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "partial" }, { close = true } ]

[[clients]]
connect = "srv"
script = [ { expect = { contains = "done" } } ]
"#)
    .await;
    let f = failure(&outcome);
    assert!(
        f.message.contains("the peer closed the connection"),
        "{}",
        f.message
    );
    assert_eq!(f.actual.as_deref(), Some(&b"partial"[..]));
}

#[tokio::test]
async fn recv_with_a_matcher_judges_one_read() {
    let outcome = run(r#"
[servers.srv]
script = [ { await_queued = 11 }, { recv = { max = 100, expect = { regex = '^hello \w+$' } } } ]

[[clients]]
connect = "srv"
script = [ { send = "hello world" } ]
"#)
    .await;
    assert_passed(&outcome);
}

#[tokio::test]
async fn udp_datagrams_are_matched_whole() {
    let outcome = run(r#"
[servers.srv]
proto = "udp"
script = [
  { expect = { regex = '^ping (?P<n>\d+)$' } },
  { send = "time 12:30:00\n" },
  { expect_line = "bye" },
]

[[clients]]
connect = "srv"
script = [
  { send = "ping 7" },
  { expect_line = { regex = '^time \d\d:\d\d:\d\d$' } },
  { send = "bye\n" },
]
"#)
    .await;
    assert_passed(&outcome);
}

#[tokio::test]
async fn expect_silence_passes_on_a_quiet_peer_and_fails_on_a_talkative_one() {
    let quiet = run(r#"
[servers.srv]
proto = "udp"
script = [ { expect = "hi" }, { expect_silence = "50ms" }, { send = "ok" } ]

[[clients]]
connect = "srv"
script = [ { send = "hi" }, { expect = "ok" } ]
"#)
    .await;
    assert_passed(&quiet);

    let talkative = run(r#"
[servers.srv]
script = [ { send = "one" }, { send = "more" }, { wait = "done" } ]

[[clients]]
connect = "srv"
script = [ { expect = "one" }, { expect_silence = "2s" }, { signal = "done" } ]
"#)
    .await;
    let f = failure(&talkative);
    assert!(f.message.contains("silence"), "{}", f.message);
    assert!(f.actual.as_deref().unwrap().starts_with(b"m"), "{f:?}");

    let closing = run(r#"
[servers.srv]
script = [ { close = true } ]

[[clients]]
connect = "srv"
script = [ { expect_silence = "2s" } ]
"#)
    .await;
    let f = failure(&closing);
    assert!(f.message.contains("closed the connection"), "{}", f.message);
}

#[tokio::test]
async fn unread_bytes_warn_under_a_passing_run_by_default() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "got:hello\n" }, { wait = "done" } ]

[[clients]]
connect = "srv"
script = [ { await_queued = 10 }, { expect = "got:hel" }, { signal = "done" } ]
"#)
    .await;
    assert_passed(&outcome);
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n.contains("client1: 3 bytes arrived that no step read: \"lo\\n\"")),
        "{:?}",
        outcome.notes
    );
}

#[tokio::test]
async fn unread_fail_fails_the_actor_and_ignore_says_nothing() {
    let script = r#"
[servers.srv]
script = [ { send = "got:hello\n" }, { wait = "done" } ]

[[clients]]
connect = "srv"
script = [ { await_queued = 10 }, { expect = "got:hel" }, { signal = "done" } ]
"#;
    let failing = run(&format!("unread = \"fail\"\n{script}")).await;
    let f = failure(&failing);
    assert_eq!(f.actor.as_deref(), Some("client1"));
    assert!(
        f.message.contains("3 bytes arrived that no step read"),
        "{}",
        f.message
    );
    assert_eq!(f.actual.as_deref(), Some(&b"lo\n"[..]));

    let ignoring = run(&format!("unread = \"ignore\"\n{script}")).await;
    assert_passed(&ignoring);
    assert!(ignoring.notes.is_empty(), "{:?}", ignoring.notes);
}

#[tokio::test]
async fn expect_frame_takes_match_keys_beside_the_framing() {
    let outcome = run(r#"
[servers.srv]
script = [
  { send_frame = { framing = "u16be", text = "user=alice id=7" } },
  { send_frame = { framing = "line", text = '{"ok": true, "n": 3}' } },
]

[[clients]]
connect = "srv"
script = [
  { expect_frame = { framing = "u16be", regex = 'user=(?P<user>\w+)' } },
  { expect_frame = { framing = "line", json = { ok = true } } },
]
"#)
    .await;
    assert_passed(&outcome);
}

#[tokio::test]
async fn a_captured_token_is_sent_back_by_a_template() {
    let outcome = run(r#"
[servers.srv]
script = [
  { send = "HELLO\r\nTOKEN 5f3a9c\r\n" },
  { expect = "AUTH 5f3a9c x{y}\n" },
  { send = "OK\n" },
]

[[clients]]
connect = "srv"
script = [
  { expect_line = "HELLO" },
  { expect_line = { regex = '^TOKEN (?P<token>[0-9a-f]+)$' } },
  { send = { template = "AUTH {token} x{{y}}\n" } },
  { expect = { template = "OK\n" } },
]
"#)
    .await;
    assert_passed(&outcome);
}

#[tokio::test]
async fn a_variable_used_before_it_is_captured_names_the_capturing_step() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = { template = "you said {word}\n" } } ]

[[clients]]
connect = "srv"
script = [ { expect_line = { regex = '(?P<word>\w+)' } } ]
"#)
    .await;
    let f = failure(&outcome);
    assert!(
        f.message.contains(
            "the variable `word` has no value yet: step 1 of `client1` (line 7:12) captures it"
        ),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn templates_know_server_addresses() {
    let outcome = run(r#"
[servers.srv]
script = [ { expect = { regex = '^to 127\.0\.0\.1:(?P<p>\d+) port (?P<q>\d+)\n$' } }, { send = { template = "{p}={q}" } } ]

[[clients]]
connect = "srv"
script = [ { send = { template = "to {addr:srv} port {port:srv}\n" } }, { expect = { regex = '^(\d+)=(\d+)$' } } ]
"#)
    .await;
    assert_passed(&outcome);
    let read = reads(&outcome, "client1").concat();
    let text = String::from_utf8(read).unwrap();
    let (p, q) = text.split_once('=').unwrap();
    assert_eq!(p, q);
    assert!(p.parse::<u16>().unwrap() > 0);
}

#[tokio::test]
async fn json_header_frames_carry_a_header_with_md5_and_size_filled_in() {
    let outcome = run(r#"
[servers.srv]
script = [
  { expect_frame = { framing = "json-header", header = { file_name = "a.txt", md5 = "5d41402abc4b2a76b9719d911017c592", size = 5, note = "n=5", file_size = 5 }, body = "hello" } },
  { send_frame = { framing = "json-header", header = { status = "ok", stored = { name = "a.txt" } }, text = "" } },
  { expect_frame = { framing = "json-header", body = { len = 3 } } },
]

[[clients]]
connect = "srv"
script = [
  { send_frame = { framing = "json-header", header = { file_name = "a.txt", md5 = "{md5}", size = "{size}", note = "n={size}" }, text = "hello" } },
  { expect_frame = { framing = "json-header", header = { status = "ok", stored = { name = "a.txt" } } } },
  { send_frame = { framing = "json-header", header = { file_size = 3 }, text = "hello" } },
]
"#)
    .await;
    assert_passed(&outcome);
    // The lying `file_size` left two bytes of the body for nobody.
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n.contains("2 bytes arrived that no step read: \"lo\"")),
        "{:?}",
        outcome.notes
    );
}

#[tokio::test]
async fn a_json_header_that_lacks_a_key_fails_naming_it() {
    let outcome = run(r#"
[servers.srv]
script = [ { send_frame = { framing = "json-header", header = { status = "error" }, text = "x" } } ]

[[clients]]
connect = "srv"
script = [ { expect_frame = { framing = "json-header", header = { status = "ok" } } } ]
"#)
    .await;
    let f = failure(&outcome);
    assert!(
        f.message.contains("`status` is \"error\", expected \"ok\""),
        "{}",
        f.message
    );
}
