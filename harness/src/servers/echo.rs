//! The echo server: the "hello world" of socket programming, and the simplest peer
//! that makes splitting and coalescing visible.

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::options::{OptionSpec, MAX_CONNECTIONS};
use super::{BuiltinConfig, IO_BUFFER};
use crate::event::EventKind;
use crate::net::Recorder;

/// Echo takes no options of its own.
pub const OPTIONS: &[OptionSpec<BuiltinConfig>] = &[MAX_CONNECTIONS];

/// Echoes until the peer closes. The peer's half-close is passed on, so a client that
/// shuts down its write side gets an EOF after the last echoed byte.
///
/// The bytes of each read are written back from the read buffer itself, with no
/// second buffer: the read's part is split off and sent, and the buffer is then
/// reclaimed whole for the next read, which needs no allocation while nothing
/// else (such as a recorded event) still holds the bytes sent from it. Every read
/// offers the whole buffer: reading into a shrinking remainder would echo in
/// smaller writes, and small writes behind unacknowledged data wait for Nagle.
pub async fn serve_tcp(
    mut stream: TcpStream,
    recorder: Recorder,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut buf = BytesMut::zeroed(IO_BUFFER);
    loop {
        if buf.len() < IO_BUFFER {
            buf.clear();
            buf.reserve(IO_BUFFER);
            buf.resize(IO_BUFFER, 0);
        }
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
        let read = buf.split_to(n).freeze();
        recorder.write_all(&mut stream, &read).await?;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::event::EventStream;

    /// More than one read buffer's worth, in reads of every size, comes back
    /// byte for byte, then the half-close.
    #[tokio::test]
    async fn echoes_across_buffer_reuse_and_passes_the_half_close_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let log = EventStream::disabled();
            let recorder = Recorder::for_new_connection(&log, Arc::from("echo"));
            serve_tcp(stream, recorder, CancellationToken::new()).await
        });
        let data: Vec<u8> = (0..3 * IO_BUFFER + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut reader, mut writer) = client.into_split();
        let sent = data.clone();
        let writing = tokio::spawn(async move {
            for chunk in sent.chunks(7_777) {
                writer.write_all(chunk).await.unwrap();
            }
            writer.shutdown().await.unwrap();
            writer
        });
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.unwrap();
        assert!(back == data, "the echo differs from what was sent");
        drop(writing.await.unwrap());
        server.await.unwrap().unwrap();
    }
}
