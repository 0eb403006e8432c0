//! `wirecheck import` on the captures users bring: the regression fixtures under
//! `tests/fixtures/import/`, each made by [`fixtures`] below with the project's own
//! frame writer (`trace::frame`) plus the hand edits a real capture shows (IP
//! fragments, data on a SYN, a TSO length of 0, VLAN tags and a GRE tunnel, a
//! capture that starts mid-stream with a keep-alive, a reset after both FINs, a file
//! cut inside its last packet). Each fixture is imported; the imported bytes must
//! equal what the fixture carries and what tshark reassembles from it, and the
//! imported scenario must pass when run.
//!
//! `WIRECHECK_BLESS=1 cargo test -p wirecheck --test integration imports::` rewrites
//! the committed files after a deliberate change to the generator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use wirecheck::trace::frame::{build_tcp, build_udp, TcpFlags, TcpSegment, WINDOW};
use wirecheck::trace::import::{
    conversations, import_from, import_trace, Boundaries, Content, ImportOptions, Timing,
};
use wirecheck::trace::reassemble::FlowProto;

use crate::traces::{parse_follow, Tshark};

use crate::{assert_passed, run_loaded};

fn v4(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], port))
}

/// A classic pcap (microseconds, Ethernet) built frame by frame.
struct Pcap {
    bytes: Vec<u8>,
    micros: u32,
}

impl Pcap {
    fn new(link: u32) -> Self {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&262_144u32.to_le_bytes());
        bytes.extend_from_slice(&link.to_le_bytes());
        Self { bytes, micros: 0 }
    }

    /// Appends a frame 2 ms after the previous one.
    fn frame(&mut self, data: &[u8]) -> &mut Self {
        self.micros += 2_000;
        self.bytes
            .extend_from_slice(&1_700_000_000u32.to_le_bytes());
        self.bytes.extend_from_slice(&self.micros.to_le_bytes());
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(data);
        self
    }
}

fn tcp(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    let segment = TcpSegment {
        src,
        dst,
        seq,
        ack,
        flags,
        window: WINDOW,
        mss: None,
        payload,
    };
    build_tcp(&mut out, &segment, 1, usize::MAX).unwrap();
    out
}

/// The RFC 1071 checksum of an IPv4 header.
fn ipv4_checksum(header: &mut [u8]) {
    header[10] = 0;
    header[11] = 0;
    let mut sum = 0u32;
    for pair in header.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    header[10..12].copy_from_slice(&checksum.to_be_bytes());
}

/// Splits an Ethernet + IPv4 frame into IPv4 fragments of `piece` payload bytes.
fn fragment_v4(frame: &[u8], piece: usize, id: u16) -> Vec<Vec<u8>> {
    let (ethernet, ip) = frame.split_at(14);
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let payload = &ip[header_len..];
    let mut fragments = Vec::new();
    for (n, part) in payload.chunks(piece).enumerate() {
        let offset = n * piece;
        let more = offset + part.len() < payload.len();
        let mut header = ip[..header_len].to_vec();
        header[2..4].copy_from_slice(&((header_len + part.len()) as u16).to_be_bytes());
        header[4..6].copy_from_slice(&id.to_be_bytes());
        let flags_offset = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        header[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        ipv4_checksum(&mut header);
        let mut out = ethernet.to_vec();
        out.extend_from_slice(&header);
        out.extend_from_slice(part);
        fragments.push(out);
    }
    fragments
}

/// Splits an Ethernet + IPv6 frame into fragments (a fragment header each).
fn fragment_v6(frame: &[u8], piece: usize, id: u32) -> Vec<Vec<u8>> {
    let (ethernet, ip) = frame.split_at(14);
    let payload = &ip[40..];
    let next = ip[6];
    let mut fragments = Vec::new();
    for (n, part) in payload.chunks(piece).enumerate() {
        let offset = n * piece;
        let more = offset + part.len() < payload.len();
        let mut header = ip[..40].to_vec();
        header[4..6].copy_from_slice(&((8 + part.len()) as u16).to_be_bytes());
        header[6] = 44;
        let offset_flags = ((offset / 8) as u16) << 3 | u16::from(more);
        header.extend_from_slice(&[next, 0]);
        header.extend_from_slice(&offset_flags.to_be_bytes());
        header.extend_from_slice(&id.to_be_bytes());
        let mut out = ethernet.to_vec();
        out.extend_from_slice(&header);
        out.extend_from_slice(part);
        fragments.push(out);
    }
    fragments
}

/// What a fixture must import to: per direction (sender, receiver), the bytes.
type Expected = BTreeMap<(SocketAddr, SocketAddr), Vec<u8>>;

struct Fixture {
    name: &'static str,
    bytes: Vec<u8>,
    tcp: Expected,
    udp: Expected,
    /// A warning the import must give.
    warning: Option<&'static str>,
    /// A comment the scenario must hold.
    comment: Option<&'static str>,
    /// tshark reports bytes missing where there are none (a keep-alive before the
    /// first byte of a capture that starts mid-stream): its marker is removed
    /// before comparing.
    tshark_false_gap: bool,
}

/// tshark's follow output marks a hole with the text `[N bytes missing in capture
/// file]` and N zero bytes; removes the markers and returns how many there were.
fn without_missing_markers(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut markers = 0;
    let mut rest = bytes;
    while let Some(start) = rest.windows(1).position(|w| w == b"[") {
        let tail = &rest[start..];
        let end = tail.iter().position(|&b| b == b']');
        let text = end.map(|e| String::from_utf8_lossy(&tail[..=e]).into_owned());
        match text
            .as_deref()
            .and_then(|t| t.strip_suffix(" bytes missing in capture file]"))
        {
            Some(count) => {
                let count: usize = count.trim_start_matches('[').parse().unwrap();
                out.extend_from_slice(&rest[..start]);
                rest = &tail[end.unwrap() + 1 + count..];
                markers += 1;
            }
            None => {
                out.extend_from_slice(&rest[..=start]);
                rest = &rest[start + 1..];
            }
        }
    }
    out.extend_from_slice(rest);
    (out, markers)
}

/// Builds every fixture.
fn fixtures() -> Vec<Fixture> {
    let mut all = Vec::new();
    let (c, s) = (v4(1, 40_000), v4(2, 80));

    // IP fragments: a 5,000-byte UDP datagram in IPv4 fragments (last one first),
    // the same over IPv6, and unfragmented replies.
    {
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let (uc, us) = (v4(1, 5353), v4(2, 53));
        let mut frame = Vec::new();
        build_udp(&mut frame, uc, us, &big, 0, usize::MAX).unwrap();
        let mut pieces = fragment_v4(&frame, 1480, 0x4242);
        pieces.rotate_right(1);
        let mut pcap = Pcap::new(1);
        for piece in &pieces {
            pcap.frame(piece);
        }
        build_udp(&mut frame, us, uc, b"got it", 0, usize::MAX).unwrap();
        pcap.frame(&frame);
        let (v6c, v6s): (SocketAddr, SocketAddr) = (
            "[fd00::1]:5353".parse().unwrap(),
            "[fd00::2]:53".parse().unwrap(),
        );
        build_udp(&mut frame, v6c, v6s, &big[..3000], 0, usize::MAX).unwrap();
        for piece in fragment_v6(&frame, 1232, 77) {
            pcap.frame(&piece);
        }
        build_udp(&mut frame, v6s, v6c, b"v6 ok", 0, usize::MAX).unwrap();
        pcap.frame(&frame);
        all.push(Fixture {
            name: "fragments.pcap",
            bytes: pcap.bytes,
            tcp: Expected::new(),
            udp: Expected::from([
                ((uc, us), big.clone()),
                ((us, uc), b"got it".to_vec()),
                ((v6c, v6s), big[..3000].to_vec()),
                ((v6s, v6c), b"v6 ok".to_vec()),
            ]),
            warning: None,
            comment: None,
            tshark_false_gap: false,
        });
    }

    // Data on the SYN (TCP Fast Open), and a FIN with it.
    {
        let mut pcap = Pcap::new(1);
        let syn_fin = TcpFlags {
            fin: true,
            ..TcpFlags::SYN
        };
        pcap.frame(&tcp(c, s, 100, 0, syn_fin, b"GET / fast\n"));
        pcap.frame(&tcp(s, c, 500, 113, TcpFlags::SYN_ACK, b""));
        pcap.frame(&tcp(s, c, 501, 113, TcpFlags::PSH_ACK, b"fast reply\n"));
        pcap.frame(&tcp(s, c, 512, 113, TcpFlags::FIN_ACK, b""));
        pcap.frame(&tcp(c, s, 113, 513, TcpFlags::ACK, b""));
        all.push(Fixture {
            name: "syn-data.pcap",
            bytes: pcap.bytes,
            tcp: Expected::from([
                ((c, s), b"GET / fast\n".to_vec()),
                ((s, c), b"fast reply\n".to_vec()),
            ]),
            udp: Expected::new(),
            warning: None,
            comment: None,
            tshark_false_gap: false,
        });
    }

    // Captured on the sender under TSO: one 6,000-byte segment with IPv4 total
    // length 0; then a reset after both FINs, as TLS endings show.
    {
        let body: Vec<u8> = (0..6000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut pcap = Pcap::new(1);
        pcap.frame(&tcp(c, s, 1000, 0, TcpFlags::SYN, b""));
        pcap.frame(&tcp(s, c, 7000, 1001, TcpFlags::SYN_ACK, b""));
        pcap.frame(&tcp(c, s, 1001, 7001, TcpFlags::ACK, b""));
        let mut tso = tcp(c, s, 1001, 7001, TcpFlags::PSH_ACK, &body);
        tso[16] = 0;
        tso[17] = 0;
        ipv4_checksum(&mut tso[14..34]);
        pcap.frame(&tso);
        pcap.frame(&tcp(s, c, 7001, 7001, TcpFlags::PSH_ACK, b"thanks"));
        pcap.frame(&tcp(c, s, 7001, 7007, TcpFlags::FIN_ACK, b""));
        pcap.frame(&tcp(s, c, 7007, 7002, TcpFlags::FIN_ACK, b""));
        pcap.frame(&tcp(c, s, 7002, 7008, TcpFlags::RST_ACK, b""));
        all.push(Fixture {
            name: "tso-reset-after-fins.pcap",
            bytes: pcap.bytes,
            tcp: Expected::from([((c, s), body), ((s, c), b"thanks".to_vec())]),
            udp: Expected::new(),
            warning: None,
            comment: Some("reset from the client after both FINs"),
            tshark_false_gap: false,
        });
    }

    // QinQ tags and a GRE tunnel around the conversation, beside an ARP frame and
    // a frame that cannot be decoded.
    {
        let (inner_c, inner_s) = (v4(7, 41_000), v4(8, 6379));
        let wrap = |frame: &[u8]| -> Vec<u8> {
            let inner_ip = &frame[14..];
            let mut ip = vec![0x45, 0, 0, 0, 0, 9, 0, 0, 64, 47, 0, 0];
            ip.extend_from_slice(&[192, 168, 0, 1, 192, 168, 0, 2]);
            let total = (20 + 4 + inner_ip.len()) as u16;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ipv4_checksum(&mut ip);
            let mut out = vec![0u8; 12];
            out.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
            out.extend_from_slice(&ip);
            out.extend_from_slice(&[0, 0, 0x08, 0x00]);
            out.extend_from_slice(inner_ip);
            out
        };
        let mut pcap = Pcap::new(1);
        let mut arp = vec![0xffu8; 6];
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        pcap.frame(&arp);
        pcap.frame(&wrap(&tcp(inner_c, inner_s, 10, 0, TcpFlags::SYN, b"")));
        pcap.frame(&wrap(&tcp(
            inner_s,
            inner_c,
            20,
            11,
            TcpFlags::SYN_ACK,
            b"",
        )));
        pcap.frame(&wrap(&tcp(
            inner_c,
            inner_s,
            11,
            21,
            TcpFlags::PSH_ACK,
            b"PING\r\n",
        )));
        let mut broken = tcp(c, s, 1, 0, TcpFlags::ACK, b"xx");
        broken[14] = 0x4f; // a 60-byte IPv4 header in a shorter packet
        pcap.frame(&broken[..40]);
        pcap.frame(&wrap(&tcp(
            inner_s,
            inner_c,
            21,
            17,
            TcpFlags::PSH_ACK,
            b"+PONG\r\n",
        )));
        pcap.frame(&wrap(&tcp(
            inner_c,
            inner_s,
            17,
            28,
            TcpFlags::FIN_ACK,
            b"",
        )));
        pcap.frame(&wrap(&tcp(
            inner_s,
            inner_c,
            28,
            18,
            TcpFlags::FIN_ACK,
            b"",
        )));
        all.push(Fixture {
            name: "vlan-gre.pcap",
            bytes: pcap.bytes,
            tcp: Expected::from([
                ((inner_c, inner_s), b"PING\r\n".to_vec()),
                ((inner_s, inner_c), b"+PONG\r\n".to_vec()),
            ]),
            udp: Expected::new(),
            warning: Some("not TCP or UDP (ARP 1)"),
            comment: None,
            tshark_false_gap: false,
        });
    }

    // A capture that starts mid-stream with a keep-alive, has another keep-alive
    // (one old byte) later, and is cut inside its last packet.
    {
        let mut pcap = Pcap::new(1);
        pcap.frame(&tcp(c, s, 999, 5000, TcpFlags::ACK, b""));
        pcap.frame(&tcp(s, c, 5000, 1000, TcpFlags::ACK, b""));
        pcap.frame(&tcp(c, s, 1000, 5000, TcpFlags::PSH_ACK, b"ping"));
        pcap.frame(&tcp(s, c, 5000, 1004, TcpFlags::PSH_ACK, b"pong"));
        pcap.frame(&tcp(c, s, 1003, 5004, TcpFlags::ACK, b"g"));
        pcap.frame(&tcp(s, c, 5004, 1004, TcpFlags::ACK, b""));
        pcap.frame(&tcp(c, s, 1004, 5004, TcpFlags::PSH_ACK, b"bye"));
        pcap.frame(&tcp(
            s,
            c,
            5004,
            1007,
            TcpFlags::PSH_ACK,
            b"later, this is cut",
        ));
        let cut = pcap.bytes.len() - 5;
        pcap.bytes.truncate(cut);
        all.push(Fixture {
            name: "midstream-keepalive-cut.pcap",
            bytes: pcap.bytes,
            tcp: Expected::from([((c, s), b"pingbye".to_vec()), ((s, c), b"pong".to_vec())]),
            udp: Expected::new(),
            warning: Some("the file ends inside packet 8"),
            comment: None,
            tshark_false_gap: true,
        });
    }
    all
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/import")
}

/// The committed fixtures are exactly what the generator makes.
#[test]
fn committed_fixtures_are_what_the_generator_makes() {
    let bless = std::env::var_os("WIRECHECK_BLESS").is_some();
    for fixture in fixtures() {
        let path = fixtures_dir().join(fixture.name);
        if bless {
            std::fs::create_dir_all(fixtures_dir()).unwrap();
            std::fs::write(&path, &fixture.bytes).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (WIRECHECK_BLESS=1 writes it)", path.display()));
        assert!(
            committed == fixture.bytes,
            "{} differs from the generator's output (WIRECHECK_BLESS=1 rewrites it)",
            path.display()
        );
    }
}

/// Each fixture imports to exactly its bytes, tshark reassembles the same, and
/// the imported scenario passes.
#[tokio::test]
async fn fixtures_import_faithfully_and_replay() {
    let tshark = Tshark::find();
    for fixture in fixtures() {
        let path = fixtures_dir().join(fixture.name);
        let name = fixture.name;
        // Our bytes.
        let file = std::fs::File::open(&path).unwrap();
        let mut tcp = Expected::new();
        let mut udp = Expected::new();
        for conversation in conversations(file, &path).unwrap_or_else(|e| panic!("{name}: {e}")) {
            assert_eq!(conversation.gap, None, "{name}");
            for item in &conversation.items {
                if let Content::Data { from_client, bytes } = item {
                    let direction = if *from_client {
                        (conversation.client, conversation.server)
                    } else {
                        (conversation.server, conversation.client)
                    };
                    let map = match conversation.proto {
                        FlowProto::Tcp => &mut tcp,
                        FlowProto::Udp => &mut udp,
                    };
                    map.entry(direction).or_default().extend_from_slice(bytes);
                }
            }
        }
        assert_eq!(tcp, fixture.tcp, "{name}: TCP bytes");
        assert_eq!(udp, fixture.udp, "{name}: UDP bytes");
        // tshark's.
        if tshark.is_some() {
            let file = path.to_str().unwrap();
            let mut args: Vec<String> = vec!["-r".into(), file.into(), "-q".into()];
            for n in 0..fixture.tcp.len() / 2 {
                args.extend(["-z".into(), format!("follow,tcp,raw,{n}")]);
            }
            for n in 0..fixture.udp.len() / 2 {
                args.extend(["-z".into(), format!("follow,udp,raw,{n}")]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // Not `Tshark::run`: tshark reports a file cut inside a packet with a
            // failing status, after printing what it read.
            let output = Command::new("tshark").args(&args).output().unwrap();
            let followed = String::from_utf8(output.stdout).unwrap();
            let (mut tcp, udp) = parse_follow(&followed);
            let mut markers = 0;
            for bytes in tcp.values_mut() {
                let (clean, found) = without_missing_markers(bytes);
                *bytes = clean;
                markers += found;
            }
            assert_eq!(
                markers,
                usize::from(fixture.tshark_false_gap),
                "{name}: tshark's missing-bytes markers"
            );
            assert_eq!(tcp, fixture.tcp, "{name}: tshark's TCP streams");
            assert_eq!(udp, fixture.udp, "{name}: tshark's UDP flows");
        }
        // The import and its replay.
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("replay.toml");
        let options = ImportOptions {
            output: Some(output.clone()),
            ..Default::default()
        };
        let imported = import_trace(&path, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(warning) = fixture.warning {
            assert!(
                imported.warnings.iter().any(|w| w.contains(warning)),
                "{name}: no warning says `{warning}`: {:?}",
                imported.warnings
            );
        }
        if let Some(comment) = fixture.comment {
            assert!(
                imported.toml.contains(comment),
                "{name}:\n{}",
                imported.toml
            );
        }
        assert!(
            !imported.toml.contains("hex ="),
            "{name}: payloads belong in the .bin"
        );
        std::fs::write(&output, &imported.toml).unwrap();
        let scenario = wirecheck::scenario::load_file(&output)
            .unwrap_or_else(|e| panic!("{name}: {}", e.render()));
        let outcome = run_loaded(&scenario).await;
        assert_passed(&outcome);
    }
}

/// The issue's target: the trace of `scenarios/sticky/coalesce.toml` imported with
/// `--boundaries keep` shows the client's two writes as two sends, and replays.
#[test]
fn the_sticky_trace_keeps_its_two_writes() {
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("t");
    let coalesce = crate::scenarios_dir().join("sticky/coalesce.toml");
    let binary = env!("CARGO_BIN_EXE_wirecheck");
    let run = Command::new(binary)
        .args([
            "run",
            coalesce.to_str().unwrap(),
            "--pcap",
            traces.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(run.status.success());
    let trace = traces.join("coalesce-run1.pcapng");
    let replay = dir.path().join("replay.toml");
    let import = Command::new(binary)
        .args([
            "import",
            trace.to_str().unwrap(),
            "--boundaries",
            "keep",
            "-o",
            replay.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let toml = std::fs::read_to_string(&replay).unwrap();
    let client = &toml[toml.find("[[clients]]").unwrap()..];
    assert!(
        client.contains("{ send = { file = \"replay.bin\", offset = 0, len = 5 } },\n  { send = { file = \"replay.bin\", offset = 5, len = 5 } },"),
        "{toml}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("replay.bin")).unwrap(),
        b"helloeggo2"
    );
    let rerun = Command::new(binary)
        .args(["run", replay.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stdout)
    );
    // Merged, the two writes are one send.
    let merged = import_from(
        std::fs::File::open(&trace).unwrap(),
        &trace,
        &ImportOptions {
            boundaries: Boundaries::Merge,
            timing: Timing::None,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        merged.toml.contains("{ send = \"helloeggo2\" }"),
        "{}",
        merged.toml
    );
}

/// `--list` and `--conversation` on a capture with several conversations; what
/// cannot be replayed is refused with the conversation's name.
#[test]
fn list_select_and_refuse_by_conversation() {
    let fragments = fixtures_dir().join("fragments.pcap");
    let binary = env!("CARGO_BIN_EXE_wirecheck");
    let list = Command::new(binary)
        .args(["import", fragments.to_str().unwrap(), "--list"])
        .output()
        .unwrap();
    assert!(list.status.success());
    let table = String::from_utf8(list.stdout).unwrap();
    assert!(table.contains("udp:0"), "{table}");
    assert!(table.contains("udp:1"), "{table}");
    assert!(table.contains("5000"), "{table}");
    let only = import_trace(
        &fragments,
        &ImportOptions {
            conversations: vec!["udp:1".parse().unwrap()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(only.udp_flows, 1);
    assert!(only.toml.contains("[fd00::2]:53"), "{}", only.toml);
    let none = import_trace(
        &fragments,
        &ImportOptions {
            conversations: vec!["tcp:0".parse().unwrap()],
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(none.contains("matched none"), "{none}");

    // A gap: the middle segment of three is missing.
    let (c, s) = (v4(1, 40_000), v4(2, 80));
    let mut pcap = Pcap::new(1);
    pcap.frame(&tcp(c, s, 1, 0, TcpFlags::SYN, b""));
    pcap.frame(&tcp(s, c, 1, 2, TcpFlags::SYN_ACK, b""));
    pcap.frame(&tcp(c, s, 2, 2, TcpFlags::PSH_ACK, b"one"));
    pcap.frame(&tcp(c, s, 8, 2, TcpFlags::PSH_ACK, b"three"));
    let error = import_from(
        &pcap.bytes[..],
        Path::new("gap.pcap"),
        &ImportOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("tcp:0 (10.0.0.1:40000 -> 10.0.0.2:80)"),
        "{error}"
    );
    assert!(error.contains("bytes 3 to 6 never appear"), "{error}");

    // A UDP datagram loopback cannot carry.
    let mut pcap = Pcap::new(1);
    let big = vec![1u8; 66_000];
    let mut udp = vec![0, 9, 0, 9, 0, 0, 0, 0];
    udp.extend_from_slice(&big);
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ipv4_checksum(&mut ip);
    let mut ethernet = vec![0u8; 12];
    ethernet.extend_from_slice(&[0x08, 0x00]);
    ethernet.extend_from_slice(&ip);
    ethernet.extend_from_slice(&udp);
    pcap.frame(&ethernet);
    let error = import_from(
        &pcap.bytes[..],
        Path::new("big.pcap"),
        &ImportOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("udp:0"), "{error}");
    assert!(error.contains("65507"), "{error}");
}

/// The same frames in every container the reader takes: pcap in both byte orders
/// and with nanoseconds, pcapng in both byte orders, with and without the
/// end-of-options marker, with a `if_tsresol`; each imports to the same bytes.
#[test]
fn every_container_and_byte_order_reads_the_same() {
    let (c, s) = (v4(1, 40_000), v4(2, 80));
    let frames = [
        tcp(c, s, 1, 0, TcpFlags::SYN, b""),
        tcp(s, c, 9, 2, TcpFlags::SYN_ACK, b""),
        tcp(c, s, 2, 10, TcpFlags::PSH_ACK, b"hello"),
        tcp(s, c, 10, 7, TcpFlags::PSH_ACK, b"world"),
    ];
    let u32b = |big: bool, v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |big: bool, v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let pad = |data: &mut Vec<u8>| {
        while data.len() % 4 != 0 {
            data.push(0);
        }
    };
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for big in [false, true] {
        for nanos in [false, true] {
            let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
            let mut out = u32b(big, magic).to_vec();
            out.extend_from_slice(&u16b(big, 2));
            out.extend_from_slice(&u16b(big, 4));
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&u32b(big, 65_535));
            out.extend_from_slice(&u32b(big, 1));
            for (i, frame) in frames.iter().enumerate() {
                out.extend_from_slice(&u32b(big, 1_700_000_000));
                out.extend_from_slice(&u32b(big, i as u32 * 1000));
                out.extend_from_slice(&u32b(big, frame.len() as u32));
                out.extend_from_slice(&u32b(big, frame.len() as u32));
                out.extend_from_slice(frame);
            }
            files.push((format!("pcap big={big} nanos={nanos}"), out));
        }
        for end_marker in [false, true] {
            let block = |kind: u32, body: &[u8]| -> Vec<u8> {
                let mut body = body.to_vec();
                pad(&mut body);
                let total = 12 + body.len() as u32;
                let mut out = u32b(big, kind).to_vec();
                out.extend_from_slice(&u32b(big, total));
                out.extend_from_slice(&body);
                out.extend_from_slice(&u32b(big, total));
                out
            };
            let mut shb = u32b(big, 0x1a2b_3c4d).to_vec();
            shb.extend_from_slice(&u16b(big, 1));
            shb.extend_from_slice(&u16b(big, 0));
            shb.extend_from_slice(&[0xff; 8]);
            let mut out = block(0x0a0d_0d0a, &shb);
            let mut idb = u16b(big, 1).to_vec();
            idb.extend_from_slice(&[0, 0]);
            idb.extend_from_slice(&u32b(big, 65_535));
            // if_tsresol = 9 (nanoseconds), then maybe the end-of-options marker.
            idb.extend_from_slice(&u16b(big, 9));
            idb.extend_from_slice(&u16b(big, 1));
            idb.extend_from_slice(&[9, 0, 0, 0]);
            if end_marker {
                idb.extend_from_slice(&[0; 4]);
            }
            out.extend(block(1, &idb));
            for (i, frame) in frames.iter().enumerate() {
                let time = 1_700_000_000_000_000_000u64 + i as u64 * 1_000_000;
                let mut epb = u32b(big, 0).to_vec();
                epb.extend_from_slice(&u32b(big, (time >> 32) as u32));
                epb.extend_from_slice(&u32b(big, time as u32));
                epb.extend_from_slice(&u32b(big, frame.len() as u32));
                epb.extend_from_slice(&u32b(big, frame.len() as u32));
                epb.extend_from_slice(frame);
                out.extend(block(6, &epb));
            }
            files.push((format!("pcapng big={big} end_marker={end_marker}"), out));
        }
    }
    for (what, bytes) in files {
        let conversations =
            conversations(&bytes[..], Path::new("x")).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(conversations.len(), 1, "{what}");
        assert_eq!(
            conversations[0].items,
            vec![
                Content::Data {
                    from_client: true,
                    bytes: b"hello".to_vec()
                },
                Content::Data {
                    from_client: false,
                    bytes: b"world".to_vec()
                },
            ],
            "{what}"
        );
    }
    // An unsupported link type is refused first, by name.
    let mut radiotap = Pcap::new(127);
    radiotap.frame(&[0u8; 40]);
    let error = import_from(
        &radiotap.bytes[..],
        Path::new("wifi.pcap"),
        &ImportOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("IEEE802_11_RADIOTAP"), "{error}");
    assert!(error.contains("ETHERNET"), "{error}");
}

/// The link types `docs/cli.md` lists are exactly the ones the reader takes.
#[test]
fn the_documented_link_types_are_the_supported_ones() {
    use wirecheck::trace::read::{LinkType, SUPPORTED_LINK_TYPES};
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md"))
            .unwrap();
    let start = docs
        .find("Link types: ETHERNET")
        .expect("the link type paragraph");
    let paragraph = &docs[start..start + docs[start..].find("\n\n").unwrap()];
    let paragraph = paragraph.replace('\n', " ");
    for (code, name) in SUPPORTED_LINK_TYPES {
        let short = name.split(' ').next().unwrap();
        assert!(
            paragraph.contains(short),
            "{short} is not documented: {paragraph}"
        );
        assert!(
            paragraph.contains(&format!("{code}")),
            "link type {code} is not documented: {paragraph}"
        );
        assert!(LinkType::from_code(*code).is_supported());
    }
}
