//! The discard server: reads and drops everything, a sink for one-way tests.

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::options::{OptionSpec, MAX_CONNECTIONS};
use super::{BuiltinConfig, IO_BUFFER};
use crate::net::Recorder;

/// Discard takes no options of its own.
pub const OPTIONS: &[OptionSpec<BuiltinConfig>] = &[MAX_CONNECTIONS];

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
            return Ok(());
        }
    }
}
