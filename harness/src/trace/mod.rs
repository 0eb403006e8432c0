//! Packet traces of scenario runs, and scenarios from packet traces.
//!
//! ```text
//! ScenarioOutcome.events --synth--> packets --sink--> DIR/NAME-runN.pcapng
//!            (or --capture: AF_PACKET on lo --spool--> filtered by the run's ports)
//! TRACE --read--> frames --reassemble--> conversations --import--> scenario TOML
//! ```
//!
//! Traces are made after a run, from its events (the runner never writes files):
//! [`write_synthesized`] by default, [`capture`] for a real capture. Either way the
//! file is written packet by packet, so it is complete and readable whatever state
//! the run ended in.

pub mod capture;
pub mod frame;
pub mod import;
pub mod read;
pub mod reassemble;
pub mod sink;
pub mod synth;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use sink::TraceFormat;
pub use synth::{SynthOptions, SynthStats};

use crate::event::Event;
use crate::runner::ScenarioOutcome;
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

/// Writes the synthesized trace of a finished run to `path`.
pub fn write_synthesized(
    outcome: &ScenarioOutcome,
    path: &Path,
    settings: &TraceSettings,
) -> io::Result<SynthStats> {
    let file = File::create(path)?;
    let writer = BufWriter::with_capacity(1 << 20, file);
    let (writer, stats) = synthesize_into(
        writer,
        &outcome.events,
        &outcome.name,
        &describe_run(outcome, "synthesized from the run's events"),
        outcome.started_at,
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

/// The section comment of a run's trace.
pub fn describe_run(outcome: &ScenarioOutcome, how: &str) -> String {
    let result = match &outcome.failure {
        None => "passed".to_owned(),
        Some(failure) => format!("FAILED: {}", failure.message),
    };
    format!(
        "wirecheck scenario \"{}\" ({}), run {}, {result}; {how}",
        outcome.name,
        outcome.path.display(),
        outcome.run
    )
}

/// Writes the trace of a run from a finished capture (see [`capture`]).
pub fn write_captured(
    outcome: &ScenarioOutcome,
    captured: &capture::Captured,
    path: &Path,
    settings: &TraceSettings,
) -> io::Result<u64> {
    let endpoints = capture::Endpoints::from_events(&outcome.events);
    let mut how = "captured on lo (AF_PACKET), filtered to the run's ports".to_owned();
    if captured.kernel_drops > 0 {
        how.push_str(&format!(
            "; the kernel dropped {} frames during the capture",
            captured.kernel_drops
        ));
    }
    let info = FileInfo {
        comment: describe_run(outcome, &how),
        interface: "lo".into(),
    };
    capture::write_filtered(
        captured,
        &endpoints,
        path,
        settings.format,
        settings.snaplen,
        &info,
    )
}

#[cfg(test)]
mod tests;
