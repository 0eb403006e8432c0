//! Packet traces (`run --pcap`, `import`).
//!
//! - Every shipped scenario is run, its synthesized trace is read back with our own
//!   reader and reassembler, and each direction of each connection (each UDP flow)
//!   must hold exactly the bytes the runner recorded as written.
//! - tshark, when it is installed (CI installs it), judges the same traces
//!   independently: `follow` gives back the bytes, no TCP analysis warnings, every
//!   checksum good, capinfos reads the file.
//! - Traces import back into scenarios that pass (run -> trace -> import -> run).
//! - Failed and timed-out runs keep a complete trace named in the report; bad and
//!   truncated traces give clear errors, never a panic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wirecheck::cli::discover;
use wirecheck::event::{Event, EventKind};
use wirecheck::scenario::{load_file, load_str};
use wirecheck::trace::decode::{decode, Decoded};
use wirecheck::trace::frame::normalize;
use wirecheck::trace::import::{conversations, import_from, import_trace, Content, ImportOptions};
use wirecheck::trace::read::read_frames;
use wirecheck::trace::reassemble::FlowProto;
use wirecheck::trace::{self, TraceFormat, TraceSettings};

use crate::{assert_passed, run_loaded, scenarios_dir, Ran};

/// Bytes per direction: `(from, to)` -> bytes (TCP) or datagrams (UDP), non-empty only.
#[derive(Debug, Default, PartialEq, Eq)]
struct Streams {
    tcp: BTreeMap<(SocketAddr, SocketAddr), Vec<u8>>,
    udp: BTreeMap<(SocketAddr, SocketAddr), Vec<Vec<u8>>>,
}

/// What the runner recorded as sent: per TCP direction the sender's writes (or, if
/// the sender was not recorded, the receiver's reads); per UDP direction the sent
/// datagrams (or, for senders nobody recorded, the received ones).
fn recorded_streams(events: &[Event]) -> Streams {
    // conn -> (client, server, this end is the client)
    let mut ends: HashMap<u64, (SocketAddr, SocketAddr, bool)> = HashMap::new();
    let mut recorded: HashSet<(SocketAddr, SocketAddr, bool)> = HashSet::new();
    let mut written: HashMap<(SocketAddr, SocketAddr), Vec<u8>> = HashMap::new();
    let mut read: HashMap<(SocketAddr, SocketAddr), Vec<u8>> = HashMap::new();
    let mut udp_senders: HashSet<SocketAddr> = HashSet::new();
    for event in events {
        match &event.kind {
            EventKind::Connect { conn, local, peer } => {
                let (c, s) = (normalize(*local), normalize(*peer));
                ends.insert(*conn, (c, s, true));
                recorded.insert((c, s, true));
            }
            EventKind::Accept { conn, local, peer } => {
                let (c, s) = (normalize(*peer), normalize(*local));
                ends.insert(*conn, (c, s, false));
                recorded.insert((c, s, false));
            }
            EventKind::UdpBound { local, .. } => {
                udp_senders.insert(normalize(*local));
            }
            EventKind::DatagramSent { from, .. } => {
                udp_senders.insert(normalize(*from));
            }
            _ => {}
        }
    }
    let mut streams = Streams::default();
    for event in events {
        match &event.kind {
            EventKind::Write { conn, data } | EventKind::Read { conn, data } => {
                let Some(&(c, s, is_client)) = ends.get(conn) else {
                    continue;
                };
                let is_write = matches!(event.kind, EventKind::Write { .. });
                // The direction: a client's write and a server's read go c -> s.
                let direction = if is_write == is_client {
                    (c, s)
                } else {
                    (s, c)
                };
                let map = if is_write { &mut written } else { &mut read };
                map.entry(direction)
                    .or_default()
                    .extend_from_slice(data.bytes().expect("payloads were collected"));
            }
            EventKind::DatagramSent { from, to, data, .. } => streams
                .udp
                .entry((normalize(*from), normalize(*to)))
                .or_default()
                .push(data.bytes().expect("payloads were collected").to_vec()),
            EventKind::DatagramReceived { from, to, data, .. }
                if !udp_senders.contains(&normalize(*from)) =>
            {
                streams
                    .udp
                    .entry((normalize(*from), normalize(*to)))
                    .or_default()
                    .push(data.bytes().expect("payloads were collected").to_vec())
            }
            _ => {}
        }
    }
    let keys: HashSet<(SocketAddr, SocketAddr)> =
        written.keys().chain(read.keys()).copied().collect();
    for (from, to) in keys {
        // Is the sender of this direction a recorded end?
        let sender_recorded =
            recorded.contains(&(from, to, true)) || recorded.contains(&(to, from, false));
        let bytes = if sender_recorded {
            written.get(&(from, to))
        } else {
            read.get(&(from, to))
        };
        if let Some(bytes) = bytes.filter(|b| !b.is_empty()) {
            streams.tcp.insert((from, to), bytes.clone());
        }
    }
    streams
}

/// The streams in a trace, as our reader and reassembler see them.
fn trace_streams(path: &Path) -> Streams {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{e}"));
    let conversations = conversations(file, path).unwrap_or_else(|e| panic!("{e}"));
    let mut streams = Streams::default();
    for conversation in conversations {
        assert_eq!(conversation.gap, None, "{}", conversation.describe());
        for item in conversation.items.clone() {
            let Content::Data { from_client, bytes } = item else {
                continue;
            };
            let direction = if from_client {
                (conversation.client, conversation.server)
            } else {
                (conversation.server, conversation.client)
            };
            match conversation.proto {
                FlowProto::Tcp => streams.tcp.entry(direction).or_default().extend(bytes),
                FlowProto::Udp => streams.udp.entry(direction).or_default().push(bytes),
            }
        }
    }
    streams
}

fn shipped() -> Vec<PathBuf> {
    discover(&[scenarios_dir()]).expect("the scenarios folder is readable")
}

async fn run_file(path: &Path) -> Ran {
    let scenario = load_file(path).unwrap_or_else(|e| panic!("{}", e.render()));
    run_loaded(&scenario).await
}

fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Runs every shipped scenario and writes its synthesized trace into `dir`.
async fn shipped_traces(dir: &Path, settings: &TraceSettings) -> Vec<(PathBuf, Ran)> {
    let mut traces = Vec::new();
    for file in shipped() {
        let outcome = run_file(&file).await;
        let path = dir.join(trace::trace_file_name(&stem(&file), 1, settings.format));
        outcome
            .write_trace(&path, settings)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        traces.push((path, outcome));
    }
    traces
}

#[tokio::test]
async fn every_shipped_trace_holds_exactly_the_recorded_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let traces = shipped_traces(dir.path(), &TraceSettings::default()).await;
    assert!(!traces.is_empty());
    for (path, outcome) in &traces {
        let expected = recorded_streams(&outcome.events);
        let actual = trace_streams(path);
        assert!(
            !expected.tcp.is_empty() || !expected.udp.is_empty(),
            "{}: the run recorded no bytes at all",
            outcome.name
        );
        assert_eq!(actual.tcp, expected.tcp, "TCP streams of {}", outcome.name);
        assert_eq!(
            actual.udp, expected.udp,
            "UDP datagrams of {}",
            outcome.name
        );
    }
}

#[tokio::test]
async fn sequence_numbers_wrapping_past_2_32_keep_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let settings = TraceSettings {
        fixed_isn: Some(u32::MAX - 4_000),
        ..Default::default()
    };
    for name in [
        "basics/tcp-echo.toml",
        "sticky/large-send-many-reads.toml",
        "basics/many-clients.toml",
    ] {
        let file = scenarios_dir().join(name);
        let outcome = run_file(&file).await;
        assert_passed(&outcome);
        let path = dir.path().join(format!("{}.pcapng", stem(&file)));
        outcome.write_trace(&path, &settings).unwrap();
        assert_eq!(
            trace_streams(&path),
            recorded_streams(&outcome.events),
            "{name}"
        );
        if let Some(tshark) = Tshark::find() {
            tshark.judge(&path, &recorded_streams(&outcome.events));
        }
    }
}

// ---------------------------------------------------------------------------
// tshark, the independent judge

pub(crate) struct Tshark;

impl Tshark {
    /// tshark and capinfos, when both are installed. Without them the tshark checks
    /// are skipped with a note, except under CI (`CI` set), which installs them
    /// (ci/check.sh): there their absence fails the test.
    pub(crate) fn find() -> Option<Tshark> {
        let runs = |program: &str| {
            Command::new(program)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let missing: Vec<&str> = ["tshark", "capinfos"]
            .into_iter()
            .filter(|program| !runs(program))
            .collect();
        if missing.is_empty() {
            return Some(Tshark);
        }
        let missing = missing.join(" and ");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {missing} cannot be run: CI must judge the traces with tshark (apt-get install tshark)"
        );
        eprintln!("note: {missing} cannot be run here; skipping the tshark checks (CI installs them: apt-get install tshark)");
        None
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let output = Command::new("tshark")
            .args(args)
            .output()
            .expect("tshark runs");
        assert!(
            output.status.success(),
            "tshark {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Every check on one trace.
    fn judge(&self, path: &Path, expected: &Streams) {
        let file = path.to_str().unwrap();
        // Analysis: no retransmission, lost segment, dup ack, window problem...
        let flags = self.run(&["-r", file, "-Y", "tcp.analysis.flags"]);
        assert!(
            flags.stdout.is_empty(),
            "{file}: tshark flags TCP problems:\n{}",
            String::from_utf8_lossy(&flags.stdout)
        );
        // Checksums: none bad, and some actually verified good.
        let checks = [
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ];
        let mut args = vec!["-r", file];
        args.extend(checks);
        args.extend([
            "-Y",
            "tcp.checksum.status == \"Bad\" || ip.checksum.status == \"Bad\" || udp.checksum.status == \"Bad\"",
        ]);
        let bad = self.run(&args);
        assert!(
            bad.stdout.is_empty(),
            "{file}: bad checksums:\n{}",
            String::from_utf8_lossy(&bad.stdout)
        );
        let mut args = vec!["-r", file];
        args.extend(checks);
        args.extend([
            "-T",
            "fields",
            "-e",
            "ip.checksum.status",
            "-e",
            "tcp.checksum.status",
            "-e",
            "udp.checksum.status",
            "-e",
            "tcp.stream",
            "-e",
            "udp.stream",
        ]);
        let fields = String::from_utf8(self.run(&args).stdout).unwrap();
        let mut tcp_streams = HashSet::new();
        let mut udp_streams = HashSet::new();
        for line in fields.lines() {
            let columns: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                columns.first(),
                Some(&"1"),
                "{file}: IP checksum not verified good: {line}"
            );
            assert!(
                columns[1] == "1" || columns[2] == "1",
                "{file}: transport checksum not verified good: {line}"
            );
            if let Some(n) = columns.get(3).filter(|s| !s.is_empty()) {
                tcp_streams.insert(n.parse::<u32>().unwrap());
            }
            if let Some(n) = columns.get(4).filter(|s| !s.is_empty()) {
                udp_streams.insert(n.parse::<u32>().unwrap());
            }
        }
        // follow: exactly the bytes each side sent.
        let mut follow_args: Vec<String> = vec!["-r".into(), file.into(), "-q".into()];
        for n in &tcp_streams {
            follow_args.extend(["-z".into(), format!("follow,tcp,raw,{n}")]);
        }
        for n in &udp_streams {
            follow_args.extend(["-z".into(), format!("follow,udp,raw,{n}")]);
        }
        let args: Vec<&str> = follow_args.iter().map(String::as_str).collect();
        let followed = String::from_utf8(self.run(&args).stdout).unwrap();
        let (tcp, udp) = parse_follow(&followed);
        let expected_udp: BTreeMap<(SocketAddr, SocketAddr), Vec<u8>> = expected
            .udp
            .iter()
            .map(|(k, datagrams)| (*k, datagrams.concat()))
            .collect();
        assert_eq!(tcp, expected.tcp, "{file}: tshark's TCP streams");
        assert_eq!(udp, expected_udp, "{file}: tshark's UDP flows");
        // capinfos reads the file.
        let capinfos = Command::new("capinfos")
            .arg(file)
            .output()
            .expect("capinfos runs");
        assert!(
            capinfos.status.success(),
            "capinfos {file}: {}",
            String::from_utf8_lossy(&capinfos.stderr)
        );
    }
}

pub(crate) type Followed = BTreeMap<(SocketAddr, SocketAddr), Vec<u8>>;

/// Parses `-z follow,PROTO,raw,N` blocks: after `Node 0: ADDR` and `Node 1: ADDR`,
/// a hex line is node 0's data, a tab-indented one node 1's.
pub(crate) fn parse_follow(text: &str) -> (Followed, Followed) {
    let mut tcp = Followed::new();
    let mut udp = Followed::new();
    let mut current: Option<(bool, SocketAddr, SocketAddr)> = None;
    let mut node0: Option<SocketAddr> = None;
    let mut is_tcp = true;
    for line in text.lines() {
        if let Some(kind) = line.strip_prefix("Follow: ") {
            is_tcp = kind.starts_with("tcp");
            current = None;
            node0 = None;
        } else if let Some(address) = line.strip_prefix("Node 0: ") {
            node0 = Some(parse_node(address));
        } else if let Some(address) = line.strip_prefix("Node 1: ") {
            current = Some((
                is_tcp,
                node0.expect("Node 0 comes first"),
                parse_node(address),
            ));
        } else if line.starts_with("====") || line.starts_with("Filter: ") || line.is_empty() {
            continue;
        } else if let Some((tcp_block, a, b)) = current {
            let (direction, hex) = match line.strip_prefix('\t') {
                Some(hex) => ((b, a), hex),
                None => ((a, b), line),
            };
            let bytes = hex::decode(hex.trim()).expect("tshark prints hex");
            let map = if tcp_block { &mut tcp } else { &mut udp };
            map.entry(direction).or_default().extend(bytes);
        }
    }
    (tcp, udp)
}

fn parse_node(text: &str) -> SocketAddr {
    let (host, port) = text.trim().rsplit_once(':').expect("ADDR:PORT");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    SocketAddr::new(
        host.parse().expect("an IP address"),
        port.parse().expect("a port"),
    )
}

#[tokio::test]
async fn tshark_agrees_on_every_shipped_trace() {
    let Some(tshark) = Tshark::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let traces = shipped_traces(dir.path(), &TraceSettings::default()).await;
    // tshark starts slowly; judge the traces on a few threads.
    std::thread::scope(|scope| {
        for chunk in traces.chunks(traces.len().div_ceil(4).max(1)) {
            let tshark = &tshark;
            scope.spawn(move || {
                for (path, outcome) in chunk {
                    tshark.judge(path, &recorded_streams(&outcome.events));
                }
            });
        }
    });
}

#[tokio::test]
async fn classic_pcap_and_snap_length_traces_open_in_tshark() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_file(&scenarios_dir().join("sticky/large-send-many-reads.toml")).await;
    let pcap = dir.path().join("large.pcap");
    outcome
        .write_trace(
            &pcap,
            &TraceSettings {
                format: TraceFormat::Pcap,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(trace_streams(&pcap), recorded_streams(&outcome.events));
    let cut = dir.path().join("cut.pcapng");
    outcome
        .write_trace(
            &cut,
            &TraceSettings {
                snaplen: Some(128),
                ..Default::default()
            },
        )
        .unwrap();
    let mut largest = 0;
    let mut longest_original = 0;
    read_frames(&cut, |frame| {
        largest = largest.max(frame.data.len());
        longest_original = longest_original.max(frame.original_len);
        Ok(())
    })
    .unwrap();
    assert_eq!(largest, 128);
    assert!(longest_original > 20_000, "original lengths are kept");
    // A cut trace cannot be replayed, and import says why.
    let error = import_trace(&cut, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("snap length"), "{error}");
    if Tshark::find().is_some() {
        Tshark.judge(&pcap, &recorded_streams(&outcome.events));
        let info = Command::new("capinfos").arg(&cut).output().unwrap();
        assert!(info.status.success());
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(
            text.contains("128"),
            "capinfos shows the snap length:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// The command line: file names, failures, timeouts

fn wirecheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wirecheck"))
        .args(args)
        .output()
        .expect("the wirecheck binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn run_pcap_writes_one_trace_per_run_and_failures_name_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("traces");
    let failing = dir.path().join("wrong-answer.toml");
    std::fs::write(
        &failing,
        r#"
name = "the echo does not say pong"
[servers.echo]
builtin = "echo"
[[clients]]
script = [ { send = "ping" }, { expect = "pong" } ]
"#,
    )
    .unwrap();
    let echo = scenarios_dir().join("basics/tcp-echo.toml");
    let output = wirecheck(&[
        "run",
        echo.to_str().unwrap(),
        failing.to_str().unwrap(),
        "--repeat",
        "2",
        "--pcap",
        traces.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    for name in [
        "tcp-echo-run1.pcapng",
        "tcp-echo-run2.pcapng",
        "wrong-answer-run1.pcapng",
        "wrong-answer-run2.pcapng",
    ] {
        assert!(
            traces.join(name).is_file(),
            "{name} missing:\n{}",
            text(&output)
        );
    }
    // Runs finish in any order, and repeat mode prints a failure once with the
    // trace of whichever failing run it shows first.
    let failed_trace = traces.join("wrong-answer-run1.pcapng");
    let names_a_trace = ["wrong-answer-run1.pcapng", "wrong-answer-run2.pcapng"]
        .iter()
        .any(|name| text(&output).contains(&format!("trace: {}", traces.join(name).display())));
    assert!(
        names_a_trace,
        "the failure names its trace:\n{}",
        text(&output)
    );
    // The failed run's trace shows what went wrong: ping went out, ping came back.
    let streams = trace_streams(&failed_trace);
    let sent: Vec<&Vec<u8>> = streams.tcp.values().collect();
    assert_eq!(sent, vec![&b"ping".to_vec(), &b"ping".to_vec()]);
}

#[test]
fn a_run_that_times_out_midway_still_leaves_a_complete_trace() {
    let dir = tempfile::tempdir().unwrap();
    let stuck = dir.path().join("stuck.toml");
    std::fs::write(
        &stuck,
        r#"
name = "the server waits for bytes that never come"
timeout = "300ms"
[servers.srv]
script = [ { expect = "almost, but these bytes never come" } ]
[[clients]]
script = [ { send = "almost" }, { expect = "a reply" } ]
"#,
    )
    .unwrap();
    let traces = dir.path().join("t");
    let output = wirecheck(&[
        "run",
        stuck.to_str().unwrap(),
        "--pcap",
        traces.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("scenario timeout"),
        "{}",
        text(&output)
    );
    let path = traces.join("stuck-run1.pcapng");
    assert!(text(&output).contains(&format!("trace: {}", path.display())));
    let streams = trace_streams(&path);
    assert_eq!(
        streams.tcp.values().collect::<Vec<_>>(),
        vec![&b"almost".to_vec()]
    );
    if Tshark::find().is_some() {
        let info = Command::new("capinfos").arg(&path).output().unwrap();
        assert!(
            info.status.success(),
            "{}",
            String::from_utf8_lossy(&info.stderr)
        );
    }
}

#[test]
fn flags_are_checked() {
    let output = wirecheck(&["run", "scenarios", "--snaplen", "100"]);
    assert_eq!(output.status.code(), Some(2), "--snaplen needs --pcap");
    let output = wirecheck(&["run", "scenarios", "--pcap", "x", "--snaplen", "0"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a zero snap length is refused"
    );
    let output = wirecheck(&["run", "scenarios", "--pcap", "x", "--pcap-format", "erf"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn unique_stems_tell_equal_file_names_apart() {
    use wirecheck::cli::unique_stems;
    let a = Path::new("scenarios/basics/echo.toml");
    let b = Path::new("scenarios/framing/echo.toml");
    let c = Path::new("scenarios/basics/other.toml");
    assert_eq!(
        unique_stems(&[a, b, c]),
        vec!["basics-echo", "framing-echo", "other"]
    );
    assert_eq!(unique_stems(&[a, a]), vec!["echo", "echo-2"]);
}

// ---------------------------------------------------------------------------
// Import: traces back into scenarios

/// Runs `file`, traces it, imports the trace, runs the import: it must pass.
async fn round_trip(file: &Path, dir: &Path) -> Result<(), String> {
    let outcome = run_file(file).await;
    // A run that failed may have put nothing on the wire; its own failure is the
    // explanation, not the empty trace it leaves.
    if let Some(failure) = &outcome.failure {
        return Err(format!(
            "{}: the scenario itself failed, before any trace was written:\n{}",
            file.display(),
            wirecheck::report::render_failure(&outcome, failure)
        ));
    }
    let trace_path = dir.join(format!("{}.pcapng", stem(file)));
    outcome
        .write_trace(&trace_path, &TraceSettings::default())
        .map_err(|e| e.to_string())?;
    let imported =
        import_trace(&trace_path, &ImportOptions::default()).map_err(|e| e.to_string())?;
    let scenario_path = dir.join(format!("{}-imported.toml", stem(file)));
    let scenario = load_str(&scenario_path, &imported.toml).map_err(|e| e.render())?;
    let replay = run_loaded(&scenario).await;
    match &replay.failure {
        None => Ok(()),
        Some(failure) => Err(format!(
            "{}: the imported scenario failed:\n{}\n{}",
            file.display(),
            wirecheck::report::render_failure(&replay, failure),
            imported.toml
        )),
    }
}

#[tokio::test]
async fn tcp_and_udp_echo_round_trip_through_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["basics/tcp-echo.toml", "basics/udp-echo.toml"] {
        round_trip(&scenarios_dir().join(name), dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test]
async fn every_shipped_scenario_round_trips_through_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for file in shipped() {
        if let Err(e) = round_trip(&file, dir.path()).await {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_command_line_round_trip_passes_and_address_mode_targets_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("t");
    let echo = scenarios_dir().join("basics/tcp-echo.toml");
    let output = wirecheck(&[
        "run",
        echo.to_str().unwrap(),
        "--pcap",
        traces.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let trace_file = traces.join("tcp-echo-run1.pcapng");
    let imported = dir.path().join("replay.toml");
    let output = wirecheck(&[
        "import",
        trace_file.to_str().unwrap(),
        "-o",
        imported.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("1 TCP connection"),
        "{}",
        text(&output)
    );
    let output = wirecheck(&["run", imported.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));

    // --address: the clients target a given server. Import only writes the address
    // (nothing connects), so any held loopback port will do.
    let held = crate::reserved_tcp_port();
    let port = held.port;
    let output = wirecheck(&[
        "import",
        trace_file.to_str().unwrap(),
        "--address",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let toml = String::from_utf8(output.stdout).unwrap();
    assert!(
        toml.contains(&format!("address = \"127.0.0.1:{port}\"")),
        "{toml}"
    );
    assert!(!toml.contains("[servers.server1]"), "{toml}");
    load_str(&dir.path().join("address.toml"), &toml).unwrap_or_else(|e| panic!("{}", e.render()));
}

// ---------------------------------------------------------------------------
// Bad traces

/// A small deterministic generator (xorshift), so failures reproduce.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn import_bytes(bytes: &[u8]) -> Result<String, String> {
    import_from(bytes, Path::new("bad.pcapng"), &ImportOptions::default())
        .map(|i| i.toml)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn truncated_damaged_and_random_traces_are_clear_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_file(&scenarios_dir().join("basics/half-close.toml")).await;
    for format in [TraceFormat::Pcapng, TraceFormat::Pcap] {
        let path = dir.path().join(format!("good.{}", format.extension()));
        outcome
            .write_trace(
                &path,
                &TraceSettings {
                    format,
                    ..Default::default()
                },
            )
            .unwrap();
        let good = std::fs::read(&path).unwrap();
        import_bytes(&good).expect("the whole trace imports");
        // Cut at every length: the packets before the cut import (the cut one is
        // skipped with a warning), or the error says why (not a trace, a gap).
        let mut warned = 0;
        for len in 0..good.len() {
            match import_from(
                &good[..len],
                Path::new("bad.pcapng"),
                &ImportOptions::default(),
            ) {
                Ok(imported) => {
                    if imported
                        .warnings
                        .iter()
                        .any(|w| w.contains("the file ends inside packet"))
                    {
                        warned += 1;
                    }
                }
                Err(error) => assert!(!error.to_string().is_empty()),
            }
        }
        assert!(
            warned > good.len() / 2,
            "{format:?}: {warned} of {}",
            good.len()
        );
        let cut = import_from(
            &good[..good.len() - 3],
            Path::new("cut"),
            &ImportOptions::default(),
        )
        .expect("a file cut in its last packet imports");
        assert!(
            cut.warnings
                .iter()
                .any(|w| w.contains("ends inside packet")),
            "{:?}",
            cut.warnings
        );
        // Damage: flip bytes all over the file.
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3_000 {
            let mut damaged = good.clone();
            for _ in 0..1 + random.next() % 4 {
                let at = (random.next() as usize) % damaged.len();
                damaged[at] ^= 1 << (random.next() % 8);
            }
            let _ = import_bytes(&damaged);
        }
        // A valid header followed by noise.
        for len in [0, 1, 7, 64, 500, 4_000] {
            let mut noisy = good[..32].to_vec();
            noisy.extend(random.bytes(len));
            let _ = import_bytes(&noisy);
        }
    }
    let mut random = Random(42);
    for len in [0, 1, 3, 4, 24, 100, 10_000] {
        let noise = random.bytes(len);
        let error = import_bytes(&noise).unwrap_err();
        assert!(
            error.contains("not a pcap or pcapng file")
                || error.contains("cannot be imported")
                || error.contains("damaged"),
            "{error}"
        );
    }
    // The command line says it plainly and exits with 2.
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file").unwrap();
    let output = wirecheck(&["import", junk.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("is not a pcap or pcapng file"),
        "{}",
        text(&output)
    );
    let cut = dir.path().join("cut.pcapng");
    let good = std::fs::read(dir.path().join("good.pcapng")).unwrap();
    std::fs::write(&cut, &good[..good.len() - 10]).unwrap();
    let output = wirecheck(&["import", cut.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("warning: the file ends inside packet"),
        "{}",
        text(&output)
    );
}

// ---------------------------------------------------------------------------
// Real capture

#[test]
fn a_real_capture_on_lo_records_the_runs_packets_or_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("t");
    let echo = scenarios_dir().join("basics/tcp-echo.toml");
    let output = wirecheck(&[
        "run",
        echo.to_str().unwrap(),
        "--pcap",
        traces.to_str().unwrap(),
        "--capture",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let path = traces.join("tcp-echo-run1.pcapng");
    let streams = trace_streams(&path);
    let mut values: Vec<&Vec<u8>> = streams.tcp.values().collect();
    values.sort();
    assert_eq!(
        values,
        vec![&b"hello\n".to_vec(), &b"hello\n".to_vec()],
        "{}",
        text(&output)
    );
    if wirecheck::trace::capture::check_permission().is_err() {
        assert!(text(&output).contains("CAP_NET_RAW"), "{}", text(&output));
        eprintln!("note: no CAP_NET_RAW here; checked the fallback to synthesis only");
        return;
    }
    assert!(!text(&output).contains("CAP_NET_RAW"), "{}", text(&output));
    // Only this run's connection, with no outgoing duplicates: one handshake.
    let mut syns = 0;
    read_frames(&path, |frame| {
        if let Decoded::Packet(packet) = decode(&frame).unwrap() {
            if let wirecheck::trace::decode::Transport::Tcp { flags, .. } = packet.transport {
                if flags.syn && !flags.ack {
                    syns += 1;
                }
            }
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(syns, 1);
    // The capture imports back into a scenario that passes.
    let imported = import_trace(&path, &ImportOptions::default()).unwrap();
    assert_eq!(imported.tcp_connections, 1, "{}", imported.toml);
    let replay = dir.path().join("replay.toml");
    std::fs::write(&replay, &imported.toml).unwrap();
    let output = wirecheck(&["run", replay.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let spool_left = std::fs::read_dir(&traces).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".capture")
    });
    assert!(!spool_left, "the capture spool is removed");
}
