//! Deadlines: a step's own timeout and `step_timeout`, the scenario `timeout` (which
//! names every stuck actor), and that nothing keeps listening after a timeout.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use wirecheck::runner::FailureKind;

use crate::{
    assert_passed, failure, fixtures_dir, line_column, rendered, reserved_tcp_port, run,
    run_loaded, scenario, scenario_in, server_addr,
};

#[tokio::test]
async fn a_step_timeout_fails_with_its_kind_and_how_long_it_waited() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "never" }, { wait = "client-done", timeout = "5s" } ]

[[clients]]
script = [
  { expect = "never sent", timeout = "150ms" },
  { signal = "client-done" },
]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::StepTimeout);
    assert_eq!(failure.actor.as_deref(), Some("client1"));
    assert_eq!(
        failure.message,
        "timed out after 5 of 10 expected bytes arrived"
    );
    assert!(failure.waited.unwrap() >= Duration::from_millis(150));
    assert_eq!(failure.actual.as_deref(), Some(&b"never"[..]));
    let text = rendered(&outcome);
    assert!(
        text.contains("step timeout: timed out after 5 of 10"),
        "{text}"
    );
    assert!(
        text.contains("first difference at offset 5 (0x5): expected 0x20 ' ', got end of data"),
        "{text}"
    );
}

#[tokio::test]
async fn step_timeout_is_the_default_deadline_of_waiting_steps() {
    // Were the 2 s default used instead of `step_timeout`, the scenario's own timeout
    // would end the run first, with another kind of failure.
    let outcome = run(r#"
timeout = "1500ms"
step_timeout = "120ms"

[servers.srv]
script = [ { wait = "client-done", timeout = "5s" } ]

[[clients]]
script = [ { recv = { max = 10 } }, { signal = "client-done" } ]
"#)
    .await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::StepTimeout);
    assert!(
        failure
            .message
            .contains("no bytes arrived for a recv of up to 10"),
        "{}",
        failure.message
    );
    let waited = failure.waited.unwrap();
    assert!(waited >= Duration::from_millis(120), "{waited:?}");
}

#[tokio::test]
async fn a_scenario_timeout_names_every_stuck_actor_and_where() {
    let source = r#"
timeout = "300ms"
step_timeout = "10s"

[servers.srv]
script = [ { expect = "zzz" }, { signal = "unblock" } ]

[[clients]]
name = "stuck"
script = [ { send = "z" }, { wait = "unblock" } ]
"#;
    let scenario = scenario(source);
    let outcome = run_loaded(&scenario).await;
    let failure = failure(&outcome);
    assert_eq!(failure.kind, FailureKind::ScenarioTimeout);
    assert_eq!(
        failure.message,
        "the scenario did not finish within its timeout of 300.0ms"
    );
    assert!(outcome.duration >= Duration::from_millis(300));
    let at = |needle: &str| {
        let (line, column) = line_column(source, source.find(needle).unwrap());
        format!("(line {line}:{column})")
    };
    let expect_note = format!(
        "srv was at step 1 `{{ expect = \"zzz\" }}` {}, for ",
        at("{ expect")
    );
    let wait_note = format!(
        "stuck was at step 2 `{{ wait = \"unblock\" }}` {}, for ",
        at("{ wait")
    );
    for note in [&expect_note, &wait_note] {
        assert!(
            failure.notes.iter().any(|n| n.starts_with(note.as_str())),
            "no note `{note}` in {:?}",
            failure.notes
        );
    }
    let text = rendered(&outcome);
    assert!(
        text.contains(&format!("--> {}\n", scenario.path.display())),
        "{text}"
    );
    assert!(
        text.contains("scenario timeout: the scenario did not finish"),
        "{text}"
    );
    assert!(text.contains(&format!("note: {expect_note}")), "{text}");
}

/// Nothing listens at `addr` any more, and it can be bound again. `addr` must be a
/// port the test holds (`reserved_tcp_port`), so that no other process can have
/// taken it once the run released it.
#[track_caller]
fn assert_tcp_released(addr: SocketAddr) {
    let refused = TcpStream::connect(addr);
    assert!(
        matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{addr} still accepts connections: {refused:?}"
    );
    TcpListener::bind(addr).unwrap_or_else(|e| panic!("cannot bind {addr} again: {e}"));
}

#[tokio::test]
async fn after_a_scenario_timeout_every_port_is_released() {
    let (echo, srv, more) = (
        reserved_tcp_port(),
        reserved_tcp_port(),
        reserved_tcp_port(),
    );
    let outcome = run(&format!(
        r#"
timeout = "300ms"
step_timeout = "10s"

[servers.echo]
builtin = "echo"
bind = "{}"

[servers.srv]
bind = "{}"
script = [ {{ expect = "never" }}, {{ signal = "never" }} ]

[servers.more]
bind = "{}"
connections = 2
script = [ {{ expect = "never" }} ]

[servers.dgram]
proto = "udp"
script = [ {{ expect = "never" }} ]

[[clients]]
name = "to-echo"
connect = "echo"
script = [ {{ wait = "never" }} ]

[[clients]]
name = "to-srv"
connect = "srv"
script = [ {{ wait = "never" }} ]

[[clients]]
name = "to-more"
connect = "more"
script = [ {{ wait = "never" }} ]
"#,
        echo.addr(),
        srv.addr(),
        more.addr()
    ))
    .await;
    assert_eq!(failure(&outcome).kind, FailureKind::ScenarioTimeout);
    // `more` was still waiting for its second connection: its listener is closed too.
    for (server, held) in [("echo", &echo), ("srv", &srv), ("more#1", &more)] {
        assert_eq!(server_addr(&outcome, server), held.addr());
        assert_tcp_released(held.addr());
    }
    // The UDP port cannot be held the same way (the server binds without
    // SO_REUSEADDR); it is bound again right away.
    let dgram = server_addr(&outcome, "dgram");
    UdpSocket::bind(dgram).unwrap_or_else(|e| panic!("cannot bind {dgram} again: {e}"));
}

#[tokio::test]
async fn after_a_scenario_timeout_a_command_server_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let held = reserved_tcp_port();
    let server = fixtures_dir()
        .join("echo_server.py")
        .canonicalize()
        .unwrap();
    let scenario = scenario_in(
        dir.path(),
        &format!(
            r#"
timeout = "5s"
step_timeout = "10s"

[servers.py]
bind = "{}"
command = ["python3", {:?}, "{{port}}"]

[[clients]]
script = [ {{ send = "a" }}, {{ expect = "ab" }} ]
"#,
            held.addr(),
            server.to_str().unwrap()
        ),
    );
    let outcome = run_loaded(&scenario).await;
    assert_eq!(failure(&outcome).kind, FailureKind::ScenarioTimeout);
    // The server was up when the timeout came (the scenario's timeout also covers
    // starting Python, hence the room for a loaded machine).
    assert_eq!(crate::connected_peer(&outcome, "client1"), held.addr());
    assert_tcp_released(held.addr());
}

#[tokio::test]
async fn a_fixed_port_is_free_again_for_the_next_run() {
    let held = reserved_tcp_port();
    let port = held.port;
    let source = format!(
        r#"
timeout = "200ms"

[servers.srv]
bind = "127.0.0.1:{port}"
script = [ {{ expect = "hi" }}, {{ signal = "got-it" }} ]

[[clients]]
script = [ {{ send = "h" }}, {{ wait = "got-it" }} ]
"#
    );
    let first = run_loaded(&scenario(&source)).await;
    assert_eq!(failure(&first).kind, FailureKind::ScenarioTimeout);
    // The same fixed port binds again at once, run after run, although the
    // connections of the previous run may linger in TIME_WAIT.
    // These runs pass: they get the default timeout, not the 200 ms of the stuck one.
    let passing = scenario(
        &source
            .replace(r#"{ send = "h" }"#, r#"{ send = "hi" }"#)
            .replace("timeout = \"200ms\"\n", ""),
    );
    for _ in 0..3 {
        assert_passed(&run_loaded(&passing).await.outcome);
    }
}
