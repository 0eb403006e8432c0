//! The validated, fully resolved form of a scenario file.
//!
//! Everything the runner needs is decided here: defaults are filled in, names are
//! checked, data is loaded into bytes (or, for `file` data, checked and left on disk
//! until its step runs). The runner never has to guess or re-validate.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use super::data::{Data, FileSlice};
use crate::framing::FramingConfig;
use crate::matcher::Match;
pub use crate::programs::placeholders::Template;
use crate::servers::BuiltinConfig;
pub use crate::vocab::{Proto, SocketOptions};

/// A position in the scenario file: byte range plus 1-based line and column of its start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub span: Range<usize>,
    pub line: usize,
    pub column: usize,
}

/// One scenario file, loaded and validated.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file it came from, as given on the command line.
    pub path: PathBuf,
    /// The file's text, kept so failures can quote it.
    pub source: Arc<str>,
    pub name: String,
    pub description: Option<String>,
    /// Deadline for the whole scenario.
    pub timeout: Duration,
    /// Default deadline for every step that waits.
    pub step_timeout: Duration,
    pub tags: Vec<String>,
    /// `group = "NAME"`: scenarios of one group never run at the same time (they
    /// share a fixed port or a file), whatever `-j` says.
    pub group: Option<String>,
    /// `retries = N`: how many more times a failed run is tried; one that then
    /// passes is flaky. `run --retries` overrides it.
    pub retries: Option<usize>,
    /// What to do when a TCP actor's script ends with bytes no step read.
    pub unread: UnreadPolicy,
    /// For each variable some regex captures, the first step that captures it (as
    /// a report names it), for "used before it was captured" failures.
    pub capturers: Arc<std::collections::HashMap<String, String>>,
    /// Servers in file order.
    pub servers: Vec<ServerSpec>,
    /// Client declarations in file order (each may run `count` copies).
    pub clients: Vec<ClientSpec>,
    /// Client programs (`[[clients]]` with `command`), in file order.
    pub programs: Vec<ClientProgram>,
    /// Fault proxies in file order.
    pub proxies: Vec<ProxySpec>,
}

/// A `[proxies.NAME]` table: a proxy between clients and a server that makes the
/// network misbehave, the same way for the same seed.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    pub name: String,
    pub location: Location,
    pub proto: Proto,
    /// Where it forwards: a server, another proxy, or an address.
    pub to: Target,
    /// `None`: a random seed, chosen per run and printed in its report.
    /// `run --seed N` sets every proxy's seed to N.
    pub seed: Option<u64>,
    /// Where it listens; port 0 (the default) is an ephemeral port.
    pub bind: SocketAddr,
    /// Applied in order to the bytes (or datagrams) flowing through.
    pub faults: Vec<crate::proxy::FaultSpec>,
}

/// The top-level `unread` key: what happens when a TCP actor's script ends (or
/// closes its socket) while bytes that no step read have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum UnreadPolicy {
    /// A note on the report, under a passing run too.
    #[default]
    Warn,
    /// The actor fails.
    Fail,
    /// Nothing.
    Ignore,
}

/// A `[servers.NAME]` table.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub name: String,
    pub location: Location,
    pub proto: Proto,
    /// Where to listen; port 0 means an ephemeral port.
    pub bind: SocketAddr,
    pub options: SocketOptions,
    pub kind: ServerKind,
}

/// What a server is.
#[derive(Debug, Clone)]
pub enum ServerKind {
    /// A reference server of wirecheck, run in-process.
    Builtin(BuiltinConfig),
    /// A scripted server: accepts `connections` connections (TCP), each running the
    /// script; a UDP scripted server runs its script once on its bound socket.
    Script { connections: usize, script: Script },
    /// An external server process under test.
    Command(CommandSpec),
    /// A server that is already running.
    Address(SocketAddr),
}

/// An external server started for the scenario.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Program and arguments, with placeholders (`{port}`, `{addr:NAME}`, ...).
    pub argv: Vec<Template>,
    /// Variables added to wirecheck's own environment; values take placeholders.
    pub env: Vec<(String, Template)>,
    /// Working directory, already resolved against the scenario file's folder.
    pub cwd: PathBuf,
    /// How long readiness may take.
    pub ready_timeout: Duration,
    /// A pause after readiness, before the clients start.
    pub ready_delay: Duration,
    /// How wirecheck knows the server is ready for clients.
    pub ready: Readiness,
    /// The exit status the server may end with before the scenario is over.
    pub exit: ExitExpectation,
    /// `max_memory`: the most resident memory (bytes) the program and everything
    /// it started may hold at once while the run goes; more fails the scenario.
    pub max_memory: Option<Checked<u64>>,
}

/// How wirecheck knows a `command` server is ready (`ready = ...`).
#[derive(Debug, Clone)]
pub enum Readiness {
    /// A socket of the started process or a descendant listens on the port (TCP) or
    /// is bound to it (UDP), as the kernel's socket table shows. Nothing connects.
    Listening,
    /// A TCP connect to the port succeeds (the v1 probe; the server sees it).
    Connect,
    /// Ready as soon as it is started.
    Immediately,
    /// A line of its stdout or stderr matches.
    Log(regex::Regex),
    /// Ready after this long.
    Delay(Duration),
}

impl Readiness {
    /// How it is written in a file, for messages.
    pub fn describe(&self) -> String {
        match self {
            Readiness::Listening => "ready = \"listening\"".into(),
            Readiness::Connect => "ready = \"connect\"".into(),
            Readiness::Immediately => "ready = \"none\"".into(),
            Readiness::Log(regex) => format!("ready = {{ log = {:?} }}", regex.as_str()),
            Readiness::Delay(d) => format!(
                "ready = {{ delay = \"{}\" }}",
                crate::duration::format_duration(*d)
            ),
        }
    }
}

/// The exit status a program must end with (`exit = 0`, `exit = "any"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitExpectation {
    /// It must exit on its own with this status (not by a signal).
    Status(i32),
    /// Any way it ends is fine.
    Any,
}

impl ExitExpectation {
    /// Whether `status` is what was expected.
    pub fn accepts(&self, status: &std::process::ExitStatus) -> bool {
        match self {
            ExitExpectation::Any => true,
            ExitExpectation::Status(want) => status.code() == Some(*want),
        }
    }

    /// Whether a server's exit before the scenario is over is allowed: the
    /// expected status (0 by default), or anything with `"any"`.
    pub fn accepts_early(&self, exit: &crate::programs::process::Exit) -> bool {
        match exit.status {
            Some(status) => self.accepts(&status),
            None => *self == ExitExpectation::Any,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ExitExpectation::Any => "any exit status".into(),
            ExitExpectation::Status(code) => format!("exit status {code}"),
        }
    }
}

/// A `[[clients]]` entry with a `command`: a client program under test. It starts
/// once every server is ready and passes when it exits as `exit` says, within the
/// scenario's timeout, with output that matches `stdout` and `stderr`.
#[derive(Debug, Clone)]
pub struct ClientProgram {
    pub name: String,
    pub location: Location,
    /// Copies run at once.
    pub count: usize,
    /// Program and arguments, with placeholders (`{port:NAME}`, ...).
    pub argv: Vec<Template>,
    pub env: Vec<(String, Template)>,
    pub cwd: PathBuf,
    /// Written to its stdin, which is then closed: bytes, or a `{ template }`
    /// made into bytes when the program starts.
    pub stdin: Data,
    pub exit: Checked<ExitExpectation>,
    pub stdout: Option<Checked<OutputMatch>>,
    pub stderr: Option<Checked<OutputMatch>>,
    /// Where `command` is written, for a report about the program as a whole.
    pub command_at: Checked<()>,
    /// `wait = "NAME"`: the program starts once that signal is raised (at most
    /// `step_timeout` later), so its `command`, `env` and `stdin` can use
    /// variables some step captures first.
    pub wait: Option<Checked<String>>,
    /// `signal = "NAME"`: raised once the program exited as expected and its
    /// output matched (and its captures are visible to every actor).
    pub signal: Option<String>,
    /// `max_memory`, as for a `command` server: each copy's own limit.
    pub max_memory: Option<Checked<u64>>,
}

/// A value of the file with where it is written, so a report can point at it.
#[derive(Debug, Clone)]
pub struct Checked<T> {
    pub value: T,
    pub location: Location,
    /// The `key = value` text as written.
    pub text: String,
}

/// A MATCH on a whole output (a client program's `stdout`/`stderr`): the matchers
/// of the steps, judged on the whole buffer.
pub type OutputMatch = Match;

/// A `[[clients]]` entry.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub name: String,
    pub location: Location,
    pub connect: Target,
    pub proto: Proto,
    pub count: usize,
    pub options: SocketOptions,
    pub script: Script,
}

/// Where a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A server declared in the same file, by name.
    Server(String),
    /// A proxy declared in the same file, by name.
    Proxy(String),
    /// A literal loopback address.
    Address(SocketAddr),
}

/// A script's steps. Shared: every connection of a scripted server, every client
/// of a `count`, every retry and the fuzzer's replays run the one loaded copy.
/// An `Arc<Vec<_>>` rather than an `Arc<[_]>`: the steps stay where the loader put
/// them instead of being copied into a new allocation (200 bytes a step, fresh
/// pages for a long script).
pub type Script = Arc<Vec<Step>>;

/// One step of a script, with its position in the file for failure reports.
#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    /// Overrides the scenario's `step_timeout` for this step.
    pub timeout: Option<Duration>,
    pub location: Location,
    /// The step's own text in the file, for reports (`{ send = "hello" }`).
    pub source_text: Snippet,
}

/// A piece of a scenario file's text. It shares the file (kept once, in
/// [`Scenario::source`]) rather than copying the piece: a script of thousands of
/// steps would otherwise hold its text twice, and copy it once more for each run.
#[derive(Clone, Default)]
pub struct Snippet {
    source: Arc<str>,
    span: Range<usize>,
}

impl Snippet {
    /// The text of `span` in `source` (empty if `span` is not within it).
    pub fn new(source: &Arc<str>, span: Range<usize>) -> Snippet {
        let span = if source.get(span.clone()).is_some() {
            span
        } else {
            0..0
        };
        Snippet {
            source: Arc::clone(source),
            span,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source[self.span.clone()]
    }
}

impl std::ops::Deref for Snippet {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Snippet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Snippet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Snippet {
    fn eq(&self, other: &Snippet) -> bool {
        self.as_str() == other.as_str()
    }
}

/// What `expect`, and `recv`'s `expect`, compare the bytes with.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Exact DATA: bytes known at load time, or a file slice read as the step runs.
    Data(Data),
    /// Any other MATCH. `max` bounds how far a stream `expect` reads (in `recv`,
    /// the read's own `max` bounds it).
    Match { matcher: Match, max: usize },
}

/// What a step does.
///
/// This enum is the one description of the step kinds: [`StepKind`] is derived from
/// it (one data-less variant per action, named by its keyword in the file: parse a
/// key with `StepKind::from_str`, list them with `StepKind::VARIANTS`), the
/// keyword list for errors and hints is [`StepKind`]'s, and the loader dispatches on
/// [`StepKind`] with an exhaustive `match`. A new action is a new variant here plus
/// its parser in the loader, which the compiler asks for.
#[derive(Debug, Clone, PartialEq, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(StepKind),
    vis(pub),
    derive(
        Hash,
        strum::EnumString,
        strum::IntoStaticStr,
        strum::AsRefStr,
        strum::EnumIter,
        strum::VariantNames
    ),
    strum(serialize_all = "snake_case")
)]
pub enum Action {
    /// Write the bytes in calls of `chunks` sizes (the last repeats); empty means one
    /// write of everything. `delay` pauses between calls.
    Send {
        data: Data,
        chunks: Vec<usize>,
        delay: Option<Duration>,
        /// After each chunk (or the whole send, without chunks), wait until the
        /// peer's program has read everything sent so far.
        await_read: bool,
    },
    /// One read call with a buffer of `max` bytes; the bytes it returned must
    /// match `expect`.
    Recv {
        max: usize,
        expect: Option<Expected>,
    },
    /// TCP: read until the expectation's verdict (exact data and `len` read exactly
    /// their length; a regex, `contains` or `json` read until the bytes so far match,
    /// at most `max` bytes) and consume through the match. UDP: the next datagram.
    Expect(Expected),
    /// Read one line (LF, a trailing CR stripped) and match it without its end.
    ExpectLine(Match),
    /// Nothing (no byte, no end of stream, no datagram) arrives for this long.
    ExpectSilence(Duration),
    /// Encode the payload as one frame and send it. With `header` (json-header
    /// only): that header, its strings templates (`{md5}`, `{size}` of the body,
    /// variables), `file_size` from the body unless the header gives one.
    SendFrame {
        framing: FramingConfig,
        /// Bytes, or a `{ template }` made into bytes when the step runs.
        payload: Data,
        header: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    },
    /// Read one whole frame and match its payload; with `header` (json-header),
    /// the frame's header must hold those keys, as `json` matches.
    ExpectFrame {
        framing: FramingConfig,
        payload: Match,
        header: Option<Match>,
    },
    ExpectEof,
    ExpectReset,
    /// Wait without reading until this many bytes are queued.
    AwaitQueued(usize),
    Shutdown(crate::event::ShutdownHow),
    Close,
    Sleep(Duration),
    Signal(String),
    Wait(String),
    Connect,
    /// From here, sends are held in memory and not written (TCP).
    Hold,
    /// Write everything held in ONE write call, and stop holding.
    Flush,
    /// Wait until the peer's program has read every byte this actor sent: its
    /// receive queue is empty, as the kernel's socket table shows.
    AwaitRead,
}

impl Action {
    /// The step's key as written in the file.
    pub fn keyword(&self) -> &'static str {
        self.kind().keyword()
    }

    /// The step's kind, without its arguments.
    pub fn kind(&self) -> StepKind {
        StepKind::from(self)
    }

    /// The variables this step's matcher captures (a regex's named groups).
    pub fn capture_names(&self) -> Vec<&str> {
        match self {
            Action::Expect(Expected::Match { matcher, .. })
            | Action::Recv {
                expect: Some(Expected::Match { matcher, .. }),
                ..
            }
            | Action::ExpectLine(matcher)
            | Action::ExpectFrame {
                payload: matcher, ..
            } => matcher.capture_names(),
            _ => Vec::new(),
        }
    }

    /// Whether the step's data is a template, made from variables as it runs: in
    /// any DATA of the step (sent, expected, or inside a `contains`), or in a
    /// json-header `header`.
    pub fn has_template(&self) -> bool {
        let data = |data: &Data| matches!(data, Data::Template(_));
        let expected = |expected: &Expected| match expected {
            Expected::Data(d) => data(d),
            Expected::Match { matcher, .. } => matcher.has_template(),
        };
        match self {
            Action::Send { data: d, .. } => data(d),
            Action::Expect(e) => expected(e),
            Action::Recv { expect, .. } => expect.as_ref().is_some_and(expected),
            Action::ExpectLine(matcher) => matcher.has_template(),
            Action::SendFrame {
                payload, header, ..
            } => header.is_some() || data(payload),
            Action::ExpectFrame { payload, .. } => payload.has_template(),
            _ => false,
        }
    }

    /// Whether the step waits for something outside this actor, and so has a deadline.
    pub fn waits(&self) -> bool {
        !matches!(
            self,
            Action::Shutdown(_)
                | Action::Close
                | Action::Sleep(_)
                | Action::Signal(_)
                | Action::ExpectSilence(_)
                | Action::Hold
        )
    }
}

impl StepKind {
    /// The key that names this action in a step (`send`, `expect_eof`).
    pub fn keyword(self) -> &'static str {
        self.into()
    }
}

/// Every step keyword, in declaration order, for "did you mean" hints.
pub const STEP_KEYWORDS: &[&str] = <StepKind as strum::VariantNames>::VARIANTS;

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use bytes::Bytes;
    use strum::IntoEnumIterator;

    use super::*;

    /// The steps table of the format reference lists exactly the step kinds the
    /// loader knows, in the same order: a new kind without its row fails here.
    #[test]
    fn the_format_reference_lists_every_step_kind() {
        let docs = include_str!("../../../docs/scenario-format.md");
        let table = docs
            .split("| step | waits | TCP | UDP | summary |")
            .nth(1)
            .expect("the steps table of docs/scenario-format.md");
        let rows: Vec<&str> = table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                line.trim_start_matches("| `")
                    .split([' ', '`'])
                    .next()
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(rows, STEP_KEYWORDS, "docs/scenario-format.md section 7");
    }

    #[test]
    fn step_keywords_come_from_the_actions() {
        assert_eq!(
            STEP_KEYWORDS,
            &[
                "send",
                "recv",
                "expect",
                "expect_line",
                "expect_silence",
                "send_frame",
                "expect_frame",
                "expect_eof",
                "expect_reset",
                "await_queued",
                "shutdown",
                "close",
                "sleep",
                "signal",
                "wait",
                "connect",
                "hold",
                "flush",
                "await_read",
            ]
        );
        assert_eq!(StepKind::iter().count(), STEP_KEYWORDS.len());
        for (kind, keyword) in StepKind::iter().zip(STEP_KEYWORDS) {
            assert_eq!(kind.keyword(), *keyword);
            assert_eq!(kind.as_ref(), *keyword);
            assert_eq!(StepKind::from_str(keyword), Ok(kind));
        }
        assert!(StepKind::from_str("Send").is_err());
        assert!(StepKind::from_str("sendframe").is_err());
    }

    #[test]
    fn an_action_knows_its_keyword() {
        assert_eq!(Action::Connect.keyword(), "connect");
        assert_eq!(
            Action::Expect(Expected::Data(Data::Bytes(Bytes::new()))).kind(),
            StepKind::Expect
        );
        assert_eq!(
            Action::SendFrame {
                framing: FramingConfig::new(crate::framing::FramingKind::Line),
                payload: Data::Bytes(Bytes::new()),
                header: None,
            }
            .keyword(),
            "send_frame"
        );
        assert_eq!(Action::AwaitQueued(1).keyword(), "await_queued");
    }
}
