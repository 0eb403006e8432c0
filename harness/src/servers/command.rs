//! The command server: the socket tutorials' "remote command" server, made
//! safe. The tutorials run whatever the client sends in a shell and send the
//! output back; this one knows four built-in commands and nothing else, and
//! never starts a process.
//!
//! ```text
//!  request (one line, LF; a CR before it is dropped)   reply payload
//!  echo TEXT                                           TEXT
//!  repeat N TEXT                                       TEXT, N times
//!  bytes N                                             N bytes of 0123456789 0123...
//!  help                                                commands: echo TEXT | repeat N TEXT | bytes N | help
//!  anything else                                       error: ...
//! ```
//!
//! Each reply is one frame of `framing` (default `i32le`, the tutorials' fix:
//! `struct.pack('i', len(reply))` before the reply). With `framing = "none"`
//! replies are written raw, with nothing to tell where one ends, which is the
//! tutorials' sticky-packet bug: a client that reads a large reply with one
//! `recv(1024)` leaves the rest in the stream, and it comes out as the "reply"
//! to its next command.
//!
//! Replies are bounded by `max_reply` (default 16 MiB): a connection holds at
//! most one reply (twice that for the moment it is being framed).

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::conn::{FramedConn, Next};
use super::options::{
    framing, limit, max_line_default, OptionSpec, Unit, LENGTH_INCLUDES_HEADER, MAX_CONNECTIONS,
    MAX_LIMIT,
};
use super::BuiltinConfig;
use crate::framing::{FramingConfig, FramingKind};
use crate::net::Recorder;

/// Default `max_reply`: 16 MiB.
pub const DEFAULT_MAX_REPLY: usize = 16 * 1024 * 1024;

/// The replies' framings: every framing, or `none`.
const REPLY_FRAMINGS: &[&str] = &[
    "u8",
    "u16be",
    "u16le",
    "u32be",
    "u32le",
    "i32le",
    "i32be",
    "u64be",
    "u64le",
    "varint",
    "line",
    "crlf",
    "json-header",
    "none",
];

fn set_max_reply(config: &mut BuiltinConfig, n: usize) {
    config.max_reply = n;
}

pub const OPTIONS: &[OptionSpec<BuiltinConfig>] = &[
    framing(
        REPLY_FRAMINGS,
        "i32le",
        "not a framing this server knows",
        "the replies' framing, or \"none\" for raw replies",
    ),
    max_line_default("largest request line"),
    limit(
        "max_reply",
        0,
        MAX_LIMIT,
        DEFAULT_MAX_REPLY,
        Unit::Bytes,
        "largest reply `bytes N` or `repeat N TEXT` may produce",
        set_max_reply,
    ),
    LENGTH_INCLUDES_HEADER,
    MAX_CONNECTIONS,
];

/// The reply to `help`.
pub const HELP: &str = "commands: echo TEXT | repeat N TEXT | bytes N | help";

/// The pattern `bytes N` repeats.
const PATTERN: &[u8; 10] = b"0123456789";

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Echo(&'a str),
    Repeat { times: usize, text: &'a str },
    Bytes(usize),
    Help,
}

/// Parses one request line. `Err` is the message of the error reply (without
/// the `error: ` prefix).
pub fn parse(line: &[u8], max_reply: usize) -> Result<Command<'_>, String> {
    let line =
        std::str::from_utf8(line).map_err(|_| "the request is not valid UTF-8".to_owned())?;
    if line.is_empty() {
        return Err("empty request (try `help`)".to_owned());
    }
    let (name, rest) = match line.split_once(' ') {
        Some((name, rest)) => (name, Some(rest)),
        None => (line, None),
    };
    match name {
        "echo" => Ok(Command::Echo(rest.unwrap_or(""))),
        "help" => Ok(Command::Help),
        "bytes" => {
            let n = number(rest.unwrap_or(""), "bytes N")?;
            if n > max_reply {
                return Err(format!(
                    "bytes {n} is more than max_reply ({max_reply} bytes)"
                ));
            }
            Ok(Command::Bytes(n))
        }
        "repeat" => {
            let (n, text) = rest
                .and_then(|rest| rest.split_once(' '))
                .ok_or_else(|| "usage: repeat N TEXT".to_owned())?;
            let times = number(n, "repeat N TEXT")?;
            match times.checked_mul(text.len()) {
                Some(total) if total <= max_reply => Ok(Command::Repeat { times, text }),
                _ => Err(format!(
                    "repeat {times} would reply more than max_reply ({max_reply} bytes)"
                )),
            }
        }
        other => Err(format!("unknown command `{}` (try `help`)", shorten(other))),
    }
}

/// A count: ASCII digits only, at most 20 of them.
fn number(text: &str, usage: &str) -> Result<usize, String> {
    if text.is_empty() {
        return Err(format!("usage: {usage}"));
    }
    if text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{}` is not a whole number (usage: {usage})",
            shorten(text)
        ));
    }
    text.parse::<usize>()
        .map_err(|_| format!("{text} is too large (usage: {usage})"))
}

/// At most 40 characters of something the client sent, for an error message.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// The reply payload of a command.
pub fn run(command: &Command<'_>) -> Vec<u8> {
    match command {
        Command::Echo(text) => text.as_bytes().to_vec(),
        Command::Repeat { times, text } => text.repeat(*times).into_bytes(),
        Command::Bytes(n) => PATTERN.iter().copied().cycle().take(*n).collect(),
        Command::Help => HELP.as_bytes().to_vec(),
    }
}

/// The reply payload for one request line: the command's output, or `error: ...`.
pub fn respond(line: &[u8], max_reply: usize) -> Vec<u8> {
    match parse(line, max_reply) {
        Ok(command) => run(&command),
        Err(message) => format!("error: {message}").into_bytes(),
    }
}

pub async fn serve_tcp(
    stream: TcpStream,
    recorder: Recorder,
    shutdown: CancellationToken,
    config: &BuiltinConfig,
) -> io::Result<()> {
    // Requests are always lines; `framing` says how replies are framed.
    let requests = FramingConfig {
        max_line: config.framing.max_line,
        ..FramingConfig::new(FramingKind::Line)
    };
    let replies = (!config.raw_replies).then(|| FramingConfig {
        max_frame: config.max_reply.max(config.framing.max_frame),
        max_line: config.max_reply.max(config.framing.max_line),
        ..config.framing.clone()
    });
    let mut conn = FramedConn::new(stream, recorder, &requests, shutdown);
    loop {
        let payload = match conn.next().await? {
            Next::Frame(frame) => respond(&frame.payload, config.max_reply),
            Next::Skipped(_) => format!(
                "error: request line longer than max_line ({} bytes), skipped",
                requests.max_line
            )
            .into_bytes(),
            Next::Fatal(_) | Next::Eof => return conn.close().await,
            Next::Stopped => return Ok(()),
        };
        let Some(framing) = &replies else {
            if !conn.send(Bytes::from(payload)).await? {
                return Ok(());
            }
            continue;
        };
        let mut out = BytesMut::new();
        let encoded = framing.encode(&payload, &mut out);
        // Only the frame is held while it is sent.
        drop(payload);
        if let Err(e) = encoded {
            // e.g. a `bytes 300` reply in u8 framing: say so, in a frame that fits.
            let message = format!("error: the reply cannot be framed: {e}");
            if framing.encode(message.as_bytes(), &mut out).is_err()
                && framing
                    .encode(b"error: the reply cannot be framed", &mut out)
                    .is_err()
            {
                return conn.close().await;
            }
        }
        if !conn.send(out.freeze()).await? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &str) -> String {
        String::from_utf8(respond(line.as_bytes(), 100)).unwrap()
    }

    #[test]
    fn echo_replies_the_rest_of_the_line() {
        assert_eq!(reply("echo hello world"), "hello world");
        assert_eq!(reply("echo  two spaces"), " two spaces");
        assert_eq!(reply("echo"), "");
    }

    #[test]
    fn repeat_and_bytes_are_bounded() {
        assert_eq!(reply("repeat 3 ab"), "ababab");
        assert_eq!(reply("repeat 0 ab"), "");
        assert_eq!(reply("repeat 2 a b"), "a ba b");
        assert_eq!(reply("bytes 12"), "012345678901");
        assert_eq!(reply("bytes 0"), "");
        assert_eq!(reply("bytes 100").len(), 100);
        assert_eq!(
            reply("bytes 101"),
            "error: bytes 101 is more than max_reply (100 bytes)"
        );
        assert_eq!(
            reply("repeat 51 ab"),
            "error: repeat 51 would reply more than max_reply (100 bytes)"
        );
        assert_eq!(
            reply("repeat 18446744073709551615 ab"),
            "error: repeat 18446744073709551615 would reply more than max_reply (100 bytes)"
        );
        assert_eq!(
            reply("bytes 99999999999999999999"),
            "error: 99999999999999999999 is too large (usage: bytes N)"
        );
    }

    #[test]
    fn malformed_requests_get_error_replies() {
        assert_eq!(reply("help"), HELP);
        assert_eq!(reply(""), "error: empty request (try `help`)");
        assert_eq!(reply("ls -la"), "error: unknown command `ls` (try `help`)");
        assert_eq!(
            reply("ECHO hi"),
            "error: unknown command `ECHO` (try `help`)"
        );
        assert_eq!(reply("repeat 3"), "error: usage: repeat N TEXT");
        assert_eq!(
            reply("repeat x y"),
            "error: `x` is not a whole number (usage: repeat N TEXT)"
        );
        assert_eq!(
            reply("bytes -1"),
            "error: `-1` is not a whole number (usage: bytes N)"
        );
        assert_eq!(reply("bytes"), "error: usage: bytes N");
        assert_eq!(reply("repeat  x"), "error: usage: repeat N TEXT");
        assert_eq!(
            String::from_utf8(respond(b"echo \xff", 100)).unwrap(),
            "error: the request is not valid UTF-8"
        );
        let long = format!("{} x", "y".repeat(100));
        assert_eq!(
            reply(&long),
            format!(
                "error: unknown command `{}...` (try `help`)",
                "y".repeat(40)
            )
        );
    }
}
