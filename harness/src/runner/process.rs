//! External servers under test: started for a scenario in their own process group,
//! probed until ready, their output captured as events, and stopped with the whole
//! group at the end, whatever way the run ends.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::OutputTail;
use crate::event::{EventKind, EventStream, OutputStream};
use crate::scenario::CommandSpec;
use crate::vocab::Proto;

/// How much of one output line we keep; a server that prints megabytes without a
/// newline must not grow our memory.
const MAX_LINE: usize = 8 * 1024;
/// How many lines per stream we keep in the event log.
const MAX_LINES: usize = 10_000;
/// How long a server gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A running external server. Dropping it kills the process group, so a panic, a
/// cancelled run or Ctrl-C never leaves a server behind.
pub struct ServerProcess {
    child: Child,
    pgid: i32,
    pub addr: SocketAddr,
    stopped: bool,
}

impl ServerProcess {
    /// Starts the command with `{port}` substituted and waits until it is ready.
    pub async fn start(
        spec: &CommandSpec,
        proto: Proto,
        bind: SocketAddr,
        log: &EventStream,
        tail: &OutputTail,
        actor: &Arc<str>,
    ) -> Result<Self, String> {
        let port = if bind.port() == 0 {
            crate::plan::free_port(proto, bind.ip())
                .map_err(|e| format!("cannot find a free port: {e}"))?
        } else {
            bind.port()
        };
        let addr = SocketAddr::new(bind.ip(), port);
        let substitute = |s: &str| s.replace("{port}", &port.to_string());
        let argv: Vec<String> = spec.argv.iter().map(|a| substitute(a)).collect();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(&spec.cwd)
            .envs(spec.env.iter().map(|(k, v)| (k, substitute(v))))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so stopping it also stops anything it started.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", argv.join(" ")))?;
        let pgid = child.id().map(|id| id as i32).unwrap_or(0);
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(capture(
                stdout,
                OutputStream::Stdout,
                log.clone(),
                tail.clone(),
                Arc::clone(actor),
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(capture(
                stderr,
                OutputStream::Stderr,
                log.clone(),
                tail.clone(),
                Arc::clone(actor),
            ));
        }
        let mut process = Self {
            child,
            pgid,
            addr,
            stopped: false,
        };
        if let Err(e) = process.wait_ready(spec, proto).await {
            process.stop(log, actor).await;
            return Err(e);
        }
        Ok(process)
    }

    async fn wait_ready(&mut self, spec: &CommandSpec, proto: Proto) -> Result<(), String> {
        if proto == Proto::Udp {
            // UDP has no handshake to probe; give the server its declared delay.
            tokio::time::sleep(spec.ready_delay).await;
            return self.check_alive();
        }
        let deadline = Instant::now() + spec.ready_timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            self.check_alive()?;
            let attempt = tokio::time::timeout(
                Duration::from_millis(250),
                tokio::net::TcpStream::connect(self.addr),
            )
            .await;
            if let Ok(Ok(_probe)) = attempt {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the server did not accept a TCP connection on {} within {:?} (ready_timeout)",
                    self.addr, spec.ready_timeout
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("the server exited before it was ready ({status})")),
            Ok(None) => Ok(()),
            Err(e) => Err(format!("cannot check the server process: {e}")),
        }
    }

    /// SIGTERM to the group, SIGKILL after a grace period. Returns an error message if
    /// anything of the group is still alive afterwards.
    pub async fn stop(&mut self, log: &EventStream, actor: &Arc<str>) -> Option<String> {
        if self.stopped {
            return None;
        }
        self.stopped = true;
        signal_group(self.pgid, Signal::SIGTERM);
        let status = match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            _ => {
                signal_group(self.pgid, Signal::SIGKILL);
                match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
                    Ok(Ok(status)) => format!("{status} (after SIGKILL)"),
                    _ => "did not exit".into(),
                }
            }
        };
        log.record(actor, EventKind::ProcessExited { status });
        // Children that ignored SIGTERM still belong to the group; end them too.
        signal_group(self.pgid, Signal::SIGKILL);
        let deadline = Instant::now() + STOP_GRACE;
        while group_alive(self.pgid) {
            if Instant::now() >= deadline {
                return Some(format!(
                    "process group {} of the server is still alive after SIGKILL",
                    self.pgid
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.stopped {
            signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Sends `signal` to every process of the group. The group id is the child's pid,
/// which we started and still own.
fn signal_group(pgid: i32, signal: Signal) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// Whether any process of the group is alive. Zombies of the group count as gone:
/// they hold no port and run no code.
fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 {
        return false;
    }
    // No signal: only checks that the group exists and may be signalled.
    if killpg(Pid::from_raw(pgid), None).is_err() {
        return false;
    }
    // killpg() succeeds for zombies; look for a live member in /proc.
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised command: state, ppid, pgrp.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z"
    })
}

async fn capture(
    stream: impl AsyncRead + Unpin,
    which: OutputStream,
    log: EventStream,
    tail: OutputTail,
    actor: Arc<str>,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut kept = 0;
    loop {
        line.clear();
        match (&mut reader).take_until_bounded(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if kept < MAX_LINES {
            kept += 1;
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            tail.push(&actor, which, text);
            log.record(
                &actor,
                EventKind::ProcessOutput {
                    stream: which,
                    line: text.to_owned(),
                },
            );
        }
    }
}

/// Reads one line, keeping at most `MAX_LINE` bytes of it and discarding the rest.
trait TakeUntilBounded {
    async fn take_until_bounded(self, line: &mut Vec<u8>) -> std::io::Result<usize>;
}

impl<R: tokio::io::AsyncBufRead + Unpin> TakeUntilBounded for &mut R {
    async fn take_until_bounded(self, line: &mut Vec<u8>) -> std::io::Result<usize> {
        let mut total = 0;
        loop {
            let available = self.fill_buf().await?;
            if available.is_empty() {
                return Ok(total);
            }
            let (used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let room = MAX_LINE.saturating_sub(line.len());
            line.extend_from_slice(&available[..used.min(room)]);
            self.consume(used);
            total += used;
            if done {
                return Ok(total);
            }
        }
    }
}
