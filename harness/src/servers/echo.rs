//! The echo server: the "hello world" of socket programming, and the simplest peer
//! that makes splitting and coalescing visible.

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::{ServerContext, IO_BUFFER};
use crate::event::EventKind;
use crate::net::Recorder;

/// Echoes until the peer closes. The peer's half-close is passed on, so a client that
/// shuts down its write side gets an EOF after the last echoed byte.
pub async fn serve_tcp(
    mut stream: TcpStream,
    recorder: Recorder,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; IO_BUFFER];
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            n = recorder.read(&mut stream, &mut buf) => n?,
        };
        if n == 0 {
            use tokio::io::AsyncWriteExt;
            stream.shutdown().await?;
            recorder.record(EventKind::Shutdown {
                conn: recorder.conn,
                how: crate::event::ShutdownHow::Write,
            });
            return Ok(());
        }
        recorder
            .write_all(&mut stream, &Bytes::copy_from_slice(&buf[..n]))
            .await?;
    }
}

/// UDP echo (or discard when `reply` is false): one datagram in, the same datagram
/// back to its sender.
pub async fn serve_udp(
    socket: UdpSocket,
    context: ServerContext,
    shutdown: CancellationToken,
    reply: bool,
) -> std::io::Result<()> {
    let conn = context.log.next_conn_id();
    let local = socket.local_addr()?;
    let actor: Arc<str> = Arc::clone(&context.actor);
    context
        .log
        .record(&actor, EventKind::UdpBound { conn, local });
    // 64 KiB holds the largest possible UDP payload, so nothing is truncated.
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            received = socket.recv_from(&mut buf) => match received {
                Ok(pair) => pair,
                // An ICMP error from an earlier reply surfaces here on Linux; it
                // concerns that one peer, not the server.
                Err(_) => continue,
            },
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        context.log.record(
            &actor,
            EventKind::DatagramReceived {
                conn,
                from,
                to: local,
                data: data.clone(),
            },
        );
        if reply && socket.send_to(&data, from).await.is_ok() {
            context.log.record(
                &actor,
                EventKind::DatagramSent {
                    conn,
                    from: local,
                    to: from,
                    data,
                },
            );
        }
    }
}
