//! The core's promises, checked on the whole binary: a run needs no more descriptors
//! than the open-file limit allows (clients wait for free ones, and a run that can
//! never get them fails with the numbers), traces are written while the run goes,
//! and the JSON report still carries every run's events.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

/// How long one invocation of the binary may take before the test gives up.
const BOUND: Duration = Duration::from_secs(120);

/// Runs the binary under an open-file limit of `limit` (soft and hard, so wirecheck
/// cannot raise it): `bash` sets the limit and `exec`s the binary.
async fn wirecheck_limited(limit: u32, args: &[&str]) -> Output {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_wirecheck"))
        .args(args);
    crate::output_within(
        command,
        BOUND,
        &format!("wirecheck {} (ulimit -n {limit})", args.join(" ")),
    )
    .await
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn more_clients_than_descriptors_wait_for_free_ones_and_pass() {
    let dir = tempfile::tempdir().unwrap();
    // 1,500 copies, each holding two descriptors (client and the built-in server's
    // end), under a limit of 700: at most ~220 can be open at once.
    let file = write(
        dir.path(),
        "many.toml",
        r#"name = "more clients than descriptors"
timeout = "60s"
[servers.echo]
builtin = "echo"
[[clients]]
count = 1500
script = [ { send = "hi" }, { expect = "hi" } ]
"#,
    );
    let out = wirecheck_limited(700, &["run", &file]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    assert!(
        stdout.contains("clients waited for free file descriptors")
            && stdout.contains("(open-file limit 700)"),
        "the report names the peak and the limit: {stdout}"
    );
}

#[tokio::test]
async fn clients_that_hold_descriptors_while_waiting_on_each_other_fail_with_the_remedy() {
    let dir = tempfile::tempdir().unwrap();
    // Every copy keeps its connection while it waits for a signal that only the last
    // copy raises; the last copy can never get a descriptor.
    let file = write(
        dir.path(),
        "deadlock.toml",
        r#"name = "clients starve each other"
timeout = "30s"
step_timeout = "2s"
[servers.echo]
builtin = "echo"
[[clients]]
name = "waiter"
count = 400
script = [ { send = "x" }, { expect = "x" }, { wait = "last-one-here", timeout = "20s" } ]
[[clients]]
name = "last"
script = [ { signal = "last-one-here" } ]
"#,
    );
    let out = wirecheck_limited(500, &["run", &file]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("waited") && stdout.contains("for a free file descriptor"),
        "{stdout}"
    );
    assert!(stdout.contains("open-file limit 500"), "{stdout}");
    assert!(stdout.contains("lower `count`"), "the remedy: {stdout}");
}
