//! The suite runner as a CI user drives it through the binary: selection (`-E`,
//! `--partition`, `--list`, `check`), retries and flaky runs, `--fail-fast`,
//! `group`, `--rerun-failed`, colour. Every scenario runs over real loopback sockets.

use crate::{assert_exit, folder, last_line, stderr, stdout, FLAKY_SERVER};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

/// How long one invocation of the binary may take (a watchdog, not a timing).
const BOUND: Duration = Duration::from_secs(60);

/// A passing scenario named `NAME` with tags.
fn passing(name: &str, tags: &[&str]) -> String {
    format!(
        r#"name = "{name}"
tags = {tags:?}

[servers.echo]
builtin = "echo"

[[clients]]
script = [ {{ send = "hi\n" }}, {{ expect = "hi\n" }} ]
"#
    )
}

/// A failing scenario: the echo server sends back what it got, not `hI`.
fn failing(name: &str) -> String {
    format!(
        r#"name = "{name}"

[servers.echo]
builtin = "echo"

[[clients]]
script = [ {{ send = "hi\n" }}, {{ expect = "hI\n" }} ]
"#
    )
}

fn flaky_scenario(extra_top: &str) -> String {
    format!(
        r#"name = "flaky once"
{extra_top}

[servers.srv]
command = ["python3", "flaky.py", "{{port}}"]

[[clients]]
connect = "srv"
script = [ {{ send = "ping\n" }}, {{ expect = "ping\n" }} ]
"#
    )
}

async fn wirecheck_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wirecheck"));
    command.args(args).current_dir(dir);
    command.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
    for (key, value) in env {
        command.env(key, value);
    }
    crate::output_within(command, BOUND, &format!("wirecheck {}", args.join(" "))).await
}

/// Ten small scenarios in three folders, names and tags varied.
fn library() -> tempfile::TempDir {
    let mut files = Vec::new();
    for (folder, count) in [("alpha", 4), ("beta", 3), ("gamma", 3)] {
        for i in 0..count {
            let tags: &[&str] = if i % 2 == 0 {
                &["even", "tcp"]
            } else {
                &["odd"]
            };
            files.push((
                format!("s/{folder}/case{i}.toml"),
                passing(&format!("{folder} Case {i}"), tags),
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn listed(output: &Output) -> Vec<String> {
    stdout(output)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn every_partition_kind_runs_each_scenario_in_exactly_one_job() {
    let dir = library();
    let all = listed(&wirecheck_in(dir.path(), &["run", "s", "--list"], &[]).await);
    assert_eq!(all.len(), 10, "{all:?}");
    for kind in ["count", "hash", "slice"] {
        let mut union = BTreeSet::new();
        let mut total = 0;
        for shard in 1..=3 {
            let spec = format!("{kind}:{shard}/3");
            let output = wirecheck_in(
                dir.path(),
                &["run", "s", "--list", "--partition", &spec],
                &[],
            )
            .await;
            assert_exit(&output, 0);
            let share = listed(&output);
            total += share.len();
            union.extend(share);
        }
        assert_eq!(total, 10, "{kind}: a scenario ran in two jobs");
        assert_eq!(union.len(), 10, "{kind}: a scenario ran in no job");
    }
    // count: round-robin within each folder: job 1 of 3 takes case0 and (alpha) case3.
    let output = wirecheck_in(
        dir.path(),
        &["run", "s", "--list", "--partition", "count:1/3"],
        &[],
    )
    .await;
    assert_eq!(
        listed(&output),
        [
            "s/alpha/case0.toml",
            "s/alpha/case3.toml",
            "s/beta/case0.toml",
            "s/gamma/case0.toml"
        ]
    );
    // slice: round-robin over the whole selection: positions 1, 4, 7, 10.
    let output = wirecheck_in(
        dir.path(),
        &["run", "s", "--list", "--partition", "slice:1/3"],
        &[],
    )
    .await;
    assert_eq!(
        listed(&output),
        [
            "s/alpha/case0.toml",
            "s/alpha/case3.toml",
            "s/beta/case2.toml",
            "s/gamma/case2.toml"
        ]
    );
}

#[tokio::test]
async fn a_partition_runs_its_share_and_says_so_in_the_closing_line() {
    let dir = library();
    let output = wirecheck_in(dir.path(), &["run", "s", "--partition", "slice:2/3"], &[]).await;
    assert_exit(&output, 0);
    assert_eq!(last_line(&output), "3 passed, 0 failed");
}

#[tokio::test]
async fn filter_expressions_select_by_name_tag_and_path() {
    let dir = library();
    let cases: &[(&str, usize)] = &[
        ("name(ALPHA*)", 4),
        ("tag(even) and not path(*gamma*)", 4),
        ("tag(odd) | name(*case 0)", 7),
        ("!(tag(even) or tag(odd))", 0),
        ("all() & none()", 0),
        ("path(s/beta/*)", 3),
    ];
    for (expr, expected) in cases {
        let output = wirecheck_in(dir.path(), &["run", "s", "--list", "-E", expr], &[]).await;
        assert_exit(&output, 0);
        assert_eq!(
            listed(&output).len(),
            *expected,
            "-E {expr}: {}",
            stdout(&output)
        );
    }
    // Two expressions widen; --filter narrows what they select.
    let output = wirecheck_in(
        dir.path(),
        &[
            "run",
            "s",
            "--list",
            "-E",
            "path(*beta*)",
            "-E",
            "path(*gamma*)",
            "--filter",
            "odd",
        ],
        &[],
    )
    .await;
    assert_eq!(listed(&output), ["s/beta/case1.toml", "s/gamma/case1.toml"]);
}

#[tokio::test]
async fn a_bad_expression_or_partition_is_a_usage_error_with_a_caret() {
    let dir = library();
    let output = wirecheck_in(dir.path(), &["run", "s", "-E", "tag(x) or nmae(y)"], &[]).await;
    assert_exit(&output, 2);
    let err = stderr(&output);
    assert!(err.contains("unknown function `nmae`"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let quoted = lines
        .iter()
        .position(|l| *l == "  tag(x) or nmae(y)")
        .expect(&err);
    assert_eq!(lines[quoted + 1], "            ^^^^", "{err}");
    assert!(stdout(&output).is_empty(), "nothing may run");

    let output = wirecheck_in(dir.path(), &["run", "s", "--partition", "hash:4/3"], &[]).await;
    assert_exit(&output, 2);
    let err = stderr(&output);
    assert!(err.contains("K must be from 1 to N (3)"), "{err}");
    assert!(err.contains("  hash:4/3\n       ^\n"), "{err}");

    // `check` takes the same flags, with the same errors.
    let output = wirecheck_in(dir.path(), &["check", "s", "-E", "(tag(x)"], &[]).await;
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("never closed"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn list_runs_nothing() {
    let dir = folder(&[("fail.toml", &failing("would fail"))]);
    let output = wirecheck_in(dir.path(), &["run", ".", "--list"], &[]).await;
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "./fail.toml\twould fail\n");
    assert!(stderr(&output).contains("1 scenarios selected"));
}

#[tokio::test]
async fn check_takes_the_selection_flags() {
    let dir = library();
    let output = wirecheck_in(
        dir.path(),
        &["check", "s", "-E", "tag(odd)", "--partition", "hash:1/1"],
        &[],
    )
    .await;
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        4,
        "{out}"
    );
    assert!(out.ends_with("4 valid, 0 invalid\n"), "{out}");
}

#[tokio::test]
async fn a_run_that_fails_then_passes_is_flaky() {
    let dir = folder(&[
        ("flaky.toml", &flaky_scenario("")),
        ("flaky.py", FLAKY_SERVER),
    ]);
    let output = wirecheck_in(
        dir.path(),
        &[
            "run",
            "flaky.toml",
            "--retries",
            "2",
            "--junit",
            "junit.xml",
            "--json",
            "r.json",
        ],
        &[],
    )
    .await;
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(out.contains("TRY 1 FAIL flaky once"), "{out}");
    assert!(out.contains("FLAKY flaky once"), "{out}");
    assert!(out.contains("passed on attempt 2"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[lines.len() - 1], "1 passed, 0 failed");
    assert!(
        lines[lines.len() - 2].contains("flaky.toml): passed on attempt 2"),
        "{out}"
    );
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(junit.contains("<flakyFailure"), "{junit}");
    assert!(!junit.contains("<failure"), "{junit}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(json["flaky"], 1);
    assert_eq!(json["runs"][0]["attempts"], 2);
    assert_eq!(json["runs"][0]["flaky"], true);
}

#[tokio::test]
async fn flaky_result_fail_fails_the_suite_and_scenario_retries_apply() {
    // `retries = 1` in the file, no --retries on the command line.
    let dir = folder(&[
        ("flaky.toml", &flaky_scenario("retries = 1")),
        ("flaky.py", FLAKY_SERVER),
    ]);
    let output = wirecheck_in(
        dir.path(),
        &[
            "run",
            "flaky.toml",
            "--flaky-result",
            "fail",
            "--junit",
            "junit.xml",
        ],
        &[],
    )
    .await;
    assert_exit(&output, 1);
    assert_eq!(last_line(&output), "0 passed, 1 failed");
    assert!(stdout(&output).contains("counted as failed (--flaky-result fail)"));
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
}

#[tokio::test]
async fn without_retries_the_same_server_fails() {
    let dir = folder(&[
        ("flaky.toml", &flaky_scenario("")),
        ("flaky.py", FLAKY_SERVER),
    ]);
    let output = wirecheck_in(dir.path(), &["run", "flaky.toml"], &[]).await;
    assert_exit(&output, 1);
    assert_eq!(last_line(&output), "0 passed, 1 failed");
    // --retries 0 overrides a scenario's own retries.
    std::fs::remove_file(dir.path().join("started-before")).unwrap();
    std::fs::write(dir.path().join("flaky.toml"), flaky_scenario("retries = 3")).unwrap();
    let output = wirecheck_in(dir.path(), &["run", "flaky.toml", "--retries", "0"], &[]).await;
    assert_exit(&output, 1);
}

#[tokio::test]
async fn retries_above_100_are_refused() {
    let dir = library();
    let output = wirecheck_in(dir.path(), &["run", "s", "--retries", "101"], &[]).await;
    assert_exit(&output, 2);
    let dir = folder(&[("r.toml", &format!("retries = 101\n{}", passing("r", &[])))]);
    let output = wirecheck_in(dir.path(), &["run", "r.toml"], &[]).await;
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("`retries` is 101, outside 0..=100"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn fail_fast_starts_nothing_after_the_first_failure() {
    let dir = folder(&[
        ("a-fails.toml", &failing("first fails")),
        ("b.toml", &passing("second", &[])),
        ("c.toml", &passing("third", &[])),
    ]);
    let output = wirecheck_in(
        dir.path(),
        &["run", ".", "-j", "1", "--fail-fast", "--junit", "junit.xml"],
        &[],
    )
    .await;
    assert_exit(&output, 1);
    assert_eq!(last_line(&output), "0 passed, 1 failed, 2 skipped");
    let out = stdout(&output);
    assert!(!out.contains("PASS"), "{out}");
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<skipped").count(), 2, "{junit}");
    // Without --fail-fast every scenario runs.
    let output = wirecheck_in(dir.path(), &["run", ".", "-j", "1"], &[]).await;
    assert_eq!(last_line(&output), "2 passed, 1 failed");
}

/// A scenario whose scripted server listens on a fixed port and holds it for a
/// while: two of these at once collide on the port.
fn fixed_port(name: &str, port: u16, group: Option<&str>) -> String {
    let group = group.map_or(String::new(), |g| format!("group = \"{g}\"\n"));
    format!(
        r#"name = "{name}"
{group}
[servers.srv]
bind = "127.0.0.1:{port}"
script = [ {{ expect = "x" }}, {{ sleep = "300ms" }}, {{ send = "y" }} ]

[[clients]]
connect = "srv"
script = [ {{ send = "x" }}, {{ expect = "y" }} ]
"#
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_group_never_runs_two_of_its_scenarios_at_once() {
    let port = free_port();
    let dir = folder(&[
        ("one.toml", &fixed_port("one", port, Some("port"))),
        ("two.toml", &fixed_port("two", port, Some("port"))),
        ("three.toml", &fixed_port("three", port, Some("port"))),
    ]);
    let output = wirecheck_in(dir.path(), &["run", ".", "-j", "3"], &[]).await;
    assert_exit(&output, 0);
    assert_eq!(last_line(&output), "3 passed, 0 failed");
    // Without the group the three would collide on the port (whichever binds
    // second fails to start); grouped, each waits for the one before.
}

#[tokio::test]
async fn rerun_failed_runs_only_what_failed_last_time() {
    let dir = folder(&[
        ("pass.toml", &passing("always passes", &[])),
        ("fail.toml", &failing("fails until fixed")),
    ]);
    let record = dir.path().join("record.json");
    let record = record.to_str().unwrap();
    let output = wirecheck_in(dir.path(), &["run", ".", "--record", record], &[]).await;
    assert_eq!(last_line(&output), "1 passed, 1 failed");
    let output = wirecheck_in(
        dir.path(),
        &["run", ".", "--rerun-failed", "--record", record],
        &[],
    )
    .await;
    assert_exit(&output, 1);
    assert_eq!(last_line(&output), "0 passed, 1 failed");
    assert!(!stdout(&output).contains("always passes"));
    // Fixed: the rerun passes, and the next rerun has nothing to do.
    std::fs::write(
        dir.path().join("fail.toml"),
        passing("fails until fixed", &[]),
    )
    .unwrap();
    let output = wirecheck_in(
        dir.path(),
        &["run", ".", "--rerun-failed", "--record", record],
        &[],
    )
    .await;
    assert_exit(&output, 0);
    assert_eq!(last_line(&output), "1 passed, 0 failed");
    let output = wirecheck_in(
        dir.path(),
        &["run", ".", "--rerun-failed", "--record", record],
        &[],
    )
    .await;
    assert_exit(&output, 0);
    assert_eq!(last_line(&output), "0 passed, 0 failed");
    assert!(
        stderr(&output).contains("nothing failed"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn the_default_record_lives_under_target_per_selection() {
    let dir = folder(&[
        ("pass.toml", &passing("p", &[])),
        ("fail.toml", &failing("f")),
    ]);
    wirecheck_in(dir.path(), &["run", "."], &[]).await;
    let records: Vec<_> = std::fs::read_dir(dir.path().join("target/wirecheck"))
        .expect("the record folder")
        .collect();
    assert_eq!(records.len(), 1);
    // Another selection keeps its own record and does not disturb this one.
    wirecheck_in(dir.path(), &["run", ".", "-E", "name(p)"], &[]).await;
    let output = wirecheck_in(dir.path(), &["run", ".", "--rerun-failed"], &[]).await;
    assert_eq!(last_line(&output), "0 passed, 1 failed");
}

#[tokio::test]
async fn colour_only_when_asked_for_or_on_a_terminal() {
    let dir = folder(&[
        ("pass.toml", &passing("p", &[])),
        ("fail.toml", &failing("f")),
    ]);
    let plain = wirecheck_in(dir.path(), &["run", "."], &[]).await;
    assert!(!stdout(&plain).contains('\x1b'), "a pipe gets no colour");
    let forced = wirecheck_in(dir.path(), &["run", "."], &[("CLICOLOR_FORCE", "1")]).await;
    let out = stdout(&forced);
    assert!(
        out.contains("\x1b["),
        "CLICOLOR_FORCE=1 gives colour: {out:?}"
    );
    // The closing line stays exactly the same, colour or not.
    assert_eq!(last_line(&forced), "1 passed, 1 failed");
    let vetoed = wirecheck_in(
        dir.path(),
        &["run", "."],
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
    )
    .await;
    assert!(!stdout(&vetoed).contains('\x1b'), "NO_COLOR wins");
}

#[tokio::test]
async fn repeat_mode_groups_failures_by_signature() {
    let dir = folder(&[
        ("fail.toml", &failing("always wrong")),
        ("pass.toml", &passing("fine", &[])),
    ]);
    let output = wirecheck_in(dir.path(), &["run", ".", "--repeat", "6"], &[]).await;
    assert_exit(&output, 1);
    let out = stdout(&output);
    // One full explanation; the other five failing runs take a line each.
    assert_eq!(out.matches("  --> ").count(), 1, "{out}");
    assert_eq!(
        out.matches(": the same failure as run ").count(),
        5,
        "{out}"
    );
    assert!(
        out.contains("always wrong (./fail.toml): 6 of 6 runs failed (100.0%)"),
        "{out}"
    );
    assert!(out.contains("    6x actor `client1`, step 2: "), "{out}");
    assert!(!out.contains("fine (./pass.toml):"), "{out}");
    assert_eq!(last_line(&output), "6 passed, 6 failed");
}

#[tokio::test]
async fn tap_14_has_a_point_per_run_with_yaml_diagnostics() {
    let dir = folder(&[
        ("a-fails.toml", &failing("first # fails")),
        ("b.toml", &passing("second", &[])),
        ("c.toml", &passing("third", &[])),
        (
            "d-bad.toml",
            "name = \"broken\"\n[servers.s]\nbuiltin = \"nope\"\n",
        ),
    ]);
    let output = wirecheck_in(
        dir.path(),
        &["run", ".", "-j", "1", "--fail-fast", "--tap", "out.tap"],
        &[],
    )
    .await;
    assert_exit(&output, 2);
    let tap = std::fs::read_to_string(dir.path().join("out.tap")).unwrap();
    let lines: Vec<&str> = tap.lines().collect();
    assert_eq!(lines[0], "TAP version 14");
    assert_eq!(lines[1], "1..4");
    assert_eq!(lines[2], "not ok 1 - first \\# fails");
    assert_eq!(lines[3], "  ---");
    let end = lines
        .iter()
        .position(|l| *l == "  ...")
        .expect("the YAML block ends");
    let block = lines[3..end].join("\n");
    assert!(
        block.contains("  message: \"the bytes that arrived differ"),
        "{block}"
    );
    assert!(block.contains("  severity: fail"), "{block}");
    assert!(block.contains("    line: 7"), "{block}");
    // Everything inside the block is indented past the test point.
    assert!(lines[3..=end].iter().all(|l| l.starts_with("  ")), "{tap}");
    let points: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "))
        .collect();
    assert_eq!(points.len(), 4, "{tap}");
    assert_eq!(
        *points[1],
        "ok 2 - second # SKIP not started: --fail-fast stopped the suite"
    );
    assert_eq!(
        *points[2],
        "ok 3 - third # SKIP not started: --fail-fast stopped the suite"
    );
    assert!(
        points[3].starts_with("not ok 4 - ./d-bad.toml is not a valid scenario file"),
        "{tap}"
    );
    assert_eq!(*lines.last().unwrap(), "# 0 passed, 2 failed, 2 skipped");
}

/// Reads lines from a running wirecheck until one satisfies `done`, failing the test
/// if none does within the bound (a watchdog, not a timing).
async fn read_until(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<String>,
    done: impl Fn(&str) -> bool,
) {
    let wait = async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            let hit = done(&line);
            seen.push(line);
            if hit {
                return;
            }
        }
        panic!("wirecheck ended early:\n{}", seen.join("\n"));
    };
    if tokio::time::timeout(BOUND, wait).await.is_err() {
        panic!("no expected line within {BOUND:?}:\n{}", seen.join("\n"));
    }
}

#[tokio::test]
async fn watch_runs_again_when_a_scenario_or_its_data_changes() {
    use tokio::io::AsyncBufReadExt;
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("payload.bin"), "hello").unwrap();
    let data_file = data.path().join("payload.bin");
    let uses_data = format!(
        r#"name = "echoes the payload"
[servers.echo]
builtin = "echo"
[[clients]]
script = [ {{ send = {{ file = "{0}" }} }}, {{ expect = "hello" }} ]
"#,
        data_file.display()
    );
    let dir = folder(&[("a.toml", &uses_data), ("b.toml", &passing("second", &[]))]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wirecheck"))
        .args(["run", ".", "--watch", "-j", "1", "--junit", "report.xml"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, |l| l == "2 passed, 0 failed").await;
    read_until(&mut lines, &mut seen, |l| l.starts_with("watching ")).await;
    // The report it wrote did not trigger a run; a scenario edit does.
    std::fs::write(dir.path().join("b.toml"), failing("second")).unwrap();
    read_until(&mut lines, &mut seen, |l| l.starts_with("changed: ")).await;
    read_until(&mut lines, &mut seen, |l| l == "1 passed, 1 failed").await;
    read_until(&mut lines, &mut seen, |l| l.starts_with("watching ")).await;
    // A data file outside the scenario folder, named by a scenario, is watched too.
    std::fs::write(&data_file, "HELLO").unwrap();
    read_until(&mut lines, &mut seen, |l| {
        l.contains("payload.bin; running again")
    })
    .await;
    read_until(&mut lines, &mut seen, |l| l == "0 passed, 2 failed").await;
    read_until(&mut lines, &mut seen, |l| l.starts_with("watching ")).await;
    // Ctrl-C ends it.
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(BOUND, child.wait())
        .await
        .expect("it stops")
        .unwrap();
    assert_eq!(status.code(), Some(130), "{}", seen.join("\n"));
}

#[tokio::test]
async fn an_empty_partition_share_passes_but_an_empty_filter_does_not() {
    let dir = folder(&[
        ("a.toml", &passing("a", &[])),
        ("b.toml", &passing("b", &[])),
    ]);
    let output = wirecheck_in(dir.path(), &["run", ".", "--partition", "slice:3/3"], &[]).await;
    assert_exit(&output, 0);
    assert_eq!(last_line(&output), "0 passed, 0 failed");
    assert!(stderr(&output).contains("share of --partition slice:3/3 is empty"));
    let output = wirecheck_in(dir.path(), &["run", ".", "-E", "name(zzz)"], &[]).await;
    assert_exit(&output, 2);
}

/// On a terminal (a pseudo-terminal made by util-linux's `script`), the run draws a
/// live progress bar with the running scenario and colours its verdicts; the plain
/// lines and the closing line are still there.
#[tokio::test]
async fn a_terminal_gets_a_progress_bar_and_colour() {
    let slow = r#"name = "takes a moment"
[servers.echo]
builtin = "echo"
[[clients]]
script = [ { send = "a" }, { sleep = "700ms" }, { expect = "a" } ]
"#;
    let dir = folder(&[("slow.toml", slow), ("quick.toml", &passing("quick", &[]))]);
    let command_line = format!("{} run . -j 2", env!("CARGO_BIN_EXE_wirecheck"));
    let mut command = Command::new("script");
    command
        .args(["-qec", &command_line, "/dev/null"])
        .current_dir(dir.path())
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CI");
    let output = crate::output_within(command, BOUND, "script (util-linux)").await;
    assert_exit(&output, 0);
    let screen = stdout(&output);
    // The bar's message and the running scenario's line, drawn while it ran.
    assert!(screen.contains("passed, 0 failed"), "{screen:?}");
    assert!(screen.contains("takes a moment"), "{screen:?}");
    let bar_frames = screen.matches("\u{1b}[2K").count() + screen.matches("\u{1b}[1A").count();
    assert!(bar_frames > 0, "no bar was drawn: {screen:?}");
    // Coloured verdicts, and the plain closing line at the end.
    assert!(
        screen.contains("\u{1b}[1m\u{1b}[32mPASS")
            || screen.contains("\u{1b}[32;1mPASS")
            || screen.contains("\u{1b}[1;32mPASS"),
        "{screen:?}"
    );
    assert!(
        screen.trim_end().ends_with("2 passed, 0 failed"),
        "{screen:?}"
    );
}
