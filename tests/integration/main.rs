//! Integration tests of wirecheck: scenarios run over real loopback sockets, the
//! loader's diagnostics, external server processes, deadlines, and the binary.
//!
//! One test binary (like ripgrep's) keeps link time low; each module covers one area.
//! Scenarios are written inline as TOML strings and loaded with a path inside a
//! temporary folder, so relative paths and the rendered `path:line:col` are real.

mod cli;
mod core;
mod external;
mod file_errors;
mod fuzz;
mod fuzz_corpora;
mod html;
mod imports;
mod matchers;
mod memory_limits;
mod peeked;
mod programs;
mod proxies;
mod schema;
mod shipped;
mod steps;
mod suite;
mod timeouts;
mod traces;
mod variables;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wirecheck::event::{Event, EventKind};
use wirecheck::report::render_failure;
use wirecheck::runner::{run_collecting, Failure, ScenarioOutcome};
use wirecheck::scenario::{load_str, LoadError, Scenario};

/// Beyond a scenario's own `timeout`, how long a run may take to clean up (built-in
/// servers get 2 s, an external process up to 3 x 2 s) before the test gives up.
const CLEANUP_ALLOWANCE: Duration = Duration::from_secs(12);

/// The file name inline scenarios pretend to have.
pub const SCENARIO_FILE: &str = "inline.toml";

/// Loads `text` as if it were `inline.toml` in a fresh temporary folder, panicking
/// with the rendered diagnostics if it is not valid.
pub fn scenario(text: &str) -> Scenario {
    let dir = tempfile::tempdir().expect("a temporary folder");
    scenario_in(dir.path(), text)
}

/// Loads `text` as `DIR/inline.toml`; the folder anchors `file = ...` and `cwd`, so
/// it must outlive a run of a `command` server.
pub fn scenario_in(dir: &Path, text: &str) -> Scenario {
    match load_str(&dir.join(SCENARIO_FILE), text) {
        Ok(scenario) => scenario,
        Err(e) => panic!("the test scenario is not valid:\n{}", e.render()),
    }
}

/// Loads `text` as `inline.toml` in a fresh temporary folder, keeping the result.
pub fn load(text: &str) -> Result<Scenario, LoadError> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    load_str(&dir.path().join(SCENARIO_FILE), text)
}

/// A finished run with every event it recorded (payloads included), so tests can
/// look at what happened on the wire. Derefs to the outcome.
pub struct Ran {
    pub outcome: ScenarioOutcome,
    pub events: Vec<Event>,
}

impl std::ops::Deref for Ran {
    type Target = ScenarioOutcome;
    fn deref(&self) -> &ScenarioOutcome {
        &self.outcome
    }
}

impl Ran {
    /// Writes the run's synthesized trace to `path`.
    pub fn write_trace(
        &self,
        path: &Path,
        settings: &wirecheck::trace::TraceSettings,
    ) -> std::io::Result<wirecheck::trace::SynthStats> {
        let label = wirecheck::trace::RunLabel {
            scenario: self.outcome.name.clone(),
            path: self.outcome.path.clone(),
            run: self.outcome.run,
        };
        wirecheck::trace::write_synthesized(
            path,
            &self.events,
            &label,
            self.outcome.started_at,
            settings,
        )
    }
}

/// Runs an already loaded scenario once, bounded by its own timeout plus cleanup.
pub async fn run_loaded(scenario: &Scenario) -> Ran {
    let bound = scenario.timeout + CLEANUP_ALLOWANCE;
    match tokio::time::timeout(bound, run_collecting(scenario, true)).await {
        Ok((outcome, events)) => Ran { outcome, events },
        Err(_) => panic!(
            "run_scenario did not return within the scenario timeout ({:?}) plus {:?}",
            scenario.timeout, CLEANUP_ALLOWANCE
        ),
    }
}

/// Loads and runs an inline scenario once.
pub async fn run(text: &str) -> Ran {
    run_loaded(&scenario(text)).await
}

/// The console explanation of a failed run (empty for a pass).
pub fn rendered(outcome: &ScenarioOutcome) -> String {
    outcome
        .failure
        .as_ref()
        .map(|f| render_failure(outcome, f))
        .unwrap_or_default()
}

/// Panics with the rendered failure unless the run passed.
#[track_caller]
pub fn assert_passed(outcome: &ScenarioOutcome) {
    if let Some(failure) = &outcome.failure {
        panic!(
            "scenario `{}` failed:\n{}",
            outcome.name,
            render_failure(outcome, failure)
        );
    }
}

/// The failure of a run that must have failed.
#[track_caller]
pub fn failure(outcome: &ScenarioOutcome) -> &Failure {
    outcome
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("scenario `{}` passed but should have failed", outcome.name))
}

/// `path:line:col` of the first occurrence of `needle` in `source`, the way the
/// renderers print positions (1-based, column in characters).
pub fn position_of(path: &Path, source: &str, needle: &str) -> String {
    let offset = source
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` is not in the scenario text"));
    let (line, column) = line_column(source, offset);
    format!("{}:{line}:{column}", path.display())
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Events of one actor, in order.
pub fn events_of<'a>(outcome: &'a Ran, actor: &str) -> Vec<&'a Event> {
    outcome
        .events
        .iter()
        .filter(|e| &*e.actor == actor)
        .collect()
}

/// Byte counts of every write call an actor made.
pub fn write_sizes(outcome: &Ran, actor: &str) -> Vec<usize> {
    events_of(outcome, actor)
        .into_iter()
        .filter_map(|e| match &e.kind {
            EventKind::Write { data, .. } | EventKind::DatagramSent { data, .. } => {
                Some(data.len())
            }
            _ => None,
        })
        .collect()
}

/// The server address a client connected to (TCP) or bound against (first seen).
pub fn connected_peer(outcome: &Ran, actor: &str) -> SocketAddr {
    events_of(outcome, actor)
        .into_iter()
        .find_map(|e| match &e.kind {
            EventKind::Connect { peer, .. } => Some(*peer),
            _ => None,
        })
        .unwrap_or_else(|| panic!("`{actor}` never connected"))
}

/// The local address a server accepted a connection on or bound (UDP).
pub fn server_addr(outcome: &Ran, actor: &str) -> SocketAddr {
    events_of(outcome, actor)
        .into_iter()
        .find_map(|e| match &e.kind {
            EventKind::Accept { local, .. } | EventKind::UdpBound { local, .. } => Some(*local),
            _ => None,
        })
        .unwrap_or_else(|| panic!("`{actor}` never accepted or bound"))
}

/// A loopback port held for as long as the value lives, by a socket that is bound
/// but never listens (nor, for UDP, receives from anyone but itself). A released
/// port could be taken by any other process meanwhile; a held one cannot.
pub struct HeldPort {
    socket: socket2::Socket,
    pub port: u16,
}

impl HeldPort {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

fn hold(ty: socket2::Type, protocol: socket2::Protocol, reuse: bool) -> HeldPort {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, ty, Some(protocol)).expect("a loopback socket");
    socket.set_reuse_address(reuse).expect("SO_REUSEADDR");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("an ephemeral loopback port");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("a bound address")
        .port();
    HeldPort { socket, port }
}

/// A loopback TCP port where every connection is refused, for the life of the value:
/// the socket holding it is bound without SO_REUSEADDR and never listens, so nothing
/// else can bind the port and the kernel answers each SYN with a reset.
pub fn refusing_tcp_port() -> HeldPort {
    hold(socket2::Type::STREAM, socket2::Protocol::TCP, false)
}

/// A loopback TCP port reserved for a scenario's fixed `bind`, for the life of the
/// value: the holder sets SO_REUSEADDR and never listens, so a server that also
/// sets SO_REUSEADDR (wirecheck's, the Python fixture's) may bind and listen on it,
/// while the kernel never hands it out as anyone's ephemeral or outgoing port.
/// Connections to it are refused whenever no such server listens.
pub fn reserved_tcp_port() -> HeldPort {
    hold(socket2::Type::STREAM, socket2::Protocol::TCP, true)
}

/// A loopback UDP port that answers every datagram with "port unreachable", for the
/// life of the value: the holder is bound without SO_REUSEADDR (nothing else can
/// bind the port) and connected to itself, so datagrams from any other port match
/// no socket.
pub fn unreachable_udp_port() -> HeldPort {
    let held = hold(socket2::Type::DGRAM, socket2::Protocol::UDP, false);
    held.socket
        .connect(&held.addr().into())
        .expect("a UDP socket connects to itself");
    held
}

/// The shipped scenario library.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// The folder of test fixtures.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Runs `command` to the end (stdin empty, output captured), failing the test if it
/// runs longer than `bound`: a watchdog against hangs, not a timing assertion.
pub async fn output_within(
    mut command: tokio::process::Command,
    bound: Duration,
    what: &str,
) -> std::process::Output {
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("`{what}` does not start: {e}"));
    tokio::time::timeout(bound, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{what}` ran longer than {bound:?}"))
        .expect("the output of the command")
}

/// A temporary folder holding the given files (name, text).
pub fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("a file in the temporary folder");
    }
    dir
}

/// A command's standard output, as text.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The last line a command printed on its standard output (the summary line).
pub fn last_line(output: &std::process::Output) -> String {
    stdout(output).lines().last().unwrap_or_default().to_owned()
}

/// Fails the test, showing both output streams, unless the command exited with `code`.
#[track_caller]
pub fn assert_exit(output: &std::process::Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// The rendered load errors of `text`, which must not be valid.
#[track_caller]
pub fn load_errors(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("the scenario loaded but should not have:\n{text}"),
        Err(e) => e.render(),
    }
}

/// Whether a process is gone: no /proc entry, or only a zombie waiting for its parent.
pub fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("?");
            state == "Z" || state == "X"
        }
    }
}

/// Kills the processes it holds when dropped, so a failed test does not leak the
/// programs it started.
pub struct KillOnDrop(pub Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A small deterministic generator (xorshift64*), so a test's random inputs are the
/// same on every run and a failure is reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Random bytes biased towards what framings care about: line ends, zero
    /// bytes and a high bit.
    pub fn framing_bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| match self.next_u64() % 10 {
                0 => b'\n',
                1 => b'\r',
                2 => 0,
                3 => 0x80,
                _ => self.next_u64() as u8,
            })
            .collect()
    }
}

/// A server program that answers wrongly the first time it is started in a folder
/// and correctly every time after: a flaky server under test, with its state in a
/// marker file beside it.
pub const FLAKY_SERVER: &str = r#"
import os, socket, sys
port = int(sys.argv[1])
marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "started-before")
first = not os.path.exists(marker)
open(marker, "a").close()
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(4)
while True:
    conn, _ = server.accept()
    data = conn.recv(100)
    conn.sendall(b"wrong\n" if first else data)
    conn.close()
"#;
