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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::frame::normalize;
use super::read::{read_frames, ReadError};
use super::sink::{FileInfo, Sink, TraceFormat, DEFAULT_SNAPLEN};
use crate::event::{Event, EventKind};

/// `PACKET_OUTGOING` from `<linux/if_packet.h>`: a frame this host sent.
const PACKET_OUTGOING: u8 = 4;
/// `SOL_PACKET` and `PACKET_STATISTICS`.
const SOL_PACKET: libc::c_int = 263;
const PACKET_STATISTICS: libc::c_int = 6;
/// `SO_TIMESTAMPNS` (the 64-bit-time_t-safe "old" value on every Linux ABI we run on).
const SO_TIMESTAMPNS: libc::c_int = 35;
/// `SO_RCVBUFFORCE`: a receive buffer above `rmem_max` (needs CAP_NET_ADMIN).
const SO_RCVBUFFORCE: libc::c_int = 33;
/// `ETH_P_ALL`.
const ETH_P_ALL: u16 = 0x0003;

/// How often the capture thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);
/// After a stop request, keep reading until the interface is quiet, at most this long.
const DRAIN: Duration = Duration::from_millis(250);
/// The largest frame a recv can return on `lo` (GSO can exceed the MTU).
const RECV_BUFFER: usize = 256 * 1024;

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
    let protocol = libc::c_int::from(ETH_P_ALL.to_be());
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the name is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { mem::zeroed() };
    address.sll_family = libc::AF_PACKET as libc::c_ushort;
    address.sll_protocol = ETH_P_ALL.to_be();
    address.sll_ifindex = index as libc::c_int;
    // SAFETY: the pointer and length describe `address`, which lives across the call.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    set_int(&socket, libc::SOL_SOCKET, SO_TIMESTAMPNS, 1)?;
    // A bulk transfer on lo produces frames faster than a default-sized buffer holds.
    if set_int(&socket, libc::SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20).is_err() {
        let _ = set_int(&socket, libc::SOL_SOCKET, libc::SO_RCVBUF, 32 << 20);
    }
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: POLL.as_micros() as libc::suseconds_t,
    };
    // SAFETY: the pointer and length describe `timeout`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

fn set_int(
    socket: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the pointer and length describe `value`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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
    let mut frames = 0u64;
    let mut stop_requested: Option<Instant> = None;
    loop {
        if stop_requested.is_none() && stop.load(Ordering::Relaxed) {
            stop_requested = Some(Instant::now());
        }
        if stop_requested.is_some_and(|at| at.elapsed() >= DRAIN) {
            break;
        }
        match receive(&socket, &mut buffer) {
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
fn receive(socket: &OwnedFd, buffer: &mut [u8]) -> io::Result<Option<Received>> {
    // SAFETY: all-zero is valid for these C structs.
    let mut address: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: all-zero is valid for msghdr.
    let mut message: libc::msghdr = unsafe { mem::zeroed() };
    message.msg_name = (&mut address as *mut libc::sockaddr_ll).cast();
    message.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `message` refers to a live local buffer of the
    // stated length.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_TRUNC) };
    if n < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                Ok(None)
            }
            _ => Err(error),
        };
    }
    let length = n as usize;
    let mut timestamp = None;
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled in,
    // within `msg_controllen`.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == SO_TIMESTAMPNS {
                let spec: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast());
                timestamp = Some(Duration::new(spec.tv_sec as u64, spec.tv_nsec as u32));
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
    }
    let timestamp = timestamp.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    });
    Ok(Some(Received {
        captured: length.min(buffer.len()),
        length,
        outgoing: address.sll_pkttype == PACKET_OUTGOING,
        timestamp,
    }))
}

fn kernel_drops(socket: &OwnedFd) -> u32 {
    // tpacket_stats { tp_packets, tp_drops }
    let mut stats = [0u32; 2];
    let mut len = mem::size_of_val(&stats) as libc::socklen_t;
    // SAFETY: the pointer and length describe `stats`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            SOL_PACKET,
            PACKET_STATISTICS,
            stats.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        0
    } else {
        stats[1]
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
            match &event.kind {
                EventKind::Connect { local, peer, .. } | EventKind::Accept { local, peer, .. } => {
                    endpoints.tcp.insert(normalize(*local));
                    endpoints.tcp.insert(normalize(*peer));
                }
                EventKind::ConnectFailed { peer, .. } => {
                    endpoints.tcp.insert(normalize(*peer));
                }
                EventKind::UdpBound { local, .. } => {
                    endpoints.udp.insert(normalize(*local));
                }
                EventKind::DatagramSent { from, to, .. }
                | EventKind::DatagramReceived { from, to, .. } => {
                    endpoints.udp.insert(normalize(*from));
                    endpoints.udp.insert(normalize(*to));
                }
                _ => {}
            }
        }
        endpoints
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
