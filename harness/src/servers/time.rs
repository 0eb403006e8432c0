//! The time server: a strftime-style format in, the formatted time out.
//!
//! ```text
//!  TCP: one line in (LF; a CR before it is dropped), one line out (LF)
//!       %Y-%m-%d %H:%M:%S\n   ->   2024-01-02 03:04:05\n
//!  UDP: one datagram in (one trailing LF or CRLF dropped), one datagram out
//!       (no terminator)
//!  errors: error: the format is not valid UTF-8
//!          error: the format is longer than 256 bytes
//!          error: invalid strftime format
//!          error: cannot format the time with this format   (e.g. %#z, parse-only)
//!          error: the formatted time contains a line break   (TCP, e.g. %n)
//!          error: line longer than max_line (1024 bytes), skipped   (TCP)
//! ```
//!
//! The specifiers are chrono's (`%Y %m %d %H %M %S %j %a %b %s %z %:z %.3f`
//! ...). Without `clock` the time is the real one, in UTC; with
//! `clock = "2024-01-02T03:04:05Z"` every request gets that instant, in that
//! timestamp's offset, so scenarios can check replies exactly. The format is
//! parsed before use and a bad one gets an error reply: nothing a client
//! sends can make the formatter panic.

use std::fmt::Write as _;
use std::io;

use bytes::{Bytes, BytesMut};
use chrono::format::StrftimeItems;
use chrono::{DateTime, FixedOffset, Utc};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::conn::{FramedConn, Next};
use super::options::{framing, max_line, OptionKind, OptionSpec, LINE_FRAMINGS, MAX_CONNECTIONS};
use super::{BuiltinConfig, ServerContext};
use crate::net::Recorder;

/// The longest format accepted, in bytes.
pub const MAX_FORMAT: usize = 256;
/// Default `max_line` for the time server over TCP.
pub const DEFAULT_TIME_MAX_LINE: usize = 1024;

fn set_clock(config: &mut BuiltinConfig, clock: DateTime<FixedOffset>) {
    config.clock = Some(clock);
}

pub const OPTIONS: &[OptionSpec<BuiltinConfig>] = &[
    framing(
        LINE_FRAMINGS,
        "line",
        "time requests and replies are lines (over TCP)",
        "`line` or `crlf` (TCP)",
    ),
    max_line(
        DEFAULT_TIME_MAX_LINE,
        "largest request and reply line (TCP)",
    ),
    OptionSpec {
        key: "clock",
        doc: "a fixed instant, RFC 3339, instead of the real time",
        kind: OptionKind::Timestamp { set: set_clock },
    },
    MAX_CONNECTIONS,
];

/// Formats `now` with a strftime-style `format` from the wire. `Err` is the
/// whole error reply.
pub fn format_time(format: &[u8], now: &DateTime<FixedOffset>) -> Result<String, String> {
    let format = std::str::from_utf8(format)
        .map_err(|_| "error: the format is not valid UTF-8".to_owned())?;
    if format.len() > MAX_FORMAT {
        return Err(format!(
            "error: the format is longer than {MAX_FORMAT} bytes"
        ));
    }
    let items = StrftimeItems::new(format)
        .parse()
        .map_err(|_| "error: invalid strftime format".to_owned())?;
    let mut out = String::new();
    // Formatting into a String reports failure instead of panicking.
    write!(out, "{}", now.format_with_items(items.iter()))
        .map_err(|_| "error: cannot format the time with this format".to_owned())?;
    Ok(out)
}

fn now(config: &BuiltinConfig) -> DateTime<FixedOffset> {
    config.clock.unwrap_or_else(|| Utc::now().fixed_offset())
}

pub async fn serve_tcp(
    stream: TcpStream,
    recorder: Recorder,
    shutdown: CancellationToken,
    config: &BuiltinConfig,
) -> io::Result<()> {
    let framing = &config.framing;
    let mut conn = FramedConn::new(stream, recorder, framing, shutdown);
    loop {
        let reply = match conn.next().await? {
            Next::Frame(frame) => match format_time(&frame.payload, &now(config)) {
                Ok(text) if text.contains(['\n', '\r']) => {
                    "error: the formatted time contains a line break".to_owned()
                }
                Ok(text) => text,
                Err(error) => error,
            },
            Next::Skipped(_) => format!(
                "error: line longer than max_line ({} bytes), skipped",
                framing.max_line
            ),
            Next::Fatal(_) | Next::Eof => return conn.close().await,
            Next::Stopped => return Ok(()),
        };
        let mut out = BytesMut::new();
        if framing.encode(reply.as_bytes(), &mut out).is_err()
            && framing
                .encode(b"error: the reply is too long", &mut out)
                .is_err()
        {
            return conn.close().await;
        }
        if !conn.send(out.freeze()).await? {
            return Ok(());
        }
    }
}

/// One datagram in, one datagram out, to its sender.
pub async fn serve_udp(
    socket: UdpSocket,
    context: ServerContext,
    shutdown: CancellationToken,
    config: &BuiltinConfig,
) -> io::Result<()> {
    super::serve_datagrams(socket, context, shutdown, |data| {
        let format = data
            .strip_suffix(b"\r\n")
            .or_else(|| data.strip_suffix(b"\n"))
            .unwrap_or(data);
        Some(Bytes::from(
            format_time(format, &now(config))
                .unwrap_or_else(|error| error)
                .into_bytes(),
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z").unwrap()
    }

    fn fmt(format: &str) -> Result<String, String> {
        format_time(format.as_bytes(), &clock())
    }

    #[test]
    fn formats_the_fixed_clock() {
        assert_eq!(fmt("%Y-%m-%d %H:%M:%S").unwrap(), "2024-01-02 03:04:05");
        assert_eq!(fmt("%a %b %e %j").unwrap(), "Tue Jan  2 002");
        assert_eq!(fmt("%s").unwrap(), "1704164645");
        assert_eq!(fmt("%:z").unwrap(), "+00:00");
        assert_eq!(fmt("literal %% only").unwrap(), "literal % only");
        assert_eq!(fmt("").unwrap(), "");
        let offset = DateTime::parse_from_rfc3339("2024-01-02T03:04:05+09:30").unwrap();
        assert_eq!(format_time(b"%H:%M %z", &offset).unwrap(), "03:04 +0930");
    }

    #[test]
    fn bad_formats_are_errors_not_panics() {
        for bad in ["%", "%Q", "abc %", "%E", "%.", "%:", "%3", "%-"] {
            assert_eq!(
                fmt(bad),
                Err("error: invalid strftime format".to_owned()),
                "{bad:?}"
            );
        }
        // `%#z` parses (it is a parsing-only specifier) but cannot be
        // formatted: `to_string()` would panic here.
        assert_eq!(
            fmt("%#z"),
            Err("error: cannot format the time with this format".to_owned())
        );
        assert_eq!(
            format_time(b"%Y\xff", &clock()),
            Err("error: the format is not valid UTF-8".to_owned())
        );
        assert_eq!(fmt(&"%Y".repeat(128)).unwrap().len(), 4 * 128);
        assert_eq!(
            fmt(&"x".repeat(MAX_FORMAT + 1)),
            Err("error: the format is longer than 256 bytes".to_owned())
        );
    }

    #[test]
    fn every_specifier_letter_is_safe() {
        // Whatever chrono makes of each `%X`, `%-X`, `%:X`, `%.X` and `%#X`: a
        // reply or an error, never a panic.
        for prefix in ["%", "%-", "%_", "%0", "%:", "%::", "%.", "%.3", "%#", "%3"] {
            for c in (0x20u8..0x7f).map(char::from) {
                let _ = fmt(&format!("{prefix}{c}"));
            }
        }
    }
}
