//! The echo server: the "hello world" of socket programming, and the simplest peer
//! that makes splitting and coalescing visible.

use bytes::Bytes;
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
