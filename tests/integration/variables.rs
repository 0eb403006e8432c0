//! Variables everywhere the format puts them, over real loopback sockets and real
//! programs: `{ template }` DATA in every DATA position (resolved when its step
//! starts), `{VAR}` in a program's `command`, `env` and `stdin` (resolved when it
//! starts), and named groups that capture from a client program's output and a
//! server's `ready = { log }`.

use wirecheck::event::EventKind;

use crate::{assert_passed, events_of, failure, rendered, run, scenario_in, Ran};

/// Runs `text` as a file in a temporary folder that outlives the run (a program's
/// working folder).
async fn run_programs(text: &str) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    crate::run_loaded(&scenario_in(dir.path(), text)).await
}

/// The bytes an actor read (`Read`) or wrote (`Write`), all of them in order.
fn bytes_of(outcome: &Ran, actor: &str, written: bool) -> String {
    let bytes: Vec<u8> = events_of(outcome, actor)
        .into_iter()
        .filter_map(|e| match (&e.kind, written) {
            (EventKind::Read { data, .. }, false) | (EventKind::Write { data, .. }, true) => {
                Some(data.bytes().expect("payloads are collected").to_vec())
            }
            _ => None,
        })
        .flatten()
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every DATA position of a step takes a template: exact `expect`, `recv`'s
/// `expect`, `contains`, `expect_line` (exact and `contains`), `chunks` sends,
/// frame payloads and bodies (length-prefixed, line, json-header).
#[tokio::test]
async fn a_template_works_in_every_data_position_of_a_tcp_script() {
    let outcome = run(r#"
[servers.srv]
script = [
  { send = "TOKEN t0k3n\n" },
  { wait = "token-read" },
  { expect_line = { template = "AUTH {token}" } },
  { expect_line = { contains = { template = "{token}" } } },
  { expect = { template = "exact {token};" } },
  { expect = { contains = { template = "contains {token}" } } },
  { await_queued = 11 },
  { recv = { max = 64, expect = { template = "recv {token};" } } },
  { expect_frame = { framing = "u32le", template = "frame {token}" } },
  { expect_frame = { framing = "u16be", contains = { template = "{token}" } } },
  { expect_frame = { framing = "json-header", header = { name = "f" }, body = { template = "body {token}" } } },
  { send_frame = { framing = "line", template = "bye {token}" } },
  { send_frame = { framing = "json-header", header = { n = "{token}" }, template = "to {token}" } },
]

[[clients]]
connect = "srv"
script = [
  { expect_line = { regex = '^TOKEN (?P<token>\w+)$' } },
  { signal = "token-read" },
  { send = { template = "AUTH {token}\n" } },
  { send = { template = "line with {token} in it\n", chunks = [1, 2] } },
  { send = { template = "exact {token};" } },
  { send = "xx contains t0k3n" },
  { send = { template = "recv {token};" } },
  { await_read = true },
  { send_frame = { framing = "u32le", template = "frame {token}" } },
  { send_frame = { framing = "u16be", template = "<{token}>" } },
  { send_frame = { framing = "json-header", header = { name = "f" }, template = "body {token}" } },
  { expect_frame = { framing = "line", template = "bye {token}" } },
  { expect_frame = { framing = "json-header", header = { n = "t0k3n" }, body = { template = "to {token}" } } },
]
"#)
    .await;
    assert_passed(&outcome);
    // The frames on the wire carry the captured token.
    let text = bytes_of(&outcome, "client1", false);
    assert!(text.contains("bye t0k3n\n"), "{text}");
    assert!(text.contains("to t0k3n"), "{text}");
}

#[tokio::test]
async fn a_template_works_in_udp_sends_and_expectations() {
    let outcome = run(r#"
[servers.srv]
proto = "udp"
script = [
  { expect = { regex = '^id=(?P<id>\d+)$' } },
  { signal = "have-id" },
  { send = { template = "ack {id}" } },
  { expect = { template = "again {id}" } },
  { recv = { max = 100, expect = { contains = { template = "{id}" } } } },
]

[[clients]]
connect = "srv"
script = [
  { send = "id=4711" },
  { wait = "have-id" },
  { expect = { template = "ack {id}" } },
  { send = { template = "again {id}" } },
  { send = { template = "x{id}y" } },
]
"#)
    .await;
    assert_passed(&outcome);
}

/// A template's bytes are made when its step starts: an expectation that does not
/// hold shows the bytes the template made, and one that starts before the capture
/// fails naming the capturing step and how to order them.
#[tokio::test]
async fn a_template_expectation_is_judged_on_the_bytes_it_made() {
    let outcome = run(r#"
[servers.srv]
script = [ { send = "TOKEN abc\nAUTH abd\n" } ]

[[clients]]
connect = "srv"
script = [
  { expect_line = { regex = '^TOKEN (?P<token>\w+)$' } },
  { expect_line = { template = "AUTH {token}" } },
]
"#)
    .await;
    let f = failure(&outcome);
    assert_eq!(f.step.as_ref().unwrap().index, 2, "{}", rendered(&outcome));
    assert_eq!(f.expected.as_deref(), Some(&b"AUTH abc"[..]));
    assert!(
        f.actual.as_deref().unwrap().starts_with(b"AUTH abd"),
        "{}",
        rendered(&outcome)
    );

    let outcome = run(r#"
[servers.srv]
script = [ { expect_line = { contains = { template = "{token}" } } } ]

[[clients]]
connect = "srv"
script = [ { send = "TOKEN abc\n" }, { expect_line = { regex = '^(?P<token>\w+)$' } } ]
"#)
    .await;
    let f = failure(&outcome);
    assert_eq!(f.actor.as_deref(), Some("srv"));
    assert!(
        f.message.contains(
            "the variable `token` has no value yet: step 2 of `client1` (line 7:38) captures it"
        ) && f.message.contains("`{ wait = \"NAME\" }` before this one"),
        "{}",
        f.message
    );
}

/// The brief's example: a scripted client captures a token from the server's
/// greeting, then a client program gets it in its `command`, `env` and `stdin`
/// (it `wait`s for the signal the scripted client raises after the capture). The
/// program's output regex captures another variable, visible to the scripted
/// client once the program's `signal` is raised, and to a later program.
#[tokio::test]
async fn a_client_program_gets_and_gives_variables_in_a_signalled_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("client.py"),
        r#"import os, socket, sys
token = sys.argv[2]
line = sys.stdin.read().strip()
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as s:
    s.sendall(("USE " + token + " " + os.environ["TOKEN_ENV"] + " " + line + "\n").encode())
    reply = s.makefile().readline().strip()
print("server said:", reply)
print("session", reply.split()[-1])
"#,
    )
    .unwrap();
    let scenario = scenario_in(
        dir.path(),
        r#"
[servers.greet]
script = [
  { send = "WELCOME token=s3cr3t\n" },
  { expect_line = "HI" },
  { wait = "program-done" },
  { expect_line = { template = "{session}" } },
]

[servers.srv]
script = [
  { expect_line = "USE s3cr3t env-s3cr3t stdin-s3cr3t" },
  { send = "OK session 9f8e\n" },
]

[[clients]]
name = "greeter"
connect = "greet"
script = [
  { expect_line = { regex = 'token=(?P<token>\w+)' } },
  { signal = "have-token" },
  { send = "HI\n" },
  { wait = "program-done" },
  { send = { template = "{session}\n" } },
]

[[clients]]
name = "prog"
wait = "have-token"
signal = "program-done"
command = ["python3", "client.py", "{port:srv}", "{token}"]
env = { TOKEN_ENV = "env-{token}" }
stdin = { template = "stdin-{token}\n" }
stdout = { regex = 'session (?P<session>\w+)' }

[[clients]]
name = "later"
wait = "program-done"
command = ["python3", "-c", "import sys; print(sys.argv[1])", "{session}"]
stdout = "9f8e\n"
"#,
    );
    let outcome = crate::run_loaded(&scenario).await;
    assert_passed(&outcome);
    assert_eq!(bytes_of(&outcome, "greeter", true), "HI\n9f8e\n");
}

/// Without `wait`, a client program starts with the scripted clients, before the
/// capture: it fails naming the step that captures the variable and the remedy.
#[tokio::test]
async fn a_client_program_started_before_its_variable_is_captured_fails_naming_the_capturer() {
    let outcome = run_programs(
        r#"
[servers.srv]
script = [ { wait = "never-mind" }, { send = "token=abc\n" } ]

[[clients]]
connect = "srv"
script = [ { signal = "never-mind" }, { expect_line = { regex = 'token=(?P<token>\w+)' } } ]

[[clients]]
name = "prog"
command = ["echo", "{token}"]
"#,
    )
    .await;
    let f = failure(&outcome);
    assert_eq!(f.actor.as_deref(), Some("prog"));
    assert!(
        f.message.contains("the variable `token` has no value yet: step 2 of `client1` (line 7:39) captures it, and it had not matched before client program `prog` started")
            && f.message.contains("`wait = \"NAME\"` on it"),
        "{}",
        f.message
    );
    assert_eq!(f.step.as_ref().unwrap().location.line, 11);
}

/// A program whose output does not match publishes nothing and raises no signal:
/// the run fails with the program's mismatch, not with a waiter's timeout.
#[tokio::test]
async fn a_program_that_fails_publishes_no_capture() {
    let outcome = run_programs(
        r#"
step_timeout = "5s"

[servers.srv]
builtin = "echo"

[[clients]]
name = "prog"
signal = "done"
command = ["echo", "nothing here"]
stdout = { regex = 'value=(?P<value>\w+)' }

[[clients]]
connect = "srv"
script = [ { wait = "done" }, { send = { template = "{value}" } } ]
"#,
    )
    .await;
    let f = failure(&outcome);
    assert_eq!(f.actor.as_deref(), Some("prog"), "{}", rendered(&outcome));
    assert!(f.message.contains("does not match"), "{}", f.message);
}

/// `ready = { log }` with named groups: the line that made a server ready gives
/// variables to a later server's `command` and to every step.
#[tokio::test]
async fn a_server_ready_log_captures_variables_for_later_servers_and_steps() {
    let outcome = run_programs(r#"
[servers.keeper]
command = ["python3", "-c", "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); print('listening, key=K42', flush=True); c,_=s.accept(); c.sendall(b'hello\\n'); c.recv(10)", "{port}"]
ready = { log = 'key=(?P<key>\w+)' }

[servers.other]
command = ["python3", "-c", "import os,socket,sys; s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); c,_=s.accept(); c.sendall((sys.argv[2] + ' ' + os.environ['KEY'] + '\\n').encode()); c.recv(10)", "{port}", "got-{key}"]
env = { KEY = "{key}" }

[[clients]]
connect = "keeper"
script = [ { expect_line = "hello" }, { send = { template = "{key}" } } ]

[[clients]]
connect = "other"
script = [ { expect_line = { template = "got-{key} {key}" } } ]
"#)
    .await;
    assert_passed(&outcome);
}

/// A server's `command` is made when it starts, before every client: a variable
/// only a step captures can never be there, and the failure says why.
#[tokio::test]
async fn a_server_command_with_a_variable_no_earlier_server_captured_fails_clearly() {
    let outcome = run_programs(
        r#"
[servers.srv]
command = ["python3", "-c", "pass", "{port}", "{token}"]

[[clients]]
connect = "srv"
script = [ { expect_line = { regex = '(?P<token>\w+)' } } ]
"#,
    )
    .await;
    let f = failure(&outcome);
    assert!(
        f.message
            .contains("the variable `token` has no value yet: step 1 of `client1`")
            && f.message.contains("before every client"),
        "{}",
        f.message
    );
}

/// A client program's `stdout`/`stderr` MATCH may be a template, made when its
/// output is checked: here from a variable a step captured before it started.
#[tokio::test]
async fn a_program_output_match_can_be_a_template() {
    let outcome = run_programs(
        r#"
[servers.srv]
script = [ { send = "ID 77\n" } ]

[[clients]]
connect = "srv"
script = [ { expect_line = { regex = '^ID (?P<id>\d+)$' } }, { signal = "id" } ]

[[clients]]
name = "prog"
wait = "id"
command = ["python3", "-c", "import sys; print('id is', sys.argv[1]); print('warn', file=sys.stderr)", "{id}"]
stdout = { template = "id is {id}\n" }
stderr = { contains = { template = "warn" } }
"#,
    )
    .await;
    assert_passed(&outcome);

    let outcome = run_programs(
        r#"
[servers.srv]
script = [ { send = "ID 77\n" } ]

[[clients]]
connect = "srv"
script = [ { expect_line = { regex = '^ID (?P<id>\d+)$' } }, { signal = "id" } ]

[[clients]]
name = "prog"
wait = "id"
command = ["python3", "-c", "print('id is 78')"]
stdout = { template = "id is {id}\n" }
"#,
    )
    .await;
    let f = failure(&outcome);
    assert_eq!(f.actor.as_deref(), Some("prog"));
    assert_eq!(
        f.expected.as_deref(),
        Some(&b"id is 77\n"[..]),
        "{}",
        rendered(&outcome)
    );
}

/// A client program whose `wait` is never released fails after `step_timeout`
/// with a step timeout that points at its `wait`, and it is never started.
#[tokio::test]
async fn a_program_wait_that_is_never_released_times_out_at_its_wait() {
    let outcome = run_programs(
        r#"
step_timeout = "300ms"

[servers.srv]
builtin = "echo"

[[clients]]
connect = "srv"
script = [ { wait = "program-done", timeout = "5s" }, { signal = "go" } ]

[[clients]]
name = "prog"
wait = "go"
signal = "program-done"
command = ["python3", "-c", "print('started')"]
"#,
    )
    .await;
    let f = failure(&outcome);
    assert_eq!(f.kind, wirecheck::runner::FailureKind::StepTimeout);
    assert_eq!(f.actor.as_deref(), Some("prog"));
    let step = f.step.as_ref().unwrap();
    assert_eq!((step.keyword, step.location.line), ("wait", 13));
    assert!(
        f.message
            .contains("client program `prog` was never started: timed out waiting for signal `go`"),
        "{}",
        f.message
    );
    assert!(
        !events_of(&outcome, "prog")
            .iter()
            .any(|e| matches!(&e.kind, EventKind::ProcessOutput { .. })),
        "the program must not have run"
    );
}

/// `{port:NAME}` and `{addr:NAME}` in a template name proxies as well as servers
/// (in data and in a json-header `header`), as in a `command`.
#[tokio::test]
async fn templates_name_proxies_too() {
    let outcome = run(r#"
[servers.srv]
script = [
  { expect_line = { regex = '^via 127\.0\.0\.1:(?P<pp>\d+)$' } },
  { expect_frame = { framing = "json-header", header = { to = "127.0.0.1" } } },
]

[proxies.p]
to = "srv"

[[clients]]
connect = "p"
script = [
  { send = { template = "via {addr:p}\n" } },
  { send_frame = { framing = "json-header", header = { to = "{host:p}" }, text = "x" } },
]
"#)
    .await;
    assert_passed(&outcome);
    // The port it sent is the proxy's, where the client connected.
    let sent = bytes_of(&outcome, "client1", true);
    let port = crate::connected_peer(&outcome, "client1").port();
    assert!(
        sent.starts_with(&format!("via 127.0.0.1:{port}\n")),
        "{sent}"
    );
}
