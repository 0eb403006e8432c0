//! `command` servers: a real Python server started per run, its readiness, output,
//! environment and port substitution, and that its whole process group is gone
//! afterwards.

use crate::is_gone;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wirecheck::event::{EventKind, OutputStream};
use wirecheck::runner::FailureKind;

use crate::{
    assert_passed, connected_peer, failure, fixtures_dir, rendered, reserved_tcp_port, run_loaded,
    scenario_in,
};

fn echo_server() -> PathBuf {
    fixtures_dir()
        .join("echo_server.py")
        .canonicalize()
        .expect("tests/fixtures/echo_server.py exists")
}

/// TOML string syntax for a path (a basic string with escapes).
fn toml_str(path: &Path) -> String {
    format!("{:?}", path.to_str().expect("a UTF-8 path"))
}

fn output_lines(outcome: &crate::Ran, which: OutputStream) -> Vec<String> {
    outcome
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ProcessOutput { stream, line } if *stream == which => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// How the server process ended, as the run recorded it.
fn exit_status(outcome: &crate::Ran) -> String {
    outcome
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ProcessExited { status } => Some(status.clone()),
            _ => None,
        })
        .expect("the exit was recorded")
}

#[tokio::test]
async fn a_command_server_is_tested_and_its_output_captured() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.py]
command = ["python3", {}, "{{port}}"]

[[clients]]
script = [ {{ send = "hello\n" }}, {{ expect = "hello\n" }} ]
"#,
            toml_str(&echo_server())
        ),
    );
    let outcome = run_loaded(&scenario).await;
    assert_passed(&outcome);
    assert_eq!(output_lines(&outcome, OutputStream::Stdout), vec!["ready"]);
    assert_eq!(
        output_lines(&outcome, OutputStream::Stderr),
        vec!["a line on stderr"]
    );
    assert!(outcome
        .events
        .iter()
        .any(|e| &*e.actor == "py" && matches!(e.kind, EventKind::ProcessExited { .. })));
}

#[tokio::test]
async fn a_command_that_exits_at_once_is_a_setup_failure() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_in(
        dir.path(),
        r#"
[servers.quitter]
command = ["python3", "-c", "import sys; sys.exit(3)", "{port}"]

[[clients]]
script = [ { send = "anyone?" } ]
"#,
    );
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Setup);
    assert_eq!(failure.actor.as_deref(), Some("quitter"));
    assert!(
        failure.message.contains("exited before it was ready"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("exit status: 3"),
        "{}",
        failure.message
    );
    let text = rendered(&outcome);
    assert!(
        text.contains("setup failed: server `quitter` (line 2)"),
        "{text}"
    );
    // No client ran.
    assert!(!outcome.events.iter().any(|e| &*e.actor == "client1"));
}

#[tokio::test]
async fn a_command_that_cannot_start_is_a_setup_failure() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_in(
        dir.path(),
        r#"
[servers.ghost]
command = ["/nonexistent/wirecheck-no-such-program", "{port}"]

[[clients]]
script = [ { send = "x" } ]
"#,
    );
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::Setup);
    assert!(
        failure
            .message
            .contains("cannot start `/nonexistent/wirecheck-no-such-program"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_command_that_never_listens_fails_at_its_ready_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_in(
        dir.path(),
        r#"
[servers.mute]
command = ["sh", "-c", "echo not listening; exec sleep 60", "sh", "{port}"]
ready_timeout = "300ms"

[[clients]]
script = [ { send = "x" } ]
"#,
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
        failure
            .message
            .contains("within 300ms (ready_timeout, ready = \"listening\")"),
        "{}",
        failure.message
    );
    assert!(outcome.duration >= Duration::from_millis(300));
    // SIGTERM ended the sleeping program: no SIGKILL after the grace period.
    let status = exit_status(&outcome);
    assert!(
        status.contains("SIGTERM") && !status.contains("SIGKILL"),
        "{status}"
    );
    // What it printed explains the failure.
    assert!(
        failure
            .notes
            .iter()
            .any(|n| n == "mute stdout: not listening"),
        "{:?}",
        failure.notes
    );
}

#[tokio::test]
async fn the_server_and_its_child_are_gone_even_when_they_ignore_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids.txt");
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.stubborn]
command = ["python3", {}, "{{port}}", {}]
env = {{ IGNORE_TERM = "1" }}

[[clients]]
script = [ {{ send = "ping\n" }}, {{ expect = "ping\n" }} ]
"#,
            toml_str(&echo_server()),
            toml_str(&pidfile)
        ),
    );
    let outcome = run_loaded(&scenario).await;
    assert_passed(&outcome);
    let pids: Vec<u32> = std::fs::read_to_string(&pidfile)
        .expect("the server wrote its pid file")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "the server and its child");
    for pid in pids {
        assert!(is_gone(pid), "process {pid} is still running after the run");
    }
    let status = exit_status(&outcome);
    assert!(status.contains("after SIGKILL"), "{status}");
}

#[tokio::test]
async fn env_and_port_are_substituted() {
    let dir = tempfile::tempdir().unwrap();
    // Prints what it was given, then becomes the echo server (same process).
    let launcher = "import os, sys; \
        print(os.environ['SEEN_PORT'], sys.argv[1], flush=True); \
        os.execv(sys.executable, [sys.executable, sys.argv[2], sys.argv[1]])";
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.py]
command = ["python3", "-c", "{launcher}", "{{port}}", {}]
env = {{ UPPER = "1", SEEN_PORT = "{{port}}" }}

[[clients]]
script = [ {{ send = "hello\n" }}, {{ expect = "HELLO\n" }} ]
"#,
            toml_str(&echo_server())
        ),
    );
    let outcome = run_loaded(&scenario).await;
    assert_passed(&outcome);
    let port = connected_peer(&outcome, "client1").port();
    let stdout = output_lines(&outcome, OutputStream::Stdout);
    assert_eq!(
        stdout.first(),
        Some(&format!("{port} {port}")),
        "{stdout:?}"
    );
}

#[tokio::test]
async fn a_fixed_bind_port_is_the_substituted_port() {
    let dir = tempfile::tempdir().unwrap();
    // Held (SO_REUSEADDR, never listening) so that no other process takes it
    // meanwhile; the fixture sets SO_REUSEADDR too and binds it.
    let reserved = reserved_tcp_port();
    let port = reserved.port;
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
[servers.py]
bind = "127.0.0.1:{port}"
command = ["python3", {}, "{{port}}"]

[[clients]]
script = [ {{ send = "x\n" }}, {{ expect = "x\n" }} ]
"#,
            toml_str(&echo_server())
        ),
    );
    let outcome = run_loaded(&scenario).await;
    assert_passed(&outcome);
    assert_eq!(connected_peer(&outcome, "client1").port(), port);
}
