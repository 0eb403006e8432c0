//! Steps that peek (`expect_line`, `expect = { regex }`) remember what a peek saw
//! past their own bytes, so the next peeking step need not peek again. These tests
//! check the memory never disagrees with the kernel's receive queue: every read by
//! any step drops bytes from it, the steps that look at the queue itself
//! (`await_queued`, `expect_eof`, `unread`) see the unread bytes, and a regex is
//! never judged on bytes cut short by a peek's window.

use wirecheck::event::EventKind;

use crate::{assert_passed, events_of, failure, run};

/// The bytes of every read call an actor made, in order.
fn reads(outcome: &crate::Ran, actor: &str) -> Vec<Vec<u8>> {
    events_of(outcome, actor)
        .into_iter()
        .filter_map(|e| match &e.kind {
            EventKind::Read { data, .. } => {
                Some(data.bytes().expect("payloads are collected").to_vec())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn lines_that_arrived_together_are_read_one_read_per_line() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "a\nbb\r\nccc\n" }, { wait = "done" } ]

[[clients]]
connect = "srv"
script = [
  { await_queued = 10 },
  { expect_line = "a" },
  { expect_line = "bb" },
  { expect_line = { regex = '^c+$' } },
  { signal = "done" },
]
"#)
    .await;
    assert_passed(&outcome);
    assert_eq!(
        reads(&outcome, "client1"),
        vec![b"a\n".to_vec(), b"bb\r\n".to_vec(), b"ccc\n".to_vec()]
    );
}

#[tokio::test]
async fn a_line_split_between_remembered_bytes_and_later_ones() {
    let outcome = run(r#"
[servers.srv]
nodelay = true
script = [ { send = "first\nsec" }, { wait = "first-read" }, { send = "ond\nthird\n" } ]

[[clients]]
connect = "srv"
script = [
  { await_queued = 9 },
  { expect_line = "first" },
  { signal = "first-read" },
  { expect_line = "second" },
  { expect_line = "third" },
  { expect_eof = true },
]
"#)
    .await;
    assert_passed(&outcome);
    assert_eq!(
        reads(&outcome, "client1"),
        vec![
            b"first\n".to_vec(),
            b"second\n".to_vec(),
            b"third\n".to_vec()
        ]
    );
}

#[tokio::test]
async fn a_recv_between_lines_takes_its_bytes_from_what_the_peek_saw() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "one\ntwo\nthree\n" }, { wait = "done" } ]

[[clients]]
connect = "srv"
script = [
  { await_queued = 14 },
  { expect_line = "one" },
  { recv = { max = 2, expect = "tw" } },
  { expect_line = "o" },
  { expect = "th" },
  { expect_line = "ree" },
  { signal = "done" },
]
"#)
    .await;
    assert_passed(&outcome);
}

#[tokio::test]
async fn await_queued_and_expect_eof_see_the_bytes_no_line_step_read() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "a\nb\n" }, { wait = "go" }, { send = "c\n" }, { close = true } ]

[[clients]]
connect = "srv"
script = [
  { await_queued = 4 },
  { expect_line = "a" },
  { await_queued = 2 },
  { signal = "go" },
  { await_queued = 4 },
  { expect_line = "b" },
  { expect_line = "c" },
  { expect_eof = true },
]
"#)
    .await;
    assert_passed(&outcome);

    let early_eof = run(r#"
[servers.srv]
script = [ { send = "x\ny\n" }, { close = true } ]

[[clients]]
connect = "srv"
script = [ { await_queued = 4 }, { expect_line = "x" }, { expect_eof = true } ]
"#)
    .await;
    let f = failure(&early_eof);
    assert!(
        f.message
            .contains("expected the peer to close, but 2 more bytes arrived"),
        "{}",
        f.message
    );
    assert_eq!(f.actual.as_deref(), Some(&b"y\n"[..]));
}

#[tokio::test]
async fn bytes_after_the_last_line_are_unread() {
    let outcome = run(r#"
unread = "fail"
[servers.srv]
script = [ { send = "x\ntail" }, { wait = "done" } ]

[[clients]]
connect = "srv"
script = [ { await_queued = 6 }, { expect_line = "x" }, { signal = "done" } ]
"#)
    .await;
    let f = failure(&outcome);
    assert!(
        f.message.contains("4 bytes arrived that no step read"),
        "{}",
        f.message
    );
    assert_eq!(f.actual.as_deref(), Some(&b"tail"[..]));
}

/// The line step's peek fills its 4096-byte window with `a\n` and 4094 `x`; the
/// regex after it must see the digits behind the window too, as one read would
/// have returned them, and consume through them.
#[tokio::test]
async fn a_regex_is_not_judged_on_bytes_cut_short_by_a_peek_window() {
    let outcome = run(r#"
[servers.srv]
script = [
  { send = "a\n" },
  { send = { repeat = "x", times = 4094 } },
  { send = "123456\nlast\n" },
  { expect = "123456" },
  { wait = "done" },
]

[[clients]]
connect = "srv"
script = [
  { await_queued = 4108 },
  { expect_line = "a" },
  { expect = { regex = 'x+(?P<digits>\d*)' } },
  { expect_line = "" },
  { expect_line = "last" },
  { send = { template = "{digits}" } },
  { signal = "done" },
]
"#)
    .await;
    assert_passed(&outcome);
}

/// The same regex right at the start of a step whose first peek window is full.
#[tokio::test]
async fn a_regex_on_a_full_first_window_sees_the_rest_of_the_queue() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = { repeat = "x", times = 4096 } }, { send = "789\n" }, { wait = "done" } ]

[[clients]]
connect = "srv"
script = [
  { await_queued = 4100 },
  { expect = { regex = 'x+\d*' } },
  { expect_line = "" },
  { signal = "done" },
]
"#)
    .await;
    assert_passed(&outcome);
}

/// A small deterministic generator (xorshift), so each seed is one fixed scenario.
struct Draws(u64);

impl Draws {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Lines of many lengths (empty, short, around and beyond the 4096-byte first peek
/// window), LF or CRLF, written in uneven chunks, read by a mix of `expect_line`,
/// exact `expect`, `len`, `contains` and regex steps: every step must find its
/// bytes, and nothing may be left over or read twice.
#[tokio::test]
async fn mixed_steps_over_lines_that_cross_peek_windows() {
    const LENGTHS: [usize; 9] = [0, 1, 5, 23, 4094, 4095, 4096, 5000, 9000];
    for seed in 1..=4u64 {
        let mut draw = Draws(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut stream = String::new();
        let mut steps = Vec::new();
        for index in 0..40 {
            let len = LENGTHS[draw.below(LENGTHS.len())];
            let line: String = (0..len)
                .map(|i| char::from(b'a' + ((i * 7 + index) % 26) as u8))
                .collect();
            let crlf = draw.below(4) == 0;
            stream.push_str(&line);
            stream.push_str(if crlf { "\\r\\n" } else { "\\n" });
            let ending = if crlf { "\\r\\n" } else { "\\n" };
            let split = if len == 0 { 0 } else { draw.below(len) };
            let (head, tail) = line.split_at(split);
            match draw.below(5) {
                0 | 1 => steps.push(format!("{{ expect_line = \"{line}\" }}")),
                2 => {
                    steps.push(format!("{{ expect = \"{head}\" }}"));
                    steps.push(format!("{{ expect_line = \"{tail}\" }}"));
                }
                3 => {
                    steps.push(format!("{{ expect = {{ len = {split} }} }}"));
                    steps.push(format!("{{ expect = \"{tail}{ending}\" }}"));
                }
                _ => {
                    // Through the end of the line, by what follows the split.
                    if tail.is_empty() {
                        steps.push(format!("{{ expect = \"{head}\" }}"));
                    } else {
                        steps.push(format!("{{ expect = {{ len = {split} }} }}"));
                    }
                    let form = if draw.below(2) == 0 {
                        "contains = \"\\n\"".to_owned()
                    } else {
                        format!("regex = '^{tail}\\r?\\n'")
                    };
                    steps.push(format!("{{ expect = {{ {form}, max = 20000 }} }}"));
                }
            }
        }
        let chunks: Vec<String> = (0..12)
            .map(|_| [1, 7, 100, 3000, 4096, 5000][draw.below(6)].to_string())
            .collect();
        let scenario = format!(
            "[servers.srv]\nnodelay = true\nscript = [ {{ send = {{ text = \"{stream}\", chunks = [{}] }} }}, {{ close = true }} ]\n\n[[clients]]\nconnect = \"srv\"\nscript = [\n  {},\n  {{ expect_eof = true }},\n]\n",
            chunks.join(", "),
            steps.join(",\n  ")
        );
        let outcome = run(&scenario).await;
        assert_passed(&outcome);
    }
}
