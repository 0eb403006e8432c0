//! The readsplit server makes TCP's stream semantics visible: it answers each read
//! call with exactly the bytes that call returned, behind a length prefix.
//!
//! A client that sends "hello" then "world" and gets back one frame "helloworld"
//! has watched two sends coalesce into one read; two frames mean they did not.

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::BuiltinConfig;
use crate::net::Recorder;

pub async fn serve_tcp(
    mut stream: TcpStream,
    recorder: Recorder,
    shutdown: CancellationToken,
    config: &BuiltinConfig,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; config.read_size];
    let mut frame = BytesMut::with_capacity(config.read_size + 16);
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            n = recorder.read(&mut stream, &mut buf) => n?,
        };
        if n == 0 {
            return Ok(());
        }
        frame.clear();
        config
            .framing
            .encode(&buf[..n], &mut frame)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        recorder
            .write_all(&mut stream, &frame.split().freeze())
            .await?;
    }
}
