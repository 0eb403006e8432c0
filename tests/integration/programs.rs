//! Programs under test (format v2): readiness without touching the server, a port
//! held by another process, exit status checks, output, interrupts of the binary
//! with every program and descendant stopped.

use crate::{is_gone, load_errors, KillOnDrop};
use std::path::Path;
use std::time::Duration;

use rstest::rstest;
use tokio::io::{AsyncBufReadExt, BufReader};
use wirecheck::event::{EventKind, OutputStream};
use wirecheck::runner::FailureKind;

use crate::{assert_passed, events_of, failure, rendered, run_loaded, scenario_in};

/// Writes a Python program into `dir` and returns its file name for `command`.
fn program(dir: &Path, name: &str, text: &str) -> String {
    std::fs::write(dir.join(name), text).expect("the program is written");
    name.to_owned()
}

fn output_lines(outcome: &crate::Ran, actor: &str, which: OutputStream) -> Vec<String> {
    events_of(outcome, actor)
        .into_iter()
        .filter_map(|e| match &e.kind {
            EventKind::ProcessOutput { stream, line } if *stream == which => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// The tutorials' first server: accept ONE connection, recv, send, exit. It prints
/// the peer of every connection it accepts, so a probe connection would show.
const ONE_SHOT: &str = r#"
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(1)
conn, peer = srv.accept()
print("accepted", "%s:%d" % peer)
data = conn.recv(1024)
conn.sendall(b"hi " + data)
conn.close()
"#;

#[tokio::test]
async fn a_one_shot_server_is_ready_by_its_listening_socket_and_sees_no_probe() {
    let dir = tempfile::tempdir().unwrap();
    let file = program(dir.path(), "one_shot.py", ONE_SHOT);
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
command = ["python3", "{file}", "{{port}}"]

[[clients]]
script = [ {{ send = "you" }}, {{ expect = "hi you" }}, {{ expect_eof = true }} ]
"#
        ),
    );
    let outcome = run_loaded(&scenario).await;
    assert_passed(&outcome);
    // The only connection the server ever accepted is the client's.
    let client_local = events_of(&outcome, "client1")
        .into_iter()
        .find_map(|e| match &e.kind {
            EventKind::Connect { local, .. } => Some(*local),
            _ => None,
        })
        .expect("the client connected");
    assert_eq!(
        output_lines(&outcome, "srv", OutputStream::Stdout),
        vec![format!("accepted {client_local}")]
    );
}

#[tokio::test]
async fn the_v1_connect_probe_uses_up_the_one_shot_servers_accept() {
    // The documented reason `listening` is the default: the probe is a connection.
    let dir = tempfile::tempdir().unwrap();
    let file = program(dir.path(), "one_shot.py", ONE_SHOT);
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
command = ["python3", "{file}", "{{port}}"]
ready = "connect"

[[clients]]
script = [ {{ send = "you" }}, {{ expect = "hi you" }} ]
"#
        ),
    );
    let outcome = run_loaded(&scenario).await;
    failure(&outcome);
    let accepted = output_lines(&outcome, "srv", OutputStream::Stdout);
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert!(
        !events_of(&outcome, "client1").is_empty(),
        "the client ran against a server whose only accept the probe took"
    );
}

const UDP_TIME: &str = r#"
import socket, sys, time
time.sleep(0.3)  # a slow start: interpreters, imports, config files
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(1024)
    s.sendto(b"time:" + data, peer)
"#;

#[tokio::test]
async fn a_slow_starting_udp_server_is_ready_when_its_socket_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let file = program(dir.path(), "udp_time.py", UDP_TIME);
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.clock]
proto = "udp"
command = ["python3", "{file}", "{{port}}"]

[[clients]]
script = [ {{ send = "now" }}, {{ expect = "time:now" }} ]
"#
        ),
    );
    assert_passed(&run_loaded(&scenario).await.outcome);
}

#[rstest]
#[case::log(r#"ready = { log = "^serving on \\d+$" }"#)]
#[case::connect(r#"ready = "connect""#)]
#[tokio::test]
async fn other_readiness_modes_start_the_clients_once_the_server_serves(#[case] ready: &str) {
    let dir = tempfile::tempdir().unwrap();
    // Prints without flush: PYTHONUNBUFFERED=1 makes it reach the log at once.
    let file = program(
        dir.path(),
        "echo.py",
        r#"
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(8)
print("serving on", sys.argv[1])
while True:
    conn, _ = srv.accept()
    data = conn.recv(100)
    if data:
        conn.sendall(data)
    conn.close()
"#,
    );
    let delay_wait = ready;
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
command = ["python3", "{file}", "{{port}}"]
{delay_wait}

[[clients]]
script = [ {{ send = "x" }}, {{ expect = "x" }} ]
"#
        ),
    );
    let outcome = run_loaded(&scenario).await;
    assert_passed(&outcome);
    let printed = output_lines(&outcome, "srv", OutputStream::Stdout);
    assert!(
        printed
            .first()
            .is_some_and(|l| l.starts_with("serving on ")),
        "{printed:?}"
    );
}

#[tokio::test]
async fn ready_delay_waits_that_long_without_touching_the_server() {
    // A delay is a guess, so the server here starts in milliseconds (wirecheck's own
    // echo server) and the delay is generous; `ready_delay` adds its pause too.
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
command = [{:?}, "serve", "echo", "--listen", "127.0.0.1:{{port}}"]
ready = {{ delay = "2s" }}
ready_delay = "1ms"

[[clients]]
script = [ {{ send = "x" }}, {{ expect = "x" }} ]
"#,
            env!("CARGO_BIN_EXE_wirecheck")
        ),
    );
    let outcome = run_loaded(&scenario).await;
    assert_passed(&outcome);
    let printed = output_lines(&outcome, "srv", OutputStream::Stdout);
    assert!(
        printed
            .first()
            .is_some_and(|l| l.starts_with("echo listening on 127.0.0.1:")),
        "{printed:?}"
    );
}

#[tokio::test]
async fn a_server_listening_elsewhere_is_told_where_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let file = program(
        dir.path(),
        "fixed.py",
        r#"
import socket, sys, time
srv = socket.socket()
srv.bind(("127.0.0.1", 0))   # ignores the port it was given
srv.listen(1)
time.sleep(60)
"#,
    );
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
command = ["python3", "{file}", "{{port}}"]
ready_timeout = "5s"

[[clients]]
script = [ {{ send = "x" }} ]
"#
        ),
    );
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Setup);
    assert!(
        failure
            .message
            .contains("no process of the program listened on 127.0.0.1:"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("it listened on 127.0.0.1:")
            && failure.message.contains("instead"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_port_held_by_another_process_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let old = program(
        dir.path(),
        "old_server.py",
        r#"
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
sys.stdin.read()
"#,
    );
    let mut holder = tokio::process::Command::new("python3")
        .arg(dir.path().join(&old))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts");
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let port: u16 = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the old server printed its port in time")
        .unwrap()
        .expect("a line")
        .trim()
        .parse()
        .unwrap();
    let new = program(dir.path(), "one_shot.py", ONE_SHOT);
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
bind = "127.0.0.1:{port}"
command = ["python3", "{new}", "{{port}}"]

[[clients]]
script = [ {{ send = "x" }} ]
"#
        ),
    );
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Setup);
    let pid = holder.id().unwrap();
    assert!(
        failure
            .message
            .contains(&format!("is already in use by pid {pid} (")),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("old_server.py"),
        "{}",
        failure.message
    );
    // The new server was never started, so no client ran against the old one.
    assert!(events_of(&outcome, "client1").is_empty());
    drop(holder);
}

#[tokio::test]
async fn a_crashing_server_fails_the_run_with_its_whole_traceback() {
    let dir = tempfile::tempdir().unwrap();
    let file = program(
        dir.path(),
        "crash.py",
        r#"
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(1)
conn, _ = srv.accept()
request = conn.recv(100)
print("got", request)
length = int(request)   # a tutorial bug: the request is not a number
"#,
    );
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
command = ["python3", "{file}", "{{port}}"]

[[clients]]
script = [ {{ send = "hello" }}, {{ expect = "ok", timeout = "5s" }} ]
"#
        ),
    );
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Program, "{}", rendered(&outcome));
    assert!(
        failure
            .message
            .contains("server `srv` (line 2) exited with exit status: 1"),
        "{}",
        failure.message
    );
    let text = rendered(&outcome);
    assert!(text.contains("program failed: "), "{text}");
    // The last line of the traceback made it into the report.
    assert!(
        text.contains("srv stderr: ValueError: invalid literal for int()"),
        "{text}"
    );
    assert!(text.contains("srv stdout: got b'hello'"), "{text}");
}

#[rstest]
#[case::default_zero("", false)]
#[case::any(r#"exit = "any""#, true)]
#[case::its_status(r#"exit = 3"#, true)]
#[case::another_status(r#"exit = 4"#, false)]
#[tokio::test]
async fn exit_says_how_a_server_may_end_before_the_scenario_does(
    #[case] exit: &str,
    #[case] passes: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = program(
        dir.path(),
        "quits.py",
        r#"
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(1)
conn, _ = srv.accept()
conn.sendall(conn.recv(100))
sys.exit(3)
"#,
    );
    // The client outlasts the server (its end closes the connection), so the exit
    // happens while the run goes on; a failing exit ends the run at once.
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
command = ["python3", "{file}", "{{port}}"]
{exit}

[[clients]]
script = [ {{ send = "x" }}, {{ expect = "x" }}, {{ expect_eof = true }}, {{ sleep = "1s" }} ]
"#
        ),
    );
    let outcome = run_loaded(&scenario).await;
    let exited = events_of(&outcome, "srv")
        .into_iter()
        .find_map(|e| match &e.kind {
            EventKind::ProcessExited { status } => Some(status.clone()),
            _ => None,
        })
        .expect("the exit was recorded");
    assert!(exited.starts_with("exit status: 3 (on its own"), "{exited}");
    if passes {
        assert_passed(&outcome);
    } else {
        let failure = failure(&outcome);
        assert_eq!(failure.kind, FailureKind::Program, "{}", rendered(&outcome));
        assert!(
            failure.message.contains("exited with exit status: 3"),
            "{}",
            failure.message
        );
    }
}

/// A server that starts a child in its group and a `setsid` child in a session of
/// its own, and writes the three pids to PIDFILE once a client connected.
const FAMILY: &str = r#"
import os, socket, subprocess, sys
port, pidfile = int(sys.argv[1]), sys.argv[2]
sleeper = [sys.executable, "-c", "import time; time.sleep(3600)"]
child = subprocess.Popen(sleeper)
escaped = subprocess.Popen(sleeper, start_new_session=True)
srv = socket.socket()
srv.bind(("127.0.0.1", port))
srv.listen(1)
conn, _ = srv.accept()
with open(pidfile + ".tmp", "w") as f:
    f.write("%d %d %d\n" % (os.getpid(), child.pid, escaped.pid))
os.rename(pidfile + ".tmp", pidfile)
print("family written", flush=True)
conn.recv(100)
"#;

fn family_scenario(dir: &Path) -> String {
    let file = program(dir, "family.py", FAMILY);
    format!(
        r#"
name = "a server with a family"
timeout = "120s"

[servers.srv]
command = ["python3", "{file}", "{{port}}", "pids.txt"]

[[clients]]
script = [ {{ expect = "never sent", timeout = "60s" }} ]
"#
    )
}

/// The pids in `path`, once a program wrote them (a readiness check with a
/// deadline: the file appears atomically, by rename).
async fn pids_written(path: &Path) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} was not written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_setsid_child_is_stopped_with_its_server_at_the_end_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = program(dir.path(), "family.py", FAMILY);
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
command = ["python3", "{file}", "{{port}}", "pids.txt"]

[[clients]]
script = [ {{ send = "bye" }}, {{ expect_eof = true }} ]
"#
        ),
    );
    let outcome = run_loaded(&scenario).await;
    let pids = pids_written(&dir.path().join("pids.txt")).await;
    let _cleanup = KillOnDrop(pids.clone());
    assert_passed(&outcome);
    let left: Vec<u32> = pids.iter().copied().filter(|pid| !is_gone(*pid)).collect();
    assert!(left.is_empty(), "still running after the run: {left:?}");
}

#[rstest]
#[case::sigterm(nix::sys::signal::Signal::SIGTERM, 143)]
#[case::sigint(nix::sys::signal::Signal::SIGINT, 130)]
#[case::sighup(nix::sys::signal::Signal::SIGHUP, 129)]
#[tokio::test]
async fn an_interrupt_mid_run_stops_every_program_and_descendant_and_writes_the_reports(
    #[case] signal: nix::sys::signal::Signal,
    #[case] code: i32,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("family.toml"), family_scenario(dir.path())).unwrap();
    let junit = dir.path().join("report.xml");
    let mut wirecheck = tokio::process::Command::new(env!("CARGO_BIN_EXE_wirecheck"))
        .arg("run")
        .arg(dir.path().join("family.toml"))
        .arg("--junit")
        .arg(&junit)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("wirecheck starts");
    let pids = pids_written(&dir.path().join("pids.txt")).await;
    let _cleanup = KillOnDrop(pids.clone());
    assert_eq!(pids.len(), 3, "{pids:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wirecheck.id().unwrap() as i32),
        signal,
    )
    .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), async {
        let status = wirecheck.wait().await.unwrap();
        let mut stdout = String::new();
        use tokio::io::AsyncReadExt as _;
        wirecheck
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .await
            .unwrap();
        (status, stdout)
    })
    .await
    .expect("wirecheck exits after the interrupt");
    let (status, stdout) = output;
    assert_eq!(status.code(), Some(code), "{stdout}");
    let left: Vec<u32> = pids.iter().copied().filter(|pid| !is_gone(*pid)).collect();
    assert!(left.is_empty(), "still running after {signal}: {left:?}");
    assert!(stdout.contains("FAIL a server with a family"), "{stdout}");
    assert!(stdout.contains("interrupted"), "{stdout}");
    let report = std::fs::read_to_string(&junit).expect("the JUnit report was written");
    assert!(report.contains("interrupted"), "{report}");
}

#[rstest]
#[case::zero_timeout(
    "timeout = \"0s\"\n[servers.s]\nbuiltin = \"echo\"\n[[clients]]\nscript = []\n",
    "`timeout` is zero"
)]
#[case::zero_step_timeout(
    "step_timeout = \"0ms\"\n[servers.s]\nbuiltin = \"echo\"\n[[clients]]\nscript = []\n",
    "`step_timeout` is zero"
)]
#[case::zero_step("[servers.s]\nbuiltin = \"echo\"\n[[clients]]\nscript = [ { expect = \"x\", timeout = \"0s\" } ]\n", "`timeout` is zero")]
#[case::zero_ready("[servers.s]\ncommand = [\"p\", \"{port}\"]\nready_timeout = \"0s\"\n[[clients]]\nscript = []\n", "`ready_timeout` is zero")]
#[case::no_port(
    "[servers.s]\ncommand = [\"python3\", \"srv.py\"]\n[[clients]]\nscript = []\n",
    "server `s` is never told its port"
)]
#[case::missing_cwd("[servers.s]\ncommand = [\"p\", \"{port}\"]\ncwd = \"no/such/folder\"\n[[clients]]\nscript = []\n", "`cwd` does not exist")]
#[case::bad_ready(
    "[servers.s]\ncommand = [\"p\", \"{port}\"]\nready = \"listen\"\n[[clients]]\nscript = []\n",
    "did you mean `listening`?"
)]
#[case::bad_regex("[servers.s]\ncommand = [\"p\", \"{port}\"]\nready = { log = \"(\" }\n[[clients]]\nscript = []\n", "`log` is not a valid regex")]
#[case::udp_connect("[servers.s]\nproto = \"udp\"\ncommand = [\"p\", \"{port}\"]\nready = \"connect\"\n[[clients]]\nscript = []\n", "cannot be probed with a connect")]
#[case::bad_exit(
    "[servers.s]\ncommand = [\"p\", \"{port}\"]\nexit = 300\n[[clients]]\nscript = []\n",
    "`exit` is 300"
)]
#[case::unknown_placeholder(
    "[servers.s]\ncommand = [\"p\", \"{port}\", \"{addr:nope}\"]\n[[clients]]\nscript = []\n",
    "there is no server `nope`"
)]
#[case::shell_braces(
    "[servers.s]\ncommand = [\"sh\", \"-c\", \"awk '{print}' {port}\"]\n[[clients]]\nscript = []\n",
    "unknown placeholder `{print}`"
)]
fn program_keys_are_checked_at_load_time(#[case] text: &str, #[case] message: &str) {
    let errors = load_errors(text);
    assert!(errors.contains(message), "{errors}");
    assert!(errors.contains("inline.toml:"), "{errors}");
}

#[test]
fn a_placeholder_error_points_at_the_placeholder() {
    let text = "[servers.s]\ncommand = [\"p\", \"--to={addr:nope}\", \"{port}\"]\n[[clients]]\nscript = []\n";
    let errors = load_errors(text);
    // Line 2, at the `{` of the placeholder (column counted in characters).
    let column = "command = [\"p\", \"--to=".chars().count() + 1;
    assert!(
        errors.contains(&format!("inline.toml:2:{column}")),
        "{errors}"
    );
}

/// A client of the tutorials: reads a line from stdin, sends it, prints what one
/// recv returned, says goodbye on stderr, exits with the status in argv[3].
const LINE_CLIENT: &str = r#"
import socket, sys
host, port, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = sys.stdin.readline()
s = socket.create_connection((host, port))
s.sendall(line.encode())
data = s.recv(1024)
print("received %d bytes: %r" % (len(data), data))
print("bye", file=sys.stderr)
sys.exit(status)
"#;

fn client_scenario(dir: &Path, client_keys: &str) -> wirecheck::scenario::Scenario {
    let file = program(dir, "client.py", LINE_CLIENT);
    scenario_in(
        dir,
        &format!(
            r#"
[servers.srv]
builtin = "echo"

[[clients]]
name = "tutorial"
command = ["python3", "{file}", "{{host:srv}}", "{{port:srv}}", "0"]
stdin = "hello\nquit\n"
{client_keys}
"#
        ),
    )
}

#[rstest]
#[case::exact(r#"stdout = "received 6 bytes: b'hello\\n'\n""#)]
#[case::contains(
    r#"stdout = { contains = "received 6 bytes" }
stderr = { contains = "bye" }"#
)]
#[case::regex(r#"stdout = { regex = "^received (?P<n>\\d+) bytes" }"#)]
#[case::len(r#"stderr = { len = 4 }"#)]
#[case::any_exit(r#"exit = "any""#)]
#[tokio::test]
async fn a_client_program_passes_when_it_exits_as_expected_with_matching_output(
    #[case] keys: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_loaded(&client_scenario(dir.path(), keys)).await;
    assert_passed(&outcome);
    assert_eq!(
        output_lines(&outcome, "tutorial", OutputStream::Stderr),
        vec!["bye"]
    );
    let exited = events_of(&outcome, "tutorial")
        .into_iter()
        .find_map(|e| match &e.kind {
            EventKind::ProcessExited { status } => Some(status.clone()),
            _ => None,
        })
        .expect("the exit was recorded");
    assert!(exited.starts_with("exit status: 0 (on its own"), "{exited}");
}

#[rstest]
#[case::stdout(
    r#"stdout = { contains = "received 7 bytes" }"#,
    "stdout",
    "not contain \"received 7 bytes\""
)]
#[case::stderr(r#"stderr = "ciao\n""#, "stderr", "differ from the 5 expected")]
#[case::exit("exit = 2", "exit", "ended with exit status: 0")]
#[tokio::test]
async fn a_client_program_fails_at_the_key_it_does_not_meet(
    #[case] keys: &str,
    #[case] keyword: &str,
    #[case] message: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_loaded(&client_scenario(dir.path(), keys)).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Program);
    assert_eq!(failure.actor.as_deref(), Some("tutorial"));
    let step = failure.step.as_ref().expect("the key is named");
    assert_eq!(step.keyword, keyword);
    assert_eq!(step.location.line, 9, "{}", rendered(&outcome));
    assert!(failure.message.contains(message), "{}", failure.message);
    let text = rendered(&outcome);
    assert!(
        text.contains(&format!("actor `tutorial`, `{keyword}`: ")),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_program_that_never_exits_is_named_at_the_scenario_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_in(
        dir.path(),
        r#"
timeout = "1s"

[servers.srv]
builtin = "echo"

[[clients]]
name = "stuck"
command = ["python3", "-c", "import sys; sys.stdin.read(); import time; time.sleep(60)", "{port:srv}"]
"#,
    );
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::ScenarioTimeout);
    assert!(
        failure
            .notes
            .iter()
            .any(|n| n.starts_with("stuck was at running `python3 -c ")),
        "{:?}",
        failure.notes
    );
}

#[tokio::test]
async fn client_program_copies_run_at_once_and_each_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = program(dir.path(), "client.py", LINE_CLIENT);
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
builtin = "echo"

[[clients]]
name = "many"
count = 3
command = ["python3", "{file}", "{{host:srv}}", "{{port:srv}}", "0"]
stdin = {{ hex = "68 69 0a" }}
stdout = "received 3 bytes: b'hi\\n'\n"
"#
        ),
    );
    let outcome = run_loaded(&scenario).await;
    assert_passed(&outcome);
    for copy in 1..=3 {
        let name = format!("many#{copy}");
        assert_eq!(
            output_lines(&outcome, &name, OutputStream::Stdout),
            vec!["received 3 bytes: b'hi\\n'"],
            "{name}"
        );
    }
}

#[rstest]
#[case::connect(
    "connect = \"srv\"\n",
    "`connect` does not apply to client program `c`"
)]
#[case::script("script = []\n", "`script` does not apply")]
#[case::own_port("", "`{port}` means a server's own port")]
#[case::unknown_key("stdot = \"x\"\n", "did you mean `stdout`?")]
fn client_program_keys_are_checked_at_load_time(#[case] extra: &str, #[case] message: &str) {
    let command = if extra.is_empty() {
        r#"["p", "{port}"]"#
    } else {
        r#"["p", "{port:srv}"]"#
    };
    let text = format!(
        "[servers.srv]\nbuiltin = \"echo\"\n[[clients]]\nname = \"c\"\ncommand = {command}\n{extra}"
    );
    let errors = load_errors(&text);
    assert!(errors.contains(message), "{errors}");
}

/// The tutorials' bug: "one recv is one message". It acknowledges every read.
const NAIVE_SERVER: &str = r#"
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(1)
conn, _ = srv.accept()
while True:
    data = conn.recv(1024)
    if not data:
        break
    conn.sendall(b"ack:" + data + b"\n")
"#;

#[rstest]
#[case::coalesced(
    r#"{ hold = true }, { send = "hello" }, { send_frame = { framing = "u8", text = "eggo2" } }, { flush = true }"#,
    "ack:hello\\u0005eggo2\\n"
)]
#[case::split(
    r#"{ send = { text = "hello_egg", chunks = [2, 7], await_read = true } }"#,
    "ack:he\\nack:llo_egg\\n"
)]
#[case::await_read_step(
    r#"{ send = "one" }, { await_read = true }, { send = "two" }"#,
    "ack:one\\nack:two\\n"
)]
#[tokio::test]
async fn a_program_reads_what_hold_flush_and_await_read_make_it_read(
    #[case] steps: &str,
    #[case] replies: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = program(dir.path(), "naive.py", NAIVE_SERVER);
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.srv]
command = ["python3", "{file}", "{{port}}"]

[[clients]]
script = [ {steps}, {{ expect = "{replies}" }} ]
"#
        ),
    );
    // The same every time: a handful of runs in one test, the determinism check
    // proper is `wirecheck run --repeat` on the shipped scenarios.
    for _ in 0..5 {
        let outcome = run_loaded(&scenario).await;
        assert_passed(&outcome);
    }
}

#[tokio::test]
async fn a_flush_is_one_write_call_and_await_read_follows_each_chunk() {
    // The step timeout is generous: this test is about write calls, not time, and
    // each `await_read` polls the kernel's socket table, which is slow to read while
    // the rest of the suite holds thousands of sockets.
    let scenario = crate::scenario(
        r#"
step_timeout = "30s"
[servers.srv]
builtin = "readsplit"

[[clients]]
script = [
  { hold = true },
  { send = "ab" },
  { send = "cd" },
  { flush = true },
  { send = { text = "efgh", chunks = [1], await_read = true } },
]
"#,
    );
    let outcome = run_loaded(&scenario).await;
    assert_passed(&outcome);
    assert_eq!(crate::write_sizes(&outcome, "client1"), vec![4, 1, 1, 1, 1]);
}

#[tokio::test]
async fn await_read_times_out_against_a_peer_that_does_not_read_and_says_so() {
    let scenario = crate::scenario(
        r#"
[servers.srv]
script = [ { wait = "done", timeout = "5s" } ]

[[clients]]
script = [ { send = "unread" }, { await_read = true, timeout = "300ms" }, { signal = "done" } ]
"#,
    );
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::StepTimeout);
    assert!(
        failure.message.contains(
            "has not read everything sent: 6 bytes wait in its receive queue and 0 in ours"
        ),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_slow_send_says_how_far_it_got_and_whether_the_peer_read() {
    let scenario = crate::scenario(
        r#"
[servers.srv]
recv_buffer = 4096
script = [ { wait = "done", timeout = "5s" } ]

[[clients]]
send_buffer = 4096
script = [ { send = { repeat = "x", times = 4000000 }, timeout = "300ms" }, { signal = "done" } ]
"#,
    );
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::StepTimeout);
    let message = &failure.message;
    assert!(message.starts_with("timed out sending: "), "{message}");
    assert!(
        message.contains(" of 4000000 bytes written in "),
        "{message}"
    );
    assert!(
        message.contains("the peer's program has read 0 of the "),
        "{message}"
    );
    assert!(message.contains("is it reading at all?"), "{message}");
}

#[rstest]
#[case::unflushed(
    "script = [ { hold = true }, { send = \"x\" } ]",
    "`hold` is never flushed"
)]
#[case::flush_alone("script = [ { flush = true } ]", "`flush` without a `hold` before it")]
#[case::double_hold(
    "script = [ { hold = true }, { hold = true }, { flush = true } ]",
    "a second `hold` before a `flush`"
)]
#[case::await_while_held("script = [ { hold = true }, { send = { text = \"x\", await_read = true } }, { flush = true } ]", "`await_read` while sends are held")]
#[case::udp(
    "proto = \"udp\"\nscript = [ { hold = true }, { flush = true } ]",
    "UDP keeps every datagram apart"
)]
#[case::false_flag(
    "script = [ { await_read = false } ]",
    "`await_read` can only be `true`"
)]
fn hold_flush_and_await_read_are_checked_at_load_time(#[case] client: &str, #[case] message: &str) {
    let text = format!("[servers.srv]\nbuiltin = \"echo\"\n[[clients]]\n{client}\n");
    let errors = load_errors(&text);
    assert!(errors.contains(message), "{errors}");
}

// ------------------------------------------------- fixes from the tutorial trial

#[test]
fn a_file_that_is_not_utf8_gets_the_line_and_column_of_the_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gbk.toml");
    // "你好" in GBK: C4 E3 BA C3.
    let mut bytes =
        b"[servers.s]\nbuiltin = \"echo\"\n[[clients]]\nscript = [ { send = \"".to_vec();
    bytes.extend_from_slice(&[0xc4, 0xe3, 0xba, 0xc3]);
    bytes.extend_from_slice(b"\" } ]\n");
    std::fs::write(&path, bytes).unwrap();
    let error = wirecheck::scenario::load_file(&path).expect_err("not UTF-8");
    let text = error.render();
    let column = "script = [ { send = \"".len() + 1;
    assert!(text.contains(&format!("gbk.toml:4:{column}")), "{text}");
    assert!(text.contains("this file is not UTF-8 text"), "{text}");
    assert!(text.contains("byte 0xc4"), "{text}");
    assert!(text.contains("save it as UTF-8"), "{text}");
}

async fn wirecheck_binary(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wirecheck"));
    command.args(args);
    crate::output_within(command, Duration::from_secs(60), "wirecheck").await
}

#[tokio::test]
async fn check_and_run_agree_that_an_empty_folder_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["check", "run"] {
        let output = wirecheck_binary(&[command.as_ref(), dir.path().as_os_str()]).await;
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("no scenario matched"),
            "{command}: {stderr}"
        );
    }
}

#[rstest]
#[case::junit("--junit")]
#[case::json("--json")]
#[tokio::test]
async fn a_report_path_in_a_missing_folder_is_refused_before_anything_runs(#[case] flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.toml"),
        "[servers.s]\nbuiltin = \"echo\"\n[[clients]]\nscript = [ { send = \"x\" }, { expect = \"x\" } ]\n",
    )
    .unwrap();
    let report = dir.path().join("no-such-folder").join("report.out");
    let output = wirecheck_binary(&[
        "run".as_ref(),
        dir.path().join("s.toml").as_os_str(),
        flag.as_ref(),
        report.as_os_str(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("PASS"), "it ran anyway: {stdout}");
}
