//! The `wirecheck` binary: `run` (exit codes, summary line, JUnit and JSON reports,
//! `--filter`, `--repeat`, invalid files), `check`, and `serve`.

use crate::{assert_exit, folder, last_line, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::process::Command;

/// How long one invocation of the binary may take.
const BOUND: Duration = Duration::from_secs(30);

const PASSING: &str = r#"name = "quick-pass-scenario"
tags = ["smoke-tag"]

[servers.echo]
builtin = "echo"

[[clients]]
script = [ { send = "hello\n" }, { expect = "hello\n" } ]
"#;

const FAILING: &str = r#"name = "deliberate-failure"
tags = ["broken-tag"]

[servers.echo]
builtin = "echo"

[[clients]]
script = [
  { send = "hello\n" },
  { expect = "hellO\n" },
]
"#;

const INVALID: &str = r#"name = "not valid"

[servers.echo]
builtin = "echo"

[[clients]]
script = [ { sned = "hello\n" } ]
"#;

async fn wirecheck(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wirecheck"));
    command.args(args);
    crate::output_within(command, BOUND, &format!("wirecheck {}", args.join(" "))).await
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

// ------------------------------------------------------------ run

#[tokio::test]
async fn run_reports_one_pass_one_failure_with_junit_and_json() {
    let dir = folder(&[("pass.toml", PASSING), ("fail.toml", FAILING)]);
    let junit = dir.path().join("report.xml");
    let json = dir.path().join("report.json");
    let output = wirecheck(&[
        "run",
        utf8(dir.path()),
        "--jobs",
        "2",
        "--junit",
        utf8(&junit),
        "--json",
        utf8(&json),
    ])
    .await;
    assert_exit(&output, 1);
    assert_eq!(last_line(&output), "1 passed, 1 failed");
    let out = stdout(&output);
    assert!(out.contains("PASS quick-pass-scenario"), "{out}");
    assert!(out.contains("FAIL deliberate-failure"), "{out}");
    // The failing step's position: line 10, column 3 of fail.toml.
    let fail_path = dir.path().join("fail.toml");
    assert!(
        out.contains(&format!("--> {}:10:3", fail_path.display())),
        "{out}"
    );
    assert!(out.contains("first difference at offset 4 (0x4)"), "{out}");

    let xml = std::fs::read_to_string(&junit).expect("the JUnit report was written");
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 2, "{xml}");
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    assert!(
        xml.contains(r#"tests="2""#) && xml.contains(r#"failures="1""#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<failure message="the bytes that arrived differ from the expected ones""#),
        "{xml}"
    );
    assert!(xml.trim_end().ends_with("</testsuites>"), "{xml}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    assert_eq!(report["passed"], 1);
    assert_eq!(report["failed"], 1);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let failed = runs.iter().find(|r| r["passed"] == false).unwrap();
    assert_eq!(failed["name"], "deliberate-failure");
    assert_eq!(failed["failure"]["kind"], "step");
    assert_eq!(failed["failure"]["step"]["location"]["line"], 10);
    assert_eq!(failed["failure"]["expected"], "68656c6c4f0a");
    assert_eq!(failed["failure"]["actual"], "68656c6c6f0a");
    assert!(!failed["events"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn filter_by_tag() {
    let dir = folder(&[("pass.toml", PASSING), ("fail.toml", FAILING)]);
    let output = wirecheck(&["run", utf8(dir.path()), "--filter", "smoke-tag"]).await;
    assert_exit(&output, 0);
    assert_eq!(last_line(&output), "1 passed, 0 failed");
    assert!(!stdout(&output).contains("deliberate-failure"));
}

#[tokio::test]
async fn filter_by_name() {
    let dir = folder(&[("pass.toml", PASSING), ("fail.toml", FAILING)]);
    let output = wirecheck(&["run", utf8(dir.path()), "--filter", "deliberate-fail"]).await;
    assert_exit(&output, 1);
    assert_eq!(last_line(&output), "0 passed, 1 failed");
    assert!(!stdout(&output).contains("quick-pass-scenario"));
}

#[tokio::test]
async fn repeated_filters_widen_the_selection() {
    let dir = folder(&[("pass.toml", PASSING), ("fail.toml", FAILING)]);
    let output = wirecheck(&[
        "run",
        utf8(dir.path()),
        "--filter",
        "smoke-tag",
        "--filter",
        "broken-tag",
    ])
    .await;
    assert_exit(&output, 1);
    assert_eq!(last_line(&output), "1 passed, 1 failed");
}

#[tokio::test]
async fn a_filter_that_matches_nothing_is_a_usage_error() {
    let dir = folder(&[("pass.toml", PASSING)]);
    let output = wirecheck(&["run", utf8(dir.path()), "--filter", "no-such-thing"]).await;
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("no scenario matched"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn repeat_counts_every_run() {
    let dir = folder(&[("pass.toml", PASSING)]);
    let output = wirecheck(&["run", utf8(&dir.path().join("pass.toml")), "--repeat", "3"]).await;
    assert_exit(&output, 0);
    assert_eq!(last_line(&output), "3 passed, 0 failed");
    assert!(
        stdout(&output).contains("1 scenarios x 3 runs each"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn repeat_of_a_failing_scenario_is_one_junit_case() {
    let dir = folder(&[("fail.toml", FAILING)]);
    let junit = dir.path().join("report.xml");
    let output = wirecheck(&[
        "run",
        utf8(&dir.path().join("fail.toml")),
        "--repeat",
        "3",
        "--junit",
        utf8(&junit),
    ])
    .await;
    assert_exit(&output, 1);
    assert_eq!(last_line(&output), "0 passed, 3 failed");
    assert!(stdout(&output).contains("deliberate-failure (run 1 of 3)"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 1, "{xml}");
    assert!(xml.contains("(3 of 3 runs failed; first: run 1)"), "{xml}");
}

#[tokio::test]
async fn an_invalid_file_exits_2_with_its_error_on_stderr() {
    let dir = folder(&[("pass.toml", PASSING), ("bad.toml", INVALID)]);
    let output = wirecheck(&["run", utf8(dir.path())]).await;
    assert_exit(&output, 2);
    let err = stderr(&output);
    let bad = dir.path().join("bad.toml");
    assert!(err.contains("error: unknown step `sned`"), "{err}");
    assert!(err.contains(&format!("{}:7:14", bad.display())), "{err}");
    assert!(err.contains("did you mean `send`?"), "{err}");
    // The valid scenario still ran; the invalid file counts as failed.
    let out = stdout(&output);
    assert!(out.contains("PASS quick-pass-scenario"), "{out}");
    assert!(out.contains("1 scenario file is not valid"), "{out}");
    assert_eq!(last_line(&output), "1 passed, 1 failed");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = folder(&[("pass.toml", PASSING)]);
    let missing = dir.path().join("absent");
    let output = wirecheck(&["run", utf8(&missing)]).await;
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("does not exist"),
        "{}",
        stderr(&output)
    );
    let output = wirecheck(&["run", utf8(dir.path()), "--repeat", "0"]).await;
    assert_exit(&output, 2);
    let output = wirecheck(&["run", utf8(dir.path()), "--no-such-flag"]).await;
    assert_exit(&output, 2);
}

// ------------------------------------------------------------ check

#[tokio::test]
async fn check_exit_codes() {
    let good = folder(&[("pass.toml", PASSING), ("fail.toml", FAILING)]);
    let output = wirecheck(&["check", utf8(good.path())]).await;
    assert_exit(&output, 0);
    let pass_path: PathBuf = good.path().join("pass.toml");
    assert!(
        stdout(&output).contains(&format!(
            "ok   {} (quick-pass-scenario)",
            pass_path.display()
        )),
        "{}",
        stdout(&output)
    );
    assert_eq!(last_line(&output), "2 valid, 0 invalid");

    let mixed = folder(&[("pass.toml", PASSING), ("bad.toml", INVALID)]);
    let output = wirecheck(&["check", utf8(mixed.path())]).await;
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("unknown step `sned`"),
        "{}",
        stderr(&output)
    );
    assert_eq!(last_line(&output), "1 valid, 1 invalid");

    let output = wirecheck(&["check", utf8(&mixed.path().join("absent.toml"))]).await;
    assert_exit(&output, 2);
}

/// Files load on loader threads, several at once for a folder; what `check` says
/// must still come in file order, valid and invalid files alike.
#[tokio::test]
async fn check_reports_a_folder_in_file_order_though_it_loads_in_parallel() {
    let texts: Vec<(String, String)> = (0..12)
        .map(|i| {
            let text = if i % 3 == 2 {
                INVALID.replace("not valid", &format!("bad {i}"))
            } else {
                PASSING.replace("quick-pass-scenario", &format!("good {i}"))
            };
            (format!("{i:02}.toml"), text)
        })
        .collect();
    let files: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let dir = folder(&files);
    let output = wirecheck(&["check", utf8(dir.path())]).await;
    assert_exit(&output, 2);
    let oks: Vec<String> = stdout(&output)
        .lines()
        .filter(|l| l.starts_with("ok"))
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = (0..12)
        .filter(|i| i % 3 != 2)
        .map(|i| {
            format!(
                "ok   {} (good {i})",
                dir.path().join(format!("{i:02}.toml")).display()
            )
        })
        .collect();
    assert_eq!(oks, expected);
    let errors = stderr(&output);
    let positions: Vec<usize> = [2, 5, 8, 11]
        .iter()
        .map(|i| {
            errors
                .find(&format!("{i:02}.toml"))
                .unwrap_or_else(|| panic!("no error for {i:02}.toml in {errors}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{errors}");
    assert_eq!(last_line(&output), "8 valid, 4 invalid");
}

#[tokio::test]
async fn check_runs_nothing() {
    // A scenario whose server could never start still checks as valid: nothing runs.
    let dir = folder(&[(
        "never.toml",
        "[servers.x]\ncommand = [\"/nonexistent/program\", \"{port}\"]\n\n[[clients]]\nscript = [ { send = \"x\" } ]\n",
    )]);
    let output = wirecheck(&["check", utf8(dir.path())]).await;
    assert_exit(&output, 0);
}

// ------------------------------------------------------------ serve

/// Starts `wirecheck serve ARGS`, returning the child and the address from its
/// first stdout line (`NAME listening on ADDR ...`).
async fn serve(args: &[&str]) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wirecheck"))
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("wirecheck serve starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(BOUND, lines.next_line())
        .await
        .expect("serve printed its first line in time")
        .expect("stdout is readable")
        .expect("serve printed a line");
    let name = args[0];
    let rest = first
        .strip_prefix(&format!("{name} listening on "))
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    let addr = rest
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("no address in `{first}`: {e}"));
    (child, addr)
}

async fn stop(mut child: tokio::process::Child) {
    child.start_kill().expect("the server is still running");
    tokio::time::timeout(BOUND, child.wait())
        .await
        .expect("the server stopped")
        .unwrap();
}

#[tokio::test]
async fn serve_echo_answers_a_line() {
    let (child, addr) = serve(&["echo", "--listen", "127.0.0.1:0"]).await;
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"hello from the test\n").await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        line
    };
    let line = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("echo answered");
    assert_eq!(line, "hello from the test\n");
    stop(child).await;
}

#[tokio::test]
async fn serve_udp_echo_returns_the_datagram() {
    let (child, addr) = serve(&["echo", "--listen", "127.0.0.1:0", "--proto", "udp"]).await;
    let exchange = async {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(addr).await.unwrap();
        socket.send(b"datagram").await.unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).await.unwrap();
        buf[..n].to_vec()
    };
    let got = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("udp echo answered");
    assert_eq!(got, b"datagram");
    stop(child).await;
}

#[tokio::test]
async fn serve_readsplit_frames_each_read() {
    let (child, addr) = serve(&[
        "readsplit",
        "--listen",
        "127.0.0.1:0",
        "--read-size",
        "2",
        "--framing",
        "u16be",
    ])
    .await;
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"hello").await.unwrap();
        let mut reply = [0u8; 11];
        stream.read_exact(&mut reply).await.unwrap();
        reply
    };
    let reply = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("readsplit answered");
    assert_eq!(&reply, b"\x00\x02he\x00\x02ll\x00\x01o");
    stop(child).await;
}

#[tokio::test]
async fn serve_list_names_every_builtin() {
    let output = wirecheck(&["serve", "--list"]).await;
    assert_exit(&output, 0);
    let names: Vec<String> = stdout(&output)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    // More servers may be added; these three are the documented reference ones.
    for name in ["echo", "discard", "readsplit"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} is not listed: {names:?}"
        );
    }
    // Every line is a name and a summary.
    assert!(stdout(&output)
        .lines()
        .all(|l| l.split_whitespace().count() > 1));
}

#[tokio::test]
async fn serve_refuses_a_non_loopback_address() {
    let output = wirecheck(&["serve", "echo", "--listen", "0.0.0.0:0"]).await;
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("0.0.0.0:0 is not a loopback address; pass --allow-non-loopback"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn serve_refuses_unknown_servers_and_protocols() {
    let output = wirecheck(&["serve", "ehco", "--listen", "127.0.0.1:0"]).await;
    assert_exit(&output, 2);
    let err = stderr(&output);
    assert!(err.contains("unknown server `ehco`"), "{err}");
    assert!(
        err.contains("built-in servers: echo, discard, readsplit"),
        "{err}"
    );
    let output = wirecheck(&[
        "serve",
        "readsplit",
        "--listen",
        "127.0.0.1:0",
        "--proto",
        "udp",
    ])
    .await;
    assert_exit(&output, 2);
}

#[tokio::test]
async fn serve_list_lists_every_server() {
    let output = wirecheck(&["serve", "--list"]).await;
    assert_exit(&output, 0);
    let listed: Vec<(String, String)> = stdout(&output)
        .lines()
        .map(|line| {
            let (name, summary) = line.split_once(' ').unwrap_or((line, ""));
            (name.to_owned(), summary.trim().to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> = wirecheck::servers::BuiltinKind::all()
        .map(|kind| (kind.name().to_owned(), kind.summary().to_owned()))
        .collect();
    assert_eq!(listed, expected);
}

/// The parts of a rendered report that do not depend on where the text came
/// from: the headlines, the labels under the carets, and the hints.
fn gist(rendered: &str) -> Vec<String> {
    rendered
        .lines()
        .filter_map(|line| {
            let trimmed = line.trim();
            if trimmed.starts_with("error:") || trimmed.starts_with("= ") {
                Some(trimmed.to_owned())
            } else if line.contains('^') {
                Some(
                    line.rsplit('^')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                )
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test]
async fn serve_set_reports_a_bad_value_as_the_loader_does() {
    // (server, --set argument, the same option in a scenario file)
    let cases = [
        ("command", "max_reply=-1", "max_reply = -1"),
        ("readsplit", "read_size=\"2\"", "read_size = \"2\""),
        ("chat", "framing=u32be", "framing = \"u32be\""),
        ("framed-echo", "framing=u32bee", "framing = \"u32bee\""),
        ("time", "clock=yesterday", "clock = \"yesterday\""),
        ("echo", "max_connections=0", "max_connections = 0"),
        ("discard", "linger=5", "linger = 5"),
        ("file", "nodelay=1", "nodelay = 1"),
    ];
    for (server, setting, toml) in cases {
        let scenario = format!(
            "[servers.srv]\nbuiltin = \"{server}\"\n{toml}\n\n[[clients]]\nscript = [ {{ send = \"x\" }} ]\n"
        );
        let loaded = match super::load(&scenario) {
            Ok(_) => panic!("`{toml}` was accepted for {server}"),
            Err(e) => e.render(),
        };
        let output =
            wirecheck(&["serve", server, "--listen", "127.0.0.1:0", "--set", setting]).await;
        assert_exit(&output, 2);
        let served = stderr(&output);
        assert!(served.contains("<wirecheck serve options>:1:"), "{served}");
        assert!(!gist(&loaded).is_empty(), "{loaded}");
        assert_eq!(
            gist(&served),
            gist(&loaded),
            "serve:\n{served}\nloader:\n{loaded}"
        );
    }
}

#[tokio::test]
async fn serve_set_names_unknown_and_refused_keys() {
    let output = wirecheck(&[
        "serve",
        "chat",
        "--listen",
        "127.0.0.1:0",
        "--set",
        "max_lines=10",
        "--set",
        "proto=udp",
        "--framing",
        "crlf",
        "--set",
        "framing=line",
    ])
    .await;
    assert_exit(&output, 2);
    let err = stderr(&output);
    for expected in [
        "error: unknown key `max_lines` in server `chat`",
        "did you mean `max_line`?",
        "error: `proto` is not set with --set",
        "error: `framing` is given twice",
        "<wirecheck serve options>:4:7",
    ] {
        assert!(err.contains(expected), "`{expected}` missing:\n{err}");
    }
}

/// Sends `text` and reads it back.
async fn echo(stream: &mut TcpStream, text: &[u8]) {
    stream.write_all(text).await.unwrap();
    let mut back = vec![0u8; text.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, text);
}

/// Reads whatever is already waiting, without waiting for more.
fn ready_bytes(stream: &TcpStream) -> std::io::Result<usize> {
    let mut buf = [0u8; 64];
    stream.try_read(&mut buf)
}

#[tokio::test]
async fn serve_max_connections_holds_further_clients_in_the_backlog() {
    let (child, addr) = serve(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--set",
        "max_connections=1",
    ])
    .await;
    let exchange = async {
        let mut first = TcpStream::connect(addr).await.unwrap();
        echo(&mut first, b"one").await;
        // The handshake completes in the backlog; the server does not accept it.
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(b"two").await.unwrap();
        // The first is still served meanwhile...
        echo(&mut first, b"again").await;
        // ...and the second has had no answer: it was never accepted.
        assert_eq!(
            ready_bytes(&second).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "the second connection was served while the first was open"
        );
        // Once the first closes, the second is accepted and served.
        drop(first);
        let mut back = [0u8; 3];
        second.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"two");
        echo(&mut second, b"more").await;
    };
    tokio::time::timeout(BOUND, exchange)
        .await
        .expect("the exchange finished");
    stop(child).await;
}

/// Out of descriptors, the server reports it once, keeps its listener and
/// accepts the waiting client as soon as a descriptor is free again.
#[tokio::test]
async fn serve_survives_running_out_of_descriptors() {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 32 && exec \"$0\" serve echo --listen 127.0.0.1:0")
        .arg(env!("CARGO_BIN_EXE_wirecheck"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sh starts wirecheck serve");
    let mut stdout_lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let exchange = async {
        let first = stdout_lines.next_line().await.unwrap().unwrap();
        let addr: std::net::SocketAddr = first
            .strip_prefix("echo listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"));
        // Connect clients until the server cannot take one more: each is either
        // echoed, or the server says it cannot accept.
        let mut served = Vec::new();
        let (mut waiting, warning) = loop {
            assert!(served.len() < 64, "32 descriptors never ran out");
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(b"x").await.unwrap();
            let mut byte = [0u8];
            tokio::select! {
                read = client.read_exact(&mut byte) => {
                    read.unwrap();
                    served.push(client);
                }
                line = stderr_lines.next_line() => {
                    break (client, line.unwrap().expect("a warning line"));
                }
            }
        };
        assert!(warning.contains("cannot accept"), "{warning}");
        assert!(warning.contains("Too many open files"), "{warning}");
        // Closing one served client frees a descriptor: the waiting client is
        // accepted at the next retry and echoed.
        drop(served.remove(0));
        let mut byte = [0u8];
        waiting.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"x");
        (served, waiting)
    };
    let clients = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("the server recovered");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    drop(clients);
    let mut more = Vec::new();
    while let Some(line) = stderr_lines.next_line().await.unwrap() {
        more.push(line);
    }
    assert!(
        !more.iter().any(|line| line.contains("cannot accept")),
        "the accept error was reported more than once: {more:?}"
    );
}

/// Regression: a non-loopback `--address` surfaced as "a bug in wirecheck import".
#[test]
fn import_refuses_a_non_loopback_address_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wirecheck"))
        .args(["import", "no-such-trace.pcapng", "--address", "10.0.0.1:80"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a loopback address"), "{stderr}");
}
