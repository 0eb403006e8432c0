//! What a scenario run produced: pass or fail, the failure's full explanation, and
//! the event log. Reporters render these; the runner never formats output itself.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use crate::scenario::Location;

/// The result of running one scenario once.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioOutcome {
    pub name: String,
    pub path: PathBuf,
    /// Which run of `--repeat` this was (1-based).
    pub run: usize,
    #[serde(serialize_with = "serialize_secs")]
    pub duration: Duration,
    pub failure: Option<Failure>,
    /// Things worth knowing about a run whatever its result (clients that waited
    /// for file descriptors, bytes nobody read).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Wall-clock time at which the events' clock read zero, so a trace can give
    /// packets their real times (`started_at + event.at`).
    #[serde(skip)]
    pub started_at: SystemTime,
    /// The packet trace written for this run (`run --pcap DIR`), if any. Set by the
    /// CLI after the run; the runner itself never writes files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<PathBuf>,
    /// The seed each fault proxy of the run used: the same seeds replay the same
    /// fault decisions (`wirecheck run FILE --seed N`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<ProxySeed>,
}

/// The seed one proxy used in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxySeed {
    pub proxy: String,
    pub seed: u64,
}

/// The command that replays a run's fault decisions, when one `--seed` can: every
/// proxy used the same seed. (Proxies with different seeds in the file replay with
/// `wirecheck run FILE` alone.)
pub fn replay_command(path: &std::path::Path, seeds: &[ProxySeed]) -> Option<String> {
    let first = seeds.first()?;
    let file = path.display().to_string();
    let quoted = if file
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        file
    } else {
        format!("'{}'", file.replace('\'', "'\\''"))
    };
    if seeds.iter().all(|s| s.seed == first.seed) {
        Some(format!("wirecheck run {quoted} --seed {}", first.seed))
    } else {
        None
    }
}

impl ScenarioOutcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Why a scenario failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// The actor that failed, if one did.
    pub actor: Option<String>,
    /// The step that failed, if one did.
    pub step: Option<StepRef>,
    /// What went wrong, in one or two sentences.
    pub message: String,
    /// The bytes the step wanted, for a side-by-side dump.
    #[serde(serialize_with = "serialize_opt_bytes")]
    pub expected: Option<Bytes>,
    /// The bytes that arrived.
    #[serde(serialize_with = "serialize_opt_bytes")]
    pub actual: Option<Bytes>,
    /// How long the step waited before it failed.
    #[serde(serialize_with = "serialize_opt_secs")]
    pub waited: Option<Duration>,
    /// More lines of context: actors still waiting at a timeout, process output.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A step's expectation was not met or its I/O failed.
    Step,
    /// A step waited past its deadline.
    StepTimeout,
    /// The whole scenario ran past its `timeout`.
    ScenarioTimeout,
    /// A server could not be started (bind, spawn, readiness).
    Setup,
    /// A process or socket outlived the scenario.
    Cleanup,
    /// A program under test ended in a way its `exit` does not allow, or its output
    /// did not match.
    Program,
    /// The user interrupted the run.
    Interrupted,
    /// A task of wirecheck itself panicked: a bug, reported as a failed run.
    Panic,
}

/// A step, identified the way a user finds it in the file.
#[derive(Debug, Clone, Serialize)]
pub struct StepRef {
    /// 1-based position in the actor's script; 0 for a key of a client program
    /// (`exit`, `stdout`, `stderr`, `command`), which is not a script step.
    pub index: usize,
    pub keyword: &'static str,
    pub location: LocationRef,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocationRef {
    pub line: usize,
    pub column: usize,
    /// The step's byte range in the file, so a report can underline it.
    #[serde(skip)]
    pub span: std::ops::Range<usize>,
}

impl From<&Location> for LocationRef {
    fn from(location: &Location) -> Self {
        Self {
            line: location.line,
            column: location.column,
            span: location.span.clone(),
        }
    }
}

impl From<&LocationRef> for Location {
    fn from(location: &LocationRef) -> Self {
        Self {
            span: location.span.clone(),
            line: location.line,
            column: location.column,
        }
    }
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            actor: None,
            step: None,
            message: message.into(),
            expected: None,
            actual: None,
            waited: None,
            notes: Vec::new(),
        }
    }
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn serialize_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Bytes go into JSON as hex, which survives any content.
fn serialize_opt_bytes<S: serde::Serializer>(b: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(bytes) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            s.serialize_some(&hex)
        }
        None => s.serialize_none(),
    }
}
