//! `max_memory` on programs under test: the runner samples the resident memory of a
//! program and every process it started while the run goes, and a program that
//! holds more than its limit fails the scenario with a message that names it, its
//! line, the size seen and the limit; its output is in the report and it is
//! stopped. A program that stays under its limit passes. Bad values are loader
//! errors at their line and column.
//!
//! The programs are small Python servers that allocate (and touch) a number of
//! megabytes when a client tells them to: real memory, measured from /proc.

use crate::{is_gone, load_errors};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use rstest::rstest;
use wirecheck::runner::FailureKind;

use crate::{assert_passed, failure, rendered, run_loaded, scenario_in, SCENARIO_FILE};

/// A server that, for each line `N` a client sends, allocates N MB more and keeps
/// it (a leak on demand), then answers `holding N` with its total. `child N` makes
/// a child process (in the server's group) hold N MB instead. It prints its pid.
const GROWER: &str = r#"
import os, socket, subprocess, sys
held = []
children = []
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(4)
print("grower pid", os.getpid())
while True:
    conn, _ = srv.accept()
    for line in conn.makefile("r"):
        words = line.split()
        if words[0] == "child":
            child = subprocess.Popen(
                [sys.executable, "-c",
                 "import sys; b = bytearray(int(sys.argv[1]) << 20); print('child holds', len(b) >> 20, 'MB', flush=True); sys.stdin.read()",
                 words[1]],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            children.append(child)
            child.stdout.readline()
            conn.sendall(b"child holding %d\n" % int(words[1]))
            continue
        held.append(bytearray(int(words[0]) << 20))
        total = sum(len(b) for b in held) >> 20
        print("allocated", words[0], "MB, holding", total, "MB")
        conn.sendall(b"holding %d\n" % total)
    conn.close()
"#;

fn grower_scenario(dir: &Path, limit: &str, script: &str) -> wirecheck::scenario::Scenario {
    std::fs::write(dir.join("grower.py"), GROWER).unwrap();
    scenario_in(
        dir,
        &format!(
            r#"
name = "a server that grows its memory"
timeout = "60s"

[servers.grower]
command = ["python3", "grower.py", "{{port}}"]
max_memory = {limit}

[[clients]]
script = {script}
"#
        ),
    )
}

/// The line `key` is written on in the inline scenario (1-based).
fn line_of(scenario: &wirecheck::scenario::Scenario, key: &str) -> usize {
    scenario
        .source
        .lines()
        .position(|l| l.trim_start().starts_with(key))
        .expect("the key is in the scenario")
        + 1
}

/// The grower's pid, from the report.
fn grower_pid(text: &str) -> u32 {
    let at = text
        .find("grower pid ")
        .expect("the server printed its pid")
        + "grower pid ".len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_server_that_grows_past_max_memory_fails_the_run_while_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    // After the growth the client waits for a line that never comes: only the
    // memory watcher can end this run before the step's 30 s deadline.
    let scenario = grower_scenario(
        dir.path(),
        r#""100MiB""#,
        r#"[ { send = "200\n" }, { expect = "holding 200\n", timeout = "20s" }, { expect = "never sent", timeout = "30s" } ]"#,
    );
    let ran = run_loaded(&scenario).await;
    let text = rendered(&ran);
    let failure = failure(&ran);
    assert_eq!(failure.kind, FailureKind::Program, "{text}");
    assert_eq!(failure.actor.as_deref(), Some("grower"));
    let server_line = line_of(&scenario, "[servers.grower]");
    let limit_line = line_of(&scenario, "max_memory");
    assert!(
        failure
            .message
            .starts_with(&format!("server `grower` (line {server_line}) used ")),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains(&format!(
            "more than its `max_memory = \"100MiB\"` (line {limit_line}) allows (100.0 MiB)"
        )),
        "{}",
        failure.message
    );
    // The size seen, in bytes, is above the limit (the sample may have caught the
    // allocation half done): the memory was real.
    let seen: u64 = failure
        .message
        .split(" bytes: ")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a byte count in: {}", failure.message));
    assert!(seen > 100 << 20, "{seen} bytes");
    // The report points at the key (file:line:col) and keeps the server's output.
    assert!(
        text.contains(&format!("{SCENARIO_FILE}:{limit_line}:1")),
        "{text}"
    );
    assert!(
        text.contains("grower stdout: allocated 200 MB, holding 200 MB"),
        "{text}"
    );
    // Caught while the run went, not by the client's 30 s deadline.
    assert!(ran.duration < Duration::from_secs(25), "{:?}", ran.duration);
    // And the server was stopped.
    assert!(is_gone(grower_pid(&text)), "the server is still running");
}

#[tokio::test]
async fn growth_just_before_the_last_step_ends_still_fails_the_run() {
    // The client's script ends as soon as the server answers: the run ends before
    // the watcher's next sample, and the last look at the program catches it.
    let dir = tempfile::tempdir().unwrap();
    let scenario = grower_scenario(
        dir.path(),
        "104857600",
        r#"[ { send = "150\n" }, { expect = "holding 150\n", timeout = "20s" } ]"#,
    );
    for _ in 0..3 {
        let ran = run_loaded(&scenario).await;
        let failure = failure(&ran);
        assert_eq!(failure.kind, FailureKind::Program, "{}", rendered(&ran));
        assert!(
            failure
                .message
                .contains("more than its `max_memory = 104857600`"),
            "{}",
            failure.message
        );
    }
}

#[tokio::test]
async fn a_server_that_stays_under_max_memory_passes() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = grower_scenario(
        dir.path(),
        r#""100MiB""#,
        r#"[ { send = "20\n" }, { expect = "holding 20\n", timeout = "20s" }, { send = "20\n" }, { expect = "holding 40\n", timeout = "20s" } ]"#,
    );
    let ran = run_loaded(&scenario).await;
    assert_passed(&ran);
}

#[tokio::test]
async fn the_limit_counts_the_processes_a_server_started() {
    // The server itself stays small; a child it started holds 150 MB.
    let dir = tempfile::tempdir().unwrap();
    let scenario = grower_scenario(
        dir.path(),
        r#""100 MiB""#,
        r#"[ { send = "child 150\n" }, { expect = "child holding 150\n", timeout = "20s" }, { expect = "never sent", timeout = "30s" } ]"#,
    );
    let ran = run_loaded(&scenario).await;
    let failure = failure(&ran);
    assert_eq!(failure.kind, FailureKind::Program, "{}", rendered(&ran));
    assert!(
        failure.message.contains("server `grower`") && failure.message.contains("100.0 MiB"),
        "{}",
        failure.message
    );
    assert!(ran.duration < Duration::from_secs(25), "{:?}", ran.duration);
}

#[tokio::test]
async fn a_client_program_over_its_max_memory_fails_and_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hog.py"),
        "import time\nprint('hog allocating 160 MB', flush=True)\nb = bytearray(160 << 20)\ntime.sleep(40)\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("small.py"),
        "b = bytearray(8 << 20)\nprint('small holds 8 MB')\n",
    )
    .unwrap();
    let scenario = scenario_in(
        dir.path(),
        r#"
timeout = "60s"

[servers.srv]
builtin = "echo"

[[clients]]
name = "small"
command = ["python3", "small.py"]
max_memory = "64MiB"
stdout = { contains = "small holds 8 MB" }

[[clients]]
name = "hog"
command = ["python3", "hog.py"]
max_memory = "64MiB"
"#,
    );
    // The hog would run for 40 s with its 160 MB; the limit ends it long before.
    let ran = run_loaded(&scenario).await;
    let text = rendered(&ran);
    let failure = failure(&ran);
    assert_eq!(failure.kind, FailureKind::Program, "{text}");
    assert_eq!(failure.actor.as_deref(), Some("hog"), "{text}");
    assert!(
        failure.message.starts_with("client program `hog` (line ")
            && failure
                .message
                .contains("more than its `max_memory = \"64MiB\"`"),
        "{}",
        failure.message
    );
    assert!(text.contains("hog stdout: hog allocating 160 MB"), "{text}");
    assert!(ran.duration < Duration::from_secs(30), "{:?}", ran.duration);
}

#[rstest]
#[case::bytes_too_small(
    "max_memory = 100",
    "`max_memory` is 100 bytes, less than 1 MiB",
    "did you mean `max_memory = \"100MiB\"`?"
)]
#[case::negative("max_memory = -5", "a size cannot be negative", "a size is")]
#[case::ambiguous(
    "max_memory = \"600M\"",
    "`M` is ambiguous: write `MiB` (powers of 1024) or `MB` (powers of 1000)",
    "a size is"
)]
#[case::no_unit("max_memory = \"600\"", "has no unit", "a size is")]
#[case::unknown_unit(
    "max_memory = \"6 pages\"",
    "`pages` is not a unit of size",
    "a size is"
)]
#[case::huge("max_memory = \"2000TiB\"", "more than 1 PiB", "a size is")]
#[case::wrong_type("max_memory = true", "`max_memory` must be a size, not", "a size is")]
fn bad_max_memory_values_are_load_errors_at_their_place(
    #[case] line: &str,
    #[case] message: &str,
    #[case] hint: &str,
) {
    let text =
        format!("[servers.s]\ncommand = [\"p\", \"{{port}}\"]\n{line}\n[[clients]]\nscript = []\n");
    let errors = load_errors(&text);
    assert!(errors.contains(message), "{errors}");
    assert!(errors.contains(hint), "{errors}");
    // Line 3, at the value (after `max_memory = `).
    assert!(errors.contains("inline.toml:3:14"), "{errors}");
}

#[test]
fn max_memory_is_a_key_of_programs_only() {
    let errors = load_errors(
        "[servers.s]\nbuiltin = \"echo\"\nmax_memory = \"1GiB\"\n[[clients]]\nscript = []\n",
    );
    assert!(
        errors.contains("`max_memory` does not apply to server `s`"),
        "{errors}"
    );
    assert!(errors.contains("inline.toml:3:1"), "{errors}");
    assert!(
        errors.contains("limits a `command` server or a client program"),
        "{errors}"
    );
    assert!(!errors.contains("unknown key"), "{errors}");
    let errors = load_errors(
        "[servers.s]\nbuiltin = \"echo\"\n[[clients]]\nconnect = \"s\"\nmax_memory = \"1GiB\"\nscript = []\n",
    );
    assert!(
        errors.contains("`max_memory` does not apply to client `client1`"),
        "{errors}"
    );
    assert!(errors.contains("inline.toml:5:1"), "{errors}");
}

#[test]
fn every_accepted_form_loads_to_its_bytes() {
    for (written, bytes) in [
        ("1048576", 1u64 << 20),
        ("\"600MiB\"", 600 << 20),
        ("\"1.5GiB\"", 3 << 29),
        ("\"800MB\"", 800_000_000),
        ("\"2 gib\"", 2 << 30),
        ("\"2048KiB\"", 2 << 20),
    ] {
        let text = format!(
            "[servers.s]\ncommand = [\"p\", \"{{port}}\"]\nmax_memory = {written}\n[[clients]]\nscript = []\n"
        );
        let scenario = crate::load(&text).unwrap_or_else(|e| panic!("{}", e.render()));
        let wirecheck::scenario::ServerKind::Command(spec) = &scenario.servers[0].kind else {
            panic!("a command server");
        };
        assert_eq!(
            spec.max_memory.as_ref().map(|m| m.value),
            Some(bytes),
            "{written}"
        );
    }
}

#[tokio::test]
async fn the_binary_exits_2_on_a_bad_max_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[servers.s]\ncommand = [\"python3\", \"x.py\", \"{port}\"]\nmax_memory = \"lots\"\n\n[[clients]]\nconnect = \"s\"\nscript = []\n",
    )
    .unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wirecheck"));
    command.arg("run").arg(&file);
    let output: Output =
        crate::output_within(command, Duration::from_secs(60), "wirecheck run bad.toml").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml:3:14"), "{stderr}");
    assert!(
        stderr.contains("`max_memory` is not a valid size"),
        "{stderr}"
    );
}
