//! The kernel's socket table, read from `/proc/net/{tcp,tcp6,udp,udp6}`: which
//! sockets listen on (or are bound to) a port, which process owns a socket, and how
//! many bytes sit in a connection's queues.
//!
//! wirecheck uses it to see a program's state without touching the program: a
//! `ready = "listening"` server is ready once the table shows its listening socket
//! (no probe connection uses up its one `accept`), and `await_read` waits until the
//! peer's receive queue is empty. The table is per network namespace, which is the
//! namespace wirecheck and the programs it starts share; it only describes sockets
//! of this machine, which is why these checks work on loopback only.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::vocab::Proto;

/// `st` of a listening TCP socket in `/proc/net/tcp`.
const TCP_LISTEN: u8 = 0x0A;

/// One line of a `/proc/net` socket table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel's state number (TCP: 0x0A listen, 0x01 established; UDP: 0x07
    /// unconnected, 0x01 connected).
    pub state: u8,
    /// Bytes written and not yet acknowledged by the peer (TCP) or not yet sent (UDP).
    pub tx_queue: u64,
    /// Bytes received and not yet read by the program that owns the socket.
    pub rx_queue: u64,
    /// The socket's inode: `/proc/PID/fd/N` links to `socket:[INODE]`.
    pub inode: u64,
}

/// The table files of one protocol: IPv4 then IPv6.
fn table_files(proto: Proto) -> [&'static str; 2] {
    match proto {
        Proto::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => ["/proc/net/udp", "/proc/net/udp6"],
    }
}

/// Every socket of `proto` whose local port is `port`. A missing table (no IPv6 in
/// the kernel) is an empty one; an unreadable `/proc` is an error.
pub fn sockets_on_port(proto: Proto, port: u16) -> std::io::Result<Vec<SocketEntry>> {
    let needle = format!(":{port:04X} ");
    let mut found = Vec::new();
    let mut read_any = false;
    for file in table_files(proto) {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        read_any = true;
        // The local address is the second column; a cheap substring test skips
        // almost every line before it is parsed.
        found.extend(
            text.lines()
                .skip(1)
                .filter(|line| line.contains(&needle))
                .filter_map(parse_line)
                .filter(|entry| entry.local.port() == port),
        );
    }
    if !read_any {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the kernel's socket table (/proc/net) is not available",
        ));
    }
    Ok(found)
}

/// The sockets that make `addr` taken for a server of `proto`: TCP sockets that
/// listen on its port, UDP sockets bound to it, at `addr`'s IP or at a wildcard
/// address that covers it (`0.0.0.0`; `::` also takes IPv4 unless it is IPv6-only,
/// which the table does not say, so it counts).
pub fn holders(proto: Proto, addr: SocketAddr) -> std::io::Result<Vec<SocketEntry>> {
    Ok(sockets_on_port(proto, addr.port())?
        .into_iter()
        .filter(|entry| proto == Proto::Udp || entry.state == TCP_LISTEN)
        .filter(|entry| covers(entry.local.ip(), addr.ip()))
        .collect())
}

/// Whether a socket bound at `bound` receives what is sent to `target`.
fn covers(bound: IpAddr, target: IpAddr) -> bool {
    if bound == target || bound.is_unspecified() && bound.is_ipv4() == target.is_ipv4() {
        return true;
    }
    // A dual-stack `::` socket takes IPv4 too; an IPv4-mapped address is the IPv4 one.
    match bound {
        IpAddr::V6(v6) if v6.is_unspecified() => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4) == Some(target),
        IpAddr::V4(_) => false,
    }
}

/// Every socket of `proto` that listens (TCP) or is bound (UDP), for telling a
/// user where a program listens when it is not where it should.
pub fn listening_sockets(proto: Proto) -> std::io::Result<Vec<SocketEntry>> {
    let mut found = Vec::new();
    for file in table_files(proto) {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        found.extend(
            text.lines()
                .skip(1)
                .filter_map(parse_line)
                .filter(|entry| proto == Proto::Udp || entry.state == TCP_LISTEN),
        );
    }
    Ok(found)
}

/// The table entry of the connection whose local end is `local` and remote end is
/// `remote`, if the kernel lists it.
pub fn connection(
    proto: Proto,
    local: SocketAddr,
    remote: SocketAddr,
) -> std::io::Result<Option<SocketEntry>> {
    Ok(sockets_on_port(proto, local.port())?
        .into_iter()
        .find(|entry| same_addr(entry.local, local) && same_addr(entry.remote, remote)))
}

/// The two ends of a connection on this machine: our socket (`local` -> `remote`)
/// and the peer's (`remote` -> `local`; for UDP also the peer's unconnected socket
/// bound at `remote`). Either is `None` when the table does not list it (closed).
pub fn pair(
    proto: Proto,
    local: SocketAddr,
    remote: SocketAddr,
) -> std::io::Result<(Option<SocketEntry>, Option<SocketEntry>)> {
    // The table is read a page at a time, and an entry can be skipped while
    // other sockets come and go between two pages (a busy machine, a test suite
    // in parallel). Our own TCP socket is open, so a table without it was such a
    // read: it is read again, a few times at most (a socket the peer reset is
    // really gone). Taken as it was, a skipped pair would say both queues are
    // empty, and `await_read` would end early.
    let mut read = pair_once(proto, local, remote)?;
    for _ in 1..PAIR_READS {
        if proto != Proto::Tcp || read.0.is_some() {
            break;
        }
        read = pair_once(proto, local, remote)?;
    }
    Ok(read)
}

/// How many times [`pair`] reads the table for a TCP socket it does not find.
const PAIR_READS: usize = 3;

/// One read of the table for [`pair`].
fn pair_once(
    proto: Proto,
    local: SocketAddr,
    remote: SocketAddr,
) -> std::io::Result<(Option<SocketEntry>, Option<SocketEntry>)> {
    let needle = format!(":{:04X} ", local.port());
    let mut ours = None;
    let mut theirs = None;
    for file in table_files(proto) {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in text
            .lines()
            .skip(1)
            .filter(|line| line.contains(&needle))
            .filter_map(parse_line)
        {
            if same_addr(entry.local, local) && same_addr(entry.remote, remote) {
                ours = Some(entry);
            } else if same_addr(entry.local, remote) && same_addr(entry.remote, local) {
                theirs = Some(entry);
            }
        }
        if proto == Proto::Udp && theirs.is_none() {
            // An unconnected UDP server lists no remote address.
            theirs = text
                .lines()
                .skip(1)
                .filter_map(parse_line)
                .find(|e| same_addr(e.local, remote) && e.remote.port() == 0);
        }
    }
    Ok((ours, theirs))
}

/// Equal addresses, counting an IPv4-mapped IPv6 address as its IPv4 one (a
/// dual-stack socket lists IPv4 peers that way).
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    let plain = |addr: SocketAddr| match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    };
    plain(a) == plain(b)
}

/// Parses one line of a `/proc/net/{tcp,udp}{,6}` table.
pub fn parse_line(line: &str) -> Option<SocketEntry> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let (tx, rx) = fields.next()?.split_once(':')?;
    let tx_queue = u64::from_str_radix(tx, 16).ok()?;
    let rx_queue = u64::from_str_radix(rx, 16).ok()?;
    // tr:tm->when, retrnsmt, uid, timeout, then the inode.
    let inode = fields.nth(4)?.parse().ok()?;
    Some(SocketEntry {
        local,
        remote,
        state,
        tx_queue,
        rx_queue,
        inode,
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints
/// each 32-bit word of the address as a number in host byte order, so the word's
/// native-endian bytes are the address's bytes; the port is printed as a number.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Which of `pids` hold a socket with one of `inodes`, by the `socket:[INODE]`
/// links in `/proc/PID/fd`. Processes that vanished or that we may not look into
/// are skipped.
pub fn owners(pids: impl IntoIterator<Item = u32>, inodes: &HashSet<u64>) -> HashMap<u64, u32> {
    let mut found = HashMap::new();
    if inodes.is_empty() {
        return found;
    }
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(&target.to_string_lossy()) else {
                continue;
            };
            if inodes.contains(&inode) {
                found.entry(inode).or_insert(pid);
            }
        }
        if found.len() == inodes.len() {
            break;
        }
    }
    found
}

/// The inode of a `socket:[12345]` descriptor link.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_line_is_parsed() {
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0";
        let entry = parse_line(line).unwrap();
        assert_eq!(entry.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(entry.remote, "0.0.0.0:0".parse().unwrap());
        assert_eq!(entry.state, TCP_LISTEN);
        assert_eq!(entry.inode, 123456);
        let line = "   5: 0100007F:A1B2 0100007F:1F90 01 0000000A:00000014 00:00000000 00000000  1000        0 99 1";
        let entry = parse_line(line).unwrap();
        assert_eq!((entry.tx_queue, entry.rx_queue), (10, 20));
    }

    #[test]
    fn an_ipv6_loopback_address_is_parsed() {
        let line = "   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 77 1";
        let entry = parse_line(line).unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(entry.local, "[::1]:80".parse().unwrap());
        }
        assert_eq!(entry.inode, 77);
    }

    #[test]
    fn wildcards_cover_loopback_and_dual_stack_covers_ipv4() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(covers("0.0.0.0".parse().unwrap(), lo));
        assert!(covers("::".parse().unwrap(), lo));
        assert!(covers("::ffff:127.0.0.1".parse().unwrap(), lo));
        assert!(!covers("127.0.0.2".parse().unwrap(), lo));
        assert!(!covers("0.0.0.0".parse().unwrap(), "::1".parse().unwrap()));
    }

    #[test]
    fn a_listening_socket_of_this_process_is_found_with_its_owner() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = holders(Proto::Tcp, addr).unwrap();
        assert_eq!(held.len(), 1, "{held:?}");
        let inodes: HashSet<u64> = held.iter().map(|e| e.inode).collect();
        let owners = owners([std::process::id()], &inodes);
        assert_eq!(owners.get(&held[0].inode), Some(&std::process::id()));
    }

    #[test]
    fn the_peer_receive_queue_counts_unread_bytes() {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"twelve bytes").unwrap();
        let (local, peer) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
        // Loopback delivers within the write call's softirq, but allow the table a
        // moment; this is a deadline, not a timing assertion.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let entry = connection(Proto::Tcp, local, peer).unwrap().unwrap();
            if entry.rx_queue == 12 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{entry:?}");
            std::thread::yield_now();
        }
    }
}
