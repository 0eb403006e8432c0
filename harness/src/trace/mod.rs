//! Packet traces of scenario runs, and scenarios from packet traces.
//!
//! ```text
//! run's event stream --TraceWriter: synth--> packets --sink--> DIR/NAME-runN.pcapng
//!            (and with --capture: AF_PACKET on lo --spool--> filtered by the run's ports)
//! TRACE --read--> frames --decode--> packets --reassemble--> conversations
//!       --import--> scenario TOML + payload file
//! ```
//!
//! Traces are written while a run goes, by a subscriber of its event stream (the
//! runner never writes files): [`TraceWriter`] synthesizes packets from events, and
//! with [`capture`] replaces them by a real capture at the end. Either way the file
//! is written packet by packet, so it is complete and readable whatever state the
//! run ended in.

pub mod capture;
pub mod decode;
pub mod frame;
pub mod import;
pub mod read;
pub mod reassemble;
pub mod sink;
pub mod synth;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use sink::TraceFormat;
pub use synth::{SynthOptions, SynthStats, Synthesizer};

use crate::event::{Event, Interest, RunSubscriber};
use sink::{FileInfo, Sink, DEFAULT_SNAPLEN};

/// How traces are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceSettings {
    pub format: TraceFormat,
    /// Keep at most this many bytes of each packet (the original length is kept).
    pub snaplen: Option<u32>,
    /// Force the initial sequence numbers (tests).
    pub fixed_isn: Option<u32>,
}

/// The file name of a run's trace: `STEM-runN.pcapng`.
pub fn trace_file_name(stem: &str, run: usize, format: TraceFormat) -> String {
    format!("{stem}-run{run}.{}", format.extension())
}

/// Which run a trace belongs to, for its section comment.
#[derive(Debug, Clone)]
pub struct RunLabel {
    pub scenario: String,
    pub path: PathBuf,
    pub run: usize,
}

impl RunLabel {
    fn describe(&self, how: &str) -> String {
        format!(
            "wirecheck scenario \"{}\" ({}), run {}; {how}",
            self.scenario,
            self.path.display(),
            self.run
        )
    }
}

/// Writes a run's synthesized trace while the run goes: a subscriber of the run's
/// event stream that turns each event into packets and appends them to the file at
/// once, so the trace costs no memory in proportion to the traffic and a run that
/// dies half-way still leaves a well-formed file.
pub struct TraceWriter {
    path: PathBuf,
    sink: Option<Sink<BufWriter<File>>>,
    synth: Synthesizer,
    epoch: Duration,
    error: Option<io::Error>,
    /// With `--capture`: the real packets, written over the synthesized file when
    /// the capture succeeds.
    capture: Option<(
        capture::Capture,
        capture::Endpoints,
        RunLabel,
        TraceSettings,
    )>,
}

impl TraceWriter {
    /// Creates the file and writes its header. `started_at` must be the wall-clock
    /// time at which the run's event clock reads zero.
    pub fn create(
        path: &Path,
        label: &RunLabel,
        started_at: SystemTime,
        settings: &TraceSettings,
    ) -> io::Result<Self> {
        let snaplen = settings.snaplen.unwrap_or(DEFAULT_SNAPLEN);
        let file = File::create(path)?;
        let info = FileInfo {
            comment: label.describe("synthesized from the run's events"),
            interface: "lo, synthesized by wirecheck from the run's events".into(),
        };
        let sink = Sink::new(
            BufWriter::with_capacity(1 << 20, file),
            settings.format,
            snaplen,
            &info,
        )?;
        let options = SynthOptions {
            snaplen: snaplen as usize,
            fixed_isn: settings.fixed_isn,
        };
        Ok(Self {
            path: path.to_owned(),
            sink: Some(sink),
            synth: Synthesizer::new(&label.scenario, &options),
            epoch: started_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
            error: None,
            capture: None,
        })
    }

    /// Also captures the real packets on `lo` (needs CAP_NET_RAW): the capture
    /// replaces the synthesized file when it succeeds. Must be called before the
    /// run's servers start.
    pub fn with_capture(mut self, label: &RunLabel, settings: &TraceSettings) -> io::Result<Self> {
        let spool = self.path.with_file_name(format!(
            ".{}.capture",
            self.path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ));
        let snaplen = settings.snaplen.unwrap_or(DEFAULT_SNAPLEN);
        let capture = capture::Capture::start(spool, snaplen)?;
        self.capture = Some((
            capture,
            capture::Endpoints::default(),
            label.clone(),
            *settings,
        ));
        Ok(self)
    }

    /// The file this writer writes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RunSubscriber for TraceWriter {
    fn interest(&self) -> Interest {
        Interest {
            events: true,
            payloads: true,
        }
    }

    fn event(&mut self, event: &Event) {
        if let Some((_, endpoints, _, _)) = self.capture.as_mut() {
            endpoints.add(event);
        }
        let (Some(sink), None) = (self.sink.as_mut(), &self.error) else {
            return;
        };
        let epoch = self.epoch;
        if let Err(e) = self.synth.event(event, &mut |packet| {
            sink.write(
                epoch + packet.at,
                packet.data,
                packet.original_len,
                Some(packet.comment),
            )
        }) {
            self.error = Some(e);
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        // Packets held back for a proxy's fault notes are written now.
        if let (Some(sink), None) = (self.sink.as_mut(), &self.error) {
            let epoch = self.epoch;
            if let Err(e) = self.synth.finish(&mut |packet| {
                sink.write(
                    epoch + packet.at,
                    packet.data,
                    packet.original_len,
                    Some(packet.comment),
                )
            }) {
                self.error = Some(e);
            }
        }
        let flushed = match self.sink.take() {
            Some(sink) => {
                let mut writer = sink.into_inner();
                writer
                    .flush()
                    .and_then(|()| writer.into_inner().map(drop).map_err(|e| e.into_error()))
            }
            None => Ok(()),
        };
        if let Some(e) = self.error.take() {
            return Err(format!(
                "cannot write the trace {}: {e}",
                self.path.display()
            ));
        }
        flushed.map_err(|e| format!("cannot write the trace {}: {e}", self.path.display()))?;
        if let Some((capture, endpoints, label, settings)) = self.capture.take() {
            let captured = capture.finish().and_then(|captured| {
                write_captured(&captured, &endpoints, &label, &self.path, &settings)
            });
            if let Err(e) = captured {
                // The synthesized file stays: a trace of the run either way.
                eprintln!(
                    "warning: the capture for {} failed ({e}); the trace is synthesized instead",
                    self.path.display()
                );
            }
        }
        Ok(())
    }
}

/// Writes the synthesized trace of a whole recorded run (see
/// [`crate::runner::run_collecting`]) to `path`: for tests and tools that hold a log.
pub fn write_synthesized(
    path: &Path,
    events: &[Event],
    label: &RunLabel,
    started_at: SystemTime,
    settings: &TraceSettings,
) -> io::Result<SynthStats> {
    let file = File::create(path)?;
    let (writer, stats) = synthesize_into(
        BufWriter::with_capacity(1 << 20, file),
        events,
        &label.scenario,
        &label.describe("synthesized from the run's events"),
        started_at,
        settings,
    )?;
    writer.into_inner().map_err(|e| e.into_error())?;
    Ok(stats)
}

/// Synthesizes `events` into a trace written to `writer`; returns the writer
/// (flushed) and what was written. `started_at` is the wall-clock time at which the
/// events' clock read zero.
pub fn synthesize_into<W: Write>(
    writer: W,
    events: &[Event],
    scenario: &str,
    comment: &str,
    started_at: SystemTime,
    settings: &TraceSettings,
) -> io::Result<(W, SynthStats)> {
    let snaplen = settings.snaplen.unwrap_or(DEFAULT_SNAPLEN);
    let info = FileInfo {
        comment: comment.to_owned(),
        interface: "lo, synthesized by wirecheck from the run's events".into(),
    };
    let mut sink = Sink::new(writer, settings.format, snaplen, &info)?;
    let epoch = started_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let options = SynthOptions {
        snaplen: snaplen as usize,
        fixed_isn: settings.fixed_isn,
    };
    let stats = synth::synthesize(events, scenario, &options, &mut |packet| {
        sink.write(
            epoch + packet.at,
            packet.data,
            packet.original_len,
            Some(packet.comment),
        )
    })?;
    let mut writer = sink.into_inner();
    writer.flush()?;
    Ok((writer, stats))
}

/// Writes the trace of a run from a finished capture (see [`capture`]), keeping
/// the packets of the run's own endpoints.
fn write_captured(
    captured: &capture::Captured,
    endpoints: &capture::Endpoints,
    label: &RunLabel,
    path: &Path,
    settings: &TraceSettings,
) -> io::Result<u64> {
    let mut how = "captured on lo (AF_PACKET), filtered to the run's ports".to_owned();
    if captured.kernel_drops > 0 {
        how.push_str(&format!(
            "; the kernel dropped {} frames during the capture",
            captured.kernel_drops
        ));
    }
    let info = FileInfo {
        comment: label.describe(&how),
        interface: "lo".into(),
    };
    capture::write_filtered(
        captured,
        endpoints,
        path,
        settings.format,
        settings.snaplen,
        &info,
    )
}

#[cfg(test)]
mod tests;
