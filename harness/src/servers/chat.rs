//! The chat server: the socket tutorials' chat room, one line per request.
//!
//! ```text
//!  request        reply to the sender                  to every OTHER logged-in client
//!  iam:NAME       ok:NAME                              -
//!  msg:TEXT       (nothing)                            NAME: TEXT
//!  msg:TEXT       error:log in first with iam:NAME     -   (before iam)
//!  iam:NAME       error:name NAME is taken             -   (another client has it)
//!  iam:bad name   error:name must be 1 to 32 bytes without spaces, colons or control characters
//!  msg:<ctrl>     error:message contains control characters
//!  other          error:unknown request, send iam:NAME or msg:TEXT
//!  not UTF-8      error:not valid UTF-8
//!  too long       error:line longer than max_line (4096 bytes), skipped
//! ```
//!
//! Every line goes out with the framing's terminator (`line`: LF, `crlf`:
//! CRLF); requests may end in CRLF with `line` too. A client may send `iam:`
//! again to change its name. There are no join or leave notices, so what a
//! client receives depends only on what the others send, which keeps chat
//! scenarios deterministic once signals order the sends.
//!
//! Each client's outgoing messages wait in a queue of `queue` lines (default
//! 128). A client that does not read while others talk fills it and is
//! disconnected, rather than making the server buffer without bound or
//! slowing the room down to its pace.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use super::conn::{shutdown_recorded, write_recorded, FramedConn, Next};
use super::options::{framing, limit, max_line, OptionSpec, Unit, LINE_FRAMINGS, MAX_CONNECTIONS};
use super::BuiltinConfig;
use crate::framing::FramingConfig;
use crate::net::Recorder;

/// The longest error reply the server sends, with margin; the outgoing line
/// limit never drops below it.
const MIN_REPLY_LINE: usize = 256;

/// Default `max_line` for chat: 4 KiB.
pub const DEFAULT_CHAT_MAX_LINE: usize = 4096;
/// Default `queue`, in lines.
pub const DEFAULT_QUEUE: usize = 128;
/// The longest name, in bytes.
pub const MAX_NAME: usize = 32;
/// How long a message waits for room in a recipient's full queue before that
/// recipient is disconnected as too slow.
pub const SLOW_READER_GRACE: Duration = Duration::from_secs(1);

fn set_queue(config: &mut BuiltinConfig, lines: usize) {
    config.queue = lines;
}

pub const OPTIONS: &[OptionSpec<BuiltinConfig>] = &[
    framing(
        LINE_FRAMINGS,
        "line",
        "chat requests and replies are lines",
        "`line` or `crlf`",
    ),
    max_line(DEFAULT_CHAT_MAX_LINE, "largest request line"),
    limit(
        "queue",
        1,
        100_000,
        DEFAULT_QUEUE,
        Unit::Number,
        "lines queued per client before it counts as too slow",
        set_queue,
    ),
    MAX_CONNECTIONS,
];

struct Member {
    name: Option<String>,
    outbox: mpsc::Sender<Bytes>,
    kick: CancellationToken,
}

/// The clients of one chat server instance.
pub struct Room {
    next_id: u64,
    members: HashMap<u64, Member>,
}

pub type SharedRoom = Arc<Mutex<Room>>;

fn lock(room: &Mutex<Room>) -> MutexGuard<'_, Room> {
    room.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Room {
    pub fn shared() -> SharedRoom {
        Arc::new(Mutex::new(Room {
            next_id: 0,
            members: HashMap::new(),
        }))
    }

    fn join(&mut self, outbox: mpsc::Sender<Bytes>, kick: CancellationToken) -> u64 {
        self.next_id += 1;
        self.members.insert(
            self.next_id,
            Member {
                name: None,
                outbox,
                kick,
            },
        );
        self.next_id
    }

    fn login(&mut self, id: u64, name: &str) -> Result<(), String> {
        let taken = self
            .members
            .iter()
            .any(|(other, m)| *other != id && m.name.as_deref() == Some(name));
        if taken {
            return Err(format!("error:name {name} is taken"));
        }
        if let Some(member) = self.members.get_mut(&id) {
            member.name = Some(name.to_owned());
        }
        Ok(())
    }

    /// The logged-in members other than `from`.
    fn recipients(&self, from: u64) -> Vec<(u64, mpsc::Sender<Bytes>, CancellationToken)> {
        self.members
            .iter()
            .filter(|(id, m)| **id != from && m.name.is_some())
            .map(|(id, m)| (*id, m.outbox.clone(), m.kick.clone()))
            .collect()
    }
}

/// Queues `line` for every logged-in client but `from`. A client whose queue
/// stays full for [`SLOW_READER_GRACE`] is disconnected; until then the
/// sender waits, which slows a fast talker down to its readers' pace.
async fn deliver(room: &Mutex<Room>, from: u64, line: Bytes) {
    let recipients = lock(room).recipients(from);
    for (id, outbox, kick) in recipients {
        let delivered = match outbox.try_send(line.clone()) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            Err(TrySendError::Full(line)) => {
                matches!(
                    tokio::time::timeout(SLOW_READER_GRACE, outbox.send(line)).await,
                    Ok(Ok(()))
                )
            }
        };
        if !delivered {
            kick.cancel();
            lock(room).members.remove(&id);
        }
    }
}

/// Removes a client from the room however its connection ends.
struct Leave<'a> {
    room: &'a Mutex<Room>,
    id: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        lock(self.room).members.remove(&self.id);
    }
}

/// Whether `name` may be a chat name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
}

/// Handles one request line from client `id`: the reply to send it, if any.
/// Messages for the others are encoded with `framing` and queued here.
async fn handle(
    room: &Mutex<Room>,
    id: u64,
    line: &[u8],
    framing: &FramingConfig,
) -> Option<String> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Some("error:not valid UTF-8".to_owned());
    };
    if let Some(name) = line.strip_prefix("iam:") {
        if !valid_name(name) {
            return Some(format!(
                "error:name must be 1 to {MAX_NAME} bytes without spaces, colons or control characters"
            ));
        }
        return Some(match lock(room).login(id, name) {
            Ok(()) => format!("ok:{name}"),
            Err(e) => e,
        });
    }
    if let Some(text) = line.strip_prefix("msg:") {
        if text.chars().any(|c| c.is_control() && c != '\t') {
            return Some("error:message contains control characters".to_owned());
        }
        let name = lock(room).members.get(&id).and_then(|m| m.name.clone());
        let Some(name) = name else {
            return Some("error:log in first with iam:NAME".to_owned());
        };
        let mut out = BytesMut::new();
        if framing
            .encode(format!("{name}: {text}").as_bytes(), &mut out)
            .is_err()
        {
            return Some("error:message cannot be sent as one line".to_owned());
        }
        deliver(room, id, out.freeze()).await;
        return None;
    }
    Some("error:unknown request, send iam:NAME or msg:TEXT".to_owned())
}

pub async fn serve_tcp(
    stream: TcpStream,
    recorder: Recorder,
    shutdown: CancellationToken,
    config: &BuiltinConfig,
    room: &SharedRoom,
) -> io::Result<()> {
    // Cancelled when the server stops, or when this client is disconnected.
    let kick = shutdown.child_token();
    let (outbox, inbox) = mpsc::channel::<Bytes>(config.queue.max(1));
    let id = lock(room).join(outbox.clone(), kick.clone());
    let _leave = Leave { room, id };
    // Requests and replies travel separately: a client's replies and the
    // others' messages keep flowing out while its requests are handled.
    let (read_half, mut write_half) = stream.into_split();
    let conn = FramedConn::new(read_half, recorder.clone(), &config.framing, kick.clone());
    let reading = read_requests(conn, outbox, room, id, config, kick.clone());
    let writing = write_lines(&recorder, &mut write_half, inbox, kick.clone());
    let ((read, mut conn), written) = tokio::join!(reading, writing);
    match (read, written) {
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(true), Ok(true)) => {
            shutdown_recorded(&recorder, &mut write_half).await;
            conn.linger().await;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Reads requests until the client is done (`Ok(true)`) or the connection is
/// stopped (`Ok(false)`), queueing each reply behind what is already queued
/// for the client. Then leaves the room, so the writer ends once the queue
/// is empty.
async fn read_requests(
    mut conn: FramedConn<OwnedReadHalf>,
    outbox: mpsc::Sender<Bytes>,
    room: &Mutex<Room>,
    id: u64,
    config: &BuiltinConfig,
    kick: CancellationToken,
) -> (io::Result<bool>, FramedConn<OwnedReadHalf>) {
    // Outgoing lines carry a name and ": " that the request did not.
    let outgoing = FramingConfig {
        // Room for `NAME: ` before a full-length message, and never less than the
        // server's own error replies, whatever small `max_line` a scenario sets.
        max_line: config
            .framing
            .max_line
            .saturating_add(MAX_NAME + 2)
            .max(MIN_REPLY_LINE),
        ..config.framing.clone()
    };
    let result = loop {
        let reply = match conn.next().await {
            Err(e) => {
                kick.cancel();
                break Err(e);
            }
            Ok(Next::Frame(frame)) => match handle(room, id, &frame.payload, &outgoing).await {
                Some(reply) => reply,
                None => continue,
            },
            Ok(Next::Skipped(_)) => format!(
                "error:line longer than max_line ({} bytes), skipped",
                config.framing.max_line
            ),
            Ok(Next::Fatal(_) | Next::Eof) => break Ok(true),
            Ok(Next::Stopped) => break Ok(false),
        };
        let mut out = BytesMut::new();
        if outgoing.encode(reply.as_bytes(), &mut out).is_err() {
            break Ok(true);
        }
        tokio::select! {
            _ = kick.cancelled() => break Ok(false),
            queued = outbox.send(out.freeze()) => if queued.is_err() {
                break Ok(false);
            },
        }
    };
    lock(room).members.remove(&id);
    drop(outbox);
    (result, conn)
}

/// Writes queued lines to the client until the queue is closed and empty
/// (`Ok(true)`) or the connection is stopped (`Ok(false)`).
async fn write_lines(
    recorder: &Recorder,
    writer: &mut OwnedWriteHalf,
    mut inbox: mpsc::Receiver<Bytes>,
    kick: CancellationToken,
) -> io::Result<bool> {
    loop {
        let line = tokio::select! {
            _ = kick.cancelled() => return Ok(false),
            line = inbox.recv() => line,
        };
        let Some(line) = line else {
            return Ok(true);
        };
        let written = tokio::select! {
            _ = kick.cancelled() => return Ok(false),
            written = write_recorded(recorder, writer, &line) => written,
        };
        if let Err(e) = written {
            // The reader stops too.
            kick.cancel();
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::FramingKind;

    fn member(room: &Mutex<Room>, queue: usize) -> (u64, mpsc::Receiver<Bytes>, CancellationToken) {
        let (tx, rx) = mpsc::channel(queue);
        let kick = CancellationToken::new();
        let id = lock(room).join(tx, kick.clone());
        (id, rx, kick)
    }

    async fn say(room: &Mutex<Room>, id: u64, line: &str) -> Option<String> {
        handle(
            room,
            id,
            line.as_bytes(),
            &FramingConfig::new(FramingKind::Line),
        )
        .await
    }

    #[test]
    fn names() {
        assert!(valid_name("alice"));
        assert!(valid_name("Zoë-2"));
        assert!(valid_name(&"x".repeat(MAX_NAME)));
        for bad in [
            "",
            "a b",
            "a:b",
            "tab\t",
            "nul\0",
            &"x".repeat(MAX_NAME + 1),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn messages_reach_every_other_logged_in_client() {
        let room = Mutex::new(Room {
            next_id: 0,
            members: HashMap::new(),
        });
        let framing = FramingConfig::new(FramingKind::Line);
        let (alice, mut alice_rx, _) = member(&room, 4);
        let (bob, mut bob_rx, _) = member(&room, 4);
        let (_anon, mut anon_rx, _) = member(&room, 4);

        assert_eq!(
            say(&room, alice, "msg:hi").await.as_deref(),
            Some("error:log in first with iam:NAME")
        );
        assert_eq!(
            say(&room, alice, "iam:alice").await.as_deref(),
            Some("ok:alice")
        );
        assert_eq!(
            say(&room, bob, "iam:alice").await.as_deref(),
            Some("error:name alice is taken")
        );
        assert_eq!(say(&room, bob, "iam:bob").await.as_deref(), Some("ok:bob"));
        assert_eq!(
            say(&room, alice, "iam:alice").await.as_deref(),
            Some("ok:alice"),
            "same name again"
        );
        assert_eq!(say(&room, alice, "msg:hello bob").await, None);
        assert_eq!(&bob_rx.try_recv().unwrap()[..], b"alice: hello bob\n");
        assert!(alice_rx.try_recv().is_err(), "the sender gets no copy");
        assert!(
            anon_rx.try_recv().is_err(),
            "not logged in, not in the room"
        );
        assert_eq!(
            say(&room, bob, "nick:x").await.as_deref(),
            Some("error:unknown request, send iam:NAME or msg:TEXT")
        );
        assert_eq!(
            say(&room, bob, "msg:a\u{1b}[2J").await.as_deref(),
            Some("error:message contains control characters")
        );
        assert_eq!(
            handle(&room, bob, b"msg:\xff", &framing).await.as_deref(),
            Some("error:not valid UTF-8")
        );
        assert!(say(&room, bob, "iam:has space")
            .await
            .unwrap()
            .starts_with("error:name must be"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_whose_queue_stays_full_is_disconnected() {
        let room = Mutex::new(Room {
            next_id: 0,
            members: HashMap::new(),
        });
        let framing = FramingConfig::new(FramingKind::Line);
        let (talker, _rx, _) = member(&room, 4);
        let (slow, _slow_rx, slow_kick) = member(&room, 2);
        handle(&room, talker, b"iam:talker", &framing).await;
        handle(&room, slow, b"iam:slow", &framing).await;
        for _ in 0..2 {
            handle(&room, talker, b"msg:x", &framing).await;
        }
        assert!(!slow_kick.is_cancelled());
        // The third message waits SLOW_READER_GRACE for room, then gives up.
        let started = tokio::time::Instant::now();
        handle(&room, talker, b"msg:x", &framing).await;
        assert_eq!(started.elapsed(), SLOW_READER_GRACE);
        assert!(slow_kick.is_cancelled());
        assert!(!lock(&room).members.contains_key(&slow));
    }
}
