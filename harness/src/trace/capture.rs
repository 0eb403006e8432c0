//! A real capture on the loopback interface (`--capture`): what the kernel actually
//! put on the wire, with its own segmentation, Nagle delays and delayed ACKs.
//!
//! An `AF_PACKET` raw socket bound to `lo` sees every frame twice (once going out,
//! once coming in); the outgoing copies are dropped. The socket needs CAP_NET_RAW
//! (root, or `setcap cap_net_raw+ep`); without it [`Capture::start`] fails with
//! `PermissionDenied` and the caller falls back to synthesis.
//!
//! A capture thread starts before the scenario's servers and spools every IP frame
//! on `lo` to a temporary file (scenarios run in parallel, and the ports a run uses
//! are only known afterwards). [`write_filtered`] then keeps the frames whose
//! endpoints appear in the run's events and writes the trace.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter};
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::net::if_::if_nametoindex;
use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, LinkAddr,
    MsgFlags, SockFlag, SockProtocol, SockType, SockaddrLike,
};
use nix::sys::time::TimeVal;

use super::frame::normalize;
use super::read::{read_frames, ReadError};
use super::sink::{FileInfo, Sink, TraceFormat, DEFAULT_SNAPLEN};
use crate::event::{Event, EventKind};

/// How often the capture thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);
/// After a stop request, keep reading until the interface is quiet, at most this long.
const DRAIN: Duration = Duration::from_millis(250);
/// The largest frame a recv can return on `lo` (GSO can exceed the MTU).
const RECV_BUFFER: usize = 256 * 1024;
/// The socket's receive queue, in bytes.
const RECEIVE_QUEUE: usize = 32 << 20;

/// A running capture.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<Captured>>,
    spool: PathBuf,
}

/// What a finished capture left behind. The spool file goes when this is dropped.
#[derive(Debug)]
pub struct Captured {
    /// The spool file: every IP frame seen on `lo`, as pcapng.
    pub spool: PathBuf,
    pub frames: u64,
    /// Frames the kernel dropped because we did not read fast enough.
    pub kernel_drops: u32,
}

/// Whether this process may open a packet socket (without capturing anything).
pub fn check_permission() -> io::Result<()> {
    open_socket().map(drop)
}

impl Capture {
    /// Opens the socket on `lo` and starts spooling into `spool`, keeping at most
    /// `snaplen` bytes of each frame. Returns once the socket is bound, so every
    /// packet sent after this call is captured.
    pub fn start(spool: PathBuf, snaplen: u32) -> io::Result<Capture> {
        let socket = open_socket()?;
        let file = File::create(&spool)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let spool = spool.clone();
            std::thread::Builder::new()
                .name("wirecheck-capture".into())
                .spawn(move || capture_loop(socket, file, spool, snaplen, &stop))?
        };
        Ok(Capture {
            stop,
            thread,
            spool,
        })
    }

    /// Stops capturing (after the interface has been quiet briefly) and returns
    /// the spool.
    pub fn finish(self) -> io::Result<Captured> {
        self.stop.store(true, Ordering::Relaxed);
        let result = self
            .thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the capture thread panicked")));
        if result.is_err() {
            let _ = std::fs::remove_file(&self.spool);
        }
        result
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.spool);
    }
}

fn open_socket() -> io::Result<OwnedFd> {
    let socket = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )?;
    bind(socket.as_raw_fd(), &loopback_link()?)?;
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true)?;
    // A bulk transfer on lo produces frames faster than a default-sized buffer holds.
    // Above `rmem_max` only with CAP_NET_ADMIN; otherwise as much as `rmem_max` allows.
    if setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_QUEUE).is_err() {
        let _ = setsockopt(&socket, sockopt::RcvBuf, &RECEIVE_QUEUE);
    }
    let poll = TimeVal::new(0, POLL.as_micros() as libc::suseconds_t);
    setsockopt(&socket, sockopt::ReceiveTimeout, &poll)?;
    Ok(socket)
}

/// The link-layer address of `lo` for every protocol, to bind the packet socket to.
fn loopback_link() -> io::Result<LinkAddr> {
    let index = if_nametoindex("lo")?;
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { mem::zeroed() };
    address.sll_family = libc::AF_PACKET as libc::c_ushort;
    address.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    address.sll_ifindex = index as libc::c_int;
    // nix has no constructor for a `LinkAddr`; this one is read from a complete
    // sockaddr_ll of the stated size.
    // SAFETY: the pointer and length describe `address`, which lives across the call.
    unsafe {
        LinkAddr::from_raw(
            (&address as *const libc::sockaddr_ll).cast(),
            Some(mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t),
        )
    }
    .ok_or_else(|| io::Error::other("not a packet socket address"))
}

fn capture_loop(
    socket: OwnedFd,
    file: File,
    spool: PathBuf,
    snaplen: u32,
    stop: &AtomicBool,
) -> io::Result<Captured> {
    let info = FileInfo {
        comment: "wirecheck capture spool".into(),
        interface: "lo".into(),
    };
    let mut sink = Sink::new(
        BufWriter::with_capacity(1 << 20, file),
        TraceFormat::Pcapng,
        snaplen,
        &info,
    )?;
    let mut buffer = vec![0u8; RECV_BUFFER];
    let mut control = nix::cmsg_space!(libc::timespec);
    let mut frames = 0u64;
    let mut stop_requested: Option<Instant> = None;
    loop {
        if stop_requested.is_none() && stop.load(Ordering::Relaxed) {
            stop_requested = Some(Instant::now());
        }
        if stop_requested.is_some_and(|at| at.elapsed() >= DRAIN) {
            break;
        }
        match receive(&socket, &mut buffer, &mut control) {
            Ok(Some(received)) => {
                if received.outgoing || !is_ip(&buffer[..received.captured]) {
                    continue;
                }
                let keep = received.captured.min(snaplen as usize);
                sink.write(received.timestamp, &buffer[..keep], received.length, None)?;
                frames += 1;
            }
            // Quiet for a poll interval: after a stop request, that is the end.
            Ok(None) if stop_requested.is_some() => break,
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
    let kernel_drops = kernel_drops(&socket);
    use std::io::Write as _;
    sink.into_inner().flush()?;
    Ok(Captured {
        spool,
        frames,
        kernel_drops,
    })
}

struct Received {
    captured: usize,
    length: usize,
    outgoing: bool,
    timestamp: Duration,
}

/// One frame, or `None` when the receive timeout passed.
fn receive(
    socket: &OwnedFd,
    buffer: &mut [u8],
    control: &mut Vec<u8>,
) -> io::Result<Option<Received>> {
    let mut iov = [io::IoSliceMut::new(buffer)];
    // MSG_TRUNC: the result is the frame's real length, even when it was cut.
    let message = match recvmsg::<LinkAddr>(
        socket.as_raw_fd(),
        &mut iov,
        Some(control),
        MsgFlags::MSG_TRUNC,
    ) {
        Ok(message) => message,
        Err(Errno::EAGAIN | Errno::ETIMEDOUT | Errno::EINTR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let length = message.bytes;
    let timestamp = message
        .cmsgs()
        .ok()
        .and_then(|mut cmsgs| {
            cmsgs.find_map(|cmsg| match cmsg {
                ControlMessageOwned::ScmTimestampns(spec) => Some(Duration::from(spec)),
                _ => None,
            })
        })
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
        });
    let outgoing = message
        .address
        .is_some_and(|address| address.pkttype() == libc::PACKET_OUTGOING);
    Ok(Some(Received {
        captured: length.min(buffer.len()),
        length,
        outgoing,
        timestamp,
    }))
}

fn kernel_drops(socket: &OwnedFd) -> u32 {
    // nix has no socket option for PACKET_STATISTICS.
    // SAFETY: all-zero is valid for tpacket_stats, plain old data.
    let mut stats: libc::tpacket_stats = unsafe { mem::zeroed() };
    let mut len = mem::size_of_val(&stats) as libc::socklen_t;
    // SAFETY: the pointer and length describe `stats`, which lives across the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        0
    } else {
        stats.tp_drops
    }
}

fn is_ip(frame: &[u8]) -> bool {
    frame.len() >= 14 && matches!([frame[12], frame[13]], [0x08, 0x00] | [0x86, 0xdd])
}

/// The endpoints a run used, by transport.
#[derive(Debug, Default, Clone)]
pub struct Endpoints {
    pub tcp: HashSet<SocketAddr>,
    pub udp: HashSet<SocketAddr>,
}

impl Endpoints {
    /// Every address that appears in the run's socket events.
    pub fn from_events(events: &[Event]) -> Self {
        let mut endpoints = Endpoints::default();
        for event in events {
            endpoints.add(event);
        }
        endpoints
    }

    /// Takes note of the addresses one event names.
    pub fn add(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Connect { local, peer, .. } | EventKind::Accept { local, peer, .. } => {
                self.tcp.insert(normalize(*local));
                self.tcp.insert(normalize(*peer));
            }
            EventKind::ConnectFailed { peer, .. } => {
                self.tcp.insert(normalize(*peer));
            }
            EventKind::UdpBound { local, .. } => {
                self.udp.insert(normalize(*local));
            }
            EventKind::DatagramSent { from, to, .. }
            | EventKind::DatagramReceived { from, to, .. } => {
                self.udp.insert(normalize(*from));
                self.udp.insert(normalize(*to));
            }
            _ => {}
        }
    }

    fn keeps(&self, frame: &[u8]) -> bool {
        let Some((protocol, src, dst)) = frame_endpoints(frame) else {
            return false;
        };
        let set = match protocol {
            6 => &self.tcp,
            17 => &self.udp,
            _ => return false,
        };
        set.contains(&normalize(src)) || set.contains(&normalize(dst))
    }
}

/// Protocol number and endpoints of an Ethernet frame carrying TCP or UDP, read
/// from the headers alone (the payload may have been cut by the snap length).
fn frame_endpoints(frame: &[u8]) -> Option<(u8, SocketAddr, SocketAddr)> {
    let ip = frame.get(14..)?;
    let (protocol, src, dst, transport) = match [*frame.get(12)?, *frame.get(13)?] {
        [0x08, 0x00] => {
            let header_len = usize::from(ip.first()? & 0x0f) * 4;
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                *ip.get(9)?,
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                ip.get(header_len..)?,
            )
        }
        [0x86, 0xdd] => {
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                *ip.get(6)?,
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                ip.get(40..)?,
            )
        }
        _ => return None,
    };
    let src_port = u16::from_be_bytes([*transport.first()?, *transport.get(1)?]);
    let dst_port = u16::from_be_bytes([*transport.get(2)?, *transport.get(3)?]);
    Some((
        protocol,
        SocketAddr::new(src, src_port),
        SocketAddr::new(dst, dst_port),
    ))
}

/// Writes the frames of `captured` that belong to the run (by `endpoints`) to
/// `path`. Returns the number of frames written.
pub fn write_filtered(
    captured: &Captured,
    endpoints: &Endpoints,
    path: &Path,
    format: TraceFormat,
    snaplen: Option<u32>,
    info: &FileInfo,
) -> io::Result<u64> {
    let file = File::create(path)?;
    let mut sink = Sink::new(
        BufWriter::with_capacity(1 << 20, file),
        format,
        snaplen.unwrap_or(DEFAULT_SNAPLEN),
        info,
    )?;
    let mut written = 0u64;
    let mut failure: Option<io::Error> = None;
    let result = read_frames(&captured.spool, |frame| {
        if endpoints.keeps(frame.data) {
            if let Err(e) = sink.write(
                frame.timestamp,
                frame.data,
                frame.original_len as usize,
                None,
            ) {
                failure = Some(e);
                return Err(ReadError::Packet {
                    path: path.to_owned(),
                    packet: frame.number,
                    reason: "write failed".into(),
                });
            }
            written += 1;
        }
        Ok(())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    result.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    use std::io::Write as _;
    sink.into_inner().flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::frame::{build_udp, TcpFlags, TcpSegment};

    #[test]
    fn endpoints_come_from_the_headers_even_when_cut() {
        let mut frame = Vec::new();
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        build_udp(&mut frame, a, b, &[1; 500], 0, 46).unwrap();
        assert_eq!(frame_endpoints(&frame), Some((17, a, b)));
        let segment = TcpSegment {
            src: b,
            dst: a,
            seq: 1,
            ack: 1,
            flags: TcpFlags::ACK,
            window: 100,
            mss: None,
            payload: &[],
        };
        crate::trace::frame::build_tcp(&mut frame, &segment, 0, usize::MAX).unwrap();
        let mut endpoints = Endpoints::default();
        assert!(!endpoints.keeps(&frame));
        endpoints.tcp.insert(a);
        assert!(endpoints.keeps(&frame));
    }
}
