//! Scenario files that are not valid: one test per class of error, each checking the
//! rendered report (message, hints, and the `path:line:col` of the exact spot), and
//! robustness: every problem in a file is reported, and no input makes loading or
//! rendering panic. Also what the loader accepts at its edges: addresses read
//! without name lookups, limits, and large files (shared data, exact positions).

use crate::Rng;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rstest::rstest;
use wirecheck::scenario::{
    load_file, load_str, Action, Diagnostic, Expected, LoadError, ServerKind, Step, Target,
};

use crate::{line_column, load, position_of, SCENARIO_FILE};

/// A file that failed to load, with everything the assertions need.
struct Invalid {
    path: PathBuf,
    source: String,
    diagnostics: Vec<Diagnostic>,
    rendered: String,
}

fn invalid(source: &str) -> Invalid {
    let error = match load(source) {
        Ok(_) => panic!("this scenario loaded but should not have:\n{source}"),
        Err(e) => e,
    };
    let rendered = error.render();
    match error {
        LoadError::Invalid {
            path, diagnostics, ..
        } => Invalid {
            path,
            source: source.to_owned(),
            diagnostics,
            rendered,
        },
        LoadError::Io { .. } => panic!("expected diagnostics, got {rendered}"),
    }
}

impl Invalid {
    /// Asserts that a diagnostic whose headline contains `message` starts exactly at
    /// the first occurrence of `at` in the source, and that the rendered report
    /// shows that position as `path:line:col`.
    #[track_caller]
    fn reports(&self, message: &str, at: &str) -> &Diagnostic {
        let diagnostic = self
            .diagnostics
            .iter()
            .find(|d| d.message.contains(message))
            .unwrap_or_else(|| panic!("no error says `{message}`:\n{}", self.rendered));
        let offset = self.source.find(at).expect("the anchor is in the source");
        assert_eq!(
            diagnostic.span.start,
            offset,
            "`{message}` points at {:?}, not at `{at}`:\n{}",
            self.source.get(diagnostic.span.clone()),
            self.rendered
        );
        let position = position_of(&self.path, &self.source, at);
        assert!(
            self.rendered.contains(&position),
            "the report does not show {position}:\n{}",
            self.rendered
        );
        diagnostic
    }

    #[track_caller]
    fn says(&self, text: &str) -> &Self {
        assert!(
            self.rendered.contains(text),
            "the report does not say `{text}`:\n{}",
            self.rendered
        );
        self
    }
}

const ECHO: &str = "[servers.echo]\nbuiltin = \"echo\"\n";

fn with_client_script(steps: &str) -> String {
    format!("{ECHO}\n[[clients]]\nconnect = \"echo\"\nscript = [\n  {steps},\n]\n")
}

// ------------------------------------------------------------ one test per class

#[test]
fn invalid_toml_syntax() {
    let e = invalid("[servers.echo]\nbuiltin = echo\n");
    e.reports("this is not valid TOML", "echo\n");
    e.says("2:11").says("strings need quotes");
}

#[test]
fn unknown_top_level_key() {
    let e = invalid(&format!("nmae = \"typo\"\n{ECHO}"));
    e.reports("unknown key `nmae` in the scenario's top level", "nmae");
    e.says("did you mean `name`?").says(
        "valid keys: name, description, timeout, step_timeout, tags, group, retries, unread, servers, clients",
    );
}

#[test]
fn unknown_step() {
    let e = invalid(&with_client_script("{ sned = \"hi\" }"));
    e.reports("unknown step `sned`", "sned");
    e.says("did you mean `send`?").says(
        "steps: send, recv, expect, expect_line, expect_silence, send_frame, expect_frame, expect_eof, expect_reset, \
         await_queued, shutdown, close, sleep, signal, wait, connect",
    );
}

#[test]
fn two_actions_in_one_step() {
    let e = invalid(&with_client_script("{ send = \"a\", expect = \"a\" }"));
    e.reports(
        "a step does one thing, but this one has `send` and `expect`",
        "expect",
    );
    e.says("split it into two steps");
}

#[test]
fn wrong_type() {
    let e = invalid(&format!(
        "{ECHO}\n[[clients]]\ncount = \"x\"\nscript = [ {{ send = \"a\" }} ]\n"
    ));
    e.reports("`count` must be an integer, not a string", "\"x\"");
    e.says("expected an integer");
}

#[test]
fn bad_duration_has_the_hint() {
    let e = invalid(&format!("timeout = \"5sec\"\n{ECHO}"));
    e.reports("`timeout` is not a valid duration", "\"5sec\"");
    e.says("`sec` is not a unit")
        .says("a duration is a number and a unit: \"100us\", \"250ms\", \"2s\", \"1.5s\", \"1m\"");
}

#[test]
fn bad_hex_digit_puts_the_caret_on_it() {
    let source = with_client_script("{ send = { hex = \"de ad bx ef\" } }");
    let e = invalid(&source);
    let d = e.reports("`x` is not a hex digit", "x ef");
    assert_eq!(&source[d.span.clone()], "x");
    e.says("not 0-9, a-f");
    // The caret line puts its `^` under the `x`.
    let source_line = e
        .rendered
        .lines()
        .find(|l| l.contains("de ad bx ef"))
        .unwrap();
    let caret_line = e
        .rendered
        .lines()
        .find(|l| l.contains("^ not 0-9"))
        .unwrap();
    assert_eq!(
        caret_line.find('^'),
        source_line.find("x ef"),
        "{}",
        e.rendered
    );
}

#[test]
fn bad_hex_digit_in_a_multi_line_string_is_located_exactly() {
    let source = with_client_script("{ send = { hex = \"\"\"\nde ad\nzz\"\"\" } }");
    let e = invalid(&source);
    e.reports("`z` is not a hex digit", "zz");
}

#[test]
fn bad_hex_digit_after_an_escape_is_located_exactly() {
    let source = with_client_script("{ send = { hex = \"\\t\u{3000}zz\" } }");
    let e = invalid(&source);
    let d = e.reports("`z` is not a hex digit", "zz");
    assert!(source.is_char_boundary(d.span.start));
}

#[test]
fn odd_number_of_hex_digits() {
    let e = invalid(&with_client_script("{ send = { hex = \"abc\" } }"));
    e.reports("odd number of hex digits", "\"abc\"");
    e.says("3 digits do not make whole bytes");
}

#[test]
fn invalid_base64() {
    let e = invalid(&with_client_script("{ send = { base64 = \"aGVs!G8=\" } }"));
    e.reports("this is not valid base64", "\"aGVs!G8=\"");
    e.says("standard alphabet with `=` padding");
}

#[test]
fn missing_data_file() {
    let e = invalid(&with_client_script("{ send = { file = \"missing.bin\" } }"));
    e.reports("cannot read `missing.bin`", "\"missing.bin\"");
    let folder = e.path.parent().unwrap().join("missing.bin");
    e.says(&folder.display().to_string())
        .says("`file` is relative to the scenario file's folder");
}

#[test]
fn repeat_without_times() {
    let e = invalid(&with_client_script("{ send = { repeat = \"ab\" } }"));
    e.reports("`repeat` needs `times`", "repeat");
    e.says("e.g. `{ repeat = \"ab\", times = 1000 }`");
}

#[test]
fn recv_expect_longer_than_max() {
    let e = invalid(&with_client_script(
        "{ recv = { max = 2, expect = \"hello\" } }",
    ));
    e.reports(
        "one read of at most 2 bytes can never return these 5 bytes",
        "\"hello\"",
    );
    e.says("raise `max`");
}

#[test]
fn wait_that_nothing_signals() {
    let e = invalid(
        "[servers.srv]\nscript = [ { wait = \"raedy\" } ]\n\n[[clients]]\nscript = [ { signal = \"ready\" } ]\n",
    );
    e.reports("nothing ever signals `raedy`", "{ wait");
    e.says("did you mean `ready`?")
        .says("add `{ signal = \"raedy\" }` to the actor that should release it");
}

#[test]
fn connect_to_an_unknown_server() {
    let e = invalid(&format!(
        "{ECHO}\n[servers.other]\nbuiltin = \"discard\"\n\n[[clients]]\nconnect = \"ecoh\"\n"
    ));
    e.reports("no server is named `ecoh`", "\"ecoh\"");
    e.says("did you mean `echo`?")
        .says("servers in this file: echo, other");
}

#[rstest]
#[case::client_connect(
    "{ECHO}\n[[clients]]\nconnect = \"10.1.2.3:80\"\n",
    "`connect` is not a loopback address",
    "\"10.1.2.3:80\""
)]
#[case::server_bind(
    "[servers.srv]\nbind = \"0.0.0.0:0\"\nbuiltin = \"echo\"\n",
    "`bind` is not a loopback address",
    "\"0.0.0.0:0\""
)]
#[case::existing_server_address(
    "[servers.srv]\naddress = \"192.168.1.1:8080\"\n",
    "`address` is not a loopback address",
    "\"192.168.1.1:8080\""
)]
fn non_loopback_address_is_refused(#[case] source: &str, #[case] message: &str, #[case] at: &str) {
    let e = invalid(&source.replace("{ECHO}", ECHO));
    e.reports(message, at);
    e.says("outside 127.0.0.0/8 and ::1")
        .says("only sends traffic on this machine's loopback interface");
}

#[test]
fn unknown_builtin() {
    let e = invalid("[servers.srv]\nbuiltin = \"ehco\"\n");
    e.reports("unknown builtin server `ehco`", "\"ehco\"");
    e.says("did you mean `echo`?")
        .says("builtin servers: echo, discard, readsplit");
}

#[test]
fn server_with_two_kinds() {
    let e = invalid("[servers.srv]\nbuiltin = \"echo\"\nscript = [ { send = \"x\" } ]\n");
    e.reports("server `srv` has both `builtin` and `script`", "script");
    e.says("a server is exactly one of builtin, script, command or address");
}

#[test]
fn timeout_on_a_step_that_does_not_wait() {
    let e = invalid(&with_client_script("{ sleep = \"1s\", timeout = \"2s\" }"));
    e.reports(
        "`sleep` does not wait for anything, so it takes no `timeout`",
        "timeout",
    );
}

#[test]
fn expect_eof_false() {
    let e = invalid(&with_client_script("{ expect_eof = false }"));
    e.reports("`expect_eof` can only be `true`", "false");
    e.says("a step with `false` would do nothing")
        .says("remove the step instead");
}

#[test]
fn udp_client_with_expect_eof() {
    let e = invalid(
        "[servers.echo]\nbuiltin = \"echo\"\nproto = \"udp\"\n\n[[clients]]\nscript = [ { expect_eof = true } ]\n",
    );
    e.reports(
        "`expect_eof` needs a TCP connection; UDP has no end of stream",
        "{ expect_eof",
    );
    e.says("in `client1` (udp)");
}

#[test]
fn an_empty_file_has_nothing_to_run() {
    let e = invalid("");
    e.reports("the scenario has no servers and no clients", "");
    e.says(&format!("{}:1:1", e.path.display()))
        .says("add a `[servers.NAME]` table and a `[[clients]]` entry");
}

#[test]
fn an_unreadable_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    let error = load_file(&missing).unwrap_err();
    assert!(matches!(error, LoadError::Io { .. }));
    assert!(error
        .render()
        .starts_with(&format!("error: cannot read {}", missing.display())));

    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80, b'[', 0xc3]).unwrap();
    let error = load_file(&binary).unwrap_err();
    assert!(error.render().contains("binary.toml"), "{}", error.render());
}

#[test]
fn data_files_are_read_relative_to_the_scenario() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("payload.bin"), [0u8, 1, 2, 255]).unwrap();
    let scenario = crate::scenario_in(
        dir.path(),
        &with_client_script("{ send = { file = \"payload.bin\" } }"),
    );
    let action = &scenario.clients[0].script[0].action;
    assert!(
        matches!(action, wirecheck::scenario::Action::Send { data, .. } if data.head(100).unwrap()[..] == [0, 1, 2, 255]),
        "{action:?}"
    );
}

/// Loads `text` as `DIR/inline.toml`, which must fail.
fn invalid_in(dir: &std::path::Path, source: &str) -> Invalid {
    let error = match load_str(&dir.join(crate::SCENARIO_FILE), source) {
        Ok(_) => panic!("this scenario loaded but should not have:\n{source}"),
        Err(e) => e,
    };
    let rendered = error.render();
    match error {
        LoadError::Invalid {
            path, diagnostics, ..
        } => Invalid {
            path,
            source: source.to_owned(),
            diagnostics,
            rendered,
        },
        LoadError::Io { .. } => panic!("expected diagnostics, got {rendered}"),
    }
}

/// `{ file, offset, len }` is checked when the file loads (the slice lies inside
/// the file), and left on disk: the data is a slice, not bytes.
#[test]
fn file_slices_are_checked_at_load_and_not_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.bin"), b"0123456789").unwrap();
    let scenario = crate::scenario_in(
        dir.path(),
        &with_client_script(
            "{ send = { file = \"x.bin\", offset = 2, len = 3 } },\n  \
             { expect = { file = \"x.bin\", offset = 4 } },\n  \
             { send = { file = \"x.bin\", len = 10, chunks = [4] } },\n  \
             { send = { file = \"x.bin\", offset = 10 } }",
        ),
    );
    let script = &scenario.clients[0].script;
    let slice = |i: usize| match &script[i].action {
        Action::Send { data, .. } | Action::Expect(Expected::Data(data)) => match data {
            wirecheck::scenario::Data::File(slice) => (slice.offset, slice.len),
            other => panic!("not a file slice: {other:?}"),
        },
        other => panic!("no data in {other:?}"),
    };
    assert_eq!(slice(0), (2, 3));
    assert_eq!(slice(1), (4, 6));
    assert_eq!(slice(2), (0, 10));
    assert_eq!(slice(3), (10, 0));
}

#[test]
fn a_file_slice_past_the_end_is_an_error_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.bin"), b"0123456789").unwrap();
    let e = invalid_in(
        dir.path(),
        &with_client_script("{ send = { file = \"x.bin\", offset = 11 } }"),
    );
    e.reports("`offset` 11 is past the end of `x.bin` (10 bytes)", "11 }");
    let e = invalid_in(
        dir.path(),
        &with_client_script("{ expect = { file = \"x.bin\", offset = 4, len = 7 } }"),
    );
    e.reports(
        "`len` 7 from offset 4 goes past the end of `x.bin` (10 bytes)",
        "7 }",
    );
    e.says("at most 6 bytes from there");
    let e = invalid_in(
        dir.path(),
        &with_client_script(
            "{ send = { file = \"x.bin\", offset = 4, len = 9223372036854775807 } }",
        ),
    );
    e.says("`len` 9223372036854775807 from offset 4 goes past the end");
    let e = invalid_in(
        dir.path(),
        &with_client_script("{ send = { file = \"x.bin\", offset = -1 } }"),
    );
    e.reports("`offset` is -1, a negative number of bytes", "-1");
    let e = invalid_in(
        dir.path(),
        &with_client_script("{ send = { file = \"missing.bin\", offset = 0, len = 1 } }"),
    );
    e.reports("cannot read `missing.bin`", "\"missing.bin\"");
    let e = invalid_in(
        dir.path(),
        &with_client_script("{ send = { text = \"abc\", offset = 1 } }"),
    );
    e.reports("`offset` goes with `file`", "offset");
}

// ------------------------------------------------------------ all problems at once

#[test]
fn every_problem_in_a_file_is_reported() {
    let source = r#"nmae = "typo"
step_timeout = "2 parsecs"

[servers.one]
builtin = "ehco"

[servers.two]
script = [ { expect = { hex = "0g" } } ]

[[clients]]
name = "a"
connect = "two"
script = [ { sned = "hi" } ]

[[clients]]
name = "b"
connect = "two"
linger = "soon"
script = [ { expect_eof = false } ]
"#;
    let e = invalid(source);
    let expected = [
        ("unknown key `nmae`", "nmae"),
        ("`step_timeout` is not a valid duration", "\"2 parsecs\""),
        ("unknown builtin server `ehco`", "\"ehco\""),
        ("`g` is not a hex digit", "g\""),
        ("unknown step `sned`", "sned"),
        ("`linger` is not a valid duration", "\"soon\""),
        ("`expect_eof` can only be `true`", "false"),
    ];
    for (message, at) in expected {
        e.reports(message, at);
    }
    assert_eq!(
        e.diagnostics.len(),
        expected.len(),
        "unexpected extra errors:\n{}",
        e.rendered
    );
    assert_eq!(e.rendered.matches("error: ").count(), expected.len());
    // Reported in file order.
    let starts: Vec<usize> = e.diagnostics.iter().map(|d| d.span.start).collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    assert_eq!(starts, sorted);
}

#[test]
fn a_bad_count_does_not_hide_the_script_errors_of_the_same_client() {
    let e = invalid(&format!(
        "{ECHO}\n[[clients]]\ncount = \"x\"\nscript = [ {{ sned = \"hi\" }} ]\n"
    ));
    e.reports("`count` must be an integer", "\"x\"");
    e.reports("unknown step `sned`", "sned");
}

// ------------------------------------------------------------ never a panic

/// A valid scenario using most of the format, but nothing a mutation could turn
/// into a host name to resolve or a huge allocation (no `connect`, `bind`,
/// `address`, `file` or `repeat`).
const SEED: &str = r#"name = "seed"
timeout = "5s"
step_timeout = "250ms"
tags = ["a", "b"]

[servers.srv]
linger = "0s"
connections = 2
script = [
  { wait = "go" },
  { await_queued = 3 },
  { recv = { max = 8, expect = { hex = "61 62 63" } } },
  { expect_frame = { framing = "u32le", text = "hi" }, timeout = "1s" },
  { send_frame = { framing = "line", base64 = "aGk=" } },
  { shutdown = "write" },
  { expect_eof = true },
  { close = true },
]

[[clients]]
name = "c"
count = 2
nodelay = true
script = [
  { send = { text = "abc", chunks = [1, 2], delay = "1ms" } },
  { signal = "go" },
  { sleep = "1ms" },
  { expect = "x\u0000y" },
  { expect_reset = true },
]
"#;

/// Pieces of syntax that make mutations reach deeper into the loader than random
/// bytes alone would.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    "\"\"\"",
    "=",
    ",",
    "\n",
    "#",
    "\\",
    "\\u",
    "true",
    "false",
    "-1",
    "0",
    "9999999999999999999999",
    "1.5",
    "nan",
    "1979-05-27",
    "\"1ms\"",
    "\"\"",
    "{ }",
    "[]",
    "send",
    "recv",
    "expect",
    "hex",
    "base64",
    "timeout",
    "max",
    "times",
    "chunks",
    "framing",
    "servers",
    "clients",
    "script",
    "proto = \"udp\"",
    "é",
    "\u{3000}",
    "\u{0}",
    "\u{feff}",
    "\r",
    "\t",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            1 => {
                let junk: Vec<u8> = (0..1 + rng.below(8))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                bytes.splice(at..at, junk);
            }
            2 => {
                let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
                bytes.splice(at..at, fragment.iter().copied());
            }
            3 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next_u64() as u8;
            }
            4 => bytes.truncate(at),
            _ => {
                // Duplicate a line somewhere else.
                let lines: Vec<&[u8]> = text.as_bytes().split(|&b| b == b'\n').collect();
                let line = lines[rng.below(lines.len())].to_vec();
                bytes.splice(at..at, line.into_iter().chain([b'\n']));
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Loads and renders `text`; a panic becomes a test failure that shows the input.
fn never_panics(path: &Path, text: &str) {
    let outcome = std::panic::catch_unwind(|| match load_str(path, text) {
        Ok(_) => String::new(),
        Err(e) => e.render(),
    });
    if outcome.is_err() {
        panic!("loading or rendering panicked on this input: {text:?}");
    }
}

#[test]
fn the_seed_of_the_mutations_is_valid() {
    crate::scenario(SEED);
}

#[test]
fn random_mutations_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SCENARIO_FILE);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut rejected = 0;
    for _ in 0..400 {
        let text = mutate(&mut rng, SEED);
        never_panics(&path, &text);
        rejected += usize::from(load_str(&path, &text).is_err());
    }
    // The mutations are meant to break the file; most must be rejected.
    assert!(
        rejected > 200,
        "only {rejected} of 400 mutations were rejected"
    );
}

#[test]
fn garbage_binary_and_empty_inputs_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SCENARIO_FILE);
    let mut rng = Rng(0xbad_c0ffee);
    for len in [0usize, 1, 2, 3, 7, 64, 1000] {
        for _ in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            never_panics(&path, &String::from_utf8_lossy(&bytes));
            let printable: String = (0..len)
                .map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())])
                .collect();
            never_panics(&path, &printable);
        }
    }
    for text in [
        "",
        " ",
        "\n",
        "\u{0}",
        "\u{feff}",
        "=",
        "[",
        "[[clients]]",
        "[servers.x]",
    ] {
        never_panics(&path, text);
    }
}

#[test]
fn every_rendered_error_names_path_line_and_column() {
    // Across many broken files, every report block carries a `path:line:col` that
    // is a real position of the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SCENARIO_FILE);
    let prefix = format!("{}:", path.display());
    let mut rng = Rng(42);
    for _ in 0..100 {
        let text = mutate(&mut rng, SEED);
        let Err(error) = load_str(&path, &text) else {
            continue;
        };
        let rendered = error.render();
        let blocks = rendered.matches("error: ").count();
        let positions: Vec<(usize, usize)> = rendered
            .lines()
            .filter_map(|l| l.split_once(&prefix))
            .map(|(_, rest)| {
                let (line, column) = rest.split_once(':').expect("line:col");
                (line.trim().parse().unwrap(), column.trim().parse().unwrap())
            })
            .collect();
        assert_eq!(positions.len(), blocks, "{rendered}");
        let last_line = line_column(&text, text.len()).0;
        for (line, column) in positions {
            assert!(line >= 1 && line <= last_line && column >= 1, "{rendered}");
        }
    }
}

/// Regression (found while fuzzing the parser): a device reports length 0, so the
/// size check passed and `/dev/zero` was read until memory ran out.
#[test]
fn file_data_must_be_a_regular_file() {
    let e = invalid(&with_client_script("{ send = { file = \"/dev/zero\" } }"));
    e.reports("`/dev/zero` is not a regular file", "\"/dev/zero\"");
}

/// Regression: each step's data was capped at 1 GiB but a file's total was not.
#[test]
fn data_is_capped_for_the_whole_file() {
    let step = "{ send = { repeat = \"abcd\", times = 200000000 } }";
    let e = invalid(&with_client_script(&format!("{step}, {step}")));
    e.says("the scenario's data adds up to more than 1 GiB");
}

// ------------------------------------------------------------ addresses, offline

/// Addresses are read without any name lookup: literal loopback IPs and
/// `localhost`, which is 127.0.0.1 whatever the machine's resolver says.
#[rstest]
#[case::ipv4("127.0.0.1:9000", "127.0.0.1:9000")]
#[case::ipv4_other_loopback("127.1.2.3:9000", "127.1.2.3:9000")]
#[case::ipv6("[::1]:9000", "[::1]:9000")]
#[case::localhost("localhost:9000", "127.0.0.1:9000")]
#[case::localhost_any_case("LocalHost:9000", "127.0.0.1:9000")]
fn loopback_addresses_load_offline(#[case] connect: &str, #[case] expected: &str) {
    let scenario = crate::scenario(&format!(
        "[[clients]]\nconnect = \"{connect}\"\nscript = [ {{ send = \"x\" }} ]\n"
    ));
    let expected: std::net::SocketAddr = expected.parse().unwrap();
    assert_eq!(scenario.clients[0].connect, Target::Address(expected));
    let scenario = crate::scenario(&format!(
        "[servers.srv]\nbind = \"{connect}\"\nbuiltin = \"echo\"\n\n[servers.up]\naddress = \"{connect}\"\n"
    ));
    assert_eq!(scenario.servers[0].bind, expected);
    assert!(matches!(scenario.servers[1].kind, ServerKind::Address(a) if a == expected));
}

#[rstest]
#[case::host_name(
    "connect",
    "example.com:80",
    "`example.com` is a host name; wirecheck looks up no names"
)]
#[case::unresolvable(
    "connect",
    "wirecheck-test.invalid:80",
    "`wirecheck-test.invalid` is a host name"
)]
#[case::ipv6_without_brackets("bind", "::1:80", "write the IPv6 address in brackets: \"[::1]:80\"")]
#[case::no_port("bind", "127.0.0.1", "`127.0.0.1` is not HOST:PORT")]
#[case::bad_port("address", "localhost:http", "`http` is not a port (0 to 65535)")]
#[case::port_too_large("address", "127.0.0.1:65536", "`65536` is not a port (0 to 65535)")]
fn only_literal_loopback_addresses_or_localhost(
    #[case] key: &str,
    #[case] value: &str,
    #[case] label: &str,
) {
    let source = match key {
        "connect" => format!("{ECHO}\n[[clients]]\nconnect = \"{value}\"\n"),
        "bind" => format!("[servers.srv]\nbind = \"{value}\"\nbuiltin = \"echo\"\n"),
        _ => format!("[servers.srv]\naddress = \"{value}\"\n"),
    };
    let e = invalid(&source);
    e.reports(
        &format!("`{key}` is not a loopback IP address or localhost"),
        &format!("\"{value}\""),
    );
    e.says(label)
        .says("only loopback literal addresses or localhost are accepted");
}

// ------------------------------------------------------------ limits

#[test]
fn count_goes_up_to_100000() {
    let at_limit = crate::scenario(&format!("{ECHO}\n[[clients]]\ncount = 100000\n"));
    assert_eq!(at_limit.clients[0].count, 100_000);
    let e = invalid(&format!("{ECHO}\n[[clients]]\ncount = 100001\n"));
    e.reports("`count` is 100001, outside 1..=100000", "100001");
    e.says("must be between 1 and 100000");
}

// ------------------------------------------------------------ large files

fn step_data(step: &Step) -> &Bytes {
    match &step.action {
        Action::Send { data, .. } | Action::Expect(wirecheck::scenario::Expected::Data(data)) => {
            data.as_bytes()
                .unwrap_or_else(|| panic!("not in-memory data: {data:?}"))
        }
        other => panic!("no data in {other:?}"),
    }
}

/// 2,048 steps of the same 256 KiB `repeat` hold it once: every step's bytes are
/// the same allocation.
#[test]
fn equal_repeat_data_is_one_allocation() {
    let step = "{ send = { repeat = \"0123456789abcdef\", times = 16384 } }";
    let steps = vec![step; 2048].join(",\n  ");
    let scenario = crate::scenario(&with_client_script(&format!(
        "{steps},\n  {{ expect = {{ repeat = \"0123456789abcdef\", times = 16384 }} }},\n  {{ send = {{ repeat = \"0123456789abcdef\", times = 2 }} }}"
    )));
    let script = &scenario.clients[0].script;
    assert_eq!(script.len(), 2050);
    let first = step_data(&script[0]);
    assert_eq!(first.len(), 256 << 10);
    assert_eq!(&first[..20], b"0123456789abcdef0123");
    for step in &script[..2049] {
        assert_eq!(step_data(step).as_ptr(), first.as_ptr());
        assert_eq!(step_data(step).len(), first.len());
    }
    // Another `times` is other data.
    assert_eq!(
        step_data(&script[2049]).as_ref(),
        b"0123456789abcdef".repeat(2)
    );
    assert_ne!(step_data(&script[2049]).as_ptr(), first.as_ptr());
}

/// Equal strings are one allocation.
#[test]
fn equal_string_data_are_shared() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = crate::scenario_in(
        dir.path(),
        &with_client_script(
            "{ send = \"hi\" }, { send = \"hi\" }, { expect = { text = \"hi\" } }, { send = { hex = \"68 69\" } }",
        ),
    );
    let script = &scenario.clients[0].script;
    for step in &script[1..] {
        assert_eq!(step_data(step).as_ref(), b"hi");
        assert_eq!(step_data(step).as_ptr(), step_data(&script[0]).as_ptr());
    }
}

/// The data cap counts every step's bytes, shared or not: a run sends and compares
/// each of them.
#[test]
fn the_data_cap_counts_shared_data_per_step() {
    let step = "{ send = { repeat = \"0123456789abcdef\", times = 16384 } }";
    // 4,097 x 256 KiB is just over 1 GiB, although it is one 256 KiB buffer.
    let steps = vec![step; 4097].join(", ");
    let e = invalid(&with_client_script(&steps));
    e.says("the scenario's data adds up to more than 1 GiB");
    assert_eq!(e.diagnostics.len(), 1, "{}", e.rendered);
}

/// 100,000 steps load with exact positions (line starts are indexed once, not
/// rescanned per step, so this takes well under a second in a release build).
#[test]
fn a_100000_step_file_loads_with_exact_positions() {
    let mut text = format!("{ECHO}\n[[clients]]\nconnect = \"echo\"\nscript = [\n");
    for _ in 0..50_000 {
        text.push_str("  { send = \"abé\" }, { expect = \"abé\" },\n");
    }
    text.push_str("]\n");
    let scenario = crate::scenario(&text);
    let script = &scenario.clients[0].script;
    assert_eq!(script.len(), 100_000);
    let last = &script[99_999];
    assert_eq!(last.source_text.as_str(), "{ expect = \"abé\" }");
    // Six lines before the first step, then one line per pair; `é` is one column.
    assert_eq!((last.location.line, last.location.column), (50_006, 21));
    assert_eq!(&text[last.location.span.clone()], last.source_text.as_str());
    let position = crate::line_column(&text, last.location.span.start);
    assert_eq!(position, (last.location.line, last.location.column));
    // One buffer for all 100,000 payloads.
    assert!(script
        .iter()
        .all(|s| step_data(s).as_ptr() == step_data(&script[0]).as_ptr()));
}

// ------------------------------------------------------------ matchers

#[test]
fn an_invalid_regex_points_at_its_bad_part() {
    let e = invalid(&with_client_script(
        r#"{ expect = { regex = "ok (\\d+" } }"#,
    ));
    e.reports("invalid `regex` in `expect`", "(\\\\d+");
    e.says("unclosed group");
}

#[test]
fn a_capture_group_name_must_be_a_variable_name() {
    let e = invalid(&with_client_script(
        r#"{ expect_line = { regex = '(?P<a.b>\d+)' } }"#,
    ));
    e.reports("invalid `regex` in `expect_line`", "a.b>");
    e.says("not a valid variable name");
    let e = invalid(&with_client_script(
        r#"{ expect_line = { regex = '(?P<port>\d+)' } }"#,
    ));
    e.reports("invalid `regex` in `expect_line`", "port>");
}

#[test]
fn matcher_tables_are_checked() {
    let e = invalid(&with_client_script(r#"{ expect = { json = "ok" } }"#));
    e.reports("`json` must be a table of the keys to find", "\"ok\"");
    let e = invalid(&with_client_script(
        r#"{ expect = { regex = "a", contains = "b" } }"#,
    ));
    e.reports("`expect` has both `regex` and `contains`", "contains");
    let e = invalid(&with_client_script(
        r#"{ expect = { regex = "a", text = "b" } }"#,
    ));
    e.reports("`expect` has both `regex` and `text`", "text");
    let e = invalid(&with_client_script(
        r#"{ expect_line = { regex = "a", max = 5 } }"#,
    ));
    e.reports("`max` has no meaning in this `expect_line`", "max");
    let e = invalid(&with_client_script(
        r#"{ expect = { text = "a", max = 5 } }"#,
    ));
    e.reports("`max` has no meaning beside exact data", "max");
    let e = invalid(&with_client_script(r#"{ expect = { contains = "" } }"#));
    e.reports("invalid `contains` in `expect`", "\"\"");
    let e = invalid(&with_client_script(r#"{ expect = { regxe = "a" } }"#));
    e.says("regxe");
    let e = invalid(&with_client_script(r#"{ expect_silence = "soon" }"#));
    e.reports("`expect_silence` is not a valid duration", "\"soon\"");
    let e = invalid(&with_client_script(
        r#"{ expect_silence = "1s", timeout = "2s" }"#,
    ));
    e.reports("`expect_silence` does not wait for anything", "timeout");
    let e = invalid(&with_client_script(
        r#"{ recv = { max = 2, expect = { len = 3 } } }"#,
    ));
    e.reports("can never return these 3 bytes", "{ len = 3 }");
}

#[test]
fn unread_takes_three_values() {
    let e = invalid(&format!("unread = \"warning\"\n{ECHO}"));
    e.reports("`unread` cannot be `warning`", "\"warning\"");
    e.says("\"warn\", \"fail\" or \"ignore\"");
    for value in ["warn", "fail", "ignore"] {
        crate::scenario(&format!("unread = \"{value}\"\n{ECHO}"));
    }
}

#[test]
fn template_placeholders_are_checked_at_load() {
    let e = invalid(&with_client_script(
        r#"{ send = { template = "auth {tokn}\n" } }, { expect_line = { regex = '(?P<token>\w+)' } }"#,
    ));
    e.reports("unknown placeholder `{tokn}`", "{tokn}");
    e.says("did you mean `{token}`?");
    let e = invalid(&with_client_script(
        r#"{ send = { template = "auth {token\n" } }"#,
    ));
    e.reports("a `{` that is never closed", "{token");
    let e = invalid(&with_client_script(r#"{ send = { template = "a } b" } }"#));
    e.reports("a single `}` in a template", "} b");
    let e = invalid(&with_client_script(
        r#"{ send = { template = "{port:nope}" } }"#,
    ));
    e.reports("names no server", "{port:nope}");
    // Every DATA position takes a template, and each checks its variables.
    for step in [
        r#"{ expect = { contains = { template = "x{tokn}" } } }"#,
        r#"{ expect_line = { template = "x{tokn}" } }"#,
        r#"{ expect_line = { contains = { template = "x{tokn}" } } }"#,
        r#"{ recv = { max = 9, expect = { contains = { template = "x{tokn}" } } } }"#,
        r#"{ send_frame = { framing = "u32le", template = "x{tokn}" } }"#,
        r#"{ expect_frame = { framing = "u32le", template = "x{tokn}" } }"#,
        r#"{ expect_frame = { framing = "u32le", contains = { template = "x{tokn}" } } }"#,
        r#"{ expect_frame = { framing = "json-header", body = { template = "x{tokn}" } } }"#,
        r#"{ send = { template = "x{tokn}", chunks = [1] } }"#,
    ] {
        let e = invalid(&with_client_script(&format!(
            "{step}, {{ expect_line = {{ regex = '(?P<token>\\w+)' }} }}"
        )));
        e.reports("unknown placeholder `{tokn}`", "{tokn}");
        e.says("did you mean `{token}`?");
    }
}

/// `{VAR}` in a program's `command`, `env` and `stdin`: a name no regex of the
/// file captures is an error at its line and column; one that some regex
/// captures (a step's, a client program's output, a server's `ready = { log }`)
/// loads.
#[test]
fn program_variables_are_checked_at_load() {
    let file = |command: &str, env: &str, stdin: &str, capture: &str| {
        format!(
            r#"[servers.srv]
command = ["python3", "srv.py", "{{port}}", "{command}"]
env = {{ K = "{env}" }}
{capture}

[[clients]]
name = "prog"
command = ["python3", "c.py", "{command}"]
stdin = {{ template = "{stdin}" }}
stdout = {{ regex = 'out (?P<printed>\w+)' }}
"#
        )
    };
    let e = invalid(&file("{tokn}", "{envv}", "{stdn}", ""));
    e.reports("unknown placeholder `{tokn}`", "{tokn}");
    e.reports("unknown placeholder `{envv}`", "{envv}");
    e.reports("unknown placeholder `{stdn}`", "{stdn}");
    e.says("no regex in this scenario captures `tokn`");
    let e = invalid(&file("awk {print}", "x", "x", ""));
    e.reports("unknown placeholder `{print}`", "{print}");
    let e = invalid(&file("--port={prot}", "x", "x", ""));
    e.reports("unknown placeholder `{prot}`", "{prot}");
    e.says("did you mean `{port}`?");
    // Captured by a client program's output, and by a server's ready log.
    crate::scenario(&file("{printed}", "{printed}", "{printed}", ""));
    crate::scenario(&file(
        "{key}",
        "{key}",
        "{key}",
        "ready = { log = 'key=(?P<key>\\w+)' }",
    ));
    let e = invalid(&file(
        "x",
        "x",
        "x",
        "ready = { log = 'key=(?P<port>\\w+)' }",
    ));
    e.reports("`port` is a placeholder of its own", "port>");
}

/// A client program's `wait` must be signalled by someone, and its `signal`
/// counts as one.
#[test]
fn a_program_wait_needs_a_signal() {
    let file = |signal: &str| {
        format!(
            r#"[servers.srv]
builtin = "echo"

[[clients]]
name = "first"
command = ["true"]
{signal}

[[clients]]
name = "second"
command = ["true"]
wait = "first-done"
"#
        )
    };
    let e = invalid(&file(""));
    e.reports("nothing ever signals `first-done`", "wait = \"first-done\"");
    crate::scenario(&file("signal = \"first-done\""));
    let e = invalid(&file("signal = \"\""));
    e.reports("a signal needs a name", "\"\"");
}

#[test]
fn a_frame_header_needs_json_header_framing() {
    let e = invalid(&with_client_script(
        r#"{ send_frame = { framing = "u32le", header = { a = 1 }, text = "x" } }"#,
    ));
    e.reports("`header` is for `framing = \"json-header\"`", "{ a = 1 }");
    let e = invalid(&with_client_script(
        r#"{ send_frame = { framing = "json-header", header = { md5 = "{md5" }, text = "x" } }"#,
    ));
    e.reports("a `{` that is never closed", "{md5\"");
    let e = invalid(&with_client_script(
        r#"{ expect_frame = { framing = "json-header", body = "x", text = "y" } }"#,
    ));
    e.reports("`expect_frame` has both `body` and `text`", "text");
}
