//! The framed echo server: decodes frames in one framing and sends each one
//! back as a frame of the same framing.
//!
//! Where the plain echo server hands back bytes however the stream split
//! them, this one answers message by message: two frames that arrive glued in
//! one segment come back as two frames, and a frame split across many reads
//! comes back whole. A json-header frame is echoed with its header (re-encoded
//! as compact JSON with sorted keys) and its body.
//!
//! A framing error (a length over `max_frame`, a negative `i32` length, a bad
//! json-header header, the stream ending inside a frame) closes the connection
//! in order: everything echoed so far, then an end of stream. An over-long
//! line (`line`, `crlf`) is skipped and the lines after it are echoed.

use std::io;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::conn::{FramedConn, Next};
use super::options::{
    framing, max_frame, max_header, max_line_default, OptionSpec, LENGTH_INCLUDES_HEADER,
    MAX_CONNECTIONS,
};
use super::BuiltinConfig;
use crate::framing::FramingKind;
use crate::net::Recorder;

pub const OPTIONS: &[OptionSpec<BuiltinConfig>] = &[
    framing(
        FramingKind::NAMES,
        "u32be",
        "not a framing this server knows",
        "the framing of the frames echoed",
    ),
    max_frame("largest payload (for json-header: largest body)"),
    max_line_default("largest line, for line and crlf"),
    max_header("largest JSON header, for json-header"),
    LENGTH_INCLUDES_HEADER,
    MAX_CONNECTIONS,
];

pub async fn serve_tcp(
    stream: TcpStream,
    recorder: Recorder,
    shutdown: CancellationToken,
    config: &BuiltinConfig,
) -> io::Result<()> {
    let framing = &config.framing;
    let mut conn = FramedConn::new(stream, recorder, framing, shutdown);
    let mut out = BytesMut::new();
    loop {
        match conn.next().await? {
            Next::Frame(frame) => {
                let encoded = match &frame.header {
                    Some(header) => framing.encode_json_header(header, &frame.payload, &mut out),
                    None => framing.encode(&frame.payload, &mut out),
                };
                // Only an LF line whose payload ends in CR (sent as "...\r\r\n")
                // decodes into something its own framing cannot encode; it
                // cannot be echoed faithfully, so the connection ends.
                if encoded.is_err() {
                    return conn.close().await;
                }
                if !conn.send(out.split().freeze()).await? {
                    return Ok(());
                }
            }
            Next::Skipped(_) => {}
            Next::Fatal(_) | Next::Eof => return conn.close().await,
            Next::Stopped => return Ok(()),
        }
    }
}
