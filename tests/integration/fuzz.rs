//! `wirecheck fuzz` over real loopback sockets: it finds the planted bugs of the
//! shipped Python server with a fixed seed within a bounded number of executions,
//! writes reproducers that `wirecheck run` fails, finds nothing in a clean server,
//! and refuses bad input (a failing or flaky seed, a server that dies on startup,
//! an `--out` that cannot be written) with a clear message.

use crate::{folder, is_gone, KillOnDrop};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;
use wirecheck::fuzz::symptom::Kind;
use wirecheck::fuzz::{fuzz, Budget, FuzzOptions, FuzzReport};

use crate::{failure, run_loaded, scenarios_dir};

/// Watchdog of one fuzz run (not a timing assertion: the runs are bounded by
/// executions, this only stops a hung test).
const BOUND: Duration = Duration::from_secs(240);

fn options(path: PathBuf, out: &Path, runs: u64, seed: u64) -> FuzzOptions {
    FuzzOptions {
        path,
        budget: Budget::Runs(runs),
        seed,
        out: out.to_path_buf(),
        jobs: 1,
        memory_limit: 512 << 20,
        stats_every: Duration::from_secs(3600),
        stop_after: None,
    }
}

async fn fuzz_within(options: &FuzzOptions) -> Result<FuzzReport, String> {
    let log = |line: &str| eprintln!("{line}");
    tokio::time::timeout(BOUND, fuzz(options, &log))
        .await
        .expect("the fuzz run ended")
}

fn buggy_seed() -> PathBuf {
    scenarios_dir().join("fuzzing/buggy-framed-server.toml")
}

async fn wirecheck(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wirecheck"));
    command.args(args);
    crate::output_within(command, BOUND, &format!("wirecheck {}", args.join(" "))).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails the test unless the fuzzer's own check of the finding's reproducer saw it
/// fail every run; the message has the summary line (what each run did) and the
/// reproducer itself, which is gone with the test's temporary folder.
fn assert_reproducer_failed_every_run(finding: &wirecheck::fuzz::Finding) {
    assert!(
        finding.verify_runs > 0 && finding.verified_failures == finding.verify_runs,
        "{}\n--- {}:\n{}",
        finding.line(),
        finding.reproducer.display(),
        std::fs::read_to_string(&finding.reproducer).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_both_planted_bugs_with_a_fixed_seed_and_writes_failing_reproducers() {
    let out = tempfile::tempdir().unwrap();
    let mut options = options(buggy_seed(), out.path(), 3000, 7);
    options.stop_after = Some(2);
    let report = fuzz_within(&options).await.expect("the seed passes");
    let signatures: Vec<&str> = report
        .findings
        .iter()
        .map(|f| f.symptom.signature.as_str())
        .collect();
    assert!(
        signatures
            .iter()
            .any(|s| s.starts_with("ValueError at buggy_framed_server.py")),
        "the negative length bug: {signatures:?}"
    );
    assert!(
        signatures
            .iter()
            .any(|s| s.starts_with("UnicodeDecodeError at buggy_framed_server.py")),
        "the UTF-8 bug: {signatures:?}"
    );
    assert!(report.execs <= 3000);
    for finding in &report.findings {
        assert_eq!(finding.symptom.kind, Kind::PythonTraceback);
        assert!(finding.confirmed, "{}", finding.line());
        assert_eq!(finding.verified_failures, 3, "{}", finding.line());
        // The minimized input is small: one frame's worth of bytes.
        assert!(
            finding.ops <= 2 && finding.bytes <= 16,
            "{}",
            finding.line()
        );
        // The reproducer is an ordinary scenario, and `run` fails it with the
        // server's traceback in the report.
        let scenario = wirecheck::scenario::load_file(&finding.reproducer)
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let ran = run_loaded(&scenario).await;
        let failure = failure(&ran);
        let exception = finding.symptom.signature.split(' ').next().unwrap();
        assert!(
            failure.notes.iter().any(|n| n.contains(exception)),
            "the report shows the traceback: {failure:?}"
        );
    }
    let summary = std::fs::read_to_string(out.path().join("findings.txt")).unwrap();
    assert_eq!(summary.lines().count(), 2, "{summary}");
}

#[tokio::test]
async fn the_binary_exits_1_with_a_summary_when_it_finds_something() {
    let out = tempfile::tempdir().unwrap();
    let seed = buggy_seed();
    let output = wirecheck(&[
        "fuzz",
        seed.to_str().unwrap(),
        "--runs",
        "2000",
        "--max-findings",
        "1",
        "--seed",
        "7",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("seed 7"), "{stderr}");
    assert!(stdout.contains("fuzz summary: "), "{stdout}");
    assert!(stdout.contains("1 finding(s)"), "{stdout}");
    assert!(
        stdout.contains("finding-1-python-traceback.toml"),
        "{stdout}"
    );
    // A reproducer fails under `wirecheck run`, every time.
    let reproducer = out.path().join("finding-1-python-traceback.toml");
    let run = wirecheck(&["run", reproducer.to_str().unwrap(), "--repeat", "5"]).await;
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stdout));
    assert!(
        text(&run.stdout).ends_with("0 passed, 1 failed\n")
            || text(&run.stdout).contains("0 passed, 5 failed"),
        "{}",
        text(&run.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_server_gives_no_finding() {
    let out = tempfile::tempdir().unwrap();
    let seed = scenarios_dir().join("fuzzing/framed-echo.toml");
    let mut options = options(seed.clone(), out.path(), 2000, 3);
    options.jobs = 4;
    let report = fuzz_within(&options).await.expect("the seed passes");
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.execs, 2000);
    // The mutations reached more than the seed's own behaviour.
    assert!(report.corpus > 5, "corpus of {}", report.corpus);
    let output = wirecheck(&[
        "fuzz",
        seed.to_str().unwrap(),
        "--runs",
        "300",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("0 finding(s)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_servers_survive_a_short_fuzz() {
    let out = tempfile::tempdir().unwrap();
    let seed = scenarios_dir().join("fuzzing/reference-servers.toml");
    let mut options = options(seed, out.path(), 1500, 11);
    options.jobs = 4;
    let report = fuzz_within(&options).await.expect("the seed passes");
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[tokio::test]
async fn a_failing_seed_is_refused_with_its_failure() {
    let dir = folder(&[(
        "seed.toml",
        r#"
[servers.echo]
builtin = "echo"

[[clients]]
connect = "echo"
script = [ { send = "hello" }, { expect = "hellO" } ]
"#,
    )]);
    let out = dir.path().join("out");
    let error = fuzz_within(&options(dir.path().join("seed.toml"), &out, 10, 1))
        .await
        .unwrap_err();
    assert!(
        error.contains("fails, so there is nothing to fuzz"),
        "{error}"
    );
    assert!(
        error.contains("seed.toml:7:"),
        "the failure points at the step: {error}"
    );
    let output = wirecheck(&[
        "fuzz",
        dir.path().join("seed.toml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn a_flaky_seed_is_refused() {
    // The server answers wrongly on its second start only: the seed passes two of
    // its three runs.
    let dir = folder(&[
        (
            "flaky.py",
            r#"
import os, socket, sys
count = int(open("starts").read()) + 1 if os.path.exists("starts") else 1
open("starts", "w").write(str(count))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
while True:
    c, _ = s.accept()
    data = c.recv(16)
    if data:
        c.sendall(b"bad" if count == 2 else data)
    c.close()
"#,
        ),
        (
            "seed.toml",
            r#"
[servers.flaky]
command = ["python3", "flaky.py", "{port}"]

[[clients]]
connect = "flaky"
script = [ { send = "abc" }, { expect = "abc" } ]
"#,
        ),
    ]);
    let out = dir.path().join("out");
    let error = fuzz_within(&options(dir.path().join("seed.toml"), &out, 10, 1))
        .await
        .unwrap_err();
    assert!(error.contains("is flaky: it passed 2 of 3 runs"), "{error}");
}

#[tokio::test]
async fn a_server_that_dies_on_startup_is_refused() {
    let dir = folder(&[(
        "seed.toml",
        r#"
[servers.dead]
command = ["python3", "-c", "import sys; print('no config'); sys.exit(3)", "{port}"]

[[clients]]
connect = "dead"
script = [ { send = "abc" }, { expect = "abc" } ]
"#,
    )]);
    let out = dir.path().join("out");
    let error = fuzz_within(&options(dir.path().join("seed.toml"), &out, 10, 1))
        .await
        .unwrap_err();
    assert!(error.contains("fails"), "{error}");
    assert!(error.contains("exited before it was ready"), "{error}");
}

#[tokio::test]
async fn an_out_folder_that_cannot_be_written_is_refused() {
    let dir = folder(&[("not-a-folder", "")]);
    let out = dir.path().join("not-a-folder").join("findings");
    let error = fuzz_within(&options(
        scenarios_dir().join("fuzzing/framed-echo.toml"),
        &out,
        10,
        1,
    ))
    .await
    .unwrap_err();
    assert!(error.contains("--out"), "{error}");
    assert!(error.contains("cannot create the folder"), "{error}");
}

#[tokio::test]
async fn a_seed_without_a_fuzzable_client_is_refused() {
    let dir = folder(&[(
        "seed.toml",
        r#"
[servers.srv]
builtin = "echo"

[proxies.p]
to = "srv"

[[clients]]
name = "through"
connect = "p"
script = [ { send = "hi" }, { expect = "hi" } ]
"#,
    )]);
    let out = dir.path().join("out");
    let error = fuzz_within(&options(dir.path().join("seed.toml"), &out, 10, 1))
        .await
        .unwrap_err();
    assert!(error.contains("no client to fuzz with"), "{error}");
    assert!(error.contains("`through` (behind a proxy)"), "{error}");
}

/// An echo server with a family: a child and a `setsid` child (a group of its
/// own), whose pids it writes at start. It survives any input, so the fuzzer
/// keeps it running until the interrupt.
const ECHO_FAMILY: &str = r#"
import os, socket, subprocess, sys
port, pidfile = int(sys.argv[1]), sys.argv[2]
sleeper = [sys.executable, "-c", "import time; time.sleep(3600)"]
child = subprocess.Popen(sleeper)
escaped = subprocess.Popen(sleeper, start_new_session=True)
with open(pidfile + ".tmp", "w") as f:
    f.write("%d %d %d\n" % (os.getpid(), child.pid, escaped.pid))
os.rename(pidfile + ".tmp", pidfile)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
while True:
    conn, _ = srv.accept()
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass
    conn.close()
"#;

const ECHO_FAMILY_SEED: &str = r#"
name = "an echo server with a family"

[servers.srv]
command = ["python3", "echo_family.py", "{port}", "pids.txt"]

[[clients]]
connect = "srv"
script = [ { send = "ping" }, { expect = "ping" } ]
"#;

#[rstest::rstest]
#[case::sigterm(nix::sys::signal::Signal::SIGTERM, 143)]
#[case::sigint(nix::sys::signal::Signal::SIGINT, 130)]
#[case::sighup(nix::sys::signal::Signal::SIGHUP, 129)]
#[tokio::test]
async fn an_interrupt_stops_the_server_and_its_descendants_and_prints_the_summary(
    #[case] signal: nix::sys::signal::Signal,
    #[case] code: i32,
) {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let dir = folder(&[
        ("echo_family.py", ECHO_FAMILY),
        ("seed.toml", ECHO_FAMILY_SEED),
    ]);
    let out = dir.path().join("findings");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wirecheck"))
        .args(["fuzz", "seed.toml", "--time", "10m", "--seed", "5", "--out"])
        .arg(&out)
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("wirecheck starts");
    // Fuzzing has started once the calibration line is out: the target is the
    // program that wrote pids.txt last (the seed's runs wrote it before).
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(BOUND, async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            let started = line.contains("reply window");
            seen.push(line);
            if started {
                return;
            }
        }
        panic!("wirecheck ended before fuzzing: {seen:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("fuzzing did not start: {seen:?}"));
    let pids: Vec<u32> = std::fs::read_to_string(dir.path().join("pids.txt"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let _cleanup = KillOnDrop(pids.clone());
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(pids.iter().all(|&pid| !is_gone(pid)), "the family runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        signal,
    )
    .unwrap();
    let (status, stdout, rest) = tokio::time::timeout(BOUND, async {
        let mut rest = Vec::new();
        while let Some(line) = stderr.next_line().await.unwrap() {
            rest.push(line);
        }
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .await
            .unwrap();
        (child.wait().await.unwrap(), stdout, rest)
    })
    .await
    .expect("wirecheck exits after the interrupt");
    assert_eq!(status.code(), Some(code), "{stdout}\n{rest:?}");
    assert!(stdout.contains("fuzz summary: "), "{stdout}");
    assert!(stdout.contains("(interrupted)"), "{stdout}");
    assert!(stdout.contains("0 finding(s)"), "{stdout}");
    assert!(
        rest.iter()
            .any(|l| l.contains(&format!("interrupted by {signal}"))),
        "{rest:?}"
    );
    let left: Vec<u32> = pids.iter().copied().filter(|&pid| !is_gone(pid)).collect();
    assert!(left.is_empty(), "still running after {signal}: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_server_is_fuzzed_on_every_connection() {
    let dir = folder(&[(
        "seed.toml",
        r#"
name = "a scripted server answers ping"
[servers.srv]
script = [ { wait = "sent" }, { expect = "ping" }, { send = "pong" } ]

[[clients]]
connect = "srv"
script = [ { send = "ping" }, { signal = "sent" }, { expect = "pong" } ]
"#,
    )]);
    let out = dir.path().join("findings");
    let mut options = options(dir.path().join("seed.toml"), &out, 600, 4);
    options.jobs = 0;
    let report = fuzz_within(&options)
        .await
        .expect("a scripted seed is fuzzed");
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.execs, 600);
    assert_eq!(report.jobs, 8, "a scripted server runs in-process");
    // Mutated pings got other answers than the seed's (no answer, a close).
    assert!(report.corpus > 2, "corpus of {}", report.corpus);
}

/// A UDP server with a planted bug: a datagram that is not UTF-8 kills it.
const UDP_UPPER: &str = r#"
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    data, peer = sock.recvfrom(65536)
    sock.sendto(data.decode("utf-8").upper().encode("utf-8"), peer)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_server_is_fuzzed_with_datagrams_and_its_crash_reproduced() {
    let dir = folder(&[
        ("udp_upper.py", UDP_UPPER),
        (
            "seed.toml",
            r#"
name = "a UDP server answers in upper case"
[servers.upper]
command = ["python3", "udp_upper.py", "{port}"]
proto = "udp"

[[clients]]
connect = "upper"
script = [ { send = "hello" }, { expect = "HELLO" }, { send = "größe" }, { expect = "GRÖSSE" } ]
"#,
        ),
    ]);
    let out = dir.path().join("findings");
    let mut options = options(dir.path().join("seed.toml"), &out, 3000, 9);
    options.stop_after = Some(1);
    let report = fuzz_within(&options).await.expect("a UDP seed is fuzzed");
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let finding = &report.findings[0];
    assert_eq!(finding.symptom.kind, Kind::PythonTraceback);
    assert!(
        finding
            .symptom
            .signature
            .starts_with("UnicodeDecodeError at udp_upper.py"),
        "{}",
        finding.symptom.signature
    );
    assert!(finding.confirmed);
    assert_eq!(finding.verified_failures, finding.verify_runs);
    let reproducer = std::fs::read_to_string(&finding.reproducer).unwrap();
    assert!(!reproducer.contains("connect = true"), "{reproducer}");
    let run = wirecheck(&["run", finding.reproducer.to_str().unwrap(), "--repeat", "3"]).await;
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stdout));
    assert!(
        text(&run.stdout).contains("0 passed, 3 failed"),
        "{}",
        text(&run.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_literal_address_fuzzes_the_server_there() {
    // A server outside the scenario: an echo loop of this test, counting the
    // connections it accepts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    let dir = folder(&[(
        "seed.toml",
        &format!(
            r#"
name = "an echo server at a literal address"
[[clients]]
connect = "{addr}"
script = [ {{ send = "ping" }}, {{ expect = "ping" }} ]
"#
        ),
    )]);
    let out = dir.path().join("findings");
    let options = options(dir.path().join("seed.toml"), &out, 300, 2);
    let report = fuzz_within(&options)
        .await
        .expect("a literal address is fuzzed");
    server.abort();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.execs, 300);
    assert_eq!(
        report.jobs, 1,
        "a server outside wirecheck gets one execution at a time"
    );
    // The seed's three runs, the calibration and every execution connected there.
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 300 + 3,
        "{} connections",
        accepted.load(std::sync::atomic::Ordering::SeqCst)
    );
}

/// A server that makes up a token, prints it, and serves nothing of interest.
const TOKEN_ISSUER: &str = r#"
import secrets, socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(4)
print("issued token=%s" % secrets.token_hex(8), flush=True)
while True:
    conn, _ = srv.accept()
    conn.close()
"#;

/// A line server that refuses to start without a real token (a literal `{TOKEN}`
/// is not one) and dies on bytes that are not UTF-8.
const TOKEN_USER: &str = r#"
import re, socket, sys
port, token = int(sys.argv[1]), sys.argv[2]
if not re.fullmatch(r"[0-9a-f]{16}", token):
    sys.exit("no token: got %r" % token)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
print("started with token", token, flush=True)
while True:
    conn, _ = srv.accept()
    with conn:
        # A client that resets is not this server's bug: the only one planted is
        # the UTF-8 decode below, so the test's one finding is always that one.
        try:
            for line in conn.makefile("rb"):
                conn.sendall(line.decode("utf-8").upper().encode("utf-8"))
        except (ConnectionResetError, BrokenPipeError):
            pass
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_command_gets_variables_an_earlier_servers_ready_log_captured() {
    let dir = folder(&[
        ("issuer.py", TOKEN_ISSUER),
        ("user.py", TOKEN_USER),
        (
            "seed.toml",
            r#"
name = "server `user` starts with the token `issuer` printed"
[servers.issuer]
command = ["python3", "issuer.py", "{port}"]
ready = { log = 'token=(?P<TOKEN>[0-9a-f]+)' }

[servers.user]
command = ["python3", "user.py", "{port}", "{TOKEN}"]

[[clients]]
connect = "user"
script = [ { send = "hello\n" }, { expect = "HELLO\n" }, { send = "größe\n" }, { expect = "GRÖSSE\n" } ]
"#,
        ),
    ]);
    let out = dir.path().join("findings");
    let mut options = options(dir.path().join("seed.toml"), &out, 3000, 5);
    options.stop_after = Some(1);
    // Before the fix, `user` got the literal `{TOKEN}` and died on startup, and
    // the fuzzer refused the seed with that error.
    let report = fuzz_within(&options)
        .await
        .expect("the server with a captured variable starts under the fuzzer");
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let finding = &report.findings[0];
    assert!(
        finding
            .symptom
            .signature
            .starts_with("UnicodeDecodeError at user.py"),
        "{}",
        finding.symptom.signature
    );
    // The crashed server was started again, with the token, for the confirmation
    // and after the finding (a restart that failed would have ended the run).
    assert!(finding.confirmed, "{}", finding.line());
    assert!(report.restarts >= 1, "restarts: {}", report.restarts);
    assert_eq!(finding.verified_failures, finding.verify_runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_growth_finding_has_a_reproducer_that_fails_5_of_5_runs() {
    // Bug 3 of the shipped server: a frame whose length lies grows its receive
    // buffer by up to 96 MiB for good. 64 MiB of growth is a finding here.
    let out = tempfile::tempdir().unwrap();
    let mut options = options(buggy_seed(), out.path(), 6000, 7);
    options.memory_limit = 64 << 20;
    options.stop_after = Some(3);
    let report = fuzz_within(&options).await.expect("the seed passes");
    let finding = report
        .findings
        .iter()
        .find(|f| f.symptom.kind == Kind::MemoryGrowth)
        .unwrap_or_else(|| panic!("a memory-growth finding: {:?}", report.findings));
    // One input grows a freshly started server past the limit on its own, and the
    // fuzzer's own check of the reproducer failed every run.
    assert!(finding.confirmed, "{}", finding.line());
    assert_reproducer_failed_every_run(finding);
    // Minimized: a frame header that lies is enough.
    assert!(
        finding.ops <= 2 && finding.bytes <= 16,
        "{}",
        finding.line()
    );
    let reproducer = std::fs::read_to_string(&finding.reproducer).unwrap();
    assert!(reproducer.contains("max_memory = \""), "{reproducer}");
    // Five runs, five failures, each the server's memory over its `max_memory`.
    let run = wirecheck(&[
        "run",
        finding.reproducer.to_str().unwrap(),
        "--repeat",
        "5",
        "--json",
        out.path().join("repeat.json").to_str().unwrap(),
    ])
    .await;
    let stdout = text(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&run.stderr)
    );
    assert!(stdout.contains("0 passed, 5 failed"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("repeat.json")).unwrap())
            .unwrap();
    let failures: Vec<String> = json["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["failure"]["message"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(failures.len(), 5, "{json}");
    for message in &failures {
        assert!(
            message.starts_with("server `buggy` (line ") && message.contains("max_memory"),
            "{message}"
        );
    }
}

/// A line server that answers in upper case and leaks, as its second argument
/// says: `high-byte` keeps 100 MB for good the first time a line holds a byte that
/// is not ASCII (a leak, not a crash); `per-connection` keeps 4 MiB for good on
/// every connection it accepts (a leak of a little per request, which no single
/// input shows).
const LEAKY_LINES: &str = r#"
import socket, sys
mode = sys.argv[2]
kept = []
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(16)
while True:
    conn, _ = srv.accept()
    if mode == "per-connection":
        kept.append(b"x" * (4 << 20))
    with conn:
        try:
            for line in conn.makefile("rb"):
                if mode == "high-byte" and not kept and any(b >= 0x80 for b in line):
                    kept.append(bytearray(100 << 20))
                conn.sendall(line.upper())
        except OSError:
            pass  # a client that resets is not a bug
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeds_own_max_memory_is_a_memory_limit_while_fuzzing() {
    let dir = folder(&[
        ("leaky.py", LEAKY_LINES),
        (
            "seed.toml",
            r#"
name = "a line server in upper case, within 60 MiB"
[servers.leaky]
command = ["python3", "leaky.py", "{port}", "high-byte"]
max_memory = "60MiB"

[[clients]]
connect = "leaky"
script = [ { send = "hello\n" }, { expect = "HELLO\n" }, { send = "again\n" }, { expect = "AGAIN\n" } ]
"#,
        ),
    ]);
    let out = dir.path().join("findings");
    let mut options = options(dir.path().join("seed.toml"), &out, 3000, 3);
    // No growth limit of the fuzzer's own: only the seed's `max_memory` applies.
    options.memory_limit = 0;
    options.stop_after = Some(1);
    let report = fuzz_within(&options).await.expect("the seed passes");
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let finding = &report.findings[0];
    assert_eq!(
        finding.symptom.kind,
        Kind::MemoryGrowth,
        "{}",
        finding.line()
    );
    assert!(
        finding.symptom.summary.contains("max_memory = \"60MiB\""),
        "{}",
        finding.line()
    );
    assert!(finding.confirmed, "{}", finding.line());
    assert_reproducer_failed_every_run(finding);
    // The reproducer keeps the seed's limit, the lower of the two.
    let reproducer = wirecheck::scenario::load_file(&finding.reproducer)
        .unwrap_or_else(|e| panic!("{}", e.render()));
    let wirecheck::scenario::ServerKind::Command(spec) = &reproducer.servers[0].kind else {
        panic!("a command server");
    };
    assert_eq!(spec.max_memory.as_ref().map(|m| m.value), Some(60 << 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_of_many_inputs_is_reported_as_not_reproduced_alone() {
    let dir = folder(&[
        ("leaky.py", LEAKY_LINES),
        (
            "seed.toml",
            r#"
name = "a line server in upper case"
[servers.leaky]
command = ["python3", "leaky.py", "{port}", "per-connection"]

[[clients]]
connect = "leaky"
script = [ { send = "hello\n" }, { expect = "HELLO\n" } ]
"#,
        ),
    ]);
    let out = dir.path().join("findings");
    let mut options = options(dir.path().join("seed.toml"), &out, 2000, 11);
    // Eight connections' worth: the calibration's five leave the server 20 MiB
    // up, and a few executions more cross it.
    options.memory_limit = 32 << 20;
    options.stop_after = Some(1);
    let report = fuzz_within(&options).await.expect("the seed passes");
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let finding = &report.findings[0];
    assert_eq!(
        finding.symptom.kind,
        Kind::MemoryGrowth,
        "{}",
        finding.line()
    );
    // Every recent input was replayed alone on a freshly started server (4 MiB,
    // and 4 more for the seed after it), and none crossed the limit.
    assert!(!finding.confirmed, "{}", finding.line());
    assert!(finding.tried_alone >= 1, "{}", finding.line());
    let line = finding.line();
    assert!(
        line.contains(&format!(
            "not reproduced alone (none of the last {} inputs, each replayed alone, showed it on a freshly started server: the growth took several inputs",
            finding.tried_alone
        )) || (finding.tried_alone == 1 && line.contains("not reproduced alone (the one recent input")),
        "{line}"
    );
    // Its reproducer sends one input, so it passes, and says so.
    assert_eq!(finding.verified_failures, 0, "{line}");
    assert!(
        line.ends_with("reproducer failed 0 of 3 runs, as expected of one input: it is not a regression test for this finding)"),
        "{line}"
    );
    let reproducer = std::fs::read_to_string(&finding.reproducer).unwrap();
    assert!(reproducer.contains("NOT REPRODUCED ALONE"), "{reproducer}");
    let summary = std::fs::read_to_string(out.join("findings.txt")).unwrap();
    assert_eq!(summary.trim_end(), line);
}
