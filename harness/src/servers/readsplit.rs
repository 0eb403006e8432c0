//! The readsplit server makes TCP's stream semantics visible: it answers each read
//! call with exactly the bytes that call returned, behind a length prefix.
//!
//! A client that sends "hello" then "world" and gets back one frame "helloworld"
//! has watched two sends coalesce into one read; two frames mean they did not.

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::options::{
    framing, limit, max_frame, OptionSpec, Unit, LENGTH_INCLUDES_HEADER, MAX_CONNECTIONS,
    MAX_READ_SIZE, PREFIX_FRAMINGS,
};
use super::{BuiltinConfig, IO_BUFFER};
use crate::net::Recorder;

fn set_read_size(config: &mut BuiltinConfig, size: usize) {
    config.read_size = size;
}

pub const OPTIONS: &[OptionSpec<BuiltinConfig>] = &[
    limit(
        "read_size",
        1,
        MAX_READ_SIZE,
        IO_BUFFER,
        Unit::Bytes,
        "size of each read call",
        set_read_size,
    ),
    framing(
        PREFIX_FRAMINGS,
        "u32be",
        "readsplit reports each read behind a length prefix",
        "the length prefix of each report",
    ),
    max_frame("largest frame payload"),
    LENGTH_INCLUDES_HEADER,
    MAX_CONNECTIONS,
];

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
