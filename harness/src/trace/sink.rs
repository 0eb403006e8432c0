//! Where packets go: a pcapng file (the default: nanosecond timestamps and a
//! comment per packet) or a classic pcap file, written as the packets come, through
//! pcap-file's writers. Nothing is held back: a run that fails half-way still leaves
//! a well-formed file up to its last packet.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

/// The snap length written when none was asked for: larger than any loopback frame.
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// Longest packet comment we write; pcapng stores an option's length in 16 bits.
const MAX_COMMENT: usize = 1024;

/// The file format of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceFormat {
    /// pcapng, nanosecond timestamps, a comment on every packet.
    #[default]
    Pcapng,
    /// Classic libpcap format (nanosecond variant), no comments.
    Pcap,
}

impl TraceFormat {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            TraceFormat::Pcapng => "pcapng",
            TraceFormat::Pcap => "pcap",
        }
    }
}

/// What the file says about itself.
#[derive(Debug, Clone, Default)]
pub struct FileInfo {
    /// The section comment (pcapng only): scenario, run, how it was made.
    pub comment: String,
    /// The interface description (pcapng only).
    pub interface: String,
}

/// A writer of one trace file.
pub enum Sink<W: Write> {
    Pcapng(PcapNgWriter<W>),
    Pcap(PcapWriter<W>),
}

impl<W: Write> Sink<W> {
    /// Writes the file header (and, for pcapng, the interface description).
    pub fn new(writer: W, format: TraceFormat, snaplen: u32, info: &FileInfo) -> io::Result<Self> {
        match format {
            TraceFormat::Pcapng => {
                let mut section = SectionHeaderBlock {
                    endianness: Endianness::native(),
                    ..Default::default()
                };
                section
                    .options
                    .push(SectionHeaderOption::UserApplication(Cow::Owned(format!(
                        "wirecheck {}",
                        env!("CARGO_PKG_VERSION")
                    ))));
                if !info.comment.is_empty() {
                    section
                        .options
                        .push(SectionHeaderOption::Comment(Cow::Owned(
                            clip(&info.comment).to_owned(),
                        )));
                }
                let mut writer =
                    PcapNgWriter::with_section_header(writer, section).map_err(io_error)?;
                let mut interface = InterfaceDescriptionBlock::new(DataLink::ETHERNET, snaplen);
                interface
                    .options
                    .push(InterfaceDescriptionOption::IfName(Cow::Borrowed("lo")));
                if !info.interface.is_empty() {
                    interface
                        .options
                        .push(InterfaceDescriptionOption::IfDescription(Cow::Owned(
                            clip(&info.interface).to_owned(),
                        )));
                }
                // Timestamps are in nanoseconds: pcap-file writes the raw count.
                interface
                    .options
                    .push(InterfaceDescriptionOption::IfTsResol(9));
                writer.write_pcapng_block(interface).map_err(io_error)?;
                Ok(Sink::Pcapng(writer))
            }
            TraceFormat::Pcap => {
                let header = PcapHeader {
                    snaplen,
                    datalink: DataLink::ETHERNET,
                    ts_resolution: TsResolution::NanoSecond,
                    endianness: Endianness::native(),
                    ..Default::default()
                };
                Ok(Sink::Pcap(
                    PcapWriter::with_header(writer, header).map_err(io_error)?,
                ))
            }
        }
    }

    /// Writes one packet: `data` is what was captured (at most the snap length),
    /// `original_len` the frame's real length, `timestamp` since the Unix epoch.
    pub fn write(
        &mut self,
        timestamp: Duration,
        data: &[u8],
        original_len: usize,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let original_len = u32::try_from(original_len).unwrap_or(u32::MAX);
        match self {
            Sink::Pcapng(writer) => {
                let options = match comment {
                    Some(text) if !text.is_empty() => {
                        vec![EnhancedPacketOption::Comment(Cow::Borrowed(clip(text)))]
                    }
                    _ => Vec::new(),
                };
                let block = EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp,
                    original_len,
                    data: Cow::Borrowed(data),
                    options,
                };
                writer.write_pcapng_block(block).map_err(io_error)?;
            }
            Sink::Pcap(writer) => {
                let packet = PcapPacket::new(timestamp, original_len, data);
                writer.write_packet(&packet).map_err(io_error)?;
            }
        }
        Ok(())
    }

    /// The underlying writer, for flushing.
    pub fn into_inner(self) -> W {
        match self {
            Sink::Pcapng(writer) => writer.into_inner(),
            Sink::Pcap(writer) => writer.into_writer(),
        }
    }
}

/// A comment cut to [`MAX_COMMENT`] bytes at a character boundary.
fn clip(text: &str) -> &str {
    if text.len() <= MAX_COMMENT {
        return text;
    }
    let mut end = MAX_COMMENT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_comments_are_clipped_at_a_character_boundary() {
        let text = "é".repeat(MAX_COMMENT);
        let clipped = clip(&text);
        assert!(clipped.len() <= MAX_COMMENT);
        assert!(clipped.chars().all(|c| c == 'é'));
        assert_eq!(clip("short"), "short");
    }
}
